/**
 * Mutex: etcd's lock recipe, key for key compatible with etcd's Go `concurrency.Mutex` (and so with
 * `etcdctl lock <name>`), with the waiting done better.
 *
 * Layout: every contender writes `<name>/<its lease ID in lowercase hex>` (empty value, attached to
 * its session's lease). The key with the lowest create revision holds the lock; the rest queue
 * behind it in create-revision order. A crashed holder's key goes with its lease.
 *
 * lock():
 *  1. One Txn: if our key does not exist (create_revision == 0), put it and read the two newest keys
 *     under the prefix (ours and the one just before it); otherwise read our key and the oldest one.
 *     Retried safely after an Unavailable answer: the second run takes the "exists" branch.
 *  2. No key older than ours: we hold the lock (one round trip in all).
 *  3. Otherwise wait for the deletion of the *immediate* predecessor only (no thundering herd),
 *     watching from the revision after the one we read it at: a watch from an older revision is
 *     "unsynced" and etcd only serves those every 100 ms. We also watch our own key, so a lost
 *     lease fails the wait at once instead of being discovered later (and never turns into a grant).
 *  4. When the predecessor goes, one Txn checks that our key is still ours (create revision
 *     unchanged) and reads the newest older key: none means we hold the lock; else wait on that one.
 *     The check matters: etcd 3.4's Go mutex grants the lock to a waiter whose lease expired while
 *     it queued (two holders).
 *  5. Aborted, timed out, or lost while waiting: delete our key (guarded by its create revision).
 *
 * The fence is our key's create revision: strictly increasing across holders of the same name.
 * isOwner() is the compare that makes any Txn conditional on still holding the lock.
 */
import type { EtcdClient } from '../etcdrpc/client.js';
import { prefixEnd } from '../etcdrpc/codec.js';
import { WatchCompactedError } from '../etcdrpc/watch.js';
import { CompareResult, CompareTarget, SortOrder, SortTarget, WatchFilter } from '../etcdrpc/types.js';
import type { Compare, KeyValue, ResponseHeader, TxnRequest, TxnResponse } from '../etcdrpc/types.js';
import type { CallOptions } from '../etcdrpc/transport.js';
import { channels } from '../diagnostics.js';
import { MAX_TIMER_MS, noop, onAbort } from '../abort.js';
import { ClosedError, EtcdError, LockLostError, LockReleasedError, LockTimeoutError, type LockLostReason } from '../errors.js';
import { Session } from './etcd-session.js';

export interface MutexLockOptions {
  /** Aborts the wait (the key is deleted); lock() rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Give up after this many ms with LockTimeoutError. Default Infinity; 0 means one attempt. */
  waitTimeoutMs?: number;
}

const EMPTY = Buffer.alloc(0);
const ONLY_DELETES = [WatchFilter.NOPUT];
/** Our own key was deleted: why is decided afterwards (lease gone, or someone deleted it). */
const KEY_DELETED = Symbol('key deleted');

type State = 'idle' | 'locking' | 'held';

/** The signal of a mutex that was never locked: already aborted. */
const NEVER_LOCKED = AbortSignal.abort(new Error('this mutex has not been locked yet'));

/** The key of Mutex's end-of-hold hook (module-internal: not exported from the package). */
export const HOLD_ENDED = Symbol('wirelock.mutex.holdEnded');

export class Mutex {
  readonly session: Session;
  /** The lock's name: keys are `<name>/<lease hex>`, as `etcdctl lock <name>` writes them. */
  readonly name: string;
  /**
   * Called once when a hold ends, with the reason `signal` aborts with. For EtcdLocker, which
   * follows its Mutex this way rather than through `signal`: an AbortSignal with a listener costs
   * about 1 KB, and most holders never look at one.
   */
  [HOLD_ENDED]: ((reason: Error) => void) | undefined;
  readonly #client: EtcdClient;
  readonly #myKey: string;
  #myRev = -1n;
  #header: ResponseHeader | undefined;
  #state: State = 'idle';
  /** Made when `signal` is first read (or already aborted with #endReason); undefined otherwise. */
  #controller: AbortController | undefined;
  /** Why the last hold ended; undefined while held, and before the first hold. */
  #endReason: Error | undefined;
  /** Ends the hold when the session ends; registered with the session while held. */
  readonly #onSessionEnded = (reason: Error): void => this.#end(this.#lost('session-expired', reason));

  constructor(session: Session, name: string) {
    if (!(session instanceof Session)) throw new TypeError('Mutex needs a Session');
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('mutex name must be a non-empty string');
    this.session = session;
    this.#client = session.client;
    this.name = name;
    this.#myKey = `${name}/${session.leaseHex}`;
  }

