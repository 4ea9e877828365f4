/**
 * The benchmark loops. Each takes a Library and returns plain numbers; bench/run.ts alternates
 * libraries round by round and takes medians.
 */
import type { Locker } from '../../src/index.js';
import type { Library } from './adapters.js';
import { q, sleep } from './stats.js';

let keySeq = 0;
const freshKey = (tag: string): string => `bench:${tag}:${process.pid}:${keySeq++}`;

/** A Locker's own loop (no adapter): acquire+release without autoExtend, a new key each cycle. Cycles/s. */
export async function lockerCyclesPerSecond(locker: Locker, seconds: number, label: string): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const start = performance.now();
  while (performance.now() < end) {
    const lock = await locker.acquire(`bench:${label}:${n}`, { autoExtend: false });
    await lock.release();
    n++;
  }
  return n / ((performance.now() - start) / 1000);
}

/**
 * Wake-on-release handoff, `count` times: `a` holds, `b` waits; the time from a's release() call to
 * b's acquire() resolving, in ms, sorted.
 */
export async function wakeHandoffs(a: Locker, b: Locker, count: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const key = 'bench:handoff';
    const held = await a.acquire(key, { autoExtend: false });
    const waiting = b.acquire(key, { autoExtend: false });
    // Give the waiter time to find the lock held and subscribe, so this measures the wake, not the first try.
    await sleep(5);
    const t0 = performance.now();
    void held.release();
    const next = await waiting;
    samples.push(performance.now() - t0);
    await next.release();
  }
  return samples.sort((x, y) => x - y);
}

/** Sequential acquire+release, a new key each cycle, for `seconds`. Returns cycles/s. */
export async function uncontended(lib: Library, seconds: number): Promise<number> {
  return (await uncontendedCycles(lib, seconds)).rate;
}

/**
 * {@link uncontended}, also saying how many cycles ran. A library outside this process reports only
 * its rate: its cycles are that rate times the round's length.
 */
export async function uncontendedCycles(lib: Library, seconds: number): Promise<{ rate: number; cycles: number }> {
  if (lib.external) {
    const rate = await lib.external.uncontended(seconds);
    return { rate, cycles: rate * seconds };
  }
  const w = await lib.make();
  try {
    const end = performance.now() + seconds * 1000;
    const start = performance.now();
    let n = 0;
    while (performance.now() < end) {
      const unlock = await w.lock(freshKey('u'));
      await unlock();
      n++;
    }
    return { rate: n / ((performance.now() - start) / 1000), cycles: n };
  } finally {
    await w.close();
  }
}

export interface ContendedResult {
  acqPerSec: number;
  waitP50: number;
  waitP99: number;
  waitMax: number;
  /** One holder's release call -> the next holder's grant, median ms. */
  gapP50: number;
  /** How long a hold of `sleep(1)` took, grant to release call, median ms (NaN when not measured). */
  holdP50: number;
  minPerWorker: number;
  maxPerWorker: number;
  violations: number;
  /** Server-side commands (Redis) or RPCs+stream messages (etcd) per acquisition, if a counter was given. */
  serverOpsPerHandoff: number;
}

/**
 * `workers` workers, each with its own connection, contend for one key for `seconds`:
 * think 0–2 ms (random), acquire, hold 1 ms, release. `serverOps` reads a server-side operation counter.
 * `limit` (default 1): how many may hold at once (a semaphore's); a grant beyond it is a violation.
 */
export async function contended(
  lib: Library,
  opts: { workers: number; seconds: number; serverOps?: () => Promise<number>; limit?: number; readShare?: number },
): Promise<ContendedResult> {
  if (lib.external) return lib.external.contended(opts.workers, opts.seconds);
  const limit = opts.limit ?? 1;
  // Read-write runs: each cycle is a read with probability readShare (shared, through lockShared when
  // the library has it, else the same exclusive lock); a grant beside a conflicting holder is a violation.
  const readShare = opts.readShare ?? 0;
  let readers = 0;
  const key = freshKey('c');
  const ws = await Promise.all(Array.from({ length: opts.workers }, () => lib.make()));
  const counts = new Array<number>(opts.workers).fill(0);
  const waits: number[] = [];
  const gaps: number[] = [];
  const holds: number[] = [];
  let inside = 0;
  let violations = 0;
  let lastReleaseAt = -1;
  const before = opts.serverOps ? await opts.serverOps() : 0;
  const start = performance.now();
  const end = start + opts.seconds * 1000;
  try {
    await Promise.all(
      ws.map(async (w, i) => {
        while (performance.now() < end) {
          await sleep(Math.random() * 2);
          const read = readShare > 0 && Math.random() < readShare;
          const asked = performance.now();
          const unlock = read && w.lockShared ? await w.lockShared(key) : await w.lock(key);
          const granted = performance.now();
          const shared = read && w.lockShared !== undefined;
          if (shared ? inside > 0 : ++inside > limit || readers > 0) violations++;
          if (shared) readers++;
          waits.push(granted - asked);
          if (lastReleaseAt >= 0 && lastReleaseAt <= granted) gaps.push(granted - lastReleaseAt);
          await sleep(1);
          if (shared) readers--;
          else inside--;
          counts[i]!++;
          lastReleaseAt = performance.now();
          holds.push(lastReleaseAt - granted);
          await unlock();
        }
      }),
    );
  } finally {
    await Promise.all(ws.map((w) => w.close()));
  }
  const elapsed = (performance.now() - start) / 1000;
  const total = counts.reduce((a, b) => a + b, 0);
  const after = opts.serverOps ? await opts.serverOps() : 0;
  return {
    acqPerSec: total / elapsed,
    waitP50: q(waits, 0.5),
    waitP99: q(waits, 0.99),
    waitMax: q(waits, 1),
    gapP50: q(gaps, 0.5),
    holdP50: q(holds, 0.5),
    minPerWorker: Math.min(...counts),
    maxPerWorker: Math.max(...counts),
    violations,
    serverOpsPerHandoff: opts.serverOps ? (after - before) / total : NaN,
  };
}

/** `total` acquire+release cycles on distinct keys, `inFlight` at a time, from one worker. Cycles/s. */
export async function manyKeys(lib: Library, total: number, inFlight: number): Promise<number> {
  const w = await lib.make();
  try {
    let next = 0;
    const start = performance.now();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < total) {
          next++;
          const unlock = await w.lock(freshKey('m'));
          await unlock();
        }
      }),
    );
    return total / ((performance.now() - start) / 1000);
  } finally {
    await w.close();
  }
}

/**
 * `waiters` waiters queue on one key behind a holder; then the lock is passed down the whole line.
 * Returns server-side operations per handoff (the counter read before the first release and after the last).
 */
export async function waiterScale(lib: Library, waiters: number, serverOps: () => Promise<number>): Promise<number> {
  const key = freshKey('w');
  const holderW = await lib.make();
  const ws = await Promise.all(Array.from({ length: waiters }, () => lib.make()));
  try {
    const first = await holderW.lock(key);
    let remaining = waiters;
    let allDone!: () => void;
    const done = new Promise<void>((r) => (allDone = r));
    const queued = ws.map(async (w) => {
      const unlock = await w.lock(key);
      await unlock();
      if (--remaining === 0) allDone();
    });
    await sleep(Math.max(500, waiters * 5)); // let every waiter find the lock held and settle into its wait
    const before = await serverOps();
    await first();
    await done;
    await Promise.all(queued);
    const after = await serverOps();
    return (after - before) / waiters;
  } finally {
    await Promise.all([holderW, ...ws].map((w) => w.close()));
  }
}
