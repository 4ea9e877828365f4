/**
 * Prints the wire trace of a read-write lock handoff, for docs/rwlock.md: R1 and R2 read, W asks to
 * write and waits, R3 asks to read and queues behind W (a waiting writer stops new readers), the
 * readers release, W writes, W releases, R3 reads.
 * Run: node --import tsx scripts/trace-rwlock.ts [etcd|redis]
 */
import { EtcdClient, EtcdRWLock, RedisClient, RedisRWLock } from '../src/index.js';
import { startEtcd, startRedis } from '../src/testing/servers.js';
import { tracePrinter } from '../src/cli/trace.js';

const which = process.argv[2] ?? 'etcd';
const print = (line: string): void => void process.stdout.write(`${line}\n`);
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 150));

type RW = EtcdRWLock | RedisRWLock;

async function scene(make: () => RW): Promise<void> {
  const [a, b, w, c] = [make(), make(), make(), make()];
  print('R1 read.acquire("doc")');
  const r1 = await a.read.acquire('doc');
  print('R2 read.acquire("doc")');
  const r2 = await b.read.acquire('doc');
  print(`R1 and R2 read, fences ${r1.fence} and ${r2.fence}`);
  await settle();
  print('W  write.acquire("doc")  (readers hold: W waits)');
  const writing = w.write.acquire('doc');
  await settle();
  print('R3 read.acquire("doc")  (a writer waits: R3 queues behind it)');
  const reading = c.read.acquire('doc');
  await settle();
  print('R1 release(), R2 release()');
  await r1.release();
  await r2.release();
  const wl = await writing;
  print(`W  writes, fence ${wl.fence}`);
  await settle();
  print('W  release()');
  await wl.release();
  const r3 = await reading;
  print(`R3 reads, fence ${r3.fence}`);
  await r3.release();
  await Promise.all([a.close(), b.close(), w.close(), c.close()]);
}

if (which === 'etcd') {
  const etcd = await startEtcd();
  const client = await EtcdClient.connect({ endpoints: etcd.endpoints });
  const stop = tracePrinter(print);
  try {
    await scene(() => new EtcdRWLock(client));
  } finally {
    stop();
    await client.close();
    await etcd.stop();
  }
} else {
  const redis = await startRedis();
  const clients = await Promise.all([1, 2, 3, 4].map(() => RedisClient.connect(redis.url)));
  let next = 0;
  const stop = tracePrinter(print);
  try {
    await scene(() => new RedisRWLock(clients[next++]!));
  } finally {
    stop();
    await Promise.all(clients.map((c) => c.close()));
    await redis.stop();
  }
}
