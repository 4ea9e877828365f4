/**
 * RedisLocker figures, measured against the server's own ceiling (redis-benchmark) in the same run:
 *
 *   node --import tsx bench/redis.ts [--rounds 5] [--seconds 2]
 *
 * 1. Uncontended acquire+release cycles/s, sequential, a new key each cycle (two round trips a cycle).
 *    Next to it: redis-benchmark (one connection, no pipelining) running the very same two EVALSHA
 *    commands, converted to cycles/s = 1 / (time per acquire + time per release).
 * 2. Wake-on-release handoff: one client holds, another waits; the time from the holder's release()
 *    call to the waiter's acquire() resolving.
 *
 * Medians of rounds; the machine is shared and noisy, so compare ratios, not absolute numbers.
 */
import { execFileSync } from 'node:child_process';
import { RedisClient, RedisLocker } from '../src/index.js';
import { startRedis } from '../src/testing/servers.js';
import { quantile } from '../src/testing/history.js';
import { QUEUE_ACQUIRE, QUEUE_RELEASE } from '../src/locks/redis-scripts.js';
import { median, numberArg } from './lib/stats.js';
import { lockerCyclesPerSecond, wakeHandoffs } from './lib/scenarios.js';

const ROUNDS = numberArg('rounds', 5);
const SECONDS = numberArg('seconds', 2);

/** redis-benchmark's requests/s for one command (one connection, no pipelining). */
function redisBenchmark(port: number, args: string[], requests: number): number {
  const out = execFileSync('redis-benchmark', ['-p', String(port), '-c', '1', '-n', String(requests), '-r', '1000000', '-q', ...args], {
    encoding: 'utf8',
  });
  const m = /([\d.]+) requests per second/.exec(out);
  if (!m) throw new Error(`cannot read redis-benchmark output: ${out}`);
  return Number(m[1]);
}

async function main(): Promise<void> {
  const server = await startRedis();
  try {
    const client = await RedisClient.connect(server.url);
    const other = await RedisClient.connect(server.url);
    const locker = new RedisLocker(client);
    const locker2 = new RedisLocker(other);
    await lockerCyclesPerSecond(locker, SECONDS, 'warm'); // warm-up: JIT, script cache

    const ours: number[] = [];
    const raw: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      ours.push(await lockerCyclesPerSecond(locker, SECONDS, `r${r}`));
      const n = Math.max(5000, Math.round(ours[r]! * SECONDS));
      const keys = ['4', 'bb:{__rand_int__}', 'bb:{__rand_int__}:fence', 'bb:{__rand_int__}:queue', 'bb:{__rand_int__}:queue:exp'];
      const acq = redisBenchmark(server.port, ['EVALSHA', QUEUE_ACQUIRE.sha, ...keys, 'tok', '10000', '10000', 'bb:chan'], n);
      const rel = redisBenchmark(server.port, ['EVALSHA', QUEUE_RELEASE.sha, ...keys, 'tok', 'bb:chan'], n);
      raw.push(1 / (1 / acq + 1 / rel));
    }
    const hand = await wakeHandoffs(locker, locker2, 200);
    const ratios = ours.map((v, i) => v / raw[i]!);
    console.log('| measure | median | rounds |');
    console.log('|---|---|---|');
    console.log(`| wirelock RedisLocker acquire+release, cycles/s | ${median(ours).toFixed(0)} | ${ours.map((v) => v.toFixed(0)).join(', ')} |`);
    console.log(`| redis-benchmark, same two EVALSHAs, cycles/s | ${median(raw).toFixed(0)} | ${raw.map((v) => v.toFixed(0)).join(', ')} |`);
    console.log(`| ratio wirelock / redis-benchmark | ${median(ratios).toFixed(2)} | ${ratios.map((v) => v.toFixed(2)).join(', ')} |`);
    console.log(
      `| wake-on-release handoff, ms (n=${hand.length}) | ${quantile(hand, 0.5).toFixed(3)} | p90 ${quantile(hand, 0.9).toFixed(3)}, p99 ${quantile(hand, 0.99).toFixed(3)} |`,
    );
    await Promise.all([locker.close(), locker2.close()]);
    await Promise.all([client.close(), other.close()]);
  } finally {
    await server.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
