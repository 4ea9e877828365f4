/**
 * Throwaway etcd servers for tests, demos and benchmarks: a single member or a cluster of n, on free
 * loopback ports, with data dirs under /dev/shm, optionally with auth and TLS.
 *
 *   const etcd = await startEtcd();                    // one member
 *   const client = await EtcdClient.connect({ endpoints: etcd.endpoints });
 *   const cluster = await startEtcdCluster(3);         // three members; cluster.members[i].kill() ...
 *   await etcd.stop();                                 // also done if the process exits
 *
 * `--unsafe-no-fsync` keeps writes cheap: these servers hold nothing worth keeping.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { findBinary, freePort, launch, removeDir, tempDir, terminate, type Launched } from './process.js';
import { outOfRange } from '../errors.js';

const run = promisify(execFile);

/** Options for {@link startEtcd} and {@link startEtcdCluster}. */
export interface EtcdServerOptions {
  /**
   * Turn auth on: user `root` (role root) with `rootPassword`, plus `users`, each given read-write
   * access to every key through the role `rw`.
   */
  auth?: {
    /** The password of the user `root`. */
    rootPassword: string;
    /** More users, each with read-write access to every key. */
    users?: Array<{
      /** The user's name. */
      name: string;
      /** The user's password. */
      password: string;
    }>;
  };
  /** Serve clients over TLS with these PEM files; `clientCertAuth` demands a client certificate signed by caFile. */
  tls?: {
    /** The server's certificate (`--cert-file`). */
    certFile: string;
    /** The server certificate's private key (`--key-file`). */
    keyFile: string;
    /** The CA that client certificates are checked against (`--trusted-ca-file`). */
    caFile: string;
    /**
     * Demand a client certificate signed by caFile (`--client-cert-auth`).
     * @defaultValue `false`
     */
    clientCertAuth?: boolean;
  };
  /** Extra etcd arguments. */
  args?: string[];
  /**
   * How long to wait, in ms, for each member to say it serves clients before failing.
   * @defaultValue `15000`
   */
  startTimeoutMs?: number;
}

/** One etcd process of a cluster that {@link startEtcdCluster} (or {@link startEtcd}) started. */
export interface EtcdMember {
  /** The member's name: `m1`, `m2`, … */
  readonly name: string;
  /** http(s)://127.0.0.1:port: give it to EtcdClient.connect({ endpoints }). */
  readonly clientUrl: string;
  /** http://127.0.0.1:port where the members talk to each other (always plain HTTP). */
  readonly peerUrl: string;
  /** Its data dir, a temp dir removed by the cluster's stop(). */
  readonly dir: string;
  /** The process ID of the member's current etcd process (it changes with restart()). */
  readonly pid: number;
  /** Not killed or stopped. (A paused member is running.) */
  readonly running: boolean;
  /** SIGSTOP: connections stay open, nothing is answered. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** kill -9; restart() brings it back with its data. */
  kill(): Promise<void>;
  /** Starts it again on the same ports with the same data dir (after kill, or stops it first). */
  restart(): Promise<void>;
  /** Graceful stop; the data dir stays until the cluster's stop(). */
  stop(): Promise<void>;
}

/** A running etcd cluster that {@link startEtcdCluster} started. */
export interface EtcdCluster {
  /** Its members, in order (`m1` first). */
  readonly members: EtcdMember[];
  /** Every member's client URL. */
  readonly endpoints: string[];
  /** The member that is leader now (asks each running member; waits up to 10 s for an election). */
  leader(): Promise<EtcdMember>;
  /** Stops every member and removes the data dirs. Idempotent. */
  stop(): Promise<void>;
}

