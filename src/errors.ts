/**
 * Every error wirelock throws extends WirelockError and carries a stable `code`.
 * Codes never change meaning; match on `code` (or `instanceof`), not on messages.
 *
 * Messages never contain secrets: passwords and tokens are not passed into any of these.
 */

/** Every `code` a WirelockError can carry (docs/api.md, "Errors", says when each comes). */
export type WirelockErrorCode =
  /** {@link LockTimeoutError}: `waitTimeoutMs` passed before the lock was acquired. */
  | 'WL_LOCK_TIMEOUT'
  /** {@link LockLostError}: a held lock is no longer held (expired, stolen, quorum lost or session expired). */
  | 'WL_LOCK_LOST'
  /** {@link LockReleasedError}: the holder released the lock; the reason `lock.signal` aborts with. */
  | 'WL_LOCK_RELEASED'
  /** {@link ClosedError}: the client, locker, session or election was closed before or during the operation. */
  | 'WL_CLOSED'
  /** {@link QuorumError}: Redlock could not get a majority of its nodes to agree. */
  | 'WL_QUORUM'
  /** {@link ReplicaError}: fewer than `minReplicas` Redis replicas acknowledged a grant or extension in time (WAIT). */
  | 'WL_REPLICAS'
  /** {@link RespError}: a Redis server answered with an error reply. */
  | 'WL_RESP'
  /** {@link ProtocolError}: a server sent bytes that could not be decoded; the connection was closed. */
  | 'WL_PROTOCOL'
  /** {@link ConnectionError}: a connection could not be made, or it closed. */
  | 'WL_CONNECTION'
  /** {@link TimeoutError}: a command, call or connection attempt passed its timeout. */
  | 'WL_TIMEOUT'
  /** {@link EtcdError} (and {@link WatchCompactedError}): an etcd gRPC call failed. */
  | 'WL_ETCD'
  /** {@link SessionExpiredError}: an etcd session's lease expired, was revoked or could not be renewed in time. */
  | 'WL_SESSION_EXPIRED';

/**
 * The base class of every error wirelock throws. It is never thrown itself, only its subclasses;
 * `instanceof WirelockError` tells wirelock's errors from others.
 */
