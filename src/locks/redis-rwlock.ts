/**
 * RedisRWLock: a read-write lock on one Redis server. `read` and `write` are Lockers on the same
 * keys: any number of readers hold a key at once, or one writer.
 *
 * acquire  = EVALSHA RW_ACQUIRE  drop expired holds and lapsed waiters; a writer is granted when
 *                                 nothing is held and no one waits ahead of it, a reader when no writer
 *                                 holds and no writer waits ahead of it; else queue
 * release  = EVALSHA RW_RELEASE  ZREM our hold (only ours: it is named by its token), then PUBLISH the
 *                                 tokens of the waiters who may go now: the head writer, or the run of
 *                                 readers at the head
 * extend   = EVALSHA RW_EXTEND   move our hold's expiry to TIME + ttl, if it is still live
 *
 * Writer-preferring and FIFO: a waiting writer stops every reader that arrives after it, so readers
 * arriving continuously cannot starve a writer; it waits only for the readers already holding. The
 * fence counter serves both modes, so a writer's fence is above those of the readers it waited for.
 * Everything else (queue places, wake-ups, clean-up, extension) is RedisLocker's, as for the semaphore.
 *
 * No upgrade. A read holder that asks for write would wait for every reader to leave, itself
 * included: a deadlock until its wait times out. Within one RedisRWLock that is refused at once with
 * a TypeError (ERR_INVALID_ARG_VALUE) that says so; release the read lock first. Across two
 * RedisRWLocks (or processes) nothing can tell the two holds belong together: the write waits like
 * any other.
 */
import { invalidType, invalidValue } from '../errors.js';
import type { RedisClient } from '../resp/client.js';
import type { RedisCluster } from '../resp/cluster.js';
import { RedisLocker, queueKind, type QueueKind, type RedisLockerInternalOptions } from './redis-locker.js';
import { RW_ACQUIRE, RW_EXTEND, RW_RELEASE, rwKeys } from './redis-scripts.js';
import type { AcquireOptions, Lock, Locker, RedisLockerOptions } from './types.js';

function side(mode: 'r' | 'w'): QueueKind {
  return {
    name: 'RedisRWLock',
    keys: rwKeys,
    acquire: RW_ACQUIRE,
    release: RW_RELEASE,
    extend: RW_EXTEND,
    extraArgs: [mode],
    admits: (message, token) => message.split(' ').includes(token),
  };
}

/** The read side: a RedisLocker on the RW keys that counts which keys it holds, for the write side's check. */
class ReadSide extends RedisLocker {
  readonly #holding = new Map<string, number>();

  constructor(client: RedisClient | RedisCluster, opts: RedisLockerOptions) {
    super(client, { ...opts, [queueKind]: side('r') } as RedisLockerInternalOptions);
  }

  /** Whether a read lock on `key` is held through this side now. */
  holds(key: string): boolean {
    return this.#holding.has(key);
  }

  override async acquire(key: string, opts?: AcquireOptions): Promise<Lock> {
    return this.#track(await super.acquire(key, opts));
  }

  override async tryAcquire(key: string, opts?: AcquireOptions): Promise<Lock | null> {
    const lock = await super.tryAcquire(key, opts);
    return lock && this.#track(lock);
  }

  /** Counts the hold until its signal aborts (released or lost). */
  #track(lock: Lock): Lock {
    this.#holding.set(lock.key, (this.#holding.get(lock.key) ?? 0) + 1);
    lock.signal.addEventListener(
      'abort',
      () => {
        const n = this.#holding.get(lock.key)! - 1;
        if (n === 0) this.#holding.delete(lock.key);
        else this.#holding.set(lock.key, n);
      },
      { once: true },
    );
    return lock;
  }
}

/** The write side: a RedisLocker on the RW keys that refuses to upgrade a read lock of its RWLock. */
class WriteSide extends RedisLocker {
  readonly #reads: ReadSide;

  constructor(client: RedisClient | RedisCluster, opts: RedisLockerOptions, reads: ReadSide) {
    super(client, { ...opts, [queueKind]: side('w') } as RedisLockerInternalOptions);
    this.#reads = reads;
  }

  override acquire(key: string, opts?: AcquireOptions): Promise<Lock> {
    return this.#refuseUpgrade(key) ?? super.acquire(key, opts);
  }

  override tryAcquire(key: string, opts?: AcquireOptions): Promise<Lock | null> {
    return this.#refuseUpgrade(key) ?? super.tryAcquire(key, opts);
  }

  #refuseUpgrade(key: string): Promise<never> | undefined {
    if (!this.#reads.holds(key)) return undefined;
    return Promise.reject(
      invalidValue(
        `write lock on "${key}" asked for while this RedisRWLock holds a read lock on it: an upgrade would wait for every reader, this one included (a deadlock); release the read lock first`,
      ),
    );
  }
}

/**
 * A read-write lock on one Redis server: `read` admits any number of holders of a key at once,
 * `write` one, and never beside a reader. Writer-preferring and first come, first served; every hold
 * is a {@link Lock} with its own token and fence (one counter for both modes); holds expire by the
 * server's clock. Closing it does not close the client.
 */
export class RedisRWLock {
  /** Shared holds: any number at once, none while a writer holds or waits ahead. */
  readonly read: Locker;
  /** Exclusive holds: one at a time, and only when no reader holds. */
  readonly write: Locker;

  constructor(client: RedisClient | RedisCluster, opts: RedisLockerOptions = {}) {
    if (opts === null || typeof opts !== 'object') throw invalidType('locker options must be an object');
    const read = new ReadSide(client, opts);
    this.read = read;
    this.write = new WriteSide(client, opts, read);
  }

  /** Closes both sides: releases what they hold and rejects their pending acquires. */
  async close(): Promise<void> {
    await Promise.all([this.read.close(), this.write.close()]);
  }
}
