/**
 * An etcd locker's attempts: the session each key stands on, the hold that renews and releases it,
 * and the clean-up of an attempt that failed. Written once for EtcdLocker and EtcdSemaphore.
 *
 * - One Session (lease + keep-alive) per locker and TTL, created on first use and replaced after it
 *   is lost; all holds of that TTL share it. autoExtend: false gives the attempt a lease of its own
 *   that nobody renews (revoked when the attempt ends).
 * - A key whose Txn had an unknown outcome may land under its lease later, holding for nobody. Its
 *   session is then marked uncertain: it gets no new users, and is revoked when its last user leaves,
 *   which removes any such key.
 */
import { EtcdClient } from '../etcdrpc/client.js';
import { isLeaseGone, isTransientEtcdError, wasNotApplied } from '../etcdrpc/status.js';
import { noop, onAbort, raceAbort } from '../abort.js';
import { LockLostError, SessionExpiredError, invalidType } from '../errors.js';
import type { HeldLock, LockOps } from './held-lock.js';
import { Session, ttlSeconds } from './etcd-session.js';
import { deleteOwnKey, removeOwnKey, type QueueEntry } from './etcd-queue.js';
import { DEFAULT_TTL_MS, checkTtl, type ResolvedAcquire } from './options.js';
import type { Wait } from './waiting.js';

/** One attempt's key, and the session it stands on. */
export interface Attempt {
  readonly entry: QueueEntry;
  readonly session: Session;
  /** The session is this attempt's own (autoExtend: false): it is revoked when the attempt ends. */
  readonly ownSession: boolean;
  /** Uncounts this attempt as a user of a shared session. */
  readonly leave: () => void;
}

/** A locker's shared sessions, one per TTL in whole seconds, and who uses each. */
export class SessionPool {
  readonly #client: EtcdClient;
  /** The shared session per TTL (in seconds), or its creation in flight. */
  readonly #sessions = new Map<number, Promise<Session>>();
  /** Attempts and holds using each shared session, so an uncertain one is revoked when its last user leaves. */
  readonly #users = new Map<Session, number>();

  constructor(client: EtcdClient) {
    this.#client = client;
  }

  /** Begins an attempt: its session (shared per TTL, or its own), and the key `entryFor` names on it. */
  async begin(o: ResolvedAcquire, signal: AbortSignal | undefined, entryFor: (session: Session) => QueueEntry): Promise<Attempt> {
    const ownSession = !o.autoExtend;
    const session = ownSession
      ? await Session.create(this.#client, { ttlMs: ttlSeconds(o.ttlMs) * 1000, keepAlive: false, signal })
      : await this.#shared(ttlSeconds(o.ttlMs), signal);
    return { entry: entryFor(session), session, ownSession, leave: ownSession ? noop : this.#join(session) };
  }

  /** Revokes every shared session (which deletes their keys). */
  async close(): Promise<void> {
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    await Promise.allSettled(sessions.map((p) => p.then((s) => s.close())));
  }

  /** The shared session for this TTL: the live one, or a new one if there is none (or it was lost). */
  async #shared(ttl: number, signal: AbortSignal | undefined): Promise<Session> {
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
}

/** The attempt's user of its session is done; an own session is revoked (which deletes its key). */
export async function endAttempt(a: Attempt): Promise<void> {
  a.leave();
  if (a.ownSession) await a.session.close().catch(noop);
}

/**
 * Takes back what a failed attempt may have left: its key (`rev`, or unknown if the enqueue's outcome
 * is). A key that could not be deleted at once, or may land later, marks the session uncertain: no
 * new locks use it, and it is revoked when its last lock ends.
 */
export async function abandonAttempt(a: Attempt, rev: bigint | undefined, err: unknown): Promise<void> {
  // etcd says the lease is gone before the session's own timer does (the cluster was paused or
  // unreachable past the TTL): the session is lost now, so the next attempt makes a new one.
  if (isLeaseGone(err)) a.session.lose('etcd no longer has the lease (requested lease not found)', err);
  // No revision: the enqueue failed. Refused before it ran, it left nothing; otherwise it may have.
  const mayHaveKey = rev !== undefined || !wasNotApplied(err);
  if (!a.ownSession && mayHaveKey) {
    const deleted = rev !== undefined && (await deleteOwnKey(a.entry, rev).then(() => true, () => false));
    if (!deleted) {
      a.session.markUncertain();
      await removeOwnKey(a.entry, rev);
    }
  }
  await endAttempt(a); // an own session is revoked, which deletes its key
}

/**
 * What a HeldLock needs from etcd: renewals through the session, release by the guarded delete.
 * The release deletes the key first and calls `gone` after: EtcdLocker then lets the key's next
 * local acquire go, which reuses the same etcd key (same session) and must not find the old one
 * still there (it would take it over, fence and all). A failed delete is retried in the background
 * until it succeeds or the session ends; only then is `gone` called.
 */
export class EtcdHold implements LockOps {
  readonly #attempt: Attempt;
  readonly #rev: bigint;
  readonly #gone: () => void;
  #finished: Promise<void> | undefined;

  constructor(attempt: Attempt, rev: bigint, gone: () => void = noop) {
    this.#attempt = attempt;
    this.#rev = rev;
    this.#gone = gone;
  }

  async extend(lock: HeldLock): Promise<number> {
    try {
      // etcd renews a lease to its granted TTL: a different ttlMs cannot change it.
      return await this.#attempt.session.keepAliveOnce();
    } catch (err) {
      if (err instanceof SessionExpiredError) throw new LockLostError(lock.key, 'session-expired', { cause: err });
      throw err;
    }
  }

  release(): Promise<void> {
    const done = (): Promise<void> => endAttempt(this.#attempt).then(this.#gone);
    this.#finished ??= deleteOwnKey(this.#attempt.entry, this.#rev).then(done, (err: unknown) => {
      void removeOwnKey(this.#attempt.entry, this.#rev).then(done);
      throw err;
    });
    return this.#finished;
  }
}

/**
 * Calls `call` until it answers. Inside a wait, an unreachable or slow cluster is retried (backing
 * off) until the wait ends, and the attempt keeps its key, so its place in line; errors etcd gives on
 * purpose (permission, bad argument) are not retried. Without a wait (one attempt) a failure is final.
 */
export async function persist<T>(wait: Wait | undefined, call: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      const answer = await call();
      wait?.answered();
      return answer;
    } catch (err) {
      if (!wait || wait.signal.aborted || !isTransientEtcdError(err)) throw err;
      await wait.backoff(err, { baseMs: 100 });
    }
  }
}

