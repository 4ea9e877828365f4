/**
 * Read-write lock scenarios: RedisRWLock and EtcdRWLock (`read` and `write` on one key,
 * writer-preferring). (a) a writer paused past its TTL while readers and writers contend, (b) a
 * reader killed while a writer waits; the server faults, (c) the server paused and (d) the etcd
 * leader killed, are contended.ts's, run on `RW_LOCK`. Every history goes through checkReadWrite (no writer beside
 * anyone; readers may share) and checkPermits (for its fence checks), each hold cut down to what its
 * holder could believe in (its exit, its validUntil, or the moment its signal aborted, whichever is first).
 */
import { expect } from 'chai';
import { checkPermits, checkReadWrite, type RWHold, type RWReport } from '../../../src/testing/history.js';
import { big, ms, sleep, type FaultWorker, type WorkerEvent } from '../../support/faults-workers.js';
import { report, worker, type Env } from '../../support/faults-env.js';
import { waitFor } from '../../support/wait.js';
import { lastValidUntil } from './holder.js';
import { believed, stopLoops, type Contended } from './contended.js';

const min = (...xs: bigint[]): bigint => xs.reduce((a, b) => (b < a ? b : a));
const max = (...xs: bigint[]): bigint => xs.reduce((a, b) => (b > a ? b : a));
type Mode = 'read' | 'write';

function start(env: Env, names: string[]): Promise<FaultWorker[]> {
  return Promise.all(names.map((name) => worker(env, { name, rw: true })));
}

/** Takes `mode` on `key` with the `acquire` op, or throws. */
async function take(w: FaultWorker, key: string, mode: Mode, ttlMs: number, waitTimeoutMs: number): Promise<WorkerEvent> {
  const e = await w.request({ op: 'acquire', key, mode, ttlMs, waitTimeoutMs }, ['acquired', 'acquire-failed'], waitTimeoutMs + 10_000);
  if (e.type !== 'acquired' || !e.got) throw new Error(`${w.id} did not acquire ${mode} ${key}: ${JSON.stringify(e)}`);
  return e;
}

/** A hold taken with `acquire` and given back with `release`, ended at its last validUntil at the latest. */
function heldUntilRelease(w: FaultWorker, mode: Mode, a: WorkerEvent, released: WorkerEvent): RWHold {
  return { worker: w.id, mode, requested: big(a, 'requested'), enter: big(a, 'enter'), exit: min(big(released, 'exit'), lastValidUntil(w)), fence: big(a, 'fence') };
}

/** Both checks: no writer beside anyone (checkReadWrite), and no repeated fence or fence regression (checkPermits). */
function check(holds: RWHold[]): { rw: RWReport; text: string; fences: ReturnType<typeof checkPermits> } {
  const rw = checkReadWrite(holds);
  const fences = checkPermits(holds, Math.max(1, holds.length));
  const writes = holds.filter((h) => h.mode === 'write').length;
  return {
    rw,
    fences,
    text: `checker: ${rw.holds} holds (writes ${writes}, reads ${rw.holds - writes}), peak readers together ${rw.maxReaders}, writer beside another ${rw.writerBeside.length}, ` +
      `repeated fences ${fences.repeatedFences.length}, fence regressions ${fences.fenceRegressions.length}`,
  };
}

function expectExclusion(c: ReturnType<typeof check>): void {
  const pair = ([a, b]: [RWHold, RWHold]): string => `${a.worker} ${a.mode} (fence ${a.fence}) beside ${b.worker} ${b.mode} (fence ${b.fence}) at ${b.enter}`;
  expect(c.rw.writerBeside.map(pair), 'a writer beside another hold').to.deep.equal([]);
  expect(c.fences.repeatedFences, 'repeated fences').to.deep.equal([]);
  expect(c.fences.fenceRegressions, 'fence regressions').to.deep.equal([]);
}

/**
 * The read-write lock for the contention scenarios: the long holder reads (so others can share its
 * hold until a writer queues), the other four write a third of their holds. Never a writer beside
 * anyone; both modes were granted, and readers did share.
 */
export const RW_LOCK: Contended = {
  worker: { rw: true },
  loop: (i) => ({ writes: i === 0 ? 0 : 0.3 }),
  check(holds) {
    const c = check(holds);
    const writes = holds.filter((h) => h.mode === 'write').length;
    return {
      text: c.text,
      assert() {
        expectExclusion(c);
        expect(writes, 'write holds').to.be.above(0);
        expect(holds.length - writes, 'read holds').to.be.above(0);
        expect(c.rw.maxReaders, 'peak readers together (readers shared)').to.be.at.least(2);
      },
    };
  },
};

