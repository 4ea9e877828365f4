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

export interface ContentionResult {
  total: number;
  holds: Hold[];
  overlaps: number;
  fenceRegressions: number;
  violations: string[];
  maxFence: bigint;
  refused: number;
  /** Fenced writes the resource accepted. */
  accepted: number;
  lost: number;
  counter: number;
  resource: { fence: bigint; value: number };
}

/** Runs the scenario and asserts that it passed. */
export async function contention(env: Env, key: string, size: ContentionSize, label: string): Promise<void> {
  const r = await runContention(env, key, size, label);
  expect(r.holds.length, 'holds').to.equal(r.total);
  expect(r.overlaps, 'overlapping sections').to.equal(0);
  expect(r.fenceRegressions, 'fence regressions').to.equal(0);
  expect(r.violations, 'mutex model').to.deep.equal([]);
  expect(r.refused, 'fenced accesses refused').to.equal(0);
  expect(r.lost, 'locks lost inside a section').to.equal(0);
  expect(r.counter, 'plain counter (lost updates)').to.equal(r.total);
  expect(r.resource.value, 'fenced resource').to.equal(r.total);
  expect(r.resource.fence).to.equal(r.maxFence);
}

export async function runContention(env: Env, key: string, size: ContentionSize, label: string): Promise<ContentionResult> {
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
  let accepted = 0;
  let lost = 0;
  for (const w of workers) {
    for (const e of w.all('hold')) {
      const h = { worker: w.id, requested: big(e, 'requested'), enter: big(e, 'enter'), exit: big(e, 'exit'), fence: big(e, 'fence') };
      holds.push(h);
      events.push({ kind: 'enter', worker: w.id, at: h.enter, fence: h.fence }, { kind: 'exit', worker: w.id, at: h.exit });
      if (!e.beginOk || !e.writeOk) refused++;
      if (e.writeOk) accepted++;
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
      `refused ${refused}, accepted writes ${accepted}, lost ${lost}; counter ${counter}, resource ${state.value}; per worker ${Math.min(...perWorker)}..${Math.max(...perWorker)}`,
  );
  return {
    total, holds, overlaps: history.overlaps.length, fenceRegressions: history.fenceRegressions.length,
    violations: replay.violations, maxFence: replay.maxFence, refused, accepted, lost, counter, resource: state,
  };
}
