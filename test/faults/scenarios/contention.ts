/**
 * Scenario 1: contention without faults. W worker processes × I iterations on one key. Each critical
 * section does a fenced read, a plain read-wait-write of a counter, and a fenced write.
 * Pass: counter and resource both exactly W×I, no overlapping sections, fences strictly increasing,
 * the history replays against the mutex model, and no fenced access was refused.
 */
import { expect } from 'chai';
import { checkHistory, replayMutex, type Hold, type MutexEvent } from '../../../src/testing/history.js';
import { big, type FaultWorker } from '../../support/faults-workers.js';
import { report, worker, type Env } from '../../support/faults-env.js';

export interface ContentionSize {
  workers: number;
  iterations: number;
  /** Random hold inside the section, 0..holdMs ms. */
  holdMs: number;
  ttlMs: number;
  lockerOptions?: Record<string, unknown>;
}

export async function contention(env: Env, key: string, size: ContentionSize, label: string): Promise<void> {
  await env.reset();
  const started = performance.now();
  const workers: FaultWorker[] = await Promise.all(
    Array.from({ length: size.workers }, () => worker(env, { lockerOptions: size.lockerOptions })),
  );
  const t0 = performance.now();
  // Generous: the slowest backend does about 150 holds/s here even on a loaded machine.
  const timeoutMs = 30_000 + size.workers * size.iterations * 20;
  try {
    await Promise.all(
      workers.map((w) =>
        w.request({ op: 'contend', key, iterations: size.iterations, holdMs: size.holdMs, ttlMs: size.ttlMs, waitTimeoutMs: 60_000 }, 'contended', timeoutMs),
      ),
    );
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
  const elapsed = performance.now() - t0;

  const holds: Hold[] = [];
  const events: MutexEvent[] = [];
  let refused = 0;
  let lost = 0;
  for (const w of workers) {
    for (const e of w.all('hold')) {
      const h = { worker: w.id, requested: big(e, 'requested'), enter: big(e, 'enter'), exit: big(e, 'exit'), fence: big(e, 'fence') };
      holds.push(h);
      events.push({ kind: 'enter', worker: w.id, at: h.enter, fence: h.fence }, { kind: 'exit', worker: w.id, at: h.exit });
      if (!e.beginOk || !e.writeOk) refused++;
      if (e.lostBeforeExit) lost++;
    }
  }
  const total = size.workers * size.iterations;
  const history = checkHistory(holds);
  const replay = replayMutex(events);
  const counter = await env.counter();
  const state = await env.view.state();
  const perWorker = [...history.perWorker.values()];
  report(
    `${label}: ${holds.length} holds by ${size.workers} processes in ${(elapsed / 1000).toFixed(1)} s ` +
      `(${Math.round(holds.length / (elapsed / 1000))}/s; startup ${((t0 - started) / 1000).toFixed(1)} s); ` +
      `overlaps ${history.overlaps.length}, fence regressions ${history.fenceRegressions.length}, model violations ${replay.violations.length}, ` +
      `refused ${refused}, lost ${lost}; counter ${counter}, resource ${state.value}; per worker ${Math.min(...perWorker)}..${Math.max(...perWorker)}`,
  );
  expect(holds.length, 'holds').to.equal(total);
  expect(history.overlaps, 'overlapping sections').to.deep.equal([]);
  expect(history.fenceRegressions, 'fence regressions').to.deep.equal([]);
  expect(replay.violations, 'mutex model').to.deep.equal([]);
  expect(refused, 'fenced accesses refused').to.equal(0);
  expect(lost, 'locks lost inside a section').to.equal(0);
  expect(counter, 'plain counter (lost updates)').to.equal(total);
  expect(state.value, 'fenced resource').to.equal(total);
  expect(state.fence).to.equal(replay.maxFence);
}
