/**
 * Semaphore scenarios: RedisSemaphore and EtcdSemaphore admitting 2 holders, 5 worker processes.
 * (a) a holder paused past its TTL, (b) a holder killed; the server faults, (c) the server paused and
 * (d) the etcd leader killed, are contended.ts's, run on `SEMAPHORE`. Every history goes through
 * checkPermits, with each hold cut down to what its holder could believe in (its exit, its
 * validUntil, or the moment its signal aborted, whichever is first).
 */
import { expect } from 'chai';
import { checkPermits, type Hold, type PermitReport } from '../../../src/testing/history.js';
import { big, ms, sleep, type FaultWorker, type WorkerEvent } from '../../support/faults-workers.js';
import { report, worker, type Env } from '../../support/faults-env.js';
import { waitFor } from '../../support/wait.js';
import { acquired, lastValidUntil } from './holder.js';
import { believed, stopLoops, type Contended } from './contended.js';

/** Every semaphore here admits two holders: five processes want them. */
export const LIMIT = 2;

const min = (...xs: bigint[]): bigint => xs.reduce((a, b) => (b < a ? b : a));
const max = (...xs: bigint[]): bigint => xs.reduce((a, b) => (b > a ? b : a));

function start(env: Env, names: string[], clientOptions?: Record<string, unknown>): Promise<FaultWorker[]> {
  return Promise.all(names.map((name) => worker(env, { name, limit: LIMIT, clientOptions })));
}

/** A permit taken with the `acquire` op and given back with `release`, ended at its last validUntil at the latest. */
function heldUntilRelease(w: FaultWorker, a: WorkerEvent, released: WorkerEvent): Hold {
  return { worker: w.id, requested: big(a, 'requested'), enter: big(a, 'enter'), exit: min(big(released, 'exit'), lastValidUntil(w)), fence: big(a, 'fence') };
}

const checked = (r: PermitReport): string =>
  `checker: ${r.holds} holds, peak ${r.maxInside} inside of ${LIMIT}, excess ${r.excess.length}, repeated fences ${r.repeatedFences.length}, fence regressions ${r.fenceRegressions.length}`;

function expectPermitsHeld(r: PermitReport): void {
  expect(r.excess.map((e) => `${e.at}: ${e.holds.map((h) => `${h.worker} (fence ${h.fence})`).join(', ')}`), 'moments over the limit').to.deep.equal([]);
  expect(r.repeatedFences, 'repeated fences').to.deep.equal([]);
  expect(r.fenceRegressions, 'fence regressions').to.deep.equal([]);
}

/** The semaphore for the contention scenarios: never more than LIMIT inside, and the limit reached. */
export const SEMAPHORE: Contended = {
  worker: { limit: LIMIT },
  loop: () => ({}),
  check(holds) {
    const r = checkPermits(holds, LIMIT);
    return {
      text: checked(r),
      assert() {
        expectPermitsHeld(r);
        expect(r.maxInside, 'peak holders (the limit was reached)').to.equal(LIMIT);
      },
    };
  },
};

/**
 * (a) Holder H and keeper K take the two permits; H begins the fenced resource and is paused (SIGSTOP)
 * for 2×TTL, its write queued. Three waiters run the permit loop, fenced. Pass: the first waiter
 * enters only after H's validUntil (K held the other permit throughout, so only H's could be given);
 * the waiters, one at a time, access the resource unrefused; on resume H's signal aborts at once and
 * its write is refused by the fence; no moment over the limit. H's own stamps (inside until its write
 * was answered) do exceed it: no lease stops a paused process, only the fence caught it.
 */