/** A single-member cluster, with the member's handles at the top level (so it is an EtcdCluster too). */
export interface EtcdServer extends EtcdMember, EtcdCluster {
  /** The one member's client URL. */
  readonly endpoints: string[];
  /** The one member. */
  readonly members: EtcdMember[];
  /** Graceful stop and data dir removal. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a single-member etcd on free loopback ports, in a fresh temp dir (under /dev/shm when writable),
 * and resolves once it serves clients. The same as `startEtcdCluster(1, opts)`, with the member's
 * handles at the top level. The server is killed, and its dir removed, when the process exits.
 */
export async function startEtcd(opts: EtcdServerOptions = {}): Promise<EtcdServer> {
  const cluster = await startEtcdCluster(1, opts);
  const member = cluster.members[0]!;
  return {
    get name() { return member.name; },
    get clientUrl() { return member.clientUrl; },
    get peerUrl() { return member.peerUrl; },
    get dir() { return member.dir; },
    get pid() { return member.pid; },
    get running() { return member.running; },
    endpoints: cluster.endpoints,
    members: cluster.members,
    leader: () => cluster.leader(),
    pause: () => member.pause(),
    resume: () => member.resume(),
    kill: () => member.kill(),
    restart: () => member.restart(),
    stop: () => cluster.stop(),
  };
}

/**
 * Starts `size` etcd members that form one new cluster, each on free loopback ports (client and peer)
 * with a temp data dir, and `--unsafe-no-fsync`; resolves once every member serves clients (and auth, if
 * asked for, is on). Ports taken meanwhile are retried with others. Throws an Error naming the Debian
 * package if etcd (or, for auth, etcdctl) is not on PATH. Members are killed and their dirs removed
 * when the process exits, even without stop().
 */
export async function startEtcdCluster(size: number, opts: EtcdServerOptions = {}): Promise<EtcdCluster> {
  if (!Number.isInteger(size) || size < 1) throw outOfRange('cluster size must be an integer >= 1');
  findBinary('etcd', 'etcd-server'); // fail loudly, naming the package, before making anything
  let lastError: unknown;
  // A port picked as free may be taken before etcd binds it: start over with new ports a few times.
  for (let tries = 0; tries < 4; tries++) {
    const dirs = Array.from({ length: size }, () => tempDir('etcd'));
    const members = await planMembers(size, dirs, opts);
    try {
      await Promise.all(members.map((m) => m.start()));
      if (opts.auth) await enableAuth(members[0]!.clientUrl, opts);
      return cluster(members, dirs, opts);
    } catch (err) {
      lastError = err;
      await Promise.all(members.map((m) => m.stop()));
      dirs.forEach(removeDir);
      if (!/address already in use/i.test(String(err))) break;
    }
  }
  throw lastError;
}

interface MemberHandle extends EtcdMember {
  start(): Promise<void>;
}

async function planMembers(size: number, dirs: string[], opts: EtcdServerOptions): Promise<MemberHandle[]> {
  const binary = findBinary('etcd', 'etcd-server');
  const scheme = opts.tls ? 'https' : 'http';
  const specs = [];
  for (let i = 0; i < size; i++) {
    specs.push({ name: `m${i + 1}`, client: await freePort(), peer: await freePort(), dir: dirs[i]! });
  }
  const initialCluster = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peer}`).join(',');
  // One token for all members: the cluster ID is derived from it, so members with different tokens
  // would each found a cluster of their own.
  const token = `wirelock-${process.pid}-${specs[0]!.peer}`;
  return specs.map((s) => {
    const clientUrl = `${scheme}://127.0.0.1:${s.client}`;
    const peerUrl = `http://127.0.0.1:${s.peer}`;
    const args = [
      '--name', s.name,
      '--data-dir', s.dir,
      '--listen-client-urls', clientUrl,
      '--advertise-client-urls', clientUrl,
      '--listen-peer-urls', peerUrl,
      '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', token,
      '--unsafe-no-fsync',
      '--logger', 'zap',
      '--log-outputs', 'stderr',
      ...(opts.tls
        ? ['--cert-file', opts.tls.certFile, '--key-file', opts.tls.keyFile, '--trusted-ca-file', opts.tls.caFile,
           ...(opts.tls.clientCertAuth ? ['--client-cert-auth'] : [])]
        : []),
      ...(opts.args ?? []),
    ];
    let proc: Launched | undefined;
    let state: 'new' | 'running' | 'killed' | 'stopped' = 'new';
    const start = async (): Promise<void> => {
      // zap logs "serving client traffic (in)securely" once the member has joined and can serve.
      proc = await launch(binary, args, /serving client traffic|ready to serve client requests/, opts.startTimeoutMs ?? 15_000);
      state = 'running';
    };
    return {
      name: s.name,
      clientUrl,
      peerUrl,
      dir: s.dir,
      get pid() { return proc?.child.pid ?? -1; },
      get running() { return state === 'running'; },
      start,
      pause: () => void proc?.child.kill('SIGSTOP'),
      resume: () => void proc?.child.kill('SIGCONT'),
      kill: async () => {
        if (!proc || state !== 'running') return;
        state = 'killed';
        proc.child.kill('SIGKILL');
        await proc.exited;
      },
      restart: async () => {
        if (proc && state === 'running') await terminate(proc);
        await start();
      },
      stop: async () => {
        if (!proc || state === 'stopped') return;
        state = 'stopped';
        await terminate(proc);
      },
    };
  });
}

