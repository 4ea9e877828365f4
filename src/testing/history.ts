/**
 * Checks a recorded history of lock holds: the critical sections of different holders must never
 * overlap, and fences must increase in the order the holds happened (checkHistory, replayMutex); or,
 * for a semaphore, no more than `limit` sections may overlap, and fences increase wherever the history
 * orders two holds (checkPermits); or, for a read-write lock, no writer beside anyone (checkReadWrite).
 *
 * Stamps are process.hrtime.bigint() values (CLOCK_MONOTONIC): comparable across processes on one machine.
 */

/** One critical section, as a test worker recorded it, for {@link checkHistory} and {@link checkPermits}. */
export interface Hold {
  /** Who held it: any id that tells the workers apart (compared as a string). */
  worker: number | string;
  /** When the holder entered its critical section (after acquire resolved). */
  enter: bigint;
  /** When it left (before calling release). */
  exit: bigint;
  /** The fence of the lock it held (`lock.fence`). */
  fence: bigint;
  /** When it asked for the lock (optional: gives wait times). */
  requested?: bigint;
}

/** What {@link checkHistory} found. */
export interface HistoryReport {
  /** How many holds were checked. */
  holds: number;
  /** Pairs of holds whose [enter, exit] intervals intersect. Must be 0. */
  overlaps: Array<[Hold, Hold]>;
  /** Holds whose fence is not greater than the previous hold's. Must be 0. */
  fenceRegressions: Array<[Hold, Hold]>;
  /** Gaps between one holder's exit and the next holder's enter, in ms, sorted ascending. */
  handoffMs: number[];
  /** Time from asking to entering, in ms, sorted ascending (only holds that recorded `requested`). */
  waitMs: number[];
  /** How many holds each worker had, by `String(worker)`. */
  perWorker: Map<string, number>;
}

/**
 * Sorts holds by `enter` and checks them: intervals of any two holds that intersect are overlaps, and a
 * fence not greater than the previous hold's is a regression. Also gives handoff and wait times.
 */
export function checkHistory(input: Hold[]): HistoryReport {
  const holds = [...input].sort((a, b) => (a.enter < b.enter ? -1 : a.enter > b.enter ? 1 : 0));
  const overlaps: Array<[Hold, Hold]> = [];
  const fenceRegressions: Array<[Hold, Hold]> = [];
  const handoffMs: number[] = [];
  const waitMs: number[] = [];
  const perWorker = new Map<string, number>();
  // The latest exit seen so far: any later enter before it is an overlap (covers non-adjacent pairs too).
  let latest: Hold | undefined;
  for (let i = 0; i < holds.length; i++) {
    const h = holds[i]!;
    perWorker.set(String(h.worker), (perWorker.get(String(h.worker)) ?? 0) + 1);
    if (h.requested !== undefined) waitMs.push(Number(h.enter - h.requested) / 1e6);
    if (latest && h.enter < latest.exit) overlaps.push([latest, h]);
    const prev = holds[i - 1];
    if (prev) {
      if (h.fence <= prev.fence) fenceRegressions.push([prev, h]);
      if (h.worker !== prev.worker && h.enter >= prev.exit) handoffMs.push(Number(h.enter - prev.exit) / 1e6);
    }
    if (!latest || h.exit > latest.exit) latest = h;
  }
  handoffMs.sort((a, b) => a - b);
  waitMs.sort((a, b) => a - b);
  return { holds: holds.length, overlaps, fenceRegressions, handoffMs, waitMs, perWorker };
}

/** The q-quantile (0..1) of an ascending array, nearest-rank; NaN when empty. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/**
 * One step of a lock history, for replayMutex. Stamps are CLOCK_MONOTONIC ns, as in Hold.
 * - `enter`: the worker entered its critical section with this fence (its acquire had resolved);
 * - `exit`: it left it (before calling release);
 * - `lost`: it was told the lock was lost (its signal aborted): a careful holder stops here;
 * - `crash`: it was killed while holding: its section ends here.
 */
export type MutexEvent =
  | {
      /** The worker entered its critical section. */
      kind: 'enter';
      /** Who: any id that tells the workers apart (compared as a string). */
      worker: number | string;
      /** When, in CLOCK_MONOTONIC ns (`process.hrtime.bigint()`). */
      at: bigint;
      /** The fence it entered with. */
      fence: bigint;
    }
  | {
      /** The worker's section ended: it left (`exit`), learned of the loss (`lost`) or was killed (`crash`). */
      kind: 'exit' | 'lost' | 'crash';
      /** Who: any id that tells the workers apart (compared as a string). */
      worker: number | string;
      /** When, in CLOCK_MONOTONIC ns (`process.hrtime.bigint()`). */
      at: bigint;
    };

