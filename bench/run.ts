/**
 * npm run bench [-- --quick]
 *
 * Runs every scenario for wirelock and for the libraries users would otherwise pick, in one run,
 * alternating libraries round by round after a warm-up, against servers it starts itself.
 * Prints a table, writes bench/results/latest.json and (full runs) docs/bench.md + docs/bench.svg.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { startEtcd, startRedis, startRedisCluster, startRedisNodes, type RedisClusterServers } from '../src/testing/servers.js';
import { clusterLibraries, etcdLibraries, rawIoredis, redlockLibraries, rwLibraries, semaphoreLibraries, singleRedisLibraries, type Library } from './lib/adapters.js';
import { contended, manyKeys, uncontended, uncontendedCycles, waiterScale, type ContendedResult } from './lib/scenarios.js';
import { commandCosts, countingRedisProxy, etcdMessages, redisCpuUs } from './lib/counters.js';
import { RedisClient } from '../src/index.js';
import { markdownTable, writeOutputs, type Row, type Section } from './lib/report.js';
import { fmt, median, ratios } from './lib/stats.js';
import { profile } from './profile.js';
import { goMutex } from './lib/go-mutex.js';
import { etcdHandoffFloor, h2ChannelLibrary, h2FloorLibrary, redlockFloorLibrary, respFloorLibrary } from './lib/floors.js';
import { nodeArgs, repoRoot } from './lib/paths.js';

const quick = process.argv.includes('--quick');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7).split(',');
const P = quick
  ? { rounds: 2, uncontendedS: 0.3, contendedS: 0.6, manyTotal: 3000, memCount: 1000, waiters: 30, costCycles: 5000 }
  : { rounds: 5, uncontendedS: 2, contendedS: 3, manyTotal: 20_000, memCount: 10_000, waiters: 200, costCycles: 50_000 };
const log = (msg: string): void => void process.stderr.write(`${msg}\n`);

/** Runs `measure` for each library, `rounds` times, alternating libraries within each round. */
async function alternate<T>(libs: Library[], measure: (lib: Library) => Promise<T>): Promise<Map<Library, T[]>> {
  const out = new Map<Library, T[]>(libs.map((l) => [l, []]));
  for (const lib of libs) await measure(lib); // warm-up round: JIT, connections, script caches
  for (let r = 0; r < P.rounds; r++) {
    const order = r % 2 === 0 ? libs : [...libs].reverse();
    for (const lib of order) out.get(lib)!.push(await measure(lib));
  }
  return out;
}

/**
 * `uncontended` over `libs`, rounds alternating as in alternate(), and what each cycle cost the Redis
 * servers, in CPU µs (redisCpuUs read before and after each round; the warm-up round is left out).
 */
async function uncontendedWithServerCpu(libs: Library[], servers: RedisClient[]): Promise<{ rates: Map<Library, number[]>; cpu: Map<Library, number[]> }> {
  const cpu = new Map<Library, number[]>(libs.map((l) => [l, []]));
  const rates = await alternate(libs, async (lib) => {
    const before = await redisCpuUs(servers);
    const { rate, cycles } = await uncontendedCycles(lib, P.uncontendedS);
    cpu.get(lib)!.push(((await redisCpuUs(servers)) - before) / cycles);
    return rate;
  });
  for (const [lib, v] of cpu) cpu.set(lib, v.slice(1));
  return { rates, cpu };
}

/** Adds each library's median server CPU per cycle to its row. */
function addServerCpu(rows: Row[], libs: Library[], cpu: Map<Library, number[]>): void {
  for (const lib of libs) {
    const row = rows.find((x) => x.library === lib.name)!;
    row.cells[SERVER_CPU] = { value: median(cpu.get(lib)!), digits: 1, rounds: cpu.get(lib)! };
  }
}

const SERVER_CPU = 'server CPU µs/cycle';

/** Rows for a "higher is better" single-number scenario, with wirelock's ratio against the best anchor. */
function throughputRows(results: Map<Library, number[]>, column: string): Row[] {
  const libs = [...results.keys()];
  const ours = libs.find((l) => l.ours)!;
  const anchors = libs.filter((l) => !l.ours && !l.reference && !l.name.startsWith('raw'));
  const best = anchors.reduce((a, b) => (median(results.get(a)!) >= median(results.get(b)!) ? a : b));
  return libs.map((lib) => {
    const rounds = results.get(lib)!;
    const row: Row = { library: lib.name, ours: lib.ours, cells: { [column]: { value: median(rounds), rounds } } };
    if (lib === ours) {
      const rs = ratios(rounds, results.get(best)!);
      row.ratio = { value: median(rs), versus: best.name, rounds: rs };
      const raw = libs.find((l) => l.name.startsWith('raw'));
      if (raw) row.cells['vs raw ioredis'] = { value: median(ratios(rounds, results.get(raw)!)), digits: 2 };
    }
    return row;
  });
}

