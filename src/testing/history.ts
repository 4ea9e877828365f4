/**
 * Checks a recorded history of lock holds: the critical sections of different holders must never
 * overlap, and fences must increase in the order the holds happened.
 *
 * Stamps are process.hrtime.bigint() values (CLOCK_MONOTONIC): comparable across processes on one machine.
 */

/** One critical section, as a test worker recorded it, for {@link checkHistory}. */
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
