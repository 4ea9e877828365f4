/**
 * What the demo concludes from an election scene: the checks (no two terms overlap, terms only climb,
 * every observer saw every change of leader in order), the failover figures, and its part of
 * demo-out/summary.md.
 */
import { quantile } from '../src/testing/history.js';
import type { ElectionResult, TermRecord, View } from './demo-election.js';
import { OBSERVER } from './demo-election-processes.js';
import { fmt } from './demo-scenario.js';

export interface ViewCheck {
  view: View;
  /** How many leaders it saw, in order; and what was wrong, if anything. */
  leaders: number;
  problem: string | undefined;
}

export interface ElectionVerdict {
  name: string;
  servers: string;
  result: ElectionResult;
  /** In the order they began. */
  terms: TermRecord[];
  overlaps: Array<[TermRecord, TermRecord]>;
  termsIncrease: boolean;
  views: ViewCheck[];
  /** ms from each SIGKILL to the observer seeing the next leader; to every process watching seeing it; to its campaign() resolving. */
  observedMs: number[];
  allObservedMs: number[];
  leadsMs: number[];
  /** ms from the dead leader's validUntil to the next leader's start (how long etcd or Redis took to notice). */
  afterLeaseMs: number[];
  ok: boolean;
}

/**
 * Until when a term counts: a killed leader's until the end of its lease (its validUntil), since
 * nobody else may lead before then, dead or not; a resigned one's until it resigned (or its lease
 * ended, if that came first).
 */
export function termEnd(t: TermRecord): number {
  return t.how === 'killed' || t.end === undefined ? t.validUntil : Math.min(t.end, t.validUntil);
}

export function judgeElection(name: string, servers: string, result: ElectionResult): ElectionVerdict {
  const terms = [...result.terms].sort((a, b) => a.start - b.start);
  const overlaps: Array<[TermRecord, TermRecord]> = [];
  for (let i = 0; i < terms.length; i++) {
    for (let j = i + 1; j < terms.length; j++) {
      if (terms[j]!.start < termEnd(terms[i]!)) overlaps.push([terms[i]!, terms[j]!]);
    }
  }
  const termsIncrease = terms.every((t, i) => i === 0 || t.fence > terms[i - 1]!.fence);
  const views = result.views.map((v) => checkView(v, terms));
  const f = result.failovers;
  const observedMs = f.map((x) => x.next.observed - x.killAt);
  const ok =
    overlaps.length === 0 && termsIncrease && views.every((v) => v.problem === undefined) &&
    result.store.refused.length === 0 && terms.length === f.length + 1 && result.resigned !== undefined;
  return {
    name,
    servers,
    result,
    terms,
    overlaps,
    termsIncrease,
    views,
    observedMs,
    allObservedMs: f.map((x) => x.next.allObserved - x.killAt),
    leadsMs: f.map((x) => x.next.start - x.killAt),
    afterLeaseMs: f.map((x) => x.next.start - x.validUntil),
    ok,
  };
}

/**
 * A view is right when the leaders it saw, in order, are consecutive terms, each with its leader's
 * name as the value, and include every term that had not been replaced yet when it began and that
 * began before it ended (a process killed mid-scene sees up to its own term). The observer must also
 * see nobody lead at the end.
 */
function checkView(view: View, terms: TermRecord[]): ViewCheck {
  const seen: Array<{ fence: bigint; value: string }> = [];
  for (const { seen: s } of view.seen) {
    if (s && BigInt(s.fence) !== seen[seen.length - 1]?.fence) seen.push({ fence: BigInt(s.fence), value: s.value });
  }
  const began = view.seen[0]?.t ?? Infinity;
  // A process that connects just as one leader replaces another may see only the new one.
  const replacedBefore = (i: number): boolean => (terms[i + 1]?.start ?? Infinity) <= began + HANDOVER_SLACK_MS;
  const required = terms.flatMap((t, i) => (!replacedBefore(i) && t.start < (view.to ?? Infinity) ? [i] : []));
  const problem = ((): string | undefined => {
    if (seen.length === 0) return required.length ? 'saw no leader at all' : undefined;
    const first = terms.findIndex((t) => t.fence === seen[0]!.fence);
    if (first < 0) return `saw term ${seen[0]!.fence}, which nobody led`;
    for (let i = 0; i < seen.length; i++) {
      const want = terms[first + i];
      if (!want || want.fence !== seen[i]!.fence) return `saw term ${seen[i]!.fence} where term ${want?.fence ?? '(none)'} came next`;
      if (want.service !== seen[i]!.value) return `saw ${seen[i]!.value} lead term ${want.fence}, which ${want.service} led`;
    }
    const missed = required.find((i) => i < first || i >= first + seen.length);
    if (missed !== undefined) return `missed term ${terms[missed]!.fence}`;
    if (view.who === OBSERVER && view.seen[view.seen.length - 1]?.seen !== null) return 'did not see that nobody leads at the end';
    return undefined;
  })();
  return { view, leaders: seen.length, problem };
}

const HANDOVER_SLACK_MS = 50;

/** One figure, or the median and max of several. */
export function spread(values: number[]): string {
  if (values.length === 0) return '-';
  if (values.length === 1) return fmt(values[0]!);
  const sorted = [...values].sort((a, b) => a - b);
  return `median ${fmt(quantile(sorted, 0.5))}, max ${fmt(sorted[sorted.length - 1]!)}`;
}