/**
 * (a) Writer H takes the write lock, begins the fenced resource and is paused (SIGSTOP) for 2×TTL,
 * its write queued. Five contenders run the permit loop, each hold a write with probability 0.3
 * (writes fenced), else a read. Pass: the first contender enters only after H's validUntil; no writer
 * beside anyone; the contenders' fenced writes are all accepted; on resume H's signal aborts at once
 * and its write is refused by the fence. H's own stamps (inside until its write was answered) do put
 * a writer beside others: no lease stops a paused process, only the fence caught it.
 */
export async function pausedWriter(env: Env, key: string, ttlMs: number, label: string): Promise<void> {
  await env.reset();
  const [holder, ...contenders] = await start(env, ['writer', 'contender', 'contender', 'contender', 'contender', 'contender']);
  try {
    const h = await take(holder!, key, 'write', ttlMs, 5000);
    expect((await holder!.request({ op: 'begin' }, 'begin', 5000)).ok).to.equal(true);
    holder!.send({ op: 'hold', ms: 200 });
    holder!.send({ op: 'write' });
    const pausedAt = holder!.pause();
    for (const w of contenders) w.send({ op: 'permits', key, ttlMs, waitTimeoutMs: 60_000, holdMs: [20, 80], fenced: true, writes: 0.3 });
    await waitFor(() => contenders.some((w) => w.all('permit').length > 0), 3 * ttlMs + 10_000, "a contender's first hold", 20);
    const remaining = 2 * ttlMs - ms(pausedAt, process.hrtime.bigint());
    if (remaining > 0) await sleep(remaining);
    await stopLoops(contenders);

    const resumedAt = holder!.resume();
    const [lost, write] = await Promise.all([holder!.next('lost', 5000), holder!.next('write', 5000)]);
    const state = await env.view.state();

    const validUntil = lastValidUntil(holder!);
    const permits = contenders.flatMap((w) => w.all('permit'));
    const holds = contenders.flatMap((w) => w.all('permit').map((e) => believed(w, e)));
    const writes = permits.filter((e) => e.mode === 'write');
    const firstEnter = min(...holds.map((x) => x.enter));
    const refused = writes.filter((e) => !(e.begin as { ok?: boolean })?.ok || !(e.write as { ok?: boolean })?.ok).length;
    const writeFences = writes.map((e) => big(e, 'fence'));
    const holderHold: RWHold = { worker: holder!.id, mode: 'write', enter: big(h, 'enter'), exit: min(big(lost, 'at'), validUntil), fence: big(h, 'fence') };
    const c = check([holderHold, ...holds]);
    const raw = checkReadWrite([{ ...holderHold, exit: big(write, 'at') }, ...holds]);
    const otherLosses = contenders.reduce((n, w) => n + w.all('lost').length + w.all('permit').filter((e) => e.lostAt !== undefined).length, 0);
    const failed = contenders.reduce((n, w) => n + w.all('acquire-failed').length, 0);
    const abortAfterResume = ms(resumedAt, big(lost, 'at'));
    report(
      `${label}: writer paused ${Math.round(ms(pausedAt, resumedAt))} ms (TTL ${ttlMs}); the first contender entered ${Math.round(ms(validUntil, firstEnter))} ms ` +
        `after its validUntil (${Math.round(ms(pausedAt, firstEnter))} ms after SIGSTOP); ${holds.length} contender holds (${writes.length} writes, ${holds.length - writes.length} reads), ` +
        `fenced writes refused ${refused}, resource ${state.value}; the writer's signal aborted ${abortAfterResume.toFixed(1)} ms after SIGCONT ` +
        `(${String((lost.error as { reason?: string }).reason)}); its write ${write.ok ? 'ACCEPTED' : 'refused'} (fence ${h.fence} < ${String(write.last)}); ` +
        `${c.text}; the paused writer's own stamps: ${raw.writerBeside.length} pairs with a writer beside another (only the fence caught them); ` +
        `loss signals: writer 1, others ${otherLosses}; failed acquires ${failed}`,
    );
    expect(firstEnter > validUntil, "a contender entered before the paused writer's validUntil").to.equal(true);
    expect(holds.map((x) => x.fence).every((f) => f > big(h, 'fence')), "contender fences above the paused writer's").to.equal(true);
    expect(writes.length, 'contender writes').to.be.above(0);
    expect(holds.length - writes.length, 'contender reads').to.be.above(0);
    expect(refused, "the contenders' fenced writes refused").to.equal(0);
    expect(state.value, 'resource: one update per contender write, none from the paused writer').to.equal(writes.length);
    expect(abortAfterResume, 'signal abort after resume (ms)').to.be.below(1000);
    expect(lost.error).to.include({ code: 'WL_LOCK_LOST' });
    expect(write.ok, "the paused writer's write").to.equal(false);
    expect(BigInt(String(write.last))).to.equal(max(...writeFences));
    expect(otherLosses, 'loss signals of the contenders').to.equal(0);
    expect(failed, 'failed acquires of the contenders').to.equal(0);
    expectExclusion(c);
    expect(raw.writerBeside.length, "the pairs the checker sees in the paused writer's own stamps").to.be.above(0);
  } finally {
    await Promise.all([holder, ...contenders].map((w) => w!.stop()));
  }
}

