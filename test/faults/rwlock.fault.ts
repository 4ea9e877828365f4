/**
 * Fault suite, full run only (`npm run test:faults`): read-write locks (`read` and `write` on one
 * key) when a holder or the server fails: (a) a writer paused past its TTL while readers and writers
 * contend, (b) a reader killed while a writer waits, (c) the server paused under contention, (d) the
 * etcd leader killed under contention. Each history is checked by checkReadWrite (no writer
 * beside anyone) and by checkPermits for repeated fences and fence regressions.
 */
import { suiteServers } from '../support/faults-env.js';
import { leaderKilledUnderContention, pausedServerUnderContention } from './scenarios/contended.js';
import { killedReader, pausedWriter, RW_LOCK } from './scenarios/rwlock.js';

describe('faults: read-write locks', function () {
  this.timeout(90_000);

  describe('RedisRWLock', () => {
    const servers = suiteServers({ redis: 1 });
    const ttlMs = 1000;
    it('(a) writer paused (SIGSTOP) for 2×TTL under readers and writers: its hold goes to others after its validUntil, its signal aborts on resume, its fenced write is refused', () =>
      pausedWriter(servers.redis.env('redis'), 'rw-paused', ttlMs, `RedisRWLock, TTL ${ttlMs} ms`));
    it('(b) reader killed (SIGKILL): the waiting writer gets in within TTL + 500 ms, the reader behind it waits for its release', () =>
      killedReader(servers.redis.env('redis'), 'rw-killed', ttlMs, 500, `RedisRWLock, TTL ${ttlMs} ms`));
    it('(c) Redis paused for 2×TTL under readers and writers: holders told by their validUntil, nothing granted meanwhile, service back after SIGCONT', () =>
      pausedServerUnderContention(RW_LOCK, servers.redis.env('redis'), servers.redis.nodes[0]!, 'rw-server-paused',
        { ttlMs, pauseMs: 2 * ttlMs, recoveryMs: ttlMs + 4000, clientOptions: { commandTimeoutMs: 500 } }, 'RedisRWLock'));
  });

  // etcd's shortest lease is 2 s.
  describe('EtcdRWLock', () => {
    const servers = suiteServers({ etcd: 1 });
    const ttlMs = 2000;
    it('(a) writer paused (SIGSTOP) for 2×TTL under readers and writers: its hold goes to others after its validUntil, its signal aborts on resume, its fenced write is refused', () =>
      pausedWriter(servers.etcd.env, 'rw-paused', ttlMs, `EtcdRWLock, TTL ${ttlMs} ms`));
    it('(b) reader killed (SIGKILL): the waiting writer gets in within TTL + 1000 ms, the reader behind it waits for its release', () =>
      killedReader(servers.etcd.env, 'rw-killed', ttlMs, 1000, `EtcdRWLock, TTL ${ttlMs} ms`));
    it('(c) its only member paused for 2×TTL under readers and writers: holders told by their validUntil, nothing granted meanwhile, service back after SIGCONT', () =>
      pausedServerUnderContention(RW_LOCK, servers.etcd.env, servers.etcd.cluster.members[0]!, 'rw-server-paused',
        { ttlMs, pauseMs: 2 * ttlMs, recoveryMs: ttlMs + 6000, clientOptions: { callTimeoutMs: 1000 } }, 'EtcdRWLock'));
  });

  describe('EtcdRWLock on a 3-member cluster', () => {
    const servers = suiteServers({ etcd: 3 });
    it('(d) leader killed under readers and writers: never a writer beside anyone, every contender holds again', () =>
      leaderKilledUnderContention(RW_LOCK, servers.etcd.cluster, servers.etcd.env, 'rw-leader-kill', 3000, 'EtcdRWLock'));
  });
});
