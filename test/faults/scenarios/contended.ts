/**
 * Server faults under contention, for the primitives that admit more than one holder: a semaphore of
 * LIMIT permits, and a read-write lock. (c) the server (Redis, or etcd's only member) paused past the
 * TTL, (d) the etcd leader killed. Five worker processes run the permit loop; the fault is struck the
 * moment the long holder enters a hold. What is checked is the primitive's own rule (`Contended`):
 * never more than the limit inside, or never a writer beside anyone, with fences that never repeat or
 * go back. Every hold is cut down to what its holder could believe in (its exit, its validUntil, or
 * the moment its signal aborted, whichever is first).
 */
import { expect } from 'chai';
import type { RWHold } from '../../../src/testing/history.js';
import type { EtcdCluster } from '../../../src/testing/servers.js';
import { big, ms, sleep, type FaultWorker, type WorkerEvent } from '../../support/faults-workers.js';
import { report, worker, type Env } from '../../support/faults-env.js';
import { waitFor } from '../../support/wait.js';
import { via } from './etcd.js';

const min = (...xs: bigint[]): bigint => xs.reduce((a, b) => (b < a ? b : a));

/** What a contention scenario runs on, and how its history is judged. */
export interface Contended {
  /** Worker options that make the worker's locker this primitive (`{ limit }` or `{ rw: true }`). */
  worker: { limit?: number; rw?: boolean };
  /** Extra permit-loop fields for contender `i` (0 is the long holder), e.g. a read-write lock's `writes` share. */
  loop(i: number): Record<string, unknown>;
  /** The checker's verdict on every hold: a line for the report, and the assertions. */
  check(holds: RWHold[]): { text: string; assert(): void };
}

/** A `permit` event of the permit loop as a hold, ended where its holder stopped believing in it. */
export function believed(w: FaultWorker, e: WorkerEvent): RWHold {
  const ends = [big(e, 'exit'), big(e, 'validUntil'), ...(e.lostAt === undefined ? [] : [big(e, 'lostAt')])];
  // A semaphore's holds carry no mode; its checker does not read one.
  const mode = e.mode === 'read' ? 'read' : 'write';
  return { worker: w.id, mode, requested: big(e, 'requested'), enter: big(e, 'enter'), exit: min(...ends), fence: big(e, 'fence') };
}

export async function stopLoops(ws: FaultWorker[], timeoutMs = 20_000): Promise<void> {
  await Promise.all(ws.map((w) => w.request({ op: 'permits-stop' }, 'permits-stopped', timeoutMs)));
}

/** Figures every contention run reports: losses, failed acquires, release errors, lateness of the news. */
function contentionFigures(ws: FaultWorker[]): { holds: RWHold[]; permits: WorkerEvent[]; lost: number; failed: string; releaseErrors: number; lateMs: number } {
  const holds = ws.flatMap((w) => w.all('permit').map((e) => believed(w, e)));
  const permits = ws.flatMap((w) => w.all('permit'));
  const failures = new Map<string, number>();
  for (const e of ws.flatMap((w) => w.all('acquire-failed'))) {
    const err = e.error as { name?: string; code?: string; reason?: string; message?: string };
    const name = `${err.name}(${err.reason ?? `${err.code}: ${String(err.message).slice(0, 80)}`})`;
    failures.set(name, (failures.get(name) ?? 0) + 1);
  }
  // How long after its validUntil a holder was still inside, not yet told: a careful holder leaves at the abort.
  const late = permits.map((e) => ms(big(e, 'validUntil'), min(big(e, 'exit'), ...(e.lostAt === undefined ? [] : [big(e, 'lostAt')]))));
  return {
    holds,
    permits,
    lost: permits.filter((e) => e.lostAt !== undefined).length,
    failed: failures.size ? [...failures].map(([n, c]) => `${c} ${n}`).join(', ') : 'none',
    releaseErrors: permits.filter((e) => e.releaseError !== undefined).length,
    lateMs: Math.max(0, ...late),
  };
}

