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
/** A 64-bit integer in a request: a bigint, or a number that is a safe integer. */
export type Int64 = bigint | number;

/** How {@link RangeRequest.sort_order} orders the keys a range returns. */
export const SortOrder = {
  /** No sort asked for: keys come in key order (etcd sorts ascending if `sort_target` is not KEY). */
  NONE: 0,
  /** Smallest first. */
  ASCEND: 1,
  /** Largest first. */
  DESCEND: 2,
} as const;
/** What {@link RangeRequest.sort_target} sorts the keys of a range by. */
export const SortTarget = {
  /** The key's bytes. */
  KEY: 0,
  /** The key's `version`. */
  VERSION: 1,
  /** The key's `create_revision`. */
  CREATE: 2,
  /** The key's `mod_revision`. */
  MOD: 3,
  /** The value's bytes. */
  VALUE: 4,
} as const;
/** The comparison a transaction guard ({@link Compare.result}) makes: `<key's target> <result> <given value>`. */
export const CompareResult = {
  /** The key's target equals the given value. */
  EQUAL: 0,
  /** The key's target is greater than the given value. */
  GREATER: 1,
  /** The key's target is less than the given value. */
  LESS: 2,
  /** The key's target differs from the given value. */
  NOT_EQUAL: 3,
} as const;
/** Which field of the key a transaction guard ({@link Compare.target}) compares, and so which value field of the Compare is read. */
export const CompareTarget = {
  /** The key's `version`, against {@link Compare.version}. */
  VERSION: 0,
  /** The key's `create_revision`, against {@link Compare.create_revision}. */
  CREATE: 1,
  /** The key's `mod_revision`, against {@link Compare.mod_revision}. */
  MOD: 2,
  /** The key's value, against {@link Compare.value}. */
  VALUE: 3,
  /** The ID of the lease the key is attached to, against {@link Compare.lease}. */
  LEASE: 4,
} as const;
/** The kind of change a watch event ({@link EtcdEvent.type}) reports. */
export const EventType = {
  /** The key was created or overwritten. */
  PUT: 0,
  /** The key was deleted (by a delete, or by the end of its lease). */
  DELETE: 1,
} as const;
/** Kinds of event a watch can ask the server to leave out ({@link WatchOptions.filters}). */
export const WatchFilter = {
  /** Leave out PUT events. */
  NOPUT: 0,
  /** Leave out DELETE events. */
  NODELETE: 1,
} as const;

/** The union of an object's values: `ValueOf<typeof SortOrder>` is `0 | 1 | 2`. The enum-like constants above are typed through it. */
export type ValueOf<T> = T[keyof T];

/** Sent with every answer: which cluster and member answered, and at which store revision. */
export interface ResponseHeader {
  /** ID of the cluster (bigint). */
  cluster_id: bigint;
  /** ID of the member that answered (bigint). */
  member_id: bigint;
  /** The store's revision when the request was served; for a write, the revision it created (bigint). */
  revision: bigint;
  /** The answering member's raft term (bigint). */
  raft_term: bigint;
}

/** A stored key with its value, revisions and lease. */
export interface KeyValue {
  /** The key's bytes. */
  key: Buffer;
  /**
   * Revision of the write that created the key (bigint). wirelock's etcd locks order waiters by it
   * and use the holder's as the fencing token.
   */
  create_revision: bigint;
  /** Revision of the latest write to the key (bigint). */
  mod_revision: bigint;
  /** Number of writes to the key since it was created, 1 after the first (bigint); a delete resets it. */
  version: bigint;
  /** The value's bytes; empty when the range asked for `keys_only`. */
  value: Buffer;
  /** ID of the lease the key is attached to, 0n for none (bigint); the key is deleted when the lease ends. */
  lease: bigint;
}

/** One change to a key, as a watch delivers it. */
export interface Event {
  /** A put or a delete: a value of {@link EventType}. */
  type: ValueOf<typeof EventType>;
  /**
   * The key after the change. For a DELETE only `key` and `mod_revision` (the revision of the
   * delete) are set.
   */
  kv: KeyValue | null;
  /** The key as it was before the change, when the watch asked for `prev_kv` and the key existed; else null. */
  prev_kv: KeyValue | null;
}

// ---- KV

