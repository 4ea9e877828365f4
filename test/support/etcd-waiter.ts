/**
 * A process whose only work is one EtcdLocker.acquire(), for the "a waiting process must not exit"
 * regression test: nothing else (no server, no interval) keeps its event loop alive.
 *
 *   node --import tsx test/support/etcd-waiter.ts <endpoint> <key>
 *
 * Prints `waiting`, then `acquired <etcd key>` once it holds the lock, releases it, closes
 * everything and prints `released`; then it has nothing left to do and exits on its own. Written as
 * a plain `main()` (no top-level await), as most programs are: if nothing keeps the event loop alive
 * while the acquire is pending, the process simply ends, with exit code 0.
 */
import { EtcdClient, EtcdLocker } from '../../src/index.js';

async function main(endpoint: string, key: string): Promise<void> {
  const client = await EtcdClient.connect({ endpoints: [endpoint] });
  // A lease that outlives a few seconds of refused connections.
  const locker = new EtcdLocker(client, { ttlMs: 20_000 });
  console.log('waiting');
  const lock = await locker.acquire(key);
  console.log(`acquired ${lock.token}`);
  await lock.release();
  await locker.close();
  await client.close();
  console.log('released');
}

const [endpoint, key] = process.argv.slice(2);
if (!endpoint || !key) throw new Error('usage: etcd-waiter.ts <endpoint> <key>');
main(endpoint, key).catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
