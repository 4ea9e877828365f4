/**
 * A fault-suite worker process: one lock client, driven by JSON commands on stdin, reporting JSON
 * events on stdout (test/support/faults-workers.ts is the other end).
 *
 * Every critical section is stamped with process.hrtime.bigint(): CLOCK_MONOTONIC, one clock for every
 * process on the machine, so the parent can line up the stamps of all workers. Under `faketime
 * --exclude-monotonic` that clock stays true while the wall clock jumps.
 *
 * Commands run one after another, except `exit`, which closes everything at once (pending acquires
 * reject) and ends the process. The worker also exits when its stdin ends (the parent died).
 * `elect` starts a loop that runs beside the commands until `elect-stop` (see electLoop), and
 * `permits` one until `permits-stop` (see permitLoop).
 *
 * With `limit` in its config the worker's locker is a semaphore (RedisSemaphore or EtcdSemaphore) that
 * admits that many holders per key; every command works the same on it. With `rw` it is a read-write
 * lock (RedisRWLock or EtcdRWLock): `acquire`/`try` take its write side, or its read side with
 * `mode: 'read'`, and the permit loop chooses per hold (its `writes` share).
 */
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import {
  EtcdClient, EtcdElection, EtcdLocker, EtcdRWLock, EtcdSemaphore, LockLostError, QuorumError, RedisClient, RedisElection, RedisLocker,
  RedisRWLock, RedisSemaphore, Redlock, WirelockError,
  type Election, type Leadership, type Lock, type Locker,
} from '../../src/index.js';
import { EtcdResource, RedisResource, type Access, type FencedResource } from '../support/faults-resource.js';
import type { WorkerConfig } from '../support/faults-workers.js';

const cfg = JSON.parse(process.argv[2]!) as WorkerConfig;
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
  if (err instanceof QuorumError) out.nodes = err.nodes.map((n) => ({ node: n.node, kind: (n as { kind?: string }).kind }));
  if (err.cause !== undefined) out.cause = describe(err.cause);
  return out;
}

interface Backend {
  /** The mutex, the semaphore, or the write side of the read-write lock. */
  locker: Locker;
  /** The read side of the read-write lock (`rw` only). */
  reader?: Locker;
  /** A new election on the lock client (etcd and a single Redis only). */
  election(name: string, ttlMs: number): Election;
  resource: FencedResource;
  /** A plain (unfenced) counter: read, wait, write back +1. Two holders at once lose an update. */
  counter: { get(): Promise<number>; set(n: number): Promise<void> };
  close(): Promise<void>;
}

