/**
 * One locker, many locks at once: 300 held together and 40 waiters queued on one key, for every
 * backend. All waits listen to the locker's close (and, for etcd, to the shared session), so these
 * signals carry hundreds of listeners: that must not print Node's MaxListenersExceededWarning
 * ("possible memory leak") into the user's logs.
 * Also the far end of the TTL range: leases longer than a Node timer can wait.
 */
import dc from 'node:diagnostics_channel';
import { expect } from 'chai';
import { EtcdClient, EtcdLocker, LockTimeoutError, RedisClient, RedisLocker, Redlock, type Lock, type Locker } from '../src/index.js';
import { startEtcd, startRedisNodes, type EtcdServer, type RedisServer } from '../src/testing/servers.js';

describe('one locker, many locks at once', function () {
  this.timeout(60_000);
  let redis: RedisServer[];
  let etcd: EtcdServer;
  const closers: Array<() => Promise<unknown>> = [];
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => void warnings.push(w);
  const make: Record<string, () => Promise<Locker>> = {
    RedisLocker: async () => {
      const c = await RedisClient.connect(redis[0]!.url);
      closers.push(() => c.close());
      return new RedisLocker(c);
    },
    Redlock: async () => {
      const cs = await Promise.all(redis.map((s) => RedisClient.connect(s.url)));
      closers.push(() => Promise.all(cs.map((c) => c.close())));
      return new Redlock(cs);
    },
    EtcdLocker: async () => {
      const c = await EtcdClient.connect({ endpoints: etcd.endpoints });
      closers.push(() => c.close());
      return new EtcdLocker(c);
    },
  };

  before(async () => {
    [redis, etcd] = await Promise.all([startRedisNodes(3), startEtcd()]);
    process.on('warning', onWarning);
  });
  after(async () => {
    process.off('warning', onWarning);
    for (const close of closers) await close();
    await Promise.all([...(redis ?? []).map((s) => s.stop()), etcd?.stop()]);
  });

  for (const backend of Object.keys(make)) {
    it(`${backend}: 300 held and 40 queued on one key, no listener-leak warning, all handed over`, async () => {
      warnings.length = 0;
      const locker = await make[backend]!();
      const other = await make[backend]!();
      try {
        const held: Lock[] = await Promise.all(Array.from({ length: 300 }, (_, i) => locker.acquire(`many:${backend}:${i}`, { ttlMs: 20_000 })));
        expect(new Set(held.map((l) => l.key)).size).to.equal(300);

        // 40 waiters from one locker behind a holder from another, then handed down the line.
        const blocker = await other.acquire(`many:${backend}:line`, { ttlMs: 20_000 });
        let inside = 0;
        let maxInside = 0;
        const waiters = Array.from({ length: 40 }, () =>
          locker.acquire(`many:${backend}:line`, { ttlMs: 20_000, waitTimeoutMs: 30_000 }).then(async (lock) => {
            maxInside = Math.max(maxInside, ++inside);
            await new Promise((r) => setImmediate(r));
            inside--;
            await lock.release();
          }),
        );
        await new Promise((r) => setTimeout(r, 300)); // let every waiter start waiting
        await blocker.release();
        await Promise.all(waiters);
        expect(maxInside).to.equal(1);

        await Promise.all(held.map((l) => l.release()));
        await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
        expect(warnings.map(String)).to.deep.equal([]);
      } finally {
        await Promise.all([locker.close(), other.close()]);
      }
    });

    it(`${backend}: a 30-day TTL (past setTimeout's 24.8-day range) is held, and its waiter does not poll`, async () => {
      warnings.length = 0;
      const locker = await make[backend]!();
      const other = await make[backend]!();
      const month = 30 * 86_400_000;
      let sent = 0;
      const count = (): void => void sent++;
      try {
        const lock = await locker.acquire(`many:${backend}:month`, { ttlMs: month });
        expect(lock.validUntil - performance.now()).to.be.above(month * 0.98); // less the 1% drift allowance
        dc.subscribe('wirelock:resp:command', count);
        dc.subscribe('wirelock:etcd:call', count);
        // Node runs a delay past its range after 1 ms: the lease would end at once, and a waiter
        // would ask the server again every millisecond.
        const err = await other.acquire(`many:${backend}:month`, { ttlMs: month, waitTimeoutMs: 500 }).catch((e: unknown) => e);
        expect(err).to.be.instanceOf(LockTimeoutError);
        expect(sent, 'commands and calls sent while waiting 500 ms').to.be.below(25);
        expect(lock.signal.aborted, String(lock.signal.reason)).to.equal(false);
        await lock.release();
        expect(warnings.map(String)).to.deep.equal([]);
      } finally {
        dc.unsubscribe('wirelock:resp:command', count);
        dc.unsubscribe('wirelock:etcd:call', count);
        await Promise.all([locker.close(), other.close()]);
      }
    });
  }
});