export async function pausedPermitHolder(env: Env, key: string, ttlMs: number, label: string): Promise<void> {
  await env.reset();
  const [holder, keeper, ...waiters] = await start(env, ['holder', 'keeper', 'waiter', 'waiter', 'waiter']);
  try {
    const h = await acquired(holder!, key, ttlMs, 5000);
    const k = await acquired(keeper!, key, ttlMs, 5000);
    expect((await holder!.request({ op: 'begin' }, 'begin', 5000)).ok).to.equal(true);
    holder!.send({ op: 'hold', ms: 200 });
    holder!.send({ op: 'write' });
    const pausedAt = holder!.pause();
    for (const w of waiters) w.send({ op: 'permits', key, ttlMs, waitTimeoutMs: 60_000, holdMs: [20, 80], fenced: true });
    await waitFor(() => waiters.some((w) => w.all('permit').length > 0), 3 * ttlMs + 10_000, "a waiter's first permit", 20);
    const remaining = 2 * ttlMs - ms(pausedAt, process.hrtime.bigint());
    if (remaining > 0) await sleep(remaining);
    await stopLoops(waiters);

    const resumedAt = holder!.resume();
    const [lost, write] = await Promise.all([holder!.next('lost', 5000), holder!.next('write', 5000)]);
    const released = await keeper!.request({ op: 'release' }, 'released', 5000);
    const state = await env.view.state();

    const validUntil = lastValidUntil(holder!);
    const permits = waiters.flatMap((w) => w.all('permit'));
    const waiterHolds = waiters.flatMap((w) => w.all('permit').map((e) => believed(w, e)));
    const firstEnter = min(...waiterHolds.map((x) => x.enter));
    const refused = permits.filter((e) => !(e.begin as { ok?: boolean })?.ok || !(e.write as { ok?: boolean })?.ok).length;
    const waiterFences = waiterHolds.map((x) => x.fence);
    const holderHold: Hold = { worker: holder!.id, enter: big(h, 'enter'), exit: min(big(lost, 'at'), validUntil), fence: big(h, 'fence') };
    const keeperHold = heldUntilRelease(keeper!, k, released);
    const r = checkPermits([holderHold, keeperHold, ...waiterHolds], LIMIT);
    const raw = checkPermits([{ ...holderHold, exit: big(write, 'at') }, keeperHold, ...waiterHolds], LIMIT);
    const otherLosses = [keeper!, ...waiters].reduce((n, w) => n + w.all('lost').length + w.all('permit').filter((e) => e.lostAt !== undefined).length, 0);
    const abortAfterResume = ms(resumedAt, big(lost, 'at'));
    report(
      `${label}: holder paused ${Math.round(ms(pausedAt, resumedAt))} ms (TTL ${ttlMs}); its permit went to a waiter ${Math.round(ms(validUntil, firstEnter))} ms ` +
        `after its validUntil (${Math.round(ms(pausedAt, firstEnter))} ms after SIGSTOP; the keeper held the other throughout); ${waiterHolds.length} waiter holds, ` +
        `fenced accesses refused ${refused}, resource ${state.value}; the holder's signal aborted ${abortAfterResume.toFixed(1)} ms after SIGCONT ` +
        `(${String((lost.error as { reason?: string }).reason)}); its write ${write.ok ? 'ACCEPTED' : 'refused'} (fence ${h.fence} < ${String(write.last)}); ` +
        `${checked(r)}; the paused process's own stamps: ${raw.excess.length} moments over the limit (only the fence caught them); loss signals: holder 1, others ${otherLosses}`,
    );
    expect(firstEnter > validUntil, "a waiter entered before the paused holder's validUntil").to.equal(true);
    expect(waiterFences.every((f) => f > big(k, 'fence') && f > big(h, 'fence')), 'waiter fences above both earlier permits').to.equal(true);
    expect(refused, "the waiters' fenced accesses refused").to.equal(0);
    expect(state.value, 'resource: one update per waiter hold, none from the paused holder').to.equal(waiterHolds.length);
    expect(abortAfterResume, 'signal abort after resume (ms)').to.be.below(1000);
    expect(lost.error).to.include({ code: 'WL_LOCK_LOST' });
    expect(write.ok, "the paused holder's write").to.equal(false);
    expect(BigInt(String(write.last))).to.equal(max(...waiterFences));
    expect(released.ok, "the keeper's release").to.equal(true);
    expect(otherLosses, 'loss signals of the keeper and the waiters').to.equal(0);
    expectPermitsHeld(r);
    expect(r.maxInside).to.equal(LIMIT);
    expect(raw.excess.length, 'the excess the checker sees in the paused holder\'s own stamps').to.be.above(0);
  } finally {
    await Promise.all([holder, keeper, ...waiters].map((w) => w!.stop()));
  }
}

/**
 * (b) Holder H and keeper K hold both permits; three waiters queue, 100 ms apart. H is killed
 * (SIGKILL). Pass: the first in line enters within TTL + `slackMs` of the kill, after H's last
 * validUntil, and alone (the other two wait: K and it hold both permits); then each release admits
 * the next in line; no moment over the limit. Returns the ms from the kill to the permit's new holder.
 */
