/**
 * One demo worker process: takes the lock `iterations` times around a shared counter file
 * (read, wait `holdMs`, write back +1: a lost update if two holders ever overlap) and reports each
 * hold on stdout as a JSON line, stamped with process.hrtime.bigint() (CLOCK_MONOTONIC, shared by all
 * processes on the machine, so the parent can compare stamps from different workers).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { RedisClient, RedisLocker, type Locker } from '../src/index.js';

export interface WorkerConfig {
  id: number;
  backend: 'redis';
  urls: string[];
  key: string;
  iterations: number;
  holdMs: number;
  thinkMs: number;
  counterFile: string;
  ttlMs: number;
}

async function makeLocker(cfg: WorkerConfig): Promise<{ locker: Locker; close: () => Promise<void> }> {
  const client = await RedisClient.connect(cfg.urls[0]!);
  const locker = new RedisLocker(client);
  return { locker, close: async () => (await locker.close(), await client.close()) };
}

const now = (): string => process.hrtime.bigint().toString();

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2]!) as WorkerConfig;
  const { locker, close } = await makeLocker(cfg);
  process.stdout.write(JSON.stringify({ type: 'ready', worker: cfg.id }) + '\n');
  for (let i = 0; i < cfg.iterations; i++) {
    const requested = now();
    const lock = await locker.acquire(cfg.key, { ttlMs: cfg.ttlMs, waitTimeoutMs: 60_000 });
    const enter = now();
    const value = Number(readFileSync(cfg.counterFile, 'utf8'));
    await sleep(cfg.holdMs);
    writeFileSync(cfg.counterFile, String(value + 1));
    const exit = now();
    await lock.release();
    process.stdout.write(
      JSON.stringify({ type: 'hold', worker: cfg.id, requested, enter, exit, fence: lock.fence.toString() }) + '\n',
    );
    if (cfg.thinkMs > 0) await sleep(Math.random() * cfg.thinkMs);
  }
  await close();
}

main().catch((err: unknown) => {
  process.stderr.write(`worker failed: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}\n`);
  process.exit(1);
});
