/**
 * RedisSemaphore: a counting semaphore on one Redis server. A key admits up to `limit` holders at
 * once; each holder has a permit, which is a Lock like any other (token, fence, signal, extension).
 *
 * acquire  = EVALSHA SEMAPHORE_ACQUIRE  drop expired permits and lapsed waiters; with F permits free,
 *                                        grant if fewer than F wait ahead of us (ZADD token -> expiry
 *                                        by the server's TIME, and the next fence), else queue
 * release  = EVALSHA SEMAPHORE_RELEASE  ZREM our token (a release can only ever remove its own
 *                                        permit), then PUBLISH the tokens of the waiters now admitted
 * extend   = EVALSHA SEMAPHORE_EXTEND   move our permit's expiry to TIME + ttl, if it is still live
 *
 * Everything else is RedisLocker's, unchanged: the fair queue with its lapsing places, the wake-up by a
 * release message that names who may go (so a release costs one command from each waiter it admits
 * and none from the others), the fallback wait until the soonest permit expires, the clean-up of an
 * attempt that may have landed, and the fence counter, which here numbers every permit of the key in
 * grant order. The scripts live in redis-scripts.ts.
 *
 * The limit is each caller's: the scripts count against the limit the acquirer passes. Every client
 * of one key must use the same limit; a smaller one only ever refuses more.
 */
import { invalidType } from '../errors.js';
import type { RedisClient } from '../resp/client.js';
import type { RedisCluster } from '../resp/cluster.js';
import { RedisLocker, queueKind, type QueueKind, type RedisLockerInternalOptions } from './redis-locker.js';
import { SEMAPHORE_ACQUIRE, SEMAPHORE_EXTEND, SEMAPHORE_RELEASE, semaphoreKeys } from './redis-scripts.js';
import { checkLimit } from './options.js';
import type { ReplicaOptions, SemaphoreOptions } from './types.js';

/**
 * A counting semaphore on one Redis server: a key admits up to `limit` holders at once, served in
 * arrival order and woken by pub/sub, never by polling. Each permit is a {@link Lock} with its own
 * token and fence (strictly increasing per key across all permits); permits expire by the server's
 * clock, and a release removes only its own permit. Closing it does not close the client.
 */
export class RedisSemaphore extends RedisLocker {
  /** How many holders one key admits. */
  readonly limit: number;

  constructor(client: RedisClient | RedisCluster, opts: SemaphoreOptions & ReplicaOptions) {
    if (opts === null || typeof opts !== 'object') throw invalidType('RedisSemaphore needs options with a limit');
    const limit = checkLimit(opts.limit);
    const kind: QueueKind = {
      name: 'RedisSemaphore',
      keys: semaphoreKeys,
      acquire: SEMAPHORE_ACQUIRE,
      release: SEMAPHORE_RELEASE,
      extend: SEMAPHORE_EXTEND,
      extraArgs: [limit],
      admits: (message, token) => message.split(' ').includes(token),
    };
    super(client, { ...opts, [queueKind]: kind } as RedisLockerInternalOptions);
    this.limit = limit;
  }
}
