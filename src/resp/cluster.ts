/**
 * RedisCluster: commands routed to the master of their key's slot, over one connection per master.
 *
 * What the client knows is a slot map: for each of the 16384 slots, the master serving it, read from
 * a node with `CLUSTER SHARDS` (Redis 7; `CLUSTER SLOTS` on older servers). It is only a cache of what
 * the cluster decided; the nodes correct it:
 * - `-MOVED <slot> <host:port>`: the slot lives there now. The map takes that slot at once, the
 *   command goes there, and the whole map is read again soon (one move rarely comes alone).
 * - `-ASK <slot> <host:port>`: the slot is being migrated and this key has already gone. The command
 *   is sent there once, right behind an `ASKING` in the same write; the map is left alone.
 * - `-TRYAGAIN` (a multi-key command whose keys are split by a migration) and `-CLUSTERDOWN` (no
 *   master for the slot right now): nothing ran; the command is sent again after a short pause, as
 *   long as its timeout allows. At the timeout the last such error is what the caller gets.
 * A lost connection, a node that does not answer, or CLUSTERDOWN also make the client read the map
 * again, and it reads it every `topologyRefreshMs` anyway: a failover that promoted a replica is
 * seen within that time even by a client that sent nothing.
 *
 * Nothing that may have run is ever sent twice: MOVED, ASK, TRYAGAIN and CLUSTERDOWN say the command
 * did not run, and a command that lost its connection or timed out rejects as it does on RedisClient.
 * The one exception is a command still waiting for a connection to a node that the map then drops
 * (a failed master): it was never written, so it goes to the slot's new master.
 *
 * Pub/sub is sharded (SSUBSCRIBE/SPUBLISH, Redis 7): a channel lives in a slot like a key, and its
 * messages stay on that slot's node instead of being copied to every node. A subscription follows its
 * slot: when the slot moves (a migration, a failover), the node drops it (an unasked `sunsubscribe`)
 * or the map says so, and the client subscribes again on the new node, calling the listener with
 * `null` (messages may have been missed).
 */
import { inspect } from 'node:util';
import type tls from 'node:tls';
import type { CommandOptions, RespValue } from './connection.js';
import type { RespArg } from './encoder.js';
import { parseRedisUrl, resolveRedisOptions, type RedisOptions, type ReconnectStrategy, type ResolvedRedisOptions } from './options.js';
import { ReconnectingConnection } from './reconnecting.js';
import type { Script } from './script.js';
import { Subscriber, call, type MessageListener } from './subscriber.js';
import { keySlot, SLOT_COUNT } from './slots.js';
import type { NodeAddress } from './sentinel.js';
import { ClosedError, ConnectionError, RespError, TimeoutError, invalidType, invalidValue, outOfRange } from '../errors.js';
import { respChannels, type RespSlotsPayload } from '../diagnostics.js';
import { backoffMs, noop, sleep } from '../abort.js';

/** A cluster node's address, in {@link RedisClusterOptions.seeds}. */
export interface ClusterNodeAddress {
  /** The node's host name or IP address. */
  host: string;
  /** Its TCP port (the client port, not the cluster bus port). */
  port: number;
}

/**
 * How {@link RedisCluster.connect} finds a cluster and logs in to its nodes. The credentials and TLS
 * settings are used for every node; a cluster has one database (0).
 */
export interface RedisClusterOptions {
  /**
   * Nodes to read the slot map from at connect (any node of the cluster will do; list several, in
   * case one is down): `redis://[user[:pass]@]host:port` URLs (`rediss://` for TLS) or `{ host, port }`.
   */
  seeds: Array<string | ClusterNodeAddress>;
  /**
   * ACL user name for every node.
   * @defaultValue the user of the first seed URL that has one; none otherwise
   */
  username?: string;
  /**
   * Password for every node. It never appears in an error message.
   * @defaultValue the password of the first seed URL that has one; none otherwise
   */
  password?: string;
  /**
   * true, or node:tls options (a private CA, client certificates…), for every node.
   * @defaultValue `true` when the seeds are `rediss://` URLs; plain TCP otherwise
   */
  tls?: boolean | tls.ConnectionOptions;
  /**
   * How long to wait for a connection to a node, in ms.
   * @defaultValue `5000`
   */
  connectTimeoutMs?: number;
  /**
   * How long a command may take, in ms, redirects and pauses after TRYAGAIN/CLUSTERDOWN included,
   * unless the command's own `timeoutMs` says otherwise.
   * @defaultValue `5000`
   */
  commandTimeoutMs?: number;
  /**
   * When a node's connection comes back after a loss.
   * @defaultValue min(2^attempt × 50, 2000) ms plus up to 200 ms of jitter, forever
   */
  reconnect?: ReconnectStrategy;
  /**
   * Return bulk strings as Buffers instead of UTF-8 strings.
   * @defaultValue `false`
   */
  returnBuffers?: boolean;
  /**
   * The most bytes one reply may take on the wire.
   * @defaultValue 512 MiB
   */
  maxReplyBytes?: number;
  /**
   * How many MOVED/ASK redirects one command may follow before it fails with the last one.
   * @defaultValue `16`
   */
  maxRedirects?: number;
  /**
   * How often, in ms, the slot map is read again when nothing else prompted it, so that a failover
   * is noticed by a client that is only holding locks. `Infinity`: only when prompted.
   * @defaultValue `2000`
   */
  topologyRefreshMs?: number;
}

