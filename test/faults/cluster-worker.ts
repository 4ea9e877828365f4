/**
 * A fault-suite worker for Redis Cluster: one RedisCluster client and a RedisLocker on it, running the
 * permit loop of test/faults/worker.ts (which connects to single Redis servers only), driven by JSON
 * commands on stdin and reporting JSON events on stdout (test/faults/scenarios/cluster.ts is the
 * other end).
 *
 * Events are those of worker.ts's permit loop (`entered`, `permit`, `acquire-failed`, `lost`), stamped
 * with process.hrtime.bigint() (CLOCK_MONOTONIC, one clock for every process on the machine), plus:
 * - `redirect`: each MOVED/ASK/TRYAGAIN/CLUSTERDOWN the client followed (wirelock:resp:redirect);
 * - `stuck`: an acquire still pending a second after its deadline (it should have failed by then).
 * The worker exits on `exit` or when its stdin ends (the parent died).
 */
import { subscribe } from 'node:diagnostics_channel';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { LockLostError, RedisClient, RedisCluster, RedisLocker, WirelockError, type Lock } from '../../src/index.js';
import type { RespRedirectPayload } from '../../src/diagnostics.js';
import { RedisResource, type Access } from '../support/faults-resource.js';

export interface ClusterWorkerConfig {
  id: string;
  /** Seed URLs of the cluster. */
  seeds: string[];
  /** The plain Redis that holds the fenced resource. */
  resourceUrl: string;
  /** RedisClusterOptions besides the seeds (commandTimeoutMs, topologyRefreshMs, …). */
  clientOptions?: Record<string, unknown>;
  /** RedisLocker options (minReplicas, replicaTimeoutMs, …). */
  lockerOptions?: Record<string, unknown>;
}

const cfg = JSON.parse(process.argv[2]!) as ClusterWorkerConfig;
const hr = (): bigint => process.hrtime.bigint();
/** A performance.now() deadline as a CLOCK_MONOTONIC stamp in ns. */
const hrOf = (perf: number): bigint => hr() + BigInt(Math.round((perf - performance.now()) * 1e6));

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
}

/** An error as data: what the parent asserts on. */
function describe(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: String(err) };
  const out: Record<string, unknown> = { name: err.name, message: err.message };
  if (err instanceof WirelockError) out.code = err.code;
  if (err instanceof LockLostError) out.reason = err.reason;
  if (err.cause !== undefined) out.cause = describe(err.cause);
  return out;
}

subscribe('wirelock:resp:redirect', (message) => {
  const m = message as RespRedirectPayload;
  emit({ type: 'redirect', at: hr(), kind: m.kind, command: m.command, slot: m.slot, from: m.from, to: m.to });
});

const cluster = await RedisCluster.connect({ seeds: cfg.seeds, ...cfg.clientOptions });
const locker = new RedisLocker(cluster, cfg.lockerOptions);
const resourceClient = await RedisClient.connect(cfg.resourceUrl);
const resource = new RedisResource(resourceClient, 'fault:resource');

/** An access of the fenced resource as data; a failed one (outcome unknown) carries its error. */
function settled(access: Promise<Access>): Promise<Partial<Access> & { ok: boolean; error?: Record<string, unknown> }> {
  return access.then((a) => a, (err: unknown) => ({ ok: false, error: describe(err) }));
}

/**
 * The permit loop of worker.ts: acquire `key`; stay inside for a random `holdMs: [min, max]` ms or until
 * the signal aborts; with `fenced`, begin the fenced resource on entry and write it before leaving;
 * release; again, until stopped. A failed acquire is reported and tried again after 50 ms.
 */
async function permitLoop(c: Record<string, any>, stop: AbortSignal): Promise<void> {
  const [minMs, maxMs] = c.holdMs as [number, number];
  while (!stop.aborted) {
    const requested = hr();
    const watchdog = setTimeout(() => emit({ type: 'stuck', requested, at: hr() }), c.waitTimeoutMs + 1000);
    let l: Lock;
    try {
      l = await locker.acquire(c.key, { ttlMs: c.ttlMs, waitTimeoutMs: c.waitTimeoutMs, signal: stop });
    } catch (err) {
      if (stop.aborted) break;
      emit({ type: 'acquire-failed', requested, at: hr(), error: describe(err) });
      await delay(50);
      continue;
    } finally {
      clearTimeout(watchdog);
    }
    const enter = hr();
    emit({ type: 'entered', enter, fence: l.fence });
    let lostAt: bigint | undefined;
    const aborted = new Promise<void>((resolve) => {
      const onAbort = (): void => {
        if (l.signal.reason instanceof LockLostError) {
          lostAt = hr();
          emit({ type: 'lost', at: lostAt, fence: l.fence, error: describe(l.signal.reason) });
        }
        resolve();
      };
      if (l.signal.aborted) onAbort();
      else l.signal.addEventListener('abort', onAbort, { once: true });
    });
    const begin = c.fenced ? await settled(resource.begin(l.fence)) : undefined;
    await Promise.race([delay(minMs + Math.random() * (maxMs - minMs)), aborted]);
    const write = c.fenced && begin?.ok && !l.signal.aborted ? await settled(resource.write(l.fence, (begin.value ?? 0) + 1)) : undefined;
    const exit = hr();
    const validUntil = hrOf(l.validUntil);
    const lost = l.signal.reason instanceof LockLostError ? describe(l.signal.reason) : undefined;
    const releaseError = await l.release().then(() => undefined, describe);
    emit({ type: 'permit', requested, enter, exit, lostAt, lost, fence: l.fence, validUntil, begin, write, releaseError });
  }
}

let permitting: { stop: AbortController; done: Promise<void> } | undefined;

async function stopPermits(): Promise<void> {
  permitting?.stop.abort();
  await permitting?.done;
  permitting = undefined;
}

async function run(c: Record<string, any>): Promise<void> {
  switch (c.op) {
    case 'permits': {
      if (permitting) throw new Error('already in the permit loop');
      const stop = new AbortController();
      const done = permitLoop(c, stop.signal).catch((err: unknown) => {
        emit({ type: 'fatal', message: `permits: ${String((err as Error)?.stack ?? err)}` });
      });
      permitting = { stop, done };
      return emit({ type: 'permitting', at: hr() });
    }
    case 'permits-stop':
      await stopPermits();
      return emit({ type: 'permits-stopped', at: hr() });
    default:
      throw new Error(`unknown command ${String(c.op)}`);
  }
}

let queue = Promise.resolve();
let exiting = false;
async function exit(code: number): Promise<void> {
  if (exiting) return;
  exiting = true;
  const timer = setTimeout(() => process.exit(code), 3000);
  await stopPermits();
  await locker.close().catch(() => {});
  await Promise.all([cluster.close(), resourceClient.close()]).catch(() => {});
  clearTimeout(timer);
  process.exit(code);
}

process.on('unhandledRejection', (reason) => {
  emit({ type: 'fatal', message: `unhandled rejection: ${String((reason as Error)?.stack ?? reason)}` });
  void exit(1);
});

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const c = JSON.parse(line) as Record<string, any>;
  if (c.op === 'exit') return void exit(0);
  queue = queue.then(() => run(c)).catch((err: unknown) => {
    emit({ type: 'fatal', message: `${c.op}: ${String((err as Error)?.stack ?? err)}` });
  });
});
lines.on('close', () => void exit(0));
emit({ type: 'ready', pid: process.pid });
