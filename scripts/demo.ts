/**
 * npm run demo [-- --quick]
 *
 * Starts throwaway local servers (3 redis-servers, a 3-member etcd cluster) and, for each backend in
 * turn, has 8 worker processes take one lock around a shared counter, while things go wrong:
 *
 *   RedisLocker  one redis-server                 a holder is frozen (SIGSTOP) past its TTL
 *   Redlock      3 redis-servers, quorum 2        a node is killed mid-run (and restarted later),
 *                                                 then a holder is frozen past its TTL
 *   Sentinel     a master, 2 replicas, 3          SENTINEL FAILOVER mid-run: the clients follow
 *                sentinels (redis+sentinel://)    +switch-master to the new master
 *   Cluster      3 masters with a replica each    the lock's slot migrated live to another master,
 *                (RedisCluster)                   then that master replaced by CLUSTER FAILOVER
 *   EtcdLocker   3-member etcd cluster            the leader is killed mid-run (and restarted later),
 *                                                 then a holder is frozen past its TTL
 *
 * The counter is a fenced store: it refuses a read or write whose fence is lower than one it has seen,
 * so the frozen holder's late write is refused.
 *
 * Then a leader election scene, on the etcd cluster and on one redis-server: three service processes
 * campaign for one election with their names as values, each observing it, and an observer process
 * watches too. The leader does its leader work (a heartbeat with its term, to a fenced store) until it
 * is killed (SIGKILL); its supervisor restarts it and it campaigns again, at the back of the queue.
 * The next candidate leads once the dead leader's lease has run out, and every observer sees it.
 * At the end the last leader resigns and the observer sees that nobody leads.
 *
 * It prints, and writes to demo-out/summary.md: per-worker counts, handoff latency, the check that
 * no two holds overlapped; each election's terms, failover times, and the check that no two terms
 * overlapped, that terms only climbed and that every observer saw every change of leader in order.
 * demo-out/timeline.svg draws it all.
 *
 * --quick (CI): shorter phases and fewer kills, the same story, under a minute. --out DIR:
 * write elsewhere. --metrics PORT: serve every worker's wirelock/metrics on
 * http://127.0.0.1:PORT/metrics while it runs (0: a free port; see scripts/demo-metrics.ts).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { keySlot } from '../src/index.js';
import {
  startEtcdCluster,
  startRedisCluster,
  startRedisNodes,
  startRedisSentinel,
  type EtcdCluster,
  type RedisClusterServers,
  type RedisSentinel,
  type RedisServer,
} from '../src/testing/servers.js';
import { runElection } from './demo-election.js';
import { metricsHub } from './demo-metrics.js';
import { Electors, SERVICES } from './demo-election-processes.js';
import { electionMarkdown, electionTable, judgeElection, printElectionVerdict, type ElectionVerdict } from './demo-election-report.js';
import type { Backend, ElectionConfig, ScenarioConfig } from './demo-protocol.js';
import { judge, printVerdict, summaryMarkdown, table, type Verdict } from './demo-report.js';
import { runScenario, WorkerPool, type ScenarioControl } from './demo-scenario.js';
import { timelineSvg, type ElectionPanel, type Panel } from './demo-svg.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const quick = process.argv.includes('--quick');
/** --out DIR: where timeline.svg, summary.md and the counter files go (default demo-out/). */
const outFlag = process.argv.indexOf('--out');
const out = outFlag > 0 && process.argv[outFlag + 1] ? path.resolve(process.argv[outFlag + 1]!) : path.join(root, 'demo-out');
/** --metrics PORT: a scrape endpoint for the workers' metrics (undefined: none). */
const metricsFlag = process.argv.indexOf('--metrics');
const metricsPort = metricsFlag > 0 ? Number(process.argv[metricsFlag + 1]) : undefined;
if (metricsPort !== undefined && !(Number.isInteger(metricsPort) && metricsPort >= 0 && metricsPort < 65536)) {
  console.error(`demo: --metrics takes a port number (0 for a free one), got ${JSON.stringify(process.argv[metricsFlag + 1] ?? '')}`);
  process.exit(2);
}
const WORKERS = 8;
/**
 * Lock TTLs: short, so that a frozen holder's lease runs out quickly. etcd's is longer: its sessions
 * must outlast a leader election (about 1-2 s here, with keep-alives refused meanwhile).
 */
