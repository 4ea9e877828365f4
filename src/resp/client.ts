/**
 * RedisClient: the public face of the RESP layer. One command connection (reconnecting), scripts sent
 * by SHA with a NOSCRIPT fallback, and a lazily opened subscriber connection for pub/sub.
 */
import { inspect } from 'node:util';
import type { CommandOptions, RespValue } from './connection.js';
import type { RespArg } from './encoder.js';
import { resolveRedisOptions, type RedisOptions, type ResolvedRedisOptions } from './options.js';
import { ReconnectingConnection } from './reconnecting.js';
import { Script } from './script.js';
import { Subscriber, type MessageListener } from './subscriber.js';
import { SentinelWatch, type NodeAddress } from './sentinel.js';
import { ClosedError, RespError, invalidValue, outOfRange } from '../errors.js';
import { noop } from '../abort.js';

/**
 * A Redis client: one command connection that reconnects in the background, Lua scripts sent by SHA
 * with a NOSCRIPT fallback, and a second connection for pub/sub, opened on the first subscribe.
 * Create one with {@link RedisClient.connect}.
 */
export class RedisClient {
  readonly #opts: ResolvedRedisOptions;
  readonly #link: ReconnectingConnection;
  /** Redis Sentinel: where the master is, and the news that it moved. */
  readonly #sentinel: SentinelWatch | undefined;
  #subscriber: Subscriber | undefined;
  #closed = false;

  private constructor(opts: ResolvedRedisOptions) {
    this.#opts = opts;
    this.#sentinel = opts.sentinel ? new SentinelWatch(opts) : undefined;
    this.#link = new ReconnectingConnection(opts, { sentinel: this.#sentinel });
  }

  /**
   * Connects (and authenticates) once before resolving, so a wrong address or password fails here.
   * Later losses reconnect in the background.
   *
   * With Sentinel (`redis+sentinel://…`, or `sentinels` and `masterName`), the sentinels are asked for
   * the master, the client connects there, checks with ROLE that it is the master, and then follows
   * failovers: a `+switch-master` from a sentinel, or a READONLY reply, moves it to the new master.
   *
   * @param url `redis://[user[:pass]@]host[:port][/db]`, `rediss://…` for TLS,
   *   `redis+sentinel://[user[:pass]@]host1:port1,host2:port2/masterName[/db]`, or an options object.
   * @param options Options that a URL cannot carry (e.g. `tls: { ca }` for a private CA, or the
   *   sentinels' own `sentinelPassword`); they win over the URL's.
   */
  static async connect(url: string | RedisOptions, options?: RedisOptions): Promise<RedisClient> {
    const client = new RedisClient(resolveRedisOptions(url, options));
    try {
      await client.#link.start();
    } catch (err) {
      client.#sentinel?.close();
      throw err;
    }
    client.#sentinel?.follow();
    return client;
  }

  /**
   * @internal Redis Sentinel: calls `listener` with the new master each time it moves (a failover),
   * until the returned function is called. Never called for a client without Sentinel.
   */
  onMasterChange(listener: (to: NodeAddress) => void): () => void {
    return this.#sentinel?.onSwitch(listener) ?? (() => {});
  }

  /** host:port of the server (never the credentials). */
  get address(): string {
    return this.#link.address;
  }

  /** The default per-command timeout (ms). */
  get commandTimeoutMs(): number {
    return this.#opts.commandTimeoutMs;
  }

  /** Whether a connection is up right now (commands sent while down wait for the reconnect). */
  get connected(): boolean {
    return this.#link.current !== undefined;
  }

