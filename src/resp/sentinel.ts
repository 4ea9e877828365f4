/**
 * Redis Sentinel, on the wire: which node is the master now, and the news that it moved.
 *
 * - Discovery: every sentinel is asked at once, `SENTINEL MASTER <name>` (its address and the
 *   config epoch of that configuration). Once a majority has answered, the highest epoch wins, and
 *   an answer older than what the client knows is not taken: a sentinel that has not yet heard of a
 *   failover names the old master. The client connecting there confirms it with `ROLE`
 *   (reconnecting.ts).
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
  /** The highest config epoch a sentinel has named the master under: older answers are not taken. */
  #epoch = -1;
  /** How many `+switch-master` announcements have been taken: a discovery begun before one is older news. */
  #switches = 0;
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
   * The master's address, as the sentinels see it. All are asked at once (`SENTINEL MASTER <name>`);
   * once a majority has answered (or all have settled), the answer with the highest config epoch
   * wins: a sentinel that has not yet heard of a failover still names the old master, which may be
   * back and still believe it is the master. An answer older than what this client already knows
   * (a lower epoch, or a `+switch-master` heard while asking) is not taken. Rejects with
   * ConnectionError when no sentinel answers, or none monitors the name (the message lists what each
   * said).
   */
  async discover(): Promise<NodeAddress> {
    const switches = this.#switches;
    const sentinels = this.#s.sentinels;
    const majority = Math.floor(sentinels.length / 2) + 1;
    const said: string[] = [];
    const answers: Array<{ master: NodeAddress; epoch: number }> = [];
    await new Promise<void>((resolve) => {
      let settled = 0;
      for (const sentinel of sentinels) {
        const where = `${sentinel.host}:${sentinel.port}`;
        void this.#ask(sentinel)
          .then(
            (answer) => (answer ? void answers.push(answer) : void said.push(`${where}: does not monitor "${this.#s.masterName}"`)),
            (err: unknown) => void said.push(`${where}: ${err instanceof Error ? err.message : String(err)}`),
          )
          .finally(() => {
            settled++;
            if (answers.length >= majority || settled === sentinels.length) resolve();
          });
      }
    });
    if (answers.length === 0) {
      throw new ConnectionError(`sentinel:${this.#s.masterName}`, `no sentinel gave the master of "${this.#s.masterName}" (${said.join('; ')})`);
    }
    const best = answers.reduce((a, b) => (b.epoch > a.epoch ? b : a));
    const known = this.#master;
    // Newer news arrived while we asked, or these sentinels are behind what we know: keep ours.
    if (known && (this.#switches !== switches || best.epoch < this.#epoch)) return known;
    this.#epoch = best.epoch;
    this.#moved(best.master, 'discovered');
    return best.master;
  }

  /** One sentinel's view: the master's address and the config epoch it is known under; undefined if it does not monitor the name. */
  async #ask(sentinel: NodeAddress): Promise<{ master: NodeAddress; epoch: number } | undefined> {
    const conn = await this.#connect(sentinel);
    try {
      const reply = await conn.send(['SENTINEL', 'MASTER', this.#s.masterName]).catch((err: unknown) => {
        if (err instanceof RespError && /no such master/i.test(err.message)) return undefined;
        throw err;
      });
      if (!Array.isArray(reply)) return undefined;
      const f = new Map<string, string>();
      for (let i = 0; i + 1 < reply.length; i += 2) f.set(text(reply[i]), text(reply[i + 1]));
      return { master: { host: f.get('ip')!, port: Number(f.get('port')) }, epoch: Number(f.get('config-epoch') ?? 0) };
    } finally {
      conn.destroy();
    }
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
    // The first sentinel, then the next one after each failure to subscribe.
    const sentinel = this.#s.sentinels[this.#failures % n]!;
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
    if (cause === 'switch-master') this.#switches++;
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
