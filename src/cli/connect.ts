/**
 * From command-line flags to connected clients (connectClients), and to a Locker (openBackend): one
 * Redis URL = RedisLocker, several = Redlock, etcd URLs = EtcdLocker. Credentials come from the URL
 * or the environment and are never echoed.
 */
import { readFileSync } from 'node:fs';
import { EtcdClient } from '../etcdrpc/client.js';
import { RedisClient } from '../resp/client.js';
import { RedisCluster } from '../resp/cluster.js';
import type { RedisOptions } from '../resp/options.js';
import { EtcdLocker } from '../locks/etcd-locker.js';
import { EtcdSemaphore } from '../locks/etcd-semaphore.js';
import { RedisLocker } from '../locks/redis-locker.js';
import { RedisRWLock } from '../locks/redis-rwlock.js';
import { RedisSemaphore } from '../locks/redis-semaphore.js';
import { EtcdRWLock } from '../locks/etcd-rwlock.js';
import { Redlock } from '../locks/redlock.js';
import type { Locker } from '../locks/types.js';
import type { ConnectionFlags } from './args.js';
import { UsageError } from './args.js';

export type BackendKind = 'redis' | 'redlock' | 'etcd';

/** Connected clients: one per --redis URL, one RedisCluster for all --redis-cluster seeds, or one EtcdClient for all --etcd URLs. */
export interface Clients {
  redis: Array<RedisClient | RedisCluster>;
  etcd: EtcdClient | undefined;
  close(): Promise<void>;
}

export interface Backend {
  kind: BackendKind;
  locker: Locker;
  redis: Array<RedisClient | RedisCluster>;
  etcd: EtcdClient | undefined;
  /** The prefix the locker uses (for status to find its keys). */
  prefix: string;
  close(): Promise<void>;
}

function readPem(file: string | undefined, flag: string): Buffer | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file);
  } catch (err) {
    throw new UsageError(`${flag}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

export async function connectClients(flags: ConnectionFlags): Promise<Clients> {
  const ca = readPem(flags.tlsCa, '--tls-ca');
  const cert = readPem(flags.tlsCert, '--tls-cert');
  const key = readPem(flags.tlsKey, '--tls-key');
  if (flags.redisCluster) {
    const envPassword = process.env.WIRELOCK_REDIS_PASSWORD;
    const urlPassword = flags.redisCluster.some(hasPassword);
    if ((ca || cert || key) && flags.redisCluster.some((u) => u.startsWith('redis://'))) throw new UsageError(`TLS files given for a plain redis:// URL (use rediss://)`);
    const cluster = await RedisCluster.connect({
      seeds: flags.redisCluster,
      ...(flags.user !== undefined && { username: flags.user }),
      ...(envPassword !== undefined && !urlPassword && { password: envPassword }),
      ...((ca || cert || key) && { tls: { ...(ca && { ca }), ...(cert && { cert }), ...(key && { key }) } }),
    });
    return { redis: [cluster], etcd: undefined, close: () => cluster.close() };
  }
  if (flags.redis) {
    const overrides: RedisOptions = {};
    if (flags.user !== undefined) overrides.username = flags.user;
    const envPassword = process.env.WIRELOCK_REDIS_PASSWORD;
    if (ca || cert || key) overrides.tls = { ...(ca && { ca }), ...(cert && { cert }), ...(key && { key }) };
    const clients: RedisClient[] = [];
    try {
      for (const url of flags.redis) {
        const perUrl = { ...overrides };
        // The URL's own password wins; the environment fills in for URLs without one.
        if (envPassword !== undefined && !hasPassword(url)) perUrl.password = envPassword;
        if (process.env.WIRELOCK_SENTINEL_PASSWORD !== undefined) perUrl.sentinelPassword = process.env.WIRELOCK_SENTINEL_PASSWORD;
        if (perUrl.tls && url.startsWith('redis://')) throw new UsageError(`TLS files given for a plain redis:// URL (use rediss://)`);
        clients.push(await RedisClient.connect(url, perUrl));
      }
    } catch (err) {
      await Promise.all(clients.map((c) => c.close()));
      throw err;
    }
    const close = async (): Promise<void> => {
      await Promise.all(clients.map((c) => c.close()));
    };
    return { redis: clients, etcd: undefined, close };
  }
  // etcd: credentials may sit in the URLs (http://user:pass@host:port); the client wants bare endpoints.
  let username = flags.user;
  let password = process.env.WIRELOCK_ETCD_PASSWORD;
  const endpoints = flags.etcd!.map((raw) => {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new UsageError('invalid etcd URL (expected http://host:port or https://host:port)');
    }
    if (u.username) username ??= decodeURIComponent(u.username);
    if (u.password) password = decodeURIComponent(u.password);
    return `${u.protocol}//${u.host}`;
  });
  const etcd = await EtcdClient.connect({
    endpoints,
    ...(username !== undefined && { username }),
    ...(password !== undefined && { password }),
    ...((ca || cert || key) && { tls: { ...(ca && { ca }), ...(cert && { cert }), ...(key && { key }) } }),
  });
  return { redis: [], etcd, close: () => etcd.close() };
}

/**
 * The key prefix: --prefix, else 'wirelock:' for Redis (the library's default) and none for etcd
 * (so that names are etcdctl's: `etcdctl lock NAME`, `etcdctl elect NAME`).
 */
export function keyPrefix(flags: ConnectionFlags): string {
  return flags.prefix ?? (flags.etcd ? '' : 'wirelock:');
}

/** Which primitive a command takes under `--key`: the lock (the default), a semaphore, or one side of a read-write lock. */
export interface Primitive {
  /** A semaphore of this many permits (one Redis, or etcd). */
  permits?: number;
  /** A side of the read-write lock (one Redis, or etcd). */
  rw?: 'read' | 'write';
}

/** Connects, and makes the locker for `use`. */
export async function openBackend(flags: ConnectionFlags, use: Primitive = {}): Promise<Backend> {
  const clients = await connectClients(flags);
  const { redis, etcd } = clients;
  const prefix = keyPrefix(flags);
  let locker: Locker;
  let closeLocker: () => Promise<void>;
  try {
    if (use.rw !== undefined) {
      const rw = etcd ? new EtcdRWLock(etcd, { prefix }) : new RedisRWLock(redis[0]!, { prefix });
      locker = use.rw === 'read' ? rw.read : rw.write;
      closeLocker = () => rw.close();
    } else {
      if (use.permits !== undefined) {
        locker = etcd ? new EtcdSemaphore(etcd, { prefix, limit: use.permits }) : new RedisSemaphore(redis[0]!, { prefix, limit: use.permits });
      } else if (etcd) locker = new EtcdLocker(etcd, { prefix });
      else locker = redis.length === 1 ? new RedisLocker(redis[0]!, { prefix }) : new Redlock(redis as RedisClient[], { prefix });
      const only = locker;
      closeLocker = () => only.close();
    }
  } catch (err) {
    await clients.close();
    throw err;
  }
  return {
    kind: etcd ? 'etcd' : redis.length === 1 ? 'redis' : 'redlock',
    locker,
    redis,
    etcd,
    prefix,
    close: async () => {
      await closeLocker();
      await clients.close();
    },
  };
}

function hasPassword(url: string): boolean {
  // A Sentinel URL is not a WHATWG URL (its host list has commas): look for user:password@ by hand.
  if (/^rediss?\+sentinel:/i.test(url)) return /^[^:]+:\/\/[^@/]*:[^@/]*@/.test(url);
  try {
    return new URL(url).password !== '';
  } catch {
    return false;
  }
}
