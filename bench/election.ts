/**
 * Election figures, on etcd and on Redis, against servers it starts itself:
 *   handover   a leader resigns -> the next candidate leads, and -> an observer sees it
 *   observe    a leader proclaims -> an observer yields the new value
 *   failover   a leader's process is killed (SIGKILL) -> the next candidate leads, and -> observed;
 *              bounded below by the lease (TTL 2 s here, etcd's minimum)
 * Run: node --import tsx bench/election.ts [--runs=N]   (prints a markdown table; medians and maxima)
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EtcdClient, EtcdElection, RedisClient, RedisElection, type Election, type Leader } from '../src/index.js';
import { startEtcd, startRedis } from '../src/testing/servers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const runs = Number(process.argv.find((a) => a.startsWith('--runs='))?.slice(7) ?? 5);
const TTL_MS = 2000;
const log = (msg: string): void => void process.stderr.write(`${msg}\n`);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (xs: number[]): string => `${median(xs).toFixed(1)} / ${Math.max(...xs).toFixed(1)}`;

/** An observer whose next yield matching `pred` can be awaited, stamped when it arrived. */
function watch(e: Election): { until(pred: (l: Leader | null) => boolean): Promise<number>; stop(): void } {
  const ac = new AbortController();
  let waiters: Array<{ pred: (l: Leader | null) => boolean; resolve: (t: number) => void }> = [];
  void (async () => {
    for await (const l of e.observe({ signal: ac.signal })) {
      const t = performance.now();
      waiters = waiters.filter((w) => (w.pred(l) ? (w.resolve(t), false) : true));
    }
  })().catch(() => {});
  return { until: (pred) => new Promise((resolve) => waiters.push({ pred, resolve })), stop: () => ac.abort() };
}

interface Figures { handoverLead: number[]; handoverSeen: number[]; observe: number[]; failLead: number[]; failSeen: number[] }

async function measure(kind: string, url: string, make: (name: string) => Election): Promise<Figures> {
  const f: Figures = { handoverLead: [], handoverSeen: [], observe: [], failLead: [], failSeen: [] };
  const [a, b, o] = [make('h'), make('h'), make('h')];
  const obs = watch(o);
  for (let i = 0; i < 30; i++) {
    const la = await a.campaign('a');
    const pb = b.campaign('b');
    await new Promise((r) => setTimeout(r, 20));
    const seen = obs.until((l) => l?.value.toString() === 'b');
    const t = performance.now();
    await la.resign();
    const lb = await pb;
    f.handoverLead.push(performance.now() - t);
    f.handoverSeen.push((await seen) - t);
    for (let j = 0; j < 5; j++) {
      const v = `b-${i}-${j}`;
      const got = obs.until((l) => l?.value.toString() === v);
      const t2 = performance.now();
      await lb.proclaim(v);
      f.observe.push((await got) - t2);
    }
    await lb.resign();
  }
  obs.stop();
  for (let i = 0; i < runs; i++) {
    const name = `kill-${i}`;
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'election-child.ts'), kind, url, name, String(TTL_MS)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('leading') && resolve()));
    const [next, observer] = [make(name), make(name)];
    const seen = watch(observer);
    const seenNext = seen.until((l) => l?.value.toString() === 'next');
    const led = next.campaign('next');
    await new Promise((r) => setTimeout(r, 300));
    const t = performance.now();
    child.kill('SIGKILL');
    const l = await led;
    f.failLead.push(performance.now() - t);
    f.failSeen.push((await seenNext) - t);
    await l.resign();
    seen.stop();
    await Promise.all([next.close(), observer.close()]);
    log(`${kind}: kill ${i + 1}/${runs}: next led after ${f.failLead.at(-1)!.toFixed(0)} ms`);
  }
  await Promise.all([a.close(), b.close(), o.close()]);
  return f;
}

const [etcd, redis] = await Promise.all([startEtcd(), startRedis()]);
const etcdClient = await EtcdClient.connect({ endpoints: etcd.endpoints });
const redisClient = await RedisClient.connect(redis.url);
try {
  const rows: Array<[string, Figures]> = [
    ['etcd (1 member)', await measure('etcd', etcd.endpoints[0]!, (n) => new EtcdElection(etcdClient, n, { ttlMs: TTL_MS }))],
    ['Redis', await measure('redis', redis.url, (n) => new RedisElection(redisClient, n, { ttlMs: TTL_MS }))],
  ];
  console.log(`| backend | resign -> next leads | resign -> observed | proclaim -> observed | leader killed -> next leads | killed -> observed |`);
  console.log(`|---|---|---|---|---|---|`);
  for (const [label, f] of rows) {
    console.log(`| ${label} | ${fmt(f.handoverLead)} | ${fmt(f.handoverSeen)} | ${fmt(f.observe)} | ${fmt(f.failLead)} | ${fmt(f.failSeen)} |`);
  }
  console.log(`\nms, median / max. handover and observe: 30 and 150 samples; failover: ${runs} kills each, TTL ${TTL_MS} ms.`);
} finally {
  await Promise.all([etcdClient.close(), redisClient.close()]);
  await Promise.all([etcd.stop(), redis.stop()]);
}
