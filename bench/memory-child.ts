/**
 * Run by bench/run.ts in a fresh process (node --expose-gc): holds N auto-extended locks at once and
 * prints the RSS and heap growth per held lock as one JSON line.
 *
 *   node --expose-gc --import tsx bench/memory-child.ts '{"backend":"redis","urls":["redis://…"],"count":10000}'
 */
import { EtcdClient, EtcdLocker, RedisClient, RedisLocker, Redlock, type Lock, type Locker } from '../src/index.js';

interface Config {
  backend: 'redis' | 'redlock' | 'etcd';
  urls: string[];
  count: number;
}

const gc = (globalThis as { gc?: () => void }).gc;

function snapshot(): { rss: number; heap: number } {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2]!) as Config;
  let locker: Locker;
  let close: () => Promise<unknown>;
  if (cfg.backend === 'etcd') {
    const client = await EtcdClient.connect({ endpoints: cfg.urls });
    locker = new EtcdLocker(client);
    close = () => client.close();
  } else {
    const clients = await Promise.all(cfg.urls.map((u) => RedisClient.connect(u)));
    locker = cfg.backend === 'redis' ? new RedisLocker(clients[0]!) : new Redlock(clients);
    close = () => Promise.all(clients.map((c) => c.close()));
  }
  // Warm up: first use opens connections, sessions and caches that are not per-lock costs.
  await (await locker.acquire('mem:warmup', { ttlMs: 30_000 })).release();
  const before = snapshot();
  const held: Lock[] = [];
  for (let i = 0; i < cfg.count; i += 500) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(500, cfg.count - i) }, (_, j) => locker.acquire(`mem:${i + j}`, { ttlMs: 30_000 })),
    );
    held.push(...batch);
  }
  const after = snapshot();
  process.stdout.write(
    JSON.stringify({
      backend: cfg.backend,
      count: held.length,
      rssPerLock: (after.rss - before.rss) / held.length,
      heapPerLock: (after.heap - before.heap) / held.length,
    }) + '\n',
  );
  await locker.close();
  await close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