/** The next hold `w` enters from now on (not one already announced), within `timeoutMs`. */
function nextEntry(w: FaultWorker, timeoutMs: number): Promise<WorkerEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`${w.id} entered no hold within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = w.onEvent((e) => {
      if (e.type !== 'entered') return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

/** When each contender first entered a hold after `since`, in ms after it (in worker order). */
const backAfter = (ws: FaultWorker[], since: bigint): string =>
  ws.map((w) => Math.round(ms(since, min(...w.all('entered').map((e) => big(e, 'enter')).filter((t) => t > since))))).join('/');

/** Every contender has entered a hold after `since` (the service is back for all of them). */
const allHoldAgain = (ws: FaultWorker[], since: bigint): boolean => ws.every((w) => w.all('entered').some((e) => big(e, 'enter') > since));

/** One long holder (each hold `longMs`: the fault is struck the moment it enters one) and four that come and go. */
const CONTENDERS = ['long-holder', 'contender', 'contender', 'contender', 'contender'];
const loop = (on: Contended, key: string, ttlMs: number, longMs: number, i: number): Record<string, unknown> => ({
  op: 'permits', key, ttlMs, waitTimeoutMs: 30_000, holdMs: i === 0 ? [longMs, longMs] : [20, 100], ...on.loop(i),
});

/** How the hold the fault was struck under ended: kept, or told of the loss (with the reason) how long after its validUntil. */
function struck(w: FaultWorker, entered: WorkerEvent): { told: boolean; text: string } {
  const e = w.all('permit').find((p) => p.enter === entered.enter);
  if (!e) throw new Error(`${w.id}: no end reported for the hold entered at ${String(entered.enter)}`);
  if (e.lostAt === undefined) return { told: false, text: `kept it (${Math.round(ms(big(e, 'enter'), big(e, 'exit')))} ms held)` };
  const reason = (e.lost as { reason?: string }).reason;
  return { told: true, text: `was told of the loss (${reason}) ${ms(big(e, 'validUntil'), big(e, 'lostAt')).toFixed(1)} ms after its validUntil` };
}

/**
 * (c) Five contenders run the permit loop; the server (Redis, or etcd's only member) is paused
 * (SIGSTOP) for `pauseMs` (> TTL) the moment the long holder enters a hold, then resumed. Pass: the
 * primitive's rule held; no grant while it is paused; the long holder, inside throughout, is told of
 * the loss, and no holder stays inside more than 500 ms (timer latency) past its validUntil; within
 * `recoveryMs` of SIGCONT a hold is granted again, and every contender holds again.
 */
export async function pausedServerUnderContention(
  on: Contended,
  env: Env,
  server: { pause(): void; resume(): void },
  key: string,
  opts: { ttlMs: number; pauseMs: number; recoveryMs: number; clientOptions: Record<string, unknown> },
  label: string,
): Promise<void> {
  await env.reset();
  const ws = await Promise.all(CONTENDERS.map((name) => worker(env, { name, ...on.worker, clientOptions: opts.clientOptions })));
  let paused = false;
  try {
    // Inside for 3×TTL: through the whole pause (2×TTL), whose length outlasts its validUntil.
    ws.forEach((w, i) => w.send(loop(on, key, opts.ttlMs, 3 * opts.ttlMs, i)));
    await waitFor(() => ws.filter((w) => w.all('permit').length > 0).length >= 2, 15_000, 'contention under way', 20);
    const entered = await nextEntry(ws[0]!, 20_000);
    const pausedAt = process.hrtime.bigint();
    server.pause();
    paused = true;
    await sleep(opts.pauseMs);
    const resumedAt = process.hrtime.bigint();
    server.resume();
    paused = false;
    await waitFor(() => allHoldAgain(ws, resumedAt), opts.recoveryMs + 20_000, 'every contender holding again after SIGCONT', 20);
    const allBackAt = process.hrtime.bigint();
    await sleep(1000);
    await stopLoops(ws);

    const f = contentionFigures(ws);
    const verdict = on.check(f.holds);
    const inside = f.permits.filter((e) => big(e, 'enter') < pausedAt && big(e, 'exit') > pausedAt);
    // A reply already on its way when the server stopped may still be read just after: 500 ms of grace.
    const duringPause = f.holds.filter((x) => x.enter > pausedAt + 500_000_000n && x.enter < resumedAt).length;
    const after = f.holds.filter((x) => x.enter > resumedAt);
    const recovery = ms(resumedAt, min(...after.map((x) => x.enter)));
    const long = struck(ws[0]!, entered);
    report(
      `${label}: server paused ${Math.round(ms(pausedAt, resumedAt))} ms (TTL ${opts.ttlMs}) as the long holder entered; ${f.holds.filter((x) => x.enter < pausedAt).length} holds before, ` +
        `${duringPause} granted during the pause, ${after.length} after; ${inside.length} inside at SIGSTOP (told of a loss: ${inside.filter((e) => e.lostAt !== undefined).length}); ` +
        `the long holder ${long.text}; longest inside past validUntil ${f.lateMs.toFixed(1)} ms; first grant ${Math.round(recovery)} ms after SIGCONT, ` +
        `every contender holding again after ${Math.round(ms(resumedAt, allBackAt))} ms (each: ${backAfter(ws, resumedAt)}); loss signals ${f.lost}; failed acquires: ${f.failed}; ` +
        `release errors ${f.releaseErrors}; ${verdict.text}`,
    );
    verdict.assert();
    expect(duringPause, 'holds granted while the server was paused').to.equal(0);
    expect(long.told, 'the long holder, inside through the pause, was told of the loss').to.equal(true);
    expect(f.lateMs, 'ms a holder stayed inside past its validUntil').to.be.below(500);
    expect(recovery, 'ms from SIGCONT to the first grant').to.be.below(opts.recoveryMs);
  } finally {
    if (paused) server.resume();
    await Promise.all(ws.map((w) => w.stop()));
  }
}

/**
 * (d) Five contenders on a 3-member cluster, three of them talking to the leader first (the long
 * holder among them), run the permit loop; the leader is killed (SIGKILL) as the long holder enters
 * a hold. Pass: the primitive's rule held; no holder stays inside more than 500 ms past its
 * validUntil; every contender holds again within 30 s of the kill.
 */
export async function leaderKilledUnderContention(on: Contended, cluster: EtcdCluster, env: Env, key: string, ttlMs: number, label: string): Promise<void> {
  await env.reset();
  const leader = await cluster.leader();
  const followers = cluster.members.filter((m) => m !== leader);
  const clientOptions = { callTimeoutMs: 2000 };
  const ws = await Promise.all(
    CONTENDERS.map((name, i) => worker({ ...env, urls: via(cluster, i < 3 ? leader : followers[i % followers.length]!) }, { name, ...on.worker, clientOptions })),
  );
  try {
    // Inside for 2×TTL: through the election, on renewals sent to the new leader.
    ws.forEach((w, i) => w.send(loop(on, key, ttlMs, 2 * ttlMs, i)));
    await waitFor(() => ws.filter((w) => w.all('permit').length > 0).length >= 2, 15_000, 'contention under way', 20);
    const entered = await nextEntry(ws[0]!, 30_000);
    const killedAt = process.hrtime.bigint();
    await leader.kill();
    const electedAt = await cluster.leader().then(() => process.hrtime.bigint());
    await waitFor(() => allHoldAgain(ws, killedAt), 30_000, 'every contender holding again after the kill', 20);
    const allBackAt = process.hrtime.bigint();
    await sleep(1000);
    await stopLoops(ws);

    const f = contentionFigures(ws);
    const verdict = on.check(f.holds);
    const spanning = f.permits.filter((e) => big(e, 'enter') < killedAt && big(e, 'exit') > killedAt);
    const after = f.holds.filter((x) => x.enter > killedAt);
    const long = struck(ws[0]!, entered);
    report(
      `${label}: TTL ${ttlMs} ms, leader killed under 5 contenders (3 talking to it) as the long holder entered, a new one answering after ${Math.round(ms(killedAt, electedAt))} ms; ` +
        `the long holder (talking to the leader) ${long.text}; ` +
        `${spanning.length} holds spanned the kill (kept ${spanning.filter((e) => e.lostAt === undefined).length}, told of a loss ${spanning.filter((e) => e.lostAt !== undefined).length}); ` +
        `${f.holds.length - after.length} holds before, ${after.length} after; first grant ${Math.round(ms(killedAt, min(...after.map((x) => x.enter))))} ms after the kill, ` +
        `every contender holding again after ${Math.round(ms(killedAt, allBackAt))} ms (each, the first three talking to the old leader first: ${backAfter(ws, killedAt)}); longest inside past validUntil ${f.lateMs.toFixed(1)} ms; loss signals ${f.lost}; ` +
        `failed acquires: ${f.failed}; release errors ${f.releaseErrors}; ${verdict.text}`,
    );
    verdict.assert();
    expect(f.lateMs, 'ms a holder stayed inside past its validUntil').to.be.below(500);
  } finally {
    await Promise.all(ws.map((w) => w.stop()));
    await leader.restart();
  }
}
