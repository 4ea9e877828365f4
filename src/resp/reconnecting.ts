/**
 * A RespConnection that comes back: the handshake (AUTH, SELECT) on every connect, and after a loss a
 * reconnect loop paced by the ReconnectStrategy. Commands are never replayed across connections; a
 * command issued while disconnected waits for the next connection, up to its own timeout.
 */
import { RespConnection, type CommandOptions, type RespValue } from './connection.js';
import type { ResolvedRedisOptions } from './options.js';
import type { RespArg } from './encoder.js';
import { ClosedError, ConnectionError, RespError, TimeoutError, WirelockError } from '../errors.js';
import { respChannels } from '../diagnostics.js';
import { MAX_TIMER_MS, onAbort } from '../abort.js';
import type { NodeAddress, SentinelWatch } from './sentinel.js';

interface Waiter {
  resolve: (conn: RespConnection) => void;
  reject: (error: unknown) => void;
}

export interface ReconnectingHooks {
  /** Pub/sub pushes, for a subscriber connection. */
  onPush?: (channel: string, message: string | Buffer) => void;
  /** Sharded pub/sub: a subscription the server dropped on its own (the channel's slot moved). */
  onDropped?: (channel: string) => void;
  /** Redis Cluster: the connection was lost, or a reconnect failed (the node may be gone: look at the slot map again). */
  onDown?: (error: Error | undefined) => void;
  /** Runs on each new connection after the handshake, before commands flow (e.g. re-SUBSCRIBE). */
  onConnect?: (conn: RespConnection, reconnected: boolean) => Promise<void>;
  /** Whether the first connect, without a password, PINGs to find out that one is needed (checkNoAuth). Default true. */
  askForPassword?: boolean;
  /** Redis Sentinel: where the master is (asked before each connect), and who hears that it moved. */
  sentinel?: SentinelWatch;
}

/** Error replies that say this node is no longer the master (a failover demoted it). */
const DEMOTED = new Set(['READONLY', 'MASTERDOWN']);

/**
 * Redis Sentinel: the node we reached must say it is the master (ROLE), since a sentinel's answer
 * may predate a failover. Anything else is a failed connect; the next one asks the sentinels again.
 */
async function checkMaster(conn: RespConnection, sentinel: SentinelWatch, at: NodeAddress): Promise<void> {
  const role = await conn.send(['ROLE']);
  const name = Array.isArray(role) ? String(role[0]) : String(role);
  if (name === 'master') return;
  sentinel.demoted(at);
  throw new ConnectionError(conn.address, `not the master of "${sentinel.masterName}" (ROLE says ${name}); asking the sentinels again`);
}

/**
 * Without a password nothing in the handshake would touch the server, and one that requires a password
 * would let the connect succeed, then refuse the first real command (Redis 7 even answers a long one
 * with `Protocol error: unauthenticated multibulk length`). So one PING asks. Only NOAUTH counts: any
 * other error reply (LOADING, BUSY, MASTERDOWN, …) says the server is there and the commands that
 * follow deal with it as they do today. A server that does not answer at all fails the connect, within
 * connectTimeoutMs. Only the first connect asks: that is where a missing password is a mistake to
 * report, and a reconnect that waited on a PING would hold commands back from a server that is merely
 * slow (a command's own timeout says more than "not connected"). A NOAUTH after a reconnect comes
 * back as the reply to the next command.
 */
async function checkNoAuth(conn: RespConnection, timeoutMs: number): Promise<void> {
  try {
    await conn.send(['PING'], { timeoutMs });
  } catch (err) {
    if (!(err instanceof RespError) || err.prefix === 'NOAUTH') throw err;
  }
}

/** NOAUTH, from the PING or a SELECT, becomes an error that says what to do about it. */
function needsPassword(err: unknown): unknown {
  if (!(err instanceof RespError) || err.prefix !== 'NOAUTH') return err;
  return new RespError('NOAUTH server requires a password: give one in the URL (redis://:password@host) or as `password`', err.command);
}

export class ReconnectingConnection {
  readonly #address: string;
  readonly #opts: ResolvedRedisOptions;
  readonly #hooks: ReconnectingHooks;
  #conn: RespConnection | undefined;
  #waiters = new Set<Waiter>();
  #closed = false;
  #attempt = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #lastError: Error | undefined;

