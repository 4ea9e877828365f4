/**
 * EtcdClient: etcd's v3 gRPC API, typed, over @grpc/grpc-js with hand-written protos.
 *
 *   const etcd = await EtcdClient.connect({ endpoints: ['http://127.0.0.1:2379'] });
 *   await etcd.put({ key: 'a', value: '1' });
 *   const { kvs } = await etcd.range({ key: 'a' });
 *
 * Several endpoints are one cluster: calls go to one endpoint and move to the next when it is
 * unavailable (see transport.ts for what is retried). All watches share one Watch stream and all
 * lease renewals one LeaseKeepAlive stream.
 */
import { method, type MethodInfo } from './codec.js';
import { KeepAliveStream } from './lease.js';
import { Transport, type CallOptions, type RetryPolicy } from './transport.js';
import { WatchStream, type WatchHandlers, type WatchOptions, type Watcher } from './watch.js';
import type {
  Bytes,
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

export interface EtcdOptions {
  /** 'http://host:port' or 'https://host:port' (all the same scheme); several = one cluster. */
  endpoints: string[];
  username?: string;
  password?: string;
  /** For https endpoints: `ca` to trust, `cert` and `key` for a client certificate. */
  tls?: import('node:tls').SecureContextOptions;
  /** Deadline of each call, retries included. Default 5000. */
  callTimeoutMs?: number;
}

export interface TxnOptions extends CallOptions {
  /**
   * The transaction may safely be applied twice (for example a put guarded by "the key does not
   * exist yet"): it is then sent again after an Unavailable answer, like a read.
   */
  idempotent?: boolean;
}

export type { CallOptions };

const DEFAULT_CALL_TIMEOUT_MS = 5000;

const m = {
  range: () => method<RangeRequest, RangeResponse>('KV', 'Range'),
  put: () => method<PutRequest, PutResponse>('KV', 'Put'),
  deleteRange: () => method<DeleteRangeRequest, DeleteRangeResponse>('KV', 'DeleteRange'),
  txn: () => method<TxnRequest, TxnResponse>('KV', 'Txn'),
  leaseGrant: () => method<LeaseGrantRequest, LeaseGrantResponse>('Lease', 'LeaseGrant'),
  leaseRevoke: () => method<LeaseRevokeRequest, LeaseRevokeResponse>('Lease', 'LeaseRevoke'),
  leaseTimeToLive: () => method<LeaseTimeToLiveRequest, LeaseTimeToLiveResponse>('Lease', 'LeaseTimeToLive'),
  memberList: () => method<MemberListRequest, MemberListResponse>('Cluster', 'MemberList'),
  status: () => method<StatusRequest, StatusResponse>('Maintenance', 'Status'),
};
type Methods = { [K in keyof typeof m]: ReturnType<(typeof m)[K]> };

export class EtcdClient {
  readonly #transport: Transport;
  readonly #methods: Methods;
  readonly #watch: WatchStream;
  readonly #keepAlive: KeepAliveStream;

  private constructor(transport: Transport) {
    this.#transport = transport;
    this.#methods = Object.fromEntries(Object.entries(m).map(([k, f]) => [k, f()])) as Methods;
    this.#watch = new WatchStream(transport);
    this.#keepAlive = new KeepAliveStream(transport);
  }

  /**
   * Checks the options, authenticates when a username is given (a wrong password rejects here,
   * with EtcdError code 3 and no password in the message), and checks that the cluster answers.
   */
  static async connect(opts: EtcdOptions): Promise<EtcdClient> {
    const transport = new Transport(checkOptions(opts));
    const client = new EtcdClient(transport);
    try {
      if (opts.username !== undefined) await transport.reauthenticate(undefined);
      else await client.status();
    } catch (err) {
      await client.close();
      throw err;
    }
    return client;
  }

  /** The endpoints, as given. */
  get endpoints(): string[] {
    return this.#transport.endpoints.map((e) => e.url);
  }

  /** The deadline of each call, retries included. */
  get callTimeoutMs(): number {
    return this.#transport.callTimeoutMs;
  }

  /** Aborted by close(). */
  get closeSignal(): AbortSignal {
    return this.#transport.closeSignal;
  }

  get closed(): boolean {
    return this.#transport.closed;
  }

  // ---- KV

  range(req: RangeRequest, opts?: CallOptions): Promise<RangeResponse> {
    return this.#unary(this.#methods.range, req, 'read', opts);
  }

  put(req: PutRequest, opts?: CallOptions): Promise<PutResponse> {
    return this.#unary(this.#methods.put, req, 'write', opts);
  }

  deleteRange(req: DeleteRangeRequest, opts?: CallOptions): Promise<DeleteRangeResponse> {
    return this.#unary(this.#methods.deleteRange, req, 'write', opts);
  }

  txn(req: TxnRequest, opts?: TxnOptions): Promise<TxnResponse> {
    return this.#unary(this.#methods.txn, req, opts?.idempotent ? 'idempotent-write' : 'write', opts);
  }

  // ---- Lease

  /** `TTL` in seconds (etcd raises it to its minimum, 2 s). Retried like a read: an unused lease is harmless. */
  leaseGrant(req: LeaseGrantRequest, opts?: CallOptions): Promise<LeaseGrantResponse> {
    return this.#unary(this.#methods.leaseGrant, req, 'read', opts);
  }

  /** A lease that is already gone rejects with EtcdError NOT_FOUND ("requested lease not found"). */
  leaseRevoke(req: LeaseRevokeRequest, opts?: CallOptions): Promise<LeaseRevokeResponse> {
    return this.#unary(this.#methods.leaseRevoke, req, 'read', opts);
  }

  /**
   * Renews a lease once, over the client's shared LeaseKeepAlive stream. Resolves with TTL 0 (not an
   * error) when the lease no longer exists. `timeoutMs` defaults to the call timeout.
   */
  leaseKeepAlive(id: bigint, opts: CallOptions = {}): Promise<LeaseKeepAliveResponse> {
    return this.#keepAlive.keepAlive(id, opts.timeoutMs ?? this.#transport.callTimeoutMs, opts.signal);
  }

  leaseTimeToLive(req: LeaseTimeToLiveRequest, opts?: CallOptions): Promise<LeaseTimeToLiveResponse> {
    return this.#unary(this.#methods.leaseTimeToLive, req, 'read', opts);
  }

  // ---- Watch

  /**
   * Watches `key` (or a range) over the client's shared Watch stream. Returns at once; the watch is
   * (re)created in the background and survives stream breaks without losing events. Bad arguments
   * throw synchronously.
   */
  watch(key: Bytes, opts: WatchOptions, handlers: WatchHandlers): Watcher {
    return this.#watch.watch(key, opts, handlers);
  }

  // ---- Cluster, Maintenance

  memberList(opts?: CallOptions): Promise<MemberListResponse> {
    return this.#unary(this.#methods.memberList, {}, 'read', opts);
  }

  /** The answering member's status (leader, raft term, version). */
  status(opts?: CallOptions): Promise<StatusResponse> {
    return this.#unary(this.#methods.status, {}, 'read', opts);
  }

  /** Ends both streams (watches end with ClosedError) and closes every channel. Pending calls reject. */
  async close(): Promise<void> {
    if (this.#transport.closed) return;
    this.#transport.close();
    this.#watch.close();
    this.#keepAlive.close();
  }

  async #unary<Req, Res>(mi: MethodInfo<Req, Res>, req: Req, policy: RetryPolicy, opts?: CallOptions): Promise<Res> {
    if (opts !== undefined && (typeof opts !== 'object' || opts === null)) throw new TypeError('call options must be an object');
    if (opts?.timeoutMs !== undefined) checkTimeout('timeoutMs', opts.timeoutMs);
    if (req === null || typeof req !== 'object') throw new TypeError(`${mi.name} needs a request object`);
    return this.#transport.unary(mi, req, policy, opts);
  }
}

function checkTimeout(name: string, value: unknown): number {
  if (typeof value !== 'number' || !(value > 0)) throw new RangeError(`${name} must be a number > 0, got ${String(value)}`);
  return value;
}

function checkOptions(opts: EtcdOptions): ConstructorParameters<typeof Transport>[0] {
  if (opts === null || typeof opts !== 'object') throw new TypeError('EtcdClient.connect() needs an options object');
  const { endpoints } = opts;
  if (!Array.isArray(endpoints) || endpoints.length === 0) throw new TypeError('endpoints must be a non-empty array of URLs');
  for (const e of endpoints) {
    let url: URL;
    try {
      url = new URL(String(e));
    } catch {
      throw new TypeError(`endpoint must look like http://host:port or https://host:port, got ${String(e)}`);
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !url.port) {
      throw new TypeError(`endpoint must look like http://host:port or https://host:port, got ${String(e)}`);
    }
    if (url.username || url.password) throw new TypeError('endpoint URLs must not carry credentials: use username/password');
  }
  if (opts.username !== undefined && (typeof opts.username !== 'string' || opts.username === '')) {
    throw new TypeError('username must be a non-empty string');
  }
  if (opts.password !== undefined && typeof opts.password !== 'string') throw new TypeError('password must be a string');
  if (opts.password !== undefined && opts.username === undefined) throw new TypeError('a password needs a username');
  const callTimeoutMs = checkTimeout('callTimeoutMs', opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS);
  return { endpoints: endpoints.map(String), username: opts.username, password: opts.password, tls: opts.tls, callTimeoutMs };
}
