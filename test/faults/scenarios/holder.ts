/**
 * Scenarios where the holder's process is what fails: paused (2), its wall clock jumping (6), killed (9).
 * Holder and waiter are separate worker processes; the parent pauses, resumes and kills them.
 */
import { expect } from 'chai';
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { replayMutex, type MutexEvent } from '../../../src/testing/history.js';
import { big, ms, sleep, type FaultWorker, type WorkerEvent } from '../../support/faults-workers.js';
import { report, worker, type Env } from '../../support/faults-env.js';

/** The latest validUntil (CLOCK_MONOTONIC ns) the holder reported, from its acquire or any renewal. */
export function lastValidUntil(w: FaultWorker): bigint {
  const stamps = [...w.all('acquired'), ...w.all('validity')].map((e) => big(e, 'validUntil'));
  return stamps.reduce((a, b) => (b > a ? b : a), 0n);
}

export async function acquired(w: FaultWorker, key: string, ttlMs: number, waitTimeoutMs: number): Promise<WorkerEvent> {
  const e = await w.request({ op: 'acquire', key, ttlMs, waitTimeoutMs }, ['acquired', 'acquire-failed'], waitTimeoutMs + 10_000);
  if (e.type !== 'acquired' || !e.got) throw new Error(`${w.id} did not acquire ${key}: ${JSON.stringify(e)}`);
  return e;
}

/**
 * 2. The holder is paused (SIGSTOP) inside its section for 2×TTL, then resumed. A waiter takes the
 * lock meanwhile and updates the resource. Pass: the waiter enters only after the holder's validUntil;
 * on resume the holder's signal aborts at once (its validUntil is long past); the holder's write,
 * sent without looking at the signal, is refused by the fence; the resource lost no update.
 */
export async function pausedHolder(env: Env, key: string, ttlMs: number, label: string): Promise<void> {
  await env.reset();
  const [holder, waiter] = await Promise.all([worker(env, { name: 'holder' }), worker(env, { name: 'waiter' })]);
  try {
    const h = await acquired(holder, key, ttlMs, 5000);
    expect((await holder.request({ op: 'begin' }, 'begin', 5000)).ok).to.equal(true);
    holder.send({ op: 'hold', ms: 200 });
    holder.send({ op: 'write' });
    const pausedAt = holder.pause();

    const w = await acquired(waiter, key, ttlMs, 3 * ttlMs + 5000);
    const wBegin = await waiter.request({ op: 'begin' }, 'begin', 5000);
    const wWrite = await waiter.request({ op: 'write' }, 'write', 5000);
    await waiter.request({ op: 'release' }, 'released', 5000);
    const remaining = 2 * ttlMs - ms(pausedAt, process.hrtime.bigint());
    if (remaining > 0) await sleep(remaining);

    const resumedAt = holder.resume();
    const [lost, write] = await Promise.all([holder.next('lost', 5000), holder.next('write', 5000)]);
    const state = await env.view.state();
    const validUntil = lastValidUntil(holder);
    const abortAfterResume = ms(resumedAt, big(lost, 'at'));
    const replay = replayMutex([
      { kind: 'enter', worker: holder.id, at: big(h, 'enter'), fence: big(h, 'fence') },
      { kind: 'lost', worker: holder.id, at: big(lost, 'at') },
      { kind: 'enter', worker: waiter.id, at: big(w, 'enter'), fence: big(w, 'fence') },
      { kind: 'exit', worker: waiter.id, at: big(w, 'enter') + 1n },
    ]);
    report(
      `${label}: paused ${Math.round(ms(pausedAt, resumedAt))} ms (TTL ${ttlMs}); waiter entered ${Math.round(ms(validUntil, big(w, 'enter')))} ms after ` +
        `the holder's validUntil; holder's signal aborted ${abortAfterResume.toFixed(1)} ms after SIGCONT ` +
        `(${String((lost.error as { reason?: string }).reason)}); its write ${write.ok ? 'ACCEPTED' : 'refused'} ` +
        `(fence ${h.fence} < ${String(write.last)}; signal ${write.signalAborted ? 'already' : 'not yet'} aborted when sent); resource ${state.value}`,
    );
    expect(big(w, 'enter') > validUntil, 'the waiter entered before the holder\'s validUntil').to.equal(true);
    expect(big(w, 'fence') > big(h, 'fence')).to.equal(true);
    expect(wBegin.ok && wWrite.ok, 'the new holder\'s accesses').to.equal(true);
    expect(abortAfterResume, 'signal abort after resume (ms)').to.be.below(1000);
    expect(lost.error).to.include({ code: 'WL_LOCK_LOST' });
    expect(write.ok, 'the paused holder\'s write').to.equal(false);
    expect(BigInt(String(write.last))).to.equal(big(w, 'fence'));
    expect(state.value, 'resource: only the new holder\'s update').to.equal(1);
    // The stamps do overlap: no lease can stop a paused process. Only the fence caught it.
    expect(replay.violations.length, 'the overlap the model sees').to.equal(1);
  } finally {
    await Promise.all([holder.stop(), waiter.stop()]);
  }
}

