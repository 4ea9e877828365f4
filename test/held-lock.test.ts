/**
 * HeldLock (src/locks/held-lock.ts) with a fake LockOps the test answers by hand, on a fake clock:
 * the promises every lock handle keeps (auto-extend, local expiry, release), without a server.
 */
import { expect } from 'chai';
import { MAX_TIMER_MS } from '../src/abort.js';
import { LockLostError, LockReleasedError } from '../src/errors.js';
import { HeldLock, type HeldLockInit, type LockOps } from '../src/locks/held-lock.js';
import { deferred, flush, installClock, type FakeClock, runChild, srcUrl, track, type ChildRun, type Deferred } from './support/clock.js';

interface ExtendCall {
  /** performance.now() when it was sent. */
  at: number;
  ttlMs: number;
  signal: AbortSignal | undefined;
  reply: Deferred<number>;
}

/** A backend whose every extension waits for the test to answer it. */
class FakeOps implements LockOps {
  readonly extends: ExtendCall[] = [];
  releases = 0;
  releaseReply: Promise<void> = Promise.resolve();

  extend(_lock: HeldLock, ttlMs: number, signal?: AbortSignal): Promise<number> {
    const reply = deferred<number>();
    this.extends.push({ at: performance.now(), ttlMs, signal, reply });
    return reply.promise;
  }

  release(): Promise<void> {
    this.releases++;
    return this.releaseReply;
  }

  /** Confirms extension `i` as a server would: the lease runs ttl from when the request was sent. */
  confirm(i: number): number {
    const call = this.extends[i]!;
    const validUntil = call.at + call.ttlMs;
    call.reply.resolve(validUntil);
    return validUntil;
  }
}

