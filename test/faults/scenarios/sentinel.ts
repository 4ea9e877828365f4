/**
 * Failover under contention, on a Sentinel-managed master: 8 worker processes run the permit loop
 * on one RedisLocker key (through `redis+sentinel://`), while the parent forces failovers
 * (`SENTINEL FAILOVER`) one after another, each once the setup has settled again. Redis replicates
 * asynchronously, so a failover may lose a grant: the history is checked for moments with two holders
 * (double grants), each hold cut at its exit, its validUntil or its loss signal. What is measured and
 * reported: double grants, repeated fences, fenced writes refused, holders told 'failover' (and other
 * reasons), failed acquires, and how long after each failover the next grant came.
 */
import { expect } from 'chai';
import { checkPermits } from '../../../src/testing/history.js';
import type { RedisSentinel } from '../../../src/testing/servers.js';
import { big, ms, sleep, type FaultWorker } from '../../support/faults-workers.js';
import { report, worker, type Env } from '../../support/faults-env.js';
import { believed, stopLoops } from './contended.js';

export interface FailoverRun {
  doubleGrants: number;
  repeatedFences: number;
  refused: number;
  toldFailover: number;
  failedAcquires: number;
}

/**
 * The master is paused (SIGSTOP: it keeps its connections and answers nothing) until the sentinels
 * have called it down and promoted a replica; then it is resumed, and the sentinels turn it into a
 * replica of the new master (writes it took meanwhile, if any, are lost).
 */
