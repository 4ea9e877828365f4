/**
 * RedisLocker: a lock on one Redis server, with a fair queue of waiters.
 *
 * acquire  = EVALSHA QUEUE_ACQUIRE  SET key token NX PX ttl if the queue is empty or we are its head;
 *                                    on success the next fence, else join the queue and return the PTTL
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
 *
 * On a Redis Cluster (RedisCluster) the same scripts run on the master of the key's slot: every key of
 * a lock shares its {hash tag}, and the release message goes out with SPUBLISH on the slot's node.
 *
 * On a Sentinel-managed master, a failover the client sees (a `+switch-master`, or a READONLY
 * reply), and on a cluster a change in its set of masters, makes every held lock be checked on the
 * new master at once, by its extend script: one that is not there (replication had not carried it
 * over) or not ours aborts with LockLostError('failover'), before its next renewal would have found out.
 */
import type { RedisClient } from '../resp/client.js';
import type { RedisCluster } from '../resp/cluster.js';
import { isRedisBackend, type RedisBackend } from '../resp/backend.js';
import { isTransientRedisError } from '../resp/transient.js';
import { LockLostError, LockTimeoutError, ReplicaError, RespError, invalidType, outOfRange } from '../errors.js';
import { lockChannels } from '../diagnostics.js';
import { MAX_TIMER_MS, jitter, remaining } from '../abort.js';
import { BaseLocker } from './base-locker.js';
import { HeldLock, type LockOps } from './held-lock.js';
import { DEFAULT_TTL_MS, checkPrefix, checkTtl, driftMs, resolveAcquire, type ResolvedAcquire } from './options.js';
import type { Script } from '../resp/script.js';
import { EXTEND, EXTEND_WITH_RECORD, QUEUE_ACQUIRE, QUEUE_RELEASE, queueKeys, redisKeys, type RedisKeys } from './redis-scripts.js';
import { randomToken } from './token.js';
import type { RespValue } from '../resp/connection.js';
import type { AcquireOptions, Lock, RedisLockerOptions } from './types.js';
import { gaveUp, retryInBackground, type Wait } from './waiting.js';
import { noop } from '../abort.js';

/** Not granted: the holder's PTTL (-2: free, but another waiter's turn) and ms until the head's place lapses. */
type Attempt = { lock: HeldLock; pttl?: undefined; headLeft?: undefined } | { lock?: undefined; pttl: number; headLeft: number };

/**
 * For primitives built on this lock (RedisElection), not part of the public options: the key of a
 * record that lives exactly as long as the lock (each extension extends both, in one script).
 */
export const lockRecord: unique symbol = Symbol('wirelock.lockRecord');

/**
 * What a primitive on RedisLocker's queue does differently from the lock (RedisSemaphore): its keys,
 * its three scripts, the arguments they take after the lock's own, and which release messages admit
 * a waiter. The waiting, the clean-up and the held locks' life are the lock's.
 */
export interface QueueKind {
  /** For error messages: the class the user made. */
  name: string;
  keys(prefix: string, key: string): RedisKeys;
  /** KEYS lock, fence, queue, queue expiries; ARGV token, ttl, queue ttl, channel, ...extraArgs. Replies as QUEUE_ACQUIRE. */
  acquire: Script;
  /** KEYS as acquire; ARGV token, channel, ...extraArgs. */
  release: Script;
  /** KEYS lock; ARGV token, ttl. 1 extended, 0 expired, -1 stolen. */
  extend: Script;
  extraArgs: ReadonlyArray<string | number>;
  /** Whether a (non-empty) release message admits the waiter holding `token`. */
  admits(message: string, token: string): boolean;
}

/** For primitives built on this lock's queue (RedisSemaphore), not part of the public options. */
export const queueKind: unique symbol = Symbol('wirelock.queueKind');

const LOCK: QueueKind = {
  name: 'RedisLocker',
  keys: redisKeys,
  acquire: QUEUE_ACQUIRE,
  release: QUEUE_RELEASE,
  extend: EXTEND,
  extraArgs: [],
  admits: (message, token) => message === token,
};

/** RedisLockerOptions plus the internal {@link lockRecord} and {@link queueKind} hooks. */
export interface RedisLockerInternalOptions extends RedisLockerOptions {
  [lockRecord]?: (keys: RedisKeys) => string;
  [queueKind]?: QueueKind;
}

/** One acquire's identity on the server: the key's names and the token it queues and locks under. */
interface Claim {
  key: string;
  keys: RedisKeys;
  token: string;
}

/**
 * A lock on one Redis server, with a fair (first come, first served) queue of waiters who are woken
 * by pub/sub when the lock is released, not by polling. The fence comes from a per-key counter.
 * Closing the locker does not close the RedisClient.
 */
