/**
 * The waiting engine: how every primitive waits for its turn, written once.
 *
 * A wait ends in one of four ways: the attempt loop hands over what it was waiting for, the caller's
 * AbortSignal aborts, the locker closes, or the deadline (waitTimeoutMs) passes. The last three are
 * linked into one signal, once, and the wait rejects with its reason at that moment: never later,
 * whatever is in flight. The attempt in flight is not awaited. It runs on in the background, its
 * clean-up with it, and whatever it still grants is handed back (released) at once, so a wait that
 * gave up never leaves a lock held by nobody's intent.
 *
 * Inside, each backend's loop has the same three parts:
 *   attempt        one try on the wire; granted: return it
 *   what wakes me  `wake()` from a message (a release, a watch event), else a timed fallback (`pause`)
 *   clean-up       a `finally` that leaves the queue; it may go on after the wait has rejected
 * and transient failures (server down, slow, restarting) pace themselves with `backoff()`.
 *
 * While a wait is pending it keeps the process alive, as a pending socket read does: a process whose
 * only work is to wait for a lock must not exit with code 0 because every socket is down and every
 * reconnect timer is unref'd.
 */
import { MAX_TIMER_MS, backoffMs, keepAlive, noop, onAbort, sharedController, sleep } from '../abort.js';
import { ClosedError, LockTimeoutError } from '../errors.js';
import { lockChannels, type LockBackend, type LockGiveUpPayload } from '../diagnostics.js';

export interface WaitInit {
  /** The lock key, for the timeout error. */
  key: string;
  /** performance.now() when the acquire began (the deadline counts from here). */
  start: number;
  /** Infinity for no deadline; anything past setTimeout's range counts as none. */
  waitTimeoutMs: number;
  /** The caller's signal. */
  signal: AbortSignal | undefined;
  /** The locker's close (a raw etcd Mutex has none). */
  closing?: AbortSignal;
  /** Set: the wait is published on lock:waiter, and a wait that ends without the lock on lock:giveup. */
  backend?: LockBackend;
  /**
   * The error the deadline rejects with. Default: LockTimeoutError, caused by the last transient
   * failure if there was one (so "timed out" says why when the server was the reason).
   */
  timeoutError?: (wait: Wait) => Error;
}

/** The signal of a wait that nothing can end but its own success (a raw etcd Mutex's lock() with no signal and no deadline). */
const NEVER = sharedController().signal;

/** One wait in progress: its signal, its backoff, its wake-ups. Handed to the attempt loop. */
export class Wait {
  readonly key: string;
  readonly start: number;
  /** Aborts when the wait ends for any reason but success: caller, close or deadline. */
  readonly signal: AbortSignal;
  /** Attempts made so far (the loop counts them; diagnostics report them). */
  attempts = 0;
  /** The last transient failure, reported as the timeout's cause. */
  lastError: unknown;
  readonly #dispose: () => void;
  #failures = 0;
  #woken = false;
  #wake: (() => void) | undefined;

