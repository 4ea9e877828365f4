/**
 * A throwaway Redis Cluster: `masters` masters with `replicasPerMaster` replicas each, every node its own
 * redis-server on a free loopback port (its cluster bus on port + 10000) in its own temp dir, joined by
 * `redis-cli --cluster create`. moveSlot() migrates a slot live, key batch by key batch, the way
 * `redis-cli --cluster reshard` does; failover() runs CLUSTER FAILOVER on a replica.
 *
 *   const cluster = await startRedisCluster({ replicasPerMaster: 1 });
 *   await cluster.moveSlot(keySlot('{job}'), 1);        // now served by nodes[1]
 *   await cluster.failover();                           // nodes[0]'s replica is its master now
 *   await cluster.stop();
 *
 * Every wait ends when all nodes agree: the same slot -> master (and replicas) view from each running,
 * unpaused node's CLUSTER SHARDS, every node in it online, cluster_state:ok and every replica's link to
 * its master up.
 * The password is written to redis.conf (mode 0600) and given to redis-cli as REDISCLI_AUTH, so it is in
 * no process's argv; every error a launch or the join throws is scrubbed of it.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { RedisClient } from '../resp/client.js';
import type { RespArg } from '../resp/encoder.js';
import { outOfRange } from '../errors.js';
import type { RedisServerOptions } from './servers.js';
import { findBinary, freePort, launch, removeDir, tempDir, terminate, type Launched, until as pollUntil } from './process.js';

/** Options for {@link startRedisCluster}. */
export interface RedisClusterServersOptions {
  /**
   * How many masters; the 16384 slots are split evenly among them. `redis-cli --cluster create`
   * needs at least 3 (fewer is a RangeError).
   * @defaultValue `3`
   */
  masters?: number;
  /**
   * How many replicas each master gets.
   * @defaultValue `0`
   */
  replicasPerMaster?: number;
  /**
   * requirepass and masterauth on every node (and MIGRATE's AUTH). It never appears in an error.
   * @defaultValue none: no password
   */
  password?: string;
  /**
   * `cluster-node-timeout`, in ms: how long a node may be unreachable before it counts as failing,
   * which sets how soon a killed or paused master is failed over.
   * @defaultValue `2000`
   */
  clusterNodeTimeoutMs?: number;
  /**
   * TLS only, everywhere: every node serves TLS on its port (no plain port), and the cluster bus,
   * replication and MIGRATE run over TLS too (`tls-cluster`, `tls-replication`). `url`/`urls` become
   * `rediss://`; a client needs the CA (`tls: { ca }`). Client certificates are not asked for.
   * @defaultValue none: plain TCP
   */
  tls?: Pick<NonNullable<RedisServerOptions['tls']>, 'certFile' | 'keyFile' | 'caFile'>;
  /** Extra redis-server arguments for every node, after the generated redis.conf. */
  args?: string[];
  /**
   * How long, in ms, to wait for the nodes to start, join and agree on the slot map.
   * @defaultValue `30000`
   */
  startTimeoutMs?: number;
}

/** One redis-server of a {@link RedisClusterServers}. */
export interface RedisClusterNode {
  /** Always `'127.0.0.1'`. */
  readonly host: string;
  /** Its client port. */
  readonly port: number;
  /** Its cluster bus port: always port + 10000. */
  readonly busPort: number;
  /** `redis://[:password@]127.0.0.1:port` (`rediss://` with `tls`). */
  readonly url: string;
  /** Its node ID (CLUSTER MYID), the same for its whole life. */
  readonly id: string;
  /** Its process ID. */
  readonly pid: number;
  /** Its temp dir (redis.conf and its cluster config file nodes.conf), removed by stop(). */
  readonly dir: string;
  /** What it is now, asked live with ROLE on each call (a failover changes it). */
  role(): Promise<'master' | 'replica'>;
  /** SIGSTOP: it accepts connections and answers nothing; waits for agreement leave it out meanwhile. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** Sends `signal` (one that ends it) and resolves once it has exited; waits for agreement leave it out. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Graceful stop (SIGTERM) and temp dir removal. Idempotent. */
  stop(): Promise<void>;
}

