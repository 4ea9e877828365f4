/**
 * Faults under contention on a Redis Cluster: 8 worker processes (test/faults/cluster-worker.ts, each
 * its own RedisCluster client) run the permit loop on one hot RedisLocker key, while the parent hits
 * the master serving the key's slot, round after round: a live migration of the slot to another master
 * (resharding), a manual CLUSTER FAILOVER to the master's replica, or a kill -9 of the master (its
 * replica is promoted by the cluster). The holds are checked for moments with two holders (double
 * grants, each hold cut at its exit, its validUntil or its loss signal), repeated fences and fence
 * regressions; what is reported: those, redirects the clients followed, holders told of a loss, failed
 * acquires, and how long after each fault the next grant came.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { keySlot, RedisClient } from '../../../src/index.js';
import { checkPermits, type Hold } from '../../../src/testing/history.js';
import type { RedisClusterNode, RedisClusterServers } from '../../../src/testing/servers.js';
import { big, ms, sleep, type WorkerEvent } from '../../support/faults-workers.js';
import { report } from '../../support/faults-env.js';
import type { ClusterWorkerConfig } from '../cluster-worker.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const WORKER = path.join(root, 'test', 'faults', 'cluster-worker.ts');

/**
 * The parent's side of one cluster worker: JSON commands on its stdin, JSON events from its stdout.
 * It runs in a process group of its own, so stop() (or the process 'exit' hook) ends all of it.
 */
class ClusterWorker {
  readonly id: string;
  readonly events: WorkerEvent[] = [];
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  #stderr = '';
  #wake = new Set<() => void>();

  constructor(config: ClusterWorkerConfig) {
    this.id = config.id;
    this.child = spawn(process.execPath, ['--import', 'tsx', WORKER, JSON.stringify(config)], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let buffered = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.startsWith('{')) this.events.push(JSON.parse(line) as WorkerEvent);
      }
      for (const wake of [...this.#wake]) wake();
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      if (this.#stderr.length < 64 * 1024) this.#stderr += chunk.toString();
    });
    this.child.stdin!.on('error', () => {});
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    live.add(this);
    void this.exited.then(() => live.delete(this));
  }

  get stderr(): string {
    return this.#stderr;
  }

  all(type: string): WorkerEvent[] {
    return this.events.filter((e) => e.type === type);
  }

  send(command: Record<string, unknown>): void {
    this.child.stdin!.write(`${JSON.stringify(command)}\n`);
  }

  /** Waits (at most `timeoutMs`) for an event of `type` after the first `after` events. */
  async next(type: string, timeoutMs: number, after = 0): Promise<WorkerEvent> {
    const until = performance.now() + timeoutMs;
    for (;;) {
      const found = this.events.slice(after).find((e) => e.type === type);
      if (found) return found;
      const fatal = this.events.find((e) => e.type === 'fatal');
      if (fatal) throw new Error(`worker ${this.id} failed: ${String(fatal.message)}\n${this.#stderr.slice(-2000)}`);
      if (this.child.exitCode !== null || performance.now() > until) throw new Error(`worker ${this.id}: no "${type}" within ${timeoutMs} ms\n${this.#stderr.slice(-2000)}`);
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          this.#wake.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, 50);
        this.#wake.add(wake);
      });
    }
  }

  async request(command: Record<string, unknown>, answer: string, timeoutMs: number): Promise<WorkerEvent> {
    const after = this.events.length;
    this.send(command);
    return this.next(answer, timeoutMs, after);
  }

  signal(sig: NodeJS.Signals): void {
    try {
      process.kill(-this.child.pid!, sig);
    } catch {
      // already gone
    }
  }

  /** Asks it to exit; kills it after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.send({ op: 'exit' });
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

const live = new Set<ClusterWorker>();
process.on('exit', () => {
  for (const w of live) w.signal('SIGKILL');
});

/** Stops every cluster worker still running. For after() hooks. */
export async function stopClusterWorkers(): Promise<void> {
  await Promise.all([...live].map((w) => w.stop(3000)));
}

export interface ClusterEnv {
  cluster: RedisClusterServers;
  /** The plain Redis holding the fenced resource. */
  resourceUrl: string;
  /** Empties the resource before a scenario. */
  reset(): Promise<void>;
  /** Nodes this suite killed (the testing API has no "running" to ask). */
  killed: Set<RedisClusterNode>;
}