/** KV.Range: read one key, or every key in a range. */
export interface RangeRequest {
  /** The key to read, or the first key of the range. */
  key: Bytes;
  /**
   * End of the half-open range [key, range_end). `"\0"` means every key from `key` on; use
   * {@link prefixEnd} for every key starting with a prefix.
   * @defaultValue none: only `key` itself
   */
  range_end?: Bytes;
  /**
   * Most keys to return; `more` in the answer says whether some were left out.
   * @defaultValue `0` (no limit)
   */
  limit?: Int64;
  /**
   * Read the store as it was at this revision; a revision removed by compaction is refused.
   * @defaultValue `0` (the current revision)
   */
  revision?: Int64;
  /**
   * Order of the returned keys, a value of {@link SortOrder}.
   * @defaultValue `SortOrder.NONE`
   */
  sort_order?: ValueOf<typeof SortOrder>;
  /**
   * What the keys are sorted by, a value of {@link SortTarget}.
   * @defaultValue `SortTarget.KEY`
   */
  sort_target?: ValueOf<typeof SortTarget>;
  /**
   * Answer from the member's local state, without confirming with a quorum: faster, but may be stale.
   * @defaultValue `false` (a linearizable read)
   */
  serializable?: boolean;
  /**
   * Return the keys without their values.
   * @defaultValue `false`
   */
  keys_only?: boolean;
  /**
   * Return only `count`, with no keys.
   * @defaultValue `false`
   */
  count_only?: boolean;
  /**
   * Return only keys whose `mod_revision` is at least this.
   * @defaultValue `0` (no lower bound)
   */
  min_mod_revision?: Int64;
  /**
   * Return only keys whose `mod_revision` is at most this.
   * @defaultValue `0` (no upper bound)
   */
  max_mod_revision?: Int64;
  /**
   * Return only keys whose `create_revision` is at least this.
   * @defaultValue `0` (no lower bound)
   */
  min_create_revision?: Int64;
  /**
   * Return only keys whose `create_revision` is at most this.
   * @defaultValue `0` (no upper bound)
   */
  max_create_revision?: Int64;
}

/** The answer to a {@link RangeRequest}. */
export interface RangeResponse {
  /** Cluster, member and store revision of the answer. */
  header: ResponseHeader;
  /** The keys read; empty when the request asked for `count_only`. */
  kvs: KeyValue[];
  /** True when `limit` left out some of the keys in the range. */
  more: boolean;
  /** Number of keys in the range, not cut by `limit` (bigint). */
  count: bigint;
}

/** KV.Put: write one key. */
export interface PutRequest {
  /** The key to write. */
  key: Bytes;
  /**
   * The value to store.
   * @defaultValue empty
   */
  value?: Bytes;
  /**
   * ID of the lease to attach the key to. A put without one detaches the key from any lease it had.
   * @defaultValue `0` (no lease)
   */
  lease?: Int64;
  /**
   * Return the key as it was before this put, in the answer's `prev_kv`.
   * @defaultValue `false`
   */
  prev_kv?: boolean;
}

/** The answer to a {@link PutRequest}. */
export interface PutResponse {
  /** Cluster and member of the answer; `revision` is the revision of this put. */
  header: ResponseHeader;
  /** The key before the put, when the request asked for `prev_kv` and the key existed; else null. */
  prev_kv: KeyValue | null;
}

/** KV.DeleteRange: delete one key, or every key in a range. */
export interface DeleteRangeRequest {
  /** The key to delete, or the first key of the range. */
  key: Bytes;
  /**
   * End of the half-open range [key, range_end), as in {@link RangeRequest.range_end}.
   * @defaultValue none: only `key` itself
   */
  range_end?: Bytes;
  /**
   * Return the deleted keys, in the answer's `prev_kvs`.
   * @defaultValue `false`
   */
  prev_kv?: boolean;
}

/** The answer to a {@link DeleteRangeRequest}. */
export interface DeleteRangeResponse {
  /** Cluster and member of the answer; `revision` is the store's revision after the delete. */
  header: ResponseHeader;
  /** Number of keys deleted (bigint). */
  deleted: bigint;
  /** The deleted keys as they were, when the request asked for `prev_kv`; else empty. */
  prev_kvs: KeyValue[];
}

/** One operation of a transaction branch. Exactly one field set. */
export interface RequestOp {
  /** A read. */
  request_range?: RangeRequest;
  /** A write. */
  request_put?: PutRequest;
  /** A delete. */
  request_delete_range?: DeleteRangeRequest;
  /** A nested transaction. */
  request_txn?: TxnRequest;
}

/** Exactly one field is non-null: the answer to the RequestOp at the same index. */
export interface ResponseOp {
  /** The answer to a `request_range`; else null. */
  response_range: RangeResponse | null;
  /** The answer to a `request_put`; else null. */
  response_put: PutResponse | null;
  /** The answer to a `request_delete_range`; else null. */
  response_delete_range: DeleteRangeResponse | null;
  /** The answer to a `request_txn`; else null. */
  response_txn: TxnResponse | null;
}

/**
 * A guard of a transaction, `<target of key> <result> <value>`: set the one value field that
 * matches `target`. A key that does not exist compares as 0 for every revision, version and lease
 * target; a VALUE guard on a key that does not exist never holds.
 */