/** Options for {@link RedisClusterServers.moveSlot}. */
export interface MoveSlotOptions {
  /**
   * How many keys one CLUSTER GETKEYSINSLOT + MIGRATE moves.
   * @defaultValue `10` (as redis-cli's `--cluster-pipeline`)
   */
  keysPerBatch?: number;
  /**
   * A pause, in ms, before each batch after the first: the slot stays half moved meanwhile, so a test
   * sees the source answer -ASK for a moved key and -TRYAGAIN for a multi-key command that spans both.
   * @defaultValue `0`
   */
  pauseBetweenBatchesMs?: number;
  /**
   * How long, in ms, the whole move may take, the wait for agreement included.
   * @defaultValue `30000`
   */
  timeoutMs?: number;
}

/** What {@link RedisClusterServers.moveSlot} did. */
export interface SlotMove {
  /** The master that served the slot before. */
  from: RedisClusterNode;
  /** The master that serves it now. */
  to: RedisClusterNode;
  /** How many keys MIGRATE moved. */
  keys: number;
}

/** Options for {@link RedisClusterServers.failover}. */
export interface ClusterFailoverOptions {
  /**
   * CLUSTER FAILOVER's option: none (the master pauses its clients until the replica has caught up, no
   * write is lost), `'FORCE'` (without the master's help, e.g. when it is down) or `'TAKEOVER'` (without
   * the other masters' votes either).
   * @defaultValue none
   */
  mode?: 'FORCE' | 'TAKEOVER';
  /**
   * How long, in ms, to wait for the failover and for every node to agree on it.
   * @defaultValue `30000`
   */
  timeoutMs?: number;
}

/** What {@link RedisClusterServers.failover} did. */
export interface ClusterFailover {
  /** The master before: a replica of `to` now (unless it is down). */
  from: RedisClusterNode;
  /** The replica that took over its slots. */
  to: RedisClusterNode;
}

/** A running Redis Cluster that {@link startRedisCluster} started. */
export interface RedisClusterServers {
  /** `redis://[:password@]127.0.0.1:port` (`rediss://` with `tls`) of the first master: a seed for a cluster client. */
  readonly url: string;
  /** One URL per node, in the order of {@link RedisClusterServers.nodes}. */
  readonly urls: string[];
  /**
   * The masters in creation order (nodes[i] got the i-th share of the slots), then the replicas, those of
   * nodes[0] first. The order is fixed at start; a failover changes roles, not this order.
   */
  readonly nodes: RedisClusterNode[];
  /** The node that every node agrees serves `slot` now. */
  masterOf(slot: number): Promise<RedisClusterNode>;
  /**
   * Migrates `slot` live to the master `to` (a node or its index in nodes): CLUSTER SETSLOT IMPORTING on
   * the target and MIGRATING on the source, then CLUSTER GETKEYSINSLOT + MIGRATE batch by batch, then
   * CLUSTER SETSLOT NODE on the target, the source and every other master. Resolves once every node
   * agrees that `to` serves it.
   */
  moveSlot(slot: number, to: RedisClusterNode | number, opts?: MoveSlotOptions): Promise<SlotMove>;
  /**
   * CLUSTER FAILOVER on `replica` (a node or its index in nodes; by default the first replica, in nodes
   * order, among nodes[0] and its replicas at start: so two calls swap back). Resolves once every node
   * agrees that it serves its old master's slots and the old master (if running) is its replica.
   */
  failover(replica?: RedisClusterNode | number, opts?: ClusterFailoverOptions): Promise<ClusterFailover>;
  /**
   * Resolves once every running, unpaused node says cluster_state:ok, they all report (CLUSTER SHARDS) the
   * same slot -> master and replicas view covering all 16384 slots with every node in it online (so
   * CLUSTER SLOTS lists every replica too), and every replica's link to its master is up. Paused and
   * exited nodes are not asked; an exited one must be failed (left out) in every view, so after a kill
   * this waits for the others to mark it FAIL (about 2 × clusterNodeTimeoutMs), and for a master without
   * a replica it times out: its slots are lost, and the others say cluster_state:fail.
   * @param timeoutMs how long to wait (default 30000)
   */
  settled(timeoutMs?: number): Promise<void>;
  /** Stops every node and removes their temp dirs. Idempotent. */
  stop(): Promise<void>;
}

