/**
 * Redis Sentinel, on the wire: which node is the master now, and the news that it moved.
 *
 * - Discovery: the sentinels are asked in turn, starting with the last one that answered,
 *   `SENTINEL get-master-addr-by-name <name>` (a [host, port] pair, or nil for a name it does not
 *   monitor). The first address given wins; the client connecting there confirms it with `ROLE`
 *   (reconnecting.ts), since a sentinel may not have seen a failover yet.
 * - Following: one connection to a sentinel is SUBSCRIBEd to `+switch-master` ("<name> <old host>
 *   <old port> <new host> <new port>"). When it names our master, `onSwitch` is called, and the
 *   client drops its connections to the old master at once instead of waiting to fail on them. If
 *   that sentinel goes, the next one is subscribed to (the pause between tries backs off).
 * - A sentinel's own credentials (`sentinelUsername`/`sentinelPassword`) and TLS (`sentinelTls`)
 *   are separate from the data nodes'. No password appears in an error.
 */
import { RespConnection } from './connection.js';
import type { ResolvedRedisOptions, ResolvedSentinel } from './options.js';
import { ConnectionError, RespError } from '../errors.js';
import { backoffMs } from '../abort.js';
import { respChannels } from '../diagnostics.js';

/** A host and port. */
export interface NodeAddress {
  host: string;
  port: number;
}

const text = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString() : String(v));

/** Why the master moved, in `wirelock:resp:master` events. */
export type MasterChangeCause = 'discovered' | 'switch-master';

/** Asks the sentinels for the master of one name, and follows `+switch-master` for it. */
export class SentinelWatch {
  readonly #s: ResolvedSentinel;
  readonly #opts: ResolvedRedisOptions;
  /** The sentinel to ask first: the last one that answered. */
  #first = 0;
  /** The master last found or announced (kept after a demotion, to tell a move from the first discovery). */
  #master: NodeAddress | undefined;
  /** Whether #master is still worth connecting to (false once that node turned out demoted). */
  #trusted = false;
  #follower: RespConnection | undefined;
  #following = false;
  #closed = false;
  #retry: NodeJS.Timeout | undefined;
  #failures = 0;
  readonly #onSwitch = new Set<(to: NodeAddress, cause: MasterChangeCause) => void>();

  constructor(opts: ResolvedRedisOptions) {
    this.#opts = opts;
    this.#s = opts.sentinel!;
  }

  /** The master's name, as the sentinels know it. */
  get masterName(): string {
    return this.#s.masterName;
  }

  /** The master to connect to: the last found or announced, unless it turned out demoted (then ask again). */
  get master(): NodeAddress | undefined {
    return this.#trusted ? this.#master : undefined;
  }

  /** The master last found or announced, demoted or not (undefined before the first discovery). */
  get lastKnown(): NodeAddress | undefined {
    return this.#master;
  }

  /** Calls `listener` whenever the master moves: a `+switch-master`, or a discovery (after a node turned out demoted) that names another node. */
  onSwitch(listener: (to: NodeAddress, cause: MasterChangeCause) => void): () => void {
    this.#onSwitch.add(listener);
    return () => this.#onSwitch.delete(listener);
  }

  /**
   * The master's address, from the first sentinel that knows it. Rejects with ConnectionError when no
   * sentinel answers, or none monitors the name (the message lists what each said).
   */
  async discover(): Promise<NodeAddress> {
    const said: string[] = [];
    const n = this.#s.sentinels.length;
    for (let i = 0; i < n; i++) {
      const at = (this.#first + i) % n;
      const sentinel = this.#s.sentinels[at]!;
      const where = `${sentinel.host}:${sentinel.port}`;
      let conn: RespConnection | undefined;
      try {
        conn = await this.#connect(sentinel);
        const reply = await conn.send(['SENTINEL', 'get-master-addr-by-name', this.#s.masterName]);
        if (!Array.isArray(reply) || reply.length < 2) {
          said.push(`${where}: does not monitor "${this.#s.masterName}"`);
          continue;
        }
        const master = { host: text(reply[0]), port: Number(text(reply[1])) };
        this.#first = at;
        this.#moved(master, 'discovered');
        return master;
      } catch (err) {
        said.push(`${where}: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        conn?.destroy();
      }
    }
    throw new ConnectionError(`sentinel:${this.#s.masterName}`, `no sentinel gave the master of "${this.#s.masterName}" (${said.join('; ')})`);
  }

  /** The node at `at` answered ROLE as something other than master: the master moved, ask again. */
  demoted(at: NodeAddress): void {
    if (this.#master && this.#master.host === at.host && this.#master.port === at.port) this.#trusted = false;
  }

  /** Starts following `+switch-master` (idempotent). Nothing is awaited: a failure retries in the background. */
  follow(): void {
    if (this.#following || this.#closed) return;
    this.#following = true;
    void this.#subscribe();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
    this.#follower?.destroy();
    this.#follower = undefined;
  }

  async #subscribe(): Promise<void> {
    const n = this.#s.sentinels.length;
    const sentinel = this.#s.sentinels[(this.#first + this.#failures) % n]!;
    try {
      const conn = await this.#connect(sentinel, (channel, message) => {
        if (channel !== '+switch-master') return;
        const [name, , , host, port] = text(message).split(' ');
        if (name === this.#s.masterName && host && port) this.#moved({ host, port: Number(port) }, 'switch-master');
      });
      if (this.#closed) return conn.destroy();
      await conn.send(['SUBSCRIBE', '+switch-master']);
      this.#follower = conn;
      this.#failures = 0;
      conn.onClose(() => {
        if (this.#follower === conn) this.#follower = undefined;
        if (!this.#closed) this.#again();
      });
      // A failover while nobody listened: ask once more now that someone does.
      await this.discover().catch(() => undefined);
    } catch {
      this.#again();
    }
  }

  #again(): void {
    if (this.#closed) return;
    this.#retry = setTimeout(() => void this.#subscribe(), backoffMs(this.#failures++, { capMs: 2000, jitterMs: 100 }));
    this.#retry.unref?.();
  }

  #moved(to: NodeAddress, cause: MasterChangeCause): void {
    const from = this.#master;
    this.#trusted = true;
    if (from && from.host === to.host && from.port === to.port) return;
    this.#master = to;
    if (respChannels.master.hasSubscribers) {
      respChannels.master.publish({ masterName: this.#s.masterName, address: `${to.host}:${to.port}`, previous: from && `${from.host}:${from.port}`, cause });
    }
    if (from === undefined && cause === 'discovered') return; // the first discovery is no move
    for (const listener of [...this.#onSwitch]) listener(to, cause);
  }

  /** A connection to one sentinel, logged in with the sentinels' own credentials. */
  async #connect(at: NodeAddress, onPush?: (channel: string, message: string | Buffer) => void): Promise<RespConnection> {
    const o = this.#opts;
    const conn = await RespConnection.open({
      host: at.host,
      port: at.port,
      tls: this.#s.tls,
      connectTimeoutMs: o.connectTimeoutMs,
      commandTimeoutMs: o.commandTimeoutMs,
      onPush,
    });
    try {
      if (this.#s.password !== undefined) {
        await conn.send(this.#s.username !== undefined ? ['AUTH', this.#s.username, this.#s.password] : ['AUTH', this.#s.password]);
      }
    } catch (err) {
      conn.destroy();
      if (err instanceof RespError && (err.prefix === 'WRONGPASS' || err.prefix === 'ERR')) throw new ConnectionError(`${at.host}:${at.port}`, `sentinel refused its credentials (${err.prefix})`, { cause: err });
      throw err;
    }
    return conn;
  }
}
