/**
 * EtcdSemaphore: a counting semaphore on etcd. Key `k` admits up to `limit` holders at once. Each
 * permit is a Lock as EtcdLocker's locks are: its token is its etcd key, its fence that key's create
 * revision (strictly increasing across all permits of `k`), its lease the locker's session for its
 * TTL (with autoExtend: false, a lease of its own), its signal aborted when the key or the lease goes.
 *
 * Layout: each contender writes one empty key on its session's lease,
 *
 *     <prefix><k>/<lease id in hex>-<n in hex>        n counts this locker's attempts
 *
 * and a key holds a permit while fewer than `limit` keys under `<prefix><k>/` are older (have a lower
 * create revision). Older keys only ever go, so a key that holds keeps holding, and at any revision
 * only the `limit` oldest keys hold. The mutex's key is `<name>/<lease hex>`, one per session; here
 * one session may hold several permits of one key at once, so each attempt names a key of its own.
 *
 *  1. enqueue (one Txn): if our key does not exist (create_revision == 0), put it and range every key
 *     of the name (keys only). Nothing in that range is newer than our put, so all the others are
 *     older: fewer than `limit` of them, and the permit is ours in one round trip. Otherwise (a Txn
 *     retried after an unknown outcome) read our key's create revision and the same range.
 *  2. wait: one watch on the name's prefix, DELETE events only. The delete of a key in our set of
 *     older keys takes it out; any other delete costs nothing. Nothing is sent while `limit` or more
 *     remain, so a release makes one waiter send anything: the one left with `limit - 1` older keys.
 *  3. check (one Txn): if our key still has its create revision, range the keys older than it
 *     (max_create_revision = ours - 1). Fewer than `limit`: the permit is ours. The compare is the
 *     re-check the mutex makes before a grant (etcd 3.4's Go mutex omits it: a waiter whose lease
 *     expired while it queued would hold for nobody).
 *  4. hold: the same watch reports the deletion of our own key: the permit is lost ('session-expired'
 *     if the lease is gone, else 'stolen'). The session's end ends it too.
 *  5. release: etcd-queue's guarded delete (compare our create revision): never another's key.
 *
 * FIFO: a waiter's set holds the key of every older waiter, so it is admitted only after all of them.
 *
 * The set only ever shrinks (by a delete seen, or by a read that no longer has a key), and keys
 * created after ours never enter it: it always contains every older key still there, so it can admit
 * late, never early. A waiter's watch starts "now" (start_revision 0), which etcd serves at once; one
 * from the enqueue's revision + 1 is served by etcd's 100 ms catch-up loop once the store has moved
 * on (etcd-queue.ts). Its "created" answer says after which revision it reports every delete; if that
 * is later than our last read, a delete in between may have gone unseen, and step 3 reads the set
 * again (while the holders still hold: off the handoff's path). A contender that holds at once
 * watches from the enqueue's revision + 1: exact, and a late event only delays the news of a loss.
 */
import type { EtcdClient } from '../etcdrpc/client.js';
import { WatchFilter, type Event, type KeyValue, type ResponseHeader } from '../etcdrpc/types.js';
import type { Watcher } from '../etcdrpc/watch.js';
import { lockChannels } from '../diagnostics.js';
import { noop } from '../abort.js';
import { LockLostError, WatchCompactedError } from '../errors.js';
import { BaseLocker } from './base-locker.js';
import { HeldLock } from './held-lock.js';
import { EtcdHold, SessionPool, abandonAttempt, endAttempt, etcdLockerOptions, onFreshLease, persist, type Attempt } from './etcd-attempts.js';
import { assertSessionLive, deleteOwnKey, lost, ownsKey, prefixRange, whyKeyDeleted, type QueueEntry } from './etcd-queue.js';
import { checkLimit, resolveAcquire, type ResolvedAcquire } from './options.js';
import type { AcquireOptions, Lock, SemaphoreOptions } from './types.js';
import type { Wait } from './waiting.js';

const EMPTY = Buffer.alloc(0);
const ONLY_DELETES = [WatchFilter.NOPUT];

/** Where our key stands: its create revision (the fence), and the keys older than it at `header.revision`. */
interface Standing {
  rev: bigint;
  header: ResponseHeader;
  older: KeyValue[];
}

