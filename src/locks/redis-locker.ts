/**
 * RedisLocker: a lock on one Redis server, with a fair queue of waiters.
 *
 * acquire  = EVALSHA QUEUE_ACQUIRE  SET key token NX PX ttl if the queue is empty or we are its head;
 *                                    on success INCR the fence, else join the queue and return the PTTL
 * release  = EVALSHA QUEUE_RELEASE  compare-and-delete, then PUBLISH the next waiter's token
 * extend   = EVALSHA EXTEND         compare-and-pexpire
 *
 * Waiting is never blind polling. A waiter subscribes to the key's release channel; a release names
 * the head of the queue, and only that waiter tries again, so a handoff costs two commands however
 * many wait. With no message a waiter tries again when the holder's PTTL runs out (plus a little
 * jitter), so a crashed holder's lock is taken at its expiry; a lost message costs at most one PTTL.
 * A waiter refreshes its place every ttl/3, so a crashed waiter holds up the queue for at most one ttl.
 *
 * Timing uses performance.now() only: validUntil = (when the SET was sent) + ttl - drift.
 */
import { RedisClient } from '../resp/client.js';
import { ConnectionError, LockLostError, LockTimeoutError, RespError, TimeoutError } from '../errors.js';
import { channels } from '../diagnostics.js';
import { MAX_TIMER_MS, jitter, onAbort, remaining, sleep } from '../abort.js';
import { BaseLocker } from './base-locker.js';
import { HeldLock, type LockOps } from './held-lock.js';
import { DEFAULT_TTL_MS, checkTtl, driftMs, resolveAcquire, type ResolvedAcquire } from './options.js';
import { EXTEND, QUEUE_ACQUIRE, QUEUE_RELEASE, redisKeys, type RedisKeys } from './redis-scripts.js';
import { randomToken } from './token.js';
import type { AcquireOptions, Lock, LockerOptions } from './types.js';

/** Not granted: the holder's PTTL (-2: free, but another waiter's turn) and ms until the head's place lapses. */
type Attempt = { lock: HeldLock; pttl?: undefined; headLeft?: undefined } | { lock?: undefined; pttl: number; headLeft: number };

export class RedisLocker extends BaseLocker implements LockOps {
  readonly #client: RedisClient;
  readonly #prefix: string;
  readonly #ttlMs: number;

  constructor(client: RedisClient, opts: LockerOptions = {}) {
    super();
    if (!(client instanceof RedisClient)) throw new TypeError('RedisLocker needs a RedisClient');
    this.#client = client;
    this.#prefix = checkPrefix(opts.prefix ?? 'wirelock:');
    this.#ttlMs = checkTtl('ttlMs', opts.ttlMs ?? DEFAULT_TTL_MS);
  }

