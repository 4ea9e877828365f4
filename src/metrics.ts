/**
 * wirelock/metrics: counters, histograms and gauges fed by the diagnostics channels (src/diagnostics.ts),
 * printed in the Prometheus text format. No dependencies, nothing to wire into the lockers: metrics()
 * subscribes, close() unsubscribes, and several collectors may run side by side.
 *
 * What may become a label, and what never does (docs/metrics.md says why):
 *   backend, primitive, reason       fixed sets from the payloads
 *   server                           host:port (Redis `address`; etcd: the endpoint URL's host), never credentials
 *   command                          the Redis command's name from a fixed set, else OTHER; never an argument
 *   method                           the etcd RPC (`KV.Txn`): a fixed set, the client's own
 *   kind                             an error's class, or a Redis error reply's prefix from a fixed set
 *   key                              only with { keyLabels: true }
 * Tokens, passwords and arguments are in the payloads; they are read for matching (tokens) or not at
 * all, and never copied into a label.
 *
 * @module wirelock/metrics
 */
import dc from 'node:diagnostics_channel';
import {
  etcdChannels, lockChannels, respChannels,
  type EtcdCallPayload, type EtcdErrorPayload, type EtcdResponsePayload, type LockAcquirePayload, type LockExtendPayload,
  type LockGiveUpPayload, type LockLostPayload, type LockReleasePayload, type LockWaitPayload, type LockWaiterPayload, type RespCommandPayload, type RespErrorPayload,
  type RespReplyPayload,
} from './diagnostics.js';
import { ClosedError, ConnectionError, EtcdError, ProtocolError, RespError, TimeoutError } from './errors.js';
import { Histogram, Scalar, checkBuckets, exposition, type FamilySnapshot } from './metrics/exposition.js';

export type { FamilySnapshot, HistogramSampleSnapshot, Labels, SampleSnapshot } from './metrics/exposition.js';

/** Options for {@link metrics}. */
export interface MetricsOptions {
  /**
   * Add a `key` label (the lock key, or the election name) to the lock metrics. Off by default: key
   * names are the caller's data, and one series per key is unbounded cardinality.
   * @defaultValue `false`
   */
  keyLabels?: boolean;
  /**
   * Upper bounds, in seconds, of every histogram's buckets (+Inf is added): finite, > 0 and strictly increasing.
   * @defaultValue {@link DEFAULT_BUCKETS}
   */
  buckets?: number[];
}

/** From half a millisecond (a Redis round trip on loopback) to a minute (a long hold); longer is +Inf. */
export const DEFAULT_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60];

/** The name of every metric family a collector keeps (docs/metrics.md describes each). */
export type MetricName =
  /** Counter: locks granted (every acquire and tryAcquire that got the lock). */
  | 'wirelock_lock_acquisitions_total'
  /** Counter: locks released by their holder while still held. */
  | 'wirelock_lock_releases_total'
  /** Counter: locks lost before release, by `reason`. */
  | 'wirelock_lock_losses_total'
  /** Counter: lease extensions of held locks. */
  | 'wirelock_lock_extensions_total'
  /** Counter: times an acquire found the lock held and went to sleep. */
  | 'wirelock_lock_waits_total'
  /** Counter: acquires and campaigns that ended without the lock, by `reason` (timeout, aborted, closed, error). */
  | 'wirelock_lock_failures_total'
  /** Histogram: seconds from acquire() to the grant, for granted locks. */
  | 'wirelock_lock_wait_seconds'
  /** Histogram: seconds from the grant to release or loss. */
  | 'wirelock_lock_hold_seconds'
  /** Gauge: locks granted since metrics() began and not yet released or lost. */
  | 'wirelock_locks_held'
  /** Gauge: acquires waiting now (queued, or backing off) that began since metrics() began. */
  | 'wirelock_lock_waiters'
  /** Counter: Redis commands written to a socket, by `server` and `command`. */
  | 'wirelock_redis_commands_total'
  /** Histogram: seconds from a Redis command's write to its reply or failure. */
  | 'wirelock_redis_command_duration_seconds'
  /** Counter: Redis commands that failed, by `kind`. */
  | 'wirelock_redis_command_errors_total'
  /** Counter: etcd unary RPCs sent (each attempt), by `server` and `method`. */
  | 'wirelock_etcd_calls_total'
  /** Histogram: seconds from an etcd unary RPC's send to its answer, for answered calls. */
  | 'wirelock_etcd_call_duration_seconds'
  /** Counter: etcd unary RPC attempts that failed, by `kind`. */
  | 'wirelock_etcd_call_errors_total';

