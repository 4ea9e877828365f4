/**
 * Redlock figures over 3 local redis-servers (our own code only; side-by-side runs live elsewhere):
 *
 *   node --import tsx bench/redlock.ts [--rounds 5] [--seconds 2] [--workers 8]
 *
 * 1. Uncontended acquire+release cycles/s, sequential, a new key each cycle (each cycle is two rounds
 *    of 3 parallel EVALSHAs). Next to it, RedisLocker on one of the same servers, for scale.
 * 2. Wake-on-release handoff: one client holds, another waits (subscribed on all 3 nodes); the time
 *    from the holder's release() call to the waiter's acquire() resolving.
 * 3. Contended: `workers` lockers (each with its own 3 connections) loop on one key, holding it for
 *    about 1 ms; the gap from one holder's exit to the next holder's entry, acquisitions/s, and how
 *    evenly the acquisitions spread over the workers. Overlaps and fence regressions must be 0.
 *
 * Medians of rounds; the machine is shared and noisy, so compare ratios, not absolute numbers.
 */
import { RedisClient, RedisLocker, Redlock } from '../src/index.js';
import { startRedisNodes } from '../src/testing/servers.js';
import { checkHistory, quantile, type Hold } from '../src/testing/history.js';
import { median, numberArg, sleep } from './lib/stats.js';
import { lockerCyclesPerSecond, wakeHandoffs } from './lib/scenarios.js';

const ROUNDS = numberArg('rounds', 5);
const SECONDS = numberArg('seconds', 2);
const WORKERS = numberArg('workers', 8);

async function contended(lockers: Redlock[], round: number): Promise<{ perSecond: number; handoffMs: number[]; spread: number[]; bad: number }> {
  const key = `bench:contended:${round}`;
  const holds: Hold[] = [];
  const end = performance.now() + SECONDS * 1000;
  const start = performance.now();
  await Promise.all(
    lockers.map(async (locker, w) => {
      while (performance.now() < end) {
        const lock = await locker.acquire(key, { ttlMs: 2000, autoExtend: false });
        const enter = process.hrtime.bigint();
        await sleep(1);
        holds.push({ worker: w, enter, exit: process.hrtime.bigint(), fence: lock.fence });
        await lock.release();
      }
    }),
  );
  const report = checkHistory(holds);
  const spread = lockers.map((_, w) => report.perWorker.get(String(w)) ?? 0).sort((a, b) => a - b);
  return {
    perSecond: holds.length / ((performance.now() - start) / 1000),
    handoffMs: report.handoffMs,
    spread,
    bad: report.overlaps.length + report.fenceRegressions.length,
  };
}

async function main(): Promise<void> {
  const servers = await startRedisNodes(3);
  const clients: RedisClient[] = [];
  const connect = async (): Promise<RedisClient[]> => {
    const cs = await Promise.all(servers.map((s) => RedisClient.connect(s.url)));
    clients.push(...cs);
    return cs;
  };
  try {
    const redlock = new Redlock(await connect());
    const other = new Redlock(await connect());
    const single = new RedisLocker((await connect())[0]!);
    await lockerCyclesPerSecond(redlock, SECONDS, 'warm'); // JIT, script caches
    await lockerCyclesPerSecond(single, SECONDS, 'warm1');

    const ours: number[] = [];
    const one: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      ours.push(await lockerCyclesPerSecond(redlock, SECONDS, `r${r}`));
      one.push(await lockerCyclesPerSecond(single, SECONDS, `s${r}`));
    }
    const hand = await wakeHandoffs(redlock, other, 200);
    const workers = await Promise.all(Array.from({ length: WORKERS }, async () => new Redlock(await connect())));
    const runs = [];
    for (let r = 0; r < Math.min(ROUNDS, 3); r++) runs.push(await contended(workers, r));

    console.log('| measure | median | rounds |');
    console.log('|---|---|---|');
    console.log(`| Redlock (3 nodes) acquire+release, cycles/s | ${median(ours).toFixed(0)} | ${ours.map((v) => v.toFixed(0)).join(', ')} |`);
    console.log(`| RedisLocker (1 node) acquire+release, cycles/s | ${median(one).toFixed(0)} | ${one.map((v) => v.toFixed(0)).join(', ')} |`);
    console.log(
      `| Redlock wake-on-release handoff, ms (n=${hand.length}) | ${quantile(hand, 0.5).toFixed(3)} | p90 ${quantile(hand, 0.9).toFixed(3)}, p99 ${quantile(hand, 0.99).toFixed(3)} |`,
    );
    const gaps = runs.map((r) => quantile(r.handoffMs, 0.5));
    console.log(
      `| Redlock contended handoff (${WORKERS} workers, 1 ms holds), median gap ms | ${median(gaps).toFixed(3)} | ${gaps.map((v) => v.toFixed(3)).join(', ')} |`,
    );
    console.log(`| Redlock contended acquisitions/s | ${median(runs.map((r) => r.perSecond)).toFixed(0)} | ${runs.map((r) => r.perSecond.toFixed(0)).join(', ')} |`);
    console.log(`| Redlock contended per-worker acquisitions (min..max) | | ${runs.map((r) => `${r.spread[0]}..${r.spread.at(-1)}`).join(', ')} |`);
    console.log(`| overlaps + fence regressions (must be 0) | ${runs.reduce((s, r) => s + r.bad, 0)} | |`);
    await Promise.all([redlock, other, single, ...workers].map((l) => l.close()));
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
    await Promise.all(servers.map((s) => s.stop()));
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