describe('HeldLock (fake clock, fake ops)', () => {
  let clock: FakeClock;
  let t0: number;
  let ops: FakeOps;
  let ended: HeldLock[];
  const locks: HeldLock[] = [];

  beforeEach(() => {
    clock = installClock();
    t0 = performance.now();
    ops = new FakeOps();
    ended = [];
  });

  afterEach(async () => {
    // Released before the clock goes: their timers are the fake clock's, and so are their keep-alive holds' ends.
    await Promise.allSettled(locks.splice(0).map((lock) => lock.release()));
    clock.uninstall();
  });

  function newLock(over: Partial<HeldLockInit> = {}): HeldLock {
    const ttlMs = over.ttlMs ?? 3000;
    const lock = new HeldLock({
      backend: 'fake',
      key: 'k',
      token: 'tok',
      fence: 1n,
      validUntil: performance.now() + ttlMs,
      ttlMs,
      autoExtend: true,
      ops,
      onEnd: (l) => void ended.push(l),
      ...over,
    });
    locks.push(lock);
    return lock;
  }
  const sentAt = (): number[] => ops.extends.map((c) => c.at - t0);

  describe('auto-extend', () => {
    it('extends at a third of the TTL, asking for the TTL, under the lock signal', async () => {
      const lock = newLock();
      await clock.tickAsync(999);
      expect(ops.extends).to.have.length(0);
      await clock.tickAsync(1);
      expect(sentAt()).to.deep.equal([1000]);
      expect(ops.extends[0]!.ttlMs).to.equal(3000);
      expect(ops.extends[0]!.signal).to.equal(lock.signal);
    });

    it('moves validUntil only on a confirmed extension, to the time measured from its sending', async () => {
      const lock = newLock();
      await clock.tickAsync(1000);
      await clock.tickAsync(200); // the reply takes 200 ms
      expect(lock.validUntil).to.equal(t0 + 3000);
      const confirmed = ops.confirm(0);
      await flush();
      expect(confirmed).to.equal(t0 + 4000);
      expect(lock.validUntil).to.equal(t0 + 4000); // not t0 + 4200: the lease began when it was sent
      // The next extension is a third of the TTL after the confirmation.
      await clock.tickAsync(999);
      expect(ops.extends).to.have.length(1);
      await clock.tickAsync(1);
      expect(sentAt()).to.deep.equal([1000, 2200]);
    });

    it('keeps the lock past its first validUntil once an extension is confirmed, and no further', async () => {
      const lock = newLock();
      await clock.tickAsync(1000);
      ops.confirm(0); // validUntil t0 + 4000; the next extension (at 2000) never answers
      await clock.tickAsync(2999); // t0 + 3999
      expect(lock.held).to.equal(true);
      await clock.tickAsync(1);
      expect(lock.held).to.equal(false);
      expect((lock.signal.reason as LockLostError).reason).to.equal('expired');
    });

    it('retries a transient failure after ttl/10, leaving validUntil alone', async () => {
      const lock = newLock();
      await clock.tickAsync(1000);
      ops.extends[0]!.reply.reject(new Error('ETIMEDOUT'));
      await clock.tickAsync(300);
      expect(sentAt()).to.deep.equal([1000, 1300]);
      ops.extends[1]!.reply.reject(new Error('ECONNRESET'));
      await clock.tickAsync(300);
      expect(sentAt()).to.deep.equal([1000, 1300, 1600]);
      expect(lock.validUntil).to.equal(t0 + 3000);
      expect(lock.held).to.equal(true);
    });

    it('retries within half of what is left when little is left', async () => {
      newLock();
      await clock.tickAsync(1000);
      await clock.tickAsync(1800); // the failure comes at t0 + 2800: 200 ms left
      ops.extends[0]!.reply.reject(new Error('ETIMEDOUT'));
      await clock.tickAsync(99);
      expect(ops.extends).to.have.length(1);
      await clock.tickAsync(1);
      expect(sentAt()).to.deep.equal([1000, 2900]);
    });

    it('retries no sooner than 10 ms for a short TTL', async () => {
      newLock({ ttlMs: 60 }); // ttl/10 is 6 ms; half of what is left is 20 ms
      await clock.tickAsync(20);
      expect(sentAt()).to.deep.equal([20]);
      ops.extends[0]!.reply.reject(new Error('ETIMEDOUT'));
      await clock.tickAsync(9);
      expect(ops.extends).to.have.length(1);
      await clock.tickAsync(1);
      expect(sentAt()).to.deep.equal([20, 30]);
    });

    it('stops retrying once no time is left', async () => {
      const lock = newLock({ localExpiry: false }); // the backend ends it; here only the retries are at stake
      await clock.tickAsync(1000);
      await clock.tickAsync(2500); // fails after validUntil
      ops.extends[0]!.reply.reject(new Error('ETIMEDOUT'));
      await clock.tickAsync(60_000);
      expect(ops.extends).to.have.length(1);
      expect(lock.held).to.equal(true);
    });

    it('a LockLostError from extend aborts signal with that same error and ends the hold', async () => {
      const lock = newLock();
      const signal = lock.signal;
      await clock.tickAsync(1000);
      const lost = new LockLostError('k', 'stolen');
      ops.extends[0]!.reply.reject(lost);
      await flush();
      expect(lock.held).to.equal(false);
      expect(signal.aborted).to.equal(true);
      expect(signal.reason).to.equal(lost);
      expect(lock.endReason).to.equal(lost);
      expect(ended).to.deep.equal([lock]);
      expect(clock.countTimers()).to.equal(0);
      await clock.tickAsync(60_000);
      expect(ops.extends).to.have.length(1);
    });

    it('a manual extend() rejects with the LockLostError that ended the lock', async () => {
      const lock = newLock({ autoExtend: false });
      const t = track(lock.extend());
      await flush();
      const lost = new LockLostError('k', 'expired');
      ops.extends[0]!.reply.reject(lost);
      await flush();
      expect(t.error).to.equal(lost);
      expect(lock.signal.reason).to.equal(lost);
    });

    it('runs one extension at a time: a manual extend() waits for the one in flight', async () => {
      const lock = newLock({ autoExtend: false });
      const first = track(lock.extend());
      const second = track(lock.extend());
      await flush();
      expect(ops.extends).to.have.length(1);
      await clock.tickAsync(100);
      ops.confirm(0);
      await flush();
      expect(first.state).to.equal('resolved');
      expect(sentAt()).to.deep.equal([0, 100]);
      ops.confirm(1);
      await flush();
      expect(second.state).to.equal('resolved');
      expect(lock.validUntil).to.equal(t0 + 3100);
    });
  });

  describe('local expiry', () => {
    it('aborts signal with LockLostError("expired") at validUntil when extensions never answer', async () => {
      const lock = newLock();
      await clock.tickAsync(2999); // the extension sent at 1000 is stuck
      expect(lock.held).to.equal(true);
      expect(ops.extends).to.have.length(1);
      await clock.tickAsync(1);
      expect(lock.held).to.equal(false);
      const reason = lock.signal.reason as LockLostError;
      expect(reason).to.be.instanceOf(LockLostError);
      expect(reason.code).to.equal('WL_LOCK_LOST');
      expect(reason.reason).to.equal('expired');
      expect(ops.extends[0]!.signal!.aborted, 'the stuck extension is told to give up').to.equal(true);
      expect(ended).to.deep.equal([lock]);
    });

    it('a late confirmation of the stuck extension does not bring the lock back', async () => {
      const lock = newLock();
      await clock.tickAsync(3000);
      ops.confirm(0);
      await flush();
      expect(lock.held).to.equal(false);
      expect(lock.validUntil).to.equal(t0 + 3000);
      await clock.tickAsync(60_000);
      expect(ops.extends).to.have.length(1);
    });

    it('does nothing at validUntil with localExpiry: false', async () => {
      const lock = newLock({ autoExtend: false, localExpiry: false });
      await clock.tickAsync(60_000);
      expect(lock.held).to.equal(true);
      expect(lock.signal.aborted).to.equal(false);
    });

    it('does not expire a TTL past setTimeout\'s range (30 days) after 1 ms', async () => {
      const day = 86_400_000;
      const lock = newLock({ autoExtend: false, ttlMs: 30 * day });
      await clock.nextAsync(); // the expiry timer's first turn: at the timer's limit, not after 1 ms
      expect(performance.now() - t0).to.equal(MAX_TIMER_MS);
      expect(lock.held).to.equal(true);
      await clock.tickAsync(30 * day - MAX_TIMER_MS - 1); // re-armed for what is left
      expect(lock.held).to.equal(true);
      await clock.tickAsync(1);
      expect(lock.held).to.equal(false);
      expect((lock.endReason as LockLostError).reason).to.equal('expired');
    });
  });

  describe('release', () => {
    it('is idempotent: one compare-and-delete, one promise, signal aborted with LockReleasedError', async () => {
      const lock = newLock();
      const signal = lock.signal;
      const a = lock.release();
      const b = lock.release();
      expect(a).to.equal(b);
      await a;
      await lock.release();
      expect(ops.releases).to.equal(1);
      expect(lock.held).to.equal(false);
      const reason = signal.reason as LockReleasedError;
      expect(reason).to.be.instanceOf(LockReleasedError);
      expect(reason.code).to.equal('WL_LOCK_RELEASED');
      expect(reason.key).to.equal('k');
      expect(lock.endReason).to.equal(reason);
      expect(ended).to.deep.equal([lock]);
    });

    it('lost: false while held and after a release, true after a loss', async () => {
      const released = newLock();
      expect(released.lost).to.equal(false);
      await released.release();
      expect(released.lost).to.equal(false);
      expect(released.endReason).to.be.instanceOf(LockReleasedError);
      expect(released.lost).to.equal(false); // still, once the release's error has been built
      const gone = newLock();
      gone.lose('stolen');
      expect(gone.lost).to.equal(true);
      expect(gone.endReason).to.be.instanceOf(LockLostError);
    });

    it('stops every timer: no extension and no expiry after it', async () => {
      const lock = newLock();
      await lock.release();
      expect(clock.countTimers()).to.equal(0);
      await clock.tickAsync(60_000);
      expect(ops.extends).to.have.length(0);
      expect(lock.endReason).to.be.instanceOf(LockReleasedError);
    });

    it('wins over an extension in flight: the late confirmation does not resurrect the lock', async () => {
      const lock = newLock();
      await clock.tickAsync(1000);
      await lock.release();
      expect(ops.extends[0]!.signal!.aborted).to.equal(true);
      ops.confirm(0);
      await flush();
      expect(lock.held).to.equal(false);
      expect(lock.validUntil).to.equal(t0 + 3000);
      expect(lock.signal.reason).to.be.instanceOf(LockReleasedError);
      await clock.tickAsync(60_000);
      expect(ops.extends).to.have.length(1);
      expect(clock.countTimers()).to.equal(0);
    });

    it('makes a manual extend() in flight reject with LockReleasedError', async () => {
      const lock = newLock({ autoExtend: false });
      const t = track(lock.extend());
      await flush();
      await lock.release();
      ops.confirm(0);
      await flush();
      expect(t.error).to.be.instanceOf(LockReleasedError);
      expect(lock.validUntil).to.equal(t0 + 3000);
    });

    it('makes extend() afterwards reject with LockReleasedError without calling the backend', async () => {
      const lock = newLock({ autoExtend: false });
      await lock.release();
      const t = track(lock.extend());
      await flush();
      expect(t.error).to.be.instanceOf(LockReleasedError);
      expect(ops.extends).to.have.length(0);
    });

    it('after a loss still sends the compare-and-delete, and does not fail if that does', async () => {
      const lock = newLock({ autoExtend: false });
      await clock.tickAsync(3000);
      expect(lock.held).to.equal(false);
      ops.releaseReply = Promise.reject(new Error('ECONNREFUSED'));
      await lock.release();
      expect(ops.releases).to.equal(1);
      expect(lock.endReason).to.be.instanceOf(LockLostError);
    });

    it('rejects with the backend error when the compare-and-delete of a held lock fails', async () => {
      const lock = newLock({ autoExtend: false });
      const boom = new Error('ECONNRESET');
      ops.releaseReply = Promise.reject(boom);
      const t = track(lock.release());
      await flush();
      expect(t.error).to.equal(boom);
      expect(lock.held).to.equal(false);
    });
  });

  describe('extend(ttl)', () => {
    for (const bad of [0, -1, NaN, Infinity, '100']) {
      it(`rejects ttl ${typeof bad === 'string' ? JSON.stringify(bad) : String(bad)} with RangeError and changes nothing`, async () => {
        const lock = newLock({ autoExtend: false });
        const t = track(lock.extend(bad as number));
        await flush();
        expect(t.error).to.be.instanceOf(RangeError);
        expect(lock.ttlMs).to.equal(3000);
        expect(ops.extends).to.have.length(0);
      });
    }

    it('asks for the new TTL, and auto-extends at a third of it from then on', async () => {
      const lock = newLock();
      const t = track(lock.extend(6000));
      await flush();
      expect(ops.extends[0]!.ttlMs).to.equal(6000);
      ops.confirm(0);
      await flush();
      expect(t.state).to.equal('resolved');
      expect(lock.ttlMs).to.equal(6000);
      expect(lock.validUntil).to.equal(t0 + 6000);
      await clock.tickAsync(1999);
      expect(ops.extends).to.have.length(1);
      await clock.tickAsync(1);
      expect(sentAt()).to.deep.equal([0, 2000]);
    });
  });

  describe('onEnd, renewed, signal', () => {
    it('calls onEnd exactly once, whether the lock is lost or released, in either order', async () => {
      const lost = newLock({ autoExtend: false });
      const released = newLock({ autoExtend: false });
      await released.release();
      await clock.tickAsync(3000);
      lost.lose('stolen');
      await lost.release();
      await released.release();
      expect(ended).to.have.members([lost, released]);
      expect(ended).to.have.length(2);
      expect((lost.endReason as LockLostError).reason).to.equal('expired');
    });

    it('renewed() only moves validUntil forward, and re-arms the expiry to it', async () => {
      const lock = newLock({ autoExtend: false });
      lock.renewed(t0 + 1000);
      expect(lock.validUntil).to.equal(t0 + 3000);
      lock.renewed(t0 + 5000);
      expect(lock.validUntil).to.equal(t0 + 5000);
      await clock.tickAsync(4999);
      expect(lock.held).to.equal(true);
      await clock.tickAsync(1);
      expect(lock.held).to.equal(false);
      lock.renewed(t0 + 99_000);
      expect(lock.validUntil).to.equal(t0 + 5000);
    });

    it('a signal first read after the end already reports it', async () => {
      const released = newLock();
      await released.release();
      expect(released.signal.aborted).to.equal(true);
      expect(released.signal.reason).to.be.instanceOf(LockReleasedError);
      const lost = newLock();
      lost.lose('session-expired');
      expect(lost.signal.aborted).to.equal(true);
      expect((lost.signal.reason as LockLostError).reason).to.equal('session-expired');
    });

    it('lose() after a release changes nothing', async () => {
      const lock = newLock();
      await lock.release();
      lock.lose('stolen');
      expect(lock.endReason).to.be.instanceOf(LockReleasedError);
      expect(ended).to.have.length(1);
    });
  });
});

