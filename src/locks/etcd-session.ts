/**
 * Session: an etcd lease kept alive, as in etcd's Go `concurrency.Session`, with a stricter clock.
 *
 * The lease's expiry on the server is never earlier than (when we sent the renewal it answered) +
 * TTL. So the session counts its own validity from the send time of the last acknowledged
 * keep-alive, and `signal` aborts at that moment at the latest, whatever the network is doing. (The
 * Go session only notices when its keep-alive channel closes, up to a TTL later.)
 *
 * Renewals go every TTL/3 over the client's shared LeaseKeepAlive stream; a failed one is tried
 * again soon, on the next endpoint, while time is left. A renewal answered with TTL 0 means the
 * lease is gone: the session is lost at once.
 */
import type { EtcdClient } from '../etcdrpc/client.js';
import { Status } from '../etcdrpc/status.js';
import { etcdChannels } from '../diagnostics.js';
import { ClosedError, EtcdError, SessionExpiredError, invalidType, outOfRange } from '../errors.js';
import { driftMs } from './options.js';
import { MAX_TIMER_MS, backoffMs, sharedController } from '../abort.js';

/** Options for {@link Session.create}. */
export interface SessionOptions {
  /**
   * Lease length in ms, rounded up to whole seconds (etcd's minimum is 2 s).
   * @defaultValue `60000`, as in Go
   */
  ttlMs?: number;
  /**
   * Adopt this existing lease instead of granting a new one.
   * @defaultValue none: a new lease is granted
   */
  leaseId?: bigint;
  /**
   * True: renew every TTL/3 until close() or loss. False: only `keepAliveOnce()` renews.
   * @defaultValue `true`
   */
  keepAlive?: boolean;
  /** Aborts the lease grant. */
  signal?: AbortSignal;
}

/** TTL in whole seconds: up from ms, and never below etcd's 2 s minimum. */
export function ttlSeconds(ttlMs: number): number {
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw outOfRange(`ttlMs must be a finite number > 0, got ${String(ttlMs)}`);
  }
  return Math.max(2, Math.ceil(ttlMs / 1000));
}

/**
 * An etcd lease kept alive, like Go's `concurrency.Session`: renewed every TTL/3 (unless `keepAlive`
 * is false) over the client's shared keep-alive stream. Its `signal` aborts when the lease is lost, at `validUntil` at the latest,
 * or when the session is closed. Create one with {@link Session.create}.
 */
export class Session {
  /** The client the lease was granted through, and renewed and revoked through. */
  readonly client: EtcdClient;
  /** The lease ID. Lock keys written under this session end in its lowercase hex. */
  readonly lease: bigint;
  /** Granted TTL in seconds. */
  readonly ttl: number;
  readonly #controller = sharedController();
  readonly #renewListeners = new Set<(validUntil: number) => void>();
  readonly #endListeners = new Set<(reason: Error) => void>();
  readonly #keepAlive: boolean;
  #validUntil: number;
  #renewTimer: NodeJS.Timeout | undefined;
  #expiryTimer: NodeJS.Timeout | undefined;
  #renewing: Promise<number> | undefined;
  #closed: Promise<void> | undefined;
  #failures = 0;
  #uncertain = false;

  private constructor(client: EtcdClient, lease: bigint, ttl: number, validUntil: number, keepAlive: boolean) {
    this.client = client;
    this.lease = lease;
    this.ttl = ttl;
    this.#validUntil = validUntil;
    this.#keepAlive = keepAlive;
    this.#armExpiry();
    if (keepAlive) this.#scheduleRenew(this.#interval());
    if (etcdChannels.session.hasSubscribers) {
      etcdChannels.session.publish({ lease, event: 'granted', ttl, validUntil });
    }
  }

