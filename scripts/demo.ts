/**
 * npm run demo [-- --quick]
 *
 * Starts throwaway local servers, runs 8 worker processes that contend for one lock around a shared
 * counter file, and shows what happened: acquisitions per worker, handoff latency, and the check that
 * no two holds overlapped (the counter also ends exactly at the number of holds, or updates were lost).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRedis } from '../src/testing/servers.js';
import { checkHistory, quantile, type Hold } from '../src/testing/history.js';
import type { WorkerConfig } from './demo-worker.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const quick = process.argv.includes('--quick');
const WORKERS = 8;
const ITERATIONS = quick ? 15 : 60;
const out = path.join(root, 'demo-out');

interface Scenario {
  title: string;
  backend: WorkerConfig['backend'];
  urls: string[];
}

function runWorkers(s: Scenario, counterFile: string): Promise<Hold[]> {
  const holds: Hold[] = [];
  const total = WORKERS * ITERATIONS;
  let lastDraw = 0;
  const draw = (): void => {
    const t = Date.now();
    if (t - lastDraw < 100 && holds.length < total) return;
    lastDraw = t;
    const width = 40;
    const done = Math.round((holds.length / total) * width);
    process.stdout.write(`\r  [${'#'.repeat(done)}${'.'.repeat(width - done)}] ${holds.length}/${total} holds`);
  };
  const workers = Array.from({ length: WORKERS }, (_, id) => {
    const cfg: WorkerConfig = {
      id,
      backend: s.backend,
      urls: s.urls,
      key: 'demo-counter',
      iterations: ITERATIONS,
      holdMs: 2,
      thinkMs: 2,
      counterFile,
      ttlMs: 5000,
    };
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'scripts/demo-worker.ts'), JSON.stringify(cfg)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const msg = JSON.parse(line) as Record<string, string | number>;
        if (msg.type !== 'hold') continue;
        holds.push({
          worker: msg.worker as number,
          requested: BigInt(msg.requested!),
          enter: BigInt(msg.enter!),
          exit: BigInt(msg.exit!),
          fence: BigInt(msg.fence!),
        });
        draw();
      }
    });
    return new Promise<void>((resolve, reject) =>
      child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker ${id} exited with ${code}`)))),
    );
  });
  return Promise.all(workers).then(() => {
    draw();
    process.stdout.write('\n');
    return holds;
  });
}

function report(s: Scenario, holds: Hold[], counter: number): boolean {
  const r = checkHistory(holds);
  const fmt = (ms: number): string => (Number.isNaN(ms) ? '-' : `${ms.toFixed(2)} ms`);
  console.log(`  acquisitions per worker: ${[...r.perWorker.entries()].map(([w, n]) => `w${w}=${n}`).join(' ')}`);
  console.log(`  handoff (one holder's exit -> next holder's enter): median ${fmt(quantile(r.handoffMs, 0.5))}, p99 ${fmt(quantile(r.handoffMs, 0.99))}`);
  console.log(`  wait for the lock: median ${fmt(quantile(r.waitMs, 0.5))}, p99 ${fmt(quantile(r.waitMs, 0.99))}, max ${fmt(quantile(r.waitMs, 1))}`);
  const ok = r.overlaps.length === 0 && r.fenceRegressions.length === 0 && counter === holds.length;
  console.log(
    `  check: ${r.overlaps.length} overlapping holds, ${r.fenceRegressions.length} fence regressions, ` +
      `counter ${counter} for ${holds.length} holds -> ${ok ? 'OK, no two holds overlapped' : 'FAILED'}`,
  );
  return ok;
}

async function main(): Promise<void> {
  mkdirSync(out, { recursive: true });
  console.log(`wirelock demo: ${WORKERS} worker processes x ${ITERATIONS} holds of one lock around a shared counter\n`);
  const redis = await startRedis();
  let ok = true;
  try {
    const scenarios: Scenario[] = [{ title: `RedisLocker on one redis-server (${redis.url})`, backend: 'redis', urls: [redis.url] }];
    for (const s of scenarios) {
      console.log(s.title);
      const counterFile = path.join(out, `counter-${s.backend}.txt`);
      writeFileSync(counterFile, '0');
      const holds = await runWorkers(s, counterFile);
      ok = report(s, holds, Number(readFileSync(counterFile, 'utf8'))) && ok;
      console.log();
    }
  } finally {
    await redis.stop();
  }
  if (!ok) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
