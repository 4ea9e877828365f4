/**
 * Servers for the fault suite: Redis lock nodes plus a separate Redis that holds the protected
 * resource (so a fault on a lock node never touches the resource), or etcd (one member or a
 * cluster) holding both the locks and the resource. Also the parent's view of the resource, and a
 * one-line report of what a scenario measured (printed under the test's title).
 */
import { EtcdClient, RedisClient } from '../../src/index.js';
import { startEtcd, startEtcdCluster, startRedis, startRedisNodes, type EtcdCluster, type RedisServer } from '../../src/testing/servers.js';
import { EtcdResource, RedisResource, type FencedResource } from './faults-resource.js';
import { FaultWorker, stopAllWorkers, type Backend, type FaketimeOptions, type WorkerConfig } from './faults-workers.js';

export interface Env {
  backend: Backend;
  /** What the workers' lock clients connect to (Redis URLs or etcd endpoints). */
  urls: string[];
  resource: WorkerConfig['resource'];
  /** The parent's view of the protected resource and the plain counter. */
  view: FencedResource;
  counter(): Promise<number>;
  /** Empties the resource and the counter before a scenario. */
  reset(): Promise<void>;
}

export interface RedisEnv {
  nodes: RedisServer[];
  resourceServer: RedisServer;
  admin: RedisClient;
  /** One node's URL as a RedisLocker env, or all N as a Redlock env. */
  env(backend: 'redis' | 'redlock', urls?: string[]): Env;
  stop(): Promise<void>;
}

export async function startRedisEnv(nodes: number): Promise<RedisEnv> {
  const [servers, resourceServer] = await Promise.all([startRedisNodes(nodes), startRedis()]);
  const admin = await RedisClient.connect(resourceServer.url);
  const view = new RedisResource(admin, 'fault:resource');
  return {
    nodes: servers,
    resourceServer,
    admin,
    env: (backend, urls) => ({
      backend,
      urls: urls ?? (backend === 'redis' ? [servers[0]!.url] : servers.map((s) => s.url)),
      resource: { kind: 'redis', url: resourceServer.url },
      view,
      counter: async () => Number((await admin.send(['GET', 'fault:counter'])) ?? 0),
      reset: async () => void (await admin.send(['DEL', 'fault:resource', 'fault:counter'])),
    }),
    stop: async () => {
      await stopAllWorkers();
      await admin.close().catch(() => {});
      await Promise.all([...servers, resourceServer].map((s) => s.stop()));
    },
  };
}

export interface EtcdEnv {
  cluster: EtcdCluster;
  admin: EtcdClient;
  env: Env;
  stop(): Promise<void>;
}

export async function startEtcdEnv(members = 1): Promise<EtcdEnv> {
  const cluster = members === 1 ? await startEtcd() : await startEtcdCluster(members);
  const admin = await EtcdClient.connect({ endpoints: cluster.endpoints });
  const view = new EtcdResource(admin, 'fault/resource');
  const env: Env = {
    backend: 'etcd',
    urls: cluster.endpoints,
    resource: { kind: 'etcd', endpoints: cluster.endpoints },
    view,
    counter: async () => Number((await admin.range({ key: 'fault/counter' })).kvs[0]?.value.toString() || 0),
    reset: async () => {
      await view.reset();
      await admin.put({ key: 'fault/counter', value: '0' });
    },
  };
  return {
    cluster,
    admin,
    env,
    stop: async () => {
      await stopAllWorkers();
      await admin.close().catch(() => {});
      await cluster.stop();
    },
  };
}

/** A describe block's servers, started by suiteServers(): read them inside its tests. */
export interface SuiteServers {
  readonly redis: RedisEnv;
  readonly etcd: EtcdEnv;
}

/**
 * Registers mocha hooks that start `redis` lock nodes and an etcd cluster of `etcd` members (0 for
 * none) before the describe block's tests, and stop them after. Reading a server the block did not
 * ask for is a test bug, and throws.
 */
export function suiteServers(counts: { redis?: number; etcd?: number }): SuiteServers {
  let redis: RedisEnv | undefined;
  let etcd: EtcdEnv | undefined;
  before(async () => {
    [redis, etcd] = await Promise.all([
      counts.redis ? startRedisEnv(counts.redis) : undefined,
      counts.etcd ? startEtcdEnv(counts.etcd) : undefined,
    ]);
  });
  after(async () => {
    await Promise.all([redis?.stop(), etcd?.stop()]);
  });
  const started = <T>(server: T | undefined, what: string): T => {
    if (!server) throw new Error(`no ${what} in this suite (not asked for, or before() has not run)`);
    return server;
  };
  return {
    get redis() {
      return started(redis, 'Redis');
    },
    get etcd() {
      return started(etcd, 'etcd');
    },
  };
}

let serial = 0;

/** Starts one worker for `env` (ids are unique across the run). */
export function worker(
  env: Env,
  opts: { name?: string; clientOptions?: Record<string, unknown>; lockerOptions?: Record<string, unknown>; limit?: number; rw?: boolean; faketime?: FaketimeOptions } = {},
): Promise<FaultWorker> {
  const config: WorkerConfig = {
    id: `${opts.name ?? env.backend}-${++serial}`,
    backend: env.backend,
    urls: env.urls,
    resource: env.resource,
    clientOptions: opts.clientOptions,
    lockerOptions: opts.lockerOptions,
    limit: opts.limit,
    rw: opts.rw,
  };
  return FaultWorker.start(config, { faketime: opts.faketime });
}

/** A result line under the test's title: what was measured (the report and docs/safety.md quote these). */
export function report(line: string): void {
  console.log(`      ↳ ${line}`);
}
