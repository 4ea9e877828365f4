/**
 * Fault suite, fast subset (runs in `npm test`): the holder's process fails, RedisLocker only.
 * `npm run test:faults` runs these for every backend (holder.fault.ts).
 */
import { suiteServers } from '../support/faults-env.js';
import { clockJump, killedHolder, pausedHolder } from './scenarios/holder.js';

describe('faults (fast): the holder process fails (RedisLocker)', function () {
  this.timeout(40_000);
  const servers = suiteServers({ redis: 1 });

  it('2. holder paused (SIGSTOP) for 2×TTL: its signal aborts on resume, its fenced write is refused, no lost update', () =>
    pausedHolder(servers.redis.env('redis'), 'h-paused', 1000, 'RedisLocker, TTL 1 s'));
  it('6. holder under faketime, wall clock +1 h then -1 h: it keeps extending, validity unaffected', () =>
    clockJump(servers.redis.env('redis'), 'h-clock', 1000, 'RedisLocker, TTL 1 s'));
  it('9. holder killed (SIGKILL): a waiter gets the lock within TTL + 500 ms, not before validUntil', () =>
    killedHolder(servers.redis.env('redis'), 'h-killed', 1000, 500, 'RedisLocker, TTL 1 s'));
});