/** {@link RedisCluster.send}'s options: a command's timeout and signal, and the key to route it by. */
export interface ClusterCommandOptions extends CommandOptions {
  /**
   * The key whose slot decides the node. Needed only when the command's keys cannot be found from
   * the command itself; otherwise they are (from the server's own `COMMAND INFO`).
   */
  key?: string | Buffer;
}

/** Commands that only make sense on one connection, which a cluster client does not have. */
const REFUSED = new Map<string, string>([
  ['SUBSCRIBE', 'use subscribe(), which uses sharded pub/sub'],
  ['PSUBSCRIBE', 'pattern subscriptions are not supported on a cluster'],
  ['SSUBSCRIBE', 'use subscribe()'],
  ['UNSUBSCRIBE', 'use the function subscribe() resolved with'],
  ['SUNSUBSCRIBE', 'use the function subscribe() resolved with'],
  ['PUNSUBSCRIBE', 'pattern subscriptions are not supported on a cluster'],
  ['MONITOR', 'it takes over the connection'],
  ['MULTI', 'a transaction needs one connection: use a script (evalScript) over keys of one slot'],
  ['EXEC', 'a transaction needs one connection: use a script'],
  ['DISCARD', 'a transaction needs one connection: use a script'],
  ['WATCH', 'a transaction needs one connection: use a script'],
  ['UNWATCH', 'a transaction needs one connection: use a script'],
  ['SELECT', 'a cluster has only database 0'],
  ['ASKING', 'the client sends it itself when a node answers ASK'],
]);

/** Commands whose keys follow their numkeys argument (args[2]), from args[3] on. */
const NUMKEYS_AT_2 = new Set(['EVAL', 'EVALSHA', 'EVAL_RO', 'EVALSHA_RO', 'FCALL', 'FCALL_RO']);

/** Where a command's keys are, from the server's `COMMAND INFO` (first, last, step), or that it has none. */
type KeySpec =
  | { kind: 'none' }
  | { kind: 'range'; first: number; last: number; step: number }
  | { kind: 'movable' } // found per call with COMMAND GETKEYS
  | { kind: 'subcommands' }; // a container (OBJECT, XINFO…): each subcommand has its own spec

/** A node's address as the map keeps it: `host:port`. */
type Address = string;

interface Topology {
  slots: Array<Address | undefined>;
  masters: Set<Address>;
}

/** One caller's subscription: a listener on a channel, on whichever node serves the channel's slot. */
interface ShardedSubscription {
  readonly channel: string;
  readonly slot: number;
  readonly listener: MessageListener;
  /** The node it is subscribed on now (or is being subscribed on). */
  node: Address | undefined;
  off: (() => void) | undefined;
  active: boolean;
  /** A move in progress (a new subscription on another node). */
  moving: boolean;
}

/** The least time between two reads of the slot map that errors prompted (MOVED, a lost node). */
const MIN_REFRESH_GAP_MS = 100;

/**
 * A Redis Cluster client: commands go to the master of their key's slot, following MOVED and ASK,
 * pausing through TRYAGAIN and CLUSTERDOWN; scripts are routed by their keys; pub/sub is sharded.
 * Create one with {@link RedisCluster.connect}; {@link RedisLocker}, {@link RedisSemaphore},
 * {@link RedisRWLock} and {@link RedisElection} take it where they take a RedisClient.
 */
export class RedisCluster {
  readonly #base: ResolvedRedisOptions;
  readonly #seeds: ClusterNodeAddress[];
  readonly #maxRedirects: number;
  readonly #refreshEveryMs: number;
  #slots: Array<Address | undefined> = new Array<Address | undefined>(SLOT_COUNT);
  #masters = new Set<Address>();
  /** One command connection per node commands have been sent to (masters; a seed while connecting). */
  readonly #links = new Map<Address, ReconnectingConnection>();
  /** Links dropped from the map: commands still waiting on them for a connection may be sent elsewhere. */
  readonly #dropped = new WeakSet<ReconnectingConnection>();
  /** One sharded subscriber connection per node that has subscriptions. */
  readonly #subscribers = new Map<Address, Subscriber>();
  readonly #subscriptions = new Set<ShardedSubscription>();
  readonly #commandInfo = new Map<string, Promise<KeySpec>>();
  readonly #masterListeners = new Set<(to: NodeAddress) => void>();
  #refreshing: Promise<void> | undefined;
  #refreshAgain: RespSlotsPayload['cause'] | undefined;
  #refreshTimer: NodeJS.Timeout | undefined;
  #periodicTimer: NodeJS.Timeout | undefined;
  #lastRefresh = 0;
  #roundRobin = 0;
  #closed = false;

  private constructor(base: ResolvedRedisOptions, seeds: ClusterNodeAddress[], maxRedirects: number, refreshEveryMs: number) {
    this.#base = base;
    this.#seeds = seeds;
    this.#maxRedirects = maxRedirects;
    this.#refreshEveryMs = refreshEveryMs;
  }

