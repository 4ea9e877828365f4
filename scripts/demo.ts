/**
 * npm run demo [-- --quick]
 *
 * Starts throwaway local servers (3 redis-servers, a 3-member etcd cluster) and, for each backend in
 * turn, has 8 worker processes take one lock around a shared counter, while things go wrong:
 *
 *   RedisLocker  one redis-server                 a holder is frozen (SIGSTOP) past its TTL
 *   Redlock      3 redis-servers, quorum 2        a node is killed mid-run (and restarted later),
 *                                                 then a holder is frozen past its TTL
 *   EtcdLocker   3-member etcd cluster            the leader is killed mid-run (and restarted later),
 *                                                 then a holder is frozen past its TTL
 *
 * The counter is a fenced store: it refuses a read or write whose fence is lower than one it has seen,
 * so the frozen holder's late write is refused. At the end: per-worker counts, handoff latency, the
 * check that no two holds overlapped, demo-out/timeline.svg and demo-out/summary.md.
 *
 * --quick (CI): shorter phases, the same story, well under a minute. --out DIR: write elsewhere.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEtcdCluster, startRedisNodes, type EtcdCluster, type RedisServer } from '../src/testing/servers.js';
import type { Backend, ScenarioConfig } from './demo-protocol.js';
import { judge, printVerdict, summaryMarkdown, table, type Verdict } from './demo-report.js';
import { runScenario, WorkerPool, type ScenarioControl } from './demo-scenario.js';
import { timelineSvg, type Panel } from './demo-svg.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const quick = process.argv.includes('--quick');
/** --out DIR: where timeline.svg, summary.md and the counter files go (default demo-out/). */
const outFlag = process.argv.indexOf('--out');
const out = outFlag > 0 && process.argv[outFlag + 1] ? path.resolve(process.argv[outFlag + 1]!) : path.join(root, 'demo-out');
const WORKERS = 8;
/**
 * Lock TTLs: short, so that a frozen holder's lease runs out quickly. etcd's is longer: its sessions
 * must outlast a leader election (about 1-2 s here, with keep-alives refused meanwhile).
 */
const REDIS_TTL_MS = 2000;
const ETCD_TTL_MS = 5000;
/** Phase lengths (ms): before the first fault, a server's downtime, between faults, after the last. */
const PHASE = quick ? { warm: 1500, down: 2600, between: 1000, tail: 1200 } : { warm: 8000, down: 10_000, between: 6000, tail: 6000 };

interface Stage {
  name: string;
  title: string;
  servers: string;
  backend: Backend;
  urls: string[];
  ttlMs: number;
  /** Planned length, for the progress bar. */
  plannedMs: number;
  script(ctl: ScenarioControl): Promise<void>;
}

function stages(redis: RedisServer[], etcd: EtcdCluster): Stage[] {
  const withKill = (ttl: number): number => PHASE.warm + PHASE.down + PHASE.between + ttl + 500 + PHASE.tail;
  return [
    {
      name: 'RedisLocker',
      title: 'RedisLocker on one redis-server',
      servers: `redis-server :${redis[0]!.port}`,
      backend: 'redis',
      urls: [redis[0]!.url],
      ttlMs: REDIS_TTL_MS,
      plannedMs: PHASE.warm + REDIS_TTL_MS + 500 + PHASE.tail,
      async script(ctl) {
        await ctl.wait(PHASE.warm);
        await ctl.pauseHolder(5, REDIS_TTL_MS);
        await ctl.wait(PHASE.tail);
      },
    },
    {
      name: 'Redlock',
      title: 'Redlock over 3 redis-servers (quorum 2)',
      servers: `redis-servers :${redis.map((r) => r.port).join(', :')}`,
      backend: 'redlock',
      urls: redis.map((r) => r.url),
      ttlMs: REDIS_TTL_MS,
      plannedMs: withKill(REDIS_TTL_MS),
      async script(ctl) {
        const node = redis[1]!;
        await ctl.wait(PHASE.warm);
        await node.kill();
        ctl.mark('kill', 'redis node 2 killed', `redis node 2 (:${node.port}) killed (SIGKILL); the lock carries on with 2 of 3 nodes`);
        // Down for longer than the TTL (antirez's "delayed restart"): it comes back empty, and must not
        // vote for a key whose earlier grant it has forgotten while that grant may still be live.
        await ctl.wait(Math.max(PHASE.down, REDIS_TTL_MS + 500));
        await node.restart();
        ctl.mark('restart', 'node 2 restarted', `redis node 2 restarted (empty, after more than one TTL) and votes again`);
        await ctl.wait(PHASE.between);
        await ctl.pauseHolder(2, REDIS_TTL_MS);
        await ctl.wait(PHASE.tail);
      },
    },
    {
      name: 'EtcdLocker',
      title: 'EtcdLocker on a 3-member etcd cluster',
      servers: `etcd ${etcd.members.map((m) => m.name).join(', ')}`,
      backend: 'etcd',
      urls: etcd.endpoints,
      ttlMs: ETCD_TTL_MS,
      plannedMs: withKill(ETCD_TTL_MS),
      async script(ctl) {
        await ctl.wait(PHASE.warm);
        const leader = await etcd.leader();
        await leader.kill();
        ctl.mark('kill', `leader ${leader.name} killed`, `etcd leader ${leader.name} killed (SIGKILL); the other two elect a new leader and the lock carries on`);
        await ctl.wait(PHASE.down);
        await leader.restart();
        ctl.mark('restart', `${leader.name} restarted`, `etcd member ${leader.name} restarted and rejoined as a follower`);
        await ctl.wait(PHASE.between);
        await ctl.pauseHolder(6, ETCD_TTL_MS);
        await ctl.wait(PHASE.tail);
      },
    },
  ];
}