function contendedRows(results: Map<Library, ContendedResult[]>, opsLabel: string): Row[] {
  const libs = [...results.keys()];
  const med = (lib: Library, k: keyof ContendedResult): number => median(results.get(lib)!.map((r) => r[k]));
  const ours = libs.find((l) => l.ours)!;
  const anchors = libs.filter((l) => !l.ours && !l.reference);
  const best = anchors.reduce((a, b) => (med(a, 'acqPerSec') >= med(b, 'acqPerSec') ? a : b));
  const bestP99 = anchors.reduce((a, b) => (med(a, 'waitP99') <= med(b, 'waitP99') ? a : b));
  return libs.map((lib) => {
    const row: Row = {
      library: lib.name,
      ours: lib.ours,
      cells: {
        'acq/s': { value: med(lib, 'acqPerSec') },
        'wait p50 ms': { value: med(lib, 'waitP50'), digits: 1 },
        'wait p99 ms': { value: med(lib, 'waitP99'), digits: 1 },
        'wait max ms': { value: med(lib, 'waitMax'), digits: 0 },
        'release→next ms': { value: med(lib, 'gapP50'), digits: 2 },
        'hold ms': { value: med(lib, 'holdP50'), digits: 2 },
        'min/worker': { value: med(lib, 'minPerWorker') },
        'max/worker': { value: med(lib, 'maxPerWorker') },
        violations: { value: Math.max(...results.get(lib)!.map((r) => r.violations)) },
        [opsLabel]: { value: med(lib, 'serverOpsPerHandoff'), digits: 1 },
      },
    };
    if (lib === ours) {
      const acq = results.get(lib)!.map((r) => r.acqPerSec);
      const rs = ratios(acq, results.get(best)!.map((r) => r.acqPerSec));
      row.ratio = { value: median(rs), versus: best.name, rounds: rs };
      const p99 = ratios(results.get(bestP99)!.map((r) => r.waitP99), results.get(lib)!.map((r) => r.waitP99));
      row.cells['p99 gain'] = { value: median(p99), digits: 1 };
    }
    return row;
  });
}

function print(s: Section): void {
  console.log(`\n## ${s.id}. ${s.title}${s.target ? `\nTarget: ${s.target}` : ''}\n`);
  console.log(markdownTable(s));
}