async function connect(): Promise<Backend> {
  const closers: Array<() => Promise<void>> = [];
  let locker: Locker;
  let reader: Locker | undefined;
  let closeLocker = (): Promise<void> => locker.close();
  let election: Backend['election'] = () => {
    throw new Error(`no election on the ${cfg.backend} backend`);
  };
  if (cfg.limit !== undefined && cfg.backend !== 'redis' && cfg.backend !== 'etcd') throw new Error(`no semaphore on the ${cfg.backend} backend`);
  if (cfg.rw && cfg.backend !== 'redis' && cfg.backend !== 'etcd') throw new Error(`no read-write lock on the ${cfg.backend} backend`);
  if (cfg.rw && cfg.limit !== undefined) throw new Error('rw and limit exclude each other');
  const rwLock = (rw: RedisRWLock | EtcdRWLock): Locker => {
    reader = rw.read;
    closeLocker = () => rw.close();
    return rw.write;
  };
  if (cfg.backend === 'unlocked') {
    const client = await RedisClient.connect(cfg.urls[0]!);
    closers.push(() => client.close());
    locker = unlocked(client);
  } else if (cfg.backend === 'etcd') {
    const client = await EtcdClient.connect({ endpoints: cfg.urls, ...cfg.clientOptions });
    closers.push(() => client.close());
    if (cfg.rw) locker = rwLock(new EtcdRWLock(client, cfg.lockerOptions));
    else locker = cfg.limit === undefined ? new EtcdLocker(client, cfg.lockerOptions) : new EtcdSemaphore(client, { ...cfg.lockerOptions, limit: cfg.limit });
    election = (name, ttlMs) => new EtcdElection(client, name, { ttlMs });
  } else {
    const clients = await Promise.all(cfg.urls.map((u) => RedisClient.connect(u, cfg.clientOptions)));
    closers.push(() => Promise.all(clients.map((c) => c.close())).then(() => {}));
    if (cfg.backend === 'redlock') locker = new Redlock(clients, cfg.lockerOptions);
    else if (cfg.rw) locker = rwLock(new RedisRWLock(clients[0]!, cfg.lockerOptions));
    else if (cfg.limit === undefined) locker = new RedisLocker(clients[0]!, cfg.lockerOptions);
    else locker = new RedisSemaphore(clients[0]!, { ...cfg.lockerOptions, limit: cfg.limit });
    if (cfg.backend === 'redis') election = (name, ttlMs) => new RedisElection(clients[0]!, name, { ttlMs, prefix: cfg.lockerOptions?.prefix as string | undefined });
  }
  closers.unshift(() => closeLocker());
  let resource: FencedResource;
  let counter: Backend['counter'];
  if (cfg.resource.kind === 'redis') {
    const client = await RedisClient.connect(cfg.resource.url);
    closers.push(() => client.close());
    resource = new RedisResource(client, 'fault:resource');
    counter = {
      get: async () => Number((await client.send(['GET', 'fault:counter'])) ?? 0),
      set: async (n) => void (await client.send(['SET', 'fault:counter', n])),
    };
  } else {
    const client = await EtcdClient.connect({ endpoints: cfg.resource.endpoints, callTimeoutMs: cfg.resource.callTimeoutMs });
    closers.push(() => client.close());
    resource = new EtcdResource(client, 'fault/resource');
    counter = {
      get: async () => Number((await client.range({ key: 'fault/counter' })).kvs[0]?.value.toString() || 0),
      set: async (n) => void (await client.put({ key: 'fault/counter', value: String(n) })),
    };
  }
  return {
    locker,
    reader,
    election,
    resource,
    counter,
    close: async () => {
      for (const close of closers) await close().catch(() => {});
    },
  };
}

/** A "lock" that excludes nothing: every acquire is granted at once, with a fence from INCR. */
function unlocked(client: RedisClient): Locker {
  const grant = async (key: string): Promise<Lock> => {
    const fence = BigInt((await client.send(['INCR', `unlocked:{${key}}:fence`])) as number);
    const controller = new AbortController();
    const release = async (): Promise<void> => {};
    return {
      key, token: 'none', fence, signal: controller.signal, validUntil: Infinity,
      extend: async () => {}, release, [Symbol.asyncDispose]: release,
    };
  };
  return {
    acquire: grant,
    tryAcquire: grant,
    using: async (key, fn) => fn(await grant(key)),
    close: async () => {},
  };
}

const backend = await connect();
let lock: Lock | undefined;
let begun: { value: number } | undefined;

/** Reports the lock's (or leadership's) validity as it moves, and its loss the moment the signal aborts. */
function watch(l: Pick<Lock, 'fence' | 'signal' | 'validUntil'>): void {
  let last = l.validUntil;
  const timer = setInterval(() => {
    if (l.validUntil !== last) {
      last = l.validUntil;
      emit({ type: 'validity', at: hr(), fence: l.fence, validUntil: hrOf(last), dateSkewMs: dateSkew() });
    }
  }, 20);
  timer.unref();
  l.signal.addEventListener('abort', () => {
    clearInterval(timer);
    const reason = l.signal.reason;
    if (reason instanceof LockLostError) emit({ type: 'lost', at: hr(), fence: l.fence, validUntil: hrOf(l.validUntil), error: describe(reason) });
  }, { once: true });
}

