/**
 * A Lua script sent by its SHA1 (EVALSHA); when the server does not know it yet (NOSCRIPT: a fresh or
 * restarted server, or SCRIPT FLUSH), it is sent once in full with EVAL, which also caches it.
 */
import { createHash } from 'node:crypto';

/**
 * A Lua script for {@link RedisClient.evalScript}: sent by SHA1 with EVALSHA, and in full with EVAL
 * only when the server answers NOSCRIPT.
 */
export class Script {
  /** The script's Lua source. */
  readonly lua: string;
  /** The SHA1 of the source, in lowercase hex: the name EVALSHA knows it by. */
  readonly sha: string;
  /** The number of KEYS the script takes: a script's keys are fixed by its code, so they are part of it. */
  readonly numKeys: number;

  constructor(lua: string, numKeys: number) {
    this.lua = lua;
    this.numKeys = numKeys;
    this.sha = createHash('sha1').update(lua).digest('hex');
  }
}
