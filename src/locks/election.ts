/**
 * What every election shares (EtcdElection, RedisElection): the interfaces, the Leadership handle,
 * and the feed that observe() hands out.
 *
 * A leadership is a held lock with a value: the lock's fence is the term, its signal and validUntil
 * are the leadership's, and resign() is the lock's release. So a leadership keeps every promise a
 * HeldLock keeps (validUntil measured from the send time of the last confirmed renewal, a local
 * timer that ends it at validUntil whatever the network does, a typed loss reason), and adds the
 * one thing a lock does not have: a value others can read, changed only by the current leader.
 */
import { LockLostError, invalidType, outOfRange } from '../errors.js';
import { keepAlive } from '../abort.js';
import type { HeldLock } from './held-lock.js';
import { checkKey, checkTtl } from './options.js';

/** Options for one {@link Election.campaign}. */
export interface CampaignOptions {
  /**
   * The leader's lease in ms. etcd rounds up to whole seconds (min 2 s).
   * @defaultValue the election's `ttlMs`
   */
  ttlMs?: number;
  /**
   * Give up after this many ms with LockTimeoutError; 0 means one attempt.
   * @defaultValue `Infinity`
   */
  waitTimeoutMs?: number;
  /** Aborts the campaign; campaign() rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/** Options for {@link Election.observe}. */
export interface ObserveOptions {
  /** Ends the observation: the iterator's pending and later next() reject with `signal.reason`. */
  signal?: AbortSignal;
}

/** A leader as observers see it: who leads, in which term, with which value. */
export interface Leader {
  /** The election's name. */
  readonly name: string;
  /** The leader's key: etcd `<name>/<lease hex>`; Redis the election's lock key (the fence tells leaders apart). */
  readonly key: string;
  /** What the leader proclaimed. */
  readonly value: Buffer;
  /** The term: strictly increasing across the leaders of one election. */
  readonly fence: bigint;
}

/**
 * This candidate's term as leader, as campaign() hands it out: a held lock with a value.
 * `await using` resigns it at the end of the block.
 */
export interface Leadership extends AsyncDisposable {
  /** The election's name. */
  readonly name: string;
  /** Our key: etcd `<name>/<lease hex>`; Redis the election's lock key. */
  readonly key: string;
  /** The term: strictly increasing across the leaders of one election. Pass it to what you write. */
  readonly fence: bigint;
  /** Aborts when leadership is lost (LockLostError) or resigned (LockReleasedError). */
  readonly signal: AbortSignal;
  /** performance.now() deadline up to which leadership is guaranteed (moved forward by each renewal). */
  readonly validUntil: number;
  /** Sets the value observers see. LockLostError if no longer the leader, LockReleasedError after resign(). */
  proclaim(value: string | Buffer): Promise<void>;
  /** Idempotent. Gives up leadership; the next candidate takes over at once. */
  resign(): Promise<void>;
}

/** Leader election, implemented by EtcdElection and RedisElection. */
export interface Election {
  /** Waits until this candidate leads. value: what observers see (host:port, an id...). */
  campaign(value: string | Buffer, opts?: CampaignOptions): Promise<Leadership>;
  /** The current leader, or null. */
  leader(): Promise<Leader | null>;
  /** Yields the current leader at once, then each change (new leader, new value, no leader). */
  observe(opts?: ObserveOptions): AsyncIterableIterator<Leader | null>;
  /** Resigns what it leads, rejects its pending campaigns, ends its observers. */
  close(): Promise<void>;
}

export interface ResolvedCampaign {
  value: Buffer;
  ttlMs: number;
  waitTimeoutMs: number;
  signal: AbortSignal | undefined;
}

export function checkElectionName(name: unknown): string {
  checkKey(name);
  return name;
}

export function toValue(value: unknown): Buffer {
  if (typeof value === 'string') return Buffer.from(value);
  if (Buffer.isBuffer(value)) return value;
  throw invalidType(`an election value must be a string or a Buffer, got ${value === null ? 'null' : typeof value}`);
}

export function resolveCampaign(value: unknown, opts: CampaignOptions | undefined, defaultTtlMs: number): ResolvedCampaign {
  const buf = toValue(value);
  if (opts !== undefined && (typeof opts !== 'object' || opts === null)) throw invalidType('campaign options must be an object');
  const ttlMs = checkTtl('ttlMs', opts?.ttlMs ?? defaultTtlMs);
  const waitTimeoutMs = opts?.waitTimeoutMs ?? Infinity;
  if (typeof waitTimeoutMs !== 'number' || Number.isNaN(waitTimeoutMs) || waitTimeoutMs < 0) {
    throw outOfRange(`waitTimeoutMs must be a number >= 0 (or Infinity), got ${String(waitTimeoutMs)}`);
  }
  const signal = opts?.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidType('signal must be an AbortSignal');
  if (signal?.aborted) throw signal.reason;
  return { value: buf, ttlMs, waitTimeoutMs, signal };
}

export function checkObserveOptions(opts: ObserveOptions | undefined): AbortSignal | undefined {
  if (opts !== undefined && (typeof opts !== 'object' || opts === null)) throw invalidType('observe options must be an object');
  const signal = opts?.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidType('signal must be an AbortSignal');
  return signal;
}

/**
 * A leadership: a held lock, plus proclaim. `write` sets the value only while the term is ours;
 * false means it was not (someone else leads, or nobody does): the leadership is lost.
 */
export class LeadershipHandle implements Leadership {
  readonly name: string;
  readonly key: string;
  readonly #lock: HeldLock;
  readonly #write: (value: Buffer) => Promise<boolean>;
  readonly #resign: () => Promise<void>;

