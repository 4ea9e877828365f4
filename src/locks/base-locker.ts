/**
 * What every Locker does the same way: `using()`, tracking held locks so `close()` can release them,
 * and aborting pending acquires when the locker closes.
 */
import { ClosedError, LockLostError } from '../errors.js';
import type { AcquireOptions, Lock, Locker } from './types.js';
import { HeldLock } from './held-lock.js';
import { onAbort, sharedController } from '../abort.js';

export abstract class BaseLocker implements Locker {
  /** Locks this locker holds now. */
  protected readonly held = new Set<HeldLock>();
  /** Aborted by close(): every pending wait listens to it. */
  protected readonly closing = sharedController();

  abstract acquire(key: string, opts?: AcquireOptions): Promise<Lock>;
  abstract tryAcquire(key: string, opts?: AcquireOptions): Promise<Lock | null>;

  get closed(): boolean {
    return this.closing.signal.aborted;
  }

  async using<T>(key: string, fn: (lock: Lock) => Promise<T>, opts?: AcquireOptions): Promise<T> {
    if (typeof fn !== 'function') throw new TypeError('using() needs a function to run under the lock');
    const lock = await this.acquire(key, opts);
    let result: T;
    try {
      result = await fn(lock);
    } catch (err) {
      await lock.release().catch(() => {}); // fn's error wins
      throw err;
    }
    const lost = lock.signal.aborted && lock.signal.reason instanceof LockLostError ? lock.signal.reason : undefined;
    await lock.release();
    if (lost) throw lost;
    return result;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closing.abort(new ClosedError(this.constructor.name));
    await Promise.allSettled([...this.held].map((lock) => lock.release()));
    this.held.clear();
  }

  /** Throws ClosedError if close() was called. */
  protected checkOpen(): void {
    if (this.closed) throw this.closing.signal.reason;
  }

  /** Starts tracking a lock; it forgets itself when released or lost. */
  protected track(lock: HeldLock): HeldLock {
    this.held.add(lock);
    return lock;
  }

  protected readonly forget = (lock: HeldLock): void => {
    this.held.delete(lock);
  };

  /**
   * The caller's signal and the locker's own close, as one signal for a wait. Call `dispose` when the
   * wait ends: it removes the listeners (AbortSignal.any would keep them on the long-lived close signal).
   */
  protected linkSignals(signal: AbortSignal | undefined): {
    signal: AbortSignal;
    abort: (reason: unknown) => void;
    dispose: () => void;
  } {
    const controller = new AbortController();
    const abort = (reason: unknown): void => controller.abort(reason);
    const offCaller = onAbort(signal, abort);
    const offClose = onAbort(this.closing.signal, abort);
    return {
      signal: controller.signal,
      abort,
      dispose: () => {
        offCaller();
        offClose();
      },
    };
  }
}
