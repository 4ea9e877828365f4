/**
 * The election under faults. Candidate processes campaign in a loop on one election (worker.ts,
 * electLoop: lead for a random term, a fenced begin and write with the term, resign, campaign again)
 * while the parent pauses leaders past their TTL, kills them (and starts a new candidate in their
 * place), and on a 3-member etcd cluster kills the etcd leader member and cuts or resets a leader's
 * links (a FaultProxy per candidate and member). Every term is stamped with CLOCK_MONOTONIC.
 *
 * What the history of every candidate, killed ones included, must show:
 * - no two terms overlap. A term lasts from its entry to the first of its end (before resign), its
 *   loss signal and its validUntil: what a leader keeping the Leadership contract may rely on. A
 *   killed leader's term lasts to the later of the kill and its last validUntil: nobody may lead
 *   while a lease is still guaranteed to a leader, dead or not;
 * - terms strictly increase in the order leaders entered (replayMutex);
 * - a paused leader's write, sent after SIGCONT without looking at its signal, is refused by the
 *   resource because of its term. Measured by its signal instead of validUntil, a paused leader's
 *   term does overlap the next one: only terms past their validUntil may do that;
 * - the resource lost no update: its value is the number of writes it accepted.
 */
import { expect } from 'chai';
import { checkHistory, quantile, replayMutex, type Hold, type MutexEvent } from '../../../src/testing/history.js';
import type { EtcdCluster } from '../../../src/testing/servers.js';
import { FaultProxy } from '../../support/proxy.js';
import { big, ms, sleep, type FaultWorker, type WorkerEvent } from '../../support/faults-workers.js';
import { report, worker, type Env } from '../../support/faults-env.js';
import { waitFor } from '../../support/wait.js';

export type ElectionFault =
  | 'pause' // SIGSTOP a leader that has just begun its term until a newer leader has had a whole term, and past 1.5×TTL
  | 'kill' // SIGKILL a leader just elected; a new candidate takes its place
  | 'member-kill' // etcd: SIGKILL the etcd leader member for a TTL, then restart it
  | 'partition' // etcd: blackhole every link of a leader just elected until another leads
  | 'reset'; // etcd: reset (RST) every connection of a leader just elected

export interface ElectionPlan {
  candidates: number;
  ttlMs: number;
  /** Each term lasts a random minMs..maxMs. */
  termMs: [number, number];
  /** Injected in this order, a few terms apart. */
  faults: ElectionFault[];
  /** After a leader is killed, the next one must enter within TTL + slackMs. */
  slackMs: number;
}

/** Where the candidates run: an etcd env comes with its cluster (candidates then talk through proxies). */
export interface ElectionSetup {
  env: Env;
  cluster?: EtcdCluster;
}

interface Slot {
  worker: FaultWorker;
  /** etcd: one proxy per member, in the order this candidate tries them. */
  proxies: FaultProxy[];
}

interface Run {
  setup: ElectionSetup;
  plan: ElectionPlan;
  election: string;
  slots: Slot[];
  /** Every candidate process ever started: the history is theirs. */
  everyone: FaultWorker[];
}

interface Sighting {
  w: FaultWorker;
  e: WorkerEvent;
}

interface Paused { worker: FaultWorker; fence: bigint; pausedAt: bigint; resumedAt: bigint; term: WorkerEvent }
interface Killed { worker: FaultWorker; fence: bigint; killedAt: bigint; validUntil: bigint; failoverMs: number }

const now = (): bigint => process.hrtime.bigint();
const min = (xs: bigint[]): bigint => xs.reduce((a, b) => (b < a ? b : a));
const max = (xs: bigint[]): bigint => xs.reduce((a, b) => (b > a ? b : a));

/** Starts a candidate in slot `i` and sets it campaigning. */
async function candidate(run: Run, i: number, proxies: FaultProxy[]): Promise<FaultWorker> {
  const { env, cluster } = run.setup;
  const urls = proxies.length > 0 ? proxies.map((p) => p.url('http')) : env.urls;
  // Short call timeouts, so that a dead or blackholed member is given up within the lease, and a
  // leader's write to the resource does not wait on one for longer than its term.
  const clientOptions = cluster ? { callTimeoutMs: 1000 } : undefined;
  const resource = env.resource.kind === 'etcd' ? { ...env.resource, callTimeoutMs: 1000 } : env.resource;
  const w = await worker({ ...env, urls, resource }, { name: `candidate${i}`, clientOptions });
  run.everyone.push(w);
  await w.request({ op: 'elect', name: run.election, ttlMs: run.plan.ttlMs, termMs: run.plan.termMs }, 'electing', 5000);
  return w;
}

