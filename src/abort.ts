/**
 * Small helpers for the rule "every wait takes an AbortSignal and has a deadline".
 * Listeners are always removed when the wait ends, so long-lived signals do not leak.
 */
import { setMaxListeners } from 'node:events';

/** Calls `fn` once when `signal` aborts. Returns a disposer that removes the listener. */
export function onAbort(signal: AbortSignal | undefined, fn: (reason: unknown) => void): () => void {
  if (!signal) return noop;
  if (signal.aborted) {
    fn(signal.reason);
    return noop;
  }
  const listener = (): void => fn(signal.reason);
  signal.addEventListener('abort', listener, { once: true });
  return () => signal.removeEventListener('abort', listener);
}

export function noop(): void {}

/** setTimeout's limit (about 24.8 days): Node fires a longer delay after 1 ms. Longer waits re-arm at it. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * An AbortController whose signal many waits listen to at once (a locker's close, a session's loss,
 * a client's close). Each wait removes its listener when it ends, so a count above Node's default of
 * 10 is expected here, not a leak: the limit (and its MaxListenersExceededWarning) is turned off.
 */
export function sharedController(): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  return controller;
}

/**
 * Resolves after `ms`, or rejects with `signal.reason` as soon as the signal aborts.
 * The timer keeps the process alive, as any wait someone awaits must (a retry backoff whose timer let
 * go would end the process mid-call, exit code 0). `{ unref: true }` is for clean-up loops nobody
 * awaits: they must not keep the process alive.
 */
export function sleep(ms: number, signal?: AbortSignal, opts?: { unref?: boolean }): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      off();
      resolve();
    }, Math.min(Math.max(0, ms), MAX_TIMER_MS));
    if (opts?.unref) timer.unref?.();
    const off = onAbort(signal, (reason) => {
      clearTimeout(timer);
      reject(reason);
    });
  });
}

export interface BackoffOptions {
  /** The first pause, in ms (default 50); each failure in a row doubles it. */
  baseMs?: number;
  /** The longest pause, before jitter (default 1000). */
  capMs?: number;
  /** Up to this many ms are added at random (default 50), so retrying clients spread out. */
  jitterMs?: number;
}

/**
 * The pause before retry number `failures` (0 for the first) after a transient failure:
 * min(base * 2^failures, cap) + jitter. Every retry loop in wirelock paces itself with this.
 */
export function backoffMs(failures: number, opts: BackoffOptions = {}): number {
  const { baseMs = 50, capMs = 1000, jitterMs = 50 } = opts;
  return Math.min(baseMs * 2 ** Math.min(failures, 30), capMs) + jitter(jitterMs);
}

/**
 * Keeps the process alive until the returned function is called (once is enough; more are no-ops).
 * A pending acquire and a held lock that renews itself hold one: they must keep the process running
 * as a pending socket read does, even while every socket is down and every retry timer is unref'd.
 * All holders share one ref'd interval timer, so holding costs a counter increment.
 */
export function keepAlive(): () => void {
  holdAlive();
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    letGoAlive();
  };
}

/**
 * keepAlive() without the closure, for objects that track whether they hold (a held lock has its
 * state anyway, and thousands of held locks should not carry a closure each): call letGoAlive() once
 * for every holdAlive().
 */
export function holdAlive(): void {
  if (aliveHolds++ === 0) (aliveTimer ??= setInterval(noop, MAX_TIMER_MS)).ref();
}

export function letGoAlive(): void {
  if (--aliveHolds === 0) aliveTimer?.unref();
}
let aliveHolds = 0;
let aliveTimer: NodeJS.Timeout | undefined;

/** Milliseconds left until a `performance.now()` deadline (never negative; Infinity stays Infinity). */
export function remaining(deadline: number): number {
  return deadline === Infinity ? Infinity : Math.max(0, deadline - performance.now());
}

/** A random integer in [0, maxMs): jitter that keeps contending clients from moving in lockstep. */
export function jitter(maxMs: number): number {
  return Math.floor(Math.random() * maxMs);
}

/** Settles like `promise`, or rejects with `signal.reason` as soon as the signal aborts (the promise runs on). */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(noop);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const off = onAbort(signal, (reason) => {
      promise.catch(noop);
      reject(reason);
    });
    promise.then(
      (v) => (off(), resolve(v)),
      (e) => (off(), reject(e)),
    );
  });
}