  constructor(init: WaitInit) {
    this.key = init.key;
    this.start = init.start;
    if (init.signal === undefined && init.waitTimeoutMs > MAX_TIMER_MS) {
      // No caller's signal and no deadline: only the close can end the wait, so its signal is the
      // wait's own, with no controller of our own and no listener to link them (an uncontended etcd
      // acquire waits from its first RPC on, and this was a share of its CPU).
      this.signal = init.closing ?? NEVER;
      this.#dispose = keepAlive();
      return;
    }
    const controller = new AbortController();
    this.signal = controller.signal;
    const abort = (reason: unknown): void => controller.abort(reason);
    const offCaller = onAbort(init.signal, abort);
    const offClose = onAbort(init.closing, abort);
    const timer =
      init.waitTimeoutMs > MAX_TIMER_MS
        ? undefined
        : setTimeout(() => abort((init.timeoutError ?? defaultTimeout)(this)), Math.max(0, init.waitTimeoutMs - (performance.now() - init.start)));
    timer?.unref(); // the keep-alive below holds the process; the deadline alone must not outlive the wait
    const release = keepAlive();
    this.#dispose = () => {
      offCaller();
      offClose();
      clearTimeout(timer);
      release();
    };
  }

  /** Milliseconds since the acquire began. */
  get waitedMs(): number {
    return performance.now() - this.start;
  }

  /**
   * A transient failure: remembers it (the timeout's cause), then sleeps the backoff for this many
   * failures in a row. Rejects at once when the wait ends.
   */
  backoff(err: unknown, opts?: { baseMs?: number }): Promise<void> {
    return this.sleep(this.backoffDelay(err, opts));
  }

  /** The pause `backoff()` would sleep now (and counts the failure), for loops that report it first. */
  backoffDelay(err: unknown, opts?: { baseMs?: number }): number {
    if (err !== undefined) this.lastError = err;
    return backoffMs(this.#failures++, opts);
  }

  /** Sleeps `ms` under the wait's signal (no wake-up ends it early). */
  sleep(ms: number): Promise<void> {
    return sleep(ms, this.signal);
  }

  /** An attempt got an answer: the next transient failure backs off from the start again. */
  answered(): void {
    this.#failures = 0;
  }

  /** A message says it may be our turn: ends the current pause, or the next one at once. */
  readonly wake = (): void => {
    this.#woken = true;
    this.#wake?.();
  };

  /** Whether `wake()` was called since the last pause began (and clears it). */
  takeWake(): boolean {
    const woken = this.#woken;
    this.#woken = false;
    return woken;
  }

  /**
   * Sleeps until `wake()` or for `ms`, whichever comes first (the timed fallback: a lost message
   * costs at most `ms`). A wake that came before the pause ends it at once. Rejects when the wait ends.
   */
  pause(ms: number): Promise<void> {
    if (this.signal.aborted) return Promise.reject(this.signal.reason);
    if (this.takeWake()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        off();
        this.#wake = undefined;
        this.#woken = false;
        resolve();
      };
      // A longer wait wakes at the timer's limit and looks again.
      const timer = setTimeout(done, Math.min(Math.max(0, ms), MAX_TIMER_MS));
      const off = onAbort(this.signal, (reason) => {
        clearTimeout(timer);
        this.#wake = undefined;
        reject(reason);
      });
      this.#wake = done;
    });
  }

  /** Ends the wait's links (caller, close, deadline, keep-alive). */
  dispose(): void {
    this.#dispose();
  }
}

function defaultTimeout(wait: Wait): Error {
  const cause = wait.lastError === undefined ? undefined : { cause: wait.lastError };
  return new LockTimeoutError(wait.key, wait.waitedMs, cause);
}

/**
 * Runs `loop` as one wait. Resolves with what it returns; rejects the moment the caller aborts, the
 * locker closes or the deadline passes, with that reason. If `loop` still returns something after
 * that, `giveBack` gets it (in the background: nobody is waiting for it any more).
 */
export function waitFor<T>(init: WaitInit, loop: (wait: Wait) => Promise<T>, giveBack: (value: T) => Promise<unknown>): Promise<T> {
  const wait = new Wait(init);
  if (wait.signal.aborted) {
    // Over before it began (a signal already aborted, a closed locker): no attempt is made at all.
    wait.dispose();
    waitGaveUp(init, endedBy(init, wait.signal.reason), wait.signal.reason);
    return Promise.reject(wait.signal.reason);
  }
  const { backend } = init;
  const id = ++waits;
  if (backend && lockChannels.waiter.hasSubscribers) lockChannels.waiter.publish({ backend, key: init.key, id, delta: 1 });
  const ended = (): void => {
    wait.dispose();
    if (backend && lockChannels.waiter.hasSubscribers) lockChannels.waiter.publish({ backend, key: init.key, id, delta: -1 });
  };
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const off = onAbort(wait.signal, (reason) => {
      settled = true;
      ended();
      waitGaveUp(init, endedBy(init, reason), reason);
      reject(reason);
    });
    loop(wait).then(
      (value) => {
        if (settled) return void giveBack(value).catch(noop);
        settled = true;
        off();
        ended();
        resolve(value);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        off();
        ended();
        waitGaveUp(init, err instanceof LockTimeoutError ? 'timeout' : 'error', err);
        reject(err);
      },
    );
  });
}

