/**
 * The one interface every backend implements (RedisLocker, Redlock, EtcdLocker).
 */

/** Options for one {@link Locker.acquire}, {@link Locker.tryAcquire} or {@link Locker.using} call. */
export interface AcquireOptions {
  /**
   * Lease length in ms. etcd rounds up to whole seconds (min 2 s).
   * @defaultValue the locker's `ttlMs`, else 10000
   */
  ttlMs?: number;
  /**
   * Give up waiting after this many ms and reject with LockTimeoutError; 0 means one attempt.
   * @defaultValue `Infinity`
   */
  waitTimeoutMs?: number;
  /** Aborts the wait; the acquire rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * When true, the lease is extended in the background (about every ttl/3) until release() or loss.
   * @defaultValue `true`
   */
  autoExtend?: boolean;
}

/**
 * A held lock, as an acquire hands it out. `await using lock = await locker.acquire(key)` releases
 * it at the end of the block.
 */
export interface Lock extends AsyncDisposable {
  /** The key it was acquired under (without the locker's prefix). */
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

/** What every locker does: acquire, try, run a function under a lock, close. */
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

/** Options of a RedisLocker, Redlock or EtcdLocker, given to its constructor. */
export interface LockerOptions {
  /**
   * Prefix of every key (and channel) this locker writes. For Redis it must not contain `{` or `}`.
   * @defaultValue `'wirelock:'` (EtcdLocker: `'wirelock/'`)
   */
  prefix?: string;
  /**
   * Default lease length in ms for acquires that do not give one.
   * @defaultValue `10000`
   */
  ttlMs?: number;
}

/**
 * Replication confirmations, for the lockers on one Redis master (RedisLocker, RedisSemaphore,
 * RedisRWLock), e.g. one that Sentinel manages: Redis replicates asynchronously, so a grant the
 * master gave may be missing on the replica a failover promotes. WAIT narrows that window.
 */
export interface ReplicaOptions {
  /**
   * How many replicas must acknowledge each grant and each extension (WAIT, sent right behind the
   * script on the same connection) before it counts. An unconfirmed grant is taken back and is a
   * failed attempt (ReplicaError); an unconfirmed extension does not move `validUntil`. 0: no WAIT.
   * @defaultValue `0`
   */
  minReplicas?: number;
  /**
   * How long WAIT waits for the acknowledgements, in ms.
   * @defaultValue `100`
   */
  replicaTimeoutMs?: number;
}

/** Options of RedisLocker and RedisRWLock: a locker's, plus replication confirmations. */
export interface RedisLockerOptions extends LockerOptions, ReplicaOptions {}

/** Options of a semaphore: a locker's, plus how many holders one key admits. */
export interface SemaphoreOptions extends LockerOptions {
  /** How many holders one key admits at once: an integer >= 1. Required. */
  limit: number;
}
