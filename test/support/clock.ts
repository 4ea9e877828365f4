/**
 * Fake time for the unit tests of the lock core (waiting, HeldLock): timers and performance.now()
 * move only when a test ticks the clock, so "at the deadline" is an exact instant, not a sleep.
 * Promises, setImmediate and process.nextTick stay real.
 */
import { spawn } from 'node:child_process';
import { install } from '@sinonjs/fake-timers';
import { keepAlive } from '../../src/abort.js';

// keepAlive() makes its shared interval on first use, with whatever setInterval is installed then.
// Make it now, with the real one: a fake interval would outlive its clock and hold nothing for the
// test files that run after these.
keepAlive()();

export type FakeClock = ReturnType<typeof install>;

/** Fakes the timers and performance.now() the lock core uses. Uninstall it in afterEach. */
export function installClock(): FakeClock {
  return install({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'performance'] });
}

/** A promise's outcome so far, read synchronously (attaching to it also marks it handled). */
export interface Tracked<T> {
  state: 'pending' | 'resolved' | 'rejected';
  value?: T;
  error?: unknown;
}

export function track<T>(promise: Promise<T>): Tracked<T> {
  const t: Tracked<T> = { state: 'pending' };
  promise.then(
    (value) => {
      t.state = 'resolved';
      t.value = value;
    },
    (error: unknown) => {
      t.state = 'rejected';
      t.error = error;
    },
  );
  return t;
}

/** Lets every pending promise callback run (a real macrotask turn; the fake clock does not move). */
export const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (err: unknown) => void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A promise that never settles: an attempt stuck on a dead socket. */
export const never = <T>(): Promise<T> => new Promise<T>(() => {});

/** Collects the process's unhandled rejections until `stop()` is called. */
export function unhandledRejections(): { seen: unknown[]; stop: () => void } {
  const seen: unknown[] = [];
  const listener = (reason: unknown): void => void seen.push(reason);
  process.on('unhandledRejection', listener);
  return { seen, stop: () => void process.off('unhandledRejection', listener) };
}

export interface ChildRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit, ms (includes tsx's start-up). */
  ms: number;
}

/**
 * Runs an ES module `script` in a fresh `node --import tsx` (real timers, nothing else alive), for what
 * only a process's exit can show: whether a timer keeps it running. Killed after `killAfterMs`.
 */
export function runChild(script: string, killAfterMs = 8000): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const killer = globalThis.setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('error', reject);
    child.on('close', (code) => {
      globalThis.clearTimeout(killer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** A file URL for a module under src/, for a child process's `import()`. */
export const srcUrl = (path: string): string => new URL(`../../src/${path}`, import.meta.url).href;
