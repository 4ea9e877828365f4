import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import {
  ClosedError, CompareResult, CompareTarget, EtcdClient, EtcdLocker, LockLostError, LockReleasedError, LockTimeoutError, Mutex, Session,
  SessionExpiredError, ownerCompare, type Lock,
} from '../src/index.js';
import { startEtcd, type EtcdServer } from '../src/testing/servers.js';
import { FaultProxy } from './support/proxy.js';
import { etcdctlLock, eventually, queuedKeys, rejection, sleep } from './support/etcd.js';

describe('etcd Session, Mutex and EtcdLocker', function () {
  this.timeout(30_000);
  let etcd: EtcdServer;
  let admin: EtcdClient;
  const clients: EtcdClient[] = [];
  let n = 0;
  const fresh = (name: string): string => `${name}-${++n}`;
  const connect = async (): Promise<EtcdClient> => {
    const c = await EtcdClient.connect({ endpoints: etcd.endpoints });
    clients.push(c);
    return c;
  };
  const queue = (name: string): Promise<string[]> => queuedKeys(admin, name);
  const leaseOf = (lock: Lock): bigint => BigInt(`0x${lock.token.slice(lock.token.lastIndexOf('/') + 1)}`);

  before(async () => {
    etcd = await startEtcd();
    admin = await connect();
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await etcd?.stop();
  });

  describe('Session', () => {
    it('grants a lease of whole seconds (min 2), renews it, and revokes it on close()', async () => {
      const client = await connect();
      const before = performance.now();
      const session = await Session.create(client, { ttlMs: 1 });
      expect(session.ttl).to.equal(2);
      expect(session.validUntil).to.be.within(before + 1900, performance.now() + 2000);
      const first = session.validUntil;
      await eventually(() => session.validUntil > first + 300, 2000, 'a renewal');
      expect((await admin.leaseTimeToLive({ ID: session.lease })).TTL > 0n).to.equal(true);
      await session.close();
      expect(session.signal.reason).to.be.instanceOf(ClosedError);
      expect((await admin.leaseTimeToLive({ ID: session.lease })).TTL).to.equal(-1n);
      await session.close(); // idempotent
    });

    it('is lost when its lease is revoked behind its back', async () => {
      const session = await Session.create(await connect(), { ttlMs: 2000 });
      await admin.leaseRevoke({ ID: session.lease });
      await eventually(() => session.signal.aborted, 4000, 'loss');
      expect(session.signal.reason).to.be.instanceOf(SessionExpiredError);
      expect((session.signal.reason as SessionExpiredError).leaseId).to.equal(session.lease);
    });

    it('aborts locally by (send time of the last acknowledged keep-alive + TTL) when renewals stop getting through', async () => {
      const proxy = await FaultProxy.start({ port: Number(new URL(etcd.clientUrl).port) });
      const client = await EtcdClient.connect({ endpoints: [`http://127.0.0.1:${proxy.port}`] });
      try {
        const session = await Session.create(client, { ttlMs: 2000 });
        await sleep(100);
        proxy.hold(); // nothing gets through any more, and nothing is refused either
        const deadline = session.validUntil; // the last acknowledged send + TTL (minus drift)
        let abortedAt = 0;
        session.signal.addEventListener('abort', () => (abortedAt = performance.now()));
        await eventually(() => abortedAt > 0, 4000, 'local expiry');
        // By construction the timer is set for `deadline`; the slack is only for a busy event loop.
        expect(abortedAt).to.be.at.most(deadline + 400);
        expect(session.signal.reason).to.be.instanceOf(SessionExpiredError);
      } finally {
        proxy.pass();
        await client.close();
        await proxy.stop();
      }
    });
  });

  describe('Mutex', () => {
    it('writes <name>/<lease in lowercase hex>, fences with its create revision, and guards txns with isOwner()', async () => {
      const session = await Session.create(await connect(), { ttlMs: 5000 });
      const name = fresh('mutex');
      const m = new Mutex(session, name);
      await m.lock();
      expect(m.key).to.equal(`${name}/${session.lease.toString(16)}`);
      expect(m.key).to.match(/^[^/]+\/[0-9a-f]+$/);
      const [kv] = (await admin.range({ key: m.key })).kvs;
      expect(kv!.create_revision).to.equal(m.fence);
      expect(kv!.lease).to.equal(session.lease);
      const write = await m.guardedTxn({ success: [{ request_put: { key: `${name}-data`, value: 'x' } }] });
      expect(write.succeeded).to.equal(true);
      await m.unlock();
      expect((await admin.range({ key: m.key })).kvs).to.have.length(0);
      // Once released, the same compare no longer holds: a late write is refused.
      const stale = await admin.txn({ compare: [{ key: kv!.key, target: CompareTarget.CREATE, result: CompareResult.EQUAL, create_revision: kv!.create_revision }], success: [{ request_put: { key: `${name}-data`, value: 'late' } }] });
      expect(stale.succeeded).to.equal(false);
      await session.close();
    });

    it('tryLock() answers false while another session holds it, and leaves no key behind', async () => {
      const [s1, s2] = await Promise.all([Session.create(await connect()), Session.create(await connect())]);
      const name = fresh('try');
      const a = new Mutex(s1, name);
      const b = new Mutex(s2, name);
      expect(await a.tryLock()).to.equal(true);
      expect(await b.tryLock()).to.equal(false);
      expect(await queue(name)).to.deep.equal([a.key]);
      await a.unlock();
      expect(await b.tryLock()).to.equal(true);
      expect(b.fence > a.fence || b.fence > 0n).to.equal(true);
      await b.unlock();
      await Promise.all([s1.close(), s2.close()]);
    });

    it('signal: aborted before the first hold; live while held (read early or late); ends with the hold\'s reason; a new hold gets a new one', async () => {
      const session = await Session.create(await connect(), { ttlMs: 5000 });
      const m = new Mutex(session, fresh('signal'));
      expect(m.signal.aborted).to.equal(true); // never locked
      await m.lock();
      const first = m.signal;
      expect(first.aborted).to.equal(false);
      await m.unlock();
      expect(first.aborted).to.equal(true);
      expect(first.reason).to.be.instanceOf(LockReleasedError);

      // Not read while held: read after the end, it is aborted with the same kind of reason.
      await m.lock();
      await m.unlock();
      expect(m.signal.aborted).to.equal(true);
      expect(m.signal.reason).to.be.instanceOf(LockReleasedError);

      await m.lock();
      const third = m.signal;
      expect(third).to.not.equal(first);
      expect(third.aborted).to.equal(false);
      const ended: unknown[] = [];
      session.onEnded((reason) => ended.push(reason));
      await admin.leaseRevoke({ ID: session.lease }); // behind its back: the renewal finds TTL 0
      await session.keepAliveOnce().catch(() => {});
      expect(third.aborted).to.equal(true);
      expect(third.reason).to.be.instanceOf(LockLostError);
      expect((third.reason as LockLostError).reason).to.equal('session-expired');
      expect(m.held).to.equal(false);
      expect(ended).to.have.length(1);
      expect(ended[0]).to.be.instanceOf(SessionExpiredError);
      // Registered after the end: called at once.
      session.onEnded((reason) => ended.push(reason));
      expect(ended).to.have.length(2);
      await m.unlock();
      await session.close();
    });
  });

  describe('EtcdLocker', () => {
    it('is exclusive under contention, with strictly increasing fences', async () => {
      const lockers = await Promise.all(Array.from({ length: 5 }, async () => new EtcdLocker(await connect())));
      const key = fresh('contended');
      let holders = 0;
      let maxHolders = 0;
      const fences: bigint[] = [];
      await Promise.all(
        lockers.map(async (locker) => {
          for (let i = 0; i < 8; i++) {
            const lock = await locker.acquire(key, { ttlMs: 5000 });
            holders++;
            maxHolders = Math.max(maxHolders, holders);
            fences.push(lock.fence);
            await sleep(Math.random() * 3);
            holders--;
            await lock.release();
          }
        }),
      );
      expect(maxHolders).to.equal(1);
      expect(fences).to.have.length(40);
      for (let i = 1; i < fences.length; i++) expect(fences[i]! > fences[i - 1]!, `fence ${i}`).to.equal(true);
      await Promise.all(lockers.map((l) => l.close()));
    });

    it('grants waiters in the order they queued (FIFO)', async () => {
      const key = fresh('fifo');
      const lockers = await Promise.all(Array.from({ length: 4 }, async () => new EtcdLocker(await connect())));
      const name = lockers[0]!.lockName(key);
      const first = await lockers[0]!.acquire(key);
      const order: number[] = [];
      const waits: Array<Promise<void>> = [];
      for (let i = 1; i < 4; i++) {
        waits.push(lockers[i]!.acquire(key).then(async (lock) => {
          order.push(i);
          await sleep(5);
          await lock.release();
        }));
        await eventually(async () => (await queue(name)).length === i + 1, 3000, `waiter ${i} queued`);
      }
      await first.release();
      await Promise.all(waits);
      expect(order).to.deep.equal([1, 2, 3]);
      await Promise.all(lockers.map((l) => l.close()));
    });

    it('a waiter whose lease goes mid-queue: the one behind it waits for the holder, not for the dead key; the waiter joins again at the back', async () => {
      const key = fresh('dies');
      const [holder, dying, last] = await Promise.all([0, 1, 2].map(async () => new EtcdLocker(await connect())));
      const name = holder!.lockName(key);
      const held = await holder!.acquire(key);
      let dyingLock: Lock | undefined;
      const dyingWait = dying!.acquire(key).then((l) => (dyingLock = l));
      await eventually(async () => (await queue(name)).length === 2, 3000, 'dying queued');
      let lastLock: Lock | undefined;
      const lastWait = last!.acquire(key).then((l) => (lastLock = l));
      await eventually(async () => (await queue(name)).length === 3, 3000, 'last queued');
      // The middle waiter's lease is gone (as if its process had died), and so is its key.
      const deadKey = (await queue(name))[1]!;
      const [deadKv] = (await admin.range({ key: deadKey })).kvs;
      await admin.leaseRevoke({ ID: deadKv!.lease });
      // Its process lives on here: its wait goes on, on a new lease, behind `last`.
      await eventually(async () => {
        const q = await queue(name);
        return q.length === 3 && !q.includes(deadKey);
      }, 3000, 'the waiter back in line on a new lease');
      await sleep(300);
      expect(lastLock, 'granted while the holder still holds').to.equal(undefined);
      expect(held.signal.aborted).to.equal(false);
      await held.release();
      await lastWait;
      expect(lastLock!.fence > held.fence).to.equal(true);
      await sleep(200);
      expect(dyingLock, 'the waiter that joined again granted before the one ahead of it').to.equal(undefined);
      await lastLock!.release();
      await dyingWait;
      expect(dyingLock!.fence > lastLock!.fence).to.equal(true);
      await dyingLock!.release();
      await Promise.all([holder, dying, last].map((l) => l!.close()));
    });

    it('a waiter whose lease expires while queued is rejected, never granted (etcd 3.4 Go mutex double grant)', async () => {
      const key = fresh('expires-queued');
      const [holder, waiter] = await Promise.all([0, 1].map(async () => new EtcdLocker(await connect())));
      const held = await holder!.acquire(key, { ttlMs: 10_000 });
      // autoExtend: false gives the waiter a lease nobody renews: it runs out in 2 s, while queued.
      const start = performance.now();
      const err = await rejection(waiter!.acquire(key, { ttlMs: 2000, autoExtend: false }));
      expect(err).to.be.instanceOf(LockLostError);
      expect((err as LockLostError).reason).to.equal('session-expired');
      expect((err as LockLostError).key).to.equal(key);
      expect(performance.now() - start).to.be.below(5000);
      expect(held.signal.aborted).to.equal(false);
      // The wait rejects at once; its key goes in the background (here: its own lease is revoked).
      await eventually(async () => (await queue(holder!.lockName(key))).length === 1, 2000, 'the waiter\'s key deleted');
      expect(await queue(holder!.lockName(key))).to.deep.equal([held.token]);
      await held.release();
      await Promise.all([holder!.close(), waiter!.close()]);
    });

    it('signals loss when the lease is revoked behind the lock\'s back', async () => {
      const locker = new EtcdLocker(await connect());
      const lock = await locker.acquire(fresh('revoked'), { ttlMs: 2000 });
      await admin.leaseRevoke({ ID: leaseOf(lock) });
      await eventually(() => lock.signal.aborted, 4000, 'loss signal');
      expect(lock.signal.reason).to.be.instanceOf(LockLostError);
      expect((lock.signal.reason as LockLostError).reason).to.equal('session-expired');
      await lock.release(); // harmless after a loss
      // The locker replaces the lost session: the next lock has a new lease.
      const next = await locker.acquire(fresh('revoked'), { ttlMs: 2000 });
      expect(leaseOf(next)).to.not.equal(leaseOf(lock));
      await locker.close();
    });

    it('excludes and is excluded by `etcdctl lock` (both directions)', async () => {
      const key = fresh('interop');
      const locker = new EtcdLocker(await connect());
      const name = locker.lockName(key);
      expect(name).to.equal(`wirelock/${key}`);
      // etcdctl first: we wait for it.
      const ctl = etcdctlLock(etcd.endpoints, name);
      const ctlKey = await ctl.acquired;
      expect(ctlKey).to.match(new RegExp(`^${name}/[0-9a-f]+$`));
      expect(await locker.tryAcquire(key)).to.equal(null);
      let ours: Lock | undefined;
      const waiting = locker.acquire(key).then((l) => (ours = l));
      await sleep(300);
      expect(ours).to.equal(undefined);
      await ctl.stop();
      await waiting;
      expect(await queue(name)).to.deep.equal([ours!.token]);
      // We first: etcdctl waits for us.
      const ctl2 = etcdctlLock(etcd.endpoints, name);
      let ctl2Got = false;
      void ctl2.acquired.then(() => (ctl2Got = true));
      await eventually(async () => (await queue(name)).length === 2, 5000, 'etcdctl queued');
      await sleep(200);
      expect(ctl2Got).to.equal(false);
      await ours!.release();
      await ctl2.acquired;
      await ctl2.stop();
      await locker.close();
    });

    it('queues two acquires of one key through one locker locally instead of sharing the lock', async () => {
      const locker = new EtcdLocker(await connect());
      const key = fresh('local');
      const first = await locker.acquire(key);
      let second: Lock | undefined;
      const waiting = locker.acquire(key).then((l) => (second = l));
      await sleep(200);
      expect(second).to.equal(undefined);
      expect(await locker.tryAcquire(key)).to.equal(null);
      await first.release();
      await waiting;
      expect(second!.token).to.equal(first.token); // same session, same etcd key...
      expect(second!.fence > first.fence).to.equal(true); // ...but a new incarnation of it
      expect(await queue(locker.lockName(key))).to.deep.equal([second!.token]);
      await second!.release();
      await locker.close();
    });

    it('gives up at waitTimeoutMs or on abort, taking its key out of the queue', async () => {
      const key = fresh('timeout');
      const [holder, waiter] = await Promise.all([0, 1].map(async () => new EtcdLocker(await connect())));
      const held = await holder!.acquire(key);
      const start = performance.now();
      const err = await rejection(waiter!.acquire(key, { waitTimeoutMs: 200 }));
      expect(err).to.be.instanceOf(LockTimeoutError);
      expect(performance.now() - start).to.be.within(150, 2000);
      // The wait rejects at its deadline; its key is deleted right after, in the background.
      await eventually(async () => (await queue(holder!.lockName(key))).length === 1, 2000, 'the waiter\'s key deleted');
      expect(await queue(holder!.lockName(key))).to.deep.equal([held.token]);
      // 0 means one attempt: held elsewhere, so LockTimeoutError, and nothing left queued.
      expect(await rejection(waiter!.acquire(key, { waitTimeoutMs: 0 }))).to.be.instanceOf(LockTimeoutError);
      expect(await queue(holder!.lockName(key))).to.deep.equal([held.token]);
      const free = await waiter!.acquire(fresh('free'), { waitTimeoutMs: 0 });
      await free.release();
      const controller = new AbortController();
      const aborted = waiter!.acquire(key, { signal: controller.signal });
      await eventually(async () => (await queue(holder!.lockName(key))).length === 2, 3000, 'queued');
      const reason = new Error('changed my mind');
      controller.abort(reason);
      expect(await rejection(aborted)).to.equal(reason);
      await eventually(async () => (await queue(holder!.lockName(key))).length === 1, 3000, 'key removed');
      await held.release();
      await Promise.all([holder!.close(), waiter!.close()]);
    });

    it('rounds ttlMs up to whole seconds (min 2 s), one session per TTL', async () => {
      const locker = new EtcdLocker(await connect());
      const a = await locker.acquire(fresh('ttl'), { ttlMs: 100 });
      const b = await locker.acquire(fresh('ttl'), { ttlMs: 2500 });
      const c = await locker.acquire(fresh('ttl'), { ttlMs: 2001 });
      expect((await admin.leaseTimeToLive({ ID: leaseOf(a) })).grantedTTL).to.equal(2n);
      expect((await admin.leaseTimeToLive({ ID: leaseOf(b) })).grantedTTL).to.equal(3n);
      expect(leaseOf(c)).to.equal(leaseOf(b));
      expect(a.validUntil - performance.now()).to.be.within(1000, 2000);
      await locker.close();
      expect((await admin.leaseTimeToLive({ ID: leaseOf(a) })).TTL).to.equal(-1n); // close() revokes
    });

    it('autoExtend: false expires after its TTL unless extend() renews it', async () => {
      const locker = new EtcdLocker(await connect());
      const kept = await locker.acquire(fresh('manual'), { ttlMs: 2000, autoExtend: false });
      const dropped = await locker.acquire(fresh('manual'), { ttlMs: 2000, autoExtend: false });
      const before = kept.validUntil;
      await sleep(1000);
      await kept.extend();
      expect(kept.validUntil).to.be.above(before + 500);
      await eventually(() => dropped.signal.aborted, 3000, 'expiry');
      expect(dropped.signal.reason).to.be.instanceOf(LockLostError);
      expect(kept.signal.aborted).to.equal(false);
      await kept.release();
      await locker.close();
    });

    it('using() releases; close() releases and refuses new acquires; guarded writes via ownerCompare()', async () => {
      const client = await connect();
      const locker = new EtcdLocker(client, { prefix: 'app/' });
      const key = fresh('using');
      const result = await locker.using(key, async (lock) => {
        expect(lock.token.startsWith(`app/${key}/`)).to.equal(true);
        const w = await client.txn({ compare: [ownerCompare(lock)], success: [{ request_put: { key: `data/${key}`, value: '1' } }] });
        return w.succeeded;
      });
      expect(result).to.equal(true);
      expect(await queue(`app/${key}`)).to.deep.equal([]);
      const held = await locker.acquire(key);
      await locker.close();
      expect(held.signal.aborted).to.equal(true);
      expect(await queue(`app/${key}`)).to.deep.equal([]);
      expect(await rejection(locker.acquire(key))).to.be.instanceOf(ClosedError);
    });

    it('publishes lock events for etcd', async () => {
      const seen: string[] = [];
      const onAcquire = (m: unknown): void => void seen.push(`acquire:${(m as { backend: string }).backend}`);
      const onWait = (m: unknown): void => void seen.push(`wait:${(m as { backend: string }).backend}`);
      dc.subscribe('wirelock:lock:acquire', onAcquire);
      dc.subscribe('wirelock:lock:wait', onWait);
      try {
        const [a, b] = await Promise.all([0, 1].map(async () => new EtcdLocker(await connect())));
        const key = fresh('events');
        const held = await a!.acquire(key);
        const waiting = b!.acquire(key);
        await eventually(() => seen.includes('wait:etcd'), 3000, 'wait event');
        await held.release();
        await (await waiting).release();
        await Promise.all([a!.close(), b!.close()]);
      } finally {
        dc.unsubscribe('wirelock:lock:acquire', onAcquire);
        dc.unsubscribe('wirelock:lock:wait', onWait);
      }
      expect(seen.filter((s) => s === 'acquire:etcd')).to.have.length(2);
    });

    it('rejects bad arguments at once', async () => {
      const client = await connect();
      const locker = new EtcdLocker(client);
      expect(() => new EtcdLocker({} as never)).to.throw(TypeError, /EtcdClient/);
      expect(() => new EtcdLocker(client, { ttlMs: 0 })).to.throw(RangeError);
      expect(() => new EtcdLocker(client, { prefix: 5 as never })).to.throw(TypeError);
      for (const [call, type] of [
        [() => locker.acquire(''), TypeError],
        [() => locker.acquire(5 as never), TypeError],
        [() => locker.acquire('k', { ttlMs: NaN }), RangeError],
        [() => locker.acquire('k', { ttlMs: -1 }), RangeError],
        [() => locker.acquire('k', { waitTimeoutMs: -1 }), RangeError],
        [() => locker.tryAcquire('k', { ttlMs: Infinity }), RangeError],
        [() => locker.acquire('k', { signal: {} as never }), TypeError],
        [() => Session.create(client, { ttlMs: 0 }), RangeError],
        [() => Session.create(client, { leaseId: 5 as never }), TypeError],
      ] as const) {
        const err = await rejection((async () => (call as () => Promise<unknown>)())());
        expect(err).to.be.instanceOf(type);
      }
      const session = await Session.create(client, { ttlMs: 2000 });
      expect(() => new Mutex(session, '')).to.throw(TypeError);
      expect(() => new Mutex({} as never, 'x')).to.throw(TypeError);
      const m = new Mutex(session, fresh('bad'));
      expect(await rejection(m.lock({ waitTimeoutMs: NaN }))).to.be.instanceOf(RangeError);
      await session.close();
      expect(await rejection(m.lock())).to.be.instanceOf(LockLostError);
      await locker.close();
    });
  });
});