  /** Grants a lease (or adopts `leaseId`) and starts keeping it alive. */
  static async create(client: EtcdClient, opts: SessionOptions = {}): Promise<Session> {
    const ttl = ttlSeconds(opts.ttlMs ?? 60_000);
    const keepAlive = opts.keepAlive ?? true;
    if (typeof keepAlive !== 'boolean') throw invalidType('keepAlive must be a boolean');
    const sentAt = performance.now();
    if (opts.leaseId !== undefined) {
      if (typeof opts.leaseId !== 'bigint' || opts.leaseId <= 0n) throw invalidType('leaseId must be a positive bigint');
      const res = await client.leaseKeepAlive(opts.leaseId, { signal: opts.signal });
      if (res.TTL <= 0n) throw new SessionExpiredError(opts.leaseId, 'the lease does not exist');
      return new Session(client, opts.leaseId, Number(res.TTL), validity(sentAt, Number(res.TTL)), keepAlive);
    }
    const res = await client.leaseGrant({ TTL: ttl }, { signal: opts.signal });
    if (res.error) throw new EtcdError(Status.UNKNOWN, res.error, { method: 'Lease.LeaseGrant' });
    return new Session(client, res.ID, Number(res.TTL), validity(sentAt, Number(res.TTL)), keepAlive);
  }

  /** Aborts when the lease is lost (reason SessionExpiredError) or the session is closed (ClosedError). */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** performance.now() time up to which the lease certainly exists on the server. */
  get validUntil(): number {
    return this.#validUntil;
  }

  /**
   * True once a write under this lease had an unknown outcome (it timed out, or its connection
   * broke): it may still be applied later, putting a key under the lease that nobody means to hold.
   * Only the lease's end removes such a key for sure, so an uncertain session should be closed as soon
   * as its owner is done with it. EtcdLocker stops handing it out at once and revokes it when its
   * last lock ends.
   */
  get uncertain(): boolean {
    return this.#uncertain;
  }

  /** @internal Marks the session uncertain (see `uncertain`): for the lock recipes in this package. */
  markUncertain(): void {
    this.#uncertain = true;
  }

  /** Calls `fn` after each confirmed renewal with the new validUntil. Returns a disposer. */
  onRenewed(fn: (validUntil: number) => void): () => void {
    this.#renewListeners.add(fn);
    return () => this.offRenewed(fn);
  }

  /** Stops calling `fn` after renewals (the same as calling the disposer onRenewed returned). */
  offRenewed(fn: (validUntil: number) => void): void {
    this.#renewListeners.delete(fn);
  }

