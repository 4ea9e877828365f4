/**
 * One demo worker process (forked by scripts/demo.ts, kept for every backend in turn).
 *
 * Per scenario it connects to the backend it is told, then loops until told to stop: acquire the
 * lock, read the shared counter from the fenced store (the parent), work for `holdMs`, write the
 * counter + 1 back with the lock's fence, release. Each hold is reported with
 * process.hrtime.bigint() stamps (CLOCK_MONOTONIC, one clock for every process on the machine, and
 * it keeps running while a process is SIGSTOPped), so the parent can check that holds never overlapped.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdClient, EtcdLocker, LockLostError, RedisClient, RedisCluster, RedisLocker, Redlock, type Lock, type Locker } from '../src/index.js';
import type { FromWorker, HoldReport, ScenarioConfig, ToWorker } from './demo-protocol.js';
import { answerMetricsOverIpc } from './demo-metrics.js';

answerMetricsOverIpc(); // only when the demo runs with --metrics

const id = Number(process.argv[2]);
/** How long the victim lingers between its ownership check and its write: the parent's SIGSTOP lands in here. */
const PAUSE_WINDOW_MS = 400;

const send = (msg: FromWorker): void => void process.send!(msg);
const hr = (): bigint => process.hrtime.bigint();

interface Backend {
  locker: Locker;
  close(): Promise<void>;
}

async function connect(cfg: ScenarioConfig): Promise<Backend> {
  if (cfg.backend === 'etcd') {
    // A write in flight when the leader dies is answered by nobody: the member that forwarded it
    // cannot tell whether it was committed. The caller learns only from its own deadline, so keep
    // it short here (default 5 s): the lock's next turn waits on it.
    const client = await EtcdClient.connect({ endpoints: cfg.urls, callTimeoutMs: 1000 });
    const locker = new EtcdLocker(client, { ttlMs: cfg.ttlMs });
    return { locker, close: async () => (await locker.close(), await client.close()) };
  }
  if (cfg.backend === 'cluster') {
    // Read the slot map every second (default 2 s): a failover that the nodes agree on is then seen
    // soon even by a worker that was not redirected.
    const cluster = await RedisCluster.connect({ seeds: cfg.urls, reconnect: () => 50, topologyRefreshMs: 1000 });
    const locker = new RedisLocker(cluster, { ttlMs: cfg.ttlMs });
    return { locker, close: async () => (await locker.close(), await cluster.close()) };
  }
  if (cfg.backend === 'sentinel') {
    // The URL names the sentinels; the client asks them for the master and follows +switch-master.
    const client = await RedisClient.connect(cfg.urls[0]!, { reconnect: () => 50 });
    const locker = new RedisLocker(client, { ttlMs: cfg.ttlMs });
    return { locker, close: async () => (await locker.close(), await client.close()) };
  }
  // Retry a lost connection every 50 ms rather than backing off: a killed Redlock node should rejoin
  // the vote soon after it is restarted (until then its connection fails fast and it votes no).
  const clients = await Promise.all(cfg.urls.map((url) => RedisClient.connect({ ...hostPort(url), reconnect: () => 50 })));
  const locker = cfg.backend === 'redis' ? new RedisLocker(clients[0]!, { ttlMs: cfg.ttlMs }) : new Redlock(clients, { ttlMs: cfg.ttlMs });
  return {
    locker,
    close: async () => {
      await locker.close();
      await Promise.all(clients.map((c) => c.close()));
    },
  };
}

function hostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port) };
}

/** The fenced counter lives in the parent: ask it, wait for its answer. */
const pending = new Map<number, (r: { ok: boolean; value: number }) => void>();
let nextId = 0;
function ask(msg: { type: 'read'; fence: bigint } | { type: 'write'; fence: bigint; value: number }): Promise<{ ok: boolean; value: number }> {
  const rid = nextId++;
  return new Promise((resolve) => {
    pending.set(rid, resolve);
    send(msg.type === 'read' ? { type: 'read', id: rid, fence: String(msg.fence) } : { type: 'write', id: rid, fence: String(msg.fence), value: msg.value });
  });
}

