/**
 * EtcdRWLock: a read-write lock on etcd, with the key layout of etcd's Go `contrib/recipes` RWMutex,
 * so it excludes Go programs that use `recipe.NewRWMutex(session, name)` on the same name. `read` and
 * `write` are Lockers on the same keys. Each hold is a Lock as EtcdLocker's are: its token is its
 * etcd key, its fence that key's create revision, its lease the side's session for its TTL (with
 * autoExtend: false, a lease of its own).
 *
 * Layout, with `<name>` = prefix + key (what Go's NewRWMutex takes; default prefix 'wirelock/'):
 *
 *     <name>/read/<lease hex>-<n hex>      a reader          Go: <name>/read/<unix ns>
 *     <name>/write/<lease hex>-<n hex>     a writer          Go: <name>/write/<unix ns>
 *
 * Each contender puts one empty key on its session's lease, and keys stand in create-revision order:
 *   - a reader holds once no key under `<name>/write/` is older than its own;
 *   - a writer holds once no key under `<name>/` (of either kind) is older than its own.
 * Only the two directories and that order decide who excludes whom. Go names its key by the clock
 * and retries a put-if-absent on a collision; here `n` counts the side's attempts, so a key is
 * unique by its lease and can collide with no one's (etcd-queue's enqueue relies on that: a key it
 * finds already there is ours, from a retried Txn). Go ranges by mod revision, this by create
 * revision: the same for keys that are never written again, as neither side's are.
 *
 * On the wire (etcd-queue.ts, the mutex's steps over another range):
 *  1. enqueue, one Txn: if create_revision(our key) == 0, put it and range the two newest keys (by
 *     create revision) of what it waits on: readers `<name>/write/`, writers `<name>/`. None older
 *     than ours: held, in one round trip.
 *  2. wait: a DELETE-only watch on the newest older key of that range, and one on our own key (a
 *     lease that ends while we queue ends the wait at once instead of becoming a grant).
 *  3. once it is deleted, one Txn: compare create_revision(our key) == our fence, then range the
 *     newest older key (max_create_revision = fence - 1, limit 1). None: held. Otherwise back to
 *     step 2 on that key. The compare is the re-check before a grant that Go's recipe omits: its
 *     waiter whose lease expired while it queued still "holds".
 *  4. hold: a DELETE-only watch on our key from the revision that granted it + 1 reports its
 *     deletion: LockLostError 'session-expired' if the lease is gone, else 'stolen'. The session's
 *     end (keep-alive answered TTL 0, or not renewed within its TTL) ends the hold too.
 *  5. release, and a waiter that gives up (deadline, abort, close): the guarded delete, compare
 *     create_revision(our key) == our fence, so never another's key.
 *
 * Which key a waiter watches. Correct: it may hold once every older key of its range is gone; it
 * watches one of them and, when that one goes, reads the range again (step 3), so it holds only
 * after a read that found none. Herd-free: a reader watches the newest older writer, a writer its
 * immediate predecessor (the newest older key of either kind), as Go does. Readers never watch
 * readers, so a reader's release wakes at most one waiter, the writer right behind it. A writer's
 * release wakes the next writer if it stands right behind it, and the readers between it and the
 * next writer: just those its release admits (each re-checks once and holds, unless an older
 * writer gave up and left another still ahead). A writer behind k readers that hold together
 * re-checks at most once per reader, as each release may leave another reader ahead of it.
 *
 * Writers are not starved: a reader that comes after a waiting writer finds the writer's key older
 * than its own and waits for it; the writer waits only for the keys already there when it came,
 * one hold each. Fences are create revisions, one counter for both modes: a writer's is above
 * those of the readers it waited for, and a reader's above the writer's it waited for.
 *
 * No upgrade. A read holder that asks for write would wait for every older key, its own read
 * included: a deadlock until its wait ends. Within one EtcdRWLock that is refused at once with a
 * TypeError (ERR_INVALID_ARG_VALUE) that says so; release the read lock first. Across two
 * EtcdRWLocks (or processes) nothing tells the two holds belong together: the write waits like any.
 */