async function main(): Promise<void> {
  const started = new Date().toISOString();
  const t0 = performance.now();
  log(`wirelock bench (${quick ? 'quick' : 'full'}): starting servers`);
  const redis = await startRedis();
  const nodes = await startRedisNodes(3);
  const etcd = await startEtcd();
  const sections: Section[] = [];
  const want = (id: string): boolean => !only || only.includes(id);
  // Three masters without replicas: the rows compare clients, and replicas would only add their
  // replication's CPU to this 2-core machine's noise.
  const cluster: RedisClusterServers | undefined = want('11') ? await startRedisCluster({ masters: 3, replicasPerMaster: 0 }) : undefined;
  const proxies: Array<{ close(): Promise<void> }> = [];
  const profileLines: string[] = [];
  try {
    if (want('1')) {
      log('1. uncontended single Redis');
      const floor = respFloorLibrary(redis.url);
      const libs = [...singleRedisLibraries(redis.url), rawIoredis(redis.url), floor];
      const admin = await RedisClient.connect(redis.url);
      const { rates: r, cpu, costs } = await uncontendedWithServerCpu(libs, [admin])
        .then(async (m) => ({ ...m, costs: await commandCosts(admin, P.costCycles) }))
        .finally(() => admin.close());
      const rows = throughputRows(r, 'cycles/s');
      rows.find((x) => x.ours)!.cells['of the floor'] = { value: median(ratios(r.get(libs[0]!)!, r.get(floor)!)), digits: 2 };
      addServerCpu(rows, libs, cpu);
      sections.push({
        id: '1', title: 'Uncontended acquire+release, one Redis, a new key each cycle (cycles/s)', columns: ['cycles/s', 'vs raw ioredis', 'of the floor', SERVER_CPU],
        higherIsBetter: true, rows, target: '≥ 1.5× the best lock library, ≥ 1.25× raw ioredis',
        notes: [
          'Every library here spends two round trips a cycle. wirelock\'s acquire is one EVALSHA, because the SET NX PX, the check for queued waiters and the next fence must be atomic. redis-semaphore and raw ioredis send a plain SET NX PX instead, which costs the server less. The fence counter expires with its lock (so memory is bounded by the live locks): a SET with PX where it used to be a never-expiring INCR, measured at 13-26% fewer script runs per second when the server alone is the limit (256 in flight, the acquire and release scripts only), not visible in these client-bound scenarios.',
          'of the floor: wirelock\'s rate over that of a bare net.Socket writing the same SET NX PX and compare-and-delete EVALSHA as raw ioredis, pre-encoded, and reading only the line ends of the replies (bench/lib/floors.ts): no client can do less per cycle. The floor is shown for reference and is never the anchor.',
          'The profile under "Where the time goes" shows how a cycle splits: most of it is waiting for the server and the socket-write syscalls, and wirelock\'s own code is a small share.',
          `${SERVER_CPU}: the CPU time the redis-server process used per cycle (user + system, from INFO cpu before and after each round), the median over rounds. Most of it is the server\'s own reads, writes and event-loop waits, one of each per command for every library; the rest is the commands themselves.`,
          `Inside the server, per call (INFO commandstats, ${fmt(P.costCycles)} cycles on new keys, 16 at a time, in this run): wirelock\'s acquire script ${fmt(costs.acquire, 2)} µs and its release script ${fmt(costs.release, 2)} µs; raw ioredis\'s SET NX PX ${fmt(costs.setNx, 2)} µs and compare-and-delete script ${fmt(costs.compareAndDelete, 2)} µs. The acquire\'s extra is mostly the fence: the counter\'s GET and SET PX, and TIME for a name whose counter has expired, as every name is here; the other libraries hand out no fence.`,
          'Against the goal: the floor, which does less work than any lock client can, is itself only about 1.15× the libraries here, so no client reaches 1.5× them on this loop of two round trips; the goal is out of reach by the loop\'s own arithmetic, not by wirelock\'s code.',
        ],
      });
      print(sections.at(-1)!);
    }
    if (want('2')) {
      log('2. uncontended Redlock, 3 nodes');
      const floor = redlockFloorLibrary(nodes.map((n) => n.url));
      const libs = [...redlockLibraries(nodes.map((n) => n.url)), floor];
      const admins = await Promise.all(nodes.map((n) => RedisClient.connect(n.url)));
      const { rates: r, cpu } = await uncontendedWithServerCpu(libs, admins).finally(() => Promise.all(admins.map((a) => a.close())));
      const rows = throughputRows(r, 'cycles/s');
      addServerCpu(rows, libs, cpu);
      rows.find((x) => x.ours)!.cells['of the floor'] = { value: median(ratios(r.get(libs[0]!)!, r.get(floor)!)), digits: 2 };
      sections.push({
        id: '2', title: 'Uncontended Redlock over 3 nodes (cycles/s)', columns: ['cycles/s', 'of the floor', SERVER_CPU], higherIsBetter: true,
        rows, target: '≥ 1.5× the best Redlock library',
        notes: [
          'Each cycle is one parallel round to the 3 nodes to acquire and one to release, the same as the other libraries. The round ends at the quorum, so it waits for the second-fastest node.',
          `${SERVER_CPU}: summed over the 3 servers, as in section 1. wirelock\'s acquire is the queued script (it checks each node\'s line of waiters), so that a contended lock is served in order (section 3b).`,
          'of the floor: wirelock\'s rate over that of bare sockets to the 3 nodes writing raw ioredis\'s SET NX PX and compare-and-delete EVALSHA to every node at once, pre-encoded, each round done when 2 of the 3 have answered (bench/lib/floors.ts). As in section 1, where the floor itself is short of 1.5× the libraries, the goal is out of reach on this loop of two rounds.',
        ],
      });
      print(sections.at(-1)!);
    }
    if (want('3')) {
      log('3. contended, 16 workers (single Redis, then Redlock over 3 nodes)');
      // Operations per handoff are counted on a separate pass through a counting proxy (the proxy adds latency).
      const proxy = await countingRedisProxy(redis);
      proxies.push(proxy);
      const single = await alternate(singleRedisLibraries(redis.url), (lib) => contended(lib, { workers: 16, seconds: P.contendedS }));
      // (--quick skips this pass: the column shows '-')
      for (const lib of quick ? [] : single.keys()) {
        const viaProxy = singleRedisLibraries(proxy.url).find((l) => l.name === lib.name)!;
        const counted = await contended(viaProxy, { workers: 16, seconds: P.contendedS, serverOps: async () => proxy.commands() });
        for (const res of single.get(lib)!) res.serverOpsPerHandoff = counted.serverOpsPerHandoff;
      }
      sections.push({
        id: '3a', title: 'Contended: 16 workers, one key, hold 1 ms, think 0–2 ms, one Redis', columns: ['acq/s', 'wait p50 ms', 'wait p99 ms', 'wait max ms', 'release→next ms', 'min/worker', 'max/worker', 'violations', 'commands/handoff', 'p99 gain'],
        higherIsBetter: true, rows: contendedRows(single, 'commands/handoff'), target: '≥ 1.5× throughput, p99 wait ≤ 1/4 of the best anchor\'s (p99 gain ≥ 4), 0 violations',
        notes: ['commands/handoff: commands clients sent (counted by a RESP-parsing proxy on a separate pass) per acquisition.'],
      });
      print(sections.at(-1)!);
      const rl = await alternate(redlockLibraries(nodes.map((n) => n.url)), (lib) => contended(lib, { workers: 16, seconds: P.contendedS }));
      sections.push({
        id: '3b', title: 'Contended: 16 workers, one key, hold 1 ms, think 0–2 ms, Redlock over 3 nodes', columns: ['acq/s', 'wait p50 ms', 'wait p99 ms', 'wait max ms', 'release→next ms', 'min/worker', 'max/worker', 'violations', 'p99 gain'],
        higherIsBetter: true, rows: contendedRows(rl, 'commands/handoff'), target: '≥ 1.5× throughput, p99 wait ≤ 1/4 of the best anchor\'s, 0 violations',
        notes: ['Redlock\'s waiters stand in line on every node, ordered alike by a ticket taken when the wait began, and a release wakes only the waiter it names (docs/redlock.md, "Waiting in line on every node"). The other libraries\' waiters retry on a timer and race for each release.'],
      });
      print(sections.at(-1)!);
    }
    if (want('4') || want('5')) {
      const go = await goMutex(etcd.clientUrl);
      proxies.push(go);
      const libs = etcdLibraries(etcd.clientUrl, [10, 100], go.library);
      const named = (prefix: string): Library => libs.find((l) => l.name.startsWith(prefix))!;
      const [ours, grpcJs, goLib, etcd3] = [libs[0]!, named('wirelock EtcdLocker on grpc-js'), go.library, named('etcd3 Lock (retry every 10 ms)')];
      if (want('4')) {
        log('4. etcd uncontended');
        const floor = h2FloorLibrary(etcd.clientUrl);
        const channel = h2ChannelLibrary(etcd.clientUrl);
        const r = await alternate([ours, grpcJs, goLib, etcd3, channel, floor], (lib) => uncontended(lib, P.uncontendedS));
        const rows = throughputRows(r, 'cycles/s');
        const mine = rows.find((x) => x.ours)!;
        mine.cells['of the floor'] = { value: median(ratios(r.get(ours)!, r.get(floor)!)), digits: 2 };
        mine.cells['vs Go Mutex'] = { value: median(ratios(r.get(ours)!, r.get(goLib)!)), digits: 2 };
        mine.cells['vs etcd3'] = { value: median(ratios(r.get(ours)!, r.get(etcd3)!)), digits: 2 };
        mine.cells['vs grpc-js transport'] = { value: median(ratios(r.get(ours)!, r.get(grpcJs)!)), digits: 2 };
        sections.push({
          id: '4', title: 'etcd: uncontended lock+unlock (cycles/s)', columns: ['cycles/s', 'vs Go Mutex', 'vs etcd3', 'vs grpc-js transport', 'of the floor'], higherIsBetter: true,
          rows, target: '≥ 1.0× Go\'s concurrency.Mutex, ≥ 3× etcd3',
          notes: [
            'wirelock sends 2 Txns a cycle on a session lease that is already granted, as Go\'s Mutex does. etcd3 grants and revokes a lease for every lock. Each write is a raft commit, so the cycle rate follows etcd\'s write latency plus the client\'s CPU per call.',
            'of the floor: wirelock\'s rate over that of a bare HTTP/2 socket sending the locker\'s own two KV.Txn calls a cycle, pre-encoded (the put on a lease that reads back the two newest keys, and the guarded delete), answering only SETTINGS and PINGs and decoding nothing (bench/lib/floors.ts). It shows what etcd and the loopback cost by themselves for this cycle.',
            'wirelock\'s HTTP/2 channel alone sends the same two pre-encoded Txns through src/etcdrpc/h2 and decodes each answer with protobufjs, with nothing above it (no client API, no retries, no lock). Read from the floor down: the floor is what etcd costs; the channel row adds the transport (HTTP/2, HPACK, gRPC framing, protobuf decoding); the EtcdLocker row adds the client API (encoding the request objects, the retry loop, deadlines) and the lock itself (the session, the queue\'s answer, the held lock).',
            'wirelock EtcdLocker runs on its own HTTP/2 transport (the default); the grpc-js row is the same locker on @grpc/grpc-js, for reference (never the anchor). etcd\'s Go row is bench/go/mutex, built offline against Debian\'s etcd 3.4 sources.',
          ],
        });
        print(sections.at(-1)!);
      }
      if (want('5')) {
        log('5. etcd contended');
        const ops = (): Promise<number> => etcdMessages(etcd.clientUrl);
        const r = await alternate(libs, (lib) => contended(lib, { workers: 16, seconds: P.contendedS, serverOps: lib.external ? undefined : ops }));
        const rows = contendedRows(r, 'RPC msgs/handoff');
        const mine = rows.find((x) => x.ours)!;
        const acq = (lib: Library): number[] => r.get(lib)!.map((x) => x.acqPerSec);
        const p99 = (lib: Library): number[] => r.get(lib)!.map((x) => x.waitP99);
        mine.cells['thr vs Go'] = { value: median(ratios(acq(ours), acq(goLib))), digits: 2 };
        mine.cells['thr vs etcd3'] = { value: median(ratios(acq(ours), acq(etcd3))), digits: 2 };
        mine.cells['p99 gain vs etcd3'] = { value: median(ratios(p99(etcd3), p99(ours))), digits: 1 };
        // The bound: a hold as long as wirelock's took, then the least a handoff can take.
        const handoffMs = await etcdHandoffFloor(etcd.clientUrl, quick ? 200 : 2000);
        const holdMs = median(r.get(ours)!.map((x) => x.holdP50));
        const bound = 1000 / (holdMs + handoffMs);
        const bestEtcd3 = Math.max(...libs.filter((l) => l.name.startsWith('etcd3')).map((l) => median(acq(l))));
        rows.push({
          library: 'bound: wirelock\'s hold + delete→event',
          ours: false,
          cells: {
            'acq/s': { value: bound },
            'release→next ms': { value: handoffMs, digits: 2 },
            'hold ms': { value: holdMs, digits: 2 },
            'thr vs Go': { value: bound / median(acq(goLib)), digits: 2 },
            'thr vs etcd3': { value: bound / bestEtcd3, digits: 2 },
          },
        });
        sections.push({
          id: '5', title: 'etcd: contended, 16 workers, hold 1 ms, think 0–2 ms', columns: ['acq/s', 'wait p50 ms', 'wait p99 ms', 'wait max ms', 'release→next ms', 'hold ms', 'min/worker', 'max/worker', 'violations', 'RPC msgs/handoff', 'thr vs Go', 'thr vs etcd3', 'p99 gain vs etcd3'],
          higherIsBetter: true, rows, target: '≥ 3× Go\'s and etcd3\'s throughput, p99 wait ≤ 1/5 of etcd3\'s',
          notes: [
            'RPC msgs/handoff: the gRPC request messages etcd received, unary calls and stream messages, per acquisition (from its /metrics; not counted for the Go row, which runs in its own process).',
            'A handoff needs the holder\'s delete Txn (a raft write), then the watch event, then the waiter\'s check Txn, one after the other. The check is read-only (a compare and a range), which etcd serves as a linearizable read (ReadIndex) without a log entry, about 0.25 ms here. It stays: it confirms, as a linearizable read, that our key is still ours and that no older key is left ahead. Without it a grant would rest on the order of events across two watches (the predecessor\'s and our own), which etcd does not promise.',
            'hold ms: how long each holder\'s `sleep(1)` took, from its grant to its release call (a 1 ms timer fires late on a busy event loop). The bound row is the most any etcd lock could pass here with holds as long as wirelock\'s: one hold (wirelock\'s median), plus the least a handoff can take, measured in the same run as the median time from one client\'s guarded delete to the delete event on another client\'s watch (bench/lib/floors.ts etcdHandoffFloor): a release must be a raft write, and the next holder must hear of it. Its thr columns are that bound over the Go row and the best etcd3 row. Where one is below 3, that goal of 3× is out of reach for any client with such holds on this machine.',
          ],
        });
        print(sections.at(-1)!);
      }
    }
    if (want('6')) {
      log('6. many keys, 256 in flight');
      const libs = singleRedisLibraries(redis.url).filter((l) => l.ours || l.name === '@sesamecare-oss/redlock');
      const r = await alternate(libs, (lib) => manyKeys(lib, P.manyTotal, 256));
      const ceiling = redisCeiling(redis.port, P.manyTotal);
      const rows = throughputRows(r, 'cycles/s');
      rows.push({ library: 'redis-benchmark ceiling (SET, pipelined, 2 per cycle)', ours: false, cells: { 'cycles/s': { value: ceiling } } });
      sections.push({
        id: '6', title: `Many keys: ${P.manyTotal} acquire+release cycles on distinct keys, 256 in flight, one process (cycles/s)`, columns: ['cycles/s'],
        higherIsBetter: true, rows, target: '≥ 1.5× @sesamecare-oss/redlock',
      });
      print(sections.at(-1)!);
    }
    if (want('7')) {
      log('7. memory per held lock');
      const rows: Row[] = [];
      for (const [backend, urls] of [['redis', [redis.url]], ['redlock', nodes.map((n) => n.url)], ['etcd', [etcd.clientUrl]]] as const) {
        const res = memory(backend, [...urls], P.memCount);
        rows.push({ library: `wirelock ${backend}`, ours: true, cells: { 'RSS bytes/lock': { value: res.rssPerLock }, 'heap bytes/lock': { value: res.heapPerLock } } });
      }
      sections.push({
        id: '7', title: `Memory per held, auto-extended lock (${P.memCount} held)`, columns: ['heap bytes/lock', 'RSS bytes/lock'], higherIsBetter: false, rows,
        target: '≤ 2 KB per lock',
        notes: ['Heap is measured after two forced GCs, before and after taking the locks. RSS is the looser figure: it also counts space V8 and the allocator reserve for later. One part is fixed, not per lock: V8\'s young generation grew by about 16 MiB during the burst of acquisitions (1.7 KB of each lock\'s RSS at 10k locks, measured with v8.getHeapSpaceStatistics). An etcd lock is a HeldLock on a shared session (the queue functions of etcd-queue.ts, no Mutex object), with no AbortSignal until someone reads `signal`; a held lock keeps the process alive through a shared counter, not a closure of its own.'],
      });
      print(sections.at(-1)!);
    }
    if (want('9')) {
      log('9. semaphore, limit 4, 16 workers');
      const proxy = await countingRedisProxy(redis);
      proxies.push(proxy);
      const r = await alternate(semaphoreLibraries(redis.url, 4), (lib) => contended(lib, { workers: 16, seconds: P.contendedS, limit: 4 }));
      for (const lib of quick ? [] : r.keys()) {
        const viaProxy = semaphoreLibraries(proxy.url, 4).find((l) => l.name === lib.name)!;
        const counted = await contended(viaProxy, { workers: 16, seconds: P.contendedS, limit: 4, serverOps: async () => proxy.commands() });
        for (const res of r.get(lib)!) res.serverOpsPerHandoff = counted.serverOpsPerHandoff;
      }
      sections.push({
        id: '9', title: 'Semaphore: limit 4, 16 workers, one key, hold 1 ms, think 0–2 ms, one Redis', columns: ['acq/s', 'wait p50 ms', 'wait p99 ms', 'wait max ms', 'min/worker', 'max/worker', 'violations', 'commands/handoff', 'p99 gain'],
        higherIsBetter: true, rows: contendedRows(r, 'commands/handoff'), target: 'report (issue 14): throughput, p99 wait and commands per handoff against redis-semaphore',
        notes: [
          'violations: grants while 4 already held, seen by the workers (0 expected). commands/handoff: commands clients sent per acquisition, counted by a RESP-parsing proxy on a separate pass (--quick skips it).',
          'wirelock\'s waiters queue and are named by the release that admits them. redis-semaphore polls: each waiter retries every retryInterval (10 ms by default) until it gets a permit.',
        ],
      });
      print(sections.at(-1)!);
    }
    if (want('10')) {
      log('10. read-write lock, 16 workers, read-heavy and write-heavy');
      for (const [id, share, label] of [['10a', 0.9, 'read-heavy: 90% reads'], ['10b', 0.1, 'write-heavy: 10% reads']] as const) {
        const r = await alternate(rwLibraries(redis.url), (lib) => contended(lib, { workers: 16, seconds: P.contendedS, readShare: share }));
        sections.push({
          id, title: `Read-write lock, ${label}: 16 workers, one key, hold 1 ms, think 0–2 ms, one Redis`, columns: ['acq/s', 'wait p50 ms', 'wait p99 ms', 'wait max ms', 'min/worker', 'max/worker', 'violations', 'p99 gain'],
          higherIsBetter: true, rows: contendedRows(r, 'commands/handoff'), target: 'report (issue 14): what sharing reads buys, and no violations',
          notes: ['violations: a writer granted beside anyone, or a reader beside a writer, as the workers saw it (0 expected). The anchor runs the same mix with every cycle exclusive.'],
        });
        print(sections.at(-1)!);
      }
    }
    if (want('8')) {
      log('8. waiter scale');
      const proxy = await countingRedisProxy(redis);
      proxies.push(proxy);
      const redisLib = singleRedisLibraries(proxy.url)[0]!;
      const etcdLib = etcdLibraries(etcd.clientUrl, [])[0]!;
      const rows: Row[] = [];
      for (const n of quick ? [P.waiters] : [10, 50, P.waiters]) {
        const redisOps = await waiterScale(redisLib, n, async () => proxy.commands());
        const unary = await waiterScale(etcdLib, n, () => etcdMessages(etcd.clientUrl, { method: /^(Range|Put|DeleteRange|Txn|LeaseGrant|LeaseRevoke|LeaseTimeToLive)$/ }));
        const watchIn = await waiterScale(etcdLib, n, () => etcdMessages(etcd.clientUrl, { method: /^Watch$/ }));
        const watchOut = await waiterScale(etcdLib, n, () => etcdMessages(etcd.clientUrl, { sent: true, method: /^Watch$/ }));
        rows.push({
          library: `${n} waiters`, ours: true,
          cells: {
            'Redis commands/handoff': { value: redisOps, digits: 2 },
            'etcd unary RPCs/handoff': { value: unary, digits: 2 },
            'etcd watch requests/handoff': { value: watchIn, digits: 2 },
            'etcd watch responses/handoff': { value: watchOut, digits: 2 },
          },
        });
      }
      sections.push({
        id: '8', title: 'Waiter scale: N waiters on one key, the lock passed down the whole line', columns: ['Redis commands/handoff', 'etcd unary RPCs/handoff', 'etcd watch requests/handoff', 'etcd watch responses/handoff'],
        higherIsBetter: false, rows, target: 'etcd O(1) per handoff (≤ 3 RPCs and 1 watch event); Redis: report how it grows',
        notes: [
          'Redis: the release, the next waiter\'s acquire, and that waiter\'s UNSUBSCRIBE. The release message names the next waiter, so no one else sends anything.',
          'etcd: the unary RPCs are the holder\'s delete Txn and the next waiter\'s check Txn. The watch requests are that waiter cancelling its two watches (its predecessor and its own key). The watch responses are the one delete event and the two cancel acknowledgements. No other waiter hears anything.',
        ],
      });
      print(sections.at(-1)!);
    }
    if (cluster) {
      log('11. Redis Cluster, 3 masters: uncontended, then 16 workers on one key');
      const libs = clusterLibraries(cluster.urls);
      const u = await alternate(libs, (lib) => uncontended(lib, P.uncontendedS));
      sections.push({
        id: '11a', title: 'Redis Cluster (3 masters): uncontended acquire+release, a new key each cycle (cycles/s)', columns: ['cycles/s'],
        higherIsBetter: true, rows: throughputRows(u, 'cycles/s'), target: 'report (issue 12): against the libraries on an ioredis Cluster',
        notes: [
          'Each cycle\'s key is new, so its slot, and the master it goes to, change from cycle to cycle. Every client routes by its own slot map and sends each command straight to the slot\'s master: two round trips a cycle, as on one Redis.',
          'wirelock finds a script\'s keys from its KEYS (numkeys) and checks that they share a slot before sending; its lock keys share the hash tag {key}.',
        ],
      });
      print(sections.at(-1)!);
      const c = await alternate(libs, (lib) => contended(lib, { workers: 16, seconds: P.contendedS }));
      sections.push({
        id: '11b', title: 'Redis Cluster (3 masters): contended, 16 workers, one key, hold 1 ms, think 0–2 ms', columns: ['acq/s', 'wait p50 ms', 'wait p99 ms', 'wait max ms', 'release→next ms', 'min/worker', 'max/worker', 'violations', 'p99 gain'],
        higherIsBetter: true, rows: contendedRows(c, 'commands/handoff'), target: 'report (issue 12): against the libraries on an ioredis Cluster, 0 violations',
        notes: ['One key means one slot and one master, as for any hot lock on a cluster. wirelock\'s waiters queue on that master and are woken by a sharded-pub/sub message (SPUBLISH) from the release; the anchors retry on their timers.'],
      });
      print(sections.at(-1)!);
    }
    if (!quick && !only) {
      log('profiles: where the time goes');
      profileLines.push(
        'Each profile runs one wirelock scenario alone in a child process, warms it up, then records a CPU profile through `node:inspector` for 3 s. It shows the time split by kind, then the frames with the most self time. `(idle)` is time spent waiting for the network and the server, and `(program)` is native work outside JavaScript, such as syscalls and the event loop.',
        '',
        'The etcd profiles are of wirelock\'s own HTTP/2 transport (`transport: \'h2\'`, the default; docs/h2.md). On grpc-js the same cycle spent most of its client CPU in Node\'s stream machinery, grpc-js and `node:http2`: that is the time the own transport took out (section 4 has the grpc-js row for comparison).',
        '',
        'Three costs found by earlier profiles are kept out of the hot path by design, and the code says so without repeating the figures: an `AbortController` and its abort event per lock were about a tenth of the CPU of an uncontended Redis acquire+release (so `lock.signal` is made on first read); the stack trace of the `LockReleasedError` built on every release was about 8% of that cycle (so it is built without one, and only when asked for); and on etcd, sending each unary call straight on the grpc-js channel instead of through its `Client` (which captures the caller\'s stack and wraps the call twice) saved about a fifth of the client\'s CPU per call.',
        '',
      );
      for (const [name, urls] of [
        ['redis', [redis.url]],
        ['redlock', nodes.map((n) => n.url)],
        ['etcd', [etcd.clientUrl]],
        ['etcd-contended', [etcd.clientUrl]],
      ] as const) {
        profileLines.push(`### ${name}`, '', ...profile(name, [...urls]), '');
      }
    }
  } finally {
    await Promise.all(proxies.map((p) => p.close()));
    await Promise.all([redis.stop(), ...nodes.map((n) => n.stop()), etcd.stop(), cluster?.stop()]);
  }
  writeOutputs(repoRoot, sections, {
    quick: quick || only !== undefined, // docs/bench.md records full runs of every scenario only
    rounds: P.rounds,
    started,
    durationS: (performance.now() - t0) / 1000,
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.versions.node}, redis ${redisVersion()}, etcd ${etcdVersion()}`,
    method: [
      'All libraries run in this one process against the same local servers (redis-server, etcd, started by the local servers module on loopback), one after another.',
      'wirelock runs compiled by tsc (build/), as users run it from dist/, like the other libraries\' plain JavaScript; not through tsx, whose esbuild transform adds a name-keeping call to every closure created.',
      `Each scenario runs one warm-up round per library, then ${P.rounds} measured rounds; within a round the libraries alternate (the order reverses every round).`,
      'Ratios are computed per round (round i of wirelock against round i of the anchor) and the median of those is reported.',
      'Anchors use their documented defaults (retry delays, refresh intervals): what a user of each library gets out of the box. Their acquire waits without a retry limit.',
      'Contended runs: 16 workers, each with its own connection(s), loop think 0–2 ms → acquire → hold 1 ms → release; "violations" counts a grant while another worker was inside.',
    ],
    profile: profileLines,
  });
  log(`done in ${Math.round((performance.now() - t0) / 1000)} s`);
}

function redisCeiling(port: number, total: number): number {
  // The same two commands a cycle costs at minimum (SET NX PX + a script), pipelined over 50 connections.
  const out = execFileSync('redis-benchmark', ['-p', String(port), '-c', '50', '-P', '16', '-n', String(Math.max(total, 100_000)), '-r', '1000000', '-q', '-t', 'set'], { encoding: 'utf8' });
  const set = Number(/([\d.]+) requests per second/.exec(out)?.[1]);
  return set / 2;
}

function memory(backend: string, urls: string[], count: number): { rssPerLock: number; heapPerLock: number } {
  const r = spawnSync(process.execPath, [...nodeArgs('memory-child', ['--expose-gc']), JSON.stringify({ backend, urls, count })], { encoding: 'utf8', cwd: repoRoot });
  if (r.status !== 0) throw new Error(`memory child (${backend}) failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { rssPerLock: number; heapPerLock: number };
}

function redisVersion(): string {
  return /v=([\d.]+)/.exec(execFileSync('redis-server', ['--version'], { encoding: 'utf8' }))?.[1] ?? '?';
}

function etcdVersion(): string {
  return /etcd Version: ([\d.]+)/.exec(execFileSync('etcd', ['--version'], { encoding: 'utf8' }))?.[1] ?? '?';
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
