/**
 * What the demo concludes from a run: the checks (no overlapping holds, fences only climbing, no lost
 * update, the stale write refused), the figures, and demo-out/summary.md.
 */
import { checkHistory, quantile, type Hold } from '../src/testing/history.js';
import { fmt, type DemoEvent, type RunResult } from './demo-scenario.js';

export interface Verdict {
  name: string;
  servers: string;
  result: RunResult;
  holds: number;
  perWorker: number[];
  handoffMedian: number;
  handoffP99: number;
  overlaps: number;
  fenceRegressions: number;
  firstFence: bigint;
  lastFence: bigint;
  /** Every hold that was granted wrote once; the counter must equal the writes the store accepted. */
  counterOk: boolean;
  staleRefused: boolean;
  /** For a killed server: how soon the next hold began, and the longest gap between holds while it was down. */
  afterKill: { firstHoldMs: number; longestGapMs: number; holdsWhileDown: number } | undefined;
  /** Each failover and slot migration: how long it took, the holds while it ran, the first hold after it was done. */
  switches: Array<{ what: string; at: number; tookMs: number; holdsDuring: number; firstHoldMs: number }>;
  /** Holds whose holder was told the lock was lost, by reason ('failover': the new master lacked it). */
  told: Map<string, number>;
  faults: string;
  ok: boolean;
}

/**
 * Each hold counts until its holder finished or its lease ended, whichever came first: a frozen holder
 * still "inside" its critical section after its lease is exactly what the fence is for, and the lock
 * only promises exclusivity up to validUntil.
 */
export function judge(name: string, servers: string, result: RunResult, workers: number): Verdict {
  const history: Hold[] = result.holds.map((h) => ({
    worker: h.worker,
    fence: h.fence,
    enter: ns(h.enter),
    exit: ns(Math.min(h.exit, h.validUntil)),
    requested: ns(h.requested),
  }));
  const r = checkHistory(history);
  const perWorker = Array.from({ length: workers }, (_, w) => r.perWorker.get(String(w)) ?? 0);
  const fences = result.holds.map((h) => h.fence).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const pause = result.events.find((e) => e.kind === 'pause');
  const frozen = pause && result.holds.find((h) => h.worker === pause.worker && h.exit > h.validUntil);
  // A scene without a frozen holder has no stale write to refuse.
  const staleRefused = pause === undefined || (frozen !== undefined && frozen.write === 'refused');
  const counterOk = result.counter.value === result.counter.accepted;
  const kill = result.events.find((e) => e.kind === 'kill');
  const afterKill = kill && downtime(result, kill.t, eventAt(result.events, 'restart'));
  const switches = spans(result);
  const told = new Map<string, number>();
  for (const h of result.holds) if (h.lost) told.set(h.lost, (told.get(h.lost) ?? 0) + 1);
  const faults = [
    ...(kill ? [`${kill.short}, next hold +${fmt(afterKill!.firstHoldMs)}`] : []),
    ...switches.map((x) => `${x.what} (${fmt(x.tookMs)}), next hold +${fmt(x.firstHoldMs)}`),
    ...[...told].map(([reason, k]) => `${k} told '${reason}'`),
    ...(pause ? [`w${pause.worker} frozen ${fmt(eventAt(result.events, 'resume') - pause.t)}`] : []),
  ].join('; ');
  return {
    name,
    servers,
    result,
    holds: r.holds,
    perWorker,
    handoffMedian: quantile(r.handoffMs, 0.5),
    handoffP99: quantile(r.handoffMs, 0.99),
    overlaps: r.overlaps.length,
    fenceRegressions: r.fenceRegressions.length,
    firstFence: fences[0] ?? -1n,
    lastFence: fences[fences.length - 1] ?? -1n,
    counterOk,
    staleRefused,
    afterKill,
    switches,
    told,
    faults,
    ok: r.overlaps.length === 0 && r.fenceRegressions.length === 0 && counterOk && staleRefused && r.holds > 0,
  };
}

/** The failovers ('failover' to 'switched') and slot migrations ('migrate' to 'moved') of a run. */
function spans(result: RunResult): Verdict['switches'] {
  const out: Verdict['switches'] = [];
  for (const [begin, end] of [['failover', 'switched'], ['migrate', 'moved']] as const) {
    for (const b of result.events.filter((e) => e.kind === begin)) {
      const e = result.events.find((x) => x.kind === end && x.t >= b.t);
      if (!e) continue;
      const enters = result.holds.map((h) => h.enter);
      const after = enters.filter((t) => t > e.t);
      out.push({
        what: b.short,
        at: b.t,
        tookMs: e.t - b.t,
        holdsDuring: enters.filter((t) => t >= b.t && t <= e.t).length,
        firstHoldMs: after.length ? Math.min(...after) - e.t : NaN,
      });
    }
  }
  return out.sort((a, b) => a.at - b.at);
}

/** How the lock fared while a server was down: entries into the critical section between kill and restart. */
function downtime(result: RunResult, from: number, to: number): { firstHoldMs: number; longestGapMs: number; holdsWhileDown: number } {
  const enters = result.holds.map((h) => h.enter).filter((t) => t > from && t < to).sort((a, b) => a - b);
  let longest = 0;
  let prev = from;
  for (const t of [...enters, to]) {
    longest = Math.max(longest, t - prev);
    prev = t;
  }
  return { firstHoldMs: (enters[0] ?? to) - from, longestGapMs: longest, holdsWhileDown: enters.length };
}

const ns = (ms: number): bigint => BigInt(Math.round(ms * 1e6));
const eventAt = (events: DemoEvent[], kind: DemoEvent['kind']): number => events.find((e) => e.kind === kind)?.t ?? NaN;

