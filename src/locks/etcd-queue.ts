/**
 * etcd's queue recipe as functions, the way etcd's Go client keeps `waitDeletes` in `key.go`: every
 * etcd primitive (Mutex, EtcdLocker, and the election, semaphore and RW lock built on them) queues
 * the same way.
 *
 * Every contender writes one key (empty value, on its session's lease). Keys are ordered by create
 * revision: the keys under `<aheadPrefix>/` with a lower create revision than ours stand before us.
 *
 *  1. enqueue: one Txn. If our key does not exist (create_revision == 0), put it and read the two
 *     newest keys of the range (ours, and the one just before it); otherwise read our key and the
 *     oldest one. Safe to retry after an Unavailable answer: the second run takes the "exists" branch.
 *  2. No key ahead of ours: our turn (one round trip in all).
 *  3. waitTurn: wait for the deletion of the *immediate* predecessor only (no thundering herd), and
 *     watch our own key too, so a lost lease ends the wait at once instead of turning into a grant.
 *  4. When the predecessor goes, one Txn checks that our key is still ours (create revision
 *     unchanged) and reads the newest key ahead: none means our turn; else wait on that one.
 *     The check matters: etcd 3.4's Go mutex grants the lock to a waiter whose lease expired while
 *     it queued (two holders).
 *  5. deleteOwnKey: the only delete we ever send, guarded by our create revision, so it can never
 *     remove a later incarnation of the key (the same session writes the same key again).
 */
import type { EtcdClient } from '../etcdrpc/client.js';
import { prefixEnd } from '../etcdrpc/codec.js';
import { CompareResult, CompareTarget, SortOrder, SortTarget, WatchFilter } from '../etcdrpc/types.js';
import type { Compare, KeyValue, ResponseHeader, TxnResponse } from '../etcdrpc/types.js';
import { lockChannels } from '../diagnostics.js';
import { noop } from '../abort.js';
import { ClosedError, LockLostError, WatchCompactedError, type LockLostReason } from '../errors.js';
import type { Session } from './etcd-session.js';
import { retryInBackground, type Wait } from './waiting.js';

/** One contender's key in a queue. */
export interface QueueEntry {
  readonly client: EtcdClient;
  readonly session: Session;
  /** The lock's (or election's) name, for errors and diagnostics. */
  readonly name: string;
  /** Our key: `<name>/<lease hex>` for a mutex. */
  readonly key: string;
  /**
   * The keys that can stand ahead of ours are those under `<aheadPrefix>/` (a mutex: its name). Kept
   * as a string, and made into a range for each read: a held lock then carries no Buffers.
   */
  readonly aheadPrefix: string;
}

/** Where our key stands after step 1. */
export interface Place {
  /** Our key's create revision: the fence. */
  rev: bigint;
  header: ResponseHeader;
  /** No key ahead of ours: our turn. */
  first: boolean;
  /** The newest key ahead of ours, when step 1 read it. */
  pred: KeyValue | undefined;
}

const EMPTY = Buffer.alloc(0);
const ONLY_DELETES = [WatchFilter.NOPUT];

/** Every key under `<prefix>/`, as a range. */
export function prefixRange(prefix: string): { key: Buffer; range_end: Buffer } {
  const key = Buffer.from(`${prefix}/`);
  return { key, range_end: prefixEnd(key) };
}

/** The compare that holds while `key` still has the create revision `rev` (it is still ours). */
export function ownsKey(key: string, rev: bigint): Compare {
  return { key, target: CompareTarget.CREATE, result: CompareResult.EQUAL, create_revision: rev };
}

/** Step 1: the one Txn that queues us (or finds us queued already) and tells us where we stand. */
export async function enqueue(e: QueueEntry, signal: AbortSignal | undefined, value: Buffer = EMPTY): Promise<Place> {
  const res = await e.client.txn(
    {
      compare: [ownsKey(e.key, 0n)],
      success: [
        { request_put: { key: e.key, value, lease: e.session.lease } },
        // The two newest keys: ours, and the one we would wait on. (Go reads the oldest instead
        // and needs a second Range to find its predecessor.)
        { request_range: { ...prefixRange(e.aheadPrefix), sort_order: SortOrder.DESCEND, sort_target: SortTarget.CREATE, limit: 2 } },
      ],
      failure: [
        { request_range: { key: e.key } },
        { request_range: { ...prefixRange(e.aheadPrefix), sort_order: SortOrder.ASCEND, sort_target: SortTarget.CREATE, limit: 1 } },
      ],
    },
    { idempotent: true, signal },
  );
  const header = res.header;
  if (res.succeeded) {
    const rev = header.revision;
    const pred = res.responses[1]!.response_range!.kvs.find((kv) => kv.create_revision < rev);
    return { rev, header, first: pred === undefined, pred };
  }
  // Our key was there already (a retried Txn, or an earlier attempt of this session): reuse it.
  const rev = res.responses[0]!.response_range!.kvs[0]!.create_revision;
  const oldest = res.responses[1]!.response_range!.kvs[0];
  return { rev, header, first: oldest === undefined || oldest.create_revision >= rev, pred: undefined };
}

