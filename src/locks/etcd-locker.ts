/**
 * EtcdLocker: the Locker interface over etcd's mutex (see etcd-mutex.ts for the algorithm).
 *
 * - Lock `key` is the etcd lock named `<prefix><key>`: its etcd keys are `<prefix><key>/<lease hex>`.
 *   With the default prefix 'wirelock/', `locker.acquire('orders')` and
 *   `etcdctl lock wirelock/orders` exclude each other; with prefix '' it is `etcdctl lock orders`.
 * - One Session (lease + keep-alive) per locker and TTL, created on first use and replaced after
 *   it is lost; all locks of that TTL share it. `ttlMs` is rounded up to whole seconds (min 2 s).
 *   The session's renewals move each lock's validUntil; its loss is each lock's loss.
 * - autoExtend: false gives the lock a lease of its own that nobody renews: it ends after ttlMs
 *   unless `extend()` renews it.
 * - Two acquires of one key through one locker queue here, in order. (Go's mutex would let both
 *   "hold" it: they share the session's key.)
 * - `lock.token` is the lock's etcd key, `lock.fence` its create revision; `ownerCompare(lock)`
 *   makes a Txn conditional on the lock still being held.
 */
import { EtcdClient } from '../etcdrpc/client.js';
import { CompareResult, CompareTarget, type Compare } from '../etcdrpc/types.js';
import { MAX_TIMER_MS, jitter, noop, onAbort, raceAbort, sleep } from '../abort.js';
import { ConnectionError, EtcdError, LockLostError, LockTimeoutError, TimeoutError } from '../errors.js';
import { BaseLocker } from './base-locker.js';
import { HeldLock, type LockOps } from './held-lock.js';
import { HOLD_ENDED, Mutex } from './etcd-mutex.js';
import { Session, SessionExpiredError, ttlSeconds } from './etcd-session.js';
import { DEFAULT_TTL_MS, checkTtl, resolveAcquire, type ResolvedAcquire } from './options.js';
import type { AcquireOptions, Lock, LockerOptions } from './types.js';

/** The compare that makes a Txn apply only while `lock` (from an EtcdLocker) is still held. */
export function ownerCompare(lock: Lock): Compare {
  return { key: lock.token, target: CompareTarget.CREATE, result: CompareResult.EQUAL, create_revision: lock.fence };
}

/** What a HeldLock needs from etcd: renew through the session, release through the mutex. */
class EtcdHold implements LockOps {
  readonly #mutex: Mutex;
  readonly #session: Session;
  readonly #ownSession: boolean;
  readonly #passTurn: () => void;
  readonly #leave: () => void;
  #finished: Promise<void> | undefined;

  constructor(mutex: Mutex, ownSession: boolean, passTurn: () => void, leave: () => void) {
    this.#mutex = mutex;
    this.#session = mutex.session;
    this.#ownSession = ownSession;
    this.#passTurn = passTurn;
    this.#leave = leave;
  }

  async extend(lock: HeldLock): Promise<number> {
    if (!this.#mutex.held) throw lostFrom(lock.key, this.#mutex.signal.reason);
    try {
      // etcd renews a lease to its granted TTL: a different ttlMs cannot change it.
      return await this.#session.keepAliveOnce();
    } catch (err) {
      if (err instanceof SessionExpiredError) throw new LockLostError(lock.key, 'session-expired', { cause: err });
      throw err;
    }
  }

  release(): Promise<void> {
    return this.finish();
  }

  /**
   * Deletes the key (if still ours), then lets the next local acquire of the key go. In that order:
   * the next acquire reuses the same etcd key (same session), and must not find the old one still
   * there (it would take it over, fence and all). If the delete fails, release() rejects, and the
   * delete is retried in the background until it succeeds or the session ends; only then does the
   * next local acquire go.
   */
  finish(): Promise<void> {
    this.#finished ??= this.#mutex.unlock().then(
      () => this.#done(),
      (err) => {
        void this.#retryUnlock();
        throw err;
      },
    );
    return this.#finished;
  }

  async #retryUnlock(): Promise<void> {
    for (let i = 0; !this.#session.signal.aborted; i++) {
      await sleep(Math.min(100 * 2 ** i, 2000) + jitter(50), undefined, true);
      try {
        await this.#mutex.unlock();
        break;
      } catch {
        // still unreachable: try again while the session lives (its end deletes the key anyway)
      }
    }
    await this.#done();
  }

  async #done(): Promise<void> {
    this.#passTurn();
    this.#leave();
    if (this.#ownSession) await this.#session.close().catch(noop);
  }
}

