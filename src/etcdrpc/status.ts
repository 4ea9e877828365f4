/**
 * One table from a gRPC status to a wirelock error, and the predicates the retry rules use.
 *
 * etcd's own errors arrive as a status code plus a message starting "etcdserver: " (or "mvcc: ",
 * "auth: "); grpc-js's transport failures arrive as UNAVAILABLE with its own wording. The first
 * become EtcdError (grpcCode + etcd's message), the second ConnectionError naming the endpoint.
 */
import { status as Status } from '@grpc/grpc-js';
import { ClosedError, ConnectionError, EtcdError, TimeoutError } from '../errors.js';
import { etcdChannels } from '../diagnostics.js';

/** grpc-js's table of gRPC status codes. */
export { Status };

/** What a failed grpc-js call or stream hands us. */
export interface GrpcFailure {
  /** The gRPC status code. */
  code: number;
  /** The status message. */
  details: string;
}

/** etcd's message when a token has expired or was never valid: re-authenticate once and retry. */
export const INVALID_AUTH_TOKEN = 'etcdserver: invalid auth token';

/** Unavailable answers written by etcd itself (its messages all carry a component prefix). */
function fromEtcd(details: string): boolean {
  return /^(etcdserver|mvcc|auth|lease|rpctypes): /.test(details);
}

/**
 * The wirelock error for a failed call. `timeoutMs` is the call's budget, for TimeoutError.
 * The details never contain secrets: etcd does not echo passwords or tokens back.
 */
export function toError(failure: GrpcFailure, method: string, endpoint: string, timeoutMs: number): Error {
  const { code, details } = failure;
  if (code === Status.DEADLINE_EXCEEDED) {
    return new TimeoutError(`${method} to ${endpoint} got no answer within ${Math.round(timeoutMs)} ms`, timeoutMs);
  }
  const etcd = new EtcdError(code, details, { method });
  if (code === Status.UNAVAILABLE && !fromEtcd(details)) {
    return new ConnectionError(endpoint, `${method}: ${withoutBoilerplate(details)}`, { cause: etcd });
  }
  return etcd;
}

/**
 * grpc-js's text for a channel that could not connect, without its boilerplate:
 * "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: "
 * becomes "no connection established (connect ECONNREFUSED 127.0.0.1:1)".
 */
export function withoutBoilerplate(details: string): string {
  const m = /^No connection established\. Last error: (?:Error: )?(.*?)\.?(?: Resolution note:.*)?$/s.exec(details);
  if (m) return `no connection established (${m[1]})`;
  return details.replace(/\s*Resolution note:\s*$/, '');
}

/** The cluster (or this endpoint) cannot serve now but may soon: try the next endpoint. */
export function isUnavailable(err: unknown): boolean {
  return err instanceof ConnectionError || (err instanceof EtcdError && err.grpcCode === Status.UNAVAILABLE);
}

/**
 * The request certainly never reached a server: grpc-js had no connection to send it on. Only then
 * may a write that is not idempotent be sent again (etcd's Go client draws the same line).
 */
export function wasNotSent(err: unknown): boolean {
  return err instanceof ConnectionError && /No connection established|failed to connect|Name resolution failed/i.test(err.message);
}

/** etcd refused the call's token as expired or invalid (UNAUTHENTICATED, "invalid auth token"). */
export function isInvalidToken(err: unknown): boolean {
  return err instanceof EtcdError && err.grpcCode === Status.UNAUTHENTICATED && err.details === INVALID_AUTH_TOKEN;
}

/** Worth waiting out and trying again (by a lock wait): the cluster may come back, or answer in time. */
export function isTransientEtcdError(err: unknown): boolean {
  if (err instanceof EtcdError && err.grpcCode === Status.DEADLINE_EXCEEDED) return true;
  return isUnavailable(err) || err instanceof TimeoutError;
}

/**
 * etcd no longer has the lease a write named (NOT_FOUND "etcdserver: requested lease not found"): it
 * expired, or was revoked, before the write arrived. The write was not applied.
 */
export function isLeaseGone(err: unknown): boolean {
  return err instanceof EtcdError && err.grpcCode === Status.NOT_FOUND && /requested lease not found/.test(err.details);
}

/**
 * A write certainly not applied: etcd refused it before it ran (bad argument, lease not found,
 * permission, authentication, failed precondition), or it was never sent (the client was closed).
 * Any other failure leaves its outcome unknown: it may have been applied, or may yet be.
 */
export function wasNotApplied(err: unknown): boolean {
  if (err instanceof EtcdError) return REFUSED_BEFORE_APPLY.has(err.grpcCode);
  return err instanceof ClosedError;
}
const REFUSED_BEFORE_APPLY = new Set<number>([
  Status.INVALID_ARGUMENT,
  Status.NOT_FOUND,
  Status.PERMISSION_DENIED,
  Status.UNAUTHENTICATED,
  Status.FAILED_PRECONDITION,
]);

/**
 * Why a bidi stream (Watch, LeaseKeepAlive) broke, as the error its users get: its gRPC status, or
 * ConnectionError when the server ended it cleanly. Published on wirelock:etcd:stream:close.
 * `stream` is the method's full name (`Watch.Watch`, `Lease.LeaseKeepAlive`).
 */
export function streamBroke(stream: string, endpoint: string, failure: GrpcFailure | undefined): Error {
  const error = failure
    ? toError(failure, stream, endpoint, 0)
    : new ConnectionError(endpoint, `the ${stream.slice(stream.indexOf('.') + 1)} stream was ended by the server`);
  if (etcdChannels.streamClose.hasSubscribers) etcdChannels.streamClose.publish({ stream, endpoint, error });
  return error;
}