export class WirelockError extends Error {
  /** Which kind of error this is; stable across versions, and the thing to match on. */
  readonly code: WirelockErrorCode;
  constructor(code: WirelockErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
  /** The name of the error's class, e.g. `'LockTimeoutError'`. */
  override get name(): string {
    return this.constructor.name;
  }
}

/**
 * `waitTimeoutMs` passed before the lock could be acquired. `cause` is the last transient error
 * met while waiting, if there was one.
 */
export class LockTimeoutError extends WirelockError {
  /** The key of the lock that was waited for. */
  readonly key: string;
  constructor(key: string, waitedMs: number, options?: { cause?: unknown }) {
    super('WL_LOCK_TIMEOUT', `timed out after ${Math.round(waitedMs)} ms waiting for lock "${key}"`, options);
    this.key = key;
  }
}

/** Why a lock was lost ({@link LockLostError.reason}). */
export type LockLostReason =
  /** Its lease ran out, or its key is gone, before it could be extended. */
  | 'expired'
  /** Another holder owns the key now. */
  | 'stolen'
  /** Redlock: fewer than a quorum of nodes still hold it. */
  | 'quorum-lost'
  /** etcd: the session (lease) the lock was held under expired. */
  | 'session-expired'
  /** Redis Sentinel: the master changed, and the new master does not have the lock (replication had not carried it over). */
  | 'failover';

const lostText: Record<LockLostReason, string> = {
  expired: 'its lease ran out, or its key is gone, before it could be extended',
  stolen: 'another holder owns the key now',
  'quorum-lost': 'fewer than a quorum of nodes still hold it',
  'session-expired': 'its etcd session (lease) expired',
  failover: 'the Redis master changed, and the new master does not have it',
};

/** The lock is no longer held: `lock.signal` aborts with this, and `extend()` rejects with it. */
export class LockLostError extends WirelockError {
  /** The key of the lock that was lost. */
  readonly key: string;
  /** How it was lost. */
  readonly reason: LockLostReason;
  constructor(key: string, reason: LockLostReason, options?: { cause?: unknown }) {
    super('WL_LOCK_LOST', `lock "${key}" lost: ${lostText[reason]}`, options);
    this.key = key;
    this.reason = reason;
  }
}

/** `lock.signal` aborts with this when the holder itself releases the lock (not a loss). */
export class LockReleasedError extends WirelockError {
  /** The key of the lock that was released. */
  readonly key: string;
  constructor(key: string) {
    super('WL_LOCK_RELEASED', `lock "${key}" was released`);
    this.key = key;
  }
}

/** An operation was started on (or was pending in) a locker or client that has been closed. */
export class ClosedError extends WirelockError {
  constructor(what: string) {
    super('WL_CLOSED', `${what} is closed`);
  }
}

/** Why one Redlock node did not grant, extend or release the lock (`QuorumError.nodes[i].kind`). */
export type RedlockNodeOutcome = 'held' | 'gone' | 'late' | 'timeout' | 'connection' | 'error';

/** One node's part in a failed Redlock round (acquire, extend or release). */
export interface QuorumNodeFailure {
  /** The node's address (host:port), never its credentials. */
  node: string;
  /**
   * - `held`: another token holds the key (cause: `{ pttlMs }` when known);
   * - `gone`: our key is not there any more (extend);
   * - `late`: it granted, but the quorum came too late to leave any validity (cause: `{ elapsedMs, validityMs }`);
   * - `timeout`: no answer within the node timeout (a stopped or slow server);
   * - `connection`: not connected (refused, down; the cause's message carries the last socket error);
   * - `error`: an error reply (NOPERM, WRONGTYPE, LOADING…), the RespError is the cause.
   */
  kind: RedlockNodeOutcome;
  /** What the node answered or how it failed: a held-elsewhere marker, a timeout, an error reply, a refused connection. */
  cause: unknown;
}

/** The same thing under the name Redlock's docs use. */
export type RedlockNodeFailure = QuorumNodeFailure;

/**
 * Redis with `minReplicas`: fewer replicas than asked acknowledged a grant or an extension within
 * `replicaTimeoutMs` (WAIT). An unconfirmed grant is taken back: within a wait this is a failed
 * attempt, retried until the deadline (it is then the LockTimeoutError's cause); an unconfirmed
 * extension leaves `validUntil` where it was, and is tried again while it lasts.
 */
export class ReplicaError extends WirelockError {
  /** The key of the lock. */
  readonly key: string;
  /** How many replicas acknowledged the write in time. */
  readonly acknowledged: number;
  /** How many were asked for (`minReplicas`). */
  readonly required: number;
  constructor(key: string, what: 'grant' | 'extension', acknowledged: number, required: number, timeoutMs: number) {
    super('WL_REPLICAS', `lock "${key}": ${what} acknowledged by ${acknowledged} of the ${required} replicas asked for within ${timeoutMs} ms`);
    this.key = key;
    this.acknowledged = acknowledged;
    this.required = required;
  }
}

/** Redlock could not reach a quorum. `nodes[]` holds each failing node's cause. */
export class QuorumError extends WirelockError {
  /** The key of the lock the round was for. */
  readonly key: string;
  /** One entry for each node that did not say yes, with how it failed. */
  readonly nodes: QuorumNodeFailure[];
  /** How many rounds were tried: for an acquire, every round up to this one; for extend and release, 1. */
  readonly attempts: number;
  constructor(key: string, message: string, nodes: QuorumNodeFailure[], attempts: number) {
    super('WL_QUORUM', message);
    this.key = key;
    this.nodes = nodes;
    this.attempts = attempts;
  }
}

/** The server answered with an error reply (`-ERR …`). `prefix` is its first word. */
export class RespError extends WirelockError {
  /** The error reply's first word, e.g. `ERR`, `WRONGPASS`, `NOSCRIPT`, `NOPERM`. */
  readonly prefix: string;
  /** The command's name (first argument) that got the error; never its other arguments. */
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super('WL_RESP', command ? `${message} (in reply to ${command})` : message);
    const space = message.indexOf(' ');
    this.prefix = space === -1 ? message : message.slice(0, space);
    this.command = command;
  }
}