/** One fault: resolves with when it started and when it was over (CLOCK_MONOTONIC ns). */
type Fault = (round: number, slot: number) => Promise<{ started: bigint; done: bigint }>;

export interface ClusterRun {
  doubleGrants: number;
  repeatedFences: number;
  fenceRegressions: number;
  /** Grants after each fault whose fence was not above every fence granted before it. */
  fencesNotAbove: number;
  toldFailover: number;
  redirects: Map<string, number>;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const range = (xs: number[]): string => `median ${Math.round(median(xs))} ms, max ${Math.round(Math.max(...xs))} ms`;
const tally = (m: Map<string, number>): string => (m.size ? [...m].map(([k, v]) => `${v} ${k}`).join(', ') : 'none');

/** A hold as its holder could have believed in it: cut at its exit, its validUntil or its loss. */
function believed(w: ClusterWorker, e: WorkerEvent): Hold {
  const ends = [big(e, 'exit'), big(e, 'validUntil'), ...(e.lostAt === undefined ? [] : [big(e, 'lostAt')])];
  return { worker: w.id, requested: big(e, 'requested'), enter: big(e, 'enter'), exit: ends.reduce((a, b) => (b < a ? b : a)), fence: big(e, 'fence') };
}

/**
 * Runs `rounds` faults under 8 contenders on the lock `key` and reports what happened. Asserts what
 * must hold in every setting: every fault completed, the service came back after each (a grant within
 * 20 s), every failed acquire failed with a typed error (a WirelockError code) by its deadline, no
 * acquire stayed pending past its deadline, and no holder stayed inside past its validUntil.
 * The double grants and fence figures are returned for the caller to judge.
 */
export async function faultsUnderContention(
  env: ClusterEnv,
  key: string,
  opts: { rounds: number; minReplicas: number; ttlMs: number; what: string; fault: Fault },
): Promise<ClusterRun> {
  const waitTimeoutMs = 10_000;
  await env.reset();
  await env.cluster.settled(60_000);
  const slot = keySlot(`wirelock:{${key}}`);
  const ws = Array.from({ length: 8 }, (_, i) => new ClusterWorker({
    id: `${key}-${i + 1}`,
    seeds: env.cluster.urls.filter((_, j) => !env.killed.has(env.cluster.nodes[j]!)),
    resourceUrl: env.resourceUrl,
    clientOptions: { commandTimeoutMs: 1000, topologyRefreshMs: 1000 },
    lockerOptions: { minReplicas: opts.minReplicas, replicaTimeoutMs: 100 },
  }));
  const rounds: Array<{ started: bigint; done: bigint; fromStartMs: number; fromDoneMs: number; duringFault: number; tookMs: number }> = [];
  try {
    await Promise.all(ws.map((w) => w.next('ready', 20_000)));
    for (const w of ws) w.send({ op: 'permits', key, ttlMs: opts.ttlMs, waitTimeoutMs, holdMs: [5, 30], fenced: true });
    for (let i = 0; i < opts.rounds; i++) {
      await env.cluster.settled(60_000);
      await sleep(300); // contention under way on a settled cluster
      const { started, done } = await opts.fault(i, slot);
      const entries = (after: bigint): bigint[] => ws.flatMap((w) => w.all('entered').map((e) => big(e, 'enter'))).filter((t) => t > after);
      const until = performance.now() + 20_000;
      while (entries(done).length === 0 && performance.now() < until) await sleep(10);
      const firstAfter = (t: bigint): bigint | undefined => entries(t).reduce<bigint | undefined>((a, b) => (a === undefined || b < a ? b : a), undefined);
      const first = firstAfter(done);
      if (first === undefined) {
        const failed = ws.flatMap((w) => w.all('acquire-failed')).slice(-3).map((e) => JSON.stringify(e.error));
        const stderr = ws.map((w) => w.stderr).filter(Boolean).slice(0, 2);
        throw new Error(`no grant within 20 s of ${opts.what} ${i + 1}: last failed acquires ${failed.join(' | ')}; stderr ${stderr.join(' | ').slice(0, 1500)}`);
      }
      rounds.push({
        started, done, tookMs: ms(started, done),
        fromStartMs: ms(started, firstAfter(started)!), fromDoneMs: ms(done, first),
        duringFault: entries(started).filter((t) => t < done).length,
      });
    }
    await sleep(500);
    await Promise.all(ws.map((w) => w.request({ op: 'permits-stop' }, 'permits-stopped', 40_000)));
  } finally {
    await Promise.all(ws.map((w) => w.stop()));
  }

  const permits = ws.flatMap((w) => w.all('permit'));
  const holds = ws.flatMap((w) => w.all('permit').map((e) => believed(w, e)));
  const r = checkPermits(holds, 1);
  // Every grant after a fault must have a fence above every fence granted before the fault.
  const fencesNotAbove = rounds.reduce((n, rd) => {
    const before = holds.filter((h) => h.enter < rd.started).reduce((a, h) => (h.fence > a ? h.fence : a), 0n);
    return n + holds.filter((h) => h.enter > rd.done && h.fence <= before).length;
  }, 0);
  const reasons = new Map<string, number>();
  for (const e of permits) {
    const reason = (e.lost as { reason?: string } | undefined)?.reason;
    if (reason) reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  }
  const refused = permits.filter((e) => (e.begin as { ok?: boolean } | undefined)?.ok === false || (e.write as { ok?: boolean } | undefined)?.ok === false).length;
  const failed = ws.flatMap((w) => w.all('acquire-failed'));
  const failedBy = new Map<string, number>();
  for (const e of failed) {
    const err = e.error as { name?: string; code?: string };
    failedBy.set(`${err.name}(${err.code})`, (failedBy.get(`${err.name}(${err.code})`) ?? 0) + 1);
  }
  const redirects = new Map<string, number>();
  for (const e of ws.flatMap((w) => w.all('redirect'))) redirects.set(String(e.kind), (redirects.get(String(e.kind)) ?? 0) + 1);
  const stuck = ws.flatMap((w) => w.all('stuck'));
  const late = Math.max(0, ...permits.map((e) => ms(big(e, 'validUntil'), [big(e, 'exit'), ...(e.lostAt === undefined ? [] : [big(e, 'lostAt')])].reduce((a, b) => (b < a ? b : a)))));
  const nearFault = r.excess.map((x) => rounds.filter((rd) => rd.started <= x.at).length);
  const overdue = failed.filter((e) => ms(big(e, 'requested'), big(e, 'at')) > waitTimeoutMs + 500);
  const untyped = failed.filter((e) => typeof (e.error as { code?: unknown }).code !== 'string');

  report(
    `${opts.what} x${rounds.length} under 8 contenders on slot ${slot} (TTL ${opts.ttlMs} ms, minReplicas ${opts.minReplicas}); ` +
      `each took ${Math.round(Math.min(...rounds.map((x) => x.tookMs)))}-${Math.round(Math.max(...rounds.map((x) => x.tookMs)))} ms; ` +
      `grants while it ran: ${rounds.map((x) => x.duringFault).join(', ')}; ` +
      `first grant after it began ${range(rounds.map((x) => x.fromStartMs))}, after it was over ${range(rounds.map((x) => x.fromDoneMs))}; ` +
      `${holds.length} holds; DOUBLE GRANTS ${r.excess.length}${r.excess.length ? ` (after rounds ${nearFault.join(', ')})` : ''}, ` +
      `repeated fences ${r.repeatedFences.length}, fence regressions ${r.fenceRegressions.length}, grants after a fault with a fence not above all before it ${fencesNotAbove}; ` +
      `fenced accesses refused ${refused}; holders told of a loss: ${tally(reasons)}; failed acquires: ${tally(failedBy)}; ` +
      `redirects followed: ${tally(redirects)}; acquires pending past their deadline ${stuck.length}; longest inside past validUntil ${late.toFixed(1)} ms`,
  );
  report(`per round (ms): ${rounds.map((x, i) => `#${i + 1} took ${Math.round(x.tookMs)}, first grant +${Math.round(x.fromStartMs)} from start / +${Math.round(x.fromDoneMs)} from end`).join('; ')}`);
  expect(rounds.length).to.equal(opts.rounds);
  expect(stuck.map((e) => JSON.stringify(e)), 'acquires still pending a second past their deadline').to.deep.equal([]);
  expect(overdue.map((e) => JSON.stringify(e.error)), `failed acquires that ended past their ${waitTimeoutMs} ms deadline`).to.deep.equal([]);
  expect(untyped.map((e) => JSON.stringify(e.error)), 'failed acquires without a WirelockError code').to.deep.equal([]);
  expect(late, 'ms a holder stayed inside past its validUntil').to.be.below(500);
  return {
    doubleGrants: r.excess.length, repeatedFences: r.repeatedFences.length, fenceRegressions: r.fenceRegressions.length,
    fencesNotAbove, toldFailover: reasons.get('failover') ?? 0, redirects,
  };
}

/** The running replica of `master`, if it has one (asked live with ROLE). */
export async function replicaOf(env: ClusterEnv, master: RedisClusterNode): Promise<RedisClusterNode | undefined> {
  for (const n of env.cluster.nodes) {
    if (n === master || env.killed.has(n)) continue;
    const c = await RedisClient.connect(n.url);
    try {
      const role = (await c.send(['ROLE'])) as unknown[];
      if (String(role[0]) === 'slave' && Number(role[2]) === master.port) return n;
    } finally {
      await c.close();
    }
  }
  return undefined;
}

/** The masters now: every node not killed that says it is one (asked live with ROLE). */
export async function masters(env: ClusterEnv): Promise<RedisClusterNode[]> {
  const out: RedisClusterNode[] = [];
  for (const n of env.cluster.nodes) {
    if (env.killed.has(n)) continue;
    if ((await n.role()) === 'master') out.push(n);
  }
  return out;
}

/** Each live node's CLUSTER NODES, cluster_state and replication link, for a failure message. */
export async function clusterState(env: ClusterEnv): Promise<string> {
  const out: string[] = [];
  for (const n of env.cluster.nodes) {
    if (env.killed.has(n)) continue;
    const c = await RedisClient.connect(n.url);
    try {
      const [info, replication, nodes] = await Promise.all([c.send(['CLUSTER', 'INFO']), c.send(['INFO', 'replication']), c.send(['CLUSTER', 'NODES'])]);
      const state = /cluster_state:(\w+)/.exec(String(info))?.[1];
      const link = /master_link_status:(\w+)/.exec(String(replication))?.[1] ?? '-';
      out.push(`-- ${n.port} (${n.id.slice(0, 8)}) state ${state} link ${link}\n${String(nodes).trim()}`);
    } finally {
      await c.close();
    }
  }
  return out.join('\n');
}

/**
 * CLUSTER FAILOVER on `replica` until every node agrees that it serves `slot`. A replica asked to
 * fail over can say 'master' for a few ms and then be a replica again (seen on Redis 7.0 under load;
 * the testing helper's failover() took that as done until 2026-12-03 and then waited out its
 * timeout). This one counts those flickers, which failover() does not report.
 * Returns how many times CLUSTER FAILOVER was sent and how often the replica said 'master' and took
 * it back.
 */
export async function failoverTo(env: ClusterEnv, replica: RedisClusterNode, slot: number, timeoutMs = 30_000): Promise<{ asked: number; flickers: number }> {
  const deadline = performance.now() + timeoutMs;
  let asked = 0;
  let flickers = 0;
  const c = await RedisClient.connect(replica.url);
  try {
    while (performance.now() < deadline) {
      await c.send(['CLUSTER', 'FAILOVER']).catch(() => {}); // "already a master" after a late success: checked below
      asked++;
      let wasMaster = false;
      // A manual failover that does not finish in 5 s is dropped by the replica (CLUSTER_MF_TIMEOUT).
      for (const at = performance.now(); performance.now() - at < 6000; await sleep(20)) {
        const master = String(((await c.send(['ROLE'])) as unknown[])[0]) === 'master';
        if (wasMaster && !master) flickers++;
        wasMaster = master;
        if (!master) continue;
        await sleep(300);
        if (String(((await c.send(['ROLE'])) as unknown[])[0]) !== 'master') {
          flickers++;
          wasMaster = false;
          continue;
        }
        await env.cluster.settled(Math.max(1000, deadline - performance.now()));
        if ((await env.cluster.masterOf(slot)) === replica) return { asked, flickers };
      }
    }
  } finally {
    await c.close();
  }
  throw new Error(`127.0.0.1:${replica.port} did not take over slot ${slot} within ${timeoutMs} ms (CLUSTER FAILOVER sent ${asked} times, ${flickers} flickers)\n${await clusterState(env)}`);
}