/** Step 4 in one Txn: is our key still ours, and which is the newest key ahead of it? */
export function checkTurn(e: QueueEntry, rev: bigint, signal: AbortSignal | undefined): Promise<TxnResponse> {
  return e.client.txn(
    {
      compare: [ownsKey(e.key, rev)],
      success: [
        {
          request_range: {
            ...prefixRange(e.aheadPrefix),
            sort_order: SortOrder.DESCEND,
            sort_target: SortTarget.CREATE,
            max_create_revision: rev - 1n,
            limit: 1,
          },
        },
      ],
    },
    { idempotent: true, signal },
  );
}

/** Step 5: deletes our key only if it still has create revision `rev`. Resolves once etcd answered. */
export async function deleteOwnKey(e: QueueEntry, rev: bigint, opts?: { signal?: AbortSignal; timeoutMs?: number }): Promise<void> {
  try {
    await e.client.txn({ compare: [ownsKey(e.key, rev)], success: [{ request_delete_range: { key: e.key } }] }, { idempotent: true, ...opts });
  } catch (err) {
    if (!(err instanceof ClosedError)) throw err; // a closed client: its sessions' leases end the key
  }
}

/**
 * Step 5 in the background, for a key left behind by a wait that ended or a Txn whose outcome is
 * unknown: deletes our key, guarded by `rev` (undefined: by whatever create revision it has now, read
 * first), retried until it is gone or the session ends (which removes it anyway). Never rejects.
 */
export function removeOwnKey(e: QueueEntry, rev: bigint | undefined): Promise<void> {
  return retryInBackground(
    async () => {
      const target = rev ?? (await e.client.range({ key: e.key })).kvs[0]?.create_revision;
      if (target !== undefined) await deleteOwnKey(e, target);
      return true;
    },
    { stop: e.session.signal, backoff: { baseMs: 100, capMs: 2000 } },
  );
}

/** Our key vanished while we queued: because the lease is gone (ask it once), or because someone deleted it. */
export async function whyKeyDeleted(e: QueueEntry): Promise<LockLostError> {
  if (!e.session.signal.aborted) await e.session.keepAliveOnce().catch(noop);
  return e.session.signal.aborted ? lost(e.name, 'session-expired', e.session.signal.reason) : lost(e.name, 'stolen');
}

/**
 * Throws LockLostError('session-expired') unless `e`'s session still vouches for its lease now, the
 * moment a grant would be made. A session is only as good as its validUntil: a lease granted (or
 * renewed) by a member that answered late, say after a SIGSTOP, can arrive with its validUntil
 * already passed, and a key on it proves nothing. The session is marked lost at once, so that a
 * retry (onFreshLease) stands on a new one.
 */
export function assertSessionLive(e: QueueEntry): void {
  const s = e.session;
  if (!s.signal.aborted && s.validUntil <= performance.now()) s.lose(`its validUntil passed before the grant (the lease was granted or renewed ${s.ttl} s or more before the answer came)`);
  if (s.signal.aborted) throw lost(e.name, 'session-expired', s.signal.reason);
}

export function lost(name: string, reason: LockLostReason, cause?: unknown): LockLostError {
  return new LockLostError(name, reason, cause === undefined ? undefined : { cause });
}

/** Our key was deleted while we queued; why is found out afterwards (whyKeyDeleted). */
const KEY_DELETED = Symbol('key deleted');

/**
 * Steps 3-4: resolves with the header of the answer that showed no key ahead of ours. Rejects when
 * `wait` ends, when the session ends (LockLostError 'session-expired'), or when our key is deleted.
 *
 * Watches are created with start_revision 0 ("from now on"), which etcd serves at once ("synced").
 * Starting them at (the revision we read) + 1 would be exact, but under contention the store has
 * moved past it by the time the create arrives, and such a watch is served by the 100 ms loop.
 * So each watch's "created" answer says from which revision it sees everything; if that is later
 * than our last read, one more read covers the gap (did the key go in between?). That read happens
 * while the predecessor still holds the lock: off the handoff's critical path.
 */