/** How far the wall clock is from the monotonic one, in ms: about 0, or the offset faketime added. */
function dateSkew(): number {
  return Math.round(Date.now() - (performance.timeOrigin + performance.now()));
}

/** The locker for a hold in `mode`: the read side of the read-write lock for 'read', else the locker. */
function side(mode: unknown): Locker {
  if (mode === undefined || mode === 'write') return backend.locker;
  if (mode !== 'read') throw new Error(`unknown mode ${String(mode)}`);
  if (!backend.reader) throw new Error('mode read needs a read-write lock (rw in the worker config)');
  return backend.reader;
}

async function acquire(c: Record<string, any>, tryOnce: boolean): Promise<void> {
  const opts = { ttlMs: c.ttlMs, waitTimeoutMs: c.waitTimeoutMs, autoExtend: c.autoExtend };
  const locker = side(c.mode);
  const requested = hr();
  try {
    const l = tryOnce ? await locker.tryAcquire(c.key, opts) : await locker.acquire(c.key, opts);
    const enter = hr();
    if (!l) {
      emit({ type: 'acquired', got: false, requested, at: enter });
      return;
    }
    lock = l;
    begun = undefined;
    watch(l);
    emit({ type: 'acquired', got: true, requested, enter, fence: l.fence, token: l.token, validUntil: hrOf(l.validUntil), dateSkewMs: dateSkew() });
  } catch (err) {
    emit({ type: 'acquire-failed', requested, at: hr(), error: describe(err) });
  }
}

/** The contention loop of scenario 1: acquire, fenced read, plain read-wait-write, fenced write, release. */
async function contend(c: Record<string, any>): Promise<void> {
  for (let i = 0; i < c.iterations; i++) {
    const requested = hr();
    const l = await backend.locker.acquire(c.key, { ttlMs: c.ttlMs, waitTimeoutMs: c.waitTimeoutMs });
    const enter = hr();
    const begin = await backend.resource.begin(l.fence);
    const n = await backend.counter.get();
    if (c.holdMs > 0) await delay(Math.random() * c.holdMs);
    await backend.counter.set(n + 1);
    const write = await backend.resource.write(l.fence, begin.value + 1);
    const exit = hr();
    await l.release();
    emit({ type: 'hold', requested, enter, exit, fence: l.fence, beginOk: begin.ok, writeOk: write.ok, lostBeforeExit: l.signal.reason instanceof LockLostError });
  }
  emit({ type: 'contended' });
}

/** An access of the fenced resource as data; a failed one (outcome unknown) carries its error. */
function settled(access: Promise<Access>): Promise<Partial<Access> & { ok: boolean; error?: Record<string, unknown> }> {
  return access.then((a) => a, (err: unknown) => ({ ok: false, error: describe(err) }));
}

/**
 * The election loop (`elect`): campaign; lead for a random term of `termMs: [min, max]` ms (a fenced
 * begin, a wait that does not look at the signal, a fenced write with the term); resign; campaign
 * again; until `elect-stop`, which ends a pending campaign and lets a term in progress finish.
 * Each term is reported when campaign resolves (`leading`: all that a killed leader leaves), after
 * its begin (`begun`), and when it ends (`term`). Its end is stamped before resign (`exit`), or when
 * its signal aborts with a loss (`lostAt`), whichever is first; `validUntil` is its last.
 */
async function electLoop(c: Record<string, any>, stop: AbortSignal): Promise<void> {
  const election = backend.election(c.name, c.ttlMs);
  try {
    while (!stop.aborted) {
      const requested = hr();
      let leadership: Leadership;
      try {
        leadership = await election.campaign(cfg.id, { signal: stop });
      } catch (err) {
        if (stop.aborted) break;
        // A candidacy can end without leading (its lease ran out while it queued): campaign again.
        emit({ type: 'campaign-failed', requested, at: hr(), error: describe(err) });
        await delay(50);
        continue;
      }
      await lead(leadership, requested, c.termMs as [number, number]);
    }
  } finally {
    await election.close();
  }
}

