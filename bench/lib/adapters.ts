/**
 * One small adapter per library, so every scenario runs the same loop over each of them.
 * Each factory call is one worker with its own connection(s). Anchors run with their documented
 * defaults (retry delays, refresh intervals): the figures are what a user of each library gets.
 */
import { randomBytes } from 'node:crypto';
import { Cluster as IOCluster, Redis as IORedis } from 'ioredis';
import { Redlock as SesameRedlock } from '@sesamecare-oss/redlock';
import RedlockV4 from 'redlock';
import { Mutex as SemaphoreMutex, RedlockMutex as SemaphoreRedlockMutex, Semaphore as SemaphoreSemaphore } from 'redis-semaphore';
import { Etcd3, EtcdLockFailedError } from 'etcd3';
import { EtcdClient, EtcdLocker, RedisClient, RedisCluster, RedisLocker, RedisRWLock, RedisSemaphore, Redlock, type Locker } from '../../src/index.js';
import { COMPARE_AND_DELETE } from './floors.js';

export interface LockAdapter {
  /** Waits until held; resolves with the function that releases. */
  lock(key: string): Promise<() => Promise<void>>;
  /** A read-write lock's shared side, if the library has one. */
  lockShared?(key: string): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export interface Library {
  name: string;
  /** Is this wirelock (the subject) rather than an anchor? */
  ours: boolean;
  /** A worker with its own connection(s). */
  make(): Promise<LockAdapter>;
  /**
   * A library outside this process (etcd's Go client): it runs the scenarios itself and reports the
   * same figures. `make` is then unused.
   */
  external?: {
    uncontended(seconds: number): Promise<number>;
    contended(workers: number, seconds: number): Promise<import('./scenarios.js').ContendedResult>;
  };
  /** Shown for reference, never the anchor a ratio is taken against (wirelock on its other transport). */
  reference?: boolean;
}

const TTL_MS = 10_000;

function fromLocker(locker: Locker, close: () => Promise<void>): LockAdapter {
  return {
    async lock(key) {
      const lock = await locker.acquire(key, { ttlMs: TTL_MS });
      return () => lock.release();
    },
    close: async () => {
      await locker.close();
      await close();
    },
  };
}

function ioredis(url: string): IORedis {
  return new IORedis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
}

/** @sesamecare-oss/redlock over `clients` (one for a single Redis or a Cluster, several for Redlock). */
function sesameAdapter(clients: Array<IORedis | IOCluster>): LockAdapter {
  const redlock = new SesameRedlock(clients, { retryCount: -1 });
  return {
    async lock(key) {
      const lock = await redlock.acquire([key], TTL_MS);
      return async () => void (await lock.release());
    },
    close: async () => clients.forEach((c) => c.disconnect()),
  };
}

/** redis-semaphore's Mutex on one client (a Redis or a Cluster). */
function semaphoreMutexAdapter(c: IORedis | IOCluster): LockAdapter {
  return {
    async lock(key) {
      const m = new SemaphoreMutex(c, key, { lockTimeout: TTL_MS, acquireTimeout: 600_000 });
      await m.acquire();
      return () => m.release();
    },
    close: async () => void c.disconnect(),
  };
}

/** Libraries for one Redis server. */
export function singleRedisLibraries(url: string): Library[] {
  return [
    {
      name: 'wirelock RedisLocker',
      ours: true,
      make: async () => {
        const client = await RedisClient.connect(url);
        return fromLocker(new RedisLocker(client), () => client.close());
      },
    },
    {
      name: '@sesamecare-oss/redlock',
      ours: false,
      make: async () => sesameAdapter([ioredis(url)]),
    },
    {
      name: 'redlock 4',
      ours: false,
      make: async () => {
        const c = ioredis(url);
        const redlock = new RedlockV4([c], { retryCount: -1 });
        return {
          async lock(key) {
            const lock = await redlock.lock(key, TTL_MS);
            return async () => void (await lock.unlock());
          },
          close: async () => void c.disconnect(),
        };
      },
    },
    {
      name: 'redis-semaphore Mutex',
      ours: false,
      make: async () => semaphoreMutexAdapter(ioredis(url)),
    },
  ];
}

/**
 * Read-write locks on one Redis server. No library users would pick here has a Redis RW lock, so the
 * anchor is the same work under wirelock's own mutex: every read exclusive, as without an RW lock.
 */
export function rwLibraries(url: string): Library[] {
  return [
    {
      name: 'wirelock RedisRWLock',
      ours: true,
      make: async () => {
        const client = await RedisClient.connect(url);
        const rw = new RedisRWLock(client);
        const write = fromLocker(rw.write, async () => {});
        const read = fromLocker(rw.read, async () => {});
        return {
          lock: (key) => write.lock(key),
          lockShared: (key) => read.lock(key),
          close: async () => {
            await rw.close();
            await client.close();
          },
        };
      },
    },
    {
      name: 'wirelock RedisLocker (reads exclusive too)',
      ours: false,
      make: async () => {
        const client = await RedisClient.connect(url);
        return fromLocker(new RedisLocker(client), () => client.close());
      },
    },
  ];
}

/** Counting semaphores of `limit` permits on one Redis server: wirelock's and redis-semaphore's `Semaphore`. */
export function semaphoreLibraries(url: string, limit: number): Library[] {
  return [
    {
      name: 'wirelock RedisSemaphore',
      ours: true,
      make: async () => {
        const client = await RedisClient.connect(url);
        return fromLocker(new RedisSemaphore(client, { limit }), () => client.close());
      },
    },
    {
      name: 'redis-semaphore Semaphore',
      ours: false,
      make: async () => {
        const c = ioredis(url);
        return {
          async lock(key) {
            const s = new SemaphoreSemaphore(c, key, limit, { lockTimeout: TTL_MS, acquireTimeout: 600_000 });
            await s.acquire();
            return () => s.release();
          },
          close: async () => void c.disconnect(),
        };
      },
    },
  ];
}

/**
 * Raw ioredis: SET NX PX, then a compare-and-delete by EVALSHA. No waiting, no extension: the floor
 * any lock library on ioredis pays. Only for uncontended loops.
 */
export function rawIoredis(url: string): Library {
  return {
    name: 'raw ioredis SET NX PX + EVALSHA',
    ours: false,
    make: async () => {
      const c = ioredis(url) as IORedis & { unlockRaw(key: string, token: string): Promise<number> };
      c.defineCommand('unlockRaw', {
        numberOfKeys: 1,
        lua: COMPARE_AND_DELETE,
      });
      return {
        async lock(key) {
          const token = randomBytes(16).toString('hex');
          const ok = await c.set(key, token, 'PX', TTL_MS, 'NX');
          if (ok !== 'OK') throw new Error('raw ioredis: key unexpectedly held');
          return async () => void (await c.unlockRaw(key, token));
        },
        close: async () => void c.disconnect(),
      };
    },
  };
}

/** An ioredis Cluster client, seeded with every node, as its users connect. */
async function ioCluster(seeds: string[]): Promise<IOCluster> {
  const c = new IOCluster(seeds.map((u) => ({ host: new URL(u).hostname, port: Number(new URL(u).port) })), { redisOptions: { maxRetriesPerRequest: 1 } });
  await new Promise<void>((resolve, reject) => {
    c.once('ready', resolve);
    c.once('error', reject);
  });
  return c;
}

/**
 * Libraries on a Redis Cluster: wirelock's RedisLocker on its own RedisCluster, and the two libraries
 * that take an ioredis `Cluster` in place of a Redis client (one "Redlock" instance, as their
 * docs say for a cluster). Keys land in different slots, so cycles spread over the masters.
 */
export function clusterLibraries(seeds: string[]): Library[] {
  return [
    {
      name: 'wirelock RedisLocker on RedisCluster',
      ours: true,
      make: async () => {
        const cluster = await RedisCluster.connect({ seeds });
        return fromLocker(new RedisLocker(cluster), () => cluster.close());
      },
    },
    {
      name: '@sesamecare-oss/redlock on ioredis Cluster',
      ours: false,
      make: async () => sesameAdapter([await ioCluster(seeds)]),
    },
    {
      name: 'redis-semaphore Mutex on ioredis Cluster',
      ours: false,
      make: async () => semaphoreMutexAdapter(await ioCluster(seeds)),
    },
  ];
}

/** Libraries for Redlock over several Redis masters. */
export function redlockLibraries(urls: string[]): Library[] {
  return [
    {
      name: 'wirelock Redlock',
      ours: true,
      make: async () => {
        const clients = await Promise.all(urls.map((u) => RedisClient.connect(u)));
        return fromLocker(new Redlock(clients), async () => void (await Promise.all(clients.map((c) => c.close()))));
      },
    },
    {
      name: '@sesamecare-oss/redlock',
      ours: false,
      make: async () => sesameAdapter(urls.map(ioredis)),
    },
    {
      name: 'redis-semaphore RedlockMutex',
      ours: false,
      make: async () => {
        const cs = urls.map(ioredis);
        return {
          async lock(key) {
            const m = new SemaphoreRedlockMutex(cs, key, { lockTimeout: TTL_MS, acquireTimeout: 600_000 });
            await m.acquire();
            return () => m.release();
          },
          close: async () => cs.forEach((c) => c.disconnect()),
        };
      },
    },
  ];
}

/**
 * Libraries for etcd: wirelock on its own HTTP/2 transport (the subject) and on grpc-js (for
 * reference), etcd's Go concurrency.Mutex (bench/go/mutex), and etcd3. etcd3's Lock does not wait: it
 * fails at once if held, so it is retried every `pollMs`.
 */
export function etcdLibraries(endpoint: string, pollMs: number[], go?: Library): Library[] {
  const wirelock = (transport: 'h2' | 'grpc-js'): Library => ({
    name: transport === 'h2' ? 'wirelock EtcdLocker' : 'wirelock EtcdLocker on grpc-js',
    ours: transport === 'h2',
    reference: transport !== 'h2',
    make: async () => {
      const client = await EtcdClient.connect({ endpoints: [endpoint], transport });
      return fromLocker(new EtcdLocker(client), () => client.close());
    },
  });
  const libs: Library[] = [wirelock('h2'), wirelock('grpc-js'), ...(go ? [go] : [])];
  for (const poll of pollMs) {
    libs.push({
      name: `etcd3 Lock (retry every ${poll} ms)`,
      ours: false,
      make: async () => {
        const etcd = new Etcd3({ hosts: endpoint });
        return {
          async lock(key) {
            for (;;) {
              const lock = etcd.lock(key).ttl(TTL_MS / 1000);
              try {
                await lock.acquire();
                return async () => void (await lock.release());
              } catch (err) {
                if (!(err instanceof EtcdLockFailedError)) throw err;
                await new Promise((r) => setTimeout(r, poll));
              }
            }
          },
          close: async () => etcd.close(),
        };
      },
    });
  }
  return libs;
}