function cluster(members: MemberHandle[], dirs: string[], opts: EtcdServerOptions): EtcdCluster {
  let stopped = false;
  return {
    members,
    endpoints: members.map((m) => m.clientUrl),
    leader: () => findLeader(members, opts),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await Promise.all(members.map((m) => m.stop()));
      dirs.forEach(removeDir);
    },
  };
}

/** etcdctl with the right endpoint; the testing module uses it only for what wirelock does not speak. */
async function etcdctl(url: string, opts: EtcdServerOptions, args: string[]): Promise<string> {
  const bin = findBinary('etcdctl', 'etcd-client');
  const tls = opts.tls ? ['--cacert', opts.tls.caFile, ...(opts.tls.clientCertAuth ? ['--cert', opts.tls.certFile, '--key', opts.tls.keyFile] : [])] : [];
  const { stdout } = await run(bin, ['--endpoints', url, ...tls, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 10_000 });
  return stdout;
}

async function enableAuth(url: string, opts: EtcdServerOptions): Promise<void> {
  const auth = opts.auth!;
  await etcdctl(url, opts, ['user', 'add', 'root', `--new-user-password=${auth.rootPassword}`]);
  await etcdctl(url, opts, ['user', 'grant-role', 'root', 'root']);
  if (auth.users?.length) {
    await etcdctl(url, opts, ['role', 'add', 'rw']);
    // The prefix "" is every key.
    await etcdctl(url, opts, ['role', 'grant-permission', 'rw', 'readwrite', '', '--prefix=true']);
    for (const u of auth.users) {
      await etcdctl(url, opts, ['user', 'add', u.name, `--new-user-password=${u.password}`]);
      await etcdctl(url, opts, ['user', 'grant-role', u.name, 'rw']);
    }
  }
  await etcdctl(url, opts, ['auth', 'enable']);
}

async function findLeader(members: MemberHandle[], opts: EtcdServerOptions): Promise<EtcdMember> {
  // Imported here so that loading the testing module does not load the gRPC client.
  const { EtcdClient } = await import('../etcdrpc/client.js');
  const until = performance.now() + 10_000;
  while (performance.now() < until) {
    for (const m of members) {
      if (!m.running) continue;
      let client: Awaited<ReturnType<typeof EtcdClient.connect>> | undefined;
      try {
        const tls = opts.tls && {
          ca: readFileSync(opts.tls.caFile),
          ...(opts.tls.clientCertAuth ? { cert: readFileSync(opts.tls.certFile), key: readFileSync(opts.tls.keyFile) } : {}),
        };
        const auth = opts.auth && { username: 'root', password: opts.auth.rootPassword };
        client = await EtcdClient.connect({ endpoints: [m.clientUrl], callTimeoutMs: 1000, tls, ...auth });
        const s = await client.status();
        if (s.leader !== 0n && s.leader === s.header.member_id) return m;
      } catch {
        // down, paused, or no leader yet
      } finally {
        await client?.close();
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('no etcd member is leader after 10 s');
}