  /** Our key, `<name>/<lease hex>`. */
  get key(): string {
    return this.#myKey;
  }

  /** Our key's create revision while held (the fencing token); -1n otherwise. */
  get fence(): bigint {
    return this.#myRev;
  }

  /** The header of the answer that granted the lock. */
  get header(): ResponseHeader | undefined {
    return this.#header;
  }

  get held(): boolean {
    return this.#state === 'held';
  }

  /** Aborts when the hold ends: LockLostError (key deleted, session lost) or LockReleasedError. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      if (this.#state !== 'held' && !this.#endReason) return NEVER_LOCKED;
      this.#controller = new AbortController();
      if (this.#state !== 'held') this.#controller.abort(this.#endReason);
    }
    return this.#controller.signal;
  }

  /** Compare for a Txn: true only while our key still has the create revision it was granted with. */
  isOwner(): Compare {
    return { key: this.#myKey, target: CompareTarget.CREATE, result: CompareResult.EQUAL, create_revision: this.#myRev };
  }

  /** A Txn that applies only while we hold the lock (isOwner() is added to its compares). */
  guardedTxn(req: TxnRequest, opts?: CallOptions): Promise<TxnResponse> {
    if (this.#myRev < 0n) return Promise.reject(new LockLostError(this.name, 'expired'));
    return this.#client.txn({ ...req, compare: [this.isOwner(), ...(req.compare ?? [])] }, opts);
  }

  /** Waits until held. Rejects with LockLostError('session-expired') if the session ends meanwhile. */
  async lock(opts: MutexLockOptions = {}): Promise<void> {
    const { signal, waitTimeoutMs } = checkLockOptions(opts);
    const start = performance.now();
    if (waitTimeoutMs === 0) {
      // One attempt: a 0 ms deadline would otherwise cancel it while on the wire.
      if (!(await this.tryLock({ signal }))) throw new LockTimeoutError(this.name, performance.now() - start);
      return;
    }
    this.#begin();
    // A controller of our own only when there is a deadline to add to the caller's signal.
    const controller = waitTimeoutMs > MAX_TIMER_MS ? undefined : new AbortController();
    const offCaller = controller ? onAbort(signal, (reason) => controller.abort(reason)) : noop;
    const timer = controller && setTimeout(() => controller.abort(new LockTimeoutError(this.name, performance.now() - start)), waitTimeoutMs);
    const waitSignal = controller?.signal ?? signal;
    try {
      const first = await this.#enqueue(waitSignal);
      const header = first.acquired ? first.header : await this.#wait(first.pred, first.header.revision, waitSignal);
      this.#hold(header);
      if (channels.lockAcquire.hasSubscribers) {
        channels.lockAcquire.publish({ backend: 'etcd', key: this.name, token: this.#myKey, fence: this.#myRev, waitedMs: performance.now() - start });
      }
    } catch (err) {
      this.#state = 'idle';
      throw err;
    } finally {
      clearTimeout(timer);
      offCaller();
    }
  }

  /** One attempt: true if held now, false (our key removed again) if someone else holds it. */
  async tryLock(opts: { signal?: AbortSignal } = {}): Promise<boolean> {
    const { signal } = checkLockOptions(opts);
    this.#begin();
    try {
      const first = await this.#enqueue(signal);
      if (!first.acquired) {
        await this.#deleteKey();
        this.#state = 'idle';
        return false;
      }
      this.#hold(first.header);
      return true;
    } catch (err) {
      this.#state = 'idle';
      throw err;
    }
  }

  /** Deletes our key if it is still the one we were granted. Idempotent; also cleans up after a loss. */
  async unlock(): Promise<void> {
    if (this.#state === 'locking') throw new Error('unlock() while lock() is in progress: abort lock() instead');
    if (this.#state === 'held') this.#end(new LockReleasedError(this.name));
    if (this.#myRev < 0n) return;
    await this.#deleteKey();
    this.#myRev = -1n;
  }

  #begin(): void {
    if (this.#state !== 'idle') throw new Error(`mutex "${this.name}" is already ${this.#state === 'held' ? 'held' : 'being locked'}`);
    if (this.session.signal.aborted) throw this.#lost('session-expired', this.session.signal.reason);
    this.#state = 'locking';
    this.#myRev = -1n;
  }

  /** Step 1: the one Txn that queues us (or finds us queued already) and tells us where we stand. */
  async #enqueue(signal: AbortSignal | undefined): Promise<{ header: ResponseHeader; acquired: boolean; pred?: KeyValue }> {
    const key = this.#myKey;
    const queue = this.#queueRange();
    let res: TxnResponse;
    try {
      res = await this.#client.txn(
        {
          compare: [{ key, target: CompareTarget.CREATE, result: CompareResult.EQUAL, create_revision: 0n }],
          success: [
            { request_put: { key, value: EMPTY, lease: this.session.lease } },
            // The two newest keys: ours, and the one we would wait on. (Go reads the oldest instead
            // and needs a second Range to find its predecessor.)
            { request_range: { ...queue, sort_order: SortOrder.DESCEND, sort_target: SortTarget.CREATE, limit: 2 } },
          ],
          failure: [
            { request_range: { key } },
            { request_range: { ...queue, sort_order: SortOrder.ASCEND, sort_target: SortTarget.CREATE, limit: 1 } },
          ],
        },
        { idempotent: true, signal },
      );
    } catch (err) {
      // The Txn may have been applied, or may yet be (a paused member applies it on resume), long
      // after any clean-up we send now. Delete what may be there already, and mark the session so its
      // owner ends the lease, which is the only sure way to remove a key that lands later.
      if (!isDefiniteFailure(err)) {
        this.session.markUncertain();
        this.#client.deleteRange({ key }).catch(noop);
      }
      throw err;
    }
    const header = res.header;
    if (res.succeeded) {
      this.#myRev = header.revision;
      const pred = res.responses[1]!.response_range!.kvs.find((kv) => kv.create_revision < this.#myRev);
      return { header, acquired: pred === undefined, pred };
    }
    // Our key was there already (a retried Txn, or an earlier attempt of this session): reuse it.
    this.#myRev = res.responses[0]!.response_range!.kvs[0]!.create_revision;
    const owner = res.responses[1]!.response_range!.kvs[0];
    return { header, acquired: owner === undefined || owner.create_revision === this.#myRev };
  }

  /**
   * Steps 3-5: resolves with the header of the answer that showed no one ahead of us.
   *
   * Watches are created with start_revision 0 ("from now on"), which etcd serves at once ("synced").
   * Starting them at (the revision we read) + 1 would be exact, but under contention the store has
   * moved past it by the time the create arrives, and such a watch is served by the 100 ms loop.
   * So each watch's "created" answer says from which revision W it sees everything; if W is later
   * than our last read, one more read covers the gap (did the key go in between?). That read
   * happens while the predecessor still holds the lock: off the handoff's critical path.
   */
  async #wait(pred: KeyValue | undefined, lastRead: bigint, signal: AbortSignal | undefined): Promise<ResponseHeader> {
    let failure: unknown;
    let predGone = false;
    let ownFrom = 0n; // first revision (minus one) each watch is sure to report
    let predFrom = 0n;
    let wake: (() => void) | undefined;
    const poke = (): void => wake?.();
    const fail = (reason: unknown): void => {
      failure ??= reason;
      poke();
    };
    // Our own key too: if our lease goes while we queue, its deletion ends the wait at once.
    const ownWatch = this.#client.watch(this.#myKey, { filters: ONLY_DELETES }, {
      onEvents: () => fail(KEY_DELETED),
      onError: (err) => err instanceof WatchCompactedError || fail(err), // the next check will tell
      onCreated: (h) => ((ownFrom ||= h.revision), poke()),
    });
    const offSession = onAbort(this.session.signal, (reason) => fail(this.#lost('session-expired', reason)));
    const offSignal = onAbort(signal, fail);
    let watcher: { cancel(): void } | undefined;
    try {
      for (;;) {
        if (!pred) {
          const check = await this.#check(signal);
          if (failure !== undefined) break;
          if (!check.succeeded) fail(KEY_DELETED);
          if (failure !== undefined) break;
          pred = check.responses[0]!.response_range!.kvs[0];
          if (!pred) return check.header;
          lastRead = check.header.revision;
        }
        if (channels.lockWait.hasSubscribers) {
          channels.lockWait.publish({ backend: 'etcd', key: this.name, token: this.#myKey, predecessor: pred.key.toString(), revision: lastRead });
        }
        predGone = false;
        predFrom = 0n;
        watcher = this.#client.watch(pred.key, { filters: ONLY_DELETES }, {
          onEvents: () => ((predGone = true), poke()),
          // A compacted revision means much has happened since: look again rather than fail.
          onError: (err) => (err instanceof WatchCompactedError ? ((predGone = true), poke()) : fail(err)),
          onCreated: (h) => ((predFrom ||= h.revision), poke()),
        });
        for (;;) {
          // Both watches in place, and one of them started after our last read: that leaves a gap.
          const gap = (): boolean => ownFrom > 0n && predFrom > 0n && (ownFrom > lastRead || predFrom > lastRead);
          while (!predGone && failure === undefined && !gap()) {
            await new Promise<void>((resolve) => (wake = resolve));
            wake = undefined;
          }
          if (predGone || failure !== undefined) break;
          // A watch started after our last read: read again, so a deletion in between is not missed.
          const check = await this.#check(signal);
          if (failure !== undefined) break;
          if (!check.succeeded) {
            fail(KEY_DELETED);
            break;
          }
          lastRead = check.header.revision;
          const now = check.responses[0]!.response_range!.kvs[0];
          if (!now) return check.header;
          if (now.create_revision !== pred.create_revision) break; // ours went: wait on the new one
        }
        watcher.cancel();
        watcher = undefined;
        pred = undefined;
        if (failure !== undefined) break;
      }
    } catch (err) {
      failure ??= err;
    } finally {
      watcher?.cancel();
      ownWatch.cancel();
      offSession();
      offSignal();
    }
    // Step 5: out of the queue, and say why.
    const reason = failure === KEY_DELETED ? await this.#whyKeyDeleted() : failure;
    await this.#deleteKey().catch(noop);
    throw reason;
  }

  /** Step 4 in one Txn: is our key still ours, and who is the newest key older than it? */
  #check(signal: AbortSignal | undefined): Promise<TxnResponse> {
    return this.#client.txn(
      {
        compare: [this.isOwner()],
        success: [
          {
            request_range: {
              ...this.#queueRange(),
              sort_order: SortOrder.DESCEND,
              sort_target: SortTarget.CREATE,
              max_create_revision: this.#myRev - 1n,
              limit: 1,
            },
          },
        ],
      },
      { idempotent: true, signal },
    );
  }

  /** Every key of this mutex's queue, `<name>/` up to its prefix end (made when asked: held locks need none). */
  #queueRange(): { key: Buffer; range_end: Buffer } {
    const key = Buffer.from(`${this.name}/`);
    return { key, range_end: prefixEnd(key) };
  }

  /**
   * While held, loss is the session's business: its renewals (every TTL/3) notice a revoked or
   * expired lease, and its clock ends the hold at the lease's deadline. Watching our own key here
   * as well would cost a watch create and cancel per hold (about a third of the uncontended rate).
   */
  #hold(header: ResponseHeader): void {
    this.#header = header;
    this.#state = 'held';
    this.#controller = undefined; // the last hold's, aborted; a new one is made when asked for
    this.#endReason = undefined;
    this.session.onEnded(this.#onSessionEnded);
  }

  /** The hold ends: abort `signal` with the reason. */
  #end(reason: Error): void {
    if (this.#state !== 'held') return;
    this.#state = 'idle';
    this.session.offEnded(this.#onSessionEnded);
    this.#endReason = reason;
    this.#controller?.abort(reason);
    this[HOLD_ENDED]?.(reason);
  }

  /** Our key vanished: because the lease is gone (ask it once), or because someone deleted it. */
  async #whyKeyDeleted(): Promise<LockLostError> {
    if (!this.session.signal.aborted) await this.session.keepAliveOnce().catch(noop);
    return this.session.signal.aborted ? this.#lost('session-expired', this.session.signal.reason) : this.#lost('stolen');
  }

  #lost(reason: LockLostReason, cause?: unknown): LockLostError {
    return new LockLostError(this.name, reason, cause === undefined ? undefined : { cause });
  }

  /** Deletes our key only if it still has our create revision (never a later incarnation of it). */
  async #deleteKey(): Promise<void> {
    if (this.#myRev < 0n) return;
    try {
      await this.#client.txn({ compare: [this.isOwner()], success: [{ request_delete_range: { key: this.#myKey } }] }, { idempotent: true });
    } catch (err) {
      if (!(err instanceof ClosedError)) throw err;
    }
  }
}

/** Errors after which the Txn was certainly not applied: refused by etcd before it ran, or never sent. */
function isDefiniteFailure(err: unknown): boolean {
  if (err instanceof EtcdError) {
    // INVALID_ARGUMENT, NOT_FOUND (lease gone), PERMISSION_DENIED, UNAUTHENTICATED, FAILED_PRECONDITION
    return [3, 5, 7, 16, 9].includes(err.grpcCode);
  }
  return err instanceof ClosedError;
}

function checkLockOptions(opts: MutexLockOptions): { signal: AbortSignal | undefined; waitTimeoutMs: number } {
  if (opts === null || typeof opts !== 'object') throw new TypeError('lock options must be an object');
  const { signal } = opts;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
  const waitTimeoutMs = opts.waitTimeoutMs ?? Infinity;
  if (typeof waitTimeoutMs !== 'number' || Number.isNaN(waitTimeoutMs) || waitTimeoutMs < 0) {
    throw new RangeError(`waitTimeoutMs must be a number >= 0 (or Infinity), got ${String(waitTimeoutMs)}`);
  }
  if (signal?.aborted) throw signal.reason;
  return { signal, waitTimeoutMs };
}
