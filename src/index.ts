/**
 * wirelock: distributed locks, leader election and their clients, written from the wire up: RESP to
 * Redis over node:net/node:tls, and etcd's v3 gRPC API from the project's own .proto files. Start with
 * {@link RedisClient.connect} or {@link EtcdClient.connect}, then a locker ({@link RedisLocker},
 * {@link Redlock}, {@link EtcdLocker}) or an election ({@link RedisElection}, {@link EtcdElection}).
 *
 * @module wirelock
 */
export {
  WirelockError,
  LockTimeoutError,
  LockLostError,
  LockReleasedError,
  ClosedError,
  QuorumError,
  ReplicaError,
  RespError,
  ProtocolError,
  ConnectionError,
  TimeoutError,
  EtcdError,
  WatchCompactedError,
  SessionExpiredError,
} from './errors.js';
export type { ArgumentErrorCode, LockLostReason, QuorumNodeFailure, RedlockNodeFailure, RedlockNodeOutcome, WirelockErrorCode } from './errors.js';

export { RedisClient } from './resp/client.js';
export { RedisCluster } from './resp/cluster.js';
export type { RedisClusterOptions, ClusterNodeAddress, ClusterCommandOptions } from './resp/cluster.js';
export { keySlot } from './resp/slots.js';
export type { MessageListener } from './resp/subscriber.js';
export type { RedisOptions, ReconnectStrategy, SentinelAddress } from './resp/options.js';
export type { RespValue, CommandOptions } from './resp/connection.js';
export { encodeCommand } from './resp/encoder.js';
export type { RespArg } from './resp/encoder.js';
export { Script } from './resp/script.js';

export type { Lock, Locker, AcquireOptions, LockerOptions, RedisLockerOptions, ReplicaOptions } from './locks/types.js';
export { RedisLocker } from './locks/redis-locker.js';
export { RedisSemaphore } from './locks/redis-semaphore.js';
export { RedisRWLock } from './locks/redis-rwlock.js';
export type { SemaphoreOptions } from './locks/types.js';
export { Redlock } from './locks/redlock.js';
export type { RedlockOptions } from './locks/redlock.js';

export { EtcdClient } from './etcdrpc/client.js';
export type { EtcdOptions, TxnOptions, CallOptions as EtcdCallOptions } from './etcdrpc/client.js';
export { Watcher } from './etcdrpc/watch.js';
export type { WatchStream } from './etcdrpc/watch.js';
export type { KVClient, LeaseClient, ClusterClient, MaintenanceClient } from './etcdrpc/services.js';
export type { WatchOptions, WatchHandlers } from './etcdrpc/watch.js';
export { prefixEnd } from './etcdrpc/codec.js';
export { SortOrder, SortTarget, CompareResult, CompareTarget, EventType, WatchFilter } from './etcdrpc/types.js';
export type { ValueOf } from './etcdrpc/types.js';
export type {
  Bytes, Int64, ResponseHeader, KeyValue, Event as EtcdEvent, RangeRequest, RangeResponse, PutRequest, PutResponse,
  DeleteRangeRequest, DeleteRangeResponse, RequestOp, ResponseOp, Compare, TxnRequest, TxnResponse,
  WatchCreateRequest, WatchResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse,
  LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, Member, MemberListResponse, StatusResponse,
} from './etcdrpc/types.js';
export { Session } from './locks/etcd-session.js';
export type { SessionOptions } from './locks/etcd-session.js';
export { Mutex } from './locks/etcd-mutex.js';
export type { MutexLockOptions } from './locks/etcd-mutex.js';
export { EtcdLocker, ownerCompare } from './locks/etcd-locker.js';
export { EtcdSemaphore } from './locks/etcd-semaphore.js';
export { EtcdRWLock } from './locks/etcd-rwlock.js';

export type { Election, Leader, Leadership, CampaignOptions, ObserveOptions } from './locks/election.js';
export type { MetricsSnapshot } from './metrics.js';
export { EtcdElection } from './locks/etcd-election.js';
export type { EtcdElectionOptions } from './locks/etcd-election.js';
export { RedisElection } from './locks/redis-election.js';
export type { RedisElectionOptions } from './locks/redis-election.js';