import type { EtcdClient } from '../etcdrpc/client.js';
import { WatchFilter, type ResponseHeader } from '../etcdrpc/types.js';
import type { Watcher } from '../etcdrpc/watch.js';
import { lockChannels } from '../diagnostics.js';
import { noop } from '../abort.js';
import { LockLostError, WatchCompactedError, invalidValue } from '../errors.js';
import { BaseLocker } from './base-locker.js';
import { HeldLock } from './held-lock.js';
import { EtcdHold, SessionPool, abandonAttempt, endAttempt, etcdLockerOptions, onFreshLease, persist, type Attempt } from './etcd-attempts.js';
import { assertSessionLive, deleteOwnKey, enqueue, waitTurn, whyKeyDeleted, type QueueEntry } from './etcd-queue.js';
import { resolveAcquire, type ResolvedAcquire } from './options.js';
import type { AcquireOptions, Lock, Locker, LockerOptions } from './types.js';
import type { Wait } from './waiting.js';

type Mode = 'read' | 'write';

const ONLY_DELETES = [WatchFilter.NOPUT];

/** Where a key of each mode stands and waits: readers behind older writers, writers behind every older key. */
function layout(name: string, mode: Mode, id: string): { key: string; aheadPrefix: string } {
  return { key: `${name}/${mode}/${id}`, aheadPrefix: mode === 'read' ? `${name}/write` : name };
}

/**
 * Step 4: calls `lose` when our key (create revision `rev`) is deleted at revision `from` or later
 * (why is found out then: whyKeyDeleted). A start revision compacted away (etcd moved on a lot before the watch was created) is
 * covered by one read of the key, and a watch from after that read. Any other end of the watch
 * (the client closed, permission) leaves the hold to its session, which still bounds it.
 */
function watchOwnKey(e: QueueEntry, rev: bigint, from: bigint, lose: (err: LockLostError) => void): { cancel(): void } {
  let watcher: Watcher;
  let cancelled = false;
  const gone = (): void => {
    void whyKeyDeleted(e).then((err) => {
      if (!cancelled) lose(err);
    });
  };
  const reread = async (): Promise<void> => {
    const res = await e.client.range({ key: e.key });
    if (cancelled) return;
    if (res.kvs[0]?.create_revision === rev) start(res.header.revision + 1n);
    else gone();
  };
  const start = (at: bigint): void => {
    watcher = e.client.watch(e.key, { filters: ONLY_DELETES, start_revision: at }, {
      onEvents: gone,
      onError: (err) => {
        if (err instanceof WatchCompactedError) void reread().catch(noop); // unanswered: the session still bounds the hold
      },
    });
  };
  start(from);
  return {
    cancel: () => {
      cancelled = true;
      watcher.cancel();
    },
  };
}

/** One side of an EtcdRWLock: a Locker whose keys are `<name>/<mode>/<id>`. */
class EtcdRWLockSide extends BaseLocker {
  readonly #mode: Mode;
  readonly #client: EtcdClient;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #sessions: SessionPool;
  /** The write side's read side, whose holds it will not upgrade. */
  readonly #reads: EtcdRWLockSide | undefined;
  /** Holds now, per key. */
  readonly #holding = new Map<string, number>();
  /** Attempts begun: the last part of each key, so that one session's keys never collide. */
  #attempts = 0;

  constructor(client: EtcdClient, init: { mode: Mode; prefix: string; ttlMs: number; reads?: EtcdRWLockSide }) {
    super('etcd');
    this.#mode = init.mode;
    this.#client = client;
    this.#prefix = init.prefix;
    this.#ttlMs = init.ttlMs;
    this.#reads = init.reads;
    this.#sessions = new SessionPool(client);
  }

  /** Whether this side holds `key` now. */
  holds(key: string): boolean {
    return this.#holding.has(key);
  }

