/**
 * EtcdLocker: the Locker interface over etcd's mutex recipe (the queue algorithm is etcd-queue.ts),
 * the same keys as `Mutex` and etcd's Go client, with a HeldLock as the hold.
 *
 * - Lock `key` is the etcd lock named `<prefix><key>`: its etcd keys are `<prefix><key>/<lease hex>`.
 *   With the default prefix 'wirelock/', `locker.acquire('orders')` and
 *   `etcdctl lock wirelock/orders` exclude each other; with prefix '' it is `etcdctl lock orders`.
 * - One Session (lease + keep-alive) per locker and TTL, created on first use and replaced after
 *   it is lost; all locks of that TTL share it. `ttlMs` is rounded up to whole seconds (min 2 s).
 *   The session's renewals move each lock's validUntil; its loss is each lock's loss.
 * - autoExtend: false gives the lock a lease of its own that nobody renews: it ends after ttlMs
 *   unless `extend()` renews it.
 * - A shared session whose lease goes before a grant (etcd refuses the write naming it, or the lease
 *   ends while the attempt waits in line) is marked lost, and the acquire goes on on a new one, at
 *   the back of the line: until the wait ends, or once for tryAcquire (etcd-attempts.ts, onFreshLease).
 *   A lease of the attempt's own ends the wait with LockLostError('session-expired').
 * - Two acquires of one key through one locker queue here, in order. (Go's mutex would let both
 *   "hold" it: they share the session's key.)
 * - `lock.token` is the lock's etcd key, `lock.fence` its create revision; `ownerCompare(lock)`
 *   makes a Txn conditional on the lock still being held.
 * - A wait that ends (deadline, abort, close) rejects at once; its key is deleted in the background,
 *   retried until it is gone or its session ends. Until then the key's next local acquire waits (it
 *   would reuse the same etcd key), and a session whose clean-up failed is marked uncertain: it gets no
 *   new locks, and is revoked when its last one ends, so a key left behind cannot hold the lock for nobody.
 */
import type { EtcdClient } from '../etcdrpc/client.js';
import { lockChannels } from '../diagnostics.js';
import { isLeaseGone, isTransientEtcdError } from '../etcdrpc/status.js';
import type { Compare } from '../etcdrpc/types.js';
import { noop, raceAbort } from '../abort.js';
import { BaseLocker } from './base-locker.js';
import { HeldLock } from './held-lock.js';
import { EtcdHold, SessionPool, abandonAttempt, endAttempt, etcdLockerOptions, leaseWentBeforeGrant, type Attempt } from './etcd-attempts.js';
import { assertSessionLive, deleteOwnKey, enqueue, ownsKey, waitTurn } from './etcd-queue.js';
import { resolveAcquire, type ResolvedAcquire } from './options.js';
import type { AcquireOptions, Lock, LockerOptions } from './types.js';
import type { Wait } from './waiting.js';

/** The compare that makes a Txn apply only while `lock` (from an EtcdLocker) is still held. */
export function ownerCompare(lock: Lock): Compare {
  return ownsKey(lock.token, lock.fence);
}

/** An acquire's local turn on its key: passed on once its attempts are over and cleaned up. */
interface Turn {
  /** Lets the key's next local acquire go. */
  readonly pass: () => void;
  /** When the last failed attempt's clean-up is done (the same etcd key must be gone before it is written again). */
  cleaned: Promise<void>;
  /** When the acquire began (for diagnostics). */
  readonly start: number;
}

/**
 * The Locker interface over etcd's lock recipe: lock `key` is the etcd lock `<prefix><key>`, so it
 * excludes `etcdctl lock` and Go's `concurrency.Mutex` on the same name. Locks of one TTL share one
 * session (lease), created on first use; `lock.fence` is the lock key's create revision.
 */
