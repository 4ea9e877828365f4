/**
 * The messages between the demo (parent) and its worker processes, over the fork() IPC channel: the
 * lock workers (demo-worker.ts) and, below, the election scene's processes (demo-election-worker.ts).
 *
 * The parent also plays the protected resource: a counter that accepts reads and writes only with a
 * fence at least as high as any fence it has seen (see FencedCounter in demo-scenario.ts). Keeping it
 * in the one parent process makes each check-and-apply atomic, as a real fenced store would.
 *
 * bigints (fences, process.hrtime.bigint() stamps) travel as decimal strings: IPC is JSON.
 */

/**
 * 'sentinel': a RedisLocker on a `redis+sentinel://` URL (the client follows failovers);
 * 'cluster': a RedisLocker on a RedisCluster (urls are its seeds).
 */
export type Backend = 'redis' | 'redlock' | 'etcd' | 'sentinel' | 'cluster';

export interface ScenarioConfig {
  backend: Backend;
  /** Redis URLs (one for RedisLocker or Sentinel, several for Redlock, a Cluster's seeds) or etcd endpoints. */
  urls: string[];
  key: string;
  ttlMs: number;
  /** Time spent "working" inside the critical section, between the read and the write. */
  holdMs: number;
  /** Up to this long (random) between a release and the next acquire. */
  thinkMs: number;
}

export type ToWorker =
  | { type: 'start'; config: ScenarioConfig }
  | { type: 'go' }
  /** On your next hold, stop for a moment between the ownership check and the write (the parent SIGSTOPs you). */
  | { type: 'victim' }
  | { type: 'stop' }
  | { type: 'exit' }
  | { type: 'reply'; id: number; ok: boolean; value: number; highest: string };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'read'; id: number; fence: string }
  | { type: 'write'; id: number; fence: string; value: number }
  /** The victim checked it still holds the lock and is about to write: the moment to freeze it. */
  | { type: 'in-section'; fence: string }
  | { type: 'hold'; hold: HoldReport }
  | { type: 'error'; message: string }
  | { type: 'stopped' };

export interface HoldReport {
  worker: number;
  fence: string;
  /** process.hrtime.bigint() stamps: asked for the lock, got it, done writing. */
  requested: string;
  enter: string;
  exit: string;
  /** lock.validUntil on the same clock: the end of the guaranteed hold. */
  validUntil: string;
  /** What the store said: 'ok', or 'refused' (stale fence on the read or the write). */
  write: 'ok' | 'refused';
  /** Set when lock.signal was aborted with a LockLostError before release (its reason). */
  lost?: string;
}

/* The election scene: services campaign for one election, observers watch it (demo-election-worker.ts). */

export type ElectionBackend = 'etcd' | 'redis';

export interface ElectionConfig {
  backend: ElectionBackend;
  /** The Redis URL, or the etcd endpoints. */
  urls: string[];
  /** The election's name. */
  name: string;
  ttlMs: number;
  /** The leader's work: a heartbeat with its term, written to the fenced store this often. */
  beatMs: number;
}

/** What an observer saw: a leader's term and value (its service's name), or nobody. */
export type Seen = { fence: string; value: string } | null;

export type ToElector =
  /** Connect and start observing; say 'ready' once the first observation is in. */
  | { type: 'start'; config: ElectionConfig }
  | { type: 'campaign' }
  /** Stop campaigning and observing; resign if leading; close the connection. */
  | { type: 'stop' }
  | { type: 'exit' };

export type FromElector =
  | { type: 'ready' }
  | { type: 'observed'; seen: Seen; at: string }
  | { type: 'campaigning'; at: string }
  /** campaign() resolved at `at`. */
  | { type: 'leading'; fence: string; at: string; validUntil: string }
  /** One heartbeat of leader work, with the leadership's validUntil at that moment. */
  | { type: 'beat'; fence: string; at: string; validUntil: string }
  /** The leadership ended without a resign (its signal aborted with LockLostError). */
  | { type: 'lost'; fence: string; at: string; reason: string }
  /** resign() was called at `at` (the leader stopped its work then) and has been answered. */
  | { type: 'resigned'; fence: string; at: string }
  | { type: 'error'; message: string }
  | { type: 'stopped' };
