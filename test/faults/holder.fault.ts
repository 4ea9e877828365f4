/**
 * Fault suite, full run only (`npm run test:faults`): the holder's process fails, for every backend.
 * 2. paused (SIGSTOP) for 2×TTL; 6. its wall clock jumps ±1 h (faketime --exclude-monotonic), and what
 * happens when its monotonic clock itself jumps; 6c. (Redlock) a contender's wall clock an hour behind;
 * 9. killed (SIGKILL).
 */
import { suiteServers, type Env } from '../support/faults-env.js';
import { clockJump, killedHolder, monotonicFaked, pausedHolder, skewedClockWaiter } from './scenarios/holder.js';

describe('faults: the holder process fails', function () {
  this.timeout(60_000);
  const servers = suiteServers({ redis: 3, etcd: 1 });

  // Redis TTLs of 1 s; etcd's shortest lease is 2 s (and it renews every TTL/3).
  const backends: Array<[string, () => Env, number, number]> = [
    ['RedisLocker', () => servers.redis.env('redis'), 1000, 500],
    ['Redlock/3', () => servers.redis.env('redlock'), 1000, 500],
    ['EtcdLocker', () => servers.etcd.env, 2000, 1000],
  ];
  for (const [name, env, ttlMs, slackMs] of backends) {
    describe(name, () => {
      it('2. holder paused (SIGSTOP) for 2×TTL: its signal aborts on resume, its fenced write is refused, no lost update', () =>
        pausedHolder(env(), `${name}-paused`, ttlMs, `${name}, TTL ${ttlMs} ms`));
      it('6. holder under faketime, wall clock +1 h then -1 h: it keeps extending, validity unaffected', () =>
        clockJump(env(), `${name}-clock`, name === 'EtcdLocker' ? 3000 : ttlMs, `${name}`));
      it(`9. holder killed (SIGKILL): a waiter gets the lock within TTL + ${slackMs} ms, not before validUntil`, () =>
        killedHolder(env(), `${name}-killed`, ttlMs, slackMs, `${name}, TTL ${ttlMs} ms`));
    });
  }

  it('6c. Redlock/3: a waiter whose wall clock is 1 h behind does not go ahead of one that came 1.5 s before it', () =>
    skewedClockWaiter(servers.redis.env('redlock'), 'skewed-waiter', 10_000, 'Redlock/3'));

  describe('6b. a faked MONOTONIC clock (documented, not protected against)', () => {
    it('+1 h: every timer is overdue: the holder gives the lock up at once', () =>
      monotonicFaked(servers.redis.env('redis'), 'mono-forward', 1000, '+1h', 'RedisLocker, TTL 1 s'));
    it('-1 h: the holder is never told its lease ran out; another process takes the lock; Node.js aborts at the holder\'s next timer', () =>
      monotonicFaked(servers.redis.env('redis'), 'mono-back', 1000, '-1h', 'RedisLocker, TTL 1 s'));
    it('half speed: the holder believes in its lock too long; only the fence refuses its write', () =>
      monotonicFaked(servers.redis.env('redis'), 'mono-slow', 1000, 'x0.5', 'RedisLocker, TTL 1 s'));
  });
});
