/**
 * A throwaway Redis Sentinel setup: a master, its replicas and the sentinels that watch them, each on
 * a free loopback port in a temp dir, with `.failover()` to force a failover and wait until it is done.
 *
 *   const setup = await startRedisSentinel({ replicas: 1, sentinels: 3 });
 *   const client = await RedisClient.connect(setup.url);   // redis+sentinel://…/mymaster
 *   await setup.failover();                                 // the replica is the master now
 *   await setup.stop();
 *
 * Passwords go into the sentinels' config files quoted as redis reads them back, and every error that
 * leaves this module is redacted first: a server that fails to start echoes its config line.
 * A sentinel killed or paused through its handle is left out of master(), failover() and settled().
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { inspect } from 'node:util';
import { REDACTED } from '../diagnostics.js';
import { RedisClient } from '../resp/client.js';
import { findBinary, freePort, launch, removeDir, tempDir, terminate, type Launched, until as pollUntil } from './process.js';
import { startRedis, type RedisServer, type RedisServerOptions } from './servers.js';

/** Options for {@link startRedisSentinel}. */
export interface RedisSentinelOptions {
  /**
   * How many replicas of the master.
   * @defaultValue `1`
   */
  replicas?: number;
  /**
   * How many sentinels watch them (their quorum is a majority of them).
   * @defaultValue `3`
   */
  sentinels?: number;
  /**
   * The name the sentinels monitor the master under.
   * @defaultValue `'mymaster'`
   */
  masterName?: string;
  /**
   * The data nodes' password (requirepass and masterauth on every node, auth-pass on the sentinels).
   * Any characters but NUL (no server takes that as an argument); it never appears in an error.
   * @defaultValue none
   */
  password?: string;
  /**
   * The sentinels' own password (requirepass on each sentinel). Any characters; never in an error.
   * @defaultValue none
   */
  sentinelPassword?: string;
  /**
   * TLS only, everywhere: the data nodes and the sentinels serve TLS (no plain port), replicate over
   * it, and the sentinels reach the nodes over it. Client certificates are not asked for.
   * @defaultValue none: plain TCP
   */
  tls?: Pick<NonNullable<RedisServerOptions['tls']>, 'certFile' | 'keyFile' | 'caFile'>;
  /**
   * How long a master must be unreachable before the sentinels call it down (`down-after-milliseconds`).
   * @defaultValue `1000`
   */
  downAfterMs?: number;
  /**
   * How long, in ms, to wait in all for everything to be up, replicated and known to every sentinel;
   * each server's start gets what is left of it.
   * @defaultValue `20000`
   */
  startTimeoutMs?: number;
}

/** Where a data node listens, as the sentinels name it. */
export interface RedisAddress {
  /** Its IP address (127.0.0.1 here). */
  host: string;
  /** Its port. */
  port: number;
}

/** One running redis-sentinel of a {@link RedisSentinel} setup. */
export interface SentinelProcess {
  /** Always `'127.0.0.1'`. */
  readonly host: string;
  /** Its port. */
  readonly port: number;
  /** Its process ID. */
  readonly pid: number;
  /** SIGSTOP: it accepts connections and answers nothing. Until resume(), the setup does not ask it. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** kill -9. The setup does not ask it from then on. */
  kill(): Promise<void>;
}

/** A running Sentinel setup that {@link startRedisSentinel} started. */
export interface RedisSentinel {
  /** The name the sentinels monitor. */
  readonly masterName: string;
  /** The data nodes; the first was started as the master (after a failover, ask {@link RedisSentinel.master}). */
  readonly nodes: RedisServer[];
  /** The sentinels. */
  readonly sentinels: SentinelProcess[];
  /** `redis+sentinel://[:password@]127.0.0.1:p1,…/<masterName>` (`rediss+sentinel://` with `tls`), with the data nodes' password (never the sentinels'). */
  readonly url: string;
  /** The master as the first live sentinel (neither killed nor paused) that answers reports it. */
  master(): Promise<RedisAddress>;
  /**
   * Forces a failover and resolves with the new master. First waits for {@link RedisSentinel.settled}:
   * right after a failover the old master has not resynced yet, and promoting it would lose the
   * writes made since, so a second failover takes the ~10 s the sentinels need to turn it into a
   * replica. Then asks each live sentinel in turn (`SENTINEL FAILOVER`, 1 s per attempt) until one
   * accepts, and resolves once a sentinel has announced `+switch-master` from the master before and
   * the new one answers ROLE as master. With a data node down the setup never settles: it times out.
   * @param timeoutMs how long to wait in all, settling included (default 30000)
   */
  failover(timeoutMs?: number): Promise<RedisAddress>;
  /**
   * Resolves once the setup could fail over again: every live sentinel names the same master, every
   * other node is an in-sync replica of it, and every live sentinel knows them all (and the other
   * sentinels). After a failover that takes a while: the sentinels turn the old master into a replica
   * some seconds later, and it then resyncs.
   * @param timeoutMs how long to wait (default 30000)
   */
  settled(timeoutMs?: number): Promise<void>;
  /** Stops the sentinels and the nodes and removes their temp dirs. Idempotent. */
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const text = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString() : String(v));
const same = (a: RedisAddress, b: RedisAddress): boolean => a.host === b.host && a.port === b.port;

