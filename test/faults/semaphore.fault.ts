/**
 * Fault suite, full run only (`npm run test:faults`): counting semaphores (limit 2, five worker
 * processes) when things fail: (a) a holder paused past its TTL, (b) a holder killed, (c) the server
 * paused, (d) the etcd leader killed. Each history is checked by checkPermits (the model checker for
 * k holders) for moments over the limit, repeated fences and fence regressions.
 */
import { suiteServers } from '../support/faults-env.js';
import { leaderKilledUnderContention, pausedServerUnderContention } from './scenarios/contended.js';
import { killedPermitHolder, pausedPermitHolder, SEMAPHORE } from './scenarios/semaphore.js';

describe('faults: semaphores, limit 2, 5 processes', function () {
  this.timeout(90_000);

  describe('RedisSemaphore', () => {
    const servers = suiteServers({ redis: 1 });
    const ttlMs = 1000;
    it('(a) holder paused (SIGSTOP) for 2×TTL: its permit goes to a waiter after its validUntil, its signal aborts on resume, its fenced write is refused', () =>
      pausedPermitHolder(servers.redis.env('redis'), 'sem-paused', ttlMs, `RedisSemaphore, TTL ${ttlMs} ms`));
    it('(b) holder killed (SIGKILL): its permit comes back within TTL + 500 ms, to the first in line alone', () =>
      killedPermitHolder(servers.redis.env('redis'), 'sem-killed', ttlMs, 500, `RedisSemaphore, TTL ${ttlMs} ms`));
    it('(c) Redis paused for 2×TTL under contention: holders told by their validUntil, nothing granted meanwhile, service back after SIGCONT', () =>
      pausedServerUnderContention(SEMAPHORE, servers.redis.env('redis'), servers.redis.nodes[0]!, 'sem-server-paused',
        { ttlMs, pauseMs: 2 * ttlMs, recoveryMs: ttlMs + 4000, clientOptions: { commandTimeoutMs: 500 } }, 'RedisSemaphore'));
  });

  // etcd's shortest lease is 2 s.
  describe('EtcdSemaphore', () => {
    const servers = suiteServers({ etcd: 1 });
    const ttlMs = 2000;
    it('(a) holder paused (SIGSTOP) for 2×TTL: its permit goes to a waiter after its validUntil, its signal aborts on resume, its fenced write is refused', () =>
      pausedPermitHolder(servers.etcd.env, 'sem-paused', ttlMs, `EtcdSemaphore, TTL ${ttlMs} ms`));
    it('(b) holder killed (SIGKILL): its permit comes back within TTL + 1000 ms, to the first in line alone', () =>
      killedPermitHolder(servers.etcd.env, 'sem-killed', ttlMs, 1000, `EtcdSemaphore, TTL ${ttlMs} ms`));
    it('(c) its only member paused for 2×TTL under contention: holders told by their validUntil, nothing granted meanwhile, service back after SIGCONT', () =>
      pausedServerUnderContention(SEMAPHORE, servers.etcd.env, servers.etcd.cluster.members[0]!, 'sem-server-paused',
        { ttlMs, pauseMs: 2 * ttlMs, recoveryMs: ttlMs + 6000, clientOptions: { callTimeoutMs: 1000 } }, 'EtcdSemaphore'));
  });

  describe('EtcdSemaphore on a 3-member cluster', () => {
    const servers = suiteServers({ etcd: 3 });
    it('(d) leader killed under contention: no moment over the limit, every contender holds again', () =>
      leaderKilledUnderContention(SEMAPHORE, servers.etcd.cluster, servers.etcd.env, 'sem-leader-kill', 3000, 'EtcdSemaphore'));
  });
});
