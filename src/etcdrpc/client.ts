/**
 * EtcdClient: etcd's v3 gRPC API, typed, over @grpc/grpc-js with hand-written protos.
 *
 *   const etcd = await EtcdClient.connect({ endpoints: ['http://127.0.0.1:2379'] });
 *   await etcd.put({ key: 'a', value: '1' });
 *   const { kvs } = await etcd.range({ key: 'a' });
 *
 * Several endpoints are one cluster: calls go to one endpoint and move to the next when it is
 * unavailable (see transport.ts for what is retried). All watches share one Watch stream and all
 * lease renewals one LeaseKeepAlive stream. The per-service clients are there as `kv`, `lease`,
 * `watches`, `cluster` and `maintenance`; the common calls are also methods of the client itself.
 */
import { ClusterClient, KVClient, LeaseClient, MaintenanceClient, type TxnOptions } from './services.js';
import { Transport, type CallOptions } from './transport.js';
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
  MemberListResponse,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  StatusResponse,
  TxnRequest,
  TxnResponse,
} from './types.js';
import { invalidType, invalidValue, outOfRange } from '../errors.js';

/** Options of {@link EtcdClient.connect}. */
export interface EtcdOptions {
  /** 'http://host:port' or 'https://host:port' (all the same scheme); several = one cluster. */
  endpoints: string[];
  /**
   * etcd user to authenticate as: connect() gets a token, and a new one is fetched when it expires.
   * @defaultValue none: no authentication
   */
  username?: string;
  /**
   * The user's password; only allowed together with `username`.
   * @defaultValue `''`
   */
  password?: string;
  /** For https endpoints: `ca` to trust, `cert` and `key` for a client certificate. */
  tls?: import('node:tls').SecureContextOptions;
  /**
   * Deadline of each call, retries included, in milliseconds.
   * @defaultValue `5000`
   */
  callTimeoutMs?: number;
  /**
   * How long connect() waits for a first answer from the cluster, in milliseconds (without username;
   * with one, the authentication is a call and has callTimeoutMs). A refused or unreachable cluster
   * fails then with ConnectionError (or TimeoutError, if the endpoints accepted and said nothing).
   * @defaultValue `3000`, or `callTimeoutMs` if that is shorter
   */
  connectTimeoutMs?: number;
  /**
   * The gRPC transport: `'h2'`, wirelock's own gRPC over HTTP/2 on node:net/node:tls (every frame on
   * the `wirelock:etcd:h2:frame` diagnostics channel), or `'grpc-js'`, @grpc/grpc-js. Both keep the
   * same promises (failover, retries, hasleader, re-authentication, TLS with client certificates).
   * The environment variable `WIRELOCK_ETCD_TRANSPORT` (`h2` or `grpc-js`) sets the default for a
   * whole process, e.g. to try one without changing code.
   * @defaultValue `'h2'`
   */
  transport?: 'h2' | 'grpc-js';
}

export type { CallOptions, TxnOptions };

const DEFAULT_CALL_TIMEOUT_MS = 5000;
const DEFAULT_TRANSPORT = 'h2';
const DEFAULT_CONNECT_TIMEOUT_MS = 3000;

/**
 * A client of one etcd cluster over its v3 gRPC API; create one with {@link EtcdClient.connect}.
 * Calls go to one endpoint and move to the next when it is unavailable; all watches share one Watch
 * stream and all lease renewals one LeaseKeepAlive stream.
 */
export class EtcdClient {
  /** The KV service: range, put, deleteRange, txn. */
  readonly kv: KVClient;
  /** The Lease service: grant, revoke, keepAlive, timeToLive. */
  readonly lease: LeaseClient;
  /** The client's shared Watch stream. */
  readonly watches: WatchStream;
  /** The Cluster service: memberList. */
  readonly cluster: ClusterClient;
  /** The Maintenance service: status. */
  readonly maintenance: MaintenanceClient;
  readonly #transport: Transport;

  private constructor(transport: Transport) {
    this.#transport = transport;
    this.kv = new KVClient(transport);
    this.lease = new LeaseClient(transport);
    this.watches = new WatchStream(transport);
    this.cluster = new ClusterClient(transport);
    this.maintenance = new MaintenanceClient(transport);
  }