export class EtcdLocker extends BaseLocker {
  readonly #client: EtcdClient;
  readonly #prefix: string;
  readonly #ttlMs: number;
  /** The shared sessions, one per TTL. */
  readonly #sessions: SessionPool;
  /** Per key, the end of the local queue of acquires through this locker. */
  readonly #turns = new Map<string, Promise<void>>();

  constructor(client: EtcdClient, opts: LockerOptions = {}) {
    super('etcd');
    const { prefix, ttlMs } = etcdLockerOptions('EtcdLocker', client, opts);
    this.#client = client;
    this.#sessions = new SessionPool(client);
    this.#prefix = prefix;
    this.#ttlMs = ttlMs;
  }

  /** The etcd lock name (what `etcdctl lock` takes) for a lock key. */
  lockName(key: string): string {
    return this.#prefix + key;
  }

  /**
   * Joins the key's queue and waits until every older contender is gone. Rejects with LockTimeoutError
   * after `waitTimeoutMs`, with `signal.reason` on abort, with ClosedError if the locker closes; an
   * unreachable or slow cluster is retried (with backoff) until then, errors etcd gives on purpose
   * (permission, bad argument) are not.
   */
  async acquire(key: string, opts?: AcquireOptions): Promise<Lock> {
    const o = resolveAcquire(key, opts, this.#ttlMs);
    this.checkOpen();
    const start = performance.now();
    if (o.waitTimeoutMs === 0) return this.onlyOnce(key, start, o, () => this.tryAcquire(key, opts));
    return this.waitFor(key, start, o, (wait) => this.#waitLock(wait, key, o));
  }

  /**
   * One attempt: the lock, or null if another contender holds it (its own key is deleted again) or
   * this locker already holds the key, is acquiring it or is still cleaning up after it.
   */
  async tryAcquire(key: string, opts?: AcquireOptions): Promise<Lock | null> {
    const o = resolveAcquire(key, opts, this.#ttlMs);
    this.checkOpen();
    if (this.#turns.has(key)) return null; // held (or being acquired) through this very locker
    const turn = await this.#takeTurn(key, undefined, performance.now());
    try {
      // One more try on a new session if etcd no longer had the lease (its key was never written).
      const lock = await this.#lockOnce(key, o, turn, undefined).catch(async (err: unknown) => {
        if (!isLeaseGone(err)) throw err;
        await turn.cleaned;
        return this.#lockOnce(key, o, turn, undefined);
      });
      if (!lock) void turn.cleaned.then(turn.pass);
      return lock;
    } catch (err) {
      void turn.cleaned.then(turn.pass);
      throw err;
    }
  }

  /** Releases every lock, then revokes the sessions' leases. Does not close the client. */
  override async close(): Promise<void> {
    if (this.closed) return;
    await super.close();
    await this.#sessions.close();
  }

  /**
   * The wait: the key's earlier local acquires first, then attempts until one holds. An unreachable
   * or slow cluster is retried (backing off, capped, with jitter) until the deadline, as the Redis
   * lockers do; errors etcd gives on purpose (permission, bad argument) are not.
   */
  async #waitLock(wait: Wait, key: string, o: ResolvedAcquire): Promise<HeldLock> {
    const turn = await this.#takeTurn(key, wait.signal, wait.start);
    try {
      for (;;) {
        try {
          return (await this.#lockOnce(key, o, turn, wait))!;
        } catch (err) {
          // A lease gone before the grant (abandonAttempt took the key back): the next attempt stands on a new one.
          if (wait.signal.aborted || !(isTransientEtcdError(err) || leaseWentBeforeGrant(err, o))) throw err;
          await wait.backoff(err, { baseMs: 100 });
          await raceAbort(turn.cleaned, wait.signal); // the same key must be gone before it is written again
        }
      }
    } catch (err) {
      void turn.cleaned.then(turn.pass);
      throw err;
    }
  }

  /**
   * One attempt: enqueue, then (with a `wait`) wait for the turn. Resolves with the lock, or null
   * when tryAcquire finds it held (our key deleted again). Whatever a failure leaves behind is cleaned
   * up in the background; `turn.cleaned` says when.
   */
  async #lockOnce(key: string, o: ResolvedAcquire, turn: Turn, wait: Wait | undefined): Promise<HeldLock | null> {
    const signal = wait?.signal ?? o.signal;
    const a = await this.#begin(key, o, signal);
    let rev: bigint | undefined;
    try {
      const place = await enqueue(a.entry, signal);
      rev = place.rev;
      if (!place.first) {
        if (!wait) {
          await deleteOwnKey(a.entry, rev); // out of the queue again before saying no
          turn.cleaned = endAttempt(a);
          return null;
        }
        await waitTurn(a.entry, place, wait);
        if (wait.signal.aborted) throw wait.signal.reason; // granted after the wait ended: give it back
      }
      assertSessionLive(a.entry);
    } catch (err) {
      turn.cleaned = abandonAttempt(a, rev, err);
      throw err;
    }
    return this.#hold(a, rev, turn, wait?.attempts ?? 1);
  }

  /** The session (shared per TTL, or the lock's own) and the key this attempt writes. */
  #begin(key: string, o: ResolvedAcquire, signal: AbortSignal | undefined): Promise<Attempt> {
    const name = this.#prefix + key;
    return this.#sessions.begin(o, signal, (session) => ({ client: this.#client, session, name: key, key: `${name}/${session.leaseHex}`, aheadPrefix: name }));
  }