/** Step 1: the one Txn that puts our key in line (or finds it there) and reads the keys ahead of it. */
async function enqueue(e: QueueEntry, signal: AbortSignal | undefined): Promise<Standing> {
  const everyKey = { request_range: { ...prefixRange(e.aheadPrefix), keys_only: true } };
  const res = await e.client.txn(
    {
      compare: [ownsKey(e.key, 0n)],
      success: [{ request_put: { key: e.key, value: EMPTY, lease: e.session.lease } }, everyKey],
      failure: [{ request_range: { key: e.key } }, everyKey],
    },
    { idempotent: true, signal },
  );
  const rev = res.succeeded ? res.header.revision : res.responses[0]!.response_range!.kvs[0]!.create_revision;
  const older = res.responses[1]!.response_range!.kvs.filter((kv) => kv.create_revision < rev);
  return { rev, header: res.header, older };
}

/** Step 3: the keys older than ours now, or null if our key is no longer ours. */
async function check(e: QueueEntry, rev: bigint, signal: AbortSignal | undefined): Promise<Standing | null> {
  const older = { ...prefixRange(e.aheadPrefix), keys_only: true, max_create_revision: rev - 1n };
  const res = await e.client.txn({ compare: [ownsKey(e.key, rev)], success: [{ request_range: older }] }, { idempotent: true, signal });
  return res.succeeded ? { rev, header: res.header, older: res.responses[0]!.response_range!.kvs } : null;
}

/**
 * One contender's key from its enqueue to its end: the set of older keys it waits on, and the one
 * watch (deletes under the name) that shrinks the set while it waits and reports the deletion of its
 * own key while it holds. The session's end is the end of either.
 */
class Contender {
  /** Our key's create revision: the fence. */
  readonly rev: bigint;
  /** Txns that asked for the permit: the enqueue, then each check. */
  attempts = 1;
  readonly #e: QueueEntry;
  readonly #limit: number;
  /** Keys older than ours that may still be there (it holds every one that is). */
  readonly #older: Set<string>;
  /** The revision of our last read of the older keys. */
  #lastRead: bigint;
  /** The watch reports every delete after this revision; undefined until its "created" answer says. */
  #watchedAfter: bigint | undefined;
  #watch: Watcher;
  #wait: Wait | undefined;
  #lock: HeldLock | undefined;
  /** Why the wait must end (a LockLostError, a watch error); undefined while it may go on. */
  #failure: unknown;
  readonly #ended = (reason: Error): void => this.#lose(lost(this.#e.name, 'session-expired', reason));
  readonly #renewed = (validUntil: number): void => this.#lock?.renewed(validUntil);