const REDIS_TTL_MS = 2000;
const ETCD_TTL_MS = 5000;
/** Phase lengths (ms): before the first fault, a server's downtime, between faults, after the last. */
const PHASE = quick ? { warm: 1500, down: 2600, between: 1000, tail: 1200 } : { warm: 8000, down: 10_000, between: 6000, tail: 6000 };
/**
 * The election scene: a short lease, so that a killed leader's lease runs out soon (etcd's minimum is 2 s);
 * each leader leads for leadMs, then is killed, `kills` times; the last one resigns after leadMs.
 */
const ELECTION_TTL_MS = 2000;
const ELECTION_BEAT_MS = 100;
const ELECTION = quick ? { kills: 1, leadMs: 1000 } : { kills: 3, leadMs: 1500 };

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

/** The lock's key in a scene (the counter file is named after the backend too). */
const keyOf = (backend: Backend): string => `demo-counter-${backend}`;
/** The Cluster scene's masters; nodes[MASTERS + i] is the replica of nodes[i] (one each). */
const MASTERS = 3;

function stages(redis: RedisServer[], etcd: EtcdCluster, sentinel: RedisSentinel, cluster: RedisClusterServers): Stage[] {
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
      name: 'Sentinel',
      title: 'RedisLocker on Redis Sentinel (a master, 2 replicas, 3 sentinels)',
      servers: `redis-servers :${sentinel.nodes.map((r) => r.port).join(', :')}, sentinels :${sentinel.sentinels.map((x) => x.port).join(', :')}`,
      backend: 'sentinel',
      urls: [sentinel.url],
      ttlMs: REDIS_TTL_MS,
      plannedMs: PHASE.warm + 2500 + PHASE.tail,
      async script(ctl) {
        await ctl.wait(PHASE.warm);
        await sentinel.settled();
        const before = await sentinel.master();
        ctl.mark('failover', 'SENTINEL FAILOVER', `SENTINEL FAILOVER ${sentinel.masterName}: the sentinels promote a replica of :${before.port}`);
        const after = await sentinel.failover();
        ctl.mark(
          'switched',
          `+switch-master :${after.port}`,
          `+switch-master: :${after.port} is the master now (was :${before.port}); the clients follow it, and a held lock the new master lacks is lost with 'failover'`,
        );
        await ctl.wait(PHASE.tail);
      },
    },
    {
      name: 'Cluster',
      title: `RedisLocker on a Redis Cluster (${MASTERS} masters, a replica each)`,
      servers: `cluster nodes :${cluster.nodes.map((x) => x.port).join(', :')}`,
      backend: 'cluster',
      urls: cluster.urls,
      ttlMs: REDIS_TTL_MS,
      plannedMs: PHASE.warm + 500 + PHASE.between + 1500 + PHASE.tail,
      async script(ctl) {
        await ctl.wait(PHASE.warm);
        // The lock's keys share the hash tag {key}: one slot holds them all.
        const slot = keySlot(`wirelock:{${keyOf('cluster')}}`);
        const from = await cluster.masterOf(slot);
        const i = from === cluster.nodes[0] ? 1 : 0;
        const to = cluster.nodes[i]!;
        ctl.mark('migrate', `slot ${slot} migrating`, `slot ${slot}, the lock's, migrating live from :${from.port} to :${to.port} (IMPORTING/MIGRATING, then MIGRATE key by key)`);
        const move = await cluster.moveSlot(slot, to, { keysPerBatch: 1, pauseBetweenBatchesMs: 50 });
        ctl.mark('moved', `slot ${slot} on :${to.port}`, `slot ${slot} is served by :${to.port}, every node agrees (${move.keys} keys moved); the clients follow MOVED`);
        await ctl.wait(PHASE.between);
        await cluster.settled();
        const replica = cluster.nodes[MASTERS + i]!;
        ctl.mark('failover', 'CLUSTER FAILOVER', `CLUSTER FAILOVER on :${replica.port}, the replica of :${to.port}, which now serves the lock's slot`);
        const f = await cluster.failover(replica);
        ctl.mark('switched', `:${f.to.port} serves slot ${slot}`, `every node agrees that :${f.to.port} serves slot ${slot} (:${f.from.port} is its replica); the clients follow MOVED and the slot map`);
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

interface ElectionScene {
  name: string;
  title: string;
  servers: string;
  config: ElectionConfig;
}

function electionScenes(redis: RedisServer[], etcd: EtcdCluster): ElectionScene[] {
  const base = { name: 'demo-election', ttlMs: ELECTION_TTL_MS, beatMs: ELECTION_BEAT_MS };
  return [
    {
      name: 'etcd',
      title: 'Leader election on the 3-member etcd cluster',
      servers: `etcd ${etcd.members.map((m) => m.name).join(', ')}`,
      config: { ...base, backend: 'etcd', urls: etcd.endpoints },
    },
    {
      name: 'Redis',
      title: 'Leader election on one redis-server',
      servers: `redis-server :${redis[0]!.port}`,
      config: { ...base, backend: 'redis', urls: [redis[0]!.url] },
    },
  ];
}

async function main(): Promise<void> {
  const started = performance.now();
  mkdirSync(out, { recursive: true });
  console.log(`wirelock demo${quick ? ' (quick)' : ''}: ${WORKERS} worker processes take turns on one lock around a shared counter,`);
  console.log(`for each backend, while servers die, masters fail over, a slot migrates and a holder freezes. Lock TTL ${REDIS_TTL_MS / 1000} s (etcd ${ETCD_TTL_MS / 1000} s).`);
  console.log(`Then ${SERVICES.length} services elect a leader on etcd and on Redis, and the leader is killed. Election lease ${ELECTION_TTL_MS / 1000} s.\n`);
  if (metricsPort !== undefined) {
    metricsHub.enable(); // before the fork: the children read it from their environment
    console.log(`metrics: ${await metricsHub.listen(metricsPort)} (every worker's wirelock/metrics, labelled by process)\n`);
  }
  // The workers take a while to start (TypeScript through tsx): start them alongside the servers,
  // the election's processes too (they wait, idle, for their scene).
  const pool = new WorkerPool(path.join(root, 'scripts/demo-worker.ts'), WORKERS);
  const electors = new Electors(path.join(root, 'scripts/demo-election-worker.ts'));
  const [redis, etcd, sentinel, cluster] = await Promise.all([
    startRedisNodes(3),
    startEtcdCluster(3),
    startRedisSentinel({ replicas: 2, sentinels: 3 }),
    startRedisCluster({ masters: MASTERS, replicasPerMaster: 1 }),
  ]);
  console.log(
    `servers: redis-server on :${redis.map((r) => r.port).join(', :')}; etcd cluster on ${etcd.endpoints.join(', ')}; ` +
      `Sentinel: redis-server :${sentinel.nodes.map((r) => r.port).join(', :')} watched by sentinels :${sentinel.sentinels.map((x) => x.port).join(', :')}; ` +
      `Redis Cluster on :${cluster.nodes.map((x) => x.port).join(', :')}\n`,
  );
  const verdicts: Verdict[] = [];
  const panels: Panel[] = [];
  const elections: ElectionVerdict[] = [];
  const electionPanels: ElectionPanel[] = [];
  try {
    for (const stage of stages(redis, etcd, sentinel, cluster)) {
      console.log(`${stage.title}`);
      const config: ScenarioConfig = { backend: stage.backend, urls: stage.urls, key: keyOf(stage.backend), ttlMs: stage.ttlMs, holdMs: 2, thinkMs: 2 };
      const result = await runScenario(pool, config, path.join(out, `counter-${stage.backend}.json`), stage.plannedMs, (ctl) => stage.script(ctl));
      const v = judge(stage.name, stage.servers, result, WORKERS);
      printVerdict(v);
      console.log();
      verdicts.push(v);
      panels.push({ title: `${stage.title}: ${v.holds} holds, fences ${v.firstFence}-${v.lastFence}, ${v.overlaps} overlaps`, holds: result.holds, events: result.events, durationMs: result.durationMs, workers: WORKERS });
    }
    for (const scene of electionScenes(redis, etcd)) {
      console.log(`${scene.title}`);
      const result = await runElection(electors, scene.config, path.join(out, `election-${scene.config.backend}.json`), ELECTION);
      const v = judgeElection(scene.name, scene.servers, result);
      printElectionVerdict(v);
      console.log();
      elections.push(v);
      const killed = result.failovers.length;
      electionPanels.push({
        title: `${scene.title}: ${v.terms.length} terms, ${killed} leader${killed === 1 ? '' : 's'} killed, ${v.overlaps.length} overlapping terms`,
        services: SERVICES,
        terms: result.terms,
        candidacies: result.candidacies,
        views: result.views,
        events: result.events,
        durationMs: result.durationMs,
      });
    }
  } finally {
    await Promise.all([pool.close(), electors.close()]);
    await Promise.all([...redis.map((r) => r.stop()), etcd.stop(), sentinel.stop(), cluster.stop()]);
    await metricsHub.close();
  }

  const elapsed = (performance.now() - started) / 1000;
  const intro = [
    `${quick ? 'Quick run' : 'Run'} of ${new Date().toISOString().slice(0, 19).replace('T', ' ')} UTC, ${elapsed.toFixed(0)} s in all: ` +
      `${WORKERS} worker processes per backend, lock TTL ${REDIS_TTL_MS / 1000} s (etcd ${ETCD_TTL_MS / 1000} s), 2 ms of work per hold; election lease ${ELECTION_TTL_MS / 1000} s; Node ${process.versions.node}.`,
    'Each hold reads the counter and writes it back + 1 through a store that refuses fences lower than one it has seen.',
    'A hold counts until its holder is done or its lease ends, whichever is first; the check is that no two such holds overlap.',
    `Elections: ${SERVICES.length} services and an observer process, lease ${ELECTION_TTL_MS / 1000} s, ${ELECTION.kills} leader${ELECTION.kills === 1 ? '' : 's'} killed (SIGKILL) per backend. ` +
      "A term counts until its leader resigned, or for a killed leader until its lease ended (nobody may lead before then); the check is that no two terms overlap.",
  ];
  const election = electionMarkdown(elections);
  writeFileSync(path.join(out, 'summary.md'), summaryMarkdown(verdicts, intro, election));
  writeFileSync(path.join(out, 'timeline.svg'), timelineSvg(panels, intro[0]!, electionPanels));
  for (const line of table(verdicts)) console.log(line);
  console.log();
  for (const line of electionTable(elections)) console.log(line);
  const ok = verdicts.every((v) => v.ok) && elections.every((v) => v.ok);
  console.log(
    `\n${ok ? 'OK' : 'FAILED'}: ${ok ? 'no two holds overlapped on any backend; every stale write was refused; one leader at a time in every election, and every change of leader was seen in order' : 'a check failed (see above)'}.`,
  );
  console.log(`wrote ${path.relative(process.cwd(), path.join(out, 'timeline.svg'))} and ${path.relative(process.cwd(), path.join(out, 'summary.md'))} (${elapsed.toFixed(1)} s)`);
  if (!ok) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
