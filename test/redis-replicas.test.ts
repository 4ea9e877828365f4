/**
 * minReplicas: a grant (and each extension) counts only once WAIT says that many replicas have it.
 * Real redis-server master and replica. An unconfirmed grant is taken back (nothing is left on the
 * master) and is a ReplicaError, or a LockTimeoutError caused by one within a wait; an extension the
 * replicas do not confirm leaves validUntil where it was, so the lock ends there; the WAIT goes out
 * in the same write as its script, on the same connection.
 */
import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import { LockLostError, LockTimeoutError, RedisClient, RedisLocker, RedisSemaphore, ReplicaError } from '../src/index.js';
import type { RespCommandPayload } from '../src/diagnostics.js';
import { startRedis, type RedisServer } from '../src/testing/servers.js';
import { eventually } from './support/etcd.js';

const noop = (): void => {};

describe('Redis lockers with minReplicas (WAIT)', function () {
  this.timeout(30_000);
  let master: RedisServer;
  let replica: RedisServer;
  let client: RedisClient;

  before(async () => {
    master = await startRedis();
    replica = await startRedis({ args: ['--replicaof', master.host, String(master.port)] });
    client = await RedisClient.connect(master.url);
    await eventually(async () => /connected_slaves:1/.test(String(await client.send(['INFO', 'replication']))), 10_000, 'the replica connected');
    // Past its first full sync: it acknowledges writes.
    await client.send(['SET', 'warm-up', '1']);
    await eventually(async () => (await client.send(['WAIT', 1, 1000])) === 1, 10_000, 'the replica acknowledging');
  });
  after(async () => {
    await client?.close();
    await replica?.stop();
    await master?.stop();
  });

  it('minReplicas 1 with one replica: granted, extended and released; the replica has the lock', async () => {
    const locker = new RedisLocker(client, { minReplicas: 1, replicaTimeoutMs: 1000 });
    await (await locker.acquire('one', { ttlMs: 5000 })).extend().then(noop); // the scripts are loaded: no NOSCRIPT below
    const sent: Array<{ connection: number; name: string }> = [];
    const on = (m: unknown): void => {
      const p = m as RespCommandPayload;
      sent.push({ connection: p.connection, name: String(p.args[0]) });
    };
    dc.subscribe('wirelock:resp:command', on);
    let lock;
    try {
      lock = await locker.acquire('one-more', { ttlMs: 5000 });
      await lock.extend();
    } finally {
      dc.unsubscribe('wirelock:resp:command', on);
    }
    // Each script is followed at once by its WAIT, on the same connection.
    const names = sent.map((s) => s.name);
    expect(names).to.deep.equal(['EVALSHA', 'WAIT', 'EVALSHA', 'WAIT']);
    expect(new Set(sent.map((s) => s.connection)).size).to.equal(1);
    const onReplica = await RedisClient.connect(replica.url);
    try {
      expect(await onReplica.send(['GET', 'wirelock:{one-more}'])).to.equal(lock.token);
    } finally {
      await onReplica.close();
    }
    await lock.release();
    await locker.close();
  });

  it('more replicas than there are: the grant is taken back, ReplicaError (or LockTimeoutError caused by it in a wait)', async () => {
    const locker = new RedisLocker(client, { minReplicas: 2, replicaTimeoutMs: 50 });
    const once = await locker.tryAcquire('two').then(() => undefined, (e: unknown) => e);
    expect(once).to.be.instanceOf(ReplicaError);
    expect(once).to.include({ code: 'WL_REPLICAS', acknowledged: 1, required: 2, key: 'two' });
    await eventually(async () => (await client.send(['EXISTS', 'wirelock:{two}'])) === 0, 2000, 'the unconfirmed grant taken back');

    const start = performance.now();
    const waited = await locker.acquire('two', { waitTimeoutMs: 600 }).then(() => undefined, (e: unknown) => e);
    expect(waited).to.be.instanceOf(LockTimeoutError);
    expect((waited as Error).cause).to.be.instanceOf(ReplicaError);
    expect(performance.now() - start).to.be.within(590, 900);
    await eventually(async () => (await client.send(['EXISTS', 'wirelock:{two}'])) === 0, 2000, 'nothing left');
    await locker.close();
  });

  it('the semaphore takes minReplicas too', async () => {
    const s = new RedisSemaphore(client, { limit: 2, minReplicas: 2, replicaTimeoutMs: 50 });
    expect(await s.tryAcquire('permits').then(() => undefined, (e: unknown) => e)).to.be.instanceOf(ReplicaError);
    await eventually(async () => (await client.send(['ZCARD', 'wirelock:{permits}:sem'])) === 0, 2000, 'the permit taken back');
    await s.close();
  });

  it('a replica that stops acknowledging: extensions do not count, and the lock ends at its validUntil', async () => {
    const locker = new RedisLocker(client, { minReplicas: 1, replicaTimeoutMs: 100 });
    const lock = await locker.acquire('stalls', { ttlMs: 1500 });
    const validUntil = lock.validUntil;
    replica.pause();
    try {
      await eventually(() => lock.signal.aborted, 5000, 'the loss');
      expect((lock.signal.reason as LockLostError).reason).to.equal('expired');
      expect(lock.validUntil, 'validUntil never moved').to.equal(validUntil);
      expect(performance.now() - validUntil).to.be.below(500);
    } finally {
      replica.resume();
    }
    await locker.close();
  });

  it('rejects bad minReplicas and replicaTimeoutMs', () => {
    for (const opts of [{ minReplicas: -1 }, { minReplicas: 1.5 }, { replicaTimeoutMs: 0 }, { replicaTimeoutMs: Infinity }]) {
      expect(() => new RedisLocker(client, opts)).to.throw(RangeError);
    }
  });
});