  /**
   * Reads the slot map from the first seed that answers (so a wrong address or password fails here),
   * then connects to the masters in the background.
   *
   * @param seeds One URL, several (an array, or one string with commas between them), or options.
   *   `redis://[user[:pass]@]host:port` (`rediss://` for TLS); credentials as in RedisClient URLs.
   */
  static async connect(seeds: string | string[] | RedisClusterOptions): Promise<RedisCluster> {
    const r = resolveCluster(seeds);
    const cluster = new RedisCluster(r.base, r.seeds, r.maxRedirects, r.refreshEveryMs);
    let lastError: unknown;
    for (const seed of cluster.#seeds) {
      const address = `${seed.host}:${seed.port}`;
      const link = new ReconnectingConnection(cluster.#nodeOptions(seed.host, seed.port));
      try {
        await link.start();
        const topology = await cluster.#readMap(link, address);
        cluster.#links.set(address, link); // kept if it is a master, closed by #apply otherwise
        cluster.#apply(topology, address, 'connect');
        cluster.#schedulePeriodic();
        return cluster;
      } catch (err) {
        await link.close().catch(noop);
        lastError = err;
        // A refused password or a node that is no cluster node will be the same on the other seeds.
        if (err instanceof RespError && err.prefix !== 'LOADING' && err.prefix !== 'CLUSTERDOWN') break;
      }
    }
    await cluster.close();
    throw lastError;
  }

  /** The seeds' addresses, `host:port[,host:port…]` (never credentials). */
  get address(): string {
    return this.#seeds.map((s) => `${s.host}:${s.port}`).join(',');
  }

  /** The default per-command timeout (ms). */
  get commandTimeoutMs(): number {
    return this.#base.commandTimeoutMs;
  }

  /** Whether a connection to at least one master is up right now. */
  get connected(): boolean {
    for (const m of this.#masters) if (this.#links.get(m)?.current) return true;
    return false;
  }

  /** host:port of every master that serves slots, as the slot map says now. */
  get masters(): string[] {
    return [...this.#masters];
  }

  /** host:port of the master that the slot map says serves `key` now (its slot's master). */
  masterOf(key: string | Buffer): string | undefined {
    return this.#slots[keySlot(key)];
  }

  /**
   * @internal Calls `listener` with each new master when the set of masters changes (a failover
   * promoted a replica, a master was added), until the returned function is called.
   */
  onMasterChange(listener: (to: NodeAddress) => void): () => void {
    this.#masterListeners.add(listener);
    return () => this.#masterListeners.delete(listener);
  }

  /**
   * Sends one command to the master of its key's slot and resolves with its reply; an error reply
   * rejects with RespError. The keys are found from the command (the server's `COMMAND INFO`, asked
   * once per command name) unless `opts.key` names the one to route by; a command without keys goes
   * to any master. Keys of one command must share a slot (a TypeError says so before anything is
   * sent). Concurrent commands to one node in the same tick are pipelined in one write.
   */
  async send(args: Array<RespArg>, opts?: ClusterCommandOptions): Promise<RespValue> {
    this.#checkOpen();
    const timeoutMs = checkTimeout(opts?.timeoutMs, this.#base.commandTimeoutMs);
    if (!Array.isArray(args) || args.length === 0) throw invalidValue('a command needs at least its name');
    const name = String(args[0]).toUpperCase();
    const refused = REFUSED.get(name);
    if (refused !== undefined) throw invalidValue(`${name} cannot be sent through RedisCluster.send: ${refused}`);
    const slot = opts?.key !== undefined ? keySlot(opts.key) : await this.#commandSlot(name, args, timeoutMs, opts?.signal);
    return this.#routed(slot, name, timeoutMs, opts?.signal, (link, left, asking) => this.#sendOn(link, args, left, opts?.signal, asking));
  }

  /**
   * The script on the master of the keys' slot: EVAL the first time on each connection, EVALSHA after
   * (and EVAL again if a flushed cache answers NOSCRIPT), as RedisClient does. The script is sent
   * as its {@link Script.sharded} form (PUBLISH made SPUBLISH). Its keys must share a slot (one
   * {hash tag}); a TypeError says so otherwise, before anything is sent.
   */
  async evalScript(script: Script, keys: RespArg[], args: RespArg[], opts?: CommandOptions): Promise<RespValue> {
    const { reply } = await this.#evalThen(script, keys, args, undefined, opts);
    return reply;
  }

  /**
   * @internal A script and, right behind it in the same write on the same connection, one more
   * command (WAIT: it must count the replicas of this connection's writes). A redirect sends both
   * again where the slot is. `then` resolves with the second command's reply.
   */
  async evalScriptThen(script: Script, keys: RespArg[], args: RespArg[], then: RespArg[], opts: CommandOptions | undefined, thenTimeoutMs: number): Promise<{ reply: RespValue; then: Promise<RespValue> }> {
    const r = await this.#evalThen(script, keys, args, { args: then, timeoutMs: thenTimeoutMs }, opts);
    return { reply: r.reply, then: r.then! };
  }

  /** @internal SPUBLISH on the channel's slot: what a lock's release message is on a cluster. */
  publish(channel: string, message: RespArg): Promise<RespValue> {
    return this.send(['SPUBLISH', channel, message], { key: channel });
  }

  /**
   * Subscribes `listener` to the sharded channel `channel` (SSUBSCRIBE on the node of the channel's
   * slot; a connection per node, opened on first use). Resolves with an unsubscribe function once the
   * node has confirmed. The listener gets `null` after a reconnect or after the subscription followed
   * its slot to another node: messages may have been missed in between.
   */
  async subscribe(channel: string, listener: MessageListener, signal?: AbortSignal): Promise<() => void> {
    this.#checkOpen();
    if (typeof channel !== 'string' || channel === '') throw invalidValue('channel must be a non-empty string');
    if (typeof listener !== 'function') throw invalidType('listener must be a function');
    const sub: ShardedSubscription = { channel, slot: keySlot(channel), listener, node: undefined, off: undefined, active: true, moving: false };
    const deadline = performance.now() + this.#base.commandTimeoutMs;
    for (let failures = 0; ; failures++) {
      const node = this.#slots[sub.slot];
      try {
        if (node === undefined) throw new RespError(`CLUSTERDOWN no master known for slot ${sub.slot}`, 'SSUBSCRIBE');
        sub.node = node;
        sub.off = await this.#subscriber(node).subscribe(channel, listener, signal);
        break;
      } catch (err) {
        if (signal?.aborted || this.#closed || !this.#worthRetrying(err) || performance.now() >= deadline) throw err;
        this.#noteRedirect(err, sub.slot, 'SSUBSCRIBE', node);
        await sleep(Math.min(backoffMs(failures, { baseMs: 10, capMs: 200, jitterMs: 10 }), deadline - performance.now()), signal);
      }
    }
    this.#subscriptions.add(sub);
    if (this.#slots[sub.slot] !== sub.node) this.#move(sub); // the map changed while we subscribed
    return () => {
      if (!sub.active) return;
      sub.active = false;
      this.#subscriptions.delete(sub);
      sub.off?.();
      sub.off = undefined;
    };
  }

  /** Closes every connection. Commands sent earlier get their replies first; later ones reject with ClosedError. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#refreshTimer);
    clearTimeout(this.#periodicTimer);
    this.#subscriptions.clear();
    this.#masterListeners.clear();
    await Promise.all([...[...this.#links.values()].map((l) => l.close()), ...[...this.#subscribers.values()].map((s) => s.close())]);
    this.#links.clear();
    this.#subscribers.clear();
  }

  /** How `util.inspect` shows it: the seeds and the masters, never the credentials. */
  [inspect.custom](): string {
    const scheme = this.#base.tls ? 'rediss' : 'redis';
    return `RedisCluster { ${scheme}://${this.#base.username ? `${this.#base.username}@` : ''}${this.address}; masters: ${this.masters.join(', ') || 'none'}${this.#closed ? ' (closed)' : ''} }`;
  }

  // ---- routing

  /**
   * Runs `attempt` on the master of `slot` (any master for undefined) until it answers something other
   * than a redirect or a "not now": MOVED updates the map and goes on, ASK goes on once to the named
   * node with ASKING, TRYAGAIN/CLUSTERDOWN pause and go on, all within `timeoutMs`.
   */
  async #routed<T>(slot: number | undefined, name: string, timeoutMs: number, signal: AbortSignal | undefined, attempt: (link: ReconnectingConnection, leftMs: number, asking: boolean) => Promise<T>): Promise<T> {
    const deadline = performance.now() + timeoutMs;
    let asking: Address | undefined;
    let redirects = 0;
    let pauses = 0;
    let lastError: unknown;
    for (;;) {
      this.#checkOpen();
      const left = deadline - performance.now();
      if (left <= 0) throw lastError ?? new TimeoutError(`Redis Cluster: ${name} timed out after ${timeoutMs} ms`, timeoutMs);
      const address = asking ?? (slot === undefined ? this.#anyMaster() : this.#slots[slot]);
      if (address === undefined) {
        lastError = new RespError(`CLUSTERDOWN no master known for ${slot === undefined ? 'any slot' : `slot ${slot}`}`, name);
        this.#refreshSoon('clusterdown');
        await sleep(Math.min(backoffMs(pauses++, { baseMs: 10, capMs: 200, jitterMs: 10 }), left), signal);
        continue;
      }
      const link = this.#link(address);
      const wasAsking = asking !== undefined;
      asking = undefined;
      try {
        return await attempt(link, left, wasAsking);
      } catch (err) {
        // Never written: it waited for a connection to a node the map has since dropped.
        if (err instanceof ClosedError && !this.#closed && this.#dropped.has(link)) continue;
        if (!(err instanceof RespError)) {
          if (err instanceof ConnectionError || err instanceof TimeoutError) this.#refreshSoon('node-down');
          throw err;
        }
        const redirect = parseRedirect(err.message, address);
        if (redirect) {
          this.#publishRedirect(redirect.kind, name, redirect.slot, address, redirect.to);
          if (++redirects > this.#maxRedirects) throw err;
          if (redirect.kind === 'MOVED') {
            this.#slots[redirect.slot] = redirect.to;
            this.#refreshSoon('moved');
          } else {
            asking = redirect.to;
          }
          continue;
        }
        if (err.prefix === 'TRYAGAIN' || err.prefix === 'CLUSTERDOWN') {
          this.#publishRedirect(err.prefix, name, slot, address, undefined);
          if (err.prefix === 'CLUSTERDOWN') this.#refreshSoon('clusterdown');
          lastError = err;
          await sleep(Math.min(backoffMs(pauses++, { baseMs: 10, capMs: 200, jitterMs: 10 }), Math.max(0, deadline - performance.now())), signal);
          continue;
        }
        throw err;
      }
    }
  }

  /** One command on one node's connection; behind an ASKING in the same write when the node asked for it. */
  #sendOn(link: ReconnectingConnection, args: ReadonlyArray<RespArg>, timeoutMs: number, signal: AbortSignal | undefined, asking: boolean): Promise<RespValue> {
    if (asking) link.send(['ASKING'], { timeoutMs, signal }).catch(noop);
    return link.send(args, { timeoutMs, signal });
  }

  async #evalThen(script: Script, keys: RespArg[], args: RespArg[], then: { args: RespArg[]; timeoutMs: number } | undefined, opts: CommandOptions | undefined): Promise<{ reply: RespValue; then?: Promise<RespValue> }> {
    this.#checkOpen();
    if (!Array.isArray(keys) || keys.length !== script.numKeys) throw invalidValue(`script takes ${script.numKeys} keys, got ${Array.isArray(keys) ? keys.length : typeof keys}`);
    const timeoutMs = checkTimeout(opts?.timeoutMs, this.#base.commandTimeoutMs);
    const slot = sharedSlot(keys, 'EVALSHA');
    const sharded = script.sharded;
    const signal = opts?.signal;
    return this.#routed(slot, 'EVALSHA', timeoutMs, signal, async (link, left, asking) => {
      const start = performance.now();
      const send = (withSource: boolean, leftMs: number): { reply: Promise<RespValue>; then?: Promise<RespValue> } => {
        const cmd = [withSource ? 'EVAL' : 'EVALSHA', withSource ? sharded.lua : sharded.sha, sharded.numKeys, ...keys, ...args];
        const reply = this.#sendOn(link, cmd, leftMs, signal, asking);
        if (!then) return { reply };
        const after = link.send(then.args, { timeoutMs: then.timeoutMs, signal });
        after.catch(noop); // read only when the caller wants it
        return { reply, then: after };
      };
      const full = link.scriptInFull(sharded.sha);
      let sent = send(full, left);
      try {
        return { reply: await sent.reply, then: sent.then };
      } catch (err) {
        if (full || !(err instanceof RespError) || err.prefix !== 'NOSCRIPT') throw err;
        sent = send(true, Math.max(1, left - (performance.now() - start)));
        return { reply: await sent.reply, then: sent.then };
      }
    });
  }

  /** The slot a command's keys hash to (undefined: no keys), found from the server's own command table. */
  async #commandSlot(name: string, args: RespArg[], timeoutMs: number, signal: AbortSignal | undefined): Promise<number | undefined> {
    if (NUMKEYS_AT_2.has(name)) {
      const n = Number(args[2]);
      if (!Number.isInteger(n) || n < 0) return undefined; // the server will say what is wrong with it
      return sharedSlot(args.slice(3, 3 + n), name);
    }
    if (name === 'SPUBLISH') return args.length > 1 ? keySlot(toKey(args[1]!)) : undefined;
    let spec = await this.#keySpec(name, timeoutMs, signal);
    if (spec.kind === 'subcommands') spec = args.length > 1 ? await this.#keySpec(`${name}|${String(args[1]).toUpperCase()}`, timeoutMs, signal) : { kind: 'none' };
    if (spec.kind === 'none' || spec.kind === 'subcommands') return undefined;
    if (spec.kind === 'movable') {
      // COMMAND GETKEYS answers an error for a command without keys ("Invalid arguments…"): none, then.
      const keys = await this.#routed(undefined, 'COMMAND', timeoutMs, signal, (link, left) => link.send(['COMMAND', 'GETKEYS', ...args], { timeoutMs: left, signal })).catch((err: unknown) => {
        if (err instanceof RespError && err.prefix === 'ERR') return [];
        throw err;
      });
      return Array.isArray(keys) && keys.length > 0 ? sharedSlot(keys as RespArg[], name) : undefined;
    }
    const last = spec.last < 0 ? args.length + spec.last : spec.last;
    const keys: RespArg[] = [];
    for (let i = spec.first; i <= last && i < args.length; i += spec.step) keys.push(args[i]!);
    return keys.length > 0 ? sharedSlot(keys, name) : undefined;
  }

  /** COMMAND INFO `name`, asked once per name (a failed ask is asked again next time). */
  #keySpec(name: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<KeySpec> {
    let spec = this.#commandInfo.get(name);
    if (!spec) {
      spec = this.#routed(undefined, 'COMMAND', timeoutMs, signal, (link, left) => link.send(['COMMAND', 'INFO', name.toLowerCase()], { timeoutMs: left, signal })).then(parseKeySpec);
      this.#commandInfo.set(name, spec);
      spec.catch(() => this.#commandInfo.delete(name));
    }
    return spec;
  }

  #anyMaster(): Address | undefined {
    const masters = [...this.#masters];
    if (masters.length === 0) return undefined;
    return masters[this.#roundRobin++ % masters.length];
  }

  #link(address: Address): ReconnectingConnection {
    let link = this.#links.get(address);
    if (!link) {
      const { host, port } = splitAddress(address);
      link = new ReconnectingConnection(this.#nodeOptions(host, port), { onDown: () => this.#refreshSoon('node-down') });
      this.#links.set(address, link);
      link.startInBackground();
    }
    return link;
  }

  #subscriber(address: Address): Subscriber {
    let sub = this.#subscribers.get(address);
    if (!sub) {
      const { host, port } = splitAddress(address);
      sub = new Subscriber(this.#nodeOptions(host, port), undefined, { onDropped: (channel) => this.#subscriptionDropped(address, channel) });
      this.#subscribers.set(address, sub);
    }
    return sub;
  }

  #nodeOptions(host: string, port: number): ResolvedRedisOptions {
    return { ...this.#base, host, port, db: 0, sentinel: undefined };
  }

  #worthRetrying(err: unknown): boolean {
    if (err instanceof RespError) return ['MOVED', 'ASK', 'TRYAGAIN', 'CLUSTERDOWN', 'LOADING'].includes(err.prefix);
    return err instanceof ConnectionError || err instanceof TimeoutError;
  }

  /** A subscribe that a node answered with MOVED (or could not reach): the map is read again. */
  #noteRedirect(err: unknown, slot: number, command: string, from: Address | undefined): void {
    if (err instanceof RespError) {
      const redirect = parseRedirect(err.message, from ?? '');
      if (redirect?.kind === 'MOVED') this.#slots[redirect.slot] = redirect.to;
      if (redirect && from) this.#publishRedirect(redirect.kind, command, slot, from, redirect.to);
    }
    this.#refreshSoon(err instanceof RespError ? 'moved' : 'node-down');
  }

  #publishRedirect(kind: 'MOVED' | 'ASK' | 'TRYAGAIN' | 'CLUSTERDOWN', command: string, slot: number | undefined, from: Address, to: Address | undefined): void {
    if (respChannels.redirect.hasSubscribers) respChannels.redirect.publish({ kind, command, slot, from, to });
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError('Redis cluster');
  }

  // ---- the slot map

  /** Reads the map again soon (at most once per MIN_REFRESH_GAP_MS), once for every cause that comes meanwhile. */
  #refreshSoon(cause: RespSlotsPayload['cause']): void {
    if (this.#closed) return;
    if (this.#refreshing || this.#refreshTimer) {
      this.#refreshAgain ??= cause;
      return;
    }
    const wait = Math.max(0, this.#lastRefresh + MIN_REFRESH_GAP_MS - performance.now());
    this.#refreshTimer = setTimeout(() => {
      this.#refreshTimer = undefined;
      void this.#refresh(cause);
    }, wait);
    this.#refreshTimer.unref?.();
  }