export async function killedPermitHolder(env: Env, key: string, ttlMs: number, slackMs: number, label: string): Promise<number> {
  await env.reset();
  const [holder, keeper, ...waiters] = await start(env, ['holder', 'keeper', 'waiter', 'waiter', 'waiter']);
  try {
    const h = await acquired(holder!, key, ttlMs, 5000);
    const k = await acquired(keeper!, key, ttlMs, 5000);
    const waitTimeoutMs = 3 * ttlMs + 20_000;
    for (const w of waiters) {
      w.send({ op: 'acquire', key, ttlMs, waitTimeoutMs });
      await sleep(100); // one after another: the order of the line is known
    }
    await sleep(ttlMs / 2); // the holder has extended (or renewed) at least once by now
    const killedAt = holder!.kill();
    await holder!.exited;
    const answered = (w: FaultWorker): boolean => w.all('acquired').length + w.all('acquire-failed').length > 0;
    await waitFor(() => waiters.some(answered), waitTimeoutMs + 5000, 'a waiter admitted after the kill', 5);
    const admitted = waiters.filter(answered);
    const first = admitted[0]!.all('acquired')[0];
    expect(first, JSON.stringify(admitted[0]!.events.at(-1))).to.not.equal(undefined);
    await sleep(300);
    const alone = waiters.filter(answered).length;
    expect(admitted.map((w) => w.id), 'admitted after the kill (the first in line, alone)').to.deep.equal([waiters[0]!.id]);
    expect(alone, 'waiters admitted while the keeper and the first in line hold').to.equal(1);

    // Each release admits the next in line.
    const kReleased = await keeper!.request({ op: 'release' }, 'released', 5000);
    const second = await waiters[1]!.next(['acquired', 'acquire-failed'], 10_000);
    const w0Released = await waiters[0]!.request({ op: 'release' }, 'released', 5000);
    const third = await waiters[2]!.next(['acquired', 'acquire-failed'], 10_000);
    expect([second.type, third.type], JSON.stringify([second, third])).to.deep.equal(['acquired', 'acquired']);
    const [w1Released, w2Released] = await Promise.all([1, 2].map((i) => waiters[i]!.request({ op: 'release' }, 'released', 5000)));

    const validUntil = lastValidUntil(holder!);
    const waited = ms(killedAt, big(first!, 'enter'));
    const holds: Hold[] = [
      { worker: holder!.id, enter: big(h, 'enter'), exit: max(killedAt, validUntil), fence: big(h, 'fence') },
      heldUntilRelease(keeper!, k, kReleased),
      heldUntilRelease(waiters[0]!, first!, w0Released),
      heldUntilRelease(waiters[1]!, second, w1Released!),
      heldUntilRelease(waiters[2]!, third, w2Released!),
    ];
    const r = checkPermits(holds, LIMIT);
    const fences = [first!, second, third].map((e) => big(e, 'fence'));
    const losses = [keeper!, ...waiters].reduce((n, w) => n + w.all('lost').length, 0);
    report(
      `${label}: the permit came back ${Math.round(waited)} ms after kill -9 (TTL ${ttlMs}, bound TTL + ${slackMs}), ` +
        `${Math.round(ms(validUntil, big(first!, 'enter')))} ms after the holder's last validUntil, to the first in line alone; ` +
        `then releases admitted the next in line after ${ms(big(kReleased, 'exit'), big(second, 'enter')).toFixed(1)} and ` +
        `${ms(big(w0Released, 'exit'), big(third, 'enter')).toFixed(1)} ms; fences in line order ${fences.join(' < ')}; ${checked(r)}; loss signals ${losses}`,
    );
    expect(big(first!, 'enter') > validUntil, "entered before the killed holder's validUntil").to.equal(true);
    expect(waited, 'ms from kill to the waiter entering').to.be.below(ttlMs + slackMs);
    expect(fences[0]! < fences[1]! && fences[1]! < fences[2]!, 'fences in the order of the line').to.equal(true);
    expect(fences[0]! > big(k, 'fence'), 'the new permit\'s fence').to.equal(true);
    expect(losses, 'loss signals').to.equal(0);
    expectPermitsHeld(r);
    expect(r.maxInside).to.equal(LIMIT);
    return waited;
  } finally {
    await Promise.all([holder, keeper, ...waiters].map((w) => w!.stop()));
  }
}