/** Every metric family by name, in exposition order: the same figures `prometheus()` prints. */
export type MetricsSnapshot = Record<MetricName, FamilySnapshot>;

/** A running collector, as {@link metrics} returns it. */
export interface Metrics {
  /** The Prometheus text exposition format 0.0.4 (serve it as `text/plain; version=0.0.4; charset=utf-8`). */
  prometheus(): string;
  /** Every family's figures now, as data (a copy: later events do not change it). */
  snapshot(): MetricsSnapshot;
  /** Stops collecting (unsubscribes). The figures so far stay readable. Idempotent. */
  close(): void;
}

/**
 * Redis command names that may be a `command` label: what wirelock sends, and the common ones a
 * caller's send() may. Anything else is `OTHER`, so a typo or a module's commands cannot grow the series.
 */
const REDIS_COMMANDS = new Set([
  'ACL', 'ASKING', 'AUTH', 'CLIENT', 'CLUSTER', 'CONFIG', 'DEL', 'DISCARD', 'EVAL', 'EVALSHA', 'EVALSHA_RO', 'EVAL_RO',
  'EXEC', 'EXISTS', 'EXPIRE', 'FCALL', 'FUNCTION', 'GET', 'HDEL', 'HELLO', 'HGET', 'HGETALL', 'HSET', 'INCR', 'INFO',
  'MGET', 'MULTI', 'PEXPIRE', 'PING', 'PSUBSCRIBE', 'PTTL', 'PUBLISH', 'PUNSUBSCRIBE', 'QUIT', 'READONLY', 'RESET',
  'ROLE', 'SCAN', 'SCRIPT', 'SELECT', 'SENTINEL', 'SET', 'SPUBLISH', 'SSUBSCRIBE', 'SUBSCRIBE', 'SUNSUBSCRIBE', 'TIME',
  'TTL', 'TYPE', 'UNLINK', 'UNSUBSCRIBE', 'UNWATCH', 'WAIT', 'WATCH', 'ZADD', 'ZCARD', 'ZRANGE', 'ZREM', 'ZSCORE',
]);

/** Redis error-reply prefixes that may be a `kind` label; any other prefix is `REPLY`. */
const REDIS_ERROR_PREFIXES = new Set([
  'ERR', 'WRONGTYPE', 'NOSCRIPT', 'NOAUTH', 'WRONGPASS', 'NOPERM', 'LOADING', 'BUSY', 'READONLY', 'MASTERDOWN',
  'TRYAGAIN', 'CLUSTERDOWN', 'MOVED', 'ASK', 'CROSSSLOT', 'OOM', 'EXECABORT', 'NOREPLICAS', 'MISCONF', 'NOPROTO',
  'BUSYKEY', 'UNBLOCKED',
]);

/** gRPC status codes by number (the `kind` of an EtcdError). */
const GRPC_STATUS = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
  'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED',
  'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
];

/** Every lock channel carries locks and leaderships alike, with nothing to tell them apart (docs/metrics.md). */
const PRIMITIVE = 'lock';

function redisCommandLabel(name: unknown): string {
  const upper = String(name).toUpperCase();
  return REDIS_COMMANDS.has(upper) ? upper : 'OTHER';
}

/**
 * Why a command or call failed, as a bounded label: lower case for what happened on our side,
 * upper case for what the server answered (a Redis error prefix, a gRPC status).
 */
function errorKind(err: unknown): string {
  if (err instanceof RespError) return REDIS_ERROR_PREFIXES.has(err.prefix) ? err.prefix : 'REPLY';
  if (err instanceof TimeoutError) return 'timeout';
  if (err instanceof ConnectionError) return 'connection';
  if (err instanceof ClosedError) return 'closed';
  if (err instanceof ProtocolError) return 'protocol';
  if (err instanceof EtcdError) return GRPC_STATUS[err.grpcCode] ?? 'UNKNOWN';
  // A RESP command fails with nothing else but its caller's abort reason, whatever that is.
  return 'aborted';
}