describe('HeldLock: what keeps a process alive (child processes)', function () {
  this.timeout(15_000); // tsx's start-up can take seconds on a loaded machine
  let runs: Record<'renewing' | 'plain', Promise<ChildRun>>;
  const script = (autoExtend: boolean): string => `
    const { HeldLock } = await import(${JSON.stringify(srcUrl('locks/held-lock.ts'))});
    const t0 = performance.now();
    // Extensions never answer (a dead socket): only the hold itself can keep the process here.
    const ops = { extend: () => new Promise(() => {}), release: async () => {} };
    const lock = new HeldLock({ backend: 'fake', key: 'k', token: 't', fence: 1n, validUntil: t0 + 300, ttlMs: 300, autoExtend: ${autoExtend}, ops });
    let lost;
    lock.signal.addEventListener('abort', () => (lost = { reason: lock.signal.reason.reason, ms: performance.now() - t0 }));
    process.on('exit', () => console.log(JSON.stringify({ lost: lost ?? null, held: lock.held })));
  `;
  before(() => {
    runs = { renewing: runChild(script(true)), plain: runChild(script(false)) };
    for (const run of Object.values(runs)) run.catch(() => {});
  });

  const parse = (run: ChildRun): { lost: { reason: string; ms: number } | null; held: boolean } => {
    expect(run.code, `exit code (null: killed, still alive); stderr: ${run.stderr}`).to.equal(0);
    return JSON.parse(run.stdout.trim()) as { lost: { reason: string; ms: number } | null; held: boolean };
  };

  it('an auto-extending lock keeps the process alive until it expires, then lets it exit', async () => {
    const out = parse(await runs.renewing);
    expect(out.held).to.equal(false);
    expect(out.lost?.reason).to.equal('expired');
    expect(out.lost!.ms).to.be.at.least(295);
  });

  it('a lock without auto-extend does not keep the process alive', async () => {
    const out = parse(await runs.plain);
    expect(out.lost).to.equal(null);
    expect(out.held).to.equal(true);
  });
});
