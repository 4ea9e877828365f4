/**
 * The typed shapes of the etcd messages wirelock sends and receives. Field names are the proto's
 * (snake_case, exactly as on the wire and in etcd's docs).
 *
 * Requests take keys and values as strings (UTF-8) or bytes, and 64-bit integers as bigint (a JS
 * number is accepted when it is a safe integer). Responses always carry bytes as Buffers and every
 * 64-bit integer as a bigint: revisions and lease IDs do not fit in a double.
 */

/** A key or value in a request: a string is sent as its UTF-8 bytes. */
export type Bytes = string | Uint8Array;
/** A 64-bit integer in a request. */
export type Int64 = bigint | number;

export const SortOrder = { NONE: 0, ASCEND: 1, DESCEND: 2 } as const;
export const SortTarget = { KEY: 0, VERSION: 1, CREATE: 2, MOD: 3, VALUE: 4 } as const;
export const CompareResult = { EQUAL: 0, GREATER: 1, LESS: 2, NOT_EQUAL: 3 } as const;
export const CompareTarget = { VERSION: 0, CREATE: 1, MOD: 2, VALUE: 3, LEASE: 4 } as const;
export const EventType = { PUT: 0, DELETE: 1 } as const;
export const WatchFilter = { NOPUT: 0, NODELETE: 1 } as const;

type ValueOf<T> = T[keyof T];

export interface ResponseHeader {
  cluster_id: bigint;
  member_id: bigint;
  revision: bigint;
  raft_term: bigint;
}

export interface KeyValue {
  key: Buffer;
  create_revision: bigint;
  mod_revision: bigint;
  version: bigint;
  value: Buffer;
  lease: bigint;
}

export interface Event {
  type: ValueOf<typeof EventType>;
  kv: KeyValue | null;
  prev_kv: KeyValue | null;
}

// ---- KV

export interface RangeRequest {
  key: Bytes;
  range_end?: Bytes;
  limit?: Int64;
  revision?: Int64;
  sort_order?: ValueOf<typeof SortOrder>;
  sort_target?: ValueOf<typeof SortTarget>;
  serializable?: boolean;
  keys_only?: boolean;
  count_only?: boolean;
  min_mod_revision?: Int64;
  max_mod_revision?: Int64;
  min_create_revision?: Int64;
  max_create_revision?: Int64;
}

export interface RangeResponse {
  header: ResponseHeader;
  kvs: KeyValue[];
  more: boolean;
  count: bigint;
}

export interface PutRequest {
  key: Bytes;
  value?: Bytes;
  lease?: Int64;
  prev_kv?: boolean;
}

export interface PutResponse {
  header: ResponseHeader;
  prev_kv: KeyValue | null;
}

export interface DeleteRangeRequest {
  key: Bytes;
  range_end?: Bytes;
  prev_kv?: boolean;
}

export interface DeleteRangeResponse {
  header: ResponseHeader;
  deleted: bigint;
  prev_kvs: KeyValue[];
}

/** Exactly one field set. */
export interface RequestOp {
  request_range?: RangeRequest;
  request_put?: PutRequest;
  request_delete_range?: DeleteRangeRequest;
  request_txn?: TxnRequest;
}

/** Exactly one field is non-null: the answer to the RequestOp at the same index. */
export interface ResponseOp {
  response_range: RangeResponse | null;
  response_put: PutResponse | null;
  response_delete_range: DeleteRangeResponse | null;
  response_txn: TxnResponse | null;
}

/** `<target of key> <result> <value>`: set the one value field that matches `target`. */
export interface Compare {
  result: ValueOf<typeof CompareResult>;
  target: ValueOf<typeof CompareTarget>;
  key: Bytes;
  version?: Int64;
  create_revision?: Int64;
  mod_revision?: Int64;
  value?: Bytes;
  lease?: Int64;
  range_end?: Bytes;
}

export interface TxnRequest {
  compare?: Compare[];
  success?: RequestOp[];
  failure?: RequestOp[];
}

export interface TxnResponse {
  header: ResponseHeader;
  succeeded: boolean;
  responses: ResponseOp[];
}

// ---- Watch

export interface WatchCreateRequest {
  key: Bytes;
  range_end?: Bytes;
  start_revision?: Int64;
  progress_notify?: boolean;
  filters?: Array<ValueOf<typeof WatchFilter>>;
  prev_kv?: boolean;
  watch_id?: Int64;
  fragment?: boolean;
}

export interface WatchRequest {
  create_request?: WatchCreateRequest;
  cancel_request?: { watch_id: Int64 };
  progress_request?: Record<string, never>;
}

export interface WatchResponse {
  header: ResponseHeader;
  watch_id: bigint;
  created: boolean;
  canceled: boolean;
  compact_revision: bigint;
  cancel_reason: string;
  fragment: boolean;
  events: Event[];
}

// ---- Lease

export interface LeaseGrantRequest {
  /** Seconds. */
  TTL: Int64;
  ID?: Int64;
}

export interface LeaseGrantResponse {
  header: ResponseHeader;
  ID: bigint;
  TTL: bigint;
  error: string;
}

export interface LeaseRevokeRequest {
  ID: Int64;
}

export interface LeaseRevokeResponse {
  header: ResponseHeader;
}

export interface LeaseKeepAliveRequest {
  ID: Int64;
}

export interface LeaseKeepAliveResponse {
  header: ResponseHeader;
  ID: bigint;
  /** Seconds; 0 means the lease is gone. */
  TTL: bigint;
}

export interface LeaseTimeToLiveRequest {
  ID: Int64;
  keys?: boolean;
}

export interface LeaseTimeToLiveResponse {
  header: ResponseHeader;
  ID: bigint;
  /** Seconds left; -1 when the lease does not exist. */
  TTL: bigint;
  grantedTTL: bigint;
  keys: Buffer[];
}

// ---- Cluster, Maintenance, Auth

export type MemberListRequest = Record<string, never>;

export interface Member {
  ID: bigint;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

export interface MemberListResponse {
  header: ResponseHeader;
  members: Member[];
}

export type StatusRequest = Record<string, never>;

export interface StatusResponse {
  header: ResponseHeader;
  version: string;
  dbSize: bigint;
  leader: bigint;
  raftIndex: bigint;
  raftTerm: bigint;
  raftAppliedIndex: bigint;
  errors: string[];
  dbSizeInUse: bigint;
  isLearner: boolean;
}

export interface AuthenticateRequest {
  name: string;
  password: string;
}

export interface AuthenticateResponse {
  header: ResponseHeader;
  token: string;
}
