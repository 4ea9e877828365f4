/**
 * The waiting engine (src/locks/waiting.ts) and its helpers in src/abort.ts, on a fake clock: no
 * server, each test a few milliseconds. What only a process's exit can show (a keep-alive holds it,
 * a background retry does not) runs in child processes at the end.
 */
import { expect } from 'chai';
import { getEventListeners } from 'node:events';
import { backoffMs, MAX_TIMER_MS, sleep } from '../src/abort.js';
import { LockTimeoutError } from '../src/errors.js';
import { retryInBackground, Wait, waitFor, type WaitInit } from '../src/locks/waiting.js';
import { deferred, flush, installClock, type FakeClock, never, runChild, srcUrl, track, unhandledRejections, type ChildRun } from './support/clock.js';

const listeners = (signal: AbortSignal): number => getEventListeners(signal, 'abort').length;

describe('waiting engine (fake clock)', () => {
  let clock: FakeClock;
  let t0: number;
  const random = Math.random;
  const waits: Wait[] = [];

  beforeEach(() => {
    clock = installClock();
    t0 = performance.now();
    Math.random = () => 0; // no jitter: every delay is exact
  });

  afterEach(() => {
    for (const wait of waits.splice(0)) wait.dispose();
    Math.random = random;
    clock.uninstall();
  });

  const init = (over: Partial<WaitInit> = {}): WaitInit => ({ key: 'k', start: performance.now(), waitTimeoutMs: Infinity, signal: undefined, ...over });
  const newWait = (over: Partial<WaitInit> = {}): Wait => {
    const wait = new Wait(init(over));
    waits.push(wait);
    return wait;
  };
  const noGiveBack = async (): Promise<void> => {
    throw new Error('nothing should be given back');
  };

  describe('waitFor', () => {
    it('resolves with what the loop returns and gives nothing back', async () => {
      const given: unknown[] = [];
      const value = { lock: 1 };
      const got = await waitFor(init({ waitTimeoutMs: 1000 }), async () => value, async (v) => void given.push(v));
      expect(got).to.equal(value);
      await flush();
      expect(given).to.deep.equal([]);
    });

    it("rejects with the caller's signal.reason the moment it aborts, while the loop is stuck", async () => {
      const ac = new AbortController();
      const reason = new Error('caller gave up');
      const t = track(waitFor(init({ signal: ac.signal }), () => never(), noGiveBack));
      await flush();
      expect(t.state).to.equal('pending');
      ac.abort(reason);
      await flush();
      expect(t.state).to.equal('rejected');
      expect(t.error).to.equal(reason);
    });

    it("rejects with the closing signal's reason when the locker closes", async () => {
      const closing = new AbortController();
      const reason = new Error('closed');
      const t = track(waitFor(init({ closing: closing.signal }), () => never(), noGiveBack));
      closing.abort(reason);
      await flush();
      expect(t.error).to.equal(reason);
    });

    it('does not start the loop when the caller signal is already aborted', async () => {
      // An acquire that was cancelled before it began must not put anything on the wire.
      const ac = new AbortController();
      const reason = new Error('already cancelled');
      ac.abort(reason);
      let started = 0;
      const t = track(
        waitFor(
          init({ signal: ac.signal }),
          async () => {
            started++;
            return 'granted';
          },
          async () => {},
        ),
      );
      await flush();
      expect(t.error).to.equal(reason);
      expect(started, 'loop runs (an attempt is sent) after the wait already rejected').to.equal(0);
    });

    it("rejects with the loop's own error when the loop fails first", async () => {
      const boom = new Error('NOPERM');
      const t = track(waitFor(init({ waitTimeoutMs: 1000 }), async () => Promise.reject(boom), noGiveBack));
      await flush();
      expect(t.error).to.equal(boom);
    });

    it('rejects exactly at the deadline counted from start, with LockTimeoutError caused by the last backoff error', async () => {
      const first = new Error('ECONNREFUSED');
      const last = new Error('ETIMEDOUT');
      const loop = async (wait: Wait): Promise<never> => {
        await wait.backoff(first);
        await wait.backoff(last);
        wait.backoffDelay(undefined); // a pause with no error keeps the last one as the cause
        return never();
      };
      // The acquire began 400 ms ago (its fast path took that long): 600 ms are left.
      const t = track(waitFor(init({ start: t0 - 400, waitTimeoutMs: 1000 }), loop, noGiveBack));
      await clock.tickAsync(599);
      expect(t.state).to.equal('pending');
      await clock.tickAsync(1);
      expect(t.state).to.equal('rejected');
      const err = t.error as LockTimeoutError;
      expect(err).to.be.instanceOf(LockTimeoutError);
      expect(err.code).to.equal('WL_LOCK_TIMEOUT');
      expect(err.key).to.equal('k');
      expect(err.message).to.contain('1000 ms');
      expect(err.cause).to.equal(last);
    });

    it('times out without a cause when nothing failed', async () => {
      const t = track(waitFor(init({ waitTimeoutMs: 100 }), () => never(), noGiveBack));
      await clock.tickAsync(100);
      expect(t.error).to.be.instanceOf(LockTimeoutError);
      expect((t.error as Error).cause).to.equal(undefined);
    });

    it('rejects on the next timer turn when the deadline passed before the wait began', async () => {
      const t = track(waitFor(init({ start: t0 - 500, waitTimeoutMs: 100 }), () => never(), noGiveBack));
      await clock.tickAsync(0);
      expect(t.error).to.be.instanceOf(LockTimeoutError);
    });

    it('rejects at the deadline with timeoutError(wait) when one is given', async () => {
      const custom = new Error('quorum not reached');
      let seen: Wait | undefined;
      const timeoutError = (wait: Wait): Error => {
        seen = wait;
        return custom;
      };
      let loopWait: Wait | undefined;
      const t = track(
        waitFor(
          init({ waitTimeoutMs: 250, timeoutError }),
          (wait) => {
            loopWait = wait;
            return never();
          },
          noGiveBack,
        ),
      );
      await clock.tickAsync(250);
      expect(t.error).to.equal(custom);
      expect(seen).to.equal(loopWait);
    });

    for (const waitTimeoutMs of [MAX_TIMER_MS + 1, 2 ** 40, Infinity]) {
      it(`treats waitTimeoutMs ${waitTimeoutMs} (beyond setTimeout's range) as no deadline`, async () => {
        const d = deferred<string>();
        const t = track(waitFor(init({ waitTimeoutMs }), () => d.promise, noGiveBack));
        await clock.tickAsync(2 ** 32); // ~50 days; a clamped timer would have fired after 1 ms
        expect(t.state).to.equal('pending');
        d.resolve('granted');
        await flush();
        expect(t.value).to.equal('granted');
      });
    }

    it('hands a value the loop returns after the wait rejected to giveBack, exactly once', async () => {
      const ac = new AbortController();
      const d = deferred<{ lock: string }>();
      const given: unknown[] = [];
      const t = track(waitFor(init({ signal: ac.signal }), () => d.promise, async (v) => void given.push(v)));
      ac.abort(new Error('gave up'));
      await flush();
      expect(t.state).to.equal('rejected');
      const late = { lock: 'late grant' };
      d.resolve(late);
      await flush();
      expect(given).to.have.length(1);
      expect(given[0]).to.equal(late);
    });

    it('leaves no unhandled rejection when the loop or giveBack fails after the wait rejected', async () => {
      const unhandled = unhandledRejections();
      try {
        // The loop's own sleep rejects with the deadline's error once the wait has ended.
        const a = track(waitFor(init({ waitTimeoutMs: 100 }), (wait) => wait.sleep(10_000), noGiveBack));
        const late = deferred<never>();
        const b = track(waitFor(init({ waitTimeoutMs: 100 }), () => late.promise, noGiveBack));
        const grant = deferred<string>();
        const c = track(waitFor(init({ waitTimeoutMs: 100 }), () => grant.promise, () => Promise.reject(new Error('release failed'))));
        await clock.tickAsync(100);
        late.reject(new Error('socket closed'));
        grant.resolve('late grant');
        await flush();
        await flush();
        expect([a.state, b.state, c.state]).to.deep.equal(['rejected', 'rejected', 'rejected']);
        expect(unhandled.seen).to.deep.equal([]);
      } finally {
        unhandled.stop();
      }
    });

    for (const end of ['abort', 'close', 'deadline'] as const) {
      it(`aborts wait.signal with the same reason when the wait ends by ${end}`, async () => {
        const ac = new AbortController();
        const closing = new AbortController();
        let wait: Wait | undefined;
        const t = track(
          waitFor(
            init({ signal: ac.signal, closing: closing.signal, waitTimeoutMs: 300 }),
            (w) => {
              wait = w;
              return never();
            },
            noGiveBack,
          ),
        );
        expect(wait!.signal.aborted).to.equal(false);
        if (end === 'abort') ac.abort(new Error('abort'));
        if (end === 'close') closing.abort(new Error('close'));
        if (end === 'deadline') await clock.tickAsync(300);
        await flush();
        expect(wait!.signal.aborted).to.equal(true);
        expect(wait!.signal.reason).to.equal(t.error);
        expect(t.error).to.be.instanceOf(Error);
      });
    }

    for (const end of ['success', 'abort', 'close', 'deadline', 'loop error'] as const) {
      it(`removes its listeners and its deadline timer once the wait ends by ${end}`, async () => {
        const ac = new AbortController();
        const closing = new AbortController();
        const d = deferred<string>();
        const t = track(waitFor(init({ signal: ac.signal, closing: closing.signal, waitTimeoutMs: 300 }), () => d.promise, async () => {}));
        expect(listeners(ac.signal)).to.equal(1);
        expect(listeners(closing.signal)).to.equal(1);
        expect(clock.countTimers()).to.equal(1); // the deadline
        if (end === 'success') d.resolve('ok');
        if (end === 'abort') ac.abort(new Error('abort'));
        if (end === 'close') closing.abort(new Error('close'));
        if (end === 'deadline') await clock.tickAsync(300);
        if (end === 'loop error') d.reject(new Error('NOPERM'));
        await flush();
        expect(t.state).to.not.equal('pending');
        expect(listeners(ac.signal)).to.equal(0);
        expect(listeners(closing.signal)).to.equal(0);
        expect(clock.countTimers()).to.equal(0);
      });
    }

    it('does not abort wait.signal after a success, even when the caller aborts later', async () => {
      const ac = new AbortController();
      const closing = new AbortController();
      let wait: Wait | undefined;
      await waitFor(
        init({ signal: ac.signal, closing: closing.signal, waitTimeoutMs: 300 }),
        async (w) => {
          wait = w;
          return 'ok';
        },
        noGiveBack,
      );
      ac.abort(new Error('late abort'));
      closing.abort(new Error('late close'));
      await clock.tickAsync(1000);
      expect(wait!.signal.aborted).to.equal(false);
    });
  });

  describe('Wait.pause and wake', () => {
    it('resolves after ms when nothing wakes it', async () => {
      const t = track(newWait().pause(100));
      await clock.tickAsync(99);
      expect(t.state).to.equal('pending');
      await clock.tickAsync(1);
      expect(t.state).to.equal('resolved');
    });

    it('resolves at once on wake(), and clears its timer', async () => {
      const wait = newWait();
      const t = track(wait.pause(1000));
      await clock.tickAsync(10);
      wait.wake();
      await flush();
      expect(t.state).to.equal('resolved');
      expect(clock.countTimers()).to.equal(0);
      expect(wait.takeWake(), 'the wake was used up by the pause').to.equal(false);
    });

    it('resolves at once when wake() came before the pause, and only that once', async () => {
      const wait = newWait();
      wait.wake();
      const first = track(wait.pause(1000));
      await flush();
      expect(first.state).to.equal('resolved');
      const second = track(wait.pause(1000));
      await clock.tickAsync(999);
      expect(second.state).to.equal('pending');
      await clock.tickAsync(1);
      expect(second.state).to.equal('resolved');
    });

    it('takeWake() reports a wake and clears it', async () => {
      const wait = newWait();
      expect(wait.takeWake()).to.equal(false);
      wait.wake();
      expect(wait.takeWake()).to.equal(true);
      expect(wait.takeWake()).to.equal(false);
      const t = track(wait.pause(100));
      await flush();
      expect(t.state, 'a cleared wake does not end the next pause').to.equal('pending');
    });

    it('rejects with the reason when the wait ends during the pause', async () => {
      const ac = new AbortController();
      const reason = new Error('gave up');
      const t = track(newWait({ signal: ac.signal }).pause(1000));
      await clock.tickAsync(10);
      ac.abort(reason);
      await flush();
      expect(t.error).to.equal(reason);
      expect(clock.countTimers()).to.equal(0);
    });

    it('rejects at once when the wait has already ended', async () => {
      const ac = new AbortController();
      const reason = new Error('gave up');
      const wait = newWait({ signal: ac.signal });
      ac.abort(reason);
      const t = track(wait.pause(1000));
      await flush();
      expect(t.error).to.equal(reason);
    });

    it('rejects when the wait has already ended, even if a wake came first', async () => {
      // A release message and the deadline can both land while an attempt is on the wire; the
      // loop's next pause must end it, not send it round for one more attempt.
      const ac = new AbortController();
      const reason = new Error('gave up');
      const wait = newWait({ signal: ac.signal });
      wait.wake();
      ac.abort(reason);
      const t = track(wait.pause(1000));
      await flush();
      expect(t.state, 'pause() after the wait ended resolved because of an earlier wake()').to.equal('rejected');
      expect(t.error).to.equal(reason);
    });

    it("wakes at setTimeout's limit for a pause longer than its range, not after 1 ms", async () => {
      const t = track(newWait().pause(2 ** 33));
      await clock.tickAsync(10);
      expect(t.state).to.equal('pending');
      await clock.tickAsync(MAX_TIMER_MS - 10);
      expect(t.state).to.equal('resolved');
    });
  });

  describe('backoff', () => {
    it('backoffMs doubles from 50 ms up to a 1000 ms cap', () => {
      const delays = [0, 1, 2, 3, 4, 5, 6, 40, 1e6].map((n) => backoffMs(n));
      expect(delays).to.deep.equal([50, 100, 200, 400, 800, 1000, 1000, 1000, 1000]);
    });

    it('backoffMs adds jitter below 50 ms', () => {
      Math.random = () => 0.999999;
      expect([0, 1, 5].map((n) => backoffMs(n))).to.deep.equal([99, 149, 1049]);
      Math.random = random;
      for (let i = 0; i < 200; i++) {
        const d = backoffMs(2);
        expect(d).to.be.at.least(200).and.below(250);
        expect(Number.isInteger(d)).to.equal(true);
      }
    });

    it('backoffMs takes baseMs, capMs and jitterMs', () => {
      expect([0, 1, 2, 3].map((n) => backoffMs(n, { baseMs: 10, capMs: 35, jitterMs: 0 }))).to.deep.equal([10, 20, 35, 35]);
    });

    it('wait.backoffDelay counts failures in a row, and answered() starts over', () => {
      const wait = newWait();
      expect([1, 2, 3, 4].map(() => wait.backoffDelay(new Error('down')))).to.deep.equal([50, 100, 200, 400]);
      wait.answered();
      expect(wait.backoffDelay(new Error('down'))).to.equal(50);
      expect(wait.backoffDelay(undefined, { baseMs: 10 })).to.equal(20);
    });

    it('wait.backoffDelay remembers the last error, and keeps it when given none', () => {
      const wait = newWait();
      const a = new Error('a');
      const b = new Error('b');
      wait.backoffDelay(a);
      wait.backoffDelay(b);
      wait.backoffDelay(undefined);
      expect(wait.lastError).to.equal(b);
    });

    it('wait.backoff sleeps the growing delay, and rejects when the wait ends', async () => {
      const ac = new AbortController();
      const wait = newWait({ signal: ac.signal });
      const first = track(wait.backoff(new Error('down')));
      await clock.tickAsync(49);
      expect(first.state).to.equal('pending');
      await clock.tickAsync(1);
      expect(first.state).to.equal('resolved');
      const second = track(wait.backoff(new Error('down')));
      await clock.tickAsync(99);
      expect(second.state).to.equal('pending');
      await clock.tickAsync(1);
      expect(second.state).to.equal('resolved');
      const third = track(wait.backoff(new Error('down')));
      const reason = new Error('gave up');
      ac.abort(reason);
      await flush();
      expect(third.error).to.equal(reason);
    });
  });

  describe('sleep', () => {
    it('resolves after ms, rejects with signal.reason on abort and at once when already aborted', async () => {
      const ac = new AbortController();
      const done = track(sleep(30));
      const aborted = track(sleep(1000, ac.signal));
      await clock.tickAsync(30);
      expect(done.state).to.equal('resolved');
      const reason = new Error('stop');
      ac.abort(reason);
      await flush();
      expect(aborted.error).to.equal(reason);
      expect(listeners(ac.signal)).to.equal(0);
      const late = track(sleep(1000, ac.signal));
      await flush();
      expect(late.error).to.equal(reason);
      expect(clock.countTimers()).to.equal(0);
    });

    it('removes its abort listener when it resolves', async () => {
      const ac = new AbortController();
      const t = track(sleep(10, ac.signal));
      expect(listeners(ac.signal)).to.equal(1);
      await clock.tickAsync(10);
      expect(t.state).to.equal('resolved');
      expect(listeners(ac.signal)).to.equal(0);
    });
  });

  describe('retryInBackground', () => {
    /** A step that answers from `script` in turn (true, false, or a throw), recording when it ran. */
    function stepper(script: Array<boolean | Error>): { step: () => Promise<boolean>; at: number[] } {
      const at: number[] = [];
      const step = async (): Promise<boolean> => {
        at.push(performance.now() - t0);
        const next = script[Math.min(at.length - 1, script.length - 1)]!;
        if (next instanceof Error) throw next;
        return next;
      };
      return { step, at };
    }

    it('retries after false or a throw with backoff, and stops at the first true', async () => {
      const { step, at } = stepper([false, new Error('down'), false, true]);
      const t = track(retryInBackground(step));
      await clock.tickAsync(10_000);
      expect(at).to.deep.equal([0, 50, 150, 350]);
      expect(t.state).to.equal('resolved');
      expect(clock.countTimers()).to.equal(0);
    });

    it('backs off up to the cap between failures', async () => {
      const stop = new AbortController();
      const { step, at } = stepper([false]);
      const t = track(retryInBackground(step, { stop: stop.signal }));
      await clock.tickAsync(3000);
      expect(at).to.deep.equal([0, 50, 150, 350, 750, 1550, 2550]);
      stop.abort();
      await flush();
      expect(t.state).to.equal('resolved');
    });

    it('stops when until passes, cutting the last pause short, and never rejects', async () => {
      const { step, at } = stepper([new Error('down')]);
      const t = track(retryInBackground(step, { until: t0 + 120 }));
      await clock.tickAsync(119);
      expect(t.state).to.equal('pending');
      await clock.tickAsync(1);
      expect(t.state).to.equal('resolved');
      expect(t.value).to.equal(undefined);
      expect(at).to.deep.equal([0, 50]);
      await clock.tickAsync(10_000);
      expect(at).to.have.length(2);
    });

    it('stops at once when stop aborts during a pause', async () => {
      const stop = new AbortController();
      const { step, at } = stepper([false]);
      const t = track(retryInBackground(step, { stop: stop.signal }));
      await clock.tickAsync(60);
      stop.abort(new Error('closed'));
      await flush();
      expect(t.state).to.equal('resolved');
      expect(clock.countTimers()).to.equal(0);
      await clock.tickAsync(10_000);
      expect(at).to.deep.equal([0, 50]);
    });

    it('makes no further try when stop aborts while a step is in flight', async () => {
      const stop = new AbortController();
      const reply = deferred<boolean>();
      let calls = 0;
      const t = track(
        retryInBackground(
          () => {
            calls++;
            return reply.promise;
          },
          { stop: stop.signal },
        ),
      );
      stop.abort();
      reply.resolve(false);
      await clock.tickAsync(10_000);
      expect(t.state).to.equal('resolved');
      expect(calls).to.equal(1);
    });

    it('never tries when stop is already aborted', async () => {
      const stop = new AbortController();
      stop.abort();
      const { step, at } = stepper([false]);
      const t = track(retryInBackground(step, { stop: stop.signal }));
      await clock.tickAsync(1000);
      expect(at).to.deep.equal([]);
      expect(t.state).to.equal('resolved');
    });

    it('waits firstDelayMs before the first try', async () => {
      const { step, at } = stepper([true]);
      const t = track(retryInBackground(step, { firstDelayMs: 50 }));
      await clock.tickAsync(49);
      expect(at).to.deep.equal([]);
      await clock.tickAsync(1);
      expect(at).to.deep.equal([50]);
      expect(t.state).to.equal('resolved');
    });

    it('makes no try when until passes or stop aborts during firstDelayMs', async () => {
      const stop = new AbortController();
      const a = stepper([true]);
      const b = stepper([true]);
      const ta = track(retryInBackground(a.step, { firstDelayMs: 50, until: t0 + 30 }));
      const tb = track(retryInBackground(b.step, { firstDelayMs: 50, stop: stop.signal }));
      await clock.tickAsync(20);
      stop.abort();
      await clock.tickAsync(1000);
      expect([ta.state, tb.state]).to.deep.equal(['resolved', 'resolved']);
      expect(a.at).to.deep.equal([]);
      expect(b.at).to.deep.equal([]);
    });

    it('paces itself with the given backoff options', async () => {
      const { step, at } = stepper([false, false, false, true]);
      await Promise.all([retryInBackground(step, { backoff: { baseMs: 10, capMs: 15 } }), clock.tickAsync(1000)]);
      expect(at).to.deep.equal([0, 10, 25, 40]);
    });
  });
});