  constructor(opts: ResolvedRedisOptions, hooks: ReconnectingHooks = {}) {
    this.#opts = opts;
    this.#hooks = hooks;
    this.#address = `${opts.host}:${opts.port}`;
    hooks.sentinel?.onSwitch((to) => this.#masterMoved(to));
  }

  /** host:port of the server: with Sentinel, the master connected to (or last known). */
  get address(): string {
    const sentinel = this.#hooks.sentinel;
    if (!sentinel) return this.#address;
    if (this.#conn) return this.#conn.address;
    const m = sentinel.lastKnown;
    return m ? `${m.host}:${m.port}` : `sentinel:${sentinel.masterName}`;
  }

  /** The master moved elsewhere: a connection to the old one is dropped now, not at its first failure. */
  #masterMoved(to: NodeAddress): void {
    const conn = this.#conn;
    if (conn && conn.address !== `${to.host}:${to.port}`) conn.destroy(new ConnectionError(conn.address, `the master of "${this.#hooks.sentinel!.masterName}" moved to ${to.host}:${to.port}`));
  }

  /** The first connection: rejects (and gives up) if it cannot be made, so bad addresses and passwords fail fast. */
  async start(): Promise<void> {
    this.#install(await this.#open({ reconnected: false }));
  }

  /**
   * Connects without waiting, and goes on trying (paced by the ReconnectStrategy) if the first connect
   * fails: for a Redis Cluster node, whose loss is a routing problem to solve, not the caller's error.
   */
  startInBackground(): void {
    this.#open({ reconnected: false }).then(
      (conn) => this.#install(conn),
      (err: unknown) => {
        this.#lastError = err instanceof Error ? err : new Error(String(err));
        if (this.#closed) return;
        this.#hooks.onDown?.(this.#lastError);
        this.#scheduleReconnect(this.#lastError);
      },
    );
  }

  /** The live connection, if there is one now. */
  get current(): RespConnection | undefined {
    return this.#conn;
  }

  /**
   * Whether a script must go in full (EVAL) rather than by SHA: true unless it has been sent in full
   * on the live connection before, and then that is noted, as the caller sends it in full now. Sending
   * it in full the first time on each connection, instead of trying EVALSHA and falling back on
   * NOSCRIPT, keeps every command in the order it was sent: a fallback EVAL would go out after
   * whatever was sent behind its EVALSHA meanwhile (a clean-up queued behind an attempt, say). A
   * command sent while no connection is up goes in full, on whichever connection takes it.
   */
  scriptInFull(sha: string): boolean {
    const scripts = this.#conn?.scripts;
    if (!scripts) return true;
    if (scripts.has(sha)) return false;
    scripts.add(sha);
    return true;
  }

  send(args: ReadonlyArray<RespArg>, opts?: CommandOptions): Promise<RespValue> {
    const conn = this.#conn;
    const sent = conn ? conn.send(args, opts) : this.#sendLater(args, opts);
    return this.#hooks.sentinel ? sent.catch((err: unknown) => this.#demotedReply(err)) : sent;
  }

  /** Sentinel: READONLY or MASTERDOWN from the node we are on means a failover demoted it; reconnect to the new master. */
  #demotedReply(err: unknown): never {
    const conn = this.#conn;
    if (err instanceof RespError && DEMOTED.has(err.prefix) && conn) {
      const [host, port] = [conn.address.slice(0, conn.address.lastIndexOf(':')), Number(conn.address.slice(conn.address.lastIndexOf(':') + 1))];
      this.#hooks.sentinel!.demoted({ host, port });
      conn.destroy(new ConnectionError(conn.address, `no longer the master of "${this.#hooks.sentinel!.masterName}" (${err.prefix})`));
    }
    throw err;
  }

  async #sendLater(args: ReadonlyArray<RespArg>, opts?: CommandOptions): Promise<RespValue> {
    if (this.#closed) throw new ClosedError('Redis client');
    const timeoutMs = opts?.timeoutMs ?? this.#opts.commandTimeoutMs;
    const start = performance.now();
    const conn = await this.ready(timeoutMs, opts?.signal);
    return conn.send(args, { ...opts, timeoutMs: Math.max(1, timeoutMs - (performance.now() - start)) });
  }