/**
 * 9. The holder is killed (SIGKILL) while a waiter waits. Pass: the waiter enters after the holder's
 * last validUntil, and within TTL + `slackMs` of the kill.
 */
export async function killedHolder(env: Env, key: string, ttlMs: number, slackMs: number, label: string): Promise<number> {
  await env.reset();
  const [holder, waiter] = await Promise.all([worker(env, { name: 'holder' }), worker(env, { name: 'waiter' })]);
  try {
    const h = await acquired(holder, key, ttlMs, 5000);
    waiter.send({ op: 'acquire', key, ttlMs, waitTimeoutMs: ttlMs * 3 + 10_000 });
    await sleep(ttlMs / 2); // the holder has extended (or renewed) at least once by now
    const killedAt = holder.kill();
    await holder.exited;
    const w = await waiter.next(['acquired', 'acquire-failed'], ttlMs * 3 + 15_000);
    expect(w.type, JSON.stringify(w)).to.equal('acquired');
    const validUntil = lastValidUntil(holder);
    const waited = ms(killedAt, big(w, 'enter'));
    const replay = replayMutex([
      { kind: 'enter', worker: holder.id, at: big(h, 'enter'), fence: big(h, 'fence') },
      { kind: 'crash', worker: holder.id, at: validUntil > killedAt ? validUntil : killedAt },
      { kind: 'enter', worker: waiter.id, at: big(w, 'enter'), fence: big(w, 'fence') },
    ]);
    report(
      `${label}: waiter entered ${Math.round(waited)} ms after kill -9 (TTL ${ttlMs}, bound TTL + ${slackMs}), ` +
        `${Math.round(ms(validUntil, big(w, 'enter')))} ms after the holder's last validUntil`,
    );
    expect(replay.violations, 'entered before the holder\'s validUntil').to.deep.equal([]);
    expect(waited, 'ms from kill to the waiter entering').to.be.below(ttlMs + slackMs);
    return waited;
  } finally {
    await Promise.all([holder.stop(), waiter.stop()]);
  }
}

export function clockFile(initial = '+0'): { file: string; set(offset: string): void; remove(): void } {
  const file = path.join(os.tmpdir(), `wirelock-faketime-${process.pid}-${Math.random().toString(36).slice(2)}`);
  // Written whole and renamed into place: libfaketime must never read half a line.
  const set = (offset: string): void => {
    writeFileSync(`${file}.tmp`, `${offset}\n`);
    renameSync(`${file}.tmp`, file);
  };
  set(initial);
  return { file, set, remove: () => rmSync(file, { force: true }) };
}

