/**
 * Prints the wire trace of a short election, for docs/election.md: on etcd and on Redis, candidate A
 * leads, B queues behind it, an observer watches, A proclaims and resigns, B leads.
 * Run: node --import tsx scripts/trace-election.ts [etcd|redis]
 */
import { EtcdClient, EtcdElection, RedisClient, RedisElection, type Election } from '../src/index.js';
import { startEtcd, startRedis } from '../src/testing/servers.js';
import { tracePrinter } from '../src/cli/trace.js';

const which = process.argv[2] ?? 'etcd';
const print = (line: string): void => void process.stdout.write(`${line}\n`);
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 150));

async function scene(make: (label: string) => Election): Promise<void> {
  const [a, b, watcher] = [make('A'), make('B'), make('O')];
  const it = watcher.observe();
  print(`O  observes: ${describe((await it.next()).value)}`);
  const seen = (async () => {
    for await (const l of it) print(`O  observes: ${describe(l)}`);
  })();
  print('A  campaign("a:8080")');
  const la = await a.campaign('a:8080');
  print(`A  leads, term ${la.fence}`);
  await settle();
  print('B  campaign("b:8080")');
  const pb = b.campaign('b:8080');
  await settle();
  print('A  proclaim("a:9090")');
  await la.proclaim('a:9090');
  await settle();
  print('A  resign()');
  await la.resign();
  const lb = await pb;
  print(`B  leads, term ${lb.fence}`);
  await settle();
  await lb.resign();
  await settle();
  await Promise.all([a.close(), b.close(), watcher.close()]);
  await seen;
}

function describe(l: unknown): string {
  const leader = l as { key: string; fence: bigint; value: Buffer } | null;
  return leader ? `${leader.key} term ${leader.fence} value ${leader.value.toString()}` : 'no leader';
}

if (which === 'etcd') {
  const etcd = await startEtcd();
  const client = await EtcdClient.connect({ endpoints: etcd.endpoints });
  const stop = tracePrinter(print);
  try {
    await scene(() => new EtcdElection(client, 'jobs/leader', { ttlMs: 10_000 }));
  } finally {
    stop();
    await client.close();
    await etcd.stop();
  }
} else {
  const redis = await startRedis();
  const client = await RedisClient.connect(redis.url);
  const stop = tracePrinter(print);
  try {
    await scene(() => new RedisElection(client, 'jobs', { ttlMs: 10_000 }));
  } finally {
    stop();
    await client.close();
    await redis.stop();
  }
}