async function main(): Promise<void> {
  const started = performance.now();
  mkdirSync(out, { recursive: true });
  console.log(`wirelock demo${quick ? ' (quick)' : ''}: ${WORKERS} worker processes take turns on one lock around a shared counter,`);
  console.log(`for each backend, while servers die and a holder freezes. Lock TTL ${REDIS_TTL_MS / 1000} s (etcd ${ETCD_TTL_MS / 1000} s).\n`);
  // The workers take a while to start (TypeScript through tsx): start them alongside the servers.
  const pool = new WorkerPool(path.join(root, 'scripts/demo-worker.ts'), WORKERS);
  const [redis, etcd] = await Promise.all([startRedisNodes(3), startEtcdCluster(3)]);
  console.log(`servers: redis-server on :${redis.map((r) => r.port).join(', :')}; etcd cluster on ${etcd.endpoints.join(', ')}\n`);
  const verdicts: Verdict[] = [];
  const panels: Panel[] = [];
  try {
    for (const stage of stages(redis, etcd)) {
      console.log(`${stage.title}`);
      const config: ScenarioConfig = { backend: stage.backend, urls: stage.urls, key: `demo-counter-${stage.backend}`, ttlMs: stage.ttlMs, holdMs: 2, thinkMs: 2 };
      const result = await runScenario(pool, config, path.join(out, `counter-${stage.backend}.json`), stage.plannedMs, (ctl) => stage.script(ctl));
      const v = judge(stage.name, stage.servers, result, WORKERS);
      printVerdict(v);
      console.log();
      verdicts.push(v);
      panels.push({ title: `${stage.title}: ${v.holds} holds, fences ${v.firstFence}-${v.lastFence}, ${v.overlaps} overlaps`, holds: result.holds, events: result.events, durationMs: result.durationMs, workers: WORKERS });
    }
  } finally {
    await pool.close();
    await Promise.all([...redis.map((r) => r.stop()), etcd.stop()]);
  }

  const elapsed = (performance.now() - started) / 1000;
  const intro = [
    `${quick ? 'Quick run' : 'Run'} of ${new Date().toISOString().slice(0, 19).replace('T', ' ')} UTC, ${elapsed.toFixed(0)} s in all: ` +
      `${WORKERS} worker processes per backend, lock TTL ${REDIS_TTL_MS / 1000} s (etcd ${ETCD_TTL_MS / 1000} s), 2 ms of work per hold, Node ${process.versions.node}.`,
    'Each hold reads the counter and writes it back + 1 through a store that refuses fences lower than one it has seen.',
    'A hold counts until its holder is done or its lease ends, whichever is first; the check is that no two such holds overlap.',
  ];
  writeFileSync(path.join(out, 'summary.md'), summaryMarkdown(verdicts, intro));
  writeFileSync(path.join(out, 'timeline.svg'), timelineSvg(panels, intro[0]!));
  for (const line of table(verdicts)) console.log(line);
  const ok = verdicts.every((v) => v.ok);
  console.log(`\n${ok ? 'OK' : 'FAILED'}: ${ok ? 'no two holds overlapped on any backend; every stale write was refused' : 'a check failed (see above)'}.`);
  console.log(`wrote ${path.relative(process.cwd(), path.join(out, 'timeline.svg'))} and ${path.relative(process.cwd(), path.join(out, 'summary.md'))} (${elapsed.toFixed(1)} s)`);
  if (!ok) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