  /**
   * Puts our key in line and waits until no key it waits on is older. Rejects with LockTimeoutError
   * after `waitTimeoutMs`, with `signal.reason` on abort, with ClosedError if the lock closes; an
   * unreachable or slow cluster is retried (with backoff) until then, keeping the place in line.
   */
  async acquire(key: string, opts?: AcquireOptions): Promise<Lock> {
    const o = resolveAcquire(key, opts, this.#ttlMs);
    this.checkOpen();
    this.#refuseUpgrade(key);
    const start = performance.now();
    if (o.waitTimeoutMs === 0) return this.onlyOnce(key, start, o, () => this.tryAcquire(key, opts));
    return this.waitFor(key, start, o, async (wait) => (await onFreshLease(wait, o, () => this.#attempt(key, o, start, wait)))!);
  }

  /** One attempt: the lock, or null if an older key stands in its way (our key is deleted again). */
  async tryAcquire(key: string, opts?: AcquireOptions): Promise<Lock | null> {
    const o = resolveAcquire(key, opts, this.#ttlMs);
    this.checkOpen();
    this.#refuseUpgrade(key);
    const start = performance.now();
    return onFreshLease(undefined, o, () => this.#attempt(key, o, start, undefined));
  }

  /** Releases every hold, then revokes the sessions' leases. Does not close the client. */
  override async close(): Promise<void> {
    if (this.closed) return;
    await super.close();
    await this.#sessions.close();
  }

  #refuseUpgrade(key: string): void {
    if (!this.#reads?.holds(key)) return;
    throw invalidValue(
      `write lock on "${key}" asked for while this EtcdRWLock holds a read lock on it: the write would wait for every older key, that read included (a deadlock); release the read lock first`,
    );
  }

  /** One attempt: a key in line, then (with a `wait`) the wait for its turn. Null: not its turn, and no wait. */
  async #attempt(key: string, o: ResolvedAcquire, start: number, wait: Wait | undefined): Promise<HeldLock | null> {
    const signal = wait?.signal ?? o.signal;
    const a = await persist(wait, () => this.#begin(key, o, signal));
    const granted = await this.#inLine(a, signal, wait);
    return granted && this.#hold(a, granted, start);
  }

  /**
   * Steps 1-3: our fence and the revision at which our key was seen holding; null if it was not its
   * turn and there is no `wait` (its key is deleted again). Whatever a failure leaves behind is
   * cleaned up in the background.
   */
  async #inLine(a: Attempt, signal: AbortSignal | undefined, wait: Wait | undefined): Promise<{ rev: bigint; header: ResponseHeader } | null> {
    let rev: bigint | undefined;
    try {
      const place = await persist(wait, () => enqueue(a.entry, signal));
      rev = place.rev;
      if (place.first) {
        assertSessionLive(a.entry);
        return place;
      }
      if (!wait) {
        await deleteOwnKey(a.entry, rev); // out of the line again before saying no
        void endAttempt(a);
        return null;
      }
      // A retry after a transient failure starts from `place` again: waitTurn re-reads what changed since.
      const header = await persist(wait, () => waitTurn(a.entry, place, wait));
      if (wait.signal.aborted) throw wait.signal.reason; // granted after the wait ended: give it back
      assertSessionLive(a.entry);
      return { rev, header };
    } catch (err) {
      void abandonAttempt(a, rev, err);
      throw err;
    }
  }

  /** The session (shared per TTL, or the hold's own) and the key this attempt writes. */
  #begin(key: string, o: ResolvedAcquire, signal: AbortSignal | undefined): Promise<Attempt> {
    const n = (++this.#attempts).toString(16);
    return this.#sessions.begin(o, signal, (session) => ({
      client: this.#client,
      session,
      name: key,
      ...layout(this.#prefix + key, this.#mode, `${session.leaseHex}-${n}`),
    }));
  }

  /** Step 4: the hold, ended when our key goes (the watch) or the session does; its renewals move validUntil. */
  #hold(a: Attempt, granted: { rev: bigint; header: ResponseHeader }, start: number): HeldLock {
    const { entry, session } = a;
    const ops = new EtcdHold(a, granted.rev);
    const lock = new HeldLock({
      backend: 'etcd',
      key: entry.name,
      token: entry.key,
      fence: granted.rev,
      validUntil: session.validUntil,
      ttlMs: session.ttl * 1000,
      autoExtend: false, // the session renews the lease; the hold only follows it
      localExpiry: false, // the session's own timer ends it at validUntil (through `ended`, below)
      keepsAlive: session.keepsAlive,
      ops,
      onEnd: (l) => {
        keyWatch.cancel();
        session.offRenewed(renewed);
        session.offEnded(ended);
        this.#count(l.key, -1);
        this.forget(l);
        // Lost (not released): delete what may be left of our key without waiting for release().
        if (l.endReason instanceof LockLostError) void ops.release().catch(noop);
      },
    });
    this.#count(lock.key, +1);
    const renewed = (validUntil: number): void => lock.renewed(validUntil);
    const ended = (reason: Error): void => lock.lose('session-expired', reason);
    const keyWatch = watchOwnKey(entry, granted.rev, granted.header.revision + 1n, (err) => lock.lose(err.reason, err.cause));
    session.onRenewed(renewed);
    session.onEnded(ended); // at once if the lease is gone already
    if (lockChannels.acquire.hasSubscribers) {
      const { validUntil } = lock;
      lockChannels.acquire.publish({ backend: 'etcd', key: lock.key, token: lock.token, fence: lock.fence, validUntil, waitedMs: performance.now() - start });
    }
    return this.handOut(lock);
  }

  #count(key: string, delta: 1 | -1): void {
    const n = (this.#holding.get(key) ?? 0) + delta;
    if (n > 0) this.#holding.set(key, n);
    else this.#holding.delete(key);
  }
}

/**
 * A read-write lock on etcd: `read` admits any number of holders of a key at once, `write` one, and
 * never beside a reader. Keys are those of etcd's Go `contrib/recipes` RWMutex on the name
 * `<prefix><key>` (`<name>/read/…`, `<name>/write/…`), so it excludes Go programs using that recipe
 * on the same name. Served in arrival order (create revision), writer-preferring (a waiting writer
 * stops new readers) and woken by watches, never by polling. Every hold is a {@link Lock}: its token
 * is its etcd key, its fence that key's create revision (one counter for both modes). Holds of one
 * side and TTL share one session (lease). Closing it does not close the EtcdClient.
 */
export class EtcdRWLock {
  /** Shared holds: any number at once, none while an older writer holds or waits. */
  readonly read: Locker;
  /** Exclusive holds: one at a time, once every older reader and writer is gone. */
  readonly write: Locker;
  readonly #prefix: string;

  /**
   * @param client - the etcd client both sides use; not closed by {@link EtcdRWLock.close}
   * @param opts - `prefix` (default `'wirelock/'`, as EtcdLocker's) and the default `ttlMs` (10000)
   */
  constructor(client: EtcdClient, opts: LockerOptions = {}) {
    const { prefix, ttlMs } = etcdLockerOptions('EtcdRWLock', client, opts);
    this.#prefix = prefix;
    const reads = new EtcdRWLockSide(client, { mode: 'read', prefix, ttlMs });
    this.read = reads;
    this.write = new EtcdRWLockSide(client, { mode: 'write', prefix, ttlMs, reads });
  }

  /** The etcd name of a key's lock (what Go's `recipe.NewRWMutex(session, name)` takes): its keys are `<name>/read/…` and `<name>/write/…`. */
  lockName(key: string): string {
    return this.#prefix + key;
  }

  /** Closes both sides: releases what they hold, rejects their pending acquires, revokes their sessions. */
  async close(): Promise<void> {
    await Promise.all([this.read.close(), this.write.close()]);
  }
}
