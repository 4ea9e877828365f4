/**
 * What every Locker does the same way: `using()`, tracking held locks so `close()` can release them,
 * running waits through the one waiting engine, and refusing locks once the locker is closed.
 */
import { ClosedError, LockLostError, LockTimeoutError, invalidType } from '../errors.js';
import type { LockBackend } from '../diagnostics.js';
import type { AcquireOptions, Lock, Locker } from './types.js';
import { HeldLock } from './held-lock.js';
import { noop, sharedController } from '../abort.js';
import type { ResolvedAcquire } from './options.js';
import { gaveUp, waitFor, type Wait } from './waiting.js';

/** The part every Locker shares: using(), close() and the bookkeeping of held locks. Not exported from the package. */
export abstract class BaseLocker implements Locker {
  /** @internal Which backend, for the lock channels (waits and give-ups are published by the waiting engine). */
  protected readonly backend: LockBackend;
  /** @internal Locks this locker holds now. */
  protected readonly held = new Set<HeldLock>();
  /** @internal Aborted by close(): every pending wait listens to it. */
  protected readonly closing = sharedController();

  /** @internal */
  constructor(backend: LockBackend) {
    this.backend = backend;
  }

  /** Waits until the lock is held (or waitTimeoutMs / signal ends the wait). */
  abstract acquire(key: string, opts?: AcquireOptions): Promise<Lock>;
  /** One attempt: the lock, or null if someone else holds it. */
  abstract tryAcquire(key: string, opts?: AcquireOptions): Promise<Lock | null>;

  /** True once close() has been called; acquires then reject with ClosedError. */
  get closed(): boolean {
    return this.closing.signal.aborted;
  }

  async using<T>(key: string, fn: (lock: Lock) => Promise<T>, opts?: AcquireOptions): Promise<T> {
    if (typeof fn !== 'function') throw invalidType('using() needs a function to run under the lock');
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

  /** @internal Throws ClosedError if close() was called. */
  protected checkOpen(): void {
    if (this.closed) throw this.closing.signal.reason;
  }

  /**
   * @internal
   * The one place a lock is handed out: tracked (so close() releases it), or, if close() ran while
   * it was being acquired, released again at once and refused with the ClosedError.
   */
  protected handOut<L extends HeldLock>(lock: L): L {
    if (this.closed) {
      void lock.release().catch(noop);
      throw this.closing.signal.reason;
    }
    this.held.add(lock);
    return lock;
  }

  /** @internal */
  protected readonly forget = (lock: HeldLock): void => {
    this.held.delete(lock);
  };

  /**
   * @internal
   * Runs an acquire's waiting loop (see waiting.ts) under the caller's signal, this locker's close and
   * the acquire's deadline. A lock the loop still gets after the wait has ended is released at once.
   */
  protected waitFor<L extends HeldLock>(
    key: string,
    start: number,
    o: ResolvedAcquire,
    loop: (wait: Wait) => Promise<L>,
    timeoutError?: (wait: Wait) => Error,
  ): Promise<L> {
    const init = { key, start, waitTimeoutMs: o.waitTimeoutMs, signal: o.signal, closing: this.closing.signal, timeoutError, backend: this.backend };
    return waitFor(init, loop, (lock) => lock.release());
  }

  /**
   * @internal
   * `waitTimeoutMs: 0`: one attempt, run outside the waiting engine (a 0 ms deadline would cancel it
   * while on the wire). Held elsewhere is a LockTimeoutError; either way the give-up is published.
   */
  protected async onlyOnce(key: string, start: number, o: ResolvedAcquire, attempt: () => Promise<Lock | null>): Promise<Lock> {
    const lock = await attempt().catch((err: unknown) => {
      throw gaveUp(this.backend, key, start, o.signal, err);
    });
    if (lock) return lock;
    throw gaveUp(this.backend, key, start, o.signal, new LockTimeoutError(key, performance.now() - start));
  }
}
