/**
 * Prints the wire trace of a semaphore handoff, for docs/semaphore.md: limit 2; A and B take the two
 * permits, C queues, A releases, C is admitted; then B and C release.
 * Run: node --import tsx scripts/trace-semaphore.ts [etcd|redis]
 */
import { EtcdClient, EtcdSemaphore, RedisClient, RedisSemaphore, type Locker } from '../src/index.js';
import { startEtcd, startRedis } from '../src/testing/servers.js';
import { tracePrinter } from '../src/cli/trace.js';

const which = process.argv[2] ?? 'etcd';
const print = (line: string): void => void process.stdout.write(`${line}\n`);
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 150));

async function scene(make: () => Locker): Promise<void> {
  const [a, b, c] = [make(), make(), make()];
  print('A  acquire("pool")');
  const pa = await a.acquire('pool');
  print(`A  holds, fence ${pa.fence}`);
  print('B  acquire("pool")');
  const pb = await b.acquire('pool');
  print(`B  holds, fence ${pb.fence}`);
  await settle();
  print('C  acquire("pool")  (both permits are taken: C waits)');
  const waiting = c.acquire('pool');
  await settle();
  print('A  release()');
  await pa.release();
  const pc = await waiting;
  print(`C  holds, fence ${pc.fence}`);
  await settle();
  await Promise.all([pb.release(), pc.release()]);
  await Promise.all([a.close(), b.close(), c.close()]);
}

if (which === 'etcd') {
  const etcd = await startEtcd();
  const client = await EtcdClient.connect({ endpoints: etcd.endpoints });
  const stop = tracePrinter(print);
  try {
    await scene(() => new EtcdSemaphore(client, { limit: 2 }));
  } finally {
    stop();
    await client.close();
    await etcd.stop();
  }
} else {
  const redis = await startRedis();
  const clients = await Promise.all([1, 2, 3].map(() => RedisClient.connect(redis.url)));
  let next = 0;
  const stop = tracePrinter(print);
  try {
    await scene(() => new RedisSemaphore(clients[next++]!, { limit: 2 }));
  } finally {
    stop();
    await Promise.all(clients.map((c) => c.close()));
    await redis.stop();
  }
}