/**
 * The attempt failed because its session's lease went before a grant, and a new session may succeed:
 * etcd refused the key's write naming the lease ("requested lease not found": it expired while nobody
 * could renew it, e.g. the cluster was paused), or the shared session ended while the attempt waited
 * in line. Not for a lease of the attempt's own (autoExtend: false): nobody renews that one by the
 * caller's choice, so its end is the answer.
 */
export function leaseWentBeforeGrant(err: unknown, o: ResolvedAcquire): boolean {
  if (isLeaseGone(err)) return true;
  return o.autoExtend && err instanceof LockLostError && err.reason === 'session-expired';
}

/**
 * Runs `attempt` again when its session's lease went before a grant (leaseWentBeforeGrant):
 * abandonAttempt has taken its key back and the session is lost, so the next try stands on a new
 * one, at the back of the line. The caller never chose that lease: its loss before a grant is no
 * reason to fail. Without a wait, one more try; within one, tries until the wait ends, backing off
 * from the second failure in a row on.
 */
export async function onFreshLease<T>(wait: Wait | undefined, o: ResolvedAcquire, attempt: () => Promise<T>): Promise<T> {
  for (let failures = 0; ; failures++) {
    try {
      return await attempt();
    } catch (err) {
      if (!leaseWentBeforeGrant(err, o) || (wait ? wait.signal.aborted : failures > 0)) throw err;
      if (wait && failures > 0) await wait.backoff(err, { baseMs: 100 });
    }
  }
}

/**
 * The constructor checks every etcd locker makes (`who` names it in the errors): a real EtcdClient,
 * options as an object, and from them the key prefix (default 'wirelock/') and the default TTL.
 */
export function etcdLockerOptions(who: string, client: unknown, opts: unknown, optionsError = 'locker options must be an object'): { prefix: string; ttlMs: number } {
  if (!(client instanceof EtcdClient)) throw invalidType(`${who} needs an EtcdClient`);
  if (opts === null || typeof opts !== 'object') throw invalidType(optionsError);
  const { prefix = 'wirelock/', ttlMs = DEFAULT_TTL_MS } = opts as { prefix?: unknown; ttlMs?: unknown };
  if (typeof prefix !== 'string') throw invalidType('prefix must be a string');
  return { prefix, ttlMs: checkTtl('ttlMs', ttlMs) };
}