  /** Waits for a live connection for at most timeoutMs. */
  ready(timeoutMs: number, signal?: AbortSignal): Promise<RespConnection> {
    if (this.#conn) return Promise.resolve(this.#conn);
    if (this.#closed) return Promise.reject(new ClosedError('Redis client'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        off();
        this.#waiters.delete(waiter);
      };
      const waiter: Waiter = {
        resolve: (conn) => (done(), resolve(conn)),
        reject: (err) => (done(), reject(err)),
      };
      const timer = timeoutMs > MAX_TIMER_MS ? undefined : setTimeout(() => {
        const cause = this.#lastError;
        const err = new TimeoutError(
          `${this.address}: not connected after ${timeoutMs} ms${cause ? ` (last error: ${cause.message})` : ''}`,
          timeoutMs,
        );
        waiter.reject(err);
      }, timeoutMs);
      const off = onAbort(signal, (reason) => waiter.reject(reason));
      this.#waiters.add(waiter);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    for (const w of [...this.#waiters]) w.reject(new ClosedError('Redis client'));
    const conn = this.#conn;
    this.#conn = undefined;
    await conn?.close();
  }

  async #open({ reconnected }: { reconnected: boolean }): Promise<RespConnection> {
    const o = this.#opts;
    const sentinel = this.#hooks.sentinel;
    const at = sentinel ? (sentinel.master ?? (await sentinel.discover())) : { host: o.host, port: o.port };
    const conn = await RespConnection.open({
      host: at.host,
      port: at.port,
      tls: o.tls,
      connectTimeoutMs: o.connectTimeoutMs,
      commandTimeoutMs: o.commandTimeoutMs,
      returnBuffers: o.returnBuffers,
      maxReplyBytes: o.maxReplyBytes,
      onPush: this.#hooks.onPush,
      onDropped: this.#hooks.onDropped,
    });
    try {
      if (o.password !== undefined) {
        await conn.send(o.username !== undefined ? ['AUTH', o.username, o.password] : ['AUTH', o.password]);
      }
      if (o.db !== 0) await conn.send(['SELECT', o.db]);
      // With Sentinel, ROLE asks too: its NOAUTH says a password is needed, as the PING's would.
      if (sentinel) {
        await checkMaster(conn, sentinel, at);
        // A failover announced while we connected: this node is the old master, even if it says otherwise.
        const now = sentinel.master;
        if (now && (now.host !== at.host || now.port !== at.port)) throw new ConnectionError(conn.address, `the master of "${sentinel.masterName}" moved to ${now.host}:${now.port} while connecting`);
      } else if (o.db === 0 && o.password === undefined && !reconnected && this.#hooks.askForPassword !== false) await checkNoAuth(conn, o.connectTimeoutMs);
      await this.#hooks.onConnect?.(conn, reconnected);
    } catch (err) {
      conn.destroy();
      throw needsPassword(err);
    }
    if (respChannels.connect.hasSubscribers) {
      respChannels.connect.publish({
        connection: conn.id,
        address: conn.address,
        tls: o.tls !== undefined,
        db: o.db,
        username: o.username,
        reconnected,
      });
    }
    return conn;
  }

  #install(conn: RespConnection): void {
    if (this.#closed) {
      conn.destroy();
      return;
    }
    this.#conn = conn;
    this.#attempt = 0;
    this.#lastError = undefined;
    conn.onClose((error) => {
      if (this.#conn === conn) this.#conn = undefined;
      this.#lastError = error;
      if (!this.#closed) {
        this.#hooks.onDown?.(error);
        this.#scheduleReconnect(error);
      }
    });
    for (const w of [...this.#waiters]) w.resolve(conn);
  }

  #scheduleReconnect(cause: Error | undefined): void {
    const delay = this.#opts.reconnect(this.#attempt++, cause);
    if (delay === false) {
      this.#closed = true;
      const err = new ConnectionError(this.address, 'gave up reconnecting', { cause });
      for (const w of [...this.#waiters]) w.reject(err);
      return;
    }
    this.#retryTimer = setTimeout(() => {
      this.#open({ reconnected: true }).then(
        (conn) => this.#install(conn),
        (err: unknown) => {
          this.#lastError = err instanceof Error ? err : new Error(String(err));
          if (!this.#closed) this.#hooks.onDown?.(this.#lastError);
          // A wrong password after a restart will not fix itself by retrying fast; the strategy paces it either way.
          if (!this.#closed) this.#scheduleReconnect(err instanceof WirelockError ? err : this.#lastError);
        },
      );
    }, delay);
    this.#retryTimer.unref?.();
  }
}
