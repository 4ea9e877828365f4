/**
 * The messages between the demo (parent) and its worker processes, over the fork() IPC channel.
 *
 * The parent also plays the protected resource: a counter that accepts reads and writes only with a
 * fence at least as high as any fence it has seen (see FencedCounter in demo-scenario.ts). Keeping it
 * in the one parent process makes each check-and-apply atomic, as a real fenced store would.
 *
 * bigints (fences, process.hrtime.bigint() stamps) travel as decimal strings: IPC is JSON.
 */

export type Backend = 'redis' | 'redlock' | 'etcd';

export interface ScenarioConfig {
  backend: Backend;
  /** Redis URLs (one for RedisLocker, several for Redlock) or etcd endpoints. */
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