export interface Compare {
  /** The comparison to make, a value of {@link CompareResult}. */
  result: ValueOf<typeof CompareResult>;
  /** Which field of the key to compare, a value of {@link CompareTarget}. */
  target: ValueOf<typeof CompareTarget>;
  /** The key to compare (or the first key of the range). */
  key: Bytes;
  /** The version to compare with, when `target` is VERSION. */
  version?: Int64;
  /** The create revision to compare with, when `target` is CREATE. */
  create_revision?: Int64;
  /** The mod revision to compare with, when `target` is MOD. */
  mod_revision?: Int64;
  /** The value to compare with, when `target` is VALUE. */
  value?: Bytes;
  /** The lease ID to compare with, when `target` is LEASE (0 for "no lease"). */
  lease?: Int64;
  /**
   * End of the half-open range [key, range_end): the guard holds only if it holds for every key in it.
   * @defaultValue none: only `key` itself
   */
  range_end?: Bytes;
}

/** KV.Txn: applied atomically at one revision; if every compare holds, `success` runs, else `failure`. */
export interface TxnRequest {
  /**
   * The guards; all must hold for `success` to run.
   * @defaultValue `[]` (`success` runs)
   */
  compare?: Compare[];
  /**
   * Operations run, in order, when every guard holds.
   * @defaultValue `[]`
   */
  success?: RequestOp[];
  /**
   * Operations run, in order, when some guard does not hold.
   * @defaultValue `[]`
   */
  failure?: RequestOp[];
}

/** The answer to a {@link TxnRequest}. */
export interface TxnResponse {
  /** Cluster and member of the answer; `revision` is the store's revision after the transaction. */
  header: ResponseHeader;
  /** True when every guard held and `success` ran; false when `failure` ran. */
  succeeded: boolean;
  /** One answer per operation of the branch that ran, in its order. */
  responses: ResponseOp[];
}

// ---- Watch

/** Starts a watch on a Watch stream. */
export interface WatchCreateRequest {
  /** The key to watch, or the first key of the range. */
  key: Bytes;
  /**
   * End of the half-open range [key, range_end) to watch, as in {@link RangeRequest.range_end}.
   * @defaultValue none: only `key` itself
   */
  range_end?: Bytes;
  /**
   * First revision to report. Starting at or below the current revision makes the server deliver
   * from a loop that runs every 100 ms.
   * @defaultValue `0` (the revision after the current one)
   */
  start_revision?: Int64;
  /**
   * Ask the server for event-less answers carrying its current revision while the watch is idle
   * (at an interval set on the server).
   * @defaultValue `false`
   */
  progress_notify?: boolean;
  /**
   * Kinds of event the server leaves out, values of {@link WatchFilter}.
   * @defaultValue `[]`
   */
  filters?: Array<ValueOf<typeof WatchFilter>>;
  /**
   * Send each event's `prev_kv`: the key as it was before the change.
   * @defaultValue `false`
   */
  prev_kv?: boolean;
  /**
   * The watch's ID on the stream, chosen by the client (etcd 3.4+); WatchStream always sets its own.
   * @defaultValue `0` (the server picks)
   */
  watch_id?: Int64;
  /**
   * Let the server split one revision's events over several answers when they are too large for one.
   * WatchStream never sets it.
   * @defaultValue `false`
   */
  fragment?: boolean;
}

/** One message from the client on a Watch stream. Exactly one field set. */
export interface WatchRequest {
  /** Start a watch. */
  create_request?: WatchCreateRequest;
  /** Stop the watch with this ID. */
  cancel_request?: { watch_id: Int64 };
  /** Ask for an event-less answer carrying the server's current revision (etcd 3.4+). */
  progress_request?: Record<string, never>;
}

/** One message from the server on a Watch stream. */
export interface WatchResponse {
  /** Cluster and member of the answer; `revision` is the store's revision when it was sent. */
  header: ResponseHeader;
  /** The watch this answer belongs to; -1n for answers that belong to none, such as answers to progress requests (bigint). */
  watch_id: bigint;
  /** True on the answer to a create request. */
  created: boolean;
  /** True when the watch has ended: canceled by the client, or by the server (see `compact_revision`, `cancel_reason`). */
  canceled: boolean;
  /**
   * Non-zero when the watch asked for revisions that compaction has removed: the store's compaction
   * revision, the earliest a new watch can start at (bigint). The watch is canceled.
   */
  compact_revision: bigint;
  /** Why the server canceled the watch; empty otherwise. */
  cancel_reason: string;
  /** True when more answers follow with the rest of this revision's events (only if the create asked for `fragment`). */
  fragment: boolean;
  /** The changes, in revision order; empty for created, canceled and progress answers. */
  events: Event[];
}

// ---- Lease

