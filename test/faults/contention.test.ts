/**
 * Fault suite, fast subset (runs in `npm test`): scenario 1 (contention, no faults) at a small size,
 * for every backend. `npm run test:faults` runs it at full size (contention.fault.ts).
 */
import { suiteServers } from '../support/faults-env.js';
import { expect } from 'chai';
import { contention, runContention } from './scenarios/contention.js';

describe('faults (fast): 1. contention between worker processes, no faults', function () {
  this.timeout(60_000);
  const servers = suiteServers({ redis: 3, etcd: 1 });

  const size = { workers: 4, iterations: 25, holdMs: 1, ttlMs: 5000 };
  it('RedisLocker: 4 processes × 25', () => contention(servers.redis.env('redis'), 'c-redis', size, 'RedisLocker 4×25'));
  it('Redlock (3 nodes): 4 processes × 25', () => contention(servers.redis.env('redlock'), 'c-redlock', size, 'Redlock/3 4×25'));
  it('EtcdLocker: 4 processes × 25', () => contention(servers.etcd.env, 'c-etcd', size, 'EtcdLocker 4×25'));

  it('the same checks fail for a lock that excludes nothing (they are not tautologies)', async () => {
    const broken = { ...servers.redis.env('redis'), backend: 'unlocked' as const };
    const r = await runContention(broken, 'c-unlocked', { ...size, holdMs: 3 }, 'no lock at all 4×25');
    expect(r.overlaps, 'overlaps').to.be.above(0);
    expect(r.violations.length, 'model violations').to.be.above(0);
    expect(r.refused, 'fenced accesses refused').to.be.above(0);
    expect(r.counter, 'plain counter').to.be.below(r.total);
    // Yet the fence kept the resource itself consistent: no accepted write was lost.
    expect(r.resource.value, 'fenced resource').to.equal(r.accepted);
  });
});