/** Waits until the worker's wall clock is `expectedMs` (± 60 s) away from its monotonic clock. */
async function skewReaches(w: FaultWorker, expectedMs: number): Promise<number> {
  const until = performance.now() + 5000;
  for (;;) {
    const skew = (await w.request({ op: 'clock' }, 'clock', 3000)).dateSkewMs as number;
    if (Math.abs(skew - expectedMs) < 60_000) return skew;
    if (performance.now() > until) throw new Error(`the worker's wall clock did not jump to ${expectedMs} ms (skew ${skew} ms)`);
    await sleep(100);
  }
}

/**
 * 6. The holder runs under faketime with the monotonic clock left alone (--exclude-monotonic). Its wall
 * clock jumps +1 h, then -1 h, while it holds. Pass: it keeps extending, each validUntil is about
 * one TTL ahead of when it was reported (not an hour off), its signal never aborts, and another
 * process cannot take the lock meanwhile.
 */
export async function clockJump(env: Env, key: string, ttlMs: number, label: string): Promise<void> {
  await env.reset();
  const clock = clockFile();
  const [holder, other] = await Promise.all([
    worker(env, { name: 'faketime-holder', faketime: { file: clock.file, fakeMonotonic: false } }),
    worker(env, { name: 'other' }),
  ]);
  try {
    await acquired(holder, key, ttlMs, 5000);
    const skews = [await skewReaches(holder, 0)];
    const phases: string[] = [];
    for (const offset of ['+1h', '-1h']) {
      clock.set(offset);
      skews.push(await skewReaches(holder, offset === '+1h' ? 3_600_000 : -3_600_000));
      const from = holder.all('validity').length;
      await sleep(2 * ttlMs);
      const renewals = holder.all('validity').slice(from);
      const leads = renewals.map((e) => ms(big(e, 'at'), big(e, 'validUntil')));
      const refused = await other.request({ op: 'try', key, ttlMs, waitTimeoutMs: 0 }, ['acquired', 'acquire-failed'], 5000);
      phases.push(`${offset}: ${renewals.length} renewals, validUntil ${Math.round(Math.min(...leads))}..${Math.round(Math.max(...leads))} ms ahead, other process ${refused.got ? 'GOT IT' : 'refused'}`);
      expect(renewals.length, `renewals after the ${offset} jump`).to.be.at.least(2);
      for (const lead of leads) expect(lead, `validUntil lead after the ${offset} jump (ms)`).to.be.within(0, ttlMs);
      expect(refused.type === 'acquired' && !refused.got, `another process's tryAcquire after the ${offset} jump`).to.equal(true);
    }
    report(`${label}: wall-clock skew ${skews.map((s) => `${Math.round(s / 1000)} s`).join(' → ')}; ${phases.join('; ')}; lost: ${holder.all('lost').length}`);
    expect(holder.all('lost'), 'loss signals').to.deep.equal([]);
    expect((await holder.request({ op: 'release' }, 'released', 5000)).ok).to.equal(true);
  } finally {
    await Promise.all([holder.stop(), other.stop()]);
    clock.remove();
  }
}

/**
 * 6b. What is NOT protected against: the holder under faketime WITHOUT --exclude-monotonic, so that
 * CLOCK_MONOTONIC itself is faked. Every lease deadline and timer of the holder runs on that clock.
 * - `+1h`: every timer is overdue at once: the holder gives its lock up immediately (the safe side).
 * - `-1h`: every timer of the holder now lies an hour ahead: no renewal and no loss signal, while its
 *   lease runs out on the server and another process takes the lock. The next timer the holder sets
 *   (here, by sending a command) makes Node.js itself abort (an assertion in its timer code).
 * - `x0.5`: the holder's clock runs at half speed. It believes in its lease for twice as long as the
 *   server keeps it: another process holds the lock meanwhile, and only the fence refuses the stale write.
 */
