/**
 * The Lua scripts of the Redis locks (RedisLocker and Redlock use the same ones, node by node).
 * Each runs atomically on the server, so a check and the write it guards cannot be split by another client.
 *
 * Keys, for a lock named K under prefix P (the {…} hash tag keeps all of them in one cluster slot):
 *   P{K}          the lock: value = the holder's random token, with a PX expiry
 *   P{K}:fence    the fencing counter: INCRed on every grant, never expires, never decreases
 *   P{K}:release  the pub/sub channel a release is announced on (waiters subscribe to it)
 */
import { Script } from '../resp/script.js';

/**
 * KEYS[1] lock, KEYS[2] fence counter; ARGV[1] token, ARGV[2] ttl ms.
 * Granted: {1, fence}. Held by someone else: {0, the holder's remaining PTTL} so the waiter knows how long
 * the lock can last at most, without a second round trip.
 */
export const ACQUIRE = new Script(
  `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('INCR', KEYS[2])}
end
return {0, redis.call('PTTL', KEYS[1])}`,
  2,
);

/**
 * KEYS[1] lock; ARGV[1] token, ARGV[2] release channel.
 * Deletes the lock only if it still holds our token (never another holder's), then wakes the waiters.
 * 1 = released, 0 = it was not ours (expired, or taken over).
 */
export const RELEASE = new Script(
  `if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[1])
  return 1
end
return 0`,
  1,
);

/**
 * KEYS[1] lock; ARGV[1] token, ARGV[2] ttl ms.
 * 1 = extended; 0 = the key is gone (expired); -1 = someone else holds it now (stolen).
 */
export const EXTEND = new Script(
  `local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return -1 end
return 0`,
  1,
);

export interface RedisKeys {
  lock: string;
  fence: string;
  channel: string;
}

export function redisKeys(prefix: string, key: string): RedisKeys {
  const lock = `${prefix}{${key}}`;
  return { lock, fence: `${lock}:fence`, channel: `${lock}:release` };
}