/** performance.now()-based validUntil on the hrtime clock (both are monotonic, with different origins). */
function onHrClock(validUntil: number): bigint {
  return hr() + BigInt(Math.round((validUntil - performance.now()) * 1e6));
}

async function hold(lock: Lock, cfg: ScenarioConfig, requested: bigint, victim: boolean): Promise<HoldReport> {
  const enter = hr();
  const read = await ask({ type: 'read', fence: lock.fence });
  let ok = read.ok;
  if (ok) {
    await sleep(cfg.holdMs); // the work the lock protects
    // A careful holder checks that it still holds the lock before writing. The victim passes this
    // check and is then frozen (as by a long GC pause or a stalled VM) before its write goes out:
    // no check on the client's side can close that gap, only the fence on the store's side can.
    if (victim && !lock.signal.aborted) {
      send({ type: 'in-section', fence: String(lock.fence) });
      await sleep(PAUSE_WINDOW_MS);
    }
    ok = (await ask({ type: 'write', fence: lock.fence, value: read.value + 1 })).ok;
  }
  const exit = hr();
  const reason: unknown = lock.signal.reason;
  return {
    worker: id,
    fence: String(lock.fence),
    requested: String(requested),
    enter: String(enter),
    exit: String(exit),
    validUntil: String(onHrClock(lock.validUntil)),
    write: ok ? 'ok' : 'refused',
    ...(reason instanceof LockLostError && { lost: reason.reason }),
  };
}

let config: ScenarioConfig | undefined;
let backend: Backend | undefined;
let stopping: AbortController | undefined;
let victimNext = false;

async function loop(cfg: ScenarioConfig, b: Backend, stop: AbortSignal): Promise<void> {
  while (!stop.aborted) {
    const requested = hr();
    let lock: Lock;
    try {
      lock = await b.locker.acquire(cfg.key, { ttlMs: cfg.ttlMs, waitTimeoutMs: 30_000, signal: stop });
    } catch (err) {
      if (stop.aborted) break;
      send({ type: 'error', message: `acquire: ${describe(err)}` });
      await sleep(50);
      continue;
    }
    const victim = victimNext;
    victimNext = false;
    try {
      send({ type: 'hold', hold: await hold(lock, cfg, requested, victim) });
    } finally {
      await lock.release().catch((err: unknown) => {
        // A lost lock's release is a no-op; anything else is worth showing.
        if (!(err instanceof LockLostError)) send({ type: 'error', message: `release: ${describe(err)}` });
      });
    }
    if (cfg.thinkMs > 0) await sleep(Math.random() * cfg.thinkMs);
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

process.on('message', (msg: ToWorker) => {
  switch (msg.type) {
    case 'start':
      config = msg.config;
      connect(config).then(
        (b) => {
          backend = b;
          send({ type: 'ready' });
        },
        (err: unknown) => {
          process.stderr.write(`worker ${id}: cannot connect: ${describe(err)}\n`);
          process.exit(1);
        },
      );
      break;
    case 'go': {
      const ctl = (stopping = new AbortController());
      const b = backend!;
      loop(config!, b, ctl.signal)
        .then(() => b.close())
        .then(() => send({ type: 'stopped' }))
        .catch((err: unknown) => {
          process.stderr.write(`worker ${id} failed: ${describe(err)}\n`);
          process.exit(1);
        });
      break;
    }
    case 'victim':
      victimNext = true;
      break;
    case 'stop':
      stopping?.abort(new Error('stopped'));
      break;
    case 'reply': {
      const resolve = pending.get(msg.id);
      pending.delete(msg.id);
      resolve?.({ ok: msg.ok, value: msg.value });
      break;
    }
    case 'exit':
      process.disconnect();
      break;
  }
});