/** Failures that say nothing about the lock, only that the cluster could not answer in time. */
function isTransient(err: unknown): boolean {
  if (err instanceof EtcdError) return err.grpcCode === 14 || err.grpcCode === 4; // UNAVAILABLE, DEADLINE_EXCEEDED
  return err instanceof TimeoutError || err instanceof ConnectionError;
}

function lostFrom(key: string, reason: unknown): LockLostError {
  if (reason instanceof LockLostError) return new LockLostError(key, reason.reason, reason.cause === undefined ? undefined : { cause: reason.cause });
  return new LockLostError(key, 'expired', { cause: reason });
}

export class EtcdLocker extends BaseLocker {
  readonly #client: EtcdClient;
  readonly #prefix: string;
  readonly #ttlMs: number;
  /** The shared session per TTL (in seconds), or its creation in flight. */
  readonly #sessions = new Map<number, Promise<Session>>();
  /** Per key, the end of the local queue of acquires through this locker. */
  readonly #turns = new Map<string, Promise<void>>();
  /** Acquires and holds using each shared session, so an uncertain one is revoked when its last user leaves. */
  readonly #users = new Map<Session, number>();

  constructor(client: EtcdClient, opts: LockerOptions = {}) {
    super();
    if (!(client instanceof EtcdClient)) throw new TypeError('EtcdLocker needs an EtcdClient');
    if (opts === null || typeof opts !== 'object') throw new TypeError('locker options must be an object');
    const prefix = opts.prefix ?? 'wirelock/';
    if (typeof prefix !== 'string') throw new TypeError('prefix must be a string');
    this.#client = client;
    this.#prefix = prefix;
    this.#ttlMs = checkTtl('ttlMs', opts.ttlMs ?? DEFAULT_TTL_MS);
  }

  /** The etcd lock name (what `etcdctl lock` takes) for a lock key. */
  lockName(key: string): string {
    return this.#prefix + key;
  }