/** Waits begun in this process: the id of the last one (lock:waiter). */
let waits = 0;

/** Why the wait's signal aborted: the caller's signal, the locker's close, or else the deadline. */
function endedBy(init: WaitInit, reason: unknown): LockGiveUpPayload['reason'] {
  if (init.signal?.aborted && reason === init.signal.reason) return 'aborted';
  if (init.closing?.aborted && reason === init.closing.reason) return 'closed';
  return 'timeout';
}

function waitGaveUp(init: WaitInit, reason: LockGiveUpPayload['reason'], error: unknown): void {
  if (init.backend) publishGiveUp(init.backend, init.key, init.start, reason, error);
}

/** Why an acquire that ran outside waitFor (one attempt) ended without the lock. */
function giveUpReason(err: unknown, signal: AbortSignal | undefined): LockGiveUpPayload['reason'] {
  if (err instanceof LockTimeoutError) return 'timeout';
  if (signal?.aborted && err === signal.reason) return 'aborted';
  if (err instanceof ClosedError) return 'closed';
  return 'error';
}

function publishGiveUp(backend: LockBackend, key: string, start: number, reason: LockGiveUpPayload['reason'], error: unknown): void {
  if (lockChannels.giveUp.hasSubscribers) lockChannels.giveUp.publish({ backend, key, reason, waitedMs: performance.now() - start, error });
}

/**
 * For the acquires that end without the lock outside waitFor (one attempt, waitTimeoutMs 0; a fast
 * path's failure): publishes `err` on lock:giveup and returns it, to be thrown. `reason` defaults to
 * what `err` is (a LockTimeoutError: 'timeout'; the caller's abort: 'aborted'; ClosedError: 'closed').
 */
export function gaveUp(
  backend: LockBackend,
  key: string,
  start: number,
  signal: AbortSignal | undefined,
  err: unknown,
  reason: LockGiveUpPayload['reason'] = giveUpReason(err, signal),
): unknown {
  publishGiveUp(backend, key, start, reason, err);
  return err;
}

/**
 * Calls `call` until it answers: a `transient` failure is tried again after a backoff (from 100 ms,
 * capped at 2 s), any other failure and `signal`'s abort reject. For the reads an observer makes,
 * which must outlive a server's outage.
 */
export async function untilAnswered<T>(call: () => Promise<T>, transient: (err: unknown) => boolean, signal: AbortSignal): Promise<T> {
  for (let failures = 0; ; failures++) {
    try {
      return await call();
    } catch (err) {
      if (signal.aborted || !transient(err)) throw err;
      await sleep(backoffMs(failures, { baseMs: 100, capMs: 2000 }), signal);
    }
  }
}

/**
 * Runs `step` in the background until it returns true, `until` (a performance.now() time) passes, or
 * `stop` aborts; each failure (false or a throw) backs off before the next try. It keeps no process
 * alive and never rejects. For clean-ups nobody awaits: leaving a queue, taking back an attempt that
 * may have landed, retrying a release on a node that did not answer.
 */
export async function retryInBackground(
  step: () => Promise<boolean>,
  opts: { until?: number; stop?: AbortSignal; firstDelayMs?: number; backoff?: { baseMs?: number; capMs?: number } } = {},
): Promise<void> {
  const until = opts.until ?? Infinity;
  // Resolves false when it is time to stop instead.
  const pause = (ms: number): Promise<boolean> =>
    sleep(Math.min(ms, until - performance.now()), opts.stop, { unref: true }).then(
      () => performance.now() < until,
      () => false,
    );
  if (opts.firstDelayMs !== undefined && !(await pause(opts.firstDelayMs))) return;
  for (let failures = 0; performance.now() < until && !opts.stop?.aborted; failures++) {
    try {
      if (await step()) return;
    } catch {
      // not yet: the server is still unreachable, or slow
    }
    if (!(await pause(backoffMs(failures, opts.backoff)))) return;
  }
}