export class RedisLocker extends BaseLocker {
  readonly #client: RedisBackend;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #record: ((keys: RedisKeys) => string) | undefined;
  readonly #kind: QueueKind;
  /** Replicas that must acknowledge each grant and extension (WAIT), and how long WAIT waits. */
  readonly #minReplicas: number;
  readonly #replicaTimeoutMs: number;
  /** Stops listening for the client's master changes (Redis Sentinel). */
  readonly #offMasterChange: () => void;
  /** How the HeldLocks this locker hands out extend and release themselves (not public: see LockOps). */
  readonly #ops: LockOps = {
    extend: (lock, ttlMs, signal) => this.#extend(lock, ttlMs, signal),
    release: async (lock) => void (await this.#release(this.#kind.keys(this.#prefix, lock.key), lock.token)),
  };

  constructor(client: RedisClient | RedisCluster, opts: RedisLockerOptions = {}) {
    super('redis');
    if (opts === null || typeof opts !== 'object') throw invalidType('locker options must be an object');
    this.#kind = (opts as RedisLockerInternalOptions)[queueKind] ?? LOCK;
    if (!isRedisBackend(client)) throw invalidType(`${this.#kind.name} needs a RedisClient or a RedisCluster`);
    this.#client = client;
    this.#record = (opts as RedisLockerInternalOptions)[lockRecord];
    this.#prefix = checkPrefix(opts.prefix ?? 'wirelock:');
    this.#ttlMs = checkTtl('ttlMs', opts.ttlMs ?? DEFAULT_TTL_MS);
    const { minReplicas = 0, replicaTimeoutMs = 100 } = opts;
    if (!Number.isInteger(minReplicas) || minReplicas < 0) throw outOfRange(`minReplicas must be an integer >= 0, got ${String(minReplicas)}`);
    if (typeof replicaTimeoutMs !== 'number' || !(replicaTimeoutMs > 0) || !Number.isFinite(replicaTimeoutMs)) {
      throw outOfRange(`replicaTimeoutMs must be a finite number > 0, got ${String(replicaTimeoutMs)}`);
    }
    this.#minReplicas = minReplicas;
    this.#replicaTimeoutMs = Math.ceil(replicaTimeoutMs);
    this.#offMasterChange = client.onMasterChange(() => this.#checkAfterFailover());
  }

  /** Releases every lock it holds, and stops following the client's failovers. Does not close the client. */
  override async close(): Promise<void> {
    this.#offMasterChange();
    await super.close();
  }

