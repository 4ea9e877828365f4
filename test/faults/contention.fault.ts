/**
 * Fault suite, full run only (`npm run test:faults`): scenario 1 at full size, 8 processes × 200
 * iterations, for RedisLocker, Redlock on 3 and on 5 nodes, and EtcdLocker.
 */
import { suiteServers } from '../support/faults-env.js';
import { contention } from './scenarios/contention.js';

describe('faults: 1. contention, 8 processes × 200 iterations, no faults', function () {
  this.timeout(180_000);
  const servers = suiteServers({ redis: 5, etcd: 1 });

  const size = { workers: 8, iterations: 200, holdMs: 1, ttlMs: 5000 };
  it('RedisLocker', () => contention(servers.redis.env('redis'), 'full-redis', size, 'RedisLocker 8×200'));
  it('Redlock, 3 nodes', () => contention(servers.redis.env('redlock', servers.redis.nodes.slice(0, 3).map((s) => s.url)), 'full-redlock3', size, 'Redlock/3 8×200'));
  it('Redlock, 5 nodes', () => contention(servers.redis.env('redlock'), 'full-redlock5', size, 'Redlock/5 8×200'));
  it('EtcdLocker', () => contention(servers.etcd.env, 'full-etcd', size, 'EtcdLocker 8×200'));
});