  /** One attempt that does not join the queue: null if the lock is held, or free but promised to a waiter. */
  async tryAcquire(key: string, opts?: AcquireOptions): Promise<Lock | null> {
    const o = resolveAcquire(key, opts, this.#ttlMs);
    this.checkOpen();
    const start = performance.now();
    const result = await this.#attempt(key, redisKeys(this.#prefix, key), randomToken(), o, false, o.signal);
    return result.lock ? this.#granted(result.lock, start, 1) : null;
  }

  async acquire(key: string, opts?: AcquireOptions): Promise<Lock> {
    const o = resolveAcquire(key, opts, this.#ttlMs);
    this.checkOpen();
    const keys = redisKeys(this.#prefix, key);
    const start = performance.now();
    let token = randomToken();

    // Uncontended fast path: one round trip, nothing to set up. It also serves waitTimeoutMs: 0, which
    // means one attempt (a deadline of 0 would otherwise cancel that attempt while on the wire). Any
    // other deadline bounds the first attempt too, so #wait makes it.
    let first: Attempt | undefined;
    if (o.waitTimeoutMs === 0 || (o.waitTimeoutMs === Infinity && !o.signal)) {
      try {
        first = await this.#attempt(key, keys, token, o, o.waitTimeoutMs !== 0, o.signal);
        if (first.lock) return this.#granted(first.lock, start, 1);
      } catch (err) {
        if (!isTransient(err) || o.waitTimeoutMs === 0) throw err;
        token = randomToken(); // the failed attempt is being cleaned up under the old token
      }
      if (o.waitTimeoutMs === 0) throw new LockTimeoutError(key, performance.now() - start);
    }
    return this.#wait(key, keys, token, o, start, first);
  }

  /** The slow path: in the queue, subscribed to the release channel, attempting when it is our turn. */
  async #wait(key: string, keys: RedisKeys, token: string, o: ResolvedAcquire, start: number, first: Attempt | undefined): Promise<Lock> {
    const link = this.linkSignals(o.signal);
    const signal = link.signal;
    let failures = 0;
    let lastError: unknown; // the last transient failure, reported as the timeout's cause
    const deadlineTimer =
      o.waitTimeoutMs === Infinity
        ? undefined
        : setTimeout(() => {
            const waited = performance.now() - start;
            link.abort(new LockTimeoutError(key, waited, lastError === undefined ? undefined : { cause: lastError }));
          }, o.waitTimeoutMs);

    let unsubscribe: (() => void) | undefined;
    let subscribed = false;
    let woken = false;
    let wake: (() => void) | undefined;
    // A release names the next waiter; '' means no one was queued; null means "messages may have been missed".
    const onRelease = (message: string | Buffer | null): void => {
      if (message !== null && message.length > 0 && String(message) !== token) return;
      woken = true;
      wake?.();
    };
    let granted = false;
    try {
      for (let attempts = 1; ; attempts++) {
        let result: Attempt;
        try {
          // The fast path's failed attempt counts as this loop's first: go straight to subscribing.
          result = first ?? (await this.#attempt(key, keys, token, o, true, signal));
          first = undefined;
          failures = 0;
        } catch (err) {
          if (signal.aborted) throw signal.reason;
          if (!isTransient(err)) throw err;
          // The server is unreachable or slow: back off (capped, with jitter) and try again until the deadline.
          lastError = err;
          token = randomToken(); // the failed attempt is being cleaned up under the old token
          await sleep(Math.min(50 * 2 ** failures++, 1000) + jitter(50), signal);
          continue;
        }
        if (result.lock) {
          granted = true;
          return this.#granted(result.lock, start, attempts);
        }
        if (!subscribed) {
          subscribed = true;
          try {
            unsubscribe = await this.#client.subscribe(keys.channel, onRelease, signal);
          } catch (err) {
            if (signal.aborted) throw signal.reason;
            // No pub/sub (down, or not permitted by an ACL): wait on PTTLs alone.
            lastError = err;
          }
          continue; // a release between our attempt and the subscription would be missed: look again now
        }
        if (woken) {
          woken = false;
          continue;
        }
        const { pttl, headLeft } = result;
        if (channels.lockWait.hasSubscribers) channels.lockWait.publish({ backend: 'redis', key, pttl, headLeft, attempts });
        // Until the holder's lease ends (or the head's place lapses, if the lock is free but promised),
        // and at least every ttl/3 to keep our own place. pttl -1: a key with no expiry, not a lock's.
        const until = pttl >= 0 ? pttl : pttl === -2 && headLeft >= 0 ? headLeft : o.ttlMs;
        const delay = Math.min(until + 1 + jitter(5), o.ttlMs / 3, MAX_TIMER_MS);
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(done, delay);
          const off = onAbort(signal, (reason) => (clearTimeout(timer), (wake = undefined), reject(reason)));
          function done(): void {
            clearTimeout(timer);
            off();
            wake = undefined;
            resolve();
          }
          wake = done;
        });
        woken = false;
      }
    } finally {
      clearTimeout(deadlineTimer);
      link.dispose();
      unsubscribe?.();
      // Leave the queue (and undo an attempt still in flight, should it land): the next waiter moves up.
      if (!granted) this.#cleanup(keys, token, o.ttlMs);
    }
  }

  #granted(lock: HeldLock, start: number, attempts: number): HeldLock {
    if (channels.lockAcquire.hasSubscribers) {
      channels.lockAcquire.publish({
        backend: 'redis',
        key: lock.key,
        token: lock.token,
        fence: lock.fence,
        validUntil: lock.validUntil,
        waitedMs: performance.now() - start,
        attempts,
      });
    }
    return lock;
  }

