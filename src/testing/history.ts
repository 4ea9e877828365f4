/**
 * Checks a recorded history of lock holds: the critical sections of different holders must never
 * overlap, and fences must increase in the order the holds happened.
 *
 * Stamps are process.hrtime.bigint() values (CLOCK_MONOTONIC): comparable across processes on one machine.
 */

export interface Hold {
  worker: number | string;
  /** When the holder entered its critical section (after acquire resolved). */
  enter: bigint;
  /** When it left (before calling release). */
  exit: bigint;
  fence: bigint;
  /** When it asked for the lock (optional: gives wait times). */
  requested?: bigint;
}

export interface HistoryReport {
  holds: number;
  /** Pairs of holds whose [enter, exit] intervals intersect. Must be 0. */
  overlaps: Array<[Hold, Hold]>;
  /** Holds whose fence is not greater than the previous hold's. Must be 0. */
  fenceRegressions: Array<[Hold, Hold]>;
  /** Gaps between one holder's exit and the next holder's enter, in ms, sorted ascending. */
  handoffMs: number[];
  /** Time from asking to entering, in ms, sorted ascending (only holds that recorded `requested`). */
  waitMs: number[];
  perWorker: Map<string, number>;
}

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
