/**
 * A throwaway Redis Sentinel setup: a master, its replicas and the sentinels that watch them, each on
 * a free loopback port in a temp dir, with `.failover()` to force a failover and wait until it is done.
 *
 *   const setup = await startRedisSentinel({ replicas: 1, sentinels: 3 });
 *   const client = await RedisClient.connect(setup.url);   // redis+sentinel://…/mymaster
 *   await setup.failover();                                 // the replica is the master now
 *   await setup.stop();
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { RedisClient } from '../resp/client.js';
import { findBinary, freePort, launch, removeDir, tempDir, terminate, type Launched } from './process.js';
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
   * @defaultValue none
   */
  password?: string;
  /**
   * The sentinels' own password (requirepass on each sentinel).
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
   * How long, in ms, to wait for everything to be up, replicated and known to every sentinel.
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
  /** SIGSTOP: it accepts connections and answers nothing. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** kill -9. */
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
  /** The master as the first sentinel that answers reports it. */
  master(): Promise<RedisAddress>;
  /**
   * Forces a failover (`SENTINEL FAILOVER`) and resolves with the new master once a sentinel has
   * announced `+switch-master` and that node answers ROLE as master.
   * @param timeoutMs how long to wait (default 20000)
   */
  failover(timeoutMs?: number): Promise<RedisAddress>;
  /**
   * Resolves once the setup could fail over again: every other node is an in-sync replica of the
   * master, and every sentinel knows them all. After a failover that takes a while: the sentinels
   * turn the old master into a replica some seconds later, and it then resyncs.
   * @param timeoutMs how long to wait (default 30000)
   */
  settled(timeoutMs?: number): Promise<void>;
  /** Stops the sentinels and the nodes and removes their temp dirs. Idempotent. */
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const text = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString() : String(v));

