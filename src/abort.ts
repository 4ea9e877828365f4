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
 * go would end the process mid-call, exit code 0). `background` sleeps, in clean-up loops nobody
 * awaits, do not keep it alive.
 */
export function sleep(ms: number, signal?: AbortSignal, background = false): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      off();
      resolve();
    }, Math.max(0, ms));
    if (background) timer.unref?.();
    const off = onAbort(signal, (reason) => {
      clearTimeout(timer);
      reject(reason);
    });
  });
}

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
