/**
 * A Lua script, sent in full (EVAL, which also caches it on the server) the first time on each
 * connection, and by its SHA1 (EVALSHA) after; in full again if the server answers NOSCRIPT all the
 * same (SCRIPT FLUSH).
 */
import { createHash } from 'node:crypto';

/**
 * A Lua script for {@link RedisClient.evalScript}: sent in full with EVAL the first time on each
 * connection, by SHA1 with EVALSHA after.
 */
export class Script {
  /** The script's Lua source. */
  readonly lua: string;
  /** The SHA1 of the source, in lowercase hex: the name EVALSHA knows it by. */
  readonly sha: string;
  /** The number of KEYS the script takes: a script's keys are fixed by its code, so they are part of it. */
  readonly numKeys: number;
  #sharded: Script | undefined;

  constructor(lua: string, numKeys: number) {
    this.lua = lua;
    this.numKeys = numKeys;
    this.sha = createHash('sha1').update(lua).digest('hex');
  }

  /**
   * The script as {@link RedisCluster.evalScript} sends it: every `redis.call('PUBLISH', …)` made
   * `redis.call('SPUBLISH', …)`, sharded pub/sub, so a message goes to the subscribers of the slot's
   * own node and not to every node of the cluster. It has its own SHA. A script that publishes on a
   * cluster must keep its channel in the slot of its keys (one {hash tag}), as wirelock's do.
   */
  get sharded(): Script {
    if (this.#sharded === undefined) {
      const lua = this.lua.replace(/redis\.call\((['"])PUBLISH\1/g, "redis.call('SPUBLISH'");
      this.#sharded = lua === this.lua ? this : new Script(lua, this.numKeys);
    }
    return this.#sharded;
  }
}