async function lead(l: Leadership, requested: bigint, [minMs, maxMs]: [number, number]): Promise<void> {
  const enter = hr();
  let lostAt: bigint | undefined;
  const onAbort = (): void => {
    if (l.signal.reason instanceof LockLostError) lostAt = hr();
  };
  if (l.signal.aborted) onAbort();
  else l.signal.addEventListener('abort', onAbort, { once: true });
  watch(l);
  emit({ type: 'leading', requested, enter, fence: l.fence, validUntil: hrOf(l.validUntil) });
  const termMs = minMs + Math.random() * (maxMs - minMs);
  const begin = await settled(backend.resource.begin(l.fence));
  emit({ type: 'begun', fence: l.fence, ok: begin.ok, at: hr() });
  // Leading without looking at the signal: what a paused or careless leader does.
  await delay(termMs);
  const writeAt = hr();
  const signalAborted = l.signal.aborted;
  // After a begin of unknown outcome the value read is unknown too: writing it could lose an update.
  const write = begin.error ? undefined : await settled(backend.resource.write(l.fence, (begin.value ?? 0) + 1));
  const exit = hr();
  const validUntil = hrOf(l.validUntil);
  const resignError = await l.resign().then(() => undefined, describe);
  const lost = l.signal.reason instanceof LockLostError ? describe(l.signal.reason) : undefined;
  emit({ type: 'term', requested, enter, exit, lostAt, lost, fence: l.fence, validUntil, termMs, begin, write, writeAt, signalAborted, resignError });
}

let electing: { stop: AbortController; done: Promise<void> } | undefined;

/**
 * The permit loop (`permits`): acquire `key` (`ttlMs`, `waitTimeoutMs`); stay inside for a random
 * `holdMs: [min, max]` ms or until the signal aborts, whichever is first (a careful holder); release;
 * acquire again; until `permits-stop`, which ends a pending acquire and lets a hold in progress finish.
 * With `fenced`, a hold begins the fenced resource on entry and writes it before it leaves (not once
 * its signal has aborted). A failed acquire is reported (`acquire-failed`) and tried again after 50 ms.
 * Each hold is announced on entry (`entered`, so a fault can hit it while it holds) and reported when
 * it ends (`permit`): its stamps, the moment its signal aborted with a loss (`lostAt`), its last
 * validUntil, its accesses and a release error, if any.
 *
 * On a read-write lock (`rw`), each hold is a write with probability `writes` (0..1; unset: every
 * hold a write), else a read; `entered` and `permit` say which (`mode`). Only writes access the
 * fenced resource: readers holding together would refuse each other's fences.
 */
async function permitLoop(c: Record<string, any>, stop: AbortSignal): Promise<void> {
  const [minMs, maxMs] = c.holdMs as [number, number];
  while (!stop.aborted) {
    const mode = c.writes === undefined || Math.random() < c.writes ? 'write' : 'read';
    const fenced = c.fenced && mode === 'write';
    const requested = hr();
    let l: Lock;
    try {
      l = await side(mode).acquire(c.key, { ttlMs: c.ttlMs, waitTimeoutMs: c.waitTimeoutMs, signal: stop });
    } catch (err) {
      if (stop.aborted) break;
      emit({ type: 'acquire-failed', requested, at: hr(), error: describe(err) });
      await delay(50);
      continue;
    }
    const enter = hr();
    emit({ type: 'entered', enter, fence: l.fence, mode });
    let lostAt: bigint | undefined;
    const aborted = new Promise<void>((resolve) => {
      const onAbort = (): void => {
        if (l.signal.reason instanceof LockLostError) lostAt = hr();
        resolve();
      };
      if (l.signal.aborted) onAbort();
      else l.signal.addEventListener('abort', onAbort, { once: true });
    });
    const begin = fenced ? await settled(backend.resource.begin(l.fence)) : undefined;
    await Promise.race([delay(minMs + Math.random() * (maxMs - minMs)), aborted]);
    const write = fenced && begin?.ok && !l.signal.aborted ? await settled(backend.resource.write(l.fence, (begin.value ?? 0) + 1)) : undefined;
    const exit = hr();
    const validUntil = hrOf(l.validUntil);
    const lost = l.signal.reason instanceof LockLostError ? describe(l.signal.reason) : undefined;
    const releaseError = await l.release().then(() => undefined, describe);
    emit({ type: 'permit', mode, requested, enter, exit, lostAt, lost, fence: l.fence, validUntil, begin, write, releaseError });
  }
}