  /** One read of the map at a time; a cause that arrived during it gets a read of its own after it. */
  #refresh(cause: RespSlotsPayload['cause']): Promise<void> {
    this.#refreshing ??= this.#readFromAny(cause)
      .catch(noop) // no node answered: the next error or the timer tries again
      .finally(() => {
        this.#refreshing = undefined;
        this.#lastRefresh = performance.now();
        const again = this.#refreshAgain;
        this.#refreshAgain = undefined;
        if (again && !this.#closed) this.#refreshSoon(again);
      });
    return this.#refreshing;
  }

  #schedulePeriodic(): void {
    if (this.#closed || !Number.isFinite(this.#refreshEveryMs)) return;
    this.#periodicTimer = setTimeout(() => {
      void this.#refresh('timer').finally(() => this.#schedulePeriodic());
    }, this.#refreshEveryMs);
    this.#periodicTimer.unref?.();
  }

  /** Asks the masters that are connected, then the other known nodes and the seeds, until one answers. */
  async #readFromAny(cause: RespSlotsPayload['cause']): Promise<void> {
    const connected = [...this.#masters].filter((m) => this.#links.get(m)?.current);
    const others = [...new Set([...this.#masters, ...this.#seeds.map((s) => `${s.host}:${s.port}`)])].filter((a) => !connected.includes(a));
    let lastError: unknown = new Error('no node to ask');
    for (const address of [...connected, ...others]) {
      if (this.#closed) return;
      try {
        const existing = this.#links.get(address);
        let topology: Topology;
        if (existing?.current) {
          topology = await this.#readMap(existing, address);
        } else {
          // A node we hold no connection to (a seed, or a master that is down): a connection for this one question.
          const { host, port } = splitAddress(address);
          const once = new ReconnectingConnection(this.#nodeOptions(host, port), { askForPassword: false });
          try {
            await once.start();
            topology = await this.#readMap(once, address);
          } finally {
            void once.close().catch(noop);
          }
        }
        if (!this.#closed) this.#apply(topology, address, cause);
        return;
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  }

  /** CLUSTER SHARDS (Redis 7), or CLUSTER SLOTS where SHARDS is unknown. */
  async #readMap(link: ReconnectingConnection, address: Address): Promise<Topology> {
    // Short: a paused node must not hold up the read for long (the next node is asked).
    const timeoutMs = Math.min(this.#base.connectTimeoutMs, 2000);
    const host = splitAddress(address).host;
    try {
      return parseShards(await link.send(['CLUSTER', 'SHARDS'], { timeoutMs }), host, this.#base.tls !== undefined);
    } catch (err) {
      if (err instanceof RespError && /unknown subcommand|unknown command/i.test(err.message)) {
        return parseSlots(await link.send(['CLUSTER', 'SLOTS'], { timeoutMs }), host);
      }
      if (err instanceof RespError && /cluster support disabled/i.test(err.message)) {
        throw new RespError(`${address} is not a cluster node (cluster support disabled): connect to it with RedisClient`, 'CLUSTER');
      }
      throw err;
    }
  }

  /**
   * Installs a map: links to nodes that are no longer masters are closed (commands waiting on them
   * for a connection go to the new master), subscriptions follow their slots, and a changed set of
   * masters is announced to the lockers (each checks its held locks there).
   */
  #apply(topology: Topology, from: Address, cause: RespSlotsPayload['cause']): void {
    let changed = 0;
    for (let s = 0; s < SLOT_COUNT; s++) if (this.#slots[s] !== topology.slots[s]) changed++;
    const before = this.#masters;
    this.#slots = topology.slots;
    this.#masters = topology.masters;
    if (respChannels.slots.hasSubscribers) respChannels.slots.publish({ from, masters: [...topology.masters], changed, cause });
    for (const [address, link] of this.#links) {
      if (topology.masters.has(address)) continue;
      this.#links.delete(address);
      this.#dropped.add(link);
      void link.close().catch(noop);
    }
    for (const sub of this.#subscriptions) if (sub.node !== this.#slots[sub.slot]) this.#move(sub);
    for (const [address, subscriber] of this.#subscribers) {
      if (!topology.masters.has(address) && subscriber.channelCount === 0) {
        this.#subscribers.delete(address);
        void subscriber.close().catch(noop);
      }
    }
    const added = [...topology.masters].filter((m) => !before.has(m));
    const removed = [...before].filter((m) => !topology.masters.has(m));
    if (before.size > 0 && (added.length > 0 || removed.length > 0)) {
      for (const address of added.length > 0 ? added : [...topology.masters]) {
        const to = splitAddress(address);
        for (const listener of [...this.#masterListeners]) listener(to);
      }
    }
  }

  /** A node dropped a channel (its slot moved): read the map, then subscribe where the slot is now. */
  #subscriptionDropped(address: Address, channel: string): void {
    const subs = [...this.#subscriptions].filter((s) => s.channel === channel && s.node === address);
    if (subs.length === 0) return;
    void this.#refresh('moved').finally(() => {
      for (const sub of subs) if (sub.active && sub.node === address) this.#move(sub, true);
    });
  }

  /**
   * Moves a subscription to the node of its slot: subscribe there, then leave the old node, then tell
   * the listener (`null`) that messages may have been missed. Retried while the subscription lasts.
   */
  #move(sub: ShardedSubscription, force = false): void {
    if (sub.moving || !sub.active) return;
    const target = this.#slots[sub.slot];
    if (!force && target === sub.node) return;
    sub.moving = true;
    const attempt = async (failures: number): Promise<void> => {
      const to = this.#slots[sub.slot];
      if (!sub.active || this.#closed) return;
      try {
        if (to === undefined) throw new RespError(`CLUSTERDOWN no master known for slot ${sub.slot}`, 'SSUBSCRIBE');
        const old = sub.off;
        sub.off = undefined;
        old?.(); // leave first: on the same node, our own listener would keep the channel subscribed
        sub.node = to;
        const off = await this.#subscriber(to).subscribe(sub.channel, sub.listener);
        if (!sub.active) return off();
        sub.off = off;
        sub.moving = false;
        call(sub.listener, null);
        if (this.#slots[sub.slot] !== sub.node) this.#move(sub); // the map moved again meanwhile
      } catch (err) {
        this.#noteRedirect(err, sub.slot, 'SSUBSCRIBE', to);
        await sleep(backoffMs(failures, { baseMs: 20, capMs: 1000, jitterMs: 20 }), undefined, { unref: true });
        return attempt(failures + 1);
      }
    };
    void attempt(0).finally(() => {
      if (!sub.active) sub.moving = false;
    });
  }
}

// ---- options

interface ResolvedCluster {
  base: ResolvedRedisOptions;
  seeds: ClusterNodeAddress[];
  maxRedirects: number;
  refreshEveryMs: number;
}

function resolveCluster(input: string | string[] | RedisClusterOptions): ResolvedCluster {
  let o: RedisClusterOptions;
  if (typeof input === 'string') o = { seeds: input.split(',').map((s) => s.trim()).filter((s) => s !== '') };
  else if (Array.isArray(input)) o = { seeds: input };
  else if (input !== null && typeof input === 'object') o = input;
  else throw invalidType('RedisCluster.connect expects redis:// URLs or an options object');
  if (!Array.isArray(o.seeds) || o.seeds.length === 0) throw invalidValue('RedisCluster needs at least one seed (redis://host:port)');
  const seeds: ClusterNodeAddress[] = [];
  let fromUrls: RedisOptions = {};
  const schemes = new Set<boolean>();
  for (const [i, seed] of o.seeds.entries()) {
    if (typeof seed === 'string') {
      if (/^rediss?\+sentinel:/i.test(seed)) throw invalidValue('a Sentinel URL is not a cluster seed: use RedisClient.connect for Sentinel');
      const u = parseRedisUrl(seed);
      if (u.db !== undefined && u.db !== 0) throw invalidValue(`a cluster has only database 0 (seed ${i} names database ${u.db})`);
      seeds.push({ host: u.host ?? '127.0.0.1', port: u.port ?? 6379 });
      schemes.add(u.tls === true);
      if (fromUrls.password === undefined && u.password !== undefined) fromUrls = { username: u.username, password: u.password };
      else if (fromUrls.username === undefined && fromUrls.password === undefined && u.username !== undefined) fromUrls = { username: u.username };
    } else if (seed !== null && typeof seed === 'object' && typeof seed.host === 'string' && seed.host !== '') {
      if (!Number.isInteger(seed.port) || seed.port <= 0 || seed.port > 65535) throw outOfRange(`invalid port of seeds[${i}]: ${String(seed.port)}`);
      seeds.push({ host: seed.host, port: seed.port });
    } else {
      throw invalidValue(`seeds[${i}] must be a redis:// URL or { host, port }`);
    }
  }
  if (schemes.size > 1) throw invalidValue('the seeds mix redis:// and rediss://: a cluster is either TLS or not');
  const tlsFromUrl = schemes.has(true);
  const maxRedirects = o.maxRedirects ?? 16;
  if (!Number.isInteger(maxRedirects) || maxRedirects < 0) throw outOfRange(`maxRedirects must be an integer >= 0, got ${String(maxRedirects)}`);
  const refresh = o.topologyRefreshMs ?? 2000;
  if (typeof refresh !== 'number' || !(refresh > 0)) throw outOfRange(`topologyRefreshMs must be a number > 0 (or Infinity), got ${String(refresh)}`);
  const base = resolveRedisOptions({
    host: seeds[0]!.host,
    port: seeds[0]!.port,
    username: o.username ?? fromUrls.username,
    password: o.password ?? fromUrls.password,
    tls: o.tls ?? (tlsFromUrl ? true : undefined),
    connectTimeoutMs: o.connectTimeoutMs,
    commandTimeoutMs: o.commandTimeoutMs,
    reconnect: o.reconnect,
    returnBuffers: o.returnBuffers,
    maxReplyBytes: o.maxReplyBytes,
  });
  return { base, seeds, maxRedirects, refreshEveryMs: refresh };
}

function checkTimeout(timeoutMs: number | undefined, fallback: number): number {
  if (timeoutMs === undefined) return fallback;
  // NaN or a negative number would otherwise arm no timer at all: every wait needs a deadline.
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) throw outOfRange(`timeoutMs must be a number > 0 (or Infinity), got ${String(timeoutMs)}`);
  return timeoutMs;
}

// ---- parsing

function toKey(arg: RespArg): string | Buffer {
  return Buffer.isBuffer(arg) ? arg : String(arg);
}

/** The one slot all `keys` hash to; a TypeError naming the slots when they do not share one (CROSSSLOT). */
function sharedSlot(keys: ReadonlyArray<RespArg>, command: string): number | undefined {
  if (keys.length === 0) return undefined;
  const slot = keySlot(toKey(keys[0]!));
  for (let i = 1; i < keys.length; i++) {
    const other = keySlot(toKey(keys[i]!));
    if (other !== slot) {
      throw invalidValue(
        `CROSSSLOT: the keys of one ${command} must share a slot on a Redis Cluster, but key 1 hashes to slot ${slot} and key ${i + 1} to slot ${other}; give them a common {hash tag}`,
      );
    }
  }
  return slot;
}

/** `MOVED 3999 127.0.0.1:6381` / `ASK 3999 :6381` (an empty host: the node that answered). */
function parseRedirect(message: string, answeredBy: Address): { kind: 'MOVED' | 'ASK'; slot: number; to: Address } | undefined {
  const m = /^(MOVED|ASK) (\d+) (\S*):(\d+)/.exec(message);
  if (!m) return undefined;
  const host = m[3] !== '' ? m[3]! : splitAddress(answeredBy).host;
  return { kind: m[1] as 'MOVED' | 'ASK', slot: Number(m[2]), to: `${host}:${m[4]}` };
}

function splitAddress(address: Address): { host: string; port: number } {
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon), port: Number(address.slice(colon + 1)) };
}

/** A RESP2 map (a flat array of name, value, name, value…) read by name. */
function field(flat: RespValue, name: string): RespValue | undefined {
  if (!Array.isArray(flat)) return undefined;
  for (let i = 0; i + 1 < flat.length; i += 2) if (String(flat[i]) === name) return flat[i + 1];
  return undefined;
}

/**
 * CLUSTER SHARDS: one entry per shard, `slots` (start, end pairs) and `nodes` (each a map with
 * `endpoint`, `ip`, `port`, `tls-port`, `role`, `health`). A node announces `?` or '' as its endpoint
 * when it does not know it: the host we asked is used then.
 */
function parseShards(reply: RespValue, askedHost: string, useTls: boolean): Topology {
  if (!Array.isArray(reply)) throw new RespError('ERR unexpected reply to CLUSTER SHARDS', 'CLUSTER');
  const slots = new Array<Address | undefined>(SLOT_COUNT);
  const masters = new Set<Address>();
  for (const shard of reply) {
    const ranges = field(shard, 'slots');
    const nodes = field(shard, 'nodes');
    if (!Array.isArray(ranges) || !Array.isArray(nodes) || ranges.length === 0) continue;
    const master = nodes.find((n) => String(field(n, 'role')) === 'master');
    if (!master) continue;
    const endpoint = String(field(master, 'endpoint') ?? '');
    const ip = String(field(master, 'ip') ?? '');
    const host = endpoint !== '' && endpoint !== '?' ? endpoint : ip !== '' && ip !== '?' ? ip : askedHost;
    const port = Number((useTls ? field(master, 'tls-port') : undefined) ?? field(master, 'port') ?? field(master, 'tls-port'));
    if (!Number.isInteger(port) || port <= 0) continue;
    const address = `${host}:${port}`;
    masters.add(address);
    for (let i = 0; i + 1 < ranges.length; i += 2) {
      for (let s = Number(ranges[i]); s <= Number(ranges[i + 1]) && s < SLOT_COUNT; s++) slots[s] = address;
    }
  }
  return { slots, masters };
}

/** CLUSTER SLOTS: [start, end, [host, port, id…] of the master, replicas…] per range. */
function parseSlots(reply: RespValue, askedHost: string): Topology {
  if (!Array.isArray(reply)) throw new RespError('ERR unexpected reply to CLUSTER SLOTS', 'CLUSTER');
  const slots = new Array<Address | undefined>(SLOT_COUNT);
  const masters = new Set<Address>();
  for (const range of reply) {
    if (!Array.isArray(range) || range.length < 3 || !Array.isArray(range[2])) continue;
    const [h, p] = range[2];
    const host = h === undefined || String(h) === '' || String(h) === '?' ? askedHost : String(h);
    const address = `${host}:${Number(p)}`;
    masters.add(address);
    for (let s = Number(range[0]); s <= Number(range[1]) && s < SLOT_COUNT; s++) slots[s] = address;
  }
  return { slots, masters };
}

/** COMMAND INFO: [[name, arity, flags, first key, last key, step, …, subcommands]] (null: unknown command). */
function parseKeySpec(reply: RespValue): KeySpec {
  const info = Array.isArray(reply) ? reply[0] : undefined;
  if (!Array.isArray(info)) return { kind: 'none' }; // unknown to the server: it will say so itself
  const flags = Array.isArray(info[2]) ? info[2].map(String) : [];
  const subcommands = info[9];
  if (Array.isArray(subcommands) && subcommands.length > 0) return { kind: 'subcommands' };
  if (flags.includes('movablekeys')) return { kind: 'movable' };
  const first = Number(info[3]);
  if (!(first > 0)) return { kind: 'none' };
  return { kind: 'range', first, last: Number(info[4]), step: Math.max(1, Number(info[5])) };
}
