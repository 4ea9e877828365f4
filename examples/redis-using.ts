/**
 * A job that must never run twice at once, guarded by `locker.using()` on Redis.
 *
 *   node --import tsx examples/redis-using.ts [redis://host:6379]
 *
 * Without a URL it starts a throwaway redis-server on a free port (wirelock/testing) and stops it at
 * the end, so it runs on a clean clone. Three "hosts" start the job at the same moment; the lock runs
 * them one after the other. A fourth only wants to run if nobody else is at it, and skips.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { LockTimeoutError, RedisClient, RedisLocker } from '../src/index.js';
import { startRedis } from '../src/testing/servers.js';

const server = process.argv[2] ? undefined : await startRedis();
const url = process.argv[2] ?? server!.url;

/** One host: its own connection and locker, as a separate process would have. */
async function host(name: string): Promise<{ name: string; locker: RedisLocker; close(): Promise<void> }> {
  const client = await RedisClient.connect(url);
  const locker = new RedisLocker(client);
  return { name, locker, close: async () => (await locker.close(), await client.close()) };
}

async function nightlyReport(h: { name: string; locker: RedisLocker }, opts: { waitTimeoutMs: number }): Promise<void> {
  // using() acquires, runs the function, and releases even if it throws. The TTL only bounds how
  // long a crashed host keeps others out: while this one runs, the lock is extended in the background.
  await h.locker.using(
    'nightly-report',
    async (lock) => {
      console.log(`${h.name}: running with fence ${lock.fence}`);
      for (let step = 1; step <= 3; step++) {
        // lock.signal aborts if the lock is lost (expired, taken): stop working at once then. Pass the
        // fence to whatever you write, so a store can refuse a write from a holder that was paused.
        await sleep(50, undefined, { signal: lock.signal });
      }
      console.log(`${h.name}: done`);
    },
    { ttlMs: 5000, ...opts },
  );
}

const hosts = await Promise.all(['host-a', 'host-b', 'host-c', 'host-d'].map(host));
try {
  // a, b and c wait their turn (up to 10 s each).
  await Promise.all(hosts.slice(0, 3).map((h) => nightlyReport(h, { waitTimeoutMs: 10_000 })));

  // d runs only if nobody else is: waitTimeoutMs 0 is a single attempt. Here host-a holds the lock.
  const held = await hosts[0]!.locker.acquire('nightly-report');
  try {
    await nightlyReport(hosts[3]!, { waitTimeoutMs: 0 });
  } catch (err) {
    if (!(err instanceof LockTimeoutError)) throw err;
    console.log(`host-d: the report is already running elsewhere: skipped (${err.code})`);
  } finally {
    await held.release();
  }
} finally {
  await Promise.all(hosts.map((h) => h.close()));
  await server?.stop();
}
