/**
 * HeldLock: the Lock handle every backend returns. The backend says how to extend and release; this
 * class keeps the promises every lock makes the same way everywhere:
 *
 * - `validUntil` only moves forward on a confirmed extension, measured from when it was *sent*;
 * - a local timer aborts `signal` with LockLostError('expired') at validUntil, whatever the network does
 *   (an extension stuck in a dead socket cannot keep a lock "held" past its lease), unless the
 *   backend keeps that promise itself (an etcd session's timer, shared by all its locks);
 * - autoExtend extends about every ttl/3, and retries sooner after a transient failure while time is left;
 * - release() is idempotent and stops every timer;
 * - while it renews itself (autoExtend, or a backend that renews it, as an etcd session does) it keeps
 *   the process alive, as a pending socket read would: a holder must not exit mid-hold because every
 *   socket is down and every retry timer is unref'd.
 *
 * `signal` is made on first read: most holders never look at it, and an AbortController plus its
 * abort event were a measurable share of an uncontended acquire+release (docs/bench.md).
 */
import { LockLostError, LockReleasedError, outOfRange, type LockLostReason } from '../errors.js';
import { lockChannels } from '../diagnostics.js';
import type { Lock } from './types.js';
import { MAX_TIMER_MS, holdAlive, letGoAlive, noop } from '../abort.js';

/** Marks a lock ended by its own release; the LockReleasedError is only built if someone asks. */
const RELEASED = Symbol('released');

export interface LockOps {
  /**
   * Extends the lease to ttlMs. Resolves with the new validUntil (performance.now() based), rejects with
   * LockLostError if the lock is definitely gone, or with any other error if the outcome is unknown.
   * `signal` aborts when the lock ends meanwhile: an extension not yet sent must not be sent then
   * (it could prolong a lease the holder has already given up on).
   */
  extend(lock: HeldLock, ttlMs: number, signal?: AbortSignal): Promise<number>;
  /** Compare-and-delete. Must never delete another holder's lock. */
  release(lock: HeldLock): Promise<void>;
}

export interface HeldLockInit {
  backend: string;
  key: string;
  token: string;
  fence: bigint;
  validUntil: number;
  ttlMs: number;
  autoExtend: boolean;
  ops: LockOps;
  /**
   * False when the backend itself ends the lock at validUntil, as an etcd session does with its own
   * timer for all the locks on its lease: one timer per lock would only repeat it (default true).
   */
  localExpiry?: boolean;
  /** Whether the hold keeps the process alive while held (default: autoExtend). See the header. */
  keepsAlive?: boolean;
  /** Called once when the lock stops being held (released or lost), so its locker can forget it. */
  onEnd?: (lock: HeldLock) => void;
}

export class HeldLock implements Lock {
  readonly backend: string;
  readonly key: string;
  readonly token: string;
  readonly fence: bigint;
  readonly #ops: LockOps;
  /** Made when `signal` is first read, or when an extension needs to be abortable. */
  #controller: AbortController | undefined;
  /** Why the lock ended: a LockLostError, or RELEASED (its LockReleasedError is made when asked for); undefined while held. */
  #ended: Error | typeof RELEASED | undefined;
  readonly #onEnd: ((lock: HeldLock) => void) | undefined;
  #validUntil: number;
  #ttlMs: number;
  #autoExtend: boolean;
  readonly #localExpiry: boolean;
  #extendTimer: NodeJS.Timeout | undefined;
  #expiryTimer: NodeJS.Timeout | undefined;
  #extending: Promise<void> | undefined;
  #released: Promise<void> | undefined;
  /** Whether this hold keeps the process alive (until it ends). */
  readonly #keepsAlive: boolean;

