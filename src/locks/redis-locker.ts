/**
 * RedisLocker: a lock on one Redis server.
 *
 * acquire  = EVALSHA ACQUIRE  (SET key token NX PX ttl; on success INCR the fence; else return PTTL)
 * release  = EVALSHA RELEASE  (compare-and-delete, then PUBLISH on the key's release channel)
 * extend   = EVALSHA EXTEND   (compare-and-pexpire)
 *
 * Waiting is never blind polling. A waiter subscribes to the key's release channel and tries again
 * when a release is announced; with no announcement it tries again when the holder's PTTL runs out
 * (plus a little jitter), so a crashed holder's lock is taken at its expiry. A lost message costs at
 * most one PTTL.
 *
 * Timing uses performance.now() only: validUntil = (when the SET was sent) + ttl - drift.
 */
import { RedisClient } from '../resp/client.js';
import { ConnectionError, LockLostError, LockTimeoutError, RespError, TimeoutError } from '../errors.js';
import { channels } from '../diagnostics.js';
import { jitter, onAbort, remaining, sleep } from '../abort.js';
import { BaseLocker } from './base-locker.js';
import { HeldLock, type LockOps } from './held-lock.js';
import { DEFAULT_TTL_MS, checkTtl, driftMs, resolveAcquire, type ResolvedAcquire } from './options.js';
import { ACQUIRE, EXTEND, RELEASE, redisKeys, type RedisKeys } from './redis-scripts.js';
import { randomToken } from './token.js';
import type { AcquireOptions, Lock, LockerOptions } from './types.js';

type Attempt = { lock: HeldLock; pttl?: undefined } | { lock?: undefined; pttl: number };

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

  async tryAcquire(key: string, opts?: AcquireOptions): Promise<Lock | null> {
    const o = resolveAcquire(key, opts, this.#ttlMs);
    this.checkOpen();
    const start = performance.now();
    const result = await this.#attempt(key, redisKeys(this.#prefix, key), o, o.signal);
    return result.lock ? this.#granted(result.lock, start, 1) : null;
  }

  async acquire(key: string, opts?: AcquireOptions): Promise<Lock> {
    const o = resolveAcquire(key, opts, this.#ttlMs);
    this.checkOpen();
    const keys = redisKeys(this.#prefix, key);
    const start = performance.now();

    // Uncontended fast path: one round trip, nothing to set up. (A pending close() is checked in #attempt.)
    let first: Attempt | undefined;
    if (o.waitTimeoutMs === Infinity && !o.signal) {
      try {
        first = await this.#attempt(key, keys, o, undefined);
        if (first.lock) return this.#granted(first.lock, start, 1);
      } catch (err) {
        if (!isTransient(err)) throw err;
        first = undefined;
      }
    }
    return this.#wait(key, keys, o, start, first);
  }

  /** The slow path: subscribe to the release channel, then attempt on each release or expiry. */
  async #wait(key: string, keys: RedisKeys, o: ResolvedAcquire, start: number, first: Attempt | undefined): Promise<Lock> {
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
    const onRelease = (): void => {
      woken = true;
      wake?.();
    };
    try {
      for (let attempts = 1; ; attempts++) {
        let pttl: number;
        try {
          // The fast path's failed attempt counts as this loop's first: go straight to subscribing.
          const result = first ?? (await this.#attempt(key, keys, o, signal));
          first = undefined;
          if (result.lock) return this.#granted(result.lock, start, attempts);
          pttl = result.pttl;
          failures = 0;
        } catch (err) {
          if (signal.aborted) throw signal.reason;
          if (!isTransient(err)) throw err;
          // The server is unreachable or slow: back off (capped, with jitter) and try again until the deadline.
          lastError = err;
          await sleep(Math.min(50 * 2 ** failures++, 1000) + jitter(50), signal);
          continue;
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
        if (channels.lockWait.hasSubscribers) channels.lockWait.publish({ backend: 'redis', key, pttl, attempts });
        // pttl -1: the key has no expiry (written by something other than a lock); look again after a TTL.
        const delay = pttl >= 0 ? pttl + 1 + jitter(5) : o.ttlMs;
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
  async #attempt(key: string, keys: RedisKeys, o: ResolvedAcquire, signal: AbortSignal | undefined): Promise<Attempt> {
    const token = randomToken();
    const sentAt = performance.now();
    let reply: unknown;
    try {
      reply = await this.#client.evalScript(ACQUIRE, [keys.lock, keys.fence], [token, o.ttlMs], { signal });
    } catch (err) {
      if (!(err instanceof RespError)) this.#cleanup(keys, token, o.ttlMs);
      throw err;
    }
    const [granted, n] = reply as [number, number];
    if (granted !== 1) return { pttl: n };
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
   * An attempt that timed out, lost its connection, or was abandoned may still have been applied
   * (a paused server applies it on resume). Release that token on a best-effort basis while it could
   * still be alive; the compare-and-delete can never remove another holder's lock.
   */
  #cleanup(keys: RedisKeys, token: string, ttlMs: number): void {
    const until = performance.now() + ttlMs;
    const run = async (): Promise<void> => {
      for (let i = 0; performance.now() < until; i++) {
        try {
          await this.#client.evalScript(RELEASE, [keys.lock], [token, keys.channel], {
            timeoutMs: Math.max(1, Math.min(this.#client.commandTimeoutMs, remaining(until))),
          });
          return;
        } catch (err) {
          if (err instanceof RespError) return;
          await sleep(Math.min(50 * 2 ** i, 1000));
        }
      }
    };
    void run();
  }

  // LockOps, used by the HeldLocks this locker hands out.

  async extend(lock: HeldLock, ttlMs: number): Promise<number> {
    const keys = redisKeys(this.#prefix, lock.key);
    const sentAt = performance.now();
    const result = await this.#client.evalScript(EXTEND, [keys.lock], [lock.token, Math.ceil(ttlMs)]);
    if (result === 1) return sentAt + ttlMs - driftMs(ttlMs);
    throw new LockLostError(lock.key, result === 0 ? 'expired' : 'stolen');
  }

  async release(lock: HeldLock): Promise<void> {
    const keys = redisKeys(this.#prefix, lock.key);
    await this.#client.evalScript(RELEASE, [keys.lock], [lock.token, keys.channel]);
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
