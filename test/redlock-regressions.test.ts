/**
 * Redlock regressions, against three real redis-servers. Kept apart from redlock.test.ts so that each
 * can change without the other.
 */
import { expect } from 'chai';
import { RedisClient, Redlock, type Lock } from '../src/index.js';
import { startRedisNodes, type RedisServer } from '../src/testing/servers.js';
import { waitFor } from './support/wait.js';

describe('Redlock regressions', function () {
  let servers: RedisServer[];
  let clients: RedisClient[];
  let admin: RedisClient[];
  let locker: Redlock;
  let keyCount = 0;
  const key = (): string => `rl-reg-${keyCount++}`;
  const lockKey = (k: string): string => `wirelock:{${k}}`;

  /** The lock's PTTL on every node, once every node has it (acquire resolves at a quorum). */
  async function pttls(k: string): Promise<number[]> {
    let values: number[] = [];
    await waitFor(
      async () => {
        values = (await Promise.all(admin.map((c) => c.send(['PTTL', lockKey(k)])))) as number[];
        return values.every((v) => v > 0);
      },
      2000,
      `the lock on every node (PTTLs ${JSON.stringify(values)})`,
    );
    return values;
  }

  before(async () => {
    servers = await startRedisNodes(3);
    clients = await Promise.all(servers.map((s) => RedisClient.connect(s.url)));
    admin = await Promise.all(servers.map((s) => RedisClient.connect(s.url)));
    locker = new Redlock(clients);
  });
  after(async () => {
    await locker?.close();
    await Promise.all([...(clients ?? []), ...(admin ?? [])].map((c) => c.close()));
    await Promise.all((servers ?? []).map((s) => s.stop()));
  });

  describe('a fractional ttlMs is rounded up to whole milliseconds, as RedisLocker does', () => {
    it('acquire holds the lock on every node for about ceil(ttl)', async () => {
      const k = key();
      const lock = await locker.acquire(k, { ttlMs: 1500.5, autoExtend: false });
      try {
        for (const pttl of await pttls(k)) expect(pttl).to.be.above(1000).and.at.most(1501);
      } finally {
        await lock.release();
      }
    });

    it('tryAcquire holds the lock on every node for about ceil(ttl)', async () => {
      const k = key();
      const lock = await locker.tryAcquire(k, { ttlMs: 1500.5, autoExtend: false });
      expect(lock).to.not.equal(null);
      try {
        for (const pttl of await pttls(k)) expect(pttl).to.be.above(1000).and.at.most(1501);
      } finally {
        await lock!.release();
      }
    });

    it('acquire with a deadline, then extend, both with fractional ttls', async () => {
      const k = key();
      const lock: Lock = await locker.acquire(k, { ttlMs: 700.25, waitTimeoutMs: 2000, autoExtend: false });
      try {
        for (const pttl of await pttls(k)) expect(pttl).to.be.above(200).and.at.most(701);
        await lock.extend(2500.5);
        await waitFor(
          async () => ((await Promise.all(admin.map((c) => c.send(['PTTL', lockKey(k)])))) as number[]).every((v) => v > 1000),
          2000,
          'the extension on every node',
        );
        for (const pttl of await pttls(k)) expect(pttl).to.be.above(1000).and.at.most(2501);
      } finally {
        await lock.release();
      }
    });
  });
});
