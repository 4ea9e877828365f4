/**
 * EtcdLocker figures against a local single-member etcd (data dir in /dev/shm, --unsafe-no-fsync):
 *
 *   node --import tsx bench/etcd.ts [--rounds 3] [--seconds 3] [--clients 16]
 *
 * 1. Uncontended lock+unlock cycles/s: one client, one key, sequential.
 * 2. Contended acquisitions/s: `--clients` clients (each its own EtcdClient, so its own channel and
 *    streams), one key, each holding 1 ms and thinking 0-2 ms between acquisitions. Mutual exclusion
 *    and fence order are checked as it runs.
 * 3. Messages per acquisition, read from etcd's own /metrics (grpc_server_msg_received_total): unary
 *    requests and stream messages (watch creates/cancels, keep-alives) the server received.
 *
 * Medians of rounds. The machine is shared and noisy: compare ratios, not absolute numbers.
 *
 *   node --import tsx bench/etcd.ts --trace
 *
 * prints instead every message of one contended handoff, from the wirelock:etcd:* diagnostics
 * channels (the trace in docs/etcd.md): A holds, B queues behind it, A releases, B gets the lock.
 */
import dc from 'node:diagnostics_channel';
import { EtcdClient, EtcdLocker } from '../src/index.js';
import { startEtcd } from '../src/testing/servers.js';
import { median, numberArg } from './lib/stats.js';

const ROUNDS = numberArg('rounds', 3);
const SECONDS = numberArg('seconds', 3);
const CLIENTS = numberArg('clients', 16);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** etcd's count of request messages received, per method (unary requests and stream messages). */
async function received(endpoint: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('grpc_server_msg_received_total')) continue;
    const method = /grpc_method="([^"]+)"/.exec(line)![1]!;
    out.set(method, (out.get(method) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}

function perOp(before: Map<string, number>, after: Map<string, number>, ops: number): string {
  const parts: string[] = [];
  let total = 0;
  for (const [method, count] of after) {
    const d = count - (before.get(method) ?? 0);
    if (d <= 0) continue;
    total += d;
    parts.push(`${method} ${(d / ops).toFixed(2)}`);
  }
  return `${(total / ops).toFixed(2)} (${parts.join(', ')})`;
}

async function uncontended(locker: EtcdLocker, key: string): Promise<{ rate: number; ops: number }> {
  const start = performance.now();
  const end = start + SECONDS * 1000;
  let ops = 0;
  while (performance.now() < end) {
    const lock = await locker.acquire(key);
    await lock.release();
    ops++;
  }
  return { rate: ops / ((performance.now() - start) / 1000), ops };
}

async function contended(lockers: EtcdLocker[], key: string): Promise<{ rate: number; ops: number }> {
  let holders = 0;
  let lastFence = -1n;
  let ops = 0;
  const start = performance.now();
  const end = start + SECONDS * 1000;
  await Promise.all(
    lockers.map(async (locker) => {
      while (performance.now() < end) {
        const lock = await locker.acquire(key);
        if (++holders !== 1) throw new Error('two holders at once');
        if (lock.fence <= lastFence) throw new Error('fence went backwards');
        lastFence = lock.fence;
        await sleep(1);
        holders--;
        await lock.release();
        ops++;
        await sleep(Math.random() * 2);
      }
    }),
  );
  return { rate: ops / ((performance.now() - start) / 1000), ops };
}

async function main(): Promise<void> {
  const etcd = await startEtcd();
  const endpoint = etcd.clientUrl;
  try {
    const clients = await Promise.all(Array.from({ length: CLIENTS }, () => EtcdClient.connect({ endpoints: [endpoint] })));
    const lockers = clients.map((c) => new EtcdLocker(c));
    await uncontended(lockers[0]!, 'bench/warmup');
    await contended(lockers, 'bench/warmup');

    const u: number[] = [];
    const c: number[] = [];
    let uMsgs = '';
    let cMsgs = '';
    for (let r = 0; r < ROUNDS; r++) {
      const m0 = await received(endpoint);
      const ur = await uncontended(lockers[0]!, `bench/u${r}`);
      const m1 = await received(endpoint);
      const cr = await contended(lockers, `bench/c${r}`);
      const m2 = await received(endpoint);
      u.push(ur.rate);
      c.push(cr.rate);
      uMsgs = perOp(m0, m1, ur.ops);
      cMsgs = perOp(m1, m2, cr.ops);
      process.stderr.write(`round ${r + 1}: uncontended ${ur.rate.toFixed(0)}/s, contended ${cr.rate.toFixed(0)}/s\n`);
    }
    console.log(`etcd ${(await clients[0]!.status()).version}, ${ROUNDS} rounds of ${SECONDS} s, medians:`);
    console.log(`  uncontended lock+unlock: ${median(u).toFixed(0)} cycles/s  [${u.map((x) => x.toFixed(0)).join(', ')}]`);
    console.log(`    messages to etcd per cycle (last round): ${uMsgs}`);
    console.log(`  contended, ${CLIENTS} clients, 1 ms hold, 0-2 ms think: ${median(c).toFixed(0)} acquisitions/s  [${c.map((x) => x.toFixed(0)).join(', ')}]`);
    console.log(`    messages to etcd per acquisition (last round): ${cMsgs}`);
    await Promise.all(lockers.map((l) => l.close()));
    await Promise.all(clients.map((cl) => cl.close()));
  } finally {
    await etcd.stop();
  }
}

/** One line per message: who, which way, what, with keys and revisions (bigints) shown plainly. */
function describe(value: unknown): string {
  return JSON.stringify(value, (_k, v) => {
    if (typeof v === 'bigint') return v > 2n ** 53n ? `0x${v.toString(16)}` : Number(v);
    if (v && typeof v === 'object' && v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data).toString();
    if (Buffer.isBuffer(v)) return v.toString();
    return v;
  })
    .replace(/"header":\{[^}]*"revision":(\d+)[^}]*\}/g, '"rev":$1')
    .replace(/"(\w+)":/g, '$1:');
}