/** Lease.LeaseGrant: create a lease. */
export interface LeaseGrantRequest {
  /** Time to live in seconds; the server raises anything below its minimum (2 s with default election settings). */
  TTL: Int64;
  /**
   * The ID the lease is to have.
   * @defaultValue `0` (the server picks)
   */
  ID?: Int64;
}

/** The answer to a {@link LeaseGrantRequest}. */
export interface LeaseGrantResponse {
  /** Cluster, member and store revision of the answer. */
  header: ResponseHeader;
  /** ID of the new lease (bigint). */
  ID: bigint;
  /** The TTL granted, in seconds, after the server's minimum was applied (bigint). */
  TTL: bigint;
  /** An error text from the server; empty on success (etcd reports failures as a gRPC status instead). */
  error: string;
}

/** Lease.LeaseRevoke: end a lease now, deleting every key attached to it. */
export interface LeaseRevokeRequest {
  /** ID of the lease to revoke. */
  ID: Int64;
}

/** The answer to a {@link LeaseRevokeRequest}. */
export interface LeaseRevokeResponse {
  /** Cluster, member and store revision of the answer. */
  header: ResponseHeader;
}

/** One renewal on the LeaseKeepAlive stream. */
export interface LeaseKeepAliveRequest {
  /** ID of the lease to renew. */
  ID: Int64;
}

/** The answer to one renewal on the LeaseKeepAlive stream. */
export interface LeaseKeepAliveResponse {
  /** Cluster, member and store revision of the answer. */
  header: ResponseHeader;
  /** ID of the lease renewed (bigint). */
  ID: bigint;
  /** The renewed TTL in seconds (bigint); 0n means the lease no longer exists (not an error). */
  TTL: bigint;
}

/** Lease.LeaseTimeToLive: read a lease's remaining time. */
export interface LeaseTimeToLiveRequest {
  /** ID of the lease. */
  ID: Int64;
  /**
   * Also list the keys attached to the lease.
   * @defaultValue `false`
   */
  keys?: boolean;
}

/** The answer to a {@link LeaseTimeToLiveRequest}. */
export interface LeaseTimeToLiveResponse {
  /** Cluster, member and store revision of the answer. */
  header: ResponseHeader;
  /** ID of the lease (bigint). */
  ID: bigint;
  /** Seconds left (bigint); -1n when the lease does not exist. */
  TTL: bigint;
  /** The TTL the lease was granted with, in seconds (bigint). */
  grantedTTL: bigint;
  /** The keys attached to the lease, when the request asked for `keys`; else empty. */
  keys: Buffer[];
}

// ---- Cluster, Maintenance, Auth

/** Cluster.MemberList takes no arguments. */
export type MemberListRequest = Record<string, never>;

/** One member of the cluster. */
export interface Member {
  /** The member's ID (bigint). */
  ID: bigint;
  /** The member's name; empty for a member that was added but has not started yet. */
  name: string;
  /** URLs other members reach this member at. */
  peerURLs: string[];
  /** URLs clients reach this member at; empty for a member that has not started yet. */
  clientURLs: string[];
  /** True for a learner: a non-voting member that receives the log but is not part of the quorum. */
  isLearner: boolean;
}

/** The answer to Cluster.MemberList. */
export interface MemberListResponse {
  /** Cluster, member and store revision of the answer. */
  header: ResponseHeader;
  /** Every member of the cluster. */
  members: Member[];
}

/** Maintenance.Status takes no arguments. */
export type StatusRequest = Record<string, never>;

/** The answer to Maintenance.Status: the state of the member that answered. */
export interface StatusResponse {
  /** Cluster, member and store revision of the answer. */
  header: ResponseHeader;
  /** The member's etcd version, e.g. "3.5.17". */
  version: string;
  /** Size of the member's database file, in bytes (bigint). */
  dbSize: bigint;
  /** Member ID of the current leader, 0n when there is none (bigint). */
  leader: bigint;
  /** The raft index the member has committed (bigint). */
  raftIndex: bigint;
  /** The member's raft term (bigint). */
  raftTerm: bigint;
  /** The raft index the member has applied to its store (bigint). */
  raftAppliedIndex: bigint;
  /** Problems the member reports, such as raised alarms; empty when there are none. */
  errors: string[];
  /** Bytes of the database file actually in use; the rest is free space a defragmentation would return (bigint). */
  dbSizeInUse: bigint;
  /** True when the answering member is a learner. */
  isLearner: boolean;
}

/** Auth.Authenticate: exchange a user name and password for a token. */
export interface AuthenticateRequest {
  /** The user name. */
  name: string;
  /** The user's password. */
  password: string;
}

/** The answer to an {@link AuthenticateRequest}. */
export interface AuthenticateResponse {
  /** Cluster, member and store revision of the answer. */
  header: ResponseHeader;
  /** Sent as the "token" metadata of every later call. A secret: never logged. */
  token: string;
}