  /**
   * The master changed: is each held lock on the new one? Its extend script answers: 1 kept; 0 (not
   * there) or -1 (another token) is the loss, 'failover'. It sets the key's expiry to what is left of
   * the lock's validity, never more, so the check extends nothing the holder did not ask for. A check
   * that cannot get through is retried until the lock's validUntil; then the lock ends by its own timer.
   */
  #checkAfterFailover(): void {
    for (const lock of [...this.held]) {
      const step = async (): Promise<boolean> => {
        const left = lock.validUntil - performance.now();
        if (!lock.held || left < 1) return true;
        const { reply } = await this.#extendScript(lock, left, undefined);
        if (reply !== 1) lock.lose('failover');
        return true;
      };
      void retryInBackground(() => step().catch((err: unknown) => !isTransientRedisError(err)), { until: lock.validUntil }).catch(noop);
    }
  }
  /** One attempt that does not join the queue: null if the lock is held, or free but promised to a waiter. */
  async tryAcquire(key: string, opts?: AcquireOptions): Promise<Lock | null> {
    const o = resolveAcquire(key, opts, this.#ttlMs);
    this.checkOpen();
    const start = performance.now();
    const result = await this.#attempt(this.#claim(key), o, false, o.signal);
    return result.lock ? this.#granted(this.handOut(result.lock), start, 1) : null;
  }

  /**
   * Waits in the key's queue until the lock is held. Rejects with LockTimeoutError after
   * `waitTimeoutMs`, with `signal.reason` on abort, with ClosedError if the locker closes; a server
   * that is down or slow is retried (with backoff) until then.
   */
  async acquire(key: string, opts?: AcquireOptions): Promise<Lock> {
    const o = resolveAcquire(key, opts, this.#ttlMs);
    this.checkOpen();
    const start = performance.now();
    let claim = this.#claim(key);
    // Uncontended fast path: one round trip, nothing to set up. It also serves waitTimeoutMs: 0, which
    // means one attempt (a deadline of 0 would otherwise cancel that attempt while on the wire). Any
    // other deadline bounds the first attempt too, so the wait makes it.
    let first: Attempt | undefined;
    if (o.waitTimeoutMs === 0 || (o.waitTimeoutMs === Infinity && !o.signal)) {
      try {
        first = await this.#attempt(claim, o, o.waitTimeoutMs !== 0, o.signal);
        if (first.lock) return this.#granted(this.handOut(first.lock), start, 1);
      } catch (err) {
        if (!isTransientRedisError(err) || o.waitTimeoutMs === 0) throw gaveUp(this.backend, key, start, o.signal, err);
        claim = this.#claim(key); // the failed attempt is being cleaned up under the old token
      }
      if (o.waitTimeoutMs === 0) throw gaveUp(this.backend, key, start, o.signal, new LockTimeoutError(key, performance.now() - start));
      if (first && this.closed) {
        // Closed while the first attempt queued us: the wait will not start, so leave the queue here.
        this.#cleanup(claim, o.ttlMs);
        this.checkOpen();
      }
    }
    return this.waitFor(key, start, o, (wait) => this.#waitTurn(wait, claim, o, first));
  }

  #claim(key: string): Claim {
    return { key, keys: this.#kind.keys(this.#prefix, key), token: randomToken() };
  }

  /**
   * The slow path, in the queue. Attempt: QUEUE_ACQUIRE, which also keeps our place. What wakes us: a
   * release message naming our token (or '', nobody queued; or null, messages may have been missed),
   * else the holder's PTTL running out, and at least every ttl/3 to refresh our place. Clean-up: leave
   * the queue (and undo an attempt that may still land) under the token we queued with.
   */
  async #waitTurn(wait: Wait, claim: Claim, o: ResolvedAcquire, first: Attempt | undefined): Promise<HeldLock> {
    let granted = false;
    let subscribed = false;
    let unsubscribe: (() => void) | undefined;
    const onRelease = (message: string | Buffer | null): void => {
      if (message === null || message.length === 0 || this.#kind.admits(String(message), claim.token)) wait.wake();
    };
    try {
      for (;;) {
        let result: Attempt;
        try {
          // The fast path's failed attempt counts as this loop's first: go straight to subscribing.
          result = first ?? (await this.#attempt(claim, o, true, wait.signal));
          wait.attempts++;
          wait.answered();
        } catch (err) {
          if (wait.signal.aborted || !isTransientRedisError(err)) throw err;
          claim = this.#claim(claim.key); // the failed attempt is being cleaned up under the old token
          await wait.backoff(err);
          continue;
        } finally {
          first = undefined;
        }
        if (result.lock) {
          granted = true;
          return this.#granted(this.handOut(result.lock), wait.start, wait.attempts);
        }
        if (!subscribed) {
          subscribed = true;
          unsubscribe = await this.#subscribe(claim.keys.channel, onRelease, wait);
          continue; // a release between our attempt and the subscription would be missed: look again now
        }
        await wait.pause(this.#fallbackDelay(claim.key, result, o.ttlMs, wait.attempts));
      }
    } finally {
      unsubscribe?.();
      if (!granted) this.#cleanup(claim, o.ttlMs);
    }
  }

  /** Subscribes to the key's release channel. Without pub/sub (down, or denied by an ACL) PTTLs alone pace the wait. */
  async #subscribe(channel: string, onRelease: (message: string | Buffer | null) => void, wait: Wait): Promise<(() => void) | undefined> {
    try {
      return await this.#client.subscribe(channel, onRelease, wait.signal);
    } catch (err) {
      if (wait.signal.aborted) throw err;
      wait.lastError = err;
      return undefined;
    }
  }

  /**
   * How long to wait with no message: until the holder's lease ends (or the head's place lapses, if the
   * lock is free but promised), and at least every ttl/3 to keep our own place. pttl -1: a key with no
   * expiry, not a lock's.
   */
  #fallbackDelay(key: string, result: Attempt, ttlMs: number, attempts: number): number {
    const { pttl, headLeft } = result as { pttl: number; headLeft: number };
    if (lockChannels.wait.hasSubscribers) lockChannels.wait.publish({ backend: 'redis', key, pttl, headLeft, attempts });
    const until = pttl >= 0 ? pttl : pttl === -2 && headLeft >= 0 ? headLeft : ttlMs;
    return Math.min(until + 1 + jitter(5), ttlMs / 3, MAX_TIMER_MS);
  }

  #granted(lock: HeldLock, start: number, attempts: number): HeldLock {
    if (lockChannels.acquire.hasSubscribers) {
      const { key, token, fence, validUntil } = lock;
      lockChannels.acquire.publish({ backend: 'redis', key, token, fence, validUntil, waitedMs: performance.now() - start, attempts });
    }
    return lock;
  }

  /** One acquire attempt. A failure that may have left our SET applied is cleaned up in the background. */
  async #attempt(claim: Claim, o: ResolvedAcquire, queue: boolean, signal: AbortSignal | undefined): Promise<Attempt> {
    const { keys, token } = claim;
    const ttl = Math.ceil(o.ttlMs);
    const sentAt = performance.now();
    let reply: unknown;
    let acked: Promise<RespValue> | undefined;
    try {
      ({ reply, acked } = await this.#evalReplicated(
        this.#kind.acquire,
        queueKeys(keys),
        [token, ttl, queue ? ttl : 0, keys.channel, ...this.#kind.extraArgs],
        signal,
      ));
    } catch (err) {
      if (!(err instanceof RespError)) this.#cleanup(claim, o.ttlMs);
      throw err;
    }
    const [granted, n, headLeft] = reply as [number, number, number];
    if (granted !== 1) return { pttl: n, headLeft };
    if (acked) {
      // Not held until enough replicas have it: an unconfirmed grant is taken back, under its token.
      const count = await acked.then(Number, (err: unknown) => {
        this.#cleanup(claim, o.ttlMs);
        throw err;
      });
      if (count < this.#minReplicas) {
        this.#cleanup(claim, o.ttlMs);
        throw new ReplicaError(claim.key, 'grant', count, this.#minReplicas, this.#replicaTimeoutMs);
      }
    }
    const lock = new HeldLock({
      backend: 'redis',
      key: claim.key,
      token,
      fence: BigInt(n),
      validUntil: sentAt + o.ttlMs - driftMs(o.ttlMs),
      ttlMs: o.ttlMs,
      autoExtend: o.autoExtend,
      ops: this.#ops,
      onEnd: this.forget,
    });
    return { lock };
  }

  /**
   * Takes a claim's token out of play: leaves the queue, and deletes the lock if an attempt under this
   * token landed after all (an attempt that timed out, lost its connection or was abandoned may still
   * be applied: a paused server applies it on resume). Retried in the background while the token could
   * still matter (one TTL); the compare-and-delete can never remove another holder's lock.
   */
  #cleanup(claim: Claim, ttlMs: number): void {
    const until = performance.now() + ttlMs;
    const step = (): Promise<boolean> =>
      this.#release(claim.keys, claim.token, Math.max(1, Math.min(this.#client.commandTimeoutMs, remaining(until)))).then(
        () => true,
        (err: unknown) => !isTransientRedisError(err), // a final error reply will not change by retrying
      );
    void retryInBackground(step, { until });
  }

  #release(keys: RedisKeys, token: string, timeoutMs?: number): Promise<unknown> {
    return this.#client.evalScript(
      this.#kind.release,
      queueKeys(keys),
      [token, keys.channel, ...this.#kind.extraArgs],
      timeoutMs === undefined ? undefined : { timeoutMs },
    );
  }

  async #extend(lock: HeldLock, ttlMs: number, signal?: AbortSignal): Promise<number> {
    const sentAt = performance.now();
    const { reply, acked } = await this.#extendScript(lock, ttlMs, signal, true);
    if (reply !== 1) throw new LockLostError(lock.key, reply === 0 ? 'expired' : 'stolen');
    if (acked) {
      // An extension the replicas do not have would not survive a failover: it does not count.
      const count = Number(await acked);
      if (count < this.#minReplicas) throw new ReplicaError(lock.key, 'extension', count, this.#minReplicas, this.#replicaTimeoutMs);
    }
    return sentAt + ttlMs - driftMs(ttlMs);
  }

  /** The kind's extend script (the election's, with its record): 1 extended, 0 not there, -1 another token's. */
  #extendScript(lock: HeldLock, ttlMs: number, signal: AbortSignal | undefined, replicated = false): Promise<{ reply: RespValue; acked?: Promise<RespValue> }> {
    const keys = this.#kind.keys(this.#prefix, lock.key);
    const args = [lock.token, Math.ceil(ttlMs)];
    const [script, scriptKeys] = this.#record ? [EXTEND_WITH_RECORD, [keys.lock, this.#record(keys)]] : [this.#kind.extend, [keys.lock]];
    if (replicated) return this.#evalReplicated(script, scriptKeys, args, signal);
    return this.#client.evalScript(script, scriptKeys, args, { signal }).then((reply) => ({ reply }));
  }

  /**
   * A script, and with minReplicas > 0 a WAIT sent in the same write on the same connection right
   * behind it (evalScriptThen), so the WAIT counts the replicas that have this script's writes.
   * `acked` resolves with WAIT's count.
   */
  async #evalReplicated(script: Script, keys: string[], args: Array<string | number>, signal: AbortSignal | undefined): Promise<{ reply: RespValue; acked?: Promise<RespValue> }> {
    if (this.#minReplicas === 0) return { reply: await this.#client.evalScript(script, keys, args, { signal }) };
    const wait = ['WAIT', this.#minReplicas, this.#replicaTimeoutMs];
    const { reply, then } = await this.#client.evalScriptThen(script, keys, args, wait, { signal }, this.#replicaTimeoutMs + this.#client.commandTimeoutMs);
    return { reply, acked: then };
  }
}