  /**
   * Calls `fn` once when the session ends (lost or closed), with `signal`'s reason; at once if it has
   * ended already. The same as listening to `signal`, for the many-holders case: a Set entry per
   * holder instead of an event listener and its disposer (a few hundred bytes per etcd lock).
   */
  onEnded(fn: (reason: Error) => void): void {
    if (this.#controller.signal.aborted) fn(this.#controller.signal.reason as Error);
    else this.#endListeners.add(fn);
  }

  /** Removes a listener added with onEnded, so it is not called when the session ends. */
  offEnded(fn: (reason: Error) => void): void {
    this.#endListeners.delete(fn);
  }

  /**
   * Renews now (joining a renewal already in flight). Resolves with the new validUntil; rejects with
   * SessionExpiredError if the lease is gone (the session is then lost), or a transient error.
   */
  keepAliveOnce(): Promise<number> {
    if (this.#controller.signal.aborted) return Promise.reject(this.#controller.signal.reason);
    this.#renewing ??= this.#renew().finally(() => (this.#renewing = undefined));
    return this.#renewing;
  }

  /** Stops renewing and revokes the lease (its keys are deleted). Idempotent. */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    // A session lost locally (renewals failed) may still hold its lease on the server: revoke it anyway.
    this.#stop(new ClosedError('Session'));
    if (etcdChannels.session.hasSubscribers) {
      etcdChannels.session.publish({ lease: this.lease, event: 'closed', ttl: this.ttl, validUntil: this.#validUntil });
    }
    try {
      await this.client.leaseRevoke({ ID: this.lease });
    } catch (err) {
      // Already expired, or the client is closed: nothing left to revoke from here.
      if (err instanceof EtcdError && err.grpcCode === Status.NOT_FOUND) return;
      if (err instanceof ClosedError) return;
      throw err;
    }
  }

  /** @internal Marks the session lost (for the recipes in this package that learned it elsewhere, e.g. its key vanished). */
  lose(detail: string, cause?: unknown): void {
    if (this.#controller.signal.aborted) return;
    const error = new SessionExpiredError(this.lease, detail, cause === undefined ? undefined : { cause });
    if (etcdChannels.session.hasSubscribers) {
      etcdChannels.session.publish({ lease: this.lease, event: 'lost', ttl: this.ttl, validUntil: this.#validUntil, error });
    }
    this.#stop(error);
  }

  async #renew(): Promise<number> {
    const sentAt = performance.now();
    // An answer later than a third of the TTL is no use to us: try the next endpoint instead.
    const timeoutMs = Math.min(this.client.callTimeoutMs, Math.max(500, (this.ttl * 1000) / 3));
    const res = await this.client.leaseKeepAlive(this.lease, { timeoutMs, signal: this.#controller.signal });
    if (res.TTL <= 0n) {
      this.lose('etcd answered the keep-alive with TTL 0 (the lease was revoked or had expired)');
      throw this.#controller.signal.reason;
    }
    if (this.#controller.signal.aborted) throw this.#controller.signal.reason;
    const validUntil = validity(sentAt, Number(res.TTL));
    if (validUntil > this.#validUntil) {
      this.#validUntil = validUntil;
      this.#armExpiry();
      for (const fn of this.#renewListeners) callSafely(fn, validUntil);
    }
    if (etcdChannels.session.hasSubscribers) {
      etcdChannels.session.publish({ lease: this.lease, event: 'renewed', ttl: Number(res.TTL), validUntil: this.#validUntil });
    }
    return this.#validUntil;
  }

  #interval(): number {
    return (this.ttl * 1000) / 3;
  }

  #scheduleRenew(delayMs: number): void {
    clearTimeout(this.#renewTimer);
    this.#renewTimer = setTimeout(() => {
      this.#renewTimer = undefined;
      this.keepAliveOnce().then(
        () => {
          this.#failures = 0;
          this.#scheduleRenew(this.#interval());
        },
        (err) => {
          if (this.#controller.signal.aborted) return;
          // Not known to be gone: try again soon (each try may go to another endpoint), while time is left.
          // A permanent error (say, permission) ends the session at its deadline, not before.
          void err;
          const left = this.#validUntil - performance.now();
          const backoff = backoffMs(this.#failures++, { baseMs: 100, jitterMs: 0 });
          if (left > 0) this.#scheduleRenew(Math.min(backoff, left / 3));
        },
      );
    }, Math.min(delayMs, MAX_TIMER_MS)); // a TTL/3 past setTimeout's range renews at its limit
    this.#renewTimer.unref?.();
  }

  #armExpiry(): void {
    clearTimeout(this.#expiryTimer);
    const left = this.#validUntil - performance.now();
    // A TTL longer than setTimeout's range (about 24.8 days) is re-armed at the limit: Node would
    // fire a longer delay after 1 ms, and end the session at once.
    this.#expiryTimer = setTimeout(
      () => (left > MAX_TIMER_MS ? this.#armExpiry() : this.lose(`not renewed within its ${this.ttl} s TTL`)),
      Math.min(Math.max(0, left), MAX_TIMER_MS),
    );
    this.#expiryTimer.unref?.();
  }

  #stop(reason: Error): void {
    clearTimeout(this.#renewTimer);
    clearTimeout(this.#expiryTimer);
    this.#renewTimer = this.#expiryTimer = undefined;
    this.#renewListeners.clear();
    if (this.#controller.signal.aborted) return;
    this.#controller.abort(reason);
    const ended = [...this.#endListeners];
    this.#endListeners.clear();
    for (const fn of ended) callSafely(fn, reason);
  }

  /** Lowercase hex of the lease ID, as etcd's Go client writes it in lock keys. */
  get leaseHex(): string {
    return this.lease.toString(16);
  }

  /** True when renewals are automatic. */
  get keepsAlive(): boolean {
    return this.#keepAlive;
  }
}

/** Until when a lease renewed (or granted) by a request sent at `sentAt` certainly lives. */
function validity(sentAt: number, ttlSeconds: number): number {
  const ttlMs = ttlSeconds * 1000;
  return sentAt + ttlMs - driftMs(ttlMs);
}

/**
 * Calls a holder's hook. One that throws must not stop the others from hearing (nor break the
 * session's own bookkeeping): its error is rethrown on its own, as an EventTarget listener's would be.
 */
function callSafely<T>(fn: (value: T) => void, value: T): void {
  try {
    fn(value);
  } catch (err) {
    queueMicrotask(() => {
      throw err;
    });
  }
}
