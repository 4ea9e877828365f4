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

export interface EtcdOptions {
  /** 'http://host:port' or 'https://host:port' (all the same scheme); several = one cluster. */
  endpoints: string[];
  username?: string;
  password?: string;
  /** For https endpoints: `ca` to trust, `cert` and `key` for a client certificate. */
  tls?: import('node:tls').SecureContextOptions;
  /** Deadline of each call, retries included. Default 5000. */
  callTimeoutMs?: number;
  /**
   * How long connect() waits for a first answer from the cluster (without username; with one, the
   * authentication is a call and has callTimeoutMs). Default 3000, or callTimeoutMs if that is shorter. A refused or unreachable cluster
   * fails then with ConnectionError (or TimeoutError, if the endpoints accepted and said nothing).
   */
  connectTimeoutMs?: number;
}

export type { CallOptions, TxnOptions };

const DEFAULT_CALL_TIMEOUT_MS = 5000;
const DEFAULT_CONNECT_TIMEOUT_MS = 3000;

export class EtcdClient {
  readonly kv: KVClient;
  readonly lease: LeaseClient;
  readonly watches: WatchStream;
  readonly cluster: ClusterClient;
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

  get closed(): boolean {
    return this.#transport.closed;
  }

  range(req: RangeRequest, opts?: CallOptions): Promise<RangeResponse> {
    return this.kv.range(req, opts);
  }

  put(req: PutRequest, opts?: CallOptions): Promise<PutResponse> {
    return this.kv.put(req, opts);
  }

  deleteRange(req: DeleteRangeRequest, opts?: CallOptions): Promise<DeleteRangeResponse> {
    return this.kv.deleteRange(req, opts);
  }

  txn(req: TxnRequest, opts?: TxnOptions): Promise<TxnResponse> {
    return this.kv.txn(req, opts);
  }

  leaseGrant(req: LeaseGrantRequest, opts?: CallOptions): Promise<LeaseGrantResponse> {
    return this.lease.grant(req, opts);
  }

  leaseRevoke(req: LeaseRevokeRequest, opts?: CallOptions): Promise<LeaseRevokeResponse> {
    return this.lease.revoke(req, opts);
  }

  /** One renewal over the shared LeaseKeepAlive stream; TTL 0 (not an error) when the lease is gone. */
  leaseKeepAlive(id: bigint, opts?: CallOptions): Promise<LeaseKeepAliveResponse> {
    return this.lease.keepAlive(id, opts);
  }

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

  memberList(opts?: CallOptions): Promise<MemberListResponse> {
    return this.cluster.memberList(opts);
  }

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
  return { endpoints: endpoints.map(String), username: opts.username, password: opts.password, tls: opts.tls, callTimeoutMs };
}
