/**
 * What the Redis lock primitives need from the server side, met by a single server (RedisClient,
 * Sentinel-following or not) and by a Redis Cluster (RedisCluster) alike. The primitives are written
 * against this, so one implementation of each runs on every topology.
 */
import type { CommandOptions, RespValue } from './connection.js';
import type { RespArg } from './encoder.js';
import type { Script } from './script.js';
import type { MessageListener } from './subscriber.js';
import type { NodeAddress } from './sentinel.js';
import { RedisClient } from './client.js';
import { RedisCluster } from './cluster.js';

/** A RedisClient or a RedisCluster, as the lock primitives use them. */
export interface RedisBackend {
  readonly commandTimeoutMs: number;
  send(args: RespArg[], opts?: CommandOptions): Promise<RespValue>;
  evalScript(script: Script, keys: RespArg[], args: RespArg[], opts?: CommandOptions): Promise<RespValue>;
  evalScriptThen(script: Script, keys: RespArg[], args: RespArg[], then: RespArg[], opts: CommandOptions | undefined, thenTimeoutMs: number): Promise<{ reply: RespValue; then: Promise<RespValue> }>;
  /** PUBLISH on a single server, SPUBLISH (to the channel's slot) on a cluster. */
  publish(channel: string, message: RespArg): Promise<RespValue>;
  subscribe(channel: string, listener: MessageListener, signal?: AbortSignal): Promise<() => void>;
  onMasterChange(listener: (to: NodeAddress) => void): () => void;
}

/** Whether `x` is a RedisClient or a RedisCluster. */
export function isRedisBackend(x: unknown): x is RedisClient | RedisCluster {
  return x instanceof RedisClient || x instanceof RedisCluster;
}