async function pausedUntilReplaced(setup: RedisSentinel): Promise<void> {
  const before = await setup.master();
  const node = setup.nodes.find((n) => n.port === before.port)!;
  node.pause();
  try {
    const until = performance.now() + 30_000;
    for (;;) {
      const now = await setup.master().catch(() => before);
      if (now.port !== before.port) break;
      if (performance.now() > until) throw new Error('the sentinels did not replace the paused master within 30 s');
      await sleep(50);
    }
  } finally {
    node.resume();
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/**
 * Runs `failovers` forced failovers under 8 contenders with `minReplicas` and reports what happened.
 * Asserts only what must hold in every setting: every failover completed, the service came back after
 * each (a grant within 20 s), a wait that ran out ended at its deadline, and no holder stayed inside
 * past its validUntil. The double grants are reported, and returned for the caller to judge.
 */
export async function failoversUnderContention(
  setup: RedisSentinel,
  env: Env,
  key: string,
  opts: { failovers: number; minReplicas: number; ttlMs: number; how: 'forced' | 'paused' },
  label: string,
): Promise<FailoverRun> {
  await env.reset();
  await setup.settled();
  const lockerOptions = { minReplicas: opts.minReplicas, replicaTimeoutMs: 100 };
  const ws: FaultWorker[] = await Promise.all(Array.from({ length: 8 }, () => worker(env, { name: 'contender', lockerOptions, clientOptions: { commandTimeoutMs: 1000 } })));
  const rounds: Array<{ started: bigint; switched: bigint; firstGrantMs: number; tookMs: number }> = [];
  try {
    for (const w of ws) w.send({ op: 'permits', key, ttlMs: opts.ttlMs, waitTimeoutMs: 30_000, holdMs: [5, 30], fenced: true });
    for (let i = 0; i < opts.failovers; i++) {
      await setup.settled(60_000);
      await sleep(300); // contention under way on a settled setup
      const started = process.hrtime.bigint();
      if (opts.how === 'forced') await setup.failover(30_000);
      else await pausedUntilReplaced(setup);
      const switched = process.hrtime.bigint();
      const entries = (): bigint[] => ws.flatMap((w) => w.all('entered').map((e) => big(e, 'enter'))).filter((t) => t > switched);
      const until = performance.now() + 20_000;
      while (entries().length === 0 && performance.now() < until) await sleep(10);
      const after = entries();
      const first = after.length ? after.reduce((a, b) => (b < a ? b : a)) : 0n;
      if (first === 0n) {
        // Nothing granted within 20 s: report what the workers saw.
        const failedNow = ws.flatMap((w) => w.all('acquire-failed')).slice(-3).map((e) => JSON.stringify(e.error));
        const stderr = ws.map((w) => w.stderr).filter(Boolean).slice(0, 2);
        throw new Error(`no grant within 20 s of failover ${i + 1}: ${ws.reduce((n, w) => n + w.all('entered').length, 0)} holds so far; last failed acquires ${failedNow.join(' | ')}; stderr ${stderr.join(' | ').slice(0, 1500)}`);
      }
      rounds.push({ started, switched, firstGrantMs: ms(switched, first), tookMs: ms(started, switched) });
    }
    await sleep(500);
    await stopLoops(ws, 40_000);
  } finally {
    await Promise.all(ws.map((w) => w.stop()));
  }

  const permits = ws.flatMap((w) => w.all('permit'));
  const holds = ws.flatMap((w) => w.all('permit').map((e) => believed(w, e)));
  const r = checkPermits(holds, 1);
  const reasons = new Map<string, number>();
  for (const e of permits) {
    const reason = (e.lost as { reason?: string } | undefined)?.reason;
    if (reason) reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  }
  const refused = permits.filter((e) => (e.begin as { ok?: boolean } | undefined)?.ok === false || (e.write as { ok?: boolean } | undefined)?.ok === false).length;
  const failed = ws.flatMap((w) => w.all('acquire-failed'));
  const failedBy = new Map<string, number>();
  for (const e of failed) {
    const err = e.error as { name?: string; code?: string };
    failedBy.set(`${err.name}`, (failedBy.get(`${err.name}`) ?? 0) + 1);
  }
  const late = Math.max(0, ...permits.map((e) => ms(big(e, 'validUntil'), [big(e, 'exit'), ...(e.lostAt === undefined ? [] : [big(e, 'lostAt')])].reduce((a, b) => (b < a ? b : a)))));
  // Around which failover each double grant happened (the later hold's entry, after which failover).
  const nearFailover = r.excess.map((x) => rounds.filter((rd) => rd.started <= x.at).length);
  const timedOut = failed.filter((e) => (e.error as { code?: string }).code === 'WL_LOCK_TIMEOUT');
  const timedOutAt = timedOut.map((e) => ms(big(e, 'requested'), big(e, 'at')));
  report(
    `${label}: ${rounds.length} ${opts.how === 'forced' ? 'forced failovers (SENTINEL FAILOVER)' : 'failovers of a paused master (SIGSTOP until the sentinels promote a replica)'} under 8 contenders (TTL ${opts.ttlMs} ms, minReplicas ${opts.minReplicas}); ` +
      `each failover took ${Math.round(Math.min(...rounds.map((x) => x.tookMs)))}-${Math.round(Math.max(...rounds.map((x) => x.tookMs)))} ms to be announced, ` +
      `first grant after the announcement median ${Math.round(median(rounds.map((x) => x.firstGrantMs)))} ms (max ${Math.round(Math.max(...rounds.map((x) => x.firstGrantMs)))}); ` +
      `${holds.length} holds; DOUBLE GRANTS ${r.excess.length}${r.excess.length ? ` (after failovers ${nearFailover.join(', ')})` : ''}, repeated fences ${r.repeatedFences.length}, ` +
      `fenced accesses refused ${refused}; holders told of a loss: ${reasons.size ? [...reasons].map(([k, v]) => `${v} ${k}`).join(', ') : 'none'}; ` +
      `failed acquires: ${failedBy.size ? [...failedBy].map(([k, v]) => `${v} ${k}`).join(', ') : 'none'}${timedOut.length ? ` (timeouts ended ${Math.round(Math.min(...timedOutAt))}-${Math.round(Math.max(...timedOutAt))} ms after they began)` : ''}; longest inside past validUntil ${late.toFixed(1)} ms`,
  );
  expect(rounds.length).to.equal(opts.failovers);
  // A wait may run out (with minReplicas at the replica count nothing is granted until every replica
  // is back), but it must end at its deadline, not after.
  const overdue = failed.filter((e) => ms(big(e, 'requested'), big(e, 'at')) > 30_000 + 500);
  expect(overdue.map((e) => JSON.stringify(e.error)), 'failed acquires that ended past their 30 s deadline').to.deep.equal([]);
  expect(late, 'ms a holder stayed inside past its validUntil').to.be.below(500);
  return { doubleGrants: r.excess.length, repeatedFences: r.repeatedFences.length, refused, toldFailover: reasons.get('failover') ?? 0, failedAcquires: failed.length };
}