  /** One acquire attempt. A failure that may have left our SET applied is cleaned up in the background. */
  async #attempt(
    key: string,
    keys: RedisKeys,
    token: string,
    o: ResolvedAcquire,
    queue: boolean,
    signal: AbortSignal | undefined,
  ): Promise<Attempt> {
    const sentAt = performance.now();
    let reply: unknown;
    try {
      reply = await this.#client.evalScript(
        QUEUE_ACQUIRE,
        [keys.lock, keys.fence, keys.queue, keys.queueExpiry],
        [token, Math.ceil(o.ttlMs), queue ? Math.ceil(o.ttlMs) : 0, keys.channel],
        { signal },
      );
    } catch (err) {
      if (!(err instanceof RespError)) this.#cleanup(keys, token, o.ttlMs);
      throw err;
    }
    const [granted, n, headLeft] = reply as [number, number, number];
    if (granted !== 1) return { pttl: n, headLeft };
    const lock = new HeldLock({
      backend: 'redis',
      key,
      token,
      fence: BigInt(n),
      validUntil: sentAt + o.ttlMs - driftMs(o.ttlMs),
      ttlMs: o.ttlMs,
      autoExtend: o.autoExtend,
      ops: this,
      onEnd: this.forget,
    });
    if (this.closed) {
      // close() ran while our SET was in flight: do not hand out a lock from a closed locker.
      await lock.release().catch(() => {});
      throw this.closing.signal.reason;
    }
    this.track(lock);
    return { lock };
  }

  /**
   * Takes `token` out of play: leaves the queue, and deletes the lock if an attempt under this token
   * landed after all (an attempt that timed out, lost its connection or was abandoned may still be
   * applied: a paused server applies it on resume). Best effort, retried while the token could still
   * matter; the compare-and-delete can never remove another holder's lock.
   */
  #cleanup(keys: RedisKeys, token: string, ttlMs: number): void {
    const until = performance.now() + ttlMs;
    const run = async (): Promise<void> => {
      for (let i = 0; performance.now() < until; i++) {
        try {
          await this.#release(keys, token, Math.max(1, Math.min(this.#client.commandTimeoutMs, remaining(until))));
          return;
        } catch (err) {
          if (err instanceof RespError) return;
          await sleep(Math.min(50 * 2 ** i, 1000), undefined, true);
        }
      }
    };
    void run();
  }

  #release(keys: RedisKeys, token: string, timeoutMs?: number): Promise<unknown> {
    return this.#client.evalScript(
      QUEUE_RELEASE,
      [keys.lock, keys.fence, keys.queue, keys.queueExpiry],
      [token, keys.channel],
      timeoutMs === undefined ? undefined : { timeoutMs },
    );
  }

  // LockOps, used by the HeldLocks this locker hands out.

  async extend(lock: HeldLock, ttlMs: number, signal?: AbortSignal): Promise<number> {
    const keys = redisKeys(this.#prefix, lock.key);
    const sentAt = performance.now();
    const result = await this.#client.evalScript(EXTEND, [keys.lock], [lock.token, Math.ceil(ttlMs)], { signal });
    if (result === 1) return sentAt + ttlMs - driftMs(ttlMs);
    throw new LockLostError(lock.key, result === 0 ? 'expired' : 'stolen');
  }

  async release(lock: HeldLock): Promise<void> {
    await this.#release(redisKeys(this.#prefix, lock.key), lock.token);
  }
}

export function checkPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string') throw new TypeError('prefix must be a string');
  if (/[{}]/.test(prefix)) throw new TypeError('prefix must not contain { or } (the key name is the hash tag)');
  return prefix;
}

/** Errors worth retrying while waiting: the server may come back. Error replies are not. */
export function isTransient(err: unknown): boolean {
  return err instanceof ConnectionError || err instanceof TimeoutError;
}
