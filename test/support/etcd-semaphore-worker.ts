/**
 * A worker process for the EtcdSemaphore concurrency check: its own EtcdClient and semaphore, taking
 * permits of one key in a loop.
 *
 *   node --import tsx test/support/etcd-semaphore-worker.ts <endpoint> <key> <limit> <iterations> <holdMs>
 *
 * For each permit it prints one JSON line `{ requested, enter, exit, fence }`: CLOCK_MONOTONIC stamps
 * (process.hrtime.bigint(), comparable across processes on one machine) in decimal strings. `enter` is
 * taken after acquire() resolved and `exit` before release() is called, so [enter, exit] lies inside
 * the time the permit was held.
 */
import { EtcdClient, EtcdSemaphore } from '../../src/index.js';

async function main(endpoint: string, key: string, limit: number, iterations: number, holdMs: number): Promise<void> {
  const client = await EtcdClient.connect({ endpoints: [endpoint] });
  const semaphore = new EtcdSemaphore(client, { limit, ttlMs: 5000 });
  for (let i = 0; i < iterations; i++) {
    const requested = process.hrtime.bigint();
    const permit = await semaphore.acquire(key);
    const enter = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, holdMs));
    const exit = process.hrtime.bigint();
    await permit.release();
    console.log(JSON.stringify({ requested: String(requested), enter: String(enter), exit: String(exit), fence: String(permit.fence) }));
  }
  await semaphore.close();
  await client.close();
}

const [endpoint, key, limit, iterations, holdMs] = process.argv.slice(2);
if (!endpoint || !key || !limit || !iterations || !holdMs) throw new Error('usage: etcd-semaphore-worker.ts <endpoint> <key> <limit> <iterations> <holdMs>');
main(endpoint, key, Number(limit), Number(iterations), Number(holdMs)).catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