/** What {@link replayMutex} found. */
export interface MutexReplay {
  /** Entries into the critical section. */
  holds: number;
  /** Every step the model refused, in time order, with what the model's state was. Must be empty. */
  violations: string[];
  /** The highest fence entered with; -1n if no worker entered. */
  maxFence: bigint;
}

/**
 * Replays a history against the model of a fenced mutex: one holder at a time, and every new holder's
 * fence greater than all before it. A section ends at the first of exit, lost and crash; later ends of
 * the same section are ignored. Unlike checkHistory, it also catches malformed histories (an exit
 * without an entry, a worker entering twice) and says which step broke the model.
 */
export function replayMutex(events: MutexEvent[]): MutexReplay {
  // Ends before entries at equal stamps: a handoff stamped within the same nanosecond is not an overlap.
  const rank = (e: MutexEvent): number => (e.kind === 'enter' ? 1 : 0);
  const sorted = [...events].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : rank(a) - rank(b)));
  const violations: string[] = [];
  /** Workers inside their section now (more than one is the violation), with fence and entry stamp. */
  const inside = new Map<string, { fence: bigint; at: bigint }>();
  /** Workers whose section was ended by lost/crash and who have not exited yet. */
  const endedEarly = new Set<string>();
  let maxFence = -1n;
  let holds = 0;
  for (const e of sorted) {
    const worker = String(e.worker);
    if (e.kind === 'enter') {
      holds++;
      if (inside.has(worker) || endedEarly.has(worker)) violations.push(`${worker} entered again at ${e.at} without exiting first`);
      for (const [other, h] of inside) {
        if (other !== worker) violations.push(`${worker} entered (fence ${e.fence}) at ${e.at} while ${other} (fence ${h.fence}) held it since ${h.at}`);
      }
      if (e.fence <= maxFence) violations.push(`${worker} entered with fence ${e.fence}, not above the highest before it (${maxFence})`);
      if (e.fence > maxFence) maxFence = e.fence;
      endedEarly.delete(worker);
      inside.set(worker, { fence: e.fence, at: e.at });
    } else if (inside.delete(worker)) {
      if (e.kind !== 'exit') endedEarly.add(worker);
    } else if (e.kind === 'exit') {
      // The exit of a section that lost/crash already ended is fine; any other is malformed.
      if (!endedEarly.delete(worker)) violations.push(`${worker} exited at ${e.at} without having entered`);
    }
  }
  return { holds, violations, maxFence };
}

/** A moment {@link checkPermits} found more than `limit` holds inside at once. */
export interface PermitExcess {
  /** When: the `enter` stamp of the hold that made one too many. */
  at: bigint;
  /** Every hold inside at that moment, the one entering last: more than `limit` of them. */
  holds: Hold[];
}

/** Holds that {@link checkPermits} found sharing one fence. */
export interface RepeatedFence {
  /** The fence more than one hold had. */
  fence: bigint;
  /** The holds that had it (two or more), in `enter` order. */
  holds: Hold[];
}

/** What {@link checkPermits} found. */
export interface PermitReport {
  /** How many holds were checked. */
  holds: number;
  /** The most holds inside at once: at most `limit` in a correct history (and `limit` in a busy one). */
  maxInside: number;
  /** Every moment more than `limit` holds were inside at once, in time order. Must be empty. */
  excess: PermitExcess[];
  /** Fences that more than one hold had: every permit has its own. Must be empty. */
  repeatedFences: RepeatedFence[];
  /**
   * Pairs `[a, b]` where `a` exited before `b` asked for its permit, yet `b`'s fence is not greater
   * than `a`'s. One pair per such `b`, with the `a` of the highest fence. Must be empty.
   */
  fenceRegressions: Array<[Hold, Hold]>;
}

/**
 * Checks a history of holds of a semaphore that admits `limit` holders at once (`limit` 1 is a mutex).
 *
 * - **Excess**: a sweep over every enter and exit stamp. A hold is inside from `enter` up to, not
 *   including, `exit` (so a handoff stamped within the same nanosecond is not an overlap, as in
 *   {@link replayMutex}); a hold with `exit <= enter` is never inside. Each enter that leaves more
 *   than `limit` holds inside is reported with all of them.
 * - **Repeated fences**: two holds with one fence.
 * - **Fence regressions**: permits of a semaphore may be held in any order, so fences are compared
 *   only where the history fixes an order: if `a` exited before `b` asked (`b.requested`, or
 *   `b.enter` when it was not recorded), `b` was granted after `a`'s permit was, and its fence must be
 *   greater.
 *
 * Pass holds as the holders could have believed in them: a hold that was told of a loss, or whose
 * `validUntil` passed, ends there (cut `exit` down to it), or the checker reports what only the fence
 * could catch.
 */