/** Polls `check` until it returns a value (see process.ts); errors name startRedisSentinel. */
function until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  return pollUntil('startRedisSentinel', what, timeoutMs, check, 150);
}

/** Pairs of a flat RESP map reply ([k1, v1, k2, v2, …]) as an object. */
function fields(reply: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const a = reply as unknown[];
  for (let i = 0; i + 1 < a.length; i += 2) out[text(a[i])] = text(a[i + 1]);
  return out;
}

/**
 * A config value as redis reads it back (sdssplitargs): in double quotes, `"` and `\` escaped, control
 * bytes as \xHH. Unquoted, a space splits a password into two arguments and a quote unbalances the line.
 */
function quote(value: string): string {
  const escaped = value.replace(/[\\"\x00-\x1f\x7f]/g, (c) =>
    c === '\\' || c === '"' ? `\\${c}` : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return `"${escaped}"`;
}

/**
 * `err` with each secret, in every form a message may show it (as is, as Node prints it, quoted for a
 * config file, as JSON, percent-encoded), replaced by [redacted]: in its message, its stack and its
 * causes, in place so that its class and code stay.
 */
function redacted(err: unknown, secrets: string[]): unknown {
  if (secrets.length === 0) return err;
  const forms = [...new Set(secrets.flatMap((s) => [s, inspect(s).slice(1, -1), quote(s).slice(1, -1), JSON.stringify(s).slice(1, -1), encodeURIComponent(s)]))]
    .filter((f) => f.length > 0)
    .sort((a, b) => b.length - a.length); // longest first: a form may contain a shorter one
  const hide = (s: string): string => forms.reduce((t, f) => t.replaceAll(f, REDACTED), s);
  if (!(err instanceof Error)) return new Error(hide(String(err)));
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    e.message = hide(e.message);
    if (e.stack) e.stack = hide(e.stack);
  }
  return err;
}

/** Awaits every start; the ones that succeeded go into `into`, in order, even when another failed (stop() needs them). */
async function startAll<T>(starts: Array<Promise<T>>, into: T[]): Promise<void> {
  const results = await Promise.allSettled(starts);
  for (const r of results) if (r.status === 'fulfilled') into.push(r.value);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** A sentinel as this module keeps it: what its handle shows, and what stop() and live() need. */
interface Sentinel {
  host: string;
  port: number;
  dir: string;
  launched: Launched;
  /** Paused through its handle (and not resumed since). */
  paused: boolean;
}

/**
 * Starts a master, `replicas` replicas and `sentinels` sentinels on free loopback ports, and resolves
 * once a failover could happen: every replica is in sync and every sentinel knows every replica and
 * every other sentinel. Throws an Error naming the Debian package if redis-server or redis-sentinel
 * is missing. Everything is killed, and its dirs removed, when the process exits, even without stop().
 */
export async function startRedisSentinel(opts: RedisSentinelOptions = {}): Promise<RedisSentinel> {
  const { replicas = 1, sentinels: count = 3, masterName = 'mymaster', password, sentinelPassword, downAfterMs = 1000, startTimeoutMs = 20_000, tls } = opts;
  const secrets = [password, sentinelPassword].filter((p): p is string => p !== undefined && p !== '');
  const ca = tls && readFileSync(tls.caFile);
  const binary = findBinary('redis-sentinel', 'redis-sentinel');
  const nodes: RedisServer[] = [];
  const sentinels: Sentinel[] = [];
  const clients = new Set<RedisClient>();
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.allSettled([...clients].map((c) => c.close()));
    await Promise.allSettled(sentinels.map(async (s) => {
      await terminate(s.launched);
      removeDir(s.dir);
    }));
    await Promise.allSettled(nodes.map((n) => n.stop()));
  };
  const live = (): Sentinel[] => sentinels.filter((s) => !s.paused && s.launched.child.exitCode === null && s.launched.child.signalCode === null);
  const connect = async (at: RedisAddress, pass: string | undefined): Promise<RedisClient> => {
    const c = await RedisClient.connect({ host: at.host, port: at.port, password: pass, tls: ca && { ca }, connectTimeoutMs: 1000, commandTimeoutMs: 1000, reconnect: () => false });
    clients.add(c);
    return c;
  };
  const release = async (c: RedisClient): Promise<void> => {
    clients.delete(c);
    await c.close();
  };
  /** One command on a short-lived connection. */
  const ask = async (at: RedisAddress, pass: string | undefined, args: Array<string | number>): Promise<unknown> => {
    const c = await connect(at, pass);
    try {
      return await c.send(args);
    } finally {
      await release(c);
    }
  };

  const quorum = Math.floor(count / 2) + 1;
  const name = quote(masterName);
  const sentinelConfig = (port: number, dir: string, watched: RedisAddress): string => `${[
    ...(tls
      ? ['port 0', `tls-port ${port}`, `tls-cert-file ${quote(tls.certFile)}`, `tls-key-file ${quote(tls.keyFile)}`, `tls-ca-cert-file ${quote(tls.caFile)}`, 'tls-auth-clients no', 'tls-replication yes']
      : [`port ${port}`]),
    'bind 127.0.0.1',
    `dir ${quote(dir)}`,
    'logfile ""',
    `sentinel monitor ${name} ${watched.host} ${watched.port} ${quorum}`,
    `sentinel down-after-milliseconds ${name} ${downAfterMs}`,
    `sentinel failover-timeout ${name} 10000`,
    `sentinel parallel-syncs ${name} 1`,
    ...(password === undefined ? [] : [`sentinel auth-pass ${name} ${quote(password)}`]),
    ...(sentinelPassword === undefined ? [] : [`requirepass ${quote(sentinelPassword)}`]),
  ].join('\n')}\n`;
  /** One sentinel on a free port; a port taken between freePort() and the launch is retried with another. */
  const startSentinel = async (watched: RedisAddress, timeoutMs: () => number): Promise<Sentinel> => {
    const dir = tempDir('sentinel');
    const conf = path.join(dir, 'sentinel.conf');
    let lastError: unknown;
    for (let tries = 0; tries < 5; tries++) {
      const port = await freePort();
      writeFileSync(conf, sentinelConfig(port, dir, watched), { mode: 0o600 }); // a sentinel rewrites its own config file
      try {
        const launched = await launch(binary, [conf], /\+monitor master/, timeoutMs());
        return { host: '127.0.0.1', port, dir, launched, paused: false };
      } catch (err) {
        lastError = err;
        if (!/Address already in use/i.test(String(err))) break;
      }
    }
    removeDir(dir);
    throw lastError;
  };

  const masterOf = async (s: Sentinel): Promise<RedisAddress> => {
    const reply = (await ask(s, sentinelPassword, ['SENTINEL', 'get-master-addr-by-name', masterName])) as unknown[] | null;
    if (!reply) throw new Error(`sentinel ${s.port} does not monitor ${masterName}`);
    return { host: text(reply[0]), port: Number(text(reply[1])) };
  };
  const master = async (): Promise<RedisAddress> => {
    let last: unknown = new Error('every sentinel is killed or paused');
    for (const s of live()) {
      try {
        return await masterOf(s);
      } catch (err) {
        last = err;
      }
    }
    throw new Error(`startRedisSentinel: no sentinel answered: ${(last as Error).message}`);
  };

  /** One look at the setup: throws what is not settled yet (see RedisSentinel.settled). */
  const checkSettled = async (): Promise<true> => {
    const watching = live();
    if (watching.length === 0) throw new Error('every sentinel is killed or paused');
    const named = await Promise.all(watching.map(masterOf));
    const m = named[0]!;
    if (!named.every((a) => same(a, m))) throw new Error(`the sentinels name different masters (ports ${named.map((a) => a.port).join(', ')})`);
    await Promise.all(nodes.filter((n) => n.port !== m.port).map(async (node) => {
      const info = text(await ask(node, password, ['INFO', 'replication']));
      const inSync = /master_link_status:up/.test(info) && new RegExp(`master_port:${m.port}\\b`).test(info);
      if (!inSync) throw new Error(`node ${node.port} not (yet) an in-sync replica of ${m.port}`);
    }));
    await Promise.all(watching.map(async (s) => {
      const known = (await ask(s, sentinelPassword, ['SENTINEL', 'replicas', masterName])) as unknown[];
      const others = (await ask(s, sentinelPassword, ['SENTINEL', 'sentinels', masterName])) as unknown[];
      const up = known.map(fields).filter((r) => !/s_down|o_down|disconnected/.test(r.flags ?? ''));
      if (up.length !== replicas || others.length !== count - 1) {
        throw new Error(`sentinel ${s.port} knows ${up.length} of ${replicas} replicas up and ${others.length} of ${count - 1} other sentinels`);
      }
    }));
    return true;
  };
  const settled = async (timeoutMs = 30_000): Promise<void> => {
    await until('every node in sync and known to every live sentinel', timeoutMs, checkSettled);
  };

  const failover = async (timeoutMs = 30_000): Promise<RedisAddress> => {
    const deadline = performance.now() + timeoutMs;
    const left = (): number => Math.max(1, deadline - performance.now());
    // 1. Settled first. Right after a failover the old master is still a master without the writes made
    //    since, yet the sentinels already list it as a replica and may promote it (its own replica then
    //    resyncs from it and drops them too). Settled also means the live sentinels agree on the master,
    //    so `before` is the master and not the view of a sentinel that has not caught up.
    await settled(left());
    const before = await master();
    // 2. Listen on every live sentinel before asking: the one that accepts announces first, the others
    //    follow. Only a switch from `before` counts, not a sentinel catching up with an earlier one.
    let moved: RedisAddress | undefined;
    const onSwitch = (message: unknown): void => {
      // `<name> <old ip> <old port> <new ip> <new port>`: the addresses are the last four words (a name may hold spaces).
      const words = text(message).split(' ');
      const [fromHost = '', fromPort, toHost = '', toPort] = words.splice(-4);
      const from = { host: fromHost, port: Number(fromPort) };
      const to = { host: toHost, port: Number(toPort) };
      if (words.join(' ') === masterName && same(from, before) && !same(to, before)) moved ??= to;
    };
    const listeners: RedisClient[] = [];
    const subscribed = await Promise.allSettled(live().map(async (s) => {
      const c = await connect(s, sentinelPassword);
      listeners.push(c);
      await c.subscribe('+switch-master', onSwitch);
    }));
    try {
      const refused = subscribed.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (refused.length === subscribed.length) throw new Error(`startRedisSentinel: no sentinel to listen on${refused[0] ? `: ${(refused[0].reason as Error).message}` : ''}`);
      // 3. Each live sentinel in turn, 1 s per attempt (connect and command timeouts), until one accepts.
      //    INPROG: a failover is under way there, and asking the next would start a second one, so wait.
      //    NOGOODSLAVE or no answer: ask the next.
      await until('a sentinel accepting SENTINEL FAILOVER', left(), async () => {
        let last: unknown = new Error('every sentinel is killed or paused');
        for (const s of live()) {
          try {
            if ((await ask(s, sentinelPassword, ['SENTINEL', 'FAILOVER', masterName])) === 'OK') return true;
          } catch (err) {
            last = err;
            if (/INPROG/.test(String(err))) break;
          }
        }
        throw last;
      });
      const to = await until(`+switch-master from ${before.host}:${before.port} announced`, left(), async () => moved);
      await until(`${to.host}:${to.port} answering ROLE master`, left(), async () =>
        text(((await ask(to, password, ['ROLE'])) as unknown[])[0]) === 'master' || undefined);
      return to;
    } finally {
      await Promise.allSettled(listeners.map(release));
    }
  };

  const deadline = performance.now() + startTimeoutMs;
  const left = (): number => Math.max(1, deadline - performance.now());
  try {
    // No 5 s wait before a full sync (diskless, as persistence is off): a resync after a failover is quick.
    const auth = [
      '--repl-diskless-sync-delay', '0',
      ...(password === undefined ? [] : ['--requirepass', password, '--masterauth', password]),
      ...(tls ? ['--tls-replication', 'yes'] : []),
    ];
    const first = await startRedis({ password, args: auth, tls, startTimeoutMs: left() });
    nodes.push(first);
    await startAll(Array.from({ length: replicas }, () =>
      startRedis({ password, tls, startTimeoutMs: left(), args: [...auth, '--replicaof', first.host, String(first.port)] })), nodes);
    await startAll(Array.from({ length: count }, () => startSentinel(first, left)), sentinels);
    await settled(left()); // ready when a failover could happen
  } catch (err) {
    await stop();
    throw redacted(err, secrets);
  }

  /** Errors out of the setup's methods are redacted too. */
  const guard = <A extends unknown[], R>(fn: (...args: A) => Promise<R>) => (...args: A): Promise<R> =>
    fn(...args).catch((err: unknown) => {
      throw redacted(err, secrets);
    });
  const auth = password === undefined ? '' : `:${encodeURIComponent(password)}@`;
  return {
    masterName,
    nodes,
    sentinels: sentinels.map((s): SentinelProcess => ({
      host: s.host,
      port: s.port,
      pid: s.launched.child.pid!,
      pause: () => {
        s.paused = true;
        s.launched.child.kill('SIGSTOP');
      },
      resume: () => {
        s.launched.child.kill('SIGCONT');
        s.paused = false;
      },
      kill: async () => {
        s.launched.child.kill('SIGKILL');
        await s.launched.exited;
      },
    })),
    url: `${tls ? 'rediss' : 'redis'}+sentinel://${auth}${sentinels.map((s) => `${s.host}:${s.port}`).join(',')}/${encodeURIComponent(masterName)}`,
    master: guard(master),
    failover: guard(failover),
    settled: guard((timeoutMs?: number) => settled(timeoutMs)),
    stop,
  };
}
