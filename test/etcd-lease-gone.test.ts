/**
 * A shared session whose lease etcd no longer has, before the client has heard (it expired while the
 * cluster was paused, or someone revoked it): the next attempt's Txn names the lease and etcd refuses
 * it with NOT_FOUND "requested lease not found". Every etcd locker then marks that session lost and
 * tries again on a new lease, within a wait and once for tryAcquire, instead of failing with etcd's
 * raw error. The same when the shared session ends while an acquire waits in line: the wait goes on,
 * on a new lease, at the back of the line (a lease of the attempt's own, autoExtend: false, still ends
 * the wait: nobody renews it by the caller's choice). Real etcd; leases are revoked by hand, well
 * inside the TTL/3 before the session's next renewal would notice.
 */
import { expect } from 'chai';
import { EtcdClient, EtcdLocker, EtcdRWLock, EtcdSemaphore, type Lock, type Locker } from '../src/index.js';
import { startEtcd, type EtcdServer } from '../src/testing/servers.js';
import { eventually, queuedKeys } from './support/etcd.js';

/** The lease hex in a lock's etcd key: its last segment, before any `-n` the semaphore and RW lock add. */
const leaseOf = (lock: Lock): string => lock.token.slice(lock.token.lastIndexOf('/') + 1).split('-')[0]!;

describe('etcd lockers: a lease etcd dropped before the session noticed', function () {
  this.timeout(30_000);
  let etcd: EtcdServer;
  let admin: EtcdClient;
  let client: EtcdClient;
  const closers: Array<{ close(): Promise<void> }> = [];
  let n = 0;

  before(async () => {
    etcd = await startEtcd();
    admin = await EtcdClient.connect({ endpoints: etcd.endpoints });
    client = await EtcdClient.connect({ endpoints: etcd.endpoints });
  });
  after(async () => {
    await Promise.allSettled(closers.map((c) => c.close()));
    await Promise.allSettled([admin?.close(), client?.close()]);
    await etcd?.stop();
  });

  const lockers: Array<[string, () => Locker]> = [
    ['EtcdLocker', () => new EtcdLocker(client)],
    ['EtcdSemaphore', () => new EtcdSemaphore(client, { limit: 2 })],
    ['EtcdRWLock (write)', () => new EtcdRWLock(client).write],
    ['EtcdRWLock (read)', () => new EtcdRWLock(client).read],
  ];

  for (const [name, make] of lockers) {
    for (const how of ['acquire', 'tryAcquire'] as const) {
      it(`${name}: ${how} after the lease was revoked behind its back stands on a new lease`, async () => {
        const locker = make();
        closers.push(locker);
        const key = `gone-${++n}`;
        const first = await locker.acquire(key, { ttlMs: 30_000 });
        const lease = leaseOf(first);
        await first.release();
        await admin.leaseRevoke({ ID: BigInt(`0x${lease}`) });

        const second = how === 'acquire' ? await locker.acquire(key, { ttlMs: 30_000, waitTimeoutMs: 5000 }) : await locker.tryAcquire(key, { ttlMs: 30_000 });
        expect(second, 'the second attempt holds').to.not.equal(null);
        expect(leaseOf(second!), 'a new lease').to.not.equal(lease);
        expect(second!.fence > first.fence, 'its fence is above the first').to.equal(true);
        const kvs = (await admin.range({ key: second!.token })).kvs;
        expect(kvs.map((kv) => kv.lease.toString(16)), 'its key stands on the new lease').to.deep.equal([leaseOf(second!)]);
        await second!.release();
      });
    }
  }

  const queued: Array<[string, () => { holder: Locker; waiter: Locker; name: (key: string) => string }]> = [
    ['EtcdLocker', () => ({ holder: new EtcdLocker(client), waiter: new EtcdLocker(client), name: (k) => `wirelock/${k}` })],
    ['EtcdSemaphore (limit 1)', () => ({ holder: new EtcdSemaphore(client, { limit: 1 }), waiter: new EtcdSemaphore(client, { limit: 1 }), name: (k) => `wirelock/${k}` })],
    ['EtcdRWLock (write behind a write)', () => ({ holder: new EtcdRWLock(client).write, waiter: new EtcdRWLock(client).write, name: (k) => `wirelock/${k}/write` })],
  ];
  for (const [name, make] of queued) {
    it(`${name}: a waiter whose shared session ends while it waits in line waits on, on a new lease`, async () => {
      const { holder, waiter, name: keysUnder } = make();
      closers.push(holder, waiter);
      const key = `queued-${++n}`;
      const held = await holder.acquire(key, { ttlMs: 30_000 });
      const waiting = waiter.acquire(key, { ttlMs: 30_000, waitTimeoutMs: 10_000 });
      let keys: string[] = [];
      await eventually(async () => (keys = await queuedKeys(admin, keysUnder(key))).length === 2, 5000, 'the waiter in line');
      const lease = keys[1]!.slice(keys[1]!.lastIndexOf('/') + 1).split('-')[0]!;
      await admin.leaseRevoke({ ID: BigInt(`0x${lease}`) });
      // Back in line on a new lease, behind the holder.
      await eventually(async () => {
        keys = await queuedKeys(admin, keysUnder(key));
        return keys.length === 2 && !keys[1]!.includes(lease);
      }, 5000, 'the waiter back in line on a new lease');
      await held.release();
      const got = await waiting;
      expect(leaseOf(got)).to.not.equal(lease);
      expect(got.fence > held.fence).to.equal(true);
      await got.release();
    });
  }

  it('EtcdLocker, autoExtend false: a waiter whose own lease is revoked while it waits is rejected (session-expired)', async () => {
    const holder = new EtcdLocker(client);
    const waiter = new EtcdLocker(client);
    closers.push(holder, waiter);
    const key = `own-${++n}`;
    const held = await holder.acquire(key, { ttlMs: 30_000 });
    const waiting = waiter.acquire(key, { ttlMs: 30_000, waitTimeoutMs: 10_000, autoExtend: false });
    let keys: string[] = [];
    await eventually(async () => (keys = await queuedKeys(admin, `wirelock/${key}`)).length === 2, 5000, 'the waiter in line');
    await admin.leaseRevoke({ ID: BigInt(`0x${keys[1]!.slice(keys[1]!.lastIndexOf('/') + 1)}`) });
    const err = await waiting.then(() => undefined, (e: unknown) => e);
    expect(err).to.include({ code: 'WL_LOCK_LOST', reason: 'session-expired' });
    await held.release();
  });
});
