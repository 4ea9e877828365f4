/**
 * The one interface every backend implements (RedisLocker, Redlock, EtcdLocker).
 */

export interface AcquireOptions {
  /** Lease length in ms. Default: the locker's `ttlMs`, else 10000. etcd rounds up to whole seconds (min 2 s). */
  ttlMs?: number;
  /** Give up waiting after this many ms and reject with LockTimeoutError. Default Infinity. */
  waitTimeoutMs?: number;
  /** Aborts the wait; the acquire rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Default true: the lease is extended in the background (about every ttl/3) until release() or loss. */
  autoExtend?: boolean;
}

export interface Lock extends AsyncDisposable {
  readonly key: string;
  /** Unguessable holder identity (>= 128 random bits), or for etcd the lock's own key. */
  readonly token: string;
  /** Fencing token: strictly increasing per key across holders. Pass it to the resource you protect. */
  readonly fence: bigint;
  /** Aborted when the lock is lost (reason: LockLostError) or released (reason: LockReleasedError). */
  readonly signal: AbortSignal;
  /** performance.now() deadline up to which the hold is guaranteed (moved forward by each extension). */
  readonly validUntil: number;
  /** Extends the lease (by `ttlMs`, default the acquire's). Rejects with LockLostError if no longer held. */
  extend(ttlMs?: number): Promise<void>;
  /** Idempotent. Never deletes another holder's lock. */
  release(): Promise<void>;
}

export interface Locker {
  /** Waits until the lock is held (or waitTimeoutMs / signal ends the wait). */
  acquire(key: string, opts?: AcquireOptions): Promise<Lock>;
  /** One attempt: the lock, or null if someone else holds it. */
  tryAcquire(key: string, opts?: AcquireOptions): Promise<Lock | null>;
  /**
   * Acquires, runs fn, always releases. fn's error wins over a release error. If the lock was lost
   * before fn settled, rejects with that LockLostError: the section was not exclusive to the end.
   */
  using<T>(key: string, fn: (lock: Lock) => Promise<T>, opts?: AcquireOptions): Promise<T>;
  /** Releases what it holds, stops its timers, rejects its pending acquires. Does not close the client. */
  close(): Promise<void>;
}

export interface LockerOptions {
  /** Prefix of every key (and channel) this locker writes. Default 'wirelock:' (etcd: 'wirelock/'). */
  prefix?: string;
  /** Default lease length for acquires that do not give one. Default 10000. */
  ttlMs?: number;
}
