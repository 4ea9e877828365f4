/**
 * wirelock/testing: throwaway local servers for tests, demos and benchmarks.
 *
 *   const redis = await startRedis();          // redis-server on a free loopback port, in a temp dir
 *   const client = await RedisClient.connect(redis.url);
 *   ...
 *   await redis.stop();                        // also done for you if the process exits
 *
 * A missing binary is an Error naming the Debian package to install; servers never outlive the process.
 *
 * @module wirelock/testing
 */
import { findBinary, freePort, launch, removeDir, tempDir, terminate, type Launched } from './process.js';

export { freePort } from './process.js';

/** Options for {@link startRedis} and {@link startRedisNodes}. */
export interface RedisServerOptions {
  /**
   * requirepass: clients must AUTH with this password.
   * @defaultValue none: no password
   */
  password?: string;
  /** Extra redis-server arguments, e.g. ['--user', 'app', 'on', '>pw', '~app:*', '+@all']. */
  args?: string[];
  /** Serve TLS only (plain port disabled) with these PEM files. */
  tls?: {
    /** The server's certificate (`--tls-cert-file`). */
    certFile: string;
    /** The server certificate's private key (`--tls-key-file`). */
    keyFile: string;
    /** The CA that client certificates are checked against (`--tls-ca-cert-file`). */
    caFile: string;
    /**
     * Whether clients must present a certificate (`--tls-auth-clients`).
     * @defaultValue `'no'`
     */
    authClients?: 'yes' | 'no' | 'optional';
  };
  /**
   * How long to wait, in ms, for redis-server to say it is ready before failing.
   * @defaultValue `10000`
   */
  startTimeoutMs?: number;
}

/** A running redis-server that {@link startRedis} started, and the handles to disturb and stop it. */
export interface RedisServer {
  /** Always `'127.0.0.1'`: the server listens on loopback only. */
  readonly host: string;
  /** The port it listens on (the TLS port when `tls` is set), picked free by the OS. */
  readonly port: number;
  /** redis:// (or rediss://) URL, with the password when one was set. */
  readonly url: string;
  /** Its temp dir (its working dir; nothing is persisted there), removed by stop(). */
  readonly dir: string;
  /** The process ID of the current redis-server (it changes with restart()). */
  readonly pid: number;
  /** SIGSTOP: the server keeps accepting TCP connections but answers nothing. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** kill -9 (no cleanup); stop() still removes the temp dir. */
  kill(): Promise<void>;
  /** Starts the server again on the same port (after kill/stop), with the same options. */
  restart(): Promise<void>;
  /** Graceful stop and temp dir removal. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a redis-server on a free loopback port (127.0.0.1), in a fresh temp dir (under /dev/shm when
 * writable), with persistence off, and resolves once it is ready. A port taken meanwhile is retried with
 * another. Throws an Error naming the Debian package if redis-server is not on PATH. The server is
 * killed, and its dir removed, when the process exits, even without stop().
 */
export async function startRedis(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const binary = findBinary('redis-server', 'redis-server');
  const dir = tempDir('redis');
  const host = '127.0.0.1';
  let lastError: unknown;
  for (let tries = 0; tries < 5; tries++) {
    const port = await freePort();
    try {
      const start = (): Promise<Launched> =>
        launch(binary, redisArgs(port, dir, opts), /Ready to accept connections/, opts.startTimeoutMs ?? 10_000);
      let proc = await start();
      let stopped = false;
      const scheme = opts.tls ? 'rediss' : 'redis';
      const auth = opts.password !== undefined ? `:${encodeURIComponent(opts.password)}@` : '';
      return {
        host,
        port,
        url: `${scheme}://${auth}${host}:${port}`,
        dir,
        get pid() {
          return proc.child.pid!;
        },
        pause: () => void proc.child.kill('SIGSTOP'),
        resume: () => void proc.child.kill('SIGCONT'),
        kill: async () => {
          proc.child.kill('SIGKILL');
          await proc.exited;
        },
        restart: async () => {
          await terminate(proc);
          proc = await start();
        },
        stop: async () => {
          if (stopped) return;
          stopped = true;
          await terminate(proc);
          removeDir(dir);
        },
      };
    } catch (err) {
      lastError = err;
      if (!/Address already in use/i.test(String(err))) break;
    }
  }
  removeDir(dir);
  throw lastError;
}

function redisArgs(port: number, dir: string, opts: RedisServerOptions): string[] {
  const args = ['--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--logfile', ''];
  if (opts.tls) {
    args.push(
      '--port', '0',
      '--tls-port', String(port),
      '--tls-cert-file', opts.tls.certFile,
      '--tls-key-file', opts.tls.keyFile,
      '--tls-ca-cert-file', opts.tls.caFile,
      '--tls-auth-clients', opts.tls.authClients ?? 'no',
    );
  } else {
    args.push('--port', String(port));
  }
  if (opts.password !== undefined) args.push('--requirepass', opts.password);
  return [...args, ...(opts.args ?? [])];
}

/** Starts n independent Redis servers (for Redlock). */
export async function startRedisNodes(n: number, opts: RedisServerOptions = {}): Promise<RedisServer[]> {
  const settled = await Promise.allSettled(Array.from({ length: n }, () => startRedis(opts)));
  const started = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await Promise.all(started.map((s) => s.stop()));
    throw failed.reason;
  }
  return started;
}

export { checkHistory, quantile, type Hold, type HistoryReport } from './history.js';
export { checkPermits, type PermitExcess, type PermitReport, type RepeatedFence } from './history.js';
export { checkReadWrite, type RWHold, type RWReport } from './history.js';
export * from './etcd.js';
export { replayMutex, type MutexEvent, type MutexReplay } from './history.js';
export * from './sentinel.js';
export { startRedisCluster, type RedisClusterServers, type RedisClusterServersOptions, type RedisClusterNode, type MoveSlotOptions, type SlotMove, type ClusterFailoverOptions, type ClusterFailover } from './cluster.js';