/** host:port of an etcd endpoint URL, without scheme or user info. */
function etcdServer(endpoint: string): string {
  try {
    return new URL(endpoint).host || endpoint;
  } catch {
    return endpoint.replace(/^.*@/, '');
  }
}

/**
 * Starts a collector: it subscribes to wirelock's diagnostics channels and counts what every client,
 * locker and election in the process does from now on, until its close(). Several may run at once.
 * Throws TypeError or RangeError for bad options.
 */
export function metrics(opts: MetricsOptions = {}): Metrics {
  if (opts === null || typeof opts !== 'object') throw new TypeError('metrics options must be an object');
  const bounds = opts.buckets === undefined ? DEFAULT_BUCKETS : checkBuckets(opts.buckets);
  const keyLabels = opts.keyLabels === true;
  const lockLabels = keyLabels ? ['backend', 'primitive', 'key'] : ['backend', 'primitive'];

  const f = {
    wirelock_lock_acquisitions_total: new Scalar('counter', 'Locks granted (every acquire and tryAcquire that got the lock).', lockLabels),
    wirelock_lock_releases_total: new Scalar('counter', 'Locks released by their holder while still held.', lockLabels),
    wirelock_lock_losses_total: new Scalar('counter', 'Locks lost before release, by reason.', [...lockLabels, 'reason']),
    wirelock_lock_extensions_total: new Scalar('counter', 'Lease extensions of held locks.', lockLabels),
    wirelock_lock_waits_total: new Scalar('counter', 'Times an acquire found the lock held and went to sleep (lock:wait).', lockLabels),
    wirelock_lock_failures_total: new Scalar('counter', 'Acquires and campaigns that ended without the lock, by reason (timeout, aborted, closed, error).', [...lockLabels, 'reason']),
    wirelock_lock_wait_seconds: new Histogram('Time from acquire() to the grant, for granted locks.', lockLabels, bounds),
    wirelock_lock_hold_seconds: new Histogram('Time from the grant to release or loss.', lockLabels, bounds),
    wirelock_locks_held: new Scalar('gauge', 'Locks granted since metrics() began and not yet released or lost.', lockLabels),
    wirelock_lock_waiters: new Scalar('gauge', 'Acquires waiting now (in the waiting engine: queued, or backing off), begun since metrics() began.', lockLabels),
    wirelock_redis_commands_total: new Scalar('counter', 'Redis commands written to a socket.', ['server', 'command']),
    wirelock_redis_command_duration_seconds: new Histogram('Redis commands from write to reply or failure.', ['server', 'command'], bounds),
    wirelock_redis_command_errors_total: new Scalar('counter', 'Redis commands that failed, by kind.', ['server', 'command', 'kind']),
    wirelock_etcd_calls_total: new Scalar('counter', 'etcd unary RPCs sent (each attempt).', ['server', 'method']),
    wirelock_etcd_call_duration_seconds: new Histogram('etcd unary RPCs from send to answer, for answered calls.', ['server', 'method'], bounds),
    wirelock_etcd_call_errors_total: new Scalar('counter', 'etcd unary RPC attempts that failed, by kind.', ['server', 'method', 'kind']),
  } satisfies Record<MetricName, Scalar | Histogram>;

  const lockValues = (p: { backend: string; key: string }): string[] => (keyLabels ? [p.backend, PRIMITIVE, p.key] : [p.backend, PRIMITIVE]);
  /** Held locks by backend and token (a token names one grant): when granted, and their label values. */
  const held = new Map<string, { since: number; values: string[] }>();
  const heldId = (p: { backend: string; token: string }): string => `${p.backend}\u0000${p.token}`;
  /** Waits in progress, by their id: their label values. */
  const waiting = new Map<number, string[]>();

  /** The grant's end (release or loss), matched by token; a lock granted before metrics() began is not known. */
  const ended = (p: { backend: string; token: string }): void => {
    const id = heldId(p);
    const h = held.get(id);
    if (!h) return;
    held.delete(id);
    f.wirelock_locks_held.add(h.values, -1);
    f.wirelock_lock_hold_seconds.observe(h.values, (performance.now() - h.since) / 1000);
  };

  const handlers: Array<[string, (message: never) => void]> = [
    [lockChannels.acquire.name as string, (p: LockAcquirePayload) => {
      const values = lockValues(p);
      f.wirelock_lock_acquisitions_total.add(values);
      f.wirelock_lock_wait_seconds.observe(values, p.waitedMs / 1000);
      // A raw etcd Mutex (no validUntil) publishes no release or loss: it cannot be counted as held.
      if (p.validUntil === undefined) return;
      held.set(heldId(p), { since: performance.now(), values });
      f.wirelock_locks_held.add(values);
    }],
    [lockChannels.release.name as string, (p: LockReleasePayload) => {
      if (!p.wasHeld) return; // lost before: counted as a loss when it happened
      f.wirelock_lock_releases_total.add(lockValues(p));
      ended(p);
    }],
    [lockChannels.lost.name as string, (p: LockLostPayload) => {
      f.wirelock_lock_losses_total.add([...lockValues(p), p.reason]);
      ended(p);
    }],
    [lockChannels.extend.name as string, (p: LockExtendPayload) => f.wirelock_lock_extensions_total.add(lockValues(p))],
    [lockChannels.wait.name as string, (p: LockWaitPayload) => f.wirelock_lock_waits_total.add(lockValues(p))],
    [lockChannels.giveUp.name as string, (p: LockGiveUpPayload) => f.wirelock_lock_failures_total.add([...lockValues(p), p.reason])],
    [lockChannels.waiter.name as string, (p: LockWaiterPayload) => {
      if (p.delta === 1) {
        const values = lockValues(p);
        waiting.set(p.id, values);
        f.wirelock_lock_waiters.add(values);
        return;
      }
      const values = waiting.get(p.id);
      if (!values) return; // began before this collector did
      waiting.delete(p.id);
      f.wirelock_lock_waiters.add(values, -1);
    }],
    [respChannels.command.name as string, (p: RespCommandPayload) => {
      f.wirelock_redis_commands_total.add([p.address, redisCommandLabel(p.args[0])]);
    }],
    [respChannels.reply.name as string, (p: RespReplyPayload) => {
      f.wirelock_redis_command_duration_seconds.observe([p.address, redisCommandLabel(p.command)], p.durationMs / 1000);
    }],
    [respChannels.error.name as string, (p: RespErrorPayload) => {
      const values = [p.address, redisCommandLabel(p.command)];
      f.wirelock_redis_command_errors_total.add([...values, errorKind(p.error)]);
      // Only a written command was sent; one that never reached the wire has no latency to speak of.
      if (p.written) f.wirelock_redis_command_duration_seconds.observe(values, p.durationMs / 1000);
    }],
    [etcdChannels.call.name as string, (p: EtcdCallPayload) => f.wirelock_etcd_calls_total.add([etcdServer(p.endpoint), p.method])],
    [etcdChannels.response.name as string, (p: EtcdResponsePayload) => {
      f.wirelock_etcd_call_duration_seconds.observe([etcdServer(p.endpoint), p.method], p.durationMs / 1000);
    }],
    [etcdChannels.error.name as string, (p: EtcdErrorPayload) => {
      f.wirelock_etcd_call_errors_total.add([etcdServer(p.endpoint), p.method, errorKind(p.error)]);
    }],
  ];
  for (const [name, fn] of handlers) dc.subscribe(name, fn as (message: unknown) => void);

  let closed = false;
  const snapshot = (): MetricsSnapshot => {
    const out = {} as MetricsSnapshot;
    for (const name of Object.keys(f) as MetricName[]) out[name] = f[name].snapshot();
    return out;
  };
  return {
    prometheus: () => exposition(snapshot()),
    snapshot,
    close: () => {
      if (closed) return;
      closed = true;
      for (const [name, fn] of handlers) dc.unsubscribe(name, fn as (message: unknown) => void);
    },
  };
}