let permitting: { stop: AbortController; done: Promise<void> } | undefined;

async function stopPermits(): Promise<void> {
  permitting?.stop.abort();
  await permitting?.done;
  permitting = undefined;
}

async function stopElecting(): Promise<void> {
  electing?.stop.abort();
  await electing?.done;
  electing = undefined;
}

async function run(c: Record<string, any>): Promise<void> {
  switch (c.op) {
    case 'elect': {
      if (electing) throw new Error('already electing');
      const stop = new AbortController();
      const done = electLoop(c, stop.signal).catch((err: unknown) => {
        emit({ type: 'fatal', message: `elect: ${String((err as Error)?.stack ?? err)}` });
      });
      electing = { stop, done };
      return emit({ type: 'electing', at: hr() });
    }
    case 'elect-stop':
      await stopElecting();
      return emit({ type: 'elect-stopped', at: hr() });
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
    case 'acquire':
      return acquire(c, false);
    case 'try':
      return acquire(c, true);
    case 'contend':
      return contend(c);
    case 'begin': {
      const a = await backend.resource.begin(lock!.fence);
      if (a.ok) begun = a;
      return emit({ type: 'begin', ok: a.ok, last: a.last, value: a.value, at: hr() });
    }
    case 'hold':
      // Inside the critical section, not looking at the signal: what a paused or careless holder does.
      await delay(c.ms);
      return emit({ type: 'held', at: hr() });
    case 'section': {
      // Inside the critical section until `ms` have passed or the lock is lost, whichever is first.
      const l = lock!;
      await Promise.race([delay(c.ms), new Promise((r) => l.signal.addEventListener('abort', r, { once: true }))]);
      return emit({ type: 'section', exit: hr(), lost: l.signal.reason instanceof LockLostError, validUntil: hrOf(l.validUntil) });
    }
    case 'write': {
      const signalAborted = lock!.signal.aborted;
      const a = await backend.resource.write(lock!.fence, (begun?.value ?? 0) + 1);
      return emit({ type: 'write', ok: a.ok, last: a.last, signalAborted, at: hr() });
    }
    case 'extend':
      try {
        await lock!.extend(c.ttlMs);
        return emit({ type: 'extend', ok: true, validUntil: hrOf(lock!.validUntil), at: hr() });
      } catch (err) {
        return emit({ type: 'extend', ok: false, error: describe(err), at: hr() });
      }
    case 'release': {
      const exit = hr();
      try {
        await lock?.release();
        return emit({ type: 'released', ok: true, exit, at: hr() });
      } catch (err) {
        return emit({ type: 'released', ok: false, exit, at: hr(), error: describe(err) });
      } finally {
        lock = undefined;
      }
    }
    case 'clock':
      return emit({ type: 'clock', dateSkewMs: dateSkew(), now: Date.now(), at: hr(), validUntil: lock ? hrOf(lock.validUntil) : null });
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
  await stopElecting();
  await stopPermits();
  await backend.close();
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