  async acquire(key: string, opts?: AcquireOptions): Promise<Lock> {
    const o = resolveAcquire(key, opts, this.#ttlMs);
    this.checkOpen();
    const start = performance.now();
    if (o.waitTimeoutMs === 0) {
      // One attempt (a 0 ms deadline would otherwise cancel it while on the wire), as for Redis.
      const lock = await this.tryAcquire(key, opts);
      if (!lock) throw new LockTimeoutError(key, performance.now() - start);
      return lock;
    }
    const link = this.linkSignals(o.signal);
    let lastError: unknown; // the last transient failure, reported as the timeout's cause
    const timer =
      o.waitTimeoutMs > MAX_TIMER_MS
        ? undefined
        : setTimeout(() => {
            const cause = lastError === undefined ? undefined : { cause: lastError };
            link.abort(new LockTimeoutError(key, performance.now() - start, cause));
          }, o.waitTimeoutMs);
    let passTurn: (() => void) | undefined;
    try {
      passTurn = await this.#takeTurn(key, link.signal);
      // Like the Redis lockers: an unreachable or slow cluster is retried (backing off, capped, with
      // jitter) until the deadline; errors etcd gives on purpose (permission, bad argument) are not.
      for (let failures = 0; ; failures++) {
        try {
          return (await this.#lock(key, o, link.signal, true, passTurn))!;
        } catch (err) {
          if (link.signal.aborted || !isTransient(err)) throw err;
          lastError = err;
          await sleep(Math.min(100 * 2 ** failures, 1000) + jitter(50), link.signal);
        }
      }
    } catch (err) {
      passTurn?.();
      throw err instanceof LockLostError ? lostFrom(key, err) : err;
    } finally {
      clearTimeout(timer);
      link.dispose();
    }
  }

  async tryAcquire(key: string, opts?: AcquireOptions): Promise<Lock | null> {
    const o = resolveAcquire(key, opts, this.#ttlMs);
    this.checkOpen();
    if (this.#turns.has(key)) return null; // held (or being acquired) through this very locker
    const passTurn = await this.#takeTurn(key, undefined);
    try {
      const lock = await this.#lock(key, o, o.signal, false, passTurn);
      if (!lock) passTurn();
      return lock;
    } catch (err) {
      passTurn();
      throw err instanceof LockLostError ? lostFrom(key, err) : err;
    }
  }

  /** Releases every lock, then revokes the sessions' leases. Does not close the client. */
  override async close(): Promise<void> {
    if (this.closed) return;
    await super.close();
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    await Promise.allSettled(sessions.map((p) => p.then((s) => s.close())));
  }

  async #lock(key: string, o: ResolvedAcquire, signal: AbortSignal | undefined, wait: boolean, passTurn: () => void): Promise<HeldLock | null> {
    const ownSession = !o.autoExtend;
    const session = ownSession
      ? await Session.create(this.#client, { ttlMs: ttlSeconds(o.ttlMs) * 1000, keepAlive: false, signal })
      : await this.#sharedSession(ttlSeconds(o.ttlMs), signal);
    const leave = ownSession ? noop : this.#join(session);
    const mutex = new Mutex(session, this.#prefix + key);
    try {
      if (wait) await mutex.lock({ signal });
      else if (!(await mutex.tryLock({ signal }))) {
        leave();
        if (ownSession) await session.close().catch(noop);
        return null;
      }
    } catch (err) {
      leave();
      if (ownSession) await session.close().catch(noop);
      throw err;
    }
    const hold = new EtcdHold(mutex, ownSession, passTurn, leave);
    const lock = new HeldLock({
      backend: 'etcd',
      key,
      token: mutex.key,
      fence: mutex.fence,
      validUntil: session.validUntil,
      ttlMs: session.ttl * 1000,
      autoExtend: false, // the session renews the lease; the lock only follows it
      localExpiry: false, // the session's own timer ends it at validUntil (through the mutex, below)
      ops: hold,
      onEnd: (l) => {
        mutex[HOLD_ENDED] = undefined;
        session.offRenewed(renewed);
        this.forget(l);
        // Lost (not released): clean up the key and pass the turn without waiting for release().
        if (l.endReason instanceof LockLostError) void hold.finish().catch(noop);
      },
    });
    const renewed = (validUntil: number): void => lock.renewed(validUntil);
    session.onRenewed(renewed);
    const follow = (reason: unknown): void => {
      if (reason instanceof LockLostError) lock.lose(reason.reason, reason.cause);
    };
    mutex[HOLD_ENDED] = follow;
    if (!mutex.held) follow(mutex.signal.reason); // the hold ended before we got here
    if (this.closed) {
      // close() ran while we were acquiring: do not hand out a lock from a closed locker.
      await lock.release().catch(noop);
      throw this.closing.signal.reason;
    }
    return this.track(lock);
  }

  /** The shared session for this TTL: the live one, or a new one if there is none (or it was lost). */
  async #sharedSession(ttl: number, signal: AbortSignal | undefined): Promise<Session> {
    const existing = this.#sessions.get(ttl);
    if (existing) {
      const session = await raceAbort(existing, signal).catch((err) => {
        if (signal?.aborted) throw err;
        return undefined; // its creation failed: make another
      });
      if (session && !session.signal.aborted && !session.uncertain) return session;
      if (this.#sessions.get(ttl) === existing) this.#sessions.delete(ttl);
    }
    const created = Session.create(this.#client, { ttlMs: ttl * 1000 });
    this.#sessions.set(ttl, created);
    const forget = (): void => {
      if (this.#sessions.get(ttl) === created) this.#sessions.delete(ttl);
    };
    created.then((s) => onAbort(s.signal, forget), forget);
    return raceAbort(created, signal);
  }

  /**
   * Counts a user of a shared session; the returned function (call it once) uncounts it. A session
   * marked uncertain (a lock Txn under it had an unknown outcome: a key may land under its lease
   * later) gets no new users, and is revoked when its last user leaves, which removes any such key.
   */
  #join(session: Session): () => void {
    this.#users.set(session, (this.#users.get(session) ?? 0) + 1);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const n = (this.#users.get(session) ?? 1) - 1;
      if (n > 0) this.#users.set(session, n);
      else this.#users.delete(session);
      if (session.uncertain) {
        for (const [ttl, p] of this.#sessions) void p.then((s) => s === session && this.#sessions.get(ttl) === p && this.#sessions.delete(ttl), noop);
        if (n <= 0) void session.close().catch(noop);
      }
    };
  }

  /**
   * Waits for the key's earlier local acquires to end. Resolves with the function that passes the
   * turn on; an abort while waiting passes it at once (the next one still waits for the earlier ones).
   */
  async #takeTurn(key: string, signal: AbortSignal | undefined): Promise<() => void> {
    const previous = this.#turns.get(key);
    let pass!: () => void;
    const mine = new Promise<void>((resolve) => (pass = resolve));
    const tail = previous ? Promise.all([previous, mine]).then(noop) : mine;
    this.#turns.set(key, tail);
    void tail.then(() => {
      if (this.#turns.get(key) === tail) this.#turns.delete(key);
    });
    if (!previous) return pass;
    try {
      await raceAbort(previous, signal);
    } catch (err) {
      pass();
      throw err;
    }
    return pass;
  }
}
