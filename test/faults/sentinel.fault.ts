/**
 * Fault suite, full run only (`npm run test:faults`): a RedisLocker on a Sentinel-managed master
 * (two replicas, three sentinels) under 8 contending processes, with failovers forced one after
 * another: 10 with minReplicas 0, 10 with minReplicas 2 (every replica); then a master paused until
 * the sentinels replace it, 10 times each way. Double grants are counted and reported for every
 * setting; with every replica confirming each grant, none is expected.
 */
import { expect } from 'chai';
import { RedisClient } from '../../src/index.js';
import { startRedis, startRedisSentinel, type RedisServer, type RedisSentinel } from '../../src/testing/servers.js';
import { RedisResource } from '../support/faults-resource.js';
import { stopAllWorkers } from '../support/faults-workers.js';
import type { Env } from '../support/faults-env.js';
import { failoversUnderContention } from './scenarios/sentinel.js';

describe('faults: Redis Sentinel failovers under contention', function () {
  this.timeout(600_000);
  let setup: RedisSentinel;
  let resourceServer: RedisServer;
  let admin: RedisClient;
  let env: Env;

  before(async () => {
    [setup, resourceServer] = await Promise.all([startRedisSentinel({ replicas: 2, sentinels: 3 }), startRedis()]);
    admin = await RedisClient.connect(resourceServer.url);
    const view = new RedisResource(admin, 'fault:resource');
    env = {
      backend: 'redis',
      urls: [setup.url],
      resource: { kind: 'redis', url: resourceServer.url },
      view,
      counter: async () => Number((await admin.send(['GET', 'fault:counter'])) ?? 0),
      reset: async () => void (await admin.send(['DEL', 'fault:resource', 'fault:counter'])),
    };
  });
  after(async () => {
    await stopAllWorkers();
    await admin?.close();
    await Promise.all([setup?.stop(), resourceServer?.stop()]);
  });

  it('minReplicas 0: 10 failovers; double grants counted and reported, every failover served again', async () => {
    await failoversUnderContention(setup, env, 'failover-0', { failovers: 10, minReplicas: 0, ttlMs: 2000, how: 'forced' }, 'RedisLocker via Sentinel');
  });

  it('minReplicas 2 (every replica): 10 failovers; no double grant (and no grant until every replica is back)', async () => {
    const r = await failoversUnderContention(setup, env, 'failover-2', { failovers: 10, minReplicas: 2, ttlMs: 2000, how: 'forced' }, 'RedisLocker via Sentinel');
    expect(r.doubleGrants, 'double grants with every replica confirming each grant').to.equal(0);
  });

  it('a paused master replaced by the sentinels, minReplicas 0: 10 failovers; double grants counted and reported', async () => {
    await failoversUnderContention(setup, env, 'paused-0', { failovers: 10, minReplicas: 0, ttlMs: 2000, how: 'paused' }, 'RedisLocker via Sentinel');
  });

  it('a paused master replaced by the sentinels, minReplicas 2: 10 failovers; no double grant', async () => {
    const r = await failoversUnderContention(setup, env, 'paused-2', { failovers: 10, minReplicas: 2, ttlMs: 2000, how: 'paused' }, 'RedisLocker via Sentinel');
    expect(r.doubleGrants, 'double grants with every replica confirming each grant').to.equal(0);
  });
});