const SLOTS = 16384;
const BUS_OFFSET = 10_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const text = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString() : String(v));

/** Ports (client and bus) that a node of this module uses or is being started on: parallel starts must not pick the same. */
const claimed = new Set<number>();

/** Whether `port` can be bound on 127.0.0.1 right now. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A free client port whose bus port (+10000, so at most 55535) is free too; both claimed. */
async function pickPort(): Promise<number> {
  for (let tries = 0; tries < 100; tries++) {
    const port = await freePort();
    const bus = port + BUS_OFFSET;
    if (bus > 65_535 || claimed.has(port) || claimed.has(bus) || !(await isFree(bus))) continue;
    if (claimed.has(port) || claimed.has(bus)) continue; // a sibling took it while we checked
    claimed.add(port).add(bus);
    return port;
  }
  throw new Error('startRedisCluster: no free port p with p + 10000 free after 100 tries');
}

/** A redis.conf value in double quotes, so spaces, quotes and any byte survive its parser (sdssplitargs: \xHH). */
function confQuote(value: string): string {
  let out = '"';
  for (const byte of Buffer.from(value, 'utf8')) {
    const plain = byte >= 0x20 && byte < 0x7f && byte !== 0x22 && byte !== 0x5c;
    out += plain ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`;
  }
  return `${out}"`;
}

/** How redis-server quotes a command-line argument into the config line it echoes on an error (sdscatrepr). */
function argvQuote(value: string): string {
  const named: Record<number, string> = { 0x5c: '\\\\', 0x22: '\\"', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t', 0x07: '\\a', 0x08: '\\b' };
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    out += named[byte] ?? (byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`);
  }
  return out;
}

/**
 * `err`, or a plain Error with every spelling of the password replaced by `***`: as given, as quoted in
 * redis.conf, as redis-server echoes a bad command-line argument, and as in a URL.
 */
function scrub(err: unknown, password: string | undefined): unknown {
  if (!password) return err;
  const forms = [password, confQuote(password).slice(1, -1), argvQuote(password), encodeURIComponent(password)];
  const message = err instanceof Error ? err.message : String(err);
  if (!forms.some((f) => message.includes(f) || (err instanceof Error && err.stack?.includes(f)))) return err;
  return new Error(forms.reduce((m, f) => m.split(f).join('***'), message));
}

/** Polls `check` until it returns a value (see process.ts); errors name startRedisCluster. */
function until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  return pollUntil('startRedisCluster', what, timeoutMs, check);
}

/** One slot range as a node's CLUSTER SHARDS reports it, by node ID. */
interface SlotRange {
  start: number;
  end: number;
  master: string;
  replicas: string[];
}

/** What all nodes must agree on: the ranges in slot order, their canonical text, and whether every node listed is healthy. */
interface ClusterView {
  ranges: SlotRange[];
  key: string;
  online: boolean;
}

/**
 * A node's CLUSTER SHARDS reply as a view. SHARDS, not SLOTS: Redis 7.0's CLUSTER SLOTS leaves out a
 * replica whose replication offset is still 0 (health `loading`, e.g. on a fresh cluster with no writes
 * yet), so it cannot tell "no replica" from "a replica not synced yet". Failed nodes are left out.
 */
function parseShards(reply: unknown): ClusterView {
  const ranges: SlotRange[] = [];
  let online = true;
  for (const shard of reply as unknown[][]) {
    const f = pairs(shard);
    const slots = (f.get('slots') as unknown[]).map(Number);
    const nodes = (f.get('nodes') as unknown[][]).map(pairs).map((n) => ({ id: text(n.get('id')), role: text(n.get('role')), health: text(n.get('health')) }))
      .filter((n) => n.health !== 'fail');
    if (nodes.some((n) => n.health !== 'online')) online = false;
    const master = nodes.find((n) => n.role === 'master')?.id ?? '?';
    const replicas = nodes.filter((n) => n.role !== 'master').map((n) => n.id).sort();
    for (let i = 0; i + 1 < slots.length; i += 2) ranges.push({ start: slots[i]!, end: slots[i + 1]!, master, replicas });
  }
  ranges.sort((a, b) => a.start - b.start);
  return { ranges, online, key: ranges.map((r) => `${r.start}-${r.end}=${r.master}[${r.replicas.join(',')}]`).join(' ') };
}

/** A flat RESP2 map reply ([k1, v1, k2, v2, …]) as a Map. */
function pairs(reply: unknown): Map<string, unknown> {
  const a = reply as unknown[];
  const out = new Map<string, unknown>();
  for (let i = 0; i + 1 < a.length; i += 2) out.set(text(a[i]), a[i + 1]);
  return out;
}

const ownerIn = (view: ClusterView, slot: number): string | undefined =>
  view.ranges.find((r) => r.start <= slot && slot <= r.end)?.master;

/** How every node is configured, and what its URL carries. */
interface NodeConfig {
  server: string;
  password: string | undefined;
  /** The TLS files, and the CA's PEM for our own connections to the nodes. */
  tls: (NonNullable<RedisClusterServersOptions['tls']> & { ca: Buffer }) | undefined;
  clusterNodeTimeoutMs: number;
  args: string[];
  clients: Set<RedisClient>;
}

/** A node's process and the state the waits need (running, paused); what callers see is RedisClusterNode. */
class Member implements RedisClusterNode {
  readonly host = '127.0.0.1';
  id = '';
  readonly #launched: Launched;
  readonly #config: NodeConfig;
  #paused = false;
  #stopped = false;

  private constructor(readonly port: number, readonly dir: string, launched: Launched, config: NodeConfig) {
    this.#launched = launched;
    this.#config = config;
  }

  /** Starts a node in a fresh temp dir, on another port if its port (or bus port) was taken meanwhile. */
  static async start(config: NodeConfig, timeoutMs: () => number): Promise<Member> {
    const { password, tls } = config;
    const dir = tempDir('cluster');
    let lastError: unknown;
    for (let tries = 0; tries < 8; tries++) {
      const port = await pickPort();
      const lines = [
        // With TLS the port is the TLS port, and the bus port (port + 10000) is derived from it.
        ...(tls
          ? ['port 0', `tls-port ${port}`, `tls-cert-file ${confQuote(tls.certFile)}`, `tls-key-file ${confQuote(tls.keyFile)}`,
            `tls-ca-cert-file ${confQuote(tls.caFile)}`, 'tls-auth-clients no', 'tls-cluster yes', 'tls-replication yes']
          : [`port ${port}`]),
        'bind 127.0.0.1', `dir ${confQuote(dir)}`, 'logfile ""', 'save ""', 'appendonly no',
        'cluster-enabled yes', `cluster-config-file ${confQuote(path.join(dir, 'nodes.conf'))}`,
        `cluster-node-timeout ${config.clusterNodeTimeoutMs}`,
        // Persistence is off, so replicas sync diskless: without the default 5 s wait, a (re)sync is quick.
        'repl-diskless-sync-delay 0',
        // A replica counts as `loading` (and CLUSTER SLOTS hides it) while its offset is 0; a fresh master's
        // offset grows first with its PING to the replicas, every repl-ping-replica-period (10 s by default).
        'repl-ping-replica-period 1',
        ...(password === undefined ? [] : [`requirepass ${confQuote(password)}`, `masterauth ${confQuote(password)}`]),
      ];
      const conf = path.join(dir, 'redis.conf');
      writeFileSync(conf, `${lines.join('\n')}\n`, { mode: 0o600 });
      let member: Member;
      try {
        member = new Member(port, dir, await launch(config.server, [conf, ...config.args], /Ready to accept connections/, timeoutMs()), config);
      } catch (err) {
        lastError = err;
        claimed.delete(port);
        claimed.delete(port + BUS_OFFSET);
        if (!/Address already in use/i.test(String(err))) break;
        continue;
      }
      try {
        member.id = text(await member.ask(['CLUSTER', 'MYID']));
        return member;
      } catch (err) {
        await member.stop();
        throw err;
      }
    }
    removeDir(dir);
    throw scrub(lastError, password);
  }

  get url(): string {
    const { password } = this.#config;
    return `${this.#config.tls ? 'rediss' : 'redis'}://${password === undefined ? '' : `:${encodeURIComponent(password)}@`}${this.host}:${this.port}`;
  }
  get busPort(): number {
    return this.port + BUS_OFFSET;
  }
  get pid(): number {
    return this.#launched.child.pid!;
  }
  /** Its process has not exited (it may be paused). */
  get running(): boolean {
    return this.#launched.child.exitCode === null && this.#launched.child.signalCode === null;
  }
  /** Up and answering: the nodes whose views must agree. */
  get reachable(): boolean {
    return this.running && !this.#paused;
  }

  /** Commands (pipelined when sent together) on a short-lived connection: a paused node's timeout ends only it. */
  async with<T>(use: (c: RedisClient) => Promise<T>, timeoutMs = 2000): Promise<T> {
    const { password, clients, tls } = this.#config;
    const c = await RedisClient.connect({ host: this.host, port: this.port, password, tls: tls && { ca: tls.ca }, returnBuffers: true, connectTimeoutMs: 1000, commandTimeoutMs: timeoutMs, reconnect: () => false });
    clients.add(c);
    try {
      return await use(c);
    } finally {
      clients.delete(c);
      await c.close();
    }
  }
  ask(args: RespArg[], timeoutMs?: number): Promise<unknown> {
    return this.with((c) => c.send(args), timeoutMs);
  }

  async role(): Promise<'master' | 'replica'> {
    return text(((await this.ask(['ROLE'])) as unknown[])[0]) === 'master' ? 'master' : 'replica';
  }
  pause(): void {
    this.#paused = true;
    this.#launched.child.kill('SIGSTOP');
  }
  resume(): void {
    this.#launched.child.kill('SIGCONT');
    this.#paused = false;
  }
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    this.#launched.child.kill(signal);
    await this.#launched.exited;
  }
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await terminate(this.#launched);
    removeDir(this.dir);
    claimed.delete(this.port);
    claimed.delete(this.busPort);
  }
}

/**
 * Starts a Redis Cluster on free loopback ports, every node in parallel, joins it with
 * `redis-cli --cluster create … --cluster-replicas N --cluster-yes` and resolves once every node says
 * cluster_state:ok, they agree on the slot map and every replica is in sync. Throws an Error naming the
 * Debian package if redis-server or redis-cli is missing, and a RangeError for fewer than 3 masters.
 * Every node is killed, and its dir removed, when the process exits, even without stop().
 */
export async function startRedisCluster(opts: RedisClusterServersOptions = {}): Promise<RedisClusterServers> {
  const { masters = 3, replicasPerMaster = 0, clusterNodeTimeoutMs = 2000, startTimeoutMs = 30_000 } = opts;
  if (!Number.isInteger(masters) || masters < 3) throw outOfRange(`masters must be an integer >= 3 (redis-cli --cluster create needs 3), got ${masters}`);
  if (!Number.isInteger(replicasPerMaster) || replicasPerMaster < 0) throw outOfRange(`replicasPerMaster must be an integer >= 0, got ${replicasPerMaster}`);
  if (!Number.isInteger(clusterNodeTimeoutMs) || clusterNodeTimeoutMs < 1) throw outOfRange(`clusterNodeTimeoutMs must be an integer >= 1, got ${clusterNodeTimeoutMs}`);
  const config: NodeConfig = {
    server: findBinary('redis-server', 'redis-server'),
    password: opts.password,
    tls: opts.tls && { ...opts.tls, ca: readFileSync(opts.tls.caFile) },
    clusterNodeTimeoutMs,
    args: opts.args ?? [],
    clients: new Set(),
  };
  const cli = findBinary('redis-cli', 'redis-tools');
  return Cluster.start(config, { masters, replicasPerMaster, cli, timeoutMs: startTimeoutMs });
}

const leftOf = (deadline: number) => (): number => Math.max(1, Math.ceil(deadline - performance.now()));

class Cluster implements RedisClusterServers {
  readonly nodes: Member[] = [];
  readonly #config: NodeConfig;
  /** Who started with nodes[0]: the default failover() target is among them. */
  readonly #firstShard = new Set<Member>();
  #stopped = false;

  constructor(config: NodeConfig) {
    this.#config = config;
  }

  get url(): string {
    return this.nodes[0]!.url;
  }
  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  /** Starts the nodes, has redis-cli join them, and orders `nodes` by what it made of each; stops them all on a failure. */
  static async start(config: NodeConfig, how: { masters: number; replicasPerMaster: number; cli: string; timeoutMs: number }): Promise<Cluster> {
    const cluster = new Cluster(config);
    try {
      await cluster.#join(how.masters, how.replicasPerMaster, how.cli, leftOf(performance.now() + how.timeoutMs));
      return cluster;
    } catch (err) {
      await cluster.stop();
      throw scrub(err, config.password);
    }
  }

  async #join(masters: number, replicasPerMaster: number, cli: string, left: () => number): Promise<void> {
    const started = await Promise.allSettled(Array.from({ length: masters * (replicasPerMaster + 1) }, () => Member.start(this.#config, left)));
    for (const s of started) if (s.status === 'fulfilled') this.nodes.push(s.value);
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;

    const { password } = this.#config;
    const created = await new Promise<string>((resolve, reject) => {
      const { tls } = this.#config;
      const args = [
        ...(tls ? ['--tls', '--cacert', tls.caFile] : []),
        '--cluster', 'create', ...this.nodes.map((m) => `${m.host}:${m.port}`), '--cluster-replicas', String(replicasPerMaster), '--cluster-yes',
      ];
      // REDISCLI_AUTH, not -a: the password stays out of argv (ps) and redis-cli prints no warning about it.
      const env = password === undefined ? process.env : { ...process.env, REDISCLI_AUTH: password };
      execFile(cli, args, { env, timeout: left(), maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) =>
        err ? reject(new Error(`redis-cli --cluster create failed (${err.code ?? err.signal}):\n${`${stdout}${stderr}`.slice(-4000)}`)) : resolve(stdout));
    });
    if (!/All 16384 slots covered/.test(created)) throw new Error(`redis-cli --cluster create did not cover all slots:\n${created.slice(-4000)}`);

    // redis-cli picks which nodes are masters and which replica follows which: read what it did.
    const view = await this.#agree(`all ${this.nodes.length} nodes agreeing on the new cluster`, left(),
      (v) => v.ranges.length >= masters && v.ranges.every((r) => r.replicas.length === replicasPerMaster));
    const order = [...new Set(view.ranges.map((r) => r.master))].map((id) => this.#byId(id));
    const rank = (m: Member): number => this.nodes.indexOf(m);
    const replicas = order.flatMap((m) => view.ranges.find((r) => r.master === m.id)!.replicas.map((id) => this.#byId(id)).sort((a, b) => rank(a) - rank(b)));
    const first = view.ranges[0]!;
    for (const id of [first.master, ...first.replicas]) this.#firstShard.add(this.#byId(id));
    this.nodes.splice(0, this.nodes.length, ...order, ...replicas);
  }

  async masterOf(slot: number): Promise<RedisClusterNode> {
    checkSlot(slot);
    return this.#byId(ownerIn(await this.#agree('all nodes agreeing on the slot map', 30_000), slot)!);
  }

  async settled(timeoutMs = 30_000): Promise<void> {
    await this.#agree('all nodes agreeing on the slot map', timeoutMs);
  }

  async moveSlot(slot: number, to: RedisClusterNode | number, opts: MoveSlotOptions = {}): Promise<SlotMove> {
    checkSlot(slot);
    const dst = this.#nodeAt(to, 'moveSlot: to');
    const { keysPerBatch = 10, pauseBetweenBatchesMs = 0, timeoutMs = 30_000 } = opts;
    if (!Number.isInteger(keysPerBatch) || keysPerBatch < 1) throw outOfRange(`keysPerBatch must be an integer >= 1, got ${keysPerBatch}`);
    const deadline = performance.now() + timeoutMs;
    const left = leftOf(deadline);
    const before = await this.#agree('all nodes agreeing before moveSlot', left());
    const src = this.#byId(ownerIn(before, slot)!);
    if (src === dst) throw new Error(`moveSlot: slot ${slot} is already served by 127.0.0.1:${dst.port}`);
    if (before.ranges.some((r) => r.replicas.includes(dst.id))) throw new Error(`moveSlot: 127.0.0.1:${dst.port} is a replica; a slot can only move to a master`);

    // 1. The target accepts the slot's keys (and ASKING clients); 2. the source sends clients asking
    // for a key it no longer has there with -ASK.
    await dst.ask(['CLUSTER', 'SETSLOT', slot, 'IMPORTING', src.id]);
    await src.ask(['CLUSTER', 'SETSLOT', slot, 'MIGRATING', dst.id]);
    // 3. Move the keys, a batch at a time, as redis-cli does.
    const migrateMs = 10_000;
    const { password } = this.#config;
    const auth = password === undefined ? [] : ['AUTH', password];
    let keys = 0;
    await src.with(async (c) => {
      for (;;) {
        const batch = (await c.send(['CLUSTER', 'GETKEYSINSLOT', slot, keysPerBatch])) as Buffer[];
        if (batch.length === 0) return;
        if (keys > 0 && pauseBetweenBatchesMs > 0) await sleep(pauseBetweenBatchesMs);
        // Keys gone meanwhile (expired, deleted) are fine: MIGRATE answers NOKEY when none was left.
        const reply = text(await c.send(['MIGRATE', dst.host, dst.port, '', 0, migrateMs, ...auth, 'KEYS', ...batch], { timeoutMs: migrateMs + 2000 }));
        if (reply === 'OK') keys += batch.length;
        if (performance.now() > deadline) throw new Error(`moveSlot: slot ${slot} not migrated within ${timeoutMs} ms (${keys} keys moved; it is left MIGRATING/IMPORTING)`);
      }
    }, left());
    // 4. Hand it over. Target first: its SETSLOT NODE bumps its config epoch, so its claim wins once
    // gossip spreads it; then the source (which would otherwise go on answering ASK); then the other masters.
    const others = [...new Set(before.ranges.map((r) => this.#byId(r.master)))].filter((m) => m !== src && m !== dst && m.reachable);
    for (const m of [dst, src]) await m.ask(['CLUSTER', 'SETSLOT', slot, 'NODE', dst.id]);
    await Promise.all(others.map((m) => m.ask(['CLUSTER', 'SETSLOT', slot, 'NODE', dst.id])));
    await this.#agree(`all nodes agreeing that 127.0.0.1:${dst.port} serves slot ${slot}`, left(), (v) => ownerIn(v, slot) === dst.id);
    return { from: src, to: dst, keys };
  }

  async failover(replica?: RedisClusterNode | number, opts: ClusterFailoverOptions = {}): Promise<ClusterFailover> {
    const { mode, timeoutMs = 30_000 } = opts;
    const left = leftOf(performance.now() + timeoutMs);
    // FORCE and TAKEOVER are for a master that is down: one node's view is enough to start from.
    const before = mode
      ? await until('a slot map to fail over from', left(), async () => parseShards(await this.nodes.find((m) => m.reachable)!.ask(['CLUSTER', 'SHARDS'])))
      : await this.#agree('all nodes agreeing before failover', left());
    const isReplica = (m: Member): boolean => before.ranges.some((r) => r.replicas.includes(m.id));
    const to = replica === undefined ? this.nodes.find((m) => this.#firstShard.has(m) && isReplica(m)) : this.#nodeAt(replica, 'failover: replica');
    const range = to && before.ranges.find((r) => r.replicas.includes(to.id));
    if (!to || !range) throw new Error(`failover: ${to ? `127.0.0.1:${to.port} is` : 'nodes[0] has'} no replica of a master that serves slots`);
    const from = this.#byId(range.master);

    // Done only when every node agrees. Under load a replica asked to take over can say `master` for
    // a few ms and turn back into a replica (seen in the fault runs: same epoch, then `slave` again),
    // and a manual failover that does not finish in 5 s is dropped by the replica
    // (CLUSTER_MF_TIMEOUT). Either way: ask again, until the views agree or the deadline passes.
    const tookOver = (v: ClusterView): boolean =>
      v.ranges.every((r) => r.master !== from.id) && (!from.reachable || v.ranges.some((r) => r.master === to.id && r.replicas.includes(from.id)));
    await until(`all nodes agreeing that 127.0.0.1:${to.port} took over from 127.0.0.1:${from.port}`, left(), async () => {
      if ((await to.role()) !== 'master') await to.ask(['CLUSTER', 'FAILOVER', ...(mode ? [mode] : [])]);
      try {
        return await this.#agree('the views agreeing', Math.max(100, Math.min(6000, left())), tookOver);
      } catch {
        return undefined;
      }
    });
    return { from, to };
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await Promise.allSettled([...this.#config.clients].map((c) => c.close()));
    await Promise.allSettled(this.nodes.map((m) => m.stop()));
  }

  /** Each reachable node's view; resolves with it once all are ok, agree, cover every slot and pass `accept`. */
  #agree(what: string, timeoutMs: number, accept: (v: ClusterView) => boolean = () => true): Promise<ClusterView> {
    return until(what, timeoutMs, async () => {
      const views = await Promise.all(this.nodes.filter((m) => m.reachable).map((m) => m.with(async (c) => {
        const [state, replication, shards] = await Promise.all([c.send(['CLUSTER', 'INFO']), c.send(['INFO', 'replication']), c.send(['CLUSTER', 'SHARDS'])]);
        const synced = !/role:slave/.test(text(replication)) || /master_link_status:up/.test(text(replication));
        const view = parseShards(shards);
        return /cluster_state:ok/.test(text(state)) && synced && view.online ? view : undefined;
      })));
      const [first] = views;
      if (!first || views.some((v) => v?.key !== first.key)) return undefined;
      // A node that has exited must be failed in every view (a paused one may be either, as time goes by).
      const gone = this.nodes.filter((m) => !m.running).map((m) => m.id);
      if (first.ranges.some((r) => gone.includes(r.master) || r.replicas.some((id) => gone.includes(id)))) return undefined;
      const covered = first.ranges.reduce((n, r) => n + r.end - r.start + 1, 0);
      return covered === SLOTS && accept(first) ? first : undefined;
    });
  }

  #nodeAt(n: RedisClusterNode | number, what: string): Member {
    const m = typeof n === 'number' ? this.nodes[n] : this.nodes.find((x) => x === n);
    if (!m) throw outOfRange(`${what} must be one of nodes or an index from 0 to ${this.nodes.length - 1}, got ${typeof n === 'number' ? n : 'another node'}`);
    return m;
  }

  #byId(id: string): Member {
    const m = this.nodes.find((x) => x.id === id);
    if (!m) throw new Error(`startRedisCluster: node ${id} is not one of this cluster's`);
    return m;
  }
}

function checkSlot(slot: number): void {
  if (!Number.isInteger(slot) || slot < 0 || slot >= SLOTS) throw outOfRange(`slot must be an integer from 0 to 16383, got ${slot}`);
}
