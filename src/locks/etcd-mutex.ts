/**
 * Mutex: etcd's lock recipe, key for key compatible with etcd's Go `concurrency.Mutex` (and so with
 * `etcdctl lock <name>`), with the waiting done better. The queue algorithm itself (enqueue, wait
 * for the predecessor, guarded delete) is in etcd-queue.ts; this is the Go-shaped object around it.
 *
 * Layout: every contender writes `<name>/<its lease ID in lowercase hex>` (empty value, attached to
 * its session's lease). The key with the lowest create revision holds the lock; the rest queue
 * behind it in create-revision order. A crashed holder's key goes with its lease.
 *
 * lock() is enqueue, then waitTurn if someone is ahead (etcd-queue.ts, steps 1-4). If the wait ends
 * (aborted, timed out, lost) it rejects at that moment; the guarded delete of our key (step 5) goes
 * on in the background. Because one Session writes one key per name, the next lock() or tryLock()
 * on this Mutex first waits for that clean-up (and for any attempt still in flight): a late delete
 * can then never remove the key of a later hold. No delete is ever sent unguarded: when a Txn's
 * outcome is unknown, the clean-up reads the key's create revision first and deletes only that.
 *
 * The fence is our key's create revision: strictly increasing across holders of the same name.
 * isOwner() is the compare that makes any Txn conditional on still holding the lock.
 */
import type { EtcdClient } from '../etcdrpc/client.js';
import { wasNotApplied } from '../etcdrpc/status.js';
import type { Compare, ResponseHeader, TxnRequest, TxnResponse } from '../etcdrpc/types.js';
import type { CallOptions } from '../etcdrpc/transport.js';
import { lockChannels } from '../diagnostics.js';
import { keepAlive, noop, raceAbort } from '../abort.js';
import { LockLostError, LockReleasedError, LockTimeoutError, invalidType, invalidValue, outOfRange } from '../errors.js';
import { Session } from './etcd-session.js';
import { assertSessionLive, deleteOwnKey, enqueue, lost, ownsKey, removeOwnKey, waitTurn, type Place, type QueueEntry } from './etcd-queue.js';
import { gaveUp, waitFor, type Wait } from './waiting.js';

/** Options for {@link Mutex.lock}. */
export interface MutexLockOptions {
  /** Aborts the wait (the key is deleted); lock() rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * Give up after this many ms with LockTimeoutError; 0 means one attempt.
   * @defaultValue `Infinity`
   */
  waitTimeoutMs?: number;
}

type State = 'idle' | 'locking' | 'held';

/** The signal of a mutex that was never locked: already aborted. */
const NEVER_LOCKED = AbortSignal.abort(new Error('this mutex has not been locked yet'));

/**
 * etcd's lock recipe on one Session, key for key compatible with Go's `concurrency.Mutex` and
 * `etcdctl lock <name>`: the contender whose key `<name>/<lease hex>` has the lowest create revision
 * holds it. One Mutex holds at most one lock at a time; for many keys and locks, see EtcdLocker.
 */
export class Mutex {
  /** The session whose lease the mutex's key is written under; the session's end ends the hold. */
  readonly session: Session;
  /** The lock's name: keys are `<name>/<lease hex>`, as `etcdctl lock <name>` writes them. */
  readonly name: string;
  readonly #client: EtcdClient;
  readonly #entry: QueueEntry;
  #myRev = -1n;
  #header: ResponseHeader | undefined;
  #state: State = 'idle';
  /** The last attempt, its clean-up included: the next one starts after it (our key is the same key). */
  #settled: Promise<void> = Promise.resolve();
  /** Made when `signal` is first read (or already aborted with #endReason); undefined otherwise. */
  #controller: AbortController | undefined;
  /** Why the last hold ended; undefined while held, and before the first hold. */
  #endReason: Error | undefined;
  /** Lets the process exit again when the hold ends (a held, renewing lock keeps it alive). */
  #letGo: () => void = noop;
  /** Ends the hold when the session ends; registered with the session while held. */
  readonly #onSessionEnded = (reason: Error): void => this.#end(lost(this.name, 'session-expired', reason));

  constructor(session: Session, name: string) {
    if (!(session instanceof Session)) throw invalidType('Mutex needs a Session');
    if (typeof name !== 'string' || name.length === 0) throw invalidValue('mutex name must be a non-empty string');
    this.session = session;
    this.#client = session.client;
    this.name = name;
    this.#entry = { client: session.client, session, name, key: `${name}/${session.leaseHex}`, aheadPrefix: name };
  }

  /** Our key, `<name>/<lease hex>`. */
  get key(): string {
    return this.#entry.key;
  }

  /** Our key's create revision while held (the fencing token); -1n otherwise. */
  get fence(): bigint {
    return this.#myRev;
  }

  /** The header of the answer that granted the lock. */
  get header(): ResponseHeader | undefined {
    return this.#header;
  }

  /** True from a successful lock() or tryLock() until unlock() or the hold is lost. */
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
    return ownsKey(this.#entry.key, this.#myRev);
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
      const locked = await this.tryLock({ signal }).catch((err: unknown) => {
        throw gaveUp('etcd', this.name, start, signal, err);
      });
      if (locked) return;
      throw gaveUp('etcd', this.name, start, signal, new LockTimeoutError(this.name, performance.now() - start));
    }
    await this.#attempt({ key: this.name, start, waitTimeoutMs, signal, backend: 'etcd' }, (wait, place) =>
      place.first ? Promise.resolve(place.header) : waitTurn(this.#entry, place, wait),
    );
    if (lockChannels.acquire.hasSubscribers) {
      lockChannels.acquire.publish({ backend: 'etcd', key: this.name, token: this.key, fence: this.#myRev, waitedMs: performance.now() - start });
    }
  }

  /** One attempt: true if held now, false (our key removed again) if someone else holds it. */
  async tryLock(opts: { signal?: AbortSignal } = {}): Promise<boolean> {
    const { signal } = checkLockOptions(opts);
    const init = { key: this.name, start: performance.now(), waitTimeoutMs: Infinity, signal };
    const header = await this.#attempt(init, async (_wait, place) => {
      if (place.first) return place.header;
      await deleteOwnKey(this.#entry, place.rev); // out of the queue again before saying no
      return null;
    });
    return header !== null;
  }