/**
 * (b) Reader R holds; writer W queues, then reader L (behind W: writer-preferring, it must wait).
 * R is killed (SIGKILL). Pass: W enters within TTL + `slackMs` of the kill, after R's last
 * validUntil, and L still waits while W holds; W's fenced write is accepted; W's release admits L;
 * no writer beside anyone; fences R < W < L. Returns the ms from the kill to W entering.
 */
export async function killedReader(env: Env, key: string, ttlMs: number, slackMs: number, label: string): Promise<number> {
  await env.reset();
  const [reader, writer, late] = await start(env, ['reader', 'writer', 'late-reader']);
  try {
    const r = await take(reader!, key, 'read', ttlMs, 5000);
    const waitTimeoutMs = 3 * ttlMs + 20_000;
    writer!.send({ op: 'acquire', key, mode: 'write', ttlMs, waitTimeoutMs });
    await sleep(100); // one after another: the order of the line is known
    late!.send({ op: 'acquire', key, mode: 'read', ttlMs, waitTimeoutMs });
    await sleep(ttlMs / 2); // the reader has extended (or renewed) at least once by now
    const answered = (w: FaultWorker): boolean => w.all('acquired').length + w.all('acquire-failed').length > 0;
    expect([writer!, late!].filter(answered).map((w) => w.id), 'admitted beside the reader (the writer waits, the late reader behind it)').to.deep.equal([]);
    const killedAt = reader!.kill();
    await reader!.exited;
    const w = await writer!.next(['acquired', 'acquire-failed'], waitTimeoutMs + 5000);
    expect(w.type, JSON.stringify(w)).to.equal('acquired');
    const begin = await writer!.request({ op: 'begin' }, 'begin', 5000);
    const wrote = await writer!.request({ op: 'write' }, 'write', 5000);
    await sleep(300);
    const lateWhileWriting = answered(late!);
    const wReleased = await writer!.request({ op: 'release' }, 'released', 5000);
    const l = await late!.next(['acquired', 'acquire-failed'], 10_000);
    expect(l.type, JSON.stringify(l)).to.equal('acquired');
    const lReleased = await late!.request({ op: 'release' }, 'released', 5000);

    const validUntil = lastValidUntil(reader!);
    const waited = ms(killedAt, big(w, 'enter'));
    const holds: RWHold[] = [
      { worker: reader!.id, mode: 'read', enter: big(r, 'enter'), exit: max(killedAt, validUntil), fence: big(r, 'fence') },
      heldUntilRelease(writer!, 'write', w, wReleased),
      heldUntilRelease(late!, 'read', l, lReleased),
    ];
    const c = check(holds);
    const fences = [r, w, l].map((e) => big(e, 'fence'));
    const losses = [writer!, late!].reduce((n, x) => n + x.all('lost').length, 0);
    report(
      `${label}: the waiting writer got in ${Math.round(waited)} ms after kill -9 of the reader (TTL ${ttlMs}, bound TTL + ${slackMs}), ` +
        `${Math.round(ms(validUntil, big(w, 'enter')))} ms after the reader's last validUntil; the late reader ${lateWhileWriting ? 'was ADMITTED' : 'waited'} while the writer held, ` +
        `and got in ${ms(big(wReleased, 'exit'), big(l, 'enter')).toFixed(1)} ms after its release; the writer's fenced begin/write ${begin.ok && wrote.ok ? 'accepted' : 'REFUSED'}; ` +
        `fences ${fences.join(' < ')}; ${c.text}; loss signals ${losses}`,
    );
    expect(big(w, 'enter') > validUntil, "the writer entered before the killed reader's validUntil").to.equal(true);
    expect(waited, 'ms from kill to the writer entering').to.be.below(ttlMs + slackMs);
    expect(lateWhileWriting, 'the late reader admitted while the writer held').to.equal(false);
    expect([begin.ok, wrote.ok], "the writer's fenced accesses").to.deep.equal([true, true]);
    expect(fences[0]! < fences[1]! && fences[1]! < fences[2]!, 'fences in the order of the line').to.equal(true);
    expect(losses, 'loss signals').to.equal(0);
    expectExclusion(c);
    return waited;
  } finally {
    await Promise.all([reader, writer, late].map((x) => x!.stop()));
  }
}