function sightings(run: Run, type: 'leading' | 'term'): Sighting[] {
  return run.everyone.flatMap((w) => w.all(type).map((e) => ({ w, e })));
}

/** The first leader that entered with a term above `fence`, if any has yet. */
function successor(run: Run, fence: bigint): Sighting | undefined {
  const later = sightings(run, 'leading').filter((s) => big(s.e, 'fence') > fence);
  return later.sort((a, b) => (big(a.e, 'enter') < big(b.e, 'enter') ? -1 : 1))[0];
}

/**
 * The next leader to enter, from now on: the moment its `leading` event is read, or its `begun`
 * event (it has read the resource and waits out its term: a pause then delays only its write).
 */
function nextLeader(run: Run, type: 'leading' | 'begun' = 'leading', timeoutMs = 15_000): Promise<Sighting> {
  return new Promise((resolve, reject) => {
    const offs = run.slots.map(({ worker: w }) =>
      w.onEvent((e) => {
        if (e.type !== type) return;
        done();
        resolve({ w, e });
      }),
    );
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no leader entered within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      for (const off of offs) off();
    };
  });
}

function termOf(w: FaultWorker, fence: bigint): WorkerEvent | undefined {
  return w.all('term').find((t) => big(t, 'fence') === fence);
}

async function ended(w: FaultWorker, fence: bigint, what: string): Promise<WorkerEvent> {
  await waitFor(() => termOf(w, fence) !== undefined, 15_000, `the end of ${w.id}'s term ${fence} (${what})`);
  return termOf(w, fence)!;
}

/** Lets `n` more terms pass between two faults. */
async function moreTerms(run: Run, n: number): Promise<void> {
  const from = sightings(run, 'term').length;
  await waitFor(() => sightings(run, 'term').length >= from + n, 30_000, `${n} terms without a fault`);
}

/**
 * Pauses a leader just elected until a newer leader has held a whole term (its begin raised the
 * resource's fence) and 1.5×TTL have passed, then resumes it. Undefined if the pause came too late
 * (its term had already written: it was only a candidate when stopped).
 */
async function pauseLeader(run: Run): Promise<Paused | undefined> {
  // Paused with a call in flight, a worker would see that call's timer overdue on SIGCONT and give
  // up on the reply (a timeout, not the resource's answer): so the pause comes after its begin.
  const { w, e } = await nextLeader(run, 'begun');
  const fence = big(e, 'fence');
  const pausedAt = w.pause();
  let resumedAt: bigint;
  try {
    await waitFor(
      () => sightings(run, 'term').some((t) => big(t.e, 'fence') > fence && (t.e.begin as { ok: boolean }).ok),
      3 * run.plan.ttlMs + 15_000,
      `a newer leader's whole term while ${w.id} (term ${fence}) is paused`,
    );
    const left = 1.5 * run.plan.ttlMs - ms(pausedAt, now());
    if (left > 0) await sleep(left);
  } finally {
    resumedAt = w.resume();
  }
  const term = await ended(w, fence, 'paused');
  if (big(term, 'writeAt') < pausedAt) return undefined;
  return { worker: w, fence, pausedAt, resumedAt, term };
}

/**
 * Kills a leader just elected and starts a new candidate in its slot. Undefined if the kill came
 * too late (the term it had when it died had ended: it was only a candidate).
 */
async function killLeader(run: Run): Promise<Killed | undefined> {
  const { w } = await nextLeader(run);
  const killedAt = w.kill();
  const i = run.slots.findIndex((s) => s.worker === w);
  const slot = run.slots[i]!;
  await w.drained();
  const last = w.all('leading').at(-1)!;
  const fence = big(last, 'fence');
  await Promise.all([
    candidate(run, i, slot.proxies).then((next) => void (slot.worker = next)),
    waitFor(() => successor(run, fence) !== undefined, run.plan.ttlMs + run.plan.slackMs + 15_000, `a leader after ${w.id} (term ${fence}) was killed`),
  ]);
  if (termOf(w, fence)) return undefined;
  // Its last validUntil: the renewals it reported (every 20 ms) since it entered.
  const validUntil = max([last, ...w.all('validity').filter((v) => big(v, 'fence') === fence)].map((v) => big(v, 'validUntil')));
  return { worker: w, fence, killedAt, validUntil, failoverMs: ms(killedAt, big(successor(run, fence)!.e, 'enter')) };
}