  /**
   * Checks the options, authenticates when a username is given (a wrong password rejects here,
   * with EtcdError code 3 and no password in the message), and checks that the cluster answers.
   */
  static async connect(opts: EtcdOptions): Promise<EtcdClient> {
    const transport = new Transport(checkOptions(opts));
    const connectTimeoutMs = checkTimeout('connectTimeoutMs', opts.connectTimeoutMs ?? Math.min(DEFAULT_CONNECT_TIMEOUT_MS, transport.callTimeoutMs));
    const client = new EtcdClient(transport);
    try {
      if (opts.username !== undefined) await transport.reauthenticate(undefined);
      else await client.status({ timeoutMs: connectTimeoutMs });
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

  /** True once close() has been called. */
  get closed(): boolean {
    return this.#transport.closed;
  }

  /** Reads a key or a range of keys (KV.Range); see {@link KVClient.range}. */
  range(req: RangeRequest, opts?: CallOptions): Promise<RangeResponse> {
    return this.kv.range(req, opts);
  }

  /** Writes a key (KV.Put); see {@link KVClient.put}. */
  put(req: PutRequest, opts?: CallOptions): Promise<PutResponse> {
    return this.kv.put(req, opts);
  }

  /** Deletes a key or a range of keys (KV.DeleteRange); see {@link KVClient.deleteRange}. */
  deleteRange(req: DeleteRangeRequest, opts?: CallOptions): Promise<DeleteRangeResponse> {
    return this.kv.deleteRange(req, opts);
  }

  /** Runs a transaction (KV.Txn); see {@link KVClient.txn}. */
  txn(req: TxnRequest, opts?: TxnOptions): Promise<TxnResponse> {
    return this.kv.txn(req, opts);
  }

  /** Creates a lease (Lease.LeaseGrant); `TTL` in seconds. See {@link LeaseClient.grant}. */
  leaseGrant(req: LeaseGrantRequest, opts?: CallOptions): Promise<LeaseGrantResponse> {
    return this.lease.grant(req, opts);
  }

  /** Ends a lease and deletes its keys (Lease.LeaseRevoke); see {@link LeaseClient.revoke}. */
  leaseRevoke(req: LeaseRevokeRequest, opts?: CallOptions): Promise<LeaseRevokeResponse> {
    return this.lease.revoke(req, opts);
  }

  /** One renewal over the shared LeaseKeepAlive stream; TTL 0 (not an error) when the lease is gone. */
  leaseKeepAlive(id: bigint, opts?: CallOptions): Promise<LeaseKeepAliveResponse> {
    return this.lease.keepAlive(id, opts);
  }

  /** Reads a lease's remaining TTL, and optionally its keys (Lease.LeaseTimeToLive). */
  leaseTimeToLive(req: LeaseTimeToLiveRequest, opts?: CallOptions): Promise<LeaseTimeToLiveResponse> {
    return this.lease.timeToLive(req, opts);
  }

  /**
   * Watches `key` (or a range) over the client's shared Watch stream. Returns at once; the watch is
   * (re)created in the background and survives stream breaks without losing events. Bad arguments
   * throw synchronously.
   */
  watch(key: Bytes, opts: WatchOptions, handlers: WatchHandlers): Watcher {
    return this.watches.watch(key, opts, handlers);
  }

  /** Lists the cluster's members (Cluster.MemberList). */
  memberList(opts?: CallOptions): Promise<MemberListResponse> {
    return this.cluster.memberList(opts);
  }

  /** The answering member's status (Maintenance.Status): version, leader, raft term, database size. */
  status(opts?: CallOptions): Promise<StatusResponse> {
    return this.maintenance.status(opts);
  }

  /** Ends both streams (watches end with ClosedError) and closes every channel. Pending calls reject. */
  async close(): Promise<void> {
    if (this.#transport.closed) return;
    this.#transport.close();
    this.watches.close();
    this.lease.close();
  }
}

function checkTimeout(name: string, value: unknown): number {
  if (typeof value !== 'number' || !(value > 0)) throw outOfRange(`${name} must be a number > 0, got ${String(value)}`);
  return value;
}

function checkOptions(opts: EtcdOptions): ConstructorParameters<typeof Transport>[0] {
  if (opts === null || typeof opts !== 'object') throw invalidType('EtcdClient.connect() needs an options object');
  const { endpoints } = opts;
  if (!Array.isArray(endpoints) || endpoints.length === 0) throw invalidValue('endpoints must be a non-empty array of URLs');
  for (const e of endpoints) {
    // An endpoint may carry credentials (user:password@): it is never echoed, only its position.
    const bad = (): TypeError =>
      invalidValue(`endpoint ${endpoints.indexOf(e) + 1} of ${endpoints.length} must look like http://host:port or https://host:port`);
    let url: URL;
    try {
      url = new URL(String(e));
    } catch {
      throw bad();
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !url.port) throw bad();
    if (url.username || url.password) throw invalidValue('endpoint URLs must not carry credentials: use username/password');
  }
  if (opts.username !== undefined && (typeof opts.username !== 'string' || opts.username === '')) {
    throw invalidValue('username must be a non-empty string');
  }
  if (opts.password !== undefined && typeof opts.password !== 'string') throw invalidType('password must be a string');
  if (opts.password !== undefined && opts.username === undefined) throw invalidValue('a password needs a username');
  const callTimeoutMs = checkTimeout('callTimeoutMs', opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS);
  const transport = opts.transport ?? process.env.WIRELOCK_ETCD_TRANSPORT ?? DEFAULT_TRANSPORT;
  if (transport !== 'h2' && transport !== 'grpc-js') throw invalidValue(`transport must be 'h2' or 'grpc-js', got ${JSON.stringify(String(transport))}`);
  return { endpoints: endpoints.map(String), username: opts.username, password: opts.password, tls: opts.tls, callTimeoutMs, transport };
}