/** A server sent bytes that are not valid protocol. The connection has been closed. */
export class ProtocolError extends WirelockError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WL_PROTOCOL', message, options);
  }
}

/** A connection could not be made or was closed. `cause` is the socket's error, if any. */
export class ConnectionError extends WirelockError {
  /** The server it was for: host:port for Redis, the endpoint URL for etcd. Never credentials. */
  readonly address: string;
  constructor(address: string, message: string, options?: { cause?: unknown }) {
    super('WL_CONNECTION', `${address}: ${message}`, options);
    this.address = address;
  }
}

/** A command, call or connection attempt took longer than its timeout. */
export class TimeoutError extends WirelockError {
  /** The timeout that ran out, in milliseconds. */
  readonly timeoutMs: number;
  constructor(message: string, timeoutMs: number) {
    super('WL_TIMEOUT', message);
    this.timeoutMs = timeoutMs;
  }
}

/** A gRPC call to etcd failed. `grpcCode` is the gRPC status code; the message is etcd's. */
export class EtcdError extends WirelockError {
  /** The gRPC status code (e.g. 11 OUT_OF_RANGE, 14 UNAVAILABLE). */
  readonly grpcCode: number;
  /** etcd's own error message (the gRPC status details), without the method name. */
  readonly details: string;
  constructor(grpcCode: number, details: string, options?: { cause?: unknown; method?: string }) {
    super('WL_ETCD', options?.method ? `${options.method}: ${details}` : details, options);
    this.grpcCode = grpcCode;
    this.details = details;
  }
}

/** gRPC's OUT_OF_RANGE, the status etcd gives a watch or read of a compacted revision. */
const GRPC_OUT_OF_RANGE = 11;

/** A watch asked for revisions that compaction has removed. It has been canceled. */
export class WatchCompactedError extends EtcdError {
  /** The oldest revision still available. */
  readonly compactRevision: bigint;
  constructor(compactRevision: bigint) {
    super(GRPC_OUT_OF_RANGE, 'etcdserver: mvcc: required revision has been compacted', { method: 'Watch.Watch' });
    this.compactRevision = compactRevision;
  }
}

/** An etcd session's lease is gone (expired, revoked) or could not be renewed before it ran out. */
export class SessionExpiredError extends WirelockError {
  /** The ID of the session's lease. */
  readonly leaseId: bigint;
  constructor(leaseId: bigint, detail: string, options?: { cause?: unknown }) {
    super('WL_SESSION_EXPIRED', `etcd session (lease ${leaseId.toString(16)}) expired: ${detail}`, options);
    this.leaseId = leaseId;
  }
}

/**
 * Bad arguments are TypeError or RangeError, as in Node's own APIs, and carry Node's codes, so a
 * caller can tell them apart without parsing messages: ERR_INVALID_ARG_TYPE (the wrong kind of
 * value), ERR_INVALID_ARG_VALUE (the right kind, but not usable: an empty key, a malformed URL),
 * ERR_OUT_OF_RANGE (a number outside its range).
 */
export type ArgumentErrorCode = 'ERR_INVALID_ARG_TYPE' | 'ERR_INVALID_ARG_VALUE' | 'ERR_OUT_OF_RANGE';

/** A TypeError with code `ERR_INVALID_ARG_TYPE`: an argument is the wrong kind of value. */
export function invalidType(message: string): TypeError & { code: 'ERR_INVALID_ARG_TYPE' } {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_TYPE' as const });
}

/** A TypeError with code `ERR_INVALID_ARG_VALUE`: an argument is the right kind but unusable. */
export function invalidValue(message: string): TypeError & { code: 'ERR_INVALID_ARG_VALUE' } {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_VALUE' as const });
}

/** A RangeError with code `ERR_OUT_OF_RANGE`: a number is outside its range. */
export function outOfRange(message: string): RangeError & { code: 'ERR_OUT_OF_RANGE' } {
  return Object.assign(new RangeError(message), { code: 'ERR_OUT_OF_RANGE' as const });
}