/**
 * Kills the etcd leader member for a TTL while the candidates go on, then restarts it, and waits
 * for the election to have a leader that entered after the kill.
 */
async function killEtcdLeader(run: Run): Promise<string> {
  const cluster = run.setup.cluster!;
  const member = await cluster.leader();
  const at = now();
  await member.kill();
  let electedMs: number;
  try {
    await cluster.leader();
    electedMs = ms(at, now());
    await sleep(run.plan.ttlMs);
  } finally {
    await member.restart();
  }
  const back = now();
  const first = (): Sighting | undefined => sightings(run, 'leading').find((s) => big(s.e, 'enter') > at);
  await waitFor(() => first() !== undefined, 3 * run.plan.ttlMs + 15_000, 'a leader after the etcd leader member was killed');
  const next = big(first()!.e, 'enter');
  const since = (type: string): number => run.everyone.flatMap((w) => w.all(type)).filter((e) => big(e, 'at') > at && big(e, 'at') < next).length;
  return `etcd leader member ${member.name} killed for ${Math.round(ms(at, back))} ms: a new etcd leader after ${Math.round(electedMs)} ms; ` +
    `meanwhile leaders that lost their term: ${since('lost')}, candidacies that ended without leading: ${since('campaign-failed')}; ` +
    `the next leader entered ${Math.round(ms(at, next))} ms after the kill`;
}

/** Blackholes every link of a leader just elected until another leader enters, then lets them pass. */
async function partitionLeader(run: Run): Promise<{ line: string; failoverMs: number }> {
  const { w, e } = await nextLeader(run);
  const fence = big(e, 'fence');
  const proxies = run.slots.find((s) => s.worker === w)!.proxies;
  const at = now();
  for (const p of proxies) p.blackhole();
  try {
    await waitFor(() => successor(run, fence) !== undefined, run.plan.ttlMs + run.plan.slackMs + 15_000, `a leader after ${w.id} (term ${fence}) was cut off`);
  } finally {
    for (const p of proxies) p.pass();
  }
  const failoverMs = ms(at, big(successor(run, fence)!.e, 'enter'));
  const term = await ended(w, fence, 'partitioned');
  const how = term.lost ? `lost (${String((term.lost as { reason?: string }).reason)})` : 'ended by its leader before the lease ran out';
  return { failoverMs, line: `leader's links blackholed: next leader after ${Math.round(failoverMs)} ms; its term ${how}, resign ${term.resignError ? 'failed' : 'ok'}` };
}

/** Resets (RST) every connection of a leader just elected. */
async function resetLeader(run: Run): Promise<string> {
  const { w, e } = await nextLeader(run);
  const fence = big(e, 'fence');
  for (const p of run.slots.find((s) => s.worker === w)!.proxies) p.reset();
  const term = await ended(w, fence, 'links reset');
  const write = term.write as { ok: boolean } | undefined;
  return `leader's connections reset: term ${term.lost ? 'LOST' : 'kept'}, its write ${write?.ok ? 'accepted' : 'refused'}, resign ${term.resignError ? 'failed' : 'ok'}`;
}

/** Tries a fault that must hit a leader in its term up to 3 times; counts the misses. */
async function hitting<T>(attempt: () => Promise<T | undefined>, what: string, misses: Map<string, number>): Promise<T> {
  for (let tries = 0; tries < 3; tries++) {
    const hit = await attempt();
    if (hit !== undefined) return hit;
    misses.set(what, (misses.get(what) ?? 0) + 1);
  }
  throw new Error(`${what}: 3 tries, and each came after the leader's term had ended`);
}

/** What the faults left to report: their records, the failover times, one line each for the rest. */
interface Outcome {
  pauses: Paused[];
  kills: Killed[];
  failovers: Map<ElectionFault, number[]>;
  lines: string[];
  misses: Map<string, number>;
}

async function inject(run: Run, fault: ElectionFault, out: Outcome): Promise<void> {
  const failover = (f: ElectionFault, msValue: number): void => void out.failovers.set(f, [...(out.failovers.get(f) ?? []), msValue]);
  switch (fault) {
    case 'pause':
      out.pauses.push(await hitting(() => pauseLeader(run), 'pause', out.misses));
      return;
    case 'kill': {
      const k = await hitting(() => killLeader(run), 'kill', out.misses);
      out.kills.push(k);
      return failover('kill', k.failoverMs);
    }
    case 'member-kill':
      out.lines.push(await killEtcdLeader(run));
      return;
    case 'partition': {
      const p = await partitionLeader(run);
      out.lines.push(p.line);
      return failover('partition', p.failoverMs);
    }
    case 'reset':
      out.lines.push(await resetLeader(run));
      return;
  }
}