/** The per-backend lines printed after its run. The "check" line is what CI looks for. */
export function printVerdict(v: Verdict): void {
  const c = v.result.counter;
  console.log(`  holds per worker: ${v.perWorker.map((k, w) => `w${w} ${k}`).join(', ')}  (${v.holds} in ${fmt(v.result.durationMs)})`);
  console.log(`  handoff (a holder's exit -> the next holder's entry): median ${fmt(v.handoffMedian)}, p99 ${fmt(v.handoffP99)}`);
  console.log(`  fences: ${v.firstFence} -> ${v.lastFence}, ${v.fenceRegressions === 0 ? 'strictly increasing' : `${v.fenceRegressions} REGRESSIONS`}`);
  console.log(
    `  counter: ${c.value} after ${c.accepted} accepted writes${v.counterOk ? '' : ' (LOST UPDATES)'}; ` +
      `${c.refused.length} refused (${c.refused.map((r) => `w${r.worker} ${r.op} fence ${r.fence} < ${r.highest}`).join(', ') || 'none'})`,
  );
  if (v.afterKill) {
    const k = v.afterKill;
    console.log(`  while the server was down: ${k.holdsWhileDown} holds; the first began ${fmt(k.firstHoldMs)} after the kill; longest wait between holds ${fmt(k.longestGapMs)}`);
  }
  for (const x of v.switches) {
    console.log(`  ${x.what}: took ${fmt(x.tookMs)}, ${x.holdsDuring} holds began meanwhile; the first hold after it began ${fmt(x.firstHoldMs)} after`);
  }
  if (v.told.size > 0) console.log(`  holders told their lock was lost: ${[...v.told].map(([r, k]) => `${k} ('${r}')`).join(', ')}`);
  if (v.result.errors.length > 0) {
    console.log(`  ${v.result.errors.length} failed attempt${v.result.errors.length === 1 ? '' : 's'} (retried): ${v.result.errors.slice(0, 3).join('; ')}${v.result.errors.length > 3 ? '; …' : ''}`);
  }
  console.log(
    `  check ${v.name}: ${v.overlaps} overlapping holds, ${v.fenceRegressions} fence regressions, ` +
      `stale write ${v.result.events.some((e) => e.kind === 'pause') ? (v.staleRefused ? 'refused' : 'NOT refused') : 'none (no holder frozen)'} -> ${v.ok ? 'OK, no two holds overlapped' : 'FAILED'}`,
  );
}

export function table(verdicts: Verdict[]): string[] {
  const head = ['backend', 'holds', 'per worker', 'handoff median', 'handoff p99', 'faults injected', 'stale write', 'overlaps', 'check'];
  const rows = verdicts.map((v) => [
    v.name,
    String(v.holds),
    `${Math.min(...v.perWorker)}-${Math.max(...v.perWorker)}`,
    fmt(v.handoffMedian),
    fmt(v.handoffP99),
    v.faults,
    v.result.events.some((e) => e.kind === 'pause') ? (v.staleRefused ? 'refused' : 'ACCEPTED') : '-',
    String(v.overlaps),
    v.ok ? 'OK' : 'FAILED',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)];
}

/** `election`: the election scenes' table and verdict (after the locks'), and their sections (after the backends'). */
export function summaryMarkdown(verdicts: Verdict[], intro: string[], election?: { overview: string[]; sections: string[] }): string {
  const all = verdicts.every((v) => v.ok);
  const out = [
    '# wirelock demo summary',
    '',
    ...intro,
    '',
    ...table(verdicts),
    '',
    all
      ? '**No two holds overlapped, on any backend**; fences only climbed; the counter lost no update; every stale write was refused.'
      : '**A CHECK FAILED**: see the backend sections below.',
    '',
    ...(election ? [...election.overview, ''] : []),
    '![timeline](timeline.svg)',
    '',
  ];
  for (const v of verdicts) {
    const c = v.result.counter;
    out.push(
      `## ${v.name} (${v.servers})`,
      '',
      `- ${v.holds} holds in ${fmt(v.result.durationMs)}; per worker: ${v.perWorker.map((k, w) => `w${w} ${k}`).join(', ')}`,
      `- handoff (a holder's exit to the next holder's entry): median ${fmt(v.handoffMedian)}, p99 ${fmt(v.handoffP99)}`,
      `- fences ${v.firstFence} to ${v.lastFence}, ${v.fenceRegressions === 0 ? 'strictly increasing in hold order' : `**${v.fenceRegressions} regressions**`}`,
      `- counter ${c.value} = ${c.accepted} accepted writes: ${v.counterOk ? 'no lost update' : '**lost updates**'}`,
      `- overlapping holds: ${v.overlaps}`,
      ...(v.afterKill
        ? [`- while the server was down: ${v.afterKill.holdsWhileDown} holds; the first began ${fmt(v.afterKill.firstHoldMs)} after the kill; longest wait between holds ${fmt(v.afterKill.longestGapMs)}`]
        : []),
      ...v.switches.map((x) => `- ${x.what}: took ${fmt(x.tookMs)}, ${x.holdsDuring} holds began meanwhile; the first hold after it began ${fmt(x.firstHoldMs)} after`),
      ...(v.told.size ? [`- holders told their lock was lost: ${[...v.told].map(([r, k]) => `${k} ('${r}')`).join(', ')}`] : []),
      ...(v.result.errors.length ? [`- ${v.result.errors.length} failed attempt${v.result.errors.length === 1 ? '' : 's'}, retried (first: ${v.result.errors[0]})`] : []),
      '',
      'What happened:',
      '',
      ...v.result.events.map((e) => `- ${(e.t / 1000).toFixed(2)} s: ${e.label}`),
      '',
    );
  }
  if (election) out.push(...election.sections);
  return out.join('\n');
}