  constructor(e: QueueEntry, standing: Standing, limit: number, state: 'holds' | 'waits') {
    this.#e = e;
    this.rev = standing.rev;
    this.#limit = limit;
    this.#older = new Set(standing.older.map((kv) => kv.key.toString()));
    this.#lastRead = standing.header.revision;
    this.#watch = this.#startWatch(state === 'holds' ? this.#lastRead + 1n : 0n);
    e.session.onEnded(this.#ended); // at once if the lease is gone already
    e.session.onRenewed(this.#renewed);
  }

  /** Steps 2-3: resolves when a check finds fewer than `limit` older keys. Rejects when the wait ends or the key is lost. */
  async admitted(wait: Wait): Promise<void> {
    this.#wait = wait;
    for (;;) {
      this.#published();
      while (this.#failure === undefined && !this.#gap() && this.#older.size >= this.#limit) await wait.pause(Infinity);
      this.#throwIfFailed();
      this.attempts++;
      const standing = await persist(wait, () => check(this.#e, this.rev, wait.signal));
      this.#throwIfFailed();
      if (!standing) throw await whyKeyDeleted(this.#e);
      this.#lastRead = standing.header.revision;
      if (standing.older.length < this.#limit) return;
      this.#narrow(standing.older);
    }
  }

  /** The permit is held: from now on the watch and the session end `lock`. A loss that came first ends it at once. */
  held(lock: HeldLock): void {
    this.#lock = lock;
    this.#wait = undefined;
    this.#older.clear(); // only our own key's deletion matters now
    if (this.#failure instanceof LockLostError) lock.lose(this.#failure.reason, this.#failure.cause);
  }

  stop(): void {
    this.#watch.cancel();
    this.#e.session.offEnded(this.#ended);
    this.#e.session.offRenewed(this.#renewed);
  }

  /** Watches deletes under the name from `from` (0: from now on, as the "created" answer will say). */
  #startWatch(from: bigint): Watcher {
    this.#watchedAfter = from > 0n ? from - 1n : undefined;
    const { key, range_end } = prefixRange(this.#e.aheadPrefix);
    return this.#e.client.watch(key, { range_end, filters: ONLY_DELETES, start_revision: from }, {
      onEvents: (events) => this.#deleted(events),
      onError: (err) => this.#watchEnded(err),
      onCreated: (header) => this.#created(header),
    });
  }

  #created(header: ResponseHeader): void {
    this.#watchedAfter ??= header.revision; // a re-creation after a stream break resumes where it was
    if (!this.#gap()) return;
    if (this.#lock) void this.#recheckHeld();
    else this.#wait?.wake();
  }

  #deleted(events: Event[]): void {
    for (const ev of events) {
      const key = ev.kv!.key.toString();
      if (key === this.#e.key) {
        void whyKeyDeleted(this.#e).then((err) => this.#lose(err));
        return;
      }
      this.#older.delete(key);
      if (this.#older.size < this.#limit) this.#wait?.wake();
    }
  }

  /** The watch ended on its own. */
  #watchEnded(err: Error): void {
    if (err instanceof WatchCompactedError) {
      this.#watch = this.#startWatch(0n); // its history was compacted away (a long outage): watch from now, and read again
      return;
    }
    if (!this.#lock) this.#fail(err); // the client closed, or permission: a holder is still ended by its session
  }

  /** A holder whose watch began after its last read: one read tells whether our key is still ours. */
  async #recheckHeld(): Promise<void> {
    const standing = await check(this.#e, this.rev, undefined).catch(noop); // unanswered: the lease still bounds the hold
    if (standing === null) this.#lose(await whyKeyDeleted(this.#e));
    else if (standing) this.#lastRead = standing.header.revision;
  }

  /** The watch began after our last read: a delete in between may have gone unseen. */
  #gap(): boolean {
    return this.#watchedAfter !== undefined && this.#watchedAfter > this.#lastRead;
  }

  /** Keeps only the keys a later read still has (a delete the watch reported meanwhile stays seen). */
  #narrow(stillThere: KeyValue[]): void {
    const keys = new Set(stillThere.map((kv) => kv.key.toString()));
    for (const key of this.#older) if (!keys.has(key)) this.#older.delete(key);
  }

  #lose(err: LockLostError): void {
    if (this.#lock) this.#lock.lose(err.reason, err.cause);
    else this.#fail(err);
  }

  #fail(reason: unknown): void {
    this.#failure ??= reason;
    this.#wait?.wake();
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  #published(): void {
    if (lockChannels.wait.hasSubscribers) {
      lockChannels.wait.publish({ backend: 'etcd', key: this.#e.name, token: this.#e.key, revision: this.#lastRead, attempts: this.attempts });
    }
  }
}

/**
 * A counting semaphore on etcd: key `k` admits up to `limit` holders at once, served in arrival
 * order (create revision) and woken by a watch, never by polling. Each permit is a {@link Lock} with
 * its own etcd key `<prefix><k>/<lease hex>-<n hex>` as its token and that key's create revision as
 * its fence (strictly increasing across all permits of `k`). Permits of one TTL share one session
 * (lease), created on first use, so one locker can hold several permits of one key. Closing it
 * releases its permits and revokes its sessions; it does not close the EtcdClient.
 */
export class EtcdSemaphore extends BaseLocker {
  /** How many holders one key admits at once. */
  readonly limit: number;
  readonly #client: EtcdClient;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #sessions: SessionPool;
  /** Attempts begun: the last part of each key, so that one session's keys never collide. */
  #attempts = 0;

  constructor(client: EtcdClient, opts: SemaphoreOptions) {
    super('etcd');
    const { prefix, ttlMs } = etcdLockerOptions('EtcdSemaphore', client, opts, 'EtcdSemaphore needs options with a limit');
    this.limit = checkLimit(opts.limit);
    this.#client = client;
    this.#sessions = new SessionPool(client);
    this.#prefix = prefix;
    this.#ttlMs = ttlMs;
  }

  /** The etcd name of a key's semaphore: its permits' keys are `<name>/<lease hex>-<n hex>`. */
  lockName(key: string): string {
    return this.#prefix + key;
  }

  /**
   * Joins the key's line and waits until fewer than `limit` older contenders are left. Rejects with
   * LockTimeoutError after `waitTimeoutMs`, with `signal.reason` on abort, with ClosedError if the
   * locker closes; an unreachable or slow cluster is retried (with backoff) until then, keeping the
   * place in line.
   */
  async acquire(key: string, opts?: AcquireOptions): Promise<Lock> {
    const o = resolveAcquire(key, opts, this.#ttlMs);
    this.checkOpen();
    const start = performance.now();
    if (o.waitTimeoutMs === 0) return this.onlyOnce(key, start, o, () => this.tryAcquire(key, opts));
    return this.waitFor(key, start, o, async (wait) => (await onFreshLease(wait, o, () => this.#permit(key, o, start, wait)))!);
  }

  /** One attempt: a permit, or null if `limit` older contenders are in line (our key is deleted again). */
  async tryAcquire(key: string, opts?: AcquireOptions): Promise<Lock | null> {
    const o = resolveAcquire(key, opts, this.#ttlMs);
    this.checkOpen();
    const start = performance.now();
    return onFreshLease(undefined, o, () => this.#permit(key, o, start, undefined));
  }

  /** Releases every permit, then revokes the sessions' leases. Does not close the client. */
  override async close(): Promise<void> {
    if (this.closed) return;
    await super.close();
    await this.#sessions.close();
  }

  /** One attempt: a key in line, then (with a `wait`) the wait for its turn. Null: not admitted, and no wait. */
  async #permit(key: string, o: ResolvedAcquire, start: number, wait: Wait | undefined): Promise<HeldLock | null> {
    const signal = wait?.signal ?? o.signal;
    const a = await persist(wait, () => this.#begin(key, o, signal));
    const contender = await this.#inLine(a, signal, wait);
    return contender && this.#hold(a, contender, start);
  }

  /**
   * Steps 1-3: the contender, once admitted; null if it was not and there is no `wait` (its key is
   * deleted again). Whatever a failure leaves behind is cleaned up in the background.
   */
  async #inLine(a: Attempt, signal: AbortSignal | undefined, wait: Wait | undefined): Promise<Contender | null> {
    let rev: bigint | undefined;
    let contender: Contender | undefined;
    try {
      const standing = await persist(wait, () => enqueue(a.entry, signal));
      rev = standing.rev;
      if (standing.older.length < this.limit) {
        assertSessionLive(a.entry);
        return new Contender(a.entry, standing, this.limit, 'holds');
      }
      if (!wait) {
        await deleteOwnKey(a.entry, rev); // out of the line again before saying no
        void endAttempt(a);
        return null;
      }
      contender = new Contender(a.entry, standing, this.limit, 'waits');
      await contender.admitted(wait);
      if (wait.signal.aborted) throw wait.signal.reason; // admitted after the wait ended: give it back
      assertSessionLive(a.entry);
      return contender;
    } catch (err) {
      contender?.stop();
      void abandonAttempt(a, rev, err);
      throw err;
    }
  }

  /** The session (shared per TTL, or the permit's own) and the key this attempt writes. */
  #begin(key: string, o: ResolvedAcquire, signal: AbortSignal | undefined): Promise<Attempt> {
    const name = this.#prefix + key;
    const n = (++this.#attempts).toString(16);
    return this.#sessions.begin(o, signal, (session) => ({ client: this.#client, session, name: key, key: `${name}/${session.leaseHex}-${n}`, aheadPrefix: name }));
  }

  /** The permit is ours: a HeldLock that follows the session, ended by the contender when the key or the lease goes. */
  #hold(a: Attempt, contender: Contender, start: number): HeldLock {
    const { entry, session } = a;
    const ops = new EtcdHold(a, contender.rev);
    const lock = new HeldLock({
      backend: 'etcd',
      key: entry.name,
      token: entry.key,
      fence: contender.rev,
      validUntil: session.validUntil,
      ttlMs: session.ttl * 1000,
      autoExtend: false, // the session renews the lease; the permit only follows it
      localExpiry: false, // the session's own timer ends it at validUntil (through the contender)
      keepsAlive: session.keepsAlive,
      ops,
      onEnd: (l) => {
        contender.stop();
        this.forget(l);
        // Lost (not released): delete what may be left of our key without waiting for release().
        if (l.endReason instanceof LockLostError) void ops.release().catch(noop);
      },
    });
    contender.held(lock);
    if (lockChannels.acquire.hasSubscribers) {
      const { validUntil } = lock;
      lockChannels.acquire.publish({ backend: 'etcd', key: lock.key, token: lock.token, fence: lock.fence, validUntil, waitedMs: performance.now() - start, attempts: contender.attempts });
    }
    return this.handOut(lock);
  }
}