/**
 * Every term that began, as a Hold twice over: ended as the contract says (`holds`: the first of
 * exit, loss signal and validUntil; a killed leader's at the later of the kill and its validUntil)
 * and ended by its leader's own account (`bySignal`: the first of exit and loss signal).
 */
function history(run: Run, kills: Killed[]): { holds: Hold[]; bySignal: Hold[]; events: MutexEvent[]; unended: string[]; accepted: number; unknown: number } {
  const out = { holds: [] as Hold[], bySignal: [] as Hold[], events: [] as MutexEvent[], unended: [] as string[], accepted: 0, unknown: 0 };
  for (const w of run.everyone) {
    for (const l of w.all('leading')) {
      const fence = big(l, 'fence');
      const enter = big(l, 'enter');
      const t = termOf(w, fence);
      const k = kills.find((x) => x.worker === w && x.fence === fence);
      let end: bigint;
      let own: bigint;
      if (t) {
        own = t.lostAt === undefined ? big(t, 'exit') : min([big(t, 'exit'), big(t, 'lostAt')]);
        end = min([own, big(t, 'validUntil')]);
        const write = t.write as { ok: boolean; error?: unknown } | undefined;
        if (write?.ok) out.accepted++;
        if (write?.error) out.unknown++;
      } else if (k) {
        own = k.killedAt;
        end = max([k.killedAt, k.validUntil]);
      } else {
        out.unended.push(`${w.id}'s term ${fence} has no end, and it was not killed`);
        continue;
      }
      out.holds.push({ worker: w.id, enter, exit: end, fence, requested: big(l, 'requested') });
      out.bySignal.push({ worker: w.id, enter, exit: own, fence });
      out.events.push({ kind: 'enter', worker: w.id, at: enter, fence }, { kind: t ? 'exit' : 'crash', worker: w.id, at: end });
    }
  }
  return out;
}