export async function monotonicFaked(env: Env, key: string, ttlMs: number, mode: '+1h' | '-1h' | 'x0.5', label: string): Promise<void> {
  await env.reset();
  const clock = clockFile(mode === 'x0.5' ? '+0 x0.5' : '+0');
  const [holder, other] = await Promise.all([
    worker(env, { name: 'faked-monotonic-holder', faketime: { file: clock.file, fakeMonotonic: true } }),
    worker(env, { name: 'other' }),
  ]);
  try {
    const h = await holder.request({ op: 'acquire', key, ttlMs, waitTimeoutMs: 5000, autoExtend: mode !== 'x0.5' }, ['acquired', 'acquire-failed'], 15_000);
    expect(h.got, JSON.stringify(h)).to.equal(true);
    expect((await holder.request({ op: 'begin' }, 'begin', 5000)).ok).to.equal(true);
    const acquiredAt = big(h, 'receivedAt');

    if (mode === 'x0.5') {
      const w = await acquired(other, key, ttlMs, 3 * ttlMs + 5000);
      expect((await other.request({ op: 'begin' }, 'begin', 5000)).ok).to.equal(true);
      const write = await holder.request({ op: 'write' }, 'write', 5000);
      const lost = await holder.next('lost', 4 * ttlMs + 5000);
      const state = await env.view.state();
      const overlap = ms(big(w, 'enter'), big(lost, 'receivedAt'));
      report(
        `${label}, monotonic clock at half speed (autoExtend off): another process took the lock ${Math.round(ms(acquiredAt, big(w, 'enter')))} ms after the holder; ` +
          `the holder was told ${Math.round(ms(acquiredAt, big(lost, 'receivedAt')))} ms after acquiring, so it believed it held the lock ${Math.round(overlap)} ms too long; ` +
          `its write meanwhile was ${write.ok ? 'ACCEPTED' : 'refused by the fence'} (signal aborted: ${String(write.signalAborted)}); resource ${state.value}`,
      );
      expect(write.signalAborted, 'the holder believes it still holds the lock').to.equal(false);
      expect(overlap, 'ms the holder believed in a lock someone else held').to.be.above(0);
      expect(write.ok, 'the fence refuses the stale holder').to.equal(false);
      expect(state.value).to.equal(0);
      return;
    }

    const c0 = await holder.request({ op: 'clock' }, 'clock', 3000);
    clock.set(mode);
    // Wait until the holder's monotonic stamps have moved an hour against ours (or it gave up already).
    let jump = 0;
    const until = performance.now() + 5000;
    while (Math.abs(Math.abs(jump) - 3_600_000) > 60_000 && holder.all('lost').length === 0) {
      if (performance.now() > until) throw new Error(`the worker's monotonic clock did not jump (${jump} ms)`);
      await sleep(100);
      const c = await holder.request({ op: 'clock' }, 'clock', 3000);
      jump = ms(big(c0, 'at'), big(c, 'at')) - ms(big(c0, 'receivedAt'), big(c, 'receivedAt'));
    }
    if (mode === '-1h') {
      // Its timers are an hour away: no renewal, no loss signal. The lease runs out on the server.
      const w = await acquired(other, key, ttlMs, 2 * ttlMs + 5000);
      const otherAfter = ms(big(c0, 'receivedAt'), big(w, 'enter'));
      expect((await other.request({ op: 'begin' }, 'begin', 5000)).ok).to.equal(true);
      const lostBefore = holder.all('lost').length;
      // The holder writes: its command's timeout timer trips Node's assertion before a byte is sent.
      holder.send({ op: 'write' });
      const exit = await Promise.race([holder.exited, sleep(5000).then(() => undefined)]);
      const state = await env.view.state();
      report(
        `${label}, monotonic clock -1 h: the holder's timers stopped (no renewal, loss signals: ${lostBefore}); another process took the lock ` +
          `${Math.round(otherAfter)} ms after the jump; the holder then tried to write and Node.js aborted ` +
          `(${exit ? exit.signal ?? `exit ${exit.code}` : 'still alive'}: ${/Assertion failed[^\n]*/.exec(holder.stderr)?.[0] ?? 'no assertion'}); resource ${state.value}`,
      );
      expect(lostBefore, 'a loss signal (its timers should be an hour away)').to.equal(0);
      expect(exit, 'the holder process survived setting a timer on a backward monotonic clock').to.not.equal(undefined);
      expect(holder.stderr).to.match(/Assertion failed/);
      expect(state.value, 'the stale write reached the resource').to.equal(0);
      return;
    }
    const lost = await holder.next('lost', 5000);
    const toldAfter = ms(big(c0, 'receivedAt'), big(lost, 'receivedAt'));
    const tried = await other.request({ op: 'try', key, ttlMs, waitTimeoutMs: 0 }, ['acquired', 'acquire-failed'], 5000);
    report(
      `${label}, monotonic clock +1 h: the holder gave its lock up ${Math.round(toldAfter)} ms after the jump was made ` +
        `(${String((lost.error as { reason: string }).reason)}); the key stays on the server until its TTL (other process ${tried.got ? 'got it at once' : 'refused at once'})`,
    );
    expect(toldAfter, 'ms until the holder gives up (the clock file is read once a second)').to.be.below(2500);
  } finally {
    await Promise.all([holder.stop(), other.stop()]);
    clock.remove();
  }
}