  constructor(init: HeldLockInit) {
    this.backend = init.backend;
    this.key = init.key;
    this.token = init.token;
    this.fence = init.fence;
    this.#validUntil = init.validUntil;
    this.#ttlMs = init.ttlMs;
    this.#autoExtend = init.autoExtend;
    this.#ops = init.ops;
    this.#onEnd = init.onEnd;
    this.#localExpiry = init.localExpiry ?? true;
    this.#keepsAlive = init.keepsAlive ?? init.autoExtend;
    if (this.#keepsAlive) holdAlive();
    this.#armExpiry();
    if (this.#autoExtend) this.#scheduleExtend(this.#ttlMs / 3);
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#ended) this.#controller.abort(this.#reason());
    }
    return this.#controller.signal;
  }

  get validUntil(): number {
    return this.#validUntil;
  }

  /** The lease length extensions ask for. */
  get ttlMs(): number {
    return this.#ttlMs;
  }

  /** True until released or lost. */
  get held(): boolean {
    return this.#ended === undefined;
  }

  /**
   * @internal Whether the lock ended by a loss (a LockLostError), not by its release; false while
   * held. Unlike `endReason instanceof LockLostError`, it builds no LockReleasedError for a release.
   */
  get lost(): boolean {
    return this.#ended instanceof LockLostError;
  }

  /** Why the lock ended (LockLostError or LockReleasedError), or undefined while held. */
  get endReason(): Error | undefined {
    return this.#ended && this.#reason();
  }

  /** The ended lock's reason as an Error (a release's LockReleasedError is made on first use). */
  #reason(): Error {
    if (this.#ended === RELEASED) this.#ended = withoutStack(() => new LockReleasedError(this.key));
    return this.#ended!;
  }

  extend(ttlMs?: number): Promise<void> {
    if (ttlMs !== undefined && (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0)) {
      return Promise.reject(outOfRange(`ttlMs must be a finite number > 0, got ${String(ttlMs)}`));
    }
    if (ttlMs !== undefined) this.#ttlMs = ttlMs;
    return this.#extend();
  }

  release(): Promise<void> {
    this.#released ??= this.#release();
    return this.#released;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  /**
   * Marks the lock lost (for backends that learn of a loss on their own, such as an etcd session).
   * Aborts `signal` with LockLostError; a no-op once released or lost.
   */
  lose(reason: LockLostReason, cause?: unknown): void {
    if (!this.held) return;
    this.#lost(new LockLostError(this.key, reason, cause === undefined ? undefined : { cause }));
  }

  #lost(error: LockLostError): void {
    if (!this.held) return;
    if (lockChannels.lost.hasSubscribers) {
      lockChannels.lost.publish({ backend: this.backend, key: this.key, token: this.token, fence: this.fence, reason: error.reason, error });
    }
    this.#end(error);
  }

  #end(reason: Error | typeof RELEASED): void {
    this.#ended = reason;
    this.#stopTimers();
    if (this.#keepsAlive) letGoAlive();
    if (this.#controller) this.#controller.abort(this.#reason());
    this.#onEnd?.(this);
  }

  /** Moves validUntil forward (for backends whose lease is renewed elsewhere, such as an etcd session). */
  renewed(validUntil: number): void {
    if (!this.held || validUntil <= this.#validUntil) return;
    this.#validUntil = validUntil;
    this.#armExpiry();
  }

  #extend(): Promise<void> {
    // One extension at a time: a manual extend() during an automatic one waits for it, then goes on its own.
    const previous = this.#extending ?? Promise.resolve();
    const run = previous.catch(noop).then(() => this.#extendOnce());
    this.#extending = run;
    const settled = (): void => {
      if (this.#extending === run) this.#extending = undefined;
    };
    run.then(settled, settled);
    return run;
  }

  async #extendOnce(): Promise<void> {
    if (this.#ended) throw this.#reason();
    let validUntil: number;
    try {
      validUntil = await this.#ops.extend(this, this.#ttlMs, this.signal);
    } catch (err) {
      // The same error object rejects extend() and aborts the signal.
      if (err instanceof LockLostError) this.#lost(err);
      throw this.#ended ? this.#reason() : err;
    }
    // A release or loss while the extension was in flight wins: do not resurrect the lock.
    if (this.#ended) throw this.#reason();
    this.#validUntil = validUntil;
    this.#armExpiry();
    if (lockChannels.extend.hasSubscribers) {
      lockChannels.extend.publish({ backend: this.backend, key: this.key, token: this.token, fence: this.fence, validUntil });
    }
    if (this.#autoExtend) this.#scheduleExtend(this.#ttlMs / 3);
  }

  #scheduleExtend(delayMs: number): void {
    clearTimeout(this.#extendTimer);
    this.#extendTimer = setTimeout(() => {
      this.#extendTimer = undefined;
      this.#extend().catch(() => {
        if (!this.held) return; // lost (signal already aborted) or released
        // Transient failure (timeout, connection): try again soon, while the lease still has time left.
        const left = this.#validUntil - performance.now();
        if (left > 0) this.#scheduleExtend(Math.min(Math.max(this.#ttlMs / 10, 10), left / 2));
      });
    }, Math.min(delayMs, MAX_TIMER_MS));
    this.#extendTimer.unref?.();
  }

  #armExpiry(): void {
    if (!this.#localExpiry) return;
    clearTimeout(this.#expiryTimer);
    const left = this.#validUntil - performance.now();
    // A lease longer than the timer's range is re-armed at the limit, not ended after 1 ms.
    this.#expiryTimer = setTimeout(
      () => (left > MAX_TIMER_MS ? this.#armExpiry() : this.lose('expired')),
      Math.min(Math.max(0, left), MAX_TIMER_MS),
    );
    this.#expiryTimer.unref?.();
  }

  #stopTimers(): void {
    clearTimeout(this.#extendTimer);
    clearTimeout(this.#expiryTimer);
    this.#extendTimer = this.#expiryTimer = undefined;
  }

  async #release(): Promise<void> {
    const wasHeld = this.held;
    this.#stopTimers();
    if (wasHeld) this.#end(RELEASED);
    if (lockChannels.release.hasSubscribers) {
      lockChannels.release.publish({ backend: this.backend, key: this.key, token: this.token, fence: this.fence, wasHeld });
    }
    if (wasHeld) {
      await this.#ops.release(this);
      return;
    }
    // Already lost: the compare-and-delete is harmless (it never touches another holder's key) and may
    // clean up a key whose extension failed only on our side. Its failure has nothing to report.
    await this.#ops.release(this).catch(() => {});
  }
}

/**
 * Builds an error without capturing a stack trace. Capturing one was most of the cost of a release's
 * LockReleasedError (docs/bench.md has the profile), and its stack only ever pointed here.
 */
function withoutStack<T>(make: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return make();
  } finally {
    Error.stackTraceLimit = limit;
  }
}