/** Runs the scenario and asserts what the file header says. */
export async function electionUnderFaults(setup: ElectionSetup, plan: ElectionPlan, label: string): Promise<void> {
  await setup.env.reset();
  const cluster = setup.cluster;
  const run: Run = { setup, plan, election: `election-faults-${Date.now()}`, slots: [], everyone: [] };
  const started = performance.now();
  const allProxies: FaultProxy[] = [];
  const out: Outcome = { pauses: [], kills: [], failovers: new Map(), lines: [], misses: new Map() };
  try {
    for (let i = 0; i < plan.candidates; i++) {
      // Each candidate tries the members in its own order, so that they talk to different members.
      const members = cluster ? cluster.members.map((_, j) => cluster.members[(i + j) % cluster.members.length]!) : [];
      const proxies = await Promise.all(members.map((m) => FaultProxy.start({ port: Number(new URL(m.clientUrl).port) })));
      allProxies.push(...proxies);
      run.slots.push({ worker: undefined!, proxies });
    }
    await Promise.all(run.slots.map(async (slot, i) => (slot.worker = await candidate(run, i, slot.proxies))));
    await moreTerms(run, 3);
    for (const fault of plan.faults) {
      await inject(run, fault, out);
      await moreTerms(run, 3);
    }
    await Promise.all(run.slots.map((s) => s.worker.request({ op: 'elect-stop' }, 'elect-stopped', 20_000)));
  } finally {
    await Promise.all(run.slots.map((s) => s.worker?.stop()));
    await Promise.all(allProxies.map((p) => p.stop()));
  }
  const elapsed = performance.now() - started;
  const { pauses, kills } = out;
  const { holds, bySignal, events, unended, accepted, unknown } = history(run, kills);
  const checked = checkHistory(holds);
  const replay = replayMutex(events);
  const state = await setup.env.view.state();
  // The terms that, by their own signals, overlapped a later one. With no overlap in `holds`, each
  // of them was past its validUntil: the paused ones, and any whose loss timer fired late.
  const key = (worker: string | number, fence: bigint): string => `${worker}/${fence}`;
  const overlapping = new Set(checkHistory(bySignal).overlaps.map(([a]) => key(a.worker, a.fence)));
  const pausedOverlaps = pauses.filter((p) => overlapping.has(key(p.worker.id, p.fence))).length;

  const failoverText = [...out.failovers].map(([fault, xs]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    return `${fault === 'kill' ? 'kill -9' : 'links blackholed'} → next leader: median ${Math.round(quantile(sorted, 0.5))} ms, max ${Math.round(sorted.at(-1)!)} ms (n=${xs.length})`;
  });
  const injected = plan.faults.reduce((m, f) => m.set(f, (m.get(f) ?? 0) + 1), new Map<string, number>());
  const missed = [...out.misses].map(([f, n]) => `${n} ${f} missed and tried again`);
  report(
    `${label}: ${holds.length} terms by ${plan.candidates} candidates (${run.everyone.length} processes, ${checked.perWorker.size} led) in ${(elapsed / 1000).toFixed(1)} s, ` +
      `TTL ${plan.ttlMs} ms, terms ${plan.termMs[0]}-${plan.termMs[1]} ms; overlaps ${checked.overlaps.length}, term regressions ${checked.fenceRegressions.length}, ` +
      `model violations ${replay.violations.length}; resource ${state.value} = ${accepted} accepted writes${unknown ? ` (+${unknown} of unknown outcome)` : ''}; ` +
      `resign → next leader: median ${quantile(checked.handoffMs, 0.5).toFixed(1)} ms`,
  );
  report(`${label}: faults ${[...injected].map(([f, n]) => `${f} ${n}`).join(', ')}${missed.length ? ` (${missed.join(', ')})` : ''}; ${failoverText.join('; ')}`);
  if (pauses.length > 0) {
    const afterValidity = pauses.map((p) => Math.round(ms(big(p.term, 'validUntil'), big(successor(run, p.fence)!.e, 'enter'))));
    const writes = pauses.map((p) => p.term.write as { ok: boolean; last?: string; error?: unknown } | undefined);
    report(
      `${label}: paused ${pauses.map((p) => Math.round(ms(p.pausedAt, p.resumedAt))).join(', ')} ms; next leader entered ` +
        `${afterValidity.join(', ')} ms after the paused leader's validUntil; late writes refused ${writes.filter((w) => w?.ok === false).length}/${pauses.length} ` +
        `(${pauses.map((p, i) => `term ${p.fence} < ${String(writes[i]?.last)}`).join(', ')}; ` +
        `signal not yet aborted when sent: ${pauses.filter((p) => !p.term.signalAborted).length}/${pauses.length}); ` +
        `by their own signals ${overlapping.size} terms overlapped a later one: ${pausedOverlaps} paused` +
        `${overlapping.size > pausedOverlaps ? `, ${overlapping.size - pausedOverlaps} past their validUntil by a late timer` : ''}`,
    );
  }
  if (out.lines.length > 0) report(`${label}: ${out.lines.join('; ')}`);

  expect(unended, 'terms without an end').to.deep.equal([]);
  expect(replay.violations, 'leader model (one leader at a time, terms increasing)').to.deep.equal([]);
  expect(checked.overlaps.length, 'overlapping terms').to.equal(0);
  expect(checked.fenceRegressions.length, 'term regressions').to.equal(0);
  expect(holds.length, 'terms').to.be.at.least(3 * (plan.faults.length + 1));
  for (const p of pauses) {
    const write = p.term.write as { ok: boolean; last?: string; error?: unknown } | undefined;
    expect(big(p.term, 'writeAt') > p.resumedAt, `${p.worker.id}'s write was sent after SIGCONT`).to.equal(true);
    expect(write, `the paused leader's late write (term ${p.fence}) was sent`).to.not.equal(undefined);
    expect(write!.error, `the paused leader's late write (term ${p.fence}) failed`).to.equal(undefined);
    expect(write!.ok, `the paused leader's late write (term ${p.fence})`).to.equal(false);
    expect(BigInt(write!.last!) > p.fence, `the resource refused term ${p.fence} for a newer term (${write!.last})`).to.equal(true);
    expect(overlapping.has(key(p.worker.id, p.fence)), `paused term ${p.fence} overlaps a later one by its own signal`).to.equal(true);
  }
  for (const k of kills) expect(k.failoverMs, `ms from killing ${k.worker.id} to the next leader`).to.be.below(plan.ttlMs + plan.slackMs);
  expect(state.value, 'resource value (lost updates)').to.be.within(accepted, accepted + unknown);
}