/**
 * 6c. Redlock's queue orders waiters by a ticket from the client's clock. A third process holds the
 * lock; a normal client starts waiting, and 1.5 s later a client whose wall clock is an hour behind
 * (faketime, from its start) starts waiting too; then the holder releases. Pass: the normal client,
 * which came first, gets the lock first. Each node takes a ticket as at most 1 s off its own clock,
 * so the skewed client's ticket counts as 1 s before its arrival, still after the other's; taken as
 * it came, an hour before everyone's, it would go first, now and on every later acquire.
 */
export async function skewedClockWaiter(env: Env, key: string, ttlMs: number, label: string): Promise<void> {
  await env.reset();
  const clock = clockFile('-1h');
  const [holder, normal, skewed] = await Promise.all([
    worker(env, { name: 'holder' }),
    worker(env, { name: 'normal' }),
    worker(env, { name: 'skewed', faketime: { file: clock.file, fakeMonotonic: false } }),
  ]);
  try {
    // Behind from its start, so its performance.timeOrigin (a ticket's base) is an hour behind too.
    const skew = ((await skewed.request({ op: 'clock' }, 'clock', 3000)).now as number) - Date.now();
    expect(Math.abs(skew + 3_600_000), `the skewed client's wall clock is ${skew} ms off, not -1 h`).to.be.below(60_000);
    await acquired(holder, key, ttlMs, 5000);
    normal.send({ op: 'acquire', key, ttlMs, waitTimeoutMs: 20_000 });
    await sleep(1500);
    skewed.send({ op: 'acquire', key, ttlMs, waitTimeoutMs: 20_000 });
    await sleep(300);
    expect((await holder.request({ op: 'release' }, 'released', 5000)).ok).to.equal(true);
    const got = (w: FaultWorker): boolean => w.all('acquired').some((e) => e.got);
    await waitUntil(() => got(normal) || got(skewed), 20_000, 'a grant after the release');
    const first = got(normal) ? normal : skewed;
    const second = first === normal ? skewed : normal;
    expect((await first.request({ op: 'release' }, 'released', 5000)).ok).to.equal(true);
    await waitUntil(() => got(second), 20_000, `${second.id}'s grant after ${first.id}'s release`);
    expect((await second.request({ op: 'release' }, 'released', 5000)).ok).to.equal(true);
    expect([...normal.all('acquire-failed'), ...skewed.all('acquire-failed')], 'failed acquires').to.deep.equal([]);
    report(`${label}: the skewed client's wall clock ${Math.round(skew / 60_000)} min off; it began waiting 1.5 s after the other; granted first: ${first === normal ? 'the other (it came first)' : 'THE SKEWED CLIENT'}`);
    expect(first.id, 'the client granted first').to.equal(normal.id);
  } finally {
    await Promise.all([holder.stop(), normal.stop(), skewed.stop()]);
    clock.remove();
  }
}

async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