export async function waitTurn(e: QueueEntry, place: Place, wait: Wait): Promise<ResponseHeader> {
  const turn = new Turn(e, place.rev, wait);
  try {
    let pred = place.pred;
    let lastRead = place.header.revision;
    for (;;) {
      if (!pred) {
        const check = await turn.check();
        pred = check.pred;
        if (!pred) return check.header;
        lastRead = check.header.revision;
      }
      if (lockChannels.wait.hasSubscribers) {
        lockChannels.wait.publish({ backend: 'etcd', key: e.name, token: e.key, predecessor: pred.key.toString(), revision: lastRead });
      }
      const after = await turn.untilGone(pred, lastRead);
      if (after.header) return after.header;
      pred = after.pred;
      lastRead = after.lastRead;
    }
  } catch (err) {
    throw err === KEY_DELETED ? await whyKeyDeleted(e) : err;
  } finally {
    turn.stop();
  }
}

/** One waitTurn's watches and what they have seen. */
class Turn {
  readonly #e: QueueEntry;
  readonly #rev: bigint;
  readonly #wait: Wait;
  /** Why the wait must end (KEY_DELETED, a LockLostError, a watch error); undefined while it may go on. */
  #failure: unknown;
  /** First revision (minus one) each watch is sure to report; 0 until it is created. */
  #ownFrom = 0n;
  #predFrom = 0n;
  #predGone = false;
  readonly #ownWatch: { cancel(): void };
  #predWatch: { cancel(): void } | undefined;
  readonly #offSession: () => void;

  constructor(e: QueueEntry, rev: bigint, wait: Wait) {
    this.#e = e;
    this.#rev = rev;
    this.#wait = wait;
    // Our own key too: if our lease goes while we queue, its deletion ends the wait at once.
    this.#ownWatch = e.client.watch(e.key, { filters: ONLY_DELETES }, {
      onEvents: () => this.#fail(KEY_DELETED),
      onError: (err) => err instanceof WatchCompactedError || this.#fail(err), // the next check will tell
      onCreated: (h) => {
        this.#ownFrom ||= h.revision;
        wait.wake();
      },
    });
    const onEnded = (reason: Error): void => this.#fail(lost(e.name, 'session-expired', reason));
    e.session.onEnded(onEnded);
    this.#offSession = () => e.session.offEnded(onEnded);
  }

  /** Step 4: our key still ours, and the newest key ahead (if any). */
  async check(): Promise<{ header: ResponseHeader; pred: KeyValue | undefined }> {
    const res = await checkTurn(this.#e, this.#rev, this.#wait.signal);
    this.#throwIfFailed();
    if (!res.succeeded) throw KEY_DELETED;
    return { header: res.header, pred: res.responses[0]!.response_range!.kvs[0] };
  }

  /**
   * Watches `pred` until it is deleted. Resolves with `{ header }` when a re-read found no key ahead
   * (our turn), or with the predecessor to wait on next (`pred` undefined: look again).
   */
  async untilGone(pred: KeyValue, lastRead: bigint): Promise<{ header?: ResponseHeader; pred?: KeyValue; lastRead: bigint }> {
    this.#watchPred(pred);
    try {
      for (;;) {
        // Both watches in place, and one of them started after our last read: that leaves a gap.
        const gap = (): boolean => this.#ownFrom > 0n && this.#predFrom > 0n && (this.#ownFrom > lastRead || this.#predFrom > lastRead);
        while (!this.#predGone && this.#failure === undefined && !gap()) await this.#wait.pause(Infinity);
        this.#throwIfFailed();
        if (this.#predGone) return { lastRead };
        // A watch started after our last read: read again, so a deletion in between is not missed.
        const check = await this.check();
        lastRead = check.header.revision;
        if (!check.pred) return { header: check.header, lastRead };
        if (check.pred.create_revision !== pred.create_revision) return { pred: check.pred, lastRead }; // ours went: wait on the new one
      }
    } finally {
      this.#predWatch?.cancel();
      this.#predWatch = undefined;
    }
  }

  #watchPred(pred: KeyValue): void {
    this.#predGone = false;
    this.#predFrom = 0n;
    const gone = (): void => {
      this.#predGone = true;
      this.#wait.wake();
    };
    this.#predWatch = this.#e.client.watch(pred.key, { filters: ONLY_DELETES }, {
      onEvents: gone,
      // A compacted revision means much has happened since: look again rather than fail.
      onError: (err) => (err instanceof WatchCompactedError ? gone() : this.#fail(err)),
      onCreated: (h) => {
        this.#predFrom ||= h.revision;
        this.#wait.wake();
      },
    });
  }

  #fail(reason: unknown): void {
    this.#failure ??= reason;
    this.#wait.wake();
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  stop(): void {
    this.#predWatch?.cancel();
    this.#ownWatch.cancel();
    this.#offSession();
  }
}
