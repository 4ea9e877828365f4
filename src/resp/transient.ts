/**
 * Which Redis failures a waiter should wait out rather than report: the one predicate every Redis
 * primitive uses for "retry with backoff until the deadline".
 */
import { ConnectionError, ReplicaError, RespError, TimeoutError } from '../errors.js';

/**
 * Error replies a server gives while it cannot serve *yet*: after a restart (LOADING its data), while
 * a script runs too long (BUSY), on a replica whose master is gone (MASTERDOWN) or that a failover has
 * just demoted (READONLY), and in a cluster that is resharding or healing (TRYAGAIN, CLUSTERDOWN).
 * Every other error reply (NOPERM, WRONGTYPE, NOSCRIPT, ERR…) is final.
 */
const TRANSIENT_REPLIES = new Set(['LOADING', 'BUSY', 'MASTERDOWN', 'READONLY', 'TRYAGAIN', 'CLUSTERDOWN']);

/** Worth retrying while waiting: the server is unreachable, slow, or says "not yet" (its replicas too). */
export function isTransientRedisError(err: unknown): boolean {
  if (err instanceof RespError) return TRANSIENT_REPLIES.has(err.prefix);
  return err instanceof ConnectionError || err instanceof TimeoutError || err instanceof ReplicaError;
}