describe('waiting engine: what keeps a process alive (child processes)', function () {
  this.timeout(15_000); // tsx's start-up can take seconds on a loaded machine
  // Started together (each is mostly tsx's start-up), checked one per test.
  let runs: Record<'keepAlive' | 'waitFor' | 'retry', Promise<ChildRun>>;
  before(() => {
    const abort = srcUrl('abort.ts');
    const waiting = srcUrl('locks/waiting.ts');
    runs = {
      keepAlive: runChild(`
        const { keepAlive } = await import(${JSON.stringify(abort)});
        const refs = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
        const counts = [refs()];
        const a = keepAlive(); counts.push(refs());
        const b = keepAlive(); b(); counts.push(refs());
        a(); a(); counts.push(refs());
        const c = keepAlive(); counts.push(refs()); c();
        const t0 = performance.now();
        const release = keepAlive();
        setTimeout(release, 200).unref(); // only the hold keeps the process here
        process.on('exit', () => console.log(JSON.stringify({ counts, ms: performance.now() - t0 })));
      `),
      waitFor: runChild(`
        const { waitFor } = await import(${JSON.stringify(waiting)});
        const t0 = performance.now();
        // Nothing else is alive: no socket, and the deadline's own timer is unref'd.
        waitFor({ key: 'k', start: t0, waitTimeoutMs: 300, signal: undefined }, () => new Promise(() => {}), async () => {})
          .then(() => console.log(JSON.stringify({ resolved: true })), (e) => console.log(JSON.stringify({ code: e.code, ms: performance.now() - t0 })));
      `),
      retry: runChild(`
        const { retryInBackground } = await import(${JSON.stringify(waiting)});
        let tries = 0;
        void retryInBackground(async () => (tries++, false));
        process.on('exit', () => console.log(JSON.stringify({ tries })));
      `),
    };
    for (const run of Object.values(runs)) run.catch(() => {});
  });

  const parse = (run: ChildRun): Record<string, unknown> => {
    expect(run.code, `exit code (null: killed, still alive); stderr: ${run.stderr}`).to.equal(0);
    return JSON.parse(run.stdout.trim()) as Record<string, unknown>;
  };

  it('keepAlive() holds the process until every hold is released (releasing twice is harmless)', async () => {
    const out = parse(await runs.keepAlive);
    expect(out.counts).to.deep.equal([0, 1, 1, 0, 1]);
    expect(out.ms).to.be.at.least(195);
  });

  it('a pending waitFor with nothing else alive keeps the process until its deadline, then lets it exit', async () => {
    const out = parse(await runs.waitFor);
    expect(out.code).to.equal('WL_LOCK_TIMEOUT');
    expect(out.ms).to.be.at.least(295);
  });

  it('retryInBackground keeps no process alive', async () => {
    const out = parse(await runs.retry);
    expect(out.tries, 'a ref\'d pause would have let it try again').to.equal(1);
  });
});