  /**
   * Sends one command and resolves with its reply; an error reply rejects with RespError.
   * Concurrent sends in the same tick are pipelined in one write.
   */
  send(args: Array<RespArg>, opts?: CommandOptions): Promise<RespValue> {
    if (this.#closed) return Promise.reject(new ClosedError('Redis client'));
    const timeoutMs = opts?.timeoutMs;
    // NaN or a negative number would otherwise arm no timer at all (or a 1 ms one): every wait needs a deadline.
    if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !(timeoutMs > 0))) {
      return Promise.reject(outOfRange(`timeoutMs must be a number > 0 (or Infinity), got ${String(timeoutMs)}`));
    }
    return this.#link.send(args, opts);
  }

  /**
   * EVAL the first time on each connection (which caches the script on the server), EVALSHA after;
   * and EVAL again if the server answers NOSCRIPT all the same (its cache was flushed: SCRIPT FLUSH).
   */
  async evalScript(script: Script, keys: RespArg[], args: RespArg[], opts?: CommandOptions): Promise<RespValue> {
    if (keys.length !== script.numKeys) {
      throw invalidValue(`script takes ${script.numKeys} keys, got ${keys.length}`);
    }
    const start = performance.now();
    if (this.#link.scriptInFull(script.sha)) return this.send(['EVAL', script.lua, script.numKeys, ...keys, ...args], opts);
    try {
      return await this.send(['EVALSHA', script.sha, script.numKeys, ...keys, ...args], opts);
    } catch (err) {
      if (!(err instanceof RespError) || err.prefix !== 'NOSCRIPT') throw err;
      // One timeout covers both round trips: the fallback gets what is left of it.
      const timeoutMs = opts?.timeoutMs ?? this.#opts.commandTimeoutMs;
      const left = Math.max(1, timeoutMs - (performance.now() - start));
      return this.send(['EVAL', script.lua, script.numKeys, ...keys, ...args], { ...opts, timeoutMs: left });
    }
  }

  /**
   * @internal A script and, right behind it in the same write on the same connection, one more
   * command (WAIT: it must count the replicas that have this script's writes; a WAIT sent later could
   * go out on a new connection, whose own writes are none, and be acknowledged at once). The script
   * goes as evalScript sends it; on NOSCRIPT both go again, with EVAL. `then` resolves with the second
   * command's reply.
   */
  async evalScriptThen(script: Script, keys: RespArg[], args: RespArg[], then: RespArg[], opts: CommandOptions | undefined, thenTimeoutMs: number): Promise<{ reply: RespValue; then: Promise<RespValue> }> {
    if (keys.length !== script.numKeys) throw invalidValue(`script takes ${script.numKeys} keys, got ${keys.length}`);
    const send = (withSource: boolean): { reply: Promise<RespValue>; then: Promise<RespValue> } => {
      const reply = this.send([withSource ? 'EVAL' : 'EVALSHA', withSource ? script.lua : script.sha, script.numKeys, ...keys, ...args], opts);
      const after = this.send(then, { signal: opts?.signal, timeoutMs: thenTimeoutMs });
      after.catch(noop); // read by the caller only when it wants it
      return { reply, then: after };
    };
    const full = this.#link.scriptInFull(script.sha);
    let sent = send(full);
    try {
      return { reply: await sent.reply, then: sent.then };
    } catch (err) {
      if (full || !(err instanceof RespError) || err.prefix !== 'NOSCRIPT') throw err;
      sent = send(true);
      return { reply: await sent.reply, then: sent.then };
    }
  }

  /** @internal PUBLISH: what a lock's release message is on a single server. */
  publish(channel: string, message: RespArg): Promise<RespValue> {
    return this.send(['PUBLISH', channel, message]);
  }

  /**
   * Subscribes `listener` to `channel` on the subscriber connection (opened on first use).
   * Resolves with an unsubscribe function once the server has confirmed. The listener gets `null`
   * after a reconnect, when messages may have been missed.
   */
  subscribe(channel: string, listener: MessageListener, signal?: AbortSignal): Promise<() => void> {
    if (this.#closed) return Promise.reject(new ClosedError('Redis client'));
    this.#subscriber ??= new Subscriber(this.#opts, this.#sentinel);
    return this.#subscriber.subscribe(channel, listener, signal);
  }

  /** QUIT, then end the socket(s); commands sent earlier get their replies first, later ones reject. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#sentinel?.close();
    await Promise.all([this.#link.close(), this.#subscriber?.close()]);
  }

  /** How `util.inspect` and `console.log` show the client: its URL without the password, e.g. `RedisClient { redis://app@127.0.0.1:6379/0 }`. */
  [inspect.custom](): string {
    const o = this.#opts;
    const scheme = `${o.tls ? 'rediss' : 'redis'}${o.sentinel ? `+sentinel(${o.sentinel.masterName})` : ''}`;
    return `RedisClient { ${scheme}://${o.username ? `${o.username}@` : ''}${this.address}/${o.db}${
      this.#closed ? ' (closed)' : ''
    } }`;
  }
}