export function checkPermits(input: Hold[], limit: number): PermitReport {
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limit must be an integer >= 1, not ${limit}`);
  const byEnter = [...input].sort((a, b) => cmp(a.enter, b.enter));

  // Exits before enters at equal stamps: [enter, exit) intervals that only touch do not overlap.
  const steps = byEnter
    .filter((h) => h.exit > h.enter)
    .flatMap((h) => [{ at: h.enter, hold: h, enters: true }, { at: h.exit, hold: h, enters: false }])
    .sort((a, b) => cmp(a.at, b.at) || Number(a.enters) - Number(b.enters));
  const inside = new Set<Hold>();
  const excess: PermitExcess[] = [];
  let maxInside = 0;
  for (const step of steps) {
    if (!step.enters) {
      inside.delete(step.hold);
      continue;
    }
    inside.add(step.hold);
    maxInside = Math.max(maxInside, inside.size);
    if (inside.size > limit) excess.push({ at: step.at, holds: [...inside] });
  }

  const sameFence = new Map<bigint, Hold[]>();
  for (const h of byEnter) sameFence.set(h.fence, [...(sameFence.get(h.fence) ?? []), h]);
  const repeatedFences = [...sameFence].filter(([, holds]) => holds.length > 1).map(([fence, holds]) => ({ fence, holds }));

  // Walk the holds by when they asked, taking in every hold that had exited before: the highest
  // fence among those is the one the asker's must exceed.
  const asked = (h: Hold): bigint => h.requested ?? h.enter;
  const byAsked = [...input].sort((a, b) => cmp(asked(a), asked(b)));
  const byExit = [...input].sort((a, b) => cmp(a.exit, b.exit));
  const fenceRegressions: Array<[Hold, Hold]> = [];
  let highestDone: Hold | undefined;
  let next = 0;
  for (const b of byAsked) {
    for (; next < byExit.length && byExit[next]!.exit < asked(b); next++) {
      const a = byExit[next]!;
      if (!highestDone || a.fence > highestDone.fence) highestDone = a;
    }
    if (highestDone && b.fence <= highestDone.fence) fenceRegressions.push([highestDone, b]);
  }
  return { holds: input.length, maxInside, excess, repeatedFences, fenceRegressions };
}

/** A hold of a read-write lock, for {@link checkReadWrite}: a {@link Hold} and the side it held. */
export interface RWHold extends Hold {
  /** `read`: shared with other readers; `write`: with no one. */
  mode: 'read' | 'write';
}

/** What {@link checkReadWrite} found. */
export interface RWReport {
  /** How many holds were checked. */
  holds: number;
  /** The most readers inside at once (more than 1: reads were shared). */
  maxReaders: number;
  /** Pairs `[a, b]`, `a` entering first, that were inside at once with a writer among them. Must be empty. */
  writerBeside: Array<[RWHold, RWHold]>;
}

/**
 * Checks a history of a read-write lock: a write hold may overlap no other hold; read holds may
 * overlap each other. Holds are inside over `[enter, exit)`, as in {@link checkPermits}; fences
 * (one counter for both sides) can be checked with `checkPermits(holds, holds.length)`.
 */
export function checkReadWrite(input: RWHold[]): RWReport {
  const live = input.filter((h) => h.exit > h.enter).sort((a, b) => cmp(a.enter, b.enter));
  const writerBeside: Array<[RWHold, RWHold]> = [];
  for (let i = 0; i < live.length; i++) {
    const a = live[i]!;
    // Sorted by enter: the holds that enter before `a` exits are exactly those inside beside it.
    for (let j = i + 1; j < live.length && live[j]!.enter < a.exit; j++) {
      if (a.mode === 'write' || live[j]!.mode === 'write') writerBeside.push([a, live[j]!]);
    }
  }
  const readers = live.filter((h) => h.mode === 'read');
  const maxReaders = readers.length === 0 ? 0 : checkPermits(readers, readers.length).maxInside;
  return { holds: input.length, maxReaders, writerBeside };
}

function cmp(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