  /** The lock is ours: a HeldLock that follows the session (renewals move validUntil; its end is a loss). */
  #hold(a: Attempt, rev: bigint, turn: Turn, attempts: number): HeldLock {
    const { entry, session } = a;
    const hold = new EtcdHold(a, rev, turn.pass);
    const lock = new HeldLock({
      backend: 'etcd',
      key: entry.name,
      token: entry.key,
      fence: rev,
      validUntil: session.validUntil,
      ttlMs: session.ttl * 1000,
      autoExtend: false, // the session renews the lease; the lock only follows it
      localExpiry: false, // the session's own timer ends it at validUntil (through `ended`, below)
      keepsAlive: session.keepsAlive,
      ops: hold,
      onEnd: (l) => {
        session.offRenewed(renewed);
        session.offEnded(ended);
        this.forget(l);
        // Lost (not released): clean up the key and pass the turn without waiting for release().
        if (l.lost) void hold.release().catch(noop);
      },
    });
    const renewed = (validUntil: number): void => lock.renewed(validUntil);
    const ended = (reason: Error): void => lock.lose('session-expired', reason);
    session.onRenewed(renewed);
    session.onEnded(ended);
    if (lockChannels.acquire.hasSubscribers) {
      const { validUntil } = lock;
      lockChannels.acquire.publish({ backend: 'etcd', key: lock.key, token: lock.token, fence: rev, validUntil, waitedMs: performance.now() - turn.start, attempts });
    }
    return this.handOut(lock);
  }
  /**
   * Waits for the key's earlier local acquires to end. Resolves with this acquire's turn; an abort
   * while waiting passes it at once (the next one still waits for the earlier ones).
   */
  async #takeTurn(key: string, signal: AbortSignal | undefined, start: number): Promise<Turn> {
    const previous = this.#turns.get(key);
    let pass!: () => void;
    const mine = new Promise<void>((resolve) => (pass = resolve));
    const tail = previous ? Promise.all([previous, mine]).then(noop) : mine;
    this.#turns.set(key, tail);
    void tail.then(() => {
      if (this.#turns.get(key) === tail) this.#turns.delete(key);
    });
    if (previous) {
      try {
        await raceAbort(previous, signal);
      } catch (err) {
        pass();
        throw err;
      }
    }
    return { pass, cleaned: Promise.resolve(), start };
  }
}
