/**
 * One small client per etcd service, each a table of its methods with the retry policy each may use
 * (see transport.ts): KV, Lease, Cluster, Maintenance. The Watch service's client is WatchStream
 * (watch.ts); the Auth service's one method, Authenticate, is called by the transport, which owns
 * the token.
 */
import { method, type MethodInfo } from './codec.js';
import { KeepAliveStream } from './lease.js';
import type { CallOptions, RetryPolicy, Transport } from './transport.js';
import type {
  DeleteRangeRequest,
  DeleteRangeResponse,
  LeaseGrantRequest,
  LeaseGrantResponse,
  LeaseKeepAliveResponse,
  LeaseRevokeRequest,
  LeaseRevokeResponse,
  LeaseTimeToLiveRequest,
  LeaseTimeToLiveResponse,
  MemberListRequest,
  MemberListResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  StatusRequest,
  StatusResponse,
  TxnRequest,
  TxnResponse,
} from './types.js';
import { invalidType, outOfRange } from '../errors.js';

/** Options of a transaction call: the per-call options, and whether the transaction may be sent twice. */
export interface TxnOptions extends CallOptions {
  /**
   * The transaction may safely be applied twice (for example a put guarded by "the key does not
   * exist yet"): it is then sent again after an Unavailable answer, like a read.
   * @defaultValue `false`: sent again only if it certainly never reached a server
   */
  idempotent?: boolean;
}

/** Bad arguments reject at once, before anything is sent. */
function call<Req, Res>(transport: Transport, mi: MethodInfo<Req, Res>, req: Req, policy: RetryPolicy, opts?: CallOptions): Promise<Res> {
  try {
    if (opts !== undefined && (typeof opts !== 'object' || opts === null)) throw invalidType('call options must be an object');
    if (opts?.timeoutMs !== undefined && !(typeof opts.timeoutMs === 'number' && opts.timeoutMs > 0)) {
      throw outOfRange(`timeoutMs must be a number > 0, got ${String(opts.timeoutMs)}`);
    }
    if (req === null || typeof req !== 'object') throw invalidType(`${mi.name} needs a request object`);
  } catch (err) {
    return Promise.reject(err);
  }
  return transport.unary(mi, req, policy, opts);
}

/** KV: reads are retried on another endpoint; writes only if they never left (or are idempotent). */
export class KVClient {
  readonly #t: Transport;
  readonly #range = method<RangeRequest, RangeResponse>('KV', 'Range');
  readonly #put = method<PutRequest, PutResponse>('KV', 'Put');
  readonly #deleteRange = method<DeleteRangeRequest, DeleteRangeResponse>('KV', 'DeleteRange');
  readonly #txn = method<TxnRequest, TxnResponse>('KV', 'Txn');

  constructor(transport: Transport) {
    this.#t = transport;
  }

  /** Reads a key or a range of keys (KV.Range). Sent again on the next endpoint after an Unavailable answer. */
  range(req: RangeRequest, opts?: CallOptions): Promise<RangeResponse> {
    return call(this.#t, this.#range, req, 'read', opts);
  }

  /** Writes a key (KV.Put). Sent again only if it certainly never reached a server. */
  put(req: PutRequest, opts?: CallOptions): Promise<PutResponse> {
    return call(this.#t, this.#put, req, 'write', opts);
  }

  /** Deletes a key or a range of keys (KV.DeleteRange). Sent again only if it certainly never reached a server. */
  deleteRange(req: DeleteRangeRequest, opts?: CallOptions): Promise<DeleteRangeResponse> {
    return call(this.#t, this.#deleteRange, req, 'write', opts);
  }

  /**
   * Runs a transaction (KV.Txn). Sent again only if it certainly never reached a server, or, with
   * `idempotent`, after any Unavailable answer.
   */
  txn(req: TxnRequest, opts?: TxnOptions): Promise<TxnResponse> {
    return call(this.#t, this.#txn, req, opts?.idempotent ? 'idempotent-write' : 'write', opts);
  }
}

/** Lease: every call is retried like a read (an extra grant is harmless; revoke and renew repeat safely). */
export class LeaseClient {
  readonly #t: Transport;
  readonly #grant = method<LeaseGrantRequest, LeaseGrantResponse>('Lease', 'LeaseGrant');
  readonly #revoke = method<LeaseRevokeRequest, LeaseRevokeResponse>('Lease', 'LeaseRevoke');
  readonly #timeToLive = method<LeaseTimeToLiveRequest, LeaseTimeToLiveResponse>('Lease', 'LeaseTimeToLive');
  readonly #keepAlive: KeepAliveStream;

  constructor(transport: Transport) {
    this.#t = transport;
    this.#keepAlive = new KeepAliveStream(transport);
  }

  /** `TTL` in seconds (etcd raises it to its minimum, 2 s). */
  grant(req: LeaseGrantRequest, opts?: CallOptions): Promise<LeaseGrantResponse> {
    return call(this.#t, this.#grant, req, 'read', opts);
  }

  /** A lease that is already gone rejects with EtcdError NOT_FOUND ("requested lease not found"). */
  revoke(req: LeaseRevokeRequest, opts?: CallOptions): Promise<LeaseRevokeResponse> {
    return call(this.#t, this.#revoke, req, 'read', opts);
  }

  /**
   * Renews a lease once, over the client's shared LeaseKeepAlive stream. Resolves with TTL 0 (not an
   * error) when the lease no longer exists. `timeoutMs` defaults to the call timeout.
   */
  keepAlive(id: bigint, opts: CallOptions = {}): Promise<LeaseKeepAliveResponse> {
    return this.#keepAlive.keepAlive(id, opts.timeoutMs ?? this.#t.callTimeoutMs, opts.signal);
  }

  /** Reads a lease's remaining TTL in seconds (-1 when the lease does not exist), and its keys if asked. */
  timeToLive(req: LeaseTimeToLiveRequest, opts?: CallOptions): Promise<LeaseTimeToLiveResponse> {
    return call(this.#t, this.#timeToLive, req, 'read', opts);
  }

  /** Ends the keep-alive stream; renewals in flight reject. */
  close(): void {
    this.#keepAlive.close();
  }
}

/** Cluster: membership. Calls are retried like a read. */
export class ClusterClient {
  readonly #t: Transport;
  readonly #memberList = method<MemberListRequest, MemberListResponse>('Cluster', 'MemberList');
  constructor(transport: Transport) {
    this.#t = transport;
  }
  /** Lists the cluster's members, learners included. */
  memberList(opts?: CallOptions): Promise<MemberListResponse> {
    return call(this.#t, this.#memberList, {}, 'read', opts);
  }
}

/** Maintenance: member status. Calls are retried like a read. */
export class MaintenanceClient {
  readonly #t: Transport;
  readonly #status = method<StatusRequest, StatusResponse>('Maintenance', 'Status');
  constructor(transport: Transport) {
    this.#t = transport;
  }
  /** The answering member's status (leader, raft term, version). */
  status(opts?: CallOptions): Promise<StatusResponse> {
    return call(this.#t, this.#status, {}, 'read', opts);
  }
}