function termsLine(v: ElectionVerdict): string {
  return v.terms
    .map((t) => {
      const led = fmt((t.end ?? termEnd(t)) - t.start);
      if (t.how === 'killed') return `${t.service} ${t.fence} (led ${led}, killed; its lease ran ${fmt(t.validUntil - t.end!)} more)`;
      return `${t.service} ${t.fence} (led ${led}, ${t.how === 'leading' ? 'still leading' : t.how})`;
    })
    .join(', ');
}

/** Each view: how many leaders it saw in order (or what was wrong), the observer first. */
function viewsLine(v: ElectionVerdict): string {
  const views = [...v.views].sort((a, b) => Number(b.view.who === OBSERVER) - Number(a.view.who === OBSERVER));
  return views
    .map((c) => {
      if (c.problem) return `${c.view.who} WRONG: ${c.problem}`;
      const end = c.view.killed ? ' until killed' : c.view.who === OBSERVER ? ', then nobody' : '';
      return `${c.view.who} ${c.leaders}${end}`;
    })
    .join('; ');
}

/** The lines printed after the scene. The "check" line is the verdict. */
export function printElectionVerdict(v: ElectionVerdict): void {
  const r = v.result;
  const beats = v.terms.reduce((n, t) => n + t.beats.length, 0);
  console.log(`  terms: ${termsLine(v)}`);
  console.log(
    `  failover (SIGKILL -> the observer sees the next leader): ${spread(v.observedMs)} (every process watching: ${spread(v.allObservedMs)}); ` +
      `the next leader's campaign() returned ${spread(v.leadsMs)} after the kill, ${spread(v.afterLeaseMs)} after the dead leader's lease ended`,
  );
  if (r.resigned) console.log(`  resign -> the observer sees nobody lead: ${fmt(r.resigned.observed - r.resigned.at)}`);
  console.log(`  leader work: ${beats} heartbeats with the term, accepted by the fenced store; ${r.store.refused.length} refused`);
  console.log(`  leaders seen, in order: ${viewsLine(v)}`);
  if (r.errors.length > 0) console.log(`  ${r.errors.length} error${r.errors.length === 1 ? '' : 's'}: ${r.errors.slice(0, 3).join('; ')}${r.errors.length > 3 ? '; …' : ''}`);
  const right = v.views.filter((c) => c.problem === undefined).length;
  console.log(
    `  check election on ${v.name}: ${v.overlaps.length} overlapping terms, terms ${v.termsIncrease ? 'strictly increasing' : 'NOT INCREASING'}, ` +
      `${right} of ${v.views.length} observers saw every change of leader in order -> ${v.ok ? 'OK, one leader at a time' : 'FAILED'}`,
  );
}

export function electionTable(verdicts: ElectionVerdict[]): string[] {
  const head = ['election', 'terms', 'leaders, in order', 'SIGKILLs', 'kill -> next leader observed', 'lease left at the kill', 'observers in order', 'overlaps', 'check'];
  const rows = verdicts.map((v) => [
    v.name,
    String(v.terms.length),
    v.terms.map((t) => t.service).join(' -> '),
    String(v.result.failovers.length),
    spread(v.observedMs),
    spread(v.result.failovers.map((f) => f.validUntil - f.killAt)),
    `${v.views.filter((c) => c.problem === undefined).length} of ${v.views.length}`,
    String(v.overlaps.length),
    v.ok ? 'OK' : 'FAILED',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)];
}

/** The election's part of summary.md: the table and its verdict, then one section per scene. */
export function electionMarkdown(verdicts: ElectionVerdict[]): { overview: string[]; sections: string[] } {
  const all = verdicts.every((v) => v.ok);
  const overview = [
    ...electionTable(verdicts),
    '',
    all
      ? '**One leader at a time, on every backend**: no two terms overlapped, terms only climbed, every observer saw every change of leader in order.'
      : '**AN ELECTION CHECK FAILED**: see the election sections below.',
  ];
  const sections: string[] = [];
  for (const v of verdicts) {
    const r = v.result;
    sections.push(
      `## Leader election on ${v.name} (${v.servers})`,
      '',
      `- ${SERVICES_TEXT}; lease ${r.config.ttlMs / 1000} s, a heartbeat of leader work every ${r.config.beatMs} ms`,
      `- terms, in order: ${termsLine(v)}`,
      `- failover, SIGKILL to the observer seeing the next leader: ${spread(v.observedMs)}, to every process watching seeing it: ${spread(v.allObservedMs)} (the dead leader's lease had ${spread(r.failovers.map((f) => f.validUntil - f.killAt))} left; ` +
        `the next leader began ${spread(v.afterLeaseMs)} after it ended)`,
      ...(r.resigned ? [`- the last leader resigned; the observer saw that nobody leads ${fmt(r.resigned.observed - r.resigned.at)} later`] : []),
      `- overlapping terms: ${v.overlaps.length}; terms ${v.termsIncrease ? 'strictly increasing' : '**not increasing**'}; heartbeats refused by the fenced store: ${r.store.refused.length}`,
      `- leaders seen, in order: ${viewsLine(v)}`,
      ...(r.errors.length ? [`- ${r.errors.length} error${r.errors.length === 1 ? '' : 's'} (first: ${r.errors[0]})`] : []),
      '',
      'What happened:',
      '',
      ...r.events.map((e) => `- ${(e.t / 1000).toFixed(2)} s: ${e.label}`),
      '',
    );
  }
  return { overview, sections };
}

const SERVICES_TEXT = 'three services campaign with their names as values, each observing the election, and an observer process watches too';