/** Polls `check` until it returns a value (not undefined) or `timeoutMs` passes; then throws with `what` and the last error. */
async function until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) throw new Error(`startRedisSentinel: ${what} within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(150);
  }
}

/** Pairs of a flat RESP map reply ([k1, v1, k2, v2, …]) as an object. */
function fields(reply: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const a = reply as unknown[];
  for (let i = 0; i + 1 < a.length; i += 2) out[text(a[i])] = text(a[i + 1]);
  return out;
}

/**
 * Starts a master, `replicas` replicas and `sentinels` sentinels on free loopback ports, and resolves
 * once a failover could happen: every replica is in sync and every sentinel knows every replica and
 * every other sentinel. Throws an Error naming the Debian package if redis-server or redis-sentinel
 * is missing. Everything is killed, and its dirs removed, when the process exits, even without stop().
 */
export async function startRedisSentinel(opts: RedisSentinelOptions = {}): Promise<RedisSentinel> {
  const { replicas = 1, sentinels: count = 3, masterName = 'mymaster', password, sentinelPassword, downAfterMs = 1000, startTimeoutMs = 20_000, tls } = opts;
  const ca = tls && readFileSync(tls.caFile);
  const binary = findBinary('redis-sentinel', 'redis-sentinel');
  const nodes: RedisServer[] = [];
  const sentinels: Array<SentinelProcess & { launched: Launched; dir: string }> = [];
  const clients: RedisClient[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await Promise.allSettled(clients.map((c) => c.close()));
    await Promise.allSettled(sentinels.map(async (s) => {
      await terminate(s.launched);
      removeDir(s.dir);
    }));
    await Promise.allSettled(nodes.map((n) => n.stop()));
  };
  const connect = async (at: { host: string; port: number }, pass: string | undefined): Promise<RedisClient> => {
    const c = await RedisClient.connect({ host: at.host, port: at.port, password: pass, tls: ca && { ca }, connectTimeoutMs: 1000, commandTimeoutMs: 1000, reconnect: () => false });
    clients.push(c);
    return c;
  };
  /** One command on a short-lived connection. */
  const ask = async (at: { host: string; port: number }, pass: string | undefined, args: Array<string | number>): Promise<unknown> => {
    const c = await connect(at, pass);
    try {
      return await c.send(args);
    } finally {
      await c.close();
      clients.splice(clients.indexOf(c), 1);
    }
  };

  try {
    // No 5 s wait before a full sync (diskless, as persistence is off): a resync after a failover is quick.
    const auth = [
      '--repl-diskless-sync-delay', '0',
      ...(password === undefined ? [] : ['--requirepass', password, '--masterauth', password]),
      ...(tls ? ['--tls-replication', 'yes'] : []),
    ];
    const master = await startRedis({ password, args: auth, tls });
    nodes.push(master);
    nodes.push(...(await Promise.all(Array.from({ length: replicas }, () =>
      startRedis({ password, tls, args: [...auth, '--replicaof', master.host, String(master.port)] })))));

    const quorum = Math.floor(count / 2) + 1;
    for (let i = 0; i < count; i++) {
      const port = await freePort();
      const dir = tempDir('sentinel');
      const conf = path.join(dir, 'sentinel.conf');
      const lines = [
        ...(tls
          ? ['port 0', `tls-port ${port}`, `tls-cert-file ${tls.certFile}`, `tls-key-file ${tls.keyFile}`, `tls-ca-cert-file ${tls.caFile}`, 'tls-auth-clients no', 'tls-replication yes']
          : [`port ${port}`]),
        'bind 127.0.0.1',
        `dir ${dir}`,
        'logfile ""',
        `sentinel monitor ${masterName} ${master.host} ${master.port} ${quorum}`,
        `sentinel down-after-milliseconds ${masterName} ${downAfterMs}`,
        `sentinel failover-timeout ${masterName} 10000`,
        `sentinel parallel-syncs ${masterName} 1`,
      ];
      if (password !== undefined) lines.push(`sentinel auth-pass ${masterName} ${password}`);
      if (sentinelPassword !== undefined) lines.push(`requirepass ${sentinelPassword}`);
      writeFileSync(conf, `${lines.join('\n')}\n`, { mode: 0o600 }); // a sentinel rewrites its own config file
      const launched = await launch(binary, [conf], /\+monitor master/, startTimeoutMs);
      sentinels.push({
        host: '127.0.0.1',
        port,
        launched,
        dir,
        get pid() {
          return launched.child.pid!;
        },
        pause: () => void launched.child.kill('SIGSTOP'),
        resume: () => void launched.child.kill('SIGCONT'),
        kill: async () => {
          launched.child.kill('SIGKILL');
          await launched.exited;
        },
      });
    }
  } catch (err) {
    await stop();
    throw err;
  }

  /** Every node but the master an in-sync replica of it, known (and up) to every sentinel, as is every other sentinel. */
  const settled = async (timeoutMs = 30_000, at?: { host: string; port: number }): Promise<void> => {
    const deadline = performance.now() + timeoutMs;
    const left = (): number => Math.max(1, deadline - performance.now());
    const m = at ?? (await master());
    for (const node of nodes.filter((n) => n.port !== m.port)) {
      await until(`node ${node.port} an in-sync replica of ${m.port}`, left(), async () => {
        const info = text(await ask(node, password, ['INFO', 'replication']));
        return /master_link_status:up/.test(info) && new RegExp(`master_port:${m.port}\\b`).test(info) ? true : undefined;
      });
    }
    for (const s of sentinels) {
      await until(`sentinel ${s.port} knowing ${replicas} replicas and ${count - 1} other sentinels`, left(), async () => {
        const known = (await ask(s, sentinelPassword, ['SENTINEL', 'replicas', masterName])) as unknown[];
        const others = (await ask(s, sentinelPassword, ['SENTINEL', 'sentinels', masterName])) as unknown[];
        const up = known.map(fields).filter((r) => !/s_down|o_down|disconnected/.test(r.flags ?? ''));
        return up.length === replicas && others.length === count - 1 ? true : undefined;
      });
    }
  };
  try {
    // Ready when a failover could happen.
    await settled(startTimeoutMs, { host: nodes[0]!.host, port: nodes[0]!.port });
  } catch (err) {
    await stop();
    throw err;
  }

  const master = async (): Promise<{ host: string; port: number }> => {
    let last: unknown;
    for (const s of sentinels) {
      try {
        const reply = (await ask(s, sentinelPassword, ['SENTINEL', 'get-master-addr-by-name', masterName])) as unknown[];
        return { host: text(reply[0]), port: Number(text(reply[1])) };
      } catch (err) {
        last = err;
      }
    }
    throw new Error(`no sentinel answered: ${(last as Error)?.message}`);
  };

  const failover = async (timeoutMs = 20_000): Promise<{ host: string; port: number }> => {
    const before = await master();
    const deadline = performance.now() + timeoutMs;
    const listener = await connect(sentinels[0]!, sentinelPassword);
    try {
      let announced: { host: string; port: number } | undefined;
      await listener.subscribe('+switch-master', (m) => {
        const [name, , , host, port] = text(m).split(' ');
        if (name === masterName && host && port) announced = { host, port: Number(port) };
      });
      // The sentinels may still be busy with the previous failover (INPROG) or not yet see a good replica (NOGOODSLAVE).
      await until('SENTINEL FAILOVER accepted', timeoutMs, async () => {
        try {
          return (await ask(sentinels[0]!, sentinelPassword, ['SENTINEL', 'FAILOVER', masterName])) === 'OK' ? true : undefined;
        } catch (err) {
          if (/INPROG|NOGOODSLAVE/.test(String(err))) return undefined;
          throw err;
        }
      });
      const moved = await until('+switch-master announced', Math.max(1, deadline - performance.now()), async () =>
        announced && (announced.port !== before.port || announced.host !== before.host) ? announced : undefined);
      await until(`${moved.host}:${moved.port} answering ROLE master`, Math.max(1, deadline - performance.now()), async () =>
        text(((await ask(moved, password, ['ROLE'])) as unknown[])[0]) === 'master' || undefined);
      return moved;
    } finally {
      await listener.close();
      clients.splice(clients.indexOf(listener), 1);
    }
  };

  const auth = password === undefined ? '' : `:${encodeURIComponent(password)}@`;
  return {
    masterName,
    nodes,
    sentinels: sentinels.map(({ launched: _l, dir: _d, ...s }) => s),
    url: `${tls ? 'rediss' : 'redis'}+sentinel://${auth}${sentinels.map((s) => `${s.host}:${s.port}`).join(',')}/${encodeURIComponent(masterName)}`,
    master,
    failover,
    settled: (timeoutMs?: number) => settled(timeoutMs),
    stop,
  };
}