async function trace(): Promise<void> {
  const etcd = await startEtcd();
  const port = new URL(etcd.clientUrl).port;
  // Two spellings of one endpoint, so each client's messages can be told apart.
  const who = (endpoint: unknown): string => (String(endpoint).includes('localhost') ? 'B' : 'A');
  const a = new EtcdLocker(await EtcdClient.connect({ endpoints: [`http://127.0.0.1:${port}`] }));
  const b = new EtcdLocker(await EtcdClient.connect({ endpoints: [`http://localhost:${port}`] }));
  // Warm up (sessions, streams, JIT) with a few handoffs first.
  for (let i = 0; i < 20; i++) {
    const first = await a.acquire('warmup');
    const second = b.acquire('warmup');
    await sleep(2);
    await first.release();
    await (await second).release();
  }
  const held = await a.acquire('trace');
  const lines: string[] = [];
  const t0 = performance.now();
  const at = (): string => `${(performance.now() - t0).toFixed(2).padStart(7)} ms`;
  const subs: Array<[string, (m: unknown) => void]> = [
    ['wirelock:etcd:call', (m: any) => lines.push(`${at()}  ${who(m.endpoint)} -> ${m.method} ${describe(m.request)}`)],
    ['wirelock:etcd:response', (m: any) => lines.push(`${at()}  ${who(m.endpoint)} <- ${m.method} ${describe(m.response)}`)],
    ['wirelock:etcd:stream:send', (m: any) => lines.push(`${at()}  ${who(m.endpoint)} => ${m.stream} ${describe(m.message)}`)],
    ['wirelock:etcd:stream:receive', (m: any) => lines.push(`${at()}  ${who(m.endpoint)} <= ${m.stream} ${describe(m.message)}`)],
    ['wirelock:lock:acquire', (m: any) => lines.push(`${at()}  lock acquired: ${m.token} fence ${m.fence}`)],
  ];
  for (const [name, fn] of subs) dc.subscribe(name, fn);
  const waiting = b.acquire('trace');
  await sleep(50);
  lines.push(`${at()}  --- A releases`);
  await held.release();
  const next = await waiting;
  for (const [name, fn] of subs) dc.unsubscribe(name, fn);
  console.log(lines.join('\n'));
  await next.release();
  await Promise.all([a.close(), b.close()]);
  await etcd.stop();
}

await (process.argv.includes('--trace') ? trace() : main());
