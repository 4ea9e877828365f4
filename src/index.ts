export {
  WirelockError,
  LockTimeoutError,
  LockLostError,
  LockReleasedError,
  ClosedError,
  QuorumError,
  RespError,
  ProtocolError,
  ConnectionError,
  TimeoutError,
  EtcdError,
} from './errors.js';
export type { LockLostReason, QuorumNodeFailure } from './errors.js';

export { RedisClient } from './resp/client.js';
export type { RedisOptions, ReconnectStrategy } from './resp/options.js';
export type { RespValue, CommandOptions } from './resp/connection.js';
export { encodeCommand } from './resp/encoder.js';
export type { RespArg } from './resp/encoder.js';
export { Script } from './resp/script.js';

export type { Lock, Locker, AcquireOptions, LockerOptions } from './locks/types.js';
export { RedisLocker } from './locks/redis-locker.js';
export { Redlock } from './locks/redlock.js';
export type { RedlockOptions, RedlockNodeFailure, RedlockNodeOutcome } from './locks/redlock.js';