  /** Deletes our key if it is still the one we were granted. Idempotent; also cleans up after a loss. */
  async unlock(): Promise<void> {
    if (this.#state === 'locking') throw new Error('unlock() while lock() is in progress: abort lock() instead');
    if (this.#state === 'held') this.#end(new LockReleasedError(this.name));
    if (this.#myRev < 0n) return;
    await deleteOwnKey(this.#entry, this.#myRev);
    this.#myRev = -1n;
  }

  /**
   * One lock() or tryLock(): after the previous attempt has settled, enqueue, then `turn` (wait, or
   * not; null: not our turn, and our key is deleted again). Rejects when the wait ends; whatever it
   * leaves behind is cleaned up before #settled resolves.
   */
  async #attempt(
    init: { key: string; start: number; waitTimeoutMs: number; signal: AbortSignal | undefined; backend?: 'etcd' },
    turn: (wait: Wait, place: Place) => Promise<ResponseHeader | null>,
  ): Promise<ResponseHeader | null> {
    if (this.#state !== 'idle') throw new Error(`mutex "${this.name}" is already ${this.#state === 'held' ? 'held' : 'being locked'}`);
    if (this.session.signal.aborted) throw lost(this.name, 'session-expired', this.session.signal.reason);
    this.#state = 'locking';
    this.#myRev = -1n;
    const prior = this.#settled;
    let settle!: () => void;
    this.#settled = new Promise<void>((resolve) => (settle = resolve));
    let started = false;
    const loop = async (wait: Wait): Promise<ResponseHeader | null> => {
      started = true;
      await raceAbort(prior, wait.signal).catch((err: unknown) => {
        void prior.then(settle); // nothing of ours to clean up: settled when the previous one is
        throw err;
      });
      const place = await this.#enqueue(wait).catch((err: unknown) => {
        settle();
        throw err;
      });
      try {
        const header = await turn(wait, place);
        if (wait.signal.aborted) throw wait.signal.reason; // granted after the wait ended: give it back
        if (header) assertSessionLive(this.#entry);
        settle();
        return header;
      } catch (err) {
        void removeOwnKey(this.#entry, place.rev).then(settle);
        throw err;
      }
    };
    try {
      const header = await waitFor(init, loop, async () => {}); // a late grant gives itself back (in loop)
      if (header) this.#hold(header);
      else this.#state = 'idle';
      return header;
    } catch (err) {
      if (!started) void prior.then(settle); // the wait was over before it began
      this.#state = 'idle';
      this.#myRev = -1n;
      throw err;
    }
  }

  /** Step 1. If its outcome is unknown, the key that may be there is removed before the next attempt. */
  async #enqueue(wait: Wait): Promise<Place> {
    try {
      const place = await enqueue(this.#entry, wait.signal);
      this.#myRev = place.rev;
      return place;
    } catch (err) {
      if (!wasNotApplied(err)) {
        // The Txn may have been applied, or may yet be (a paused member applies it on resume), long
        // after any clean-up we send now. Remove what is there by its create revision, and mark the
        // session so its owner ends the lease, which is the only sure way to remove a key that lands later.
        this.session.markUncertain();
        const prior = this.#settled;
        this.#settled = prior.then(() => removeOwnKey(this.#entry, undefined));
      }
      throw err;
    }
  }

  /**
   * While held, loss is the session's business: its renewals (every TTL/3) notice a revoked or
   * expired lease, and its clock ends the hold at the lease's deadline. Watching our own key here
   * as well would cost a watch create and cancel per hold.
   */
  #hold(header: ResponseHeader): void {
    this.#header = header;
    this.#state = 'held';
    this.#controller = undefined; // the last hold's, aborted; a new one is made when asked for
    this.#endReason = undefined;
    this.#letGo = this.session.keepsAlive ? keepAlive() : noop;
    this.session.onEnded(this.#onSessionEnded);
  }

  /** The hold ends: abort `signal` with the reason. */
  #end(reason: Error): void {
    if (this.#state !== 'held') return;
    this.#state = 'idle';
    this.session.offEnded(this.#onSessionEnded);
    this.#letGo();
    this.#endReason = reason;
    this.#controller?.abort(reason);
  }
}

function checkLockOptions(opts: MutexLockOptions): { signal: AbortSignal | undefined; waitTimeoutMs: number } {
  if (opts === null || typeof opts !== 'object') throw invalidType('lock options must be an object');
  const { signal } = opts;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidType('signal must be an AbortSignal');
  const waitTimeoutMs = opts.waitTimeoutMs ?? Infinity;
  if (typeof waitTimeoutMs !== 'number' || Number.isNaN(waitTimeoutMs) || waitTimeoutMs < 0) {
    throw outOfRange(`waitTimeoutMs must be a number >= 0 (or Infinity), got ${String(waitTimeoutMs)}`);
  }
  if (signal?.aborted) throw signal.reason;
  return { signal, waitTimeoutMs };
}