  /** `resign`: how to give up the term (default: release the lock). */
  constructor(name: string, key: string, lock: HeldLock, write: (value: Buffer) => Promise<boolean>, resign?: () => Promise<void>) {
    this.name = name;
    this.key = key;
    this.#lock = lock;
    this.#write = write;
    this.#resign = resign ?? (() => lock.release());
  }

  get fence(): bigint {
    return this.#lock.fence;
  }

  get signal(): AbortSignal {
    return this.#lock.signal;
  }

  get validUntil(): number {
    return this.#lock.validUntil;
  }

  /** True until resigned or lost. */
  get leading(): boolean {
    return this.#lock.held;
  }

  async proclaim(value: string | Buffer): Promise<void> {
    const buf = toValue(value);
    if (!this.#lock.held) throw this.#lock.endReason;
    if (await this.#write(buf)) {
      // Granted, but the term may have ended while the write was on the wire (a resign, a loss): say so.
      if (!this.#lock.held) throw this.#lock.endReason;
      return;
    }
    this.#lock.lose('stolen');
    throw this.#lock.endReason ?? new LockLostError(this.name, 'stolen');
  }

  resign(): Promise<void> {
    return this.#resign();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.resign();
  }
}

/** Two observations show the same state (the same leader with the same value, or both none). */
export function sameLeader(a: Leader | null, b: Leader | null): boolean {
  if (a === null || b === null) return a === b;
  return a.fence === b.fence && a.key === b.key && a.value.equals(b.value);
}

/**
 * The async iterator observe() returns: a queue between the backend's events and the consumer.
 * Consecutive values of one leader are coalesced (only the newest is kept while the consumer is
 * behind); a change of leader, or to no leader, is always delivered. While a next() is pending the
 * process stays alive, as it would for any other wait.
 */
export class LeaderFeed implements AsyncIterableIterator<Leader | null> {
  readonly #queue: Array<Leader | null> = [];
  #last: Leader | null | undefined;
  #waiter: { resolve: (r: IteratorResult<Leader | null>) => void; reject: (e: unknown) => void; letGo: () => void } | undefined;
  #done = false;
  #error: unknown;
  readonly #onStop: () => void;

  /** `onStop` is called once, when the feed ends for whatever reason. */
  constructor(onStop: () => void) {
    this.#onStop = onStop;
  }

  get done(): boolean {
    return this.#done;
  }

  /** The last state pushed (undefined before the first). */
  get last(): Leader | null | undefined {
    return this.#last;
  }

  /** Delivers `state` if it differs from the last one pushed. */
  push(state: Leader | null): void {
    if (this.#done || (this.#last !== undefined && sameLeader(this.#last, state))) return;
    this.#last = state;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      w.letGo();
      w.resolve({ value: state, done: false });
      return;
    }
    const tail = this.#queue[this.#queue.length - 1];
    // A newer value of the same term replaces the one the consumer has not read yet.
    if (tail && state && tail.fence === state.fence && tail.key === state.key) this.#queue[this.#queue.length - 1] = state;
    else this.#queue.push(state);
  }

  /** Ends the feed: with `error`, the next next() rejects with it (after what is queued); else it is done. */
  end(error?: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = error;
    this.#onStop();
    const w = this.#waiter;
    if (!w) return;
    this.#waiter = undefined;
    this.#error = undefined; // reported to the pending next(); later ones are simply done
    w.letGo();
    if (error === undefined) w.resolve({ value: undefined, done: true });
    else w.reject(error);
  }

  next(): Promise<IteratorResult<Leader | null>> {
    if (this.#queue.length > 0) return Promise.resolve({ value: this.#queue.shift()!, done: false });
    if (this.#done) {
      const error = this.#error;
      this.#error = undefined; // reported once; then the iterator is simply done
      return error === undefined ? Promise.resolve({ value: undefined, done: true }) : Promise.reject(error);
    }
    if (this.#waiter) return Promise.reject(new Error('observe(): next() called again before the previous one settled'));
    return new Promise((resolve, reject) => (this.#waiter = { resolve, reject, letGo: keepAlive() }));
  }

  return(): Promise<IteratorResult<Leader | null>> {
    this.#queue.length = 0;
    this.end();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
