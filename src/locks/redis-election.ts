/**
 * RedisElection: leader election on the fenced RedisLocker lock. The leader is the holder of the
 * election's lock; the term is the lock's fence (strictly increasing per name); the value is a record
 * beside the lock that only the holder's token can write and that expires with the lock.
 *
 *  campaign  RedisLocker.acquire (the fair, woken queue: a handoff wakes only the next candidate),
 *            then PROCLAIM the value. Leadership begins once the value is proclaimed: an observer
 *            never sees a leader without one.
 *  proclaim  PROCLAIM: if the lock still holds our token, write the record (its PTTL the lock's),
 *            note a new term in the terms list, PUBLISH the fence on `:elected`. Otherwise we no
 *            longer lead: LockLostError.
 *  resign    the lock's release: compare-and-delete, and the next candidate is named on `:release`.
 *  leader    READ_LEADER: the record, if its token is the lock's holder.
 *  observe   SUBSCRIBE to `:elected` and `:release`, then one READ_LEADER; each message (and each
 *            resubscription after a reconnect: messages may have been missed) reads again. The one
 *            event Redis does not announce is a lease running out (a crashed leader), so while a
 *            leader is known the observer also reads once when its lock's PTTL ends: one read per
 *            lease length at most, never a polling loop. Terms that began and ended between two
 *            reads come from the terms list, oldest first, so no leader is skipped.
 *
 * The leadership keeps what a RedisLocker lock keeps: auto-extension every ttl/3 (the record is
 * extended with the lock, in the same script), validUntil from the send time of the last confirmed
 * extension minus drift, a local timer that ends it then, and LockLostError('expired' | 'stolen').
 */
import type { RedisClient } from '../resp/client.js';
import type { RedisCluster } from '../resp/cluster.js';
import { isRedisBackend, type RedisBackend } from '../resp/backend.js';
import type { RespValue } from '../resp/connection.js';
import { isTransientRedisError } from '../resp/transient.js';
import { MAX_TIMER_MS, backoffMs, jitter, noop, sharedController, sleep } from '../abort.js';
import { ClosedError, LockTimeoutError, ProtocolError, invalidType } from '../errors.js';
import type { HeldLock } from './held-lock.js';
import { DEFAULT_TTL_MS, checkPrefix, checkTtl } from './options.js';
import { RedisLocker, lockRecord, type RedisLockerInternalOptions } from './redis-locker.js';
import { PROCLAIM, READ_LEADER, electionKeys, type ElectionKeys } from './redis-scripts.js';
import { untilAnswered } from './waiting.js';
import {
  LeaderFeed, LeadershipHandle, checkElectionName, checkObserveOptions, resolveCampaign,
  type CampaignOptions, type Election, type Leader, type Leadership, type ObserveOptions, type ResolvedCampaign,
} from './election.js';

/** Options of a RedisElection, given to its constructor. */
export interface RedisElectionOptions {
  /**
   * Default lease length of a campaign, in ms.
   * @defaultValue `10000`
   */
  ttlMs?: number;
  /**
   * Prefix of every key and channel (the election's lock is RedisLocker's lock of the same name).
   * @defaultValue `'wirelock:'`
   */
  prefix?: string;
}

/** What READ_LEADER found: the leader now, the terms since `seen` that ended unseen, the lock's PTTL. */
interface Reading {
  leader: Leader | null;
  missed: Leader[];
  pttl: number;
  newest: bigint;
}

/**
 * Leader election on one Redis server, built on RedisLocker's fair, fenced lock: the leader is the
 * lock's holder, the term is the lock's fence, and the value is a record beside the lock that
 * expires with it. Observers are woken by pub/sub, not by polling.
 */
export class RedisElection implements Election {
  /** The election's name: the key of its lock, under the prefix. */
  readonly name: string;
  readonly #client: RedisBackend;
  readonly #keys: ElectionKeys;
  readonly #ttlMs: number;
  readonly #locker: RedisLocker;
  readonly #closing = sharedController();
  readonly #leading = new Set<LeadershipHandle>();
  readonly #feeds = new Set<LeaderFeed>();

  constructor(client: RedisClient | RedisCluster, name: string, opts: RedisElectionOptions = {}) {
    if (!isRedisBackend(client)) throw invalidType('RedisElection needs a RedisClient or a RedisCluster');
    if (opts === null || typeof opts !== 'object') throw invalidType('election options must be an object');
    this.name = checkElectionName(name);
    const prefix = checkPrefix(opts.prefix ?? 'wirelock:');
    this.#client = client;
    this.#keys = electionKeys(prefix, this.name);
    this.#ttlMs = checkTtl('ttlMs', opts.ttlMs ?? DEFAULT_TTL_MS);
    const lockerOpts: RedisLockerInternalOptions = { prefix, ttlMs: this.#ttlMs, [lockRecord]: () => this.#keys.record };
    this.#locker = new RedisLocker(client, lockerOpts);
  }

  /** True once close() has been called; campaigns, leader() and observe() then fail with ClosedError. */
  get closed(): boolean {
    return this.#closing.signal.aborted;
  }

  async campaign(value: string | Buffer, opts?: CampaignOptions): Promise<Leadership> {
    const o = resolveCampaign(value, opts, this.#ttlMs);
    if (this.closed) throw this.#closing.signal.reason;
    const start = performance.now();
    const lock = (await this.#locker.acquire(this.name, { ttlMs: o.ttlMs, waitTimeoutMs: o.waitTimeoutMs, signal: o.signal })) as HeldLock;
    try {
      await this.#proclaimFirst(lock, o, start);
    } catch (err) {
      void lock.release().catch(noop);
      throw err;
    }
    const handle = new LeadershipHandle(this.name, this.#keys.lock, lock, (v) => this.#write(lock, v), this.#resigner(lock));
    if (this.closed) {
      void handle.resign().catch(noop);
      throw this.#closing.signal.reason;
    }
    this.#leading.add(handle);
    lock.signal.addEventListener('abort', () => this.#leading.delete(handle), { once: true });
    return handle;
  }

  async leader(): Promise<Leader | null> {
    if (this.closed) throw this.#closing.signal.reason;
    return (await this.#read(-1n)).leader;
  }

  observe(opts?: ObserveOptions): AsyncIterableIterator<Leader | null> {
    const signal = checkObserveOptions(opts);
    if (this.closed) throw this.#closing.signal.reason;
    const read = (seen: bigint, sig: AbortSignal): Promise<Reading> => this.#read(seen, sig);
    const observer = new RedisObserver(read, this.#client, this.#keys, signal, this.#closing.signal, () => this.#feeds.delete(observer.feed));
    this.#feeds.add(observer.feed);
    observer.start();
    return observer.feed;
  }

  /** Resigns what it leads, rejects pending campaigns (ClosedError), ends observers. Does not close the client. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.#closing.abort(new ClosedError('RedisElection'));
    for (const feed of this.#feeds) feed.end();
    // Resign first (each resign announces itself on `:elected`), then close the locker, which rejects pending campaigns.
    const resigned = [...this.#leading].map((l) => l.resign());
    await Promise.allSettled([...resigned, this.#locker.close()]);
  }

  /**
   * The first proclamation: retried while Redis is briefly unreachable, within the campaign's
   * deadline (a failed PROCLAIM that landed after all wrote the same record: retrying is harmless).
   */
  async #proclaimFirst(lock: HeldLock, o: ResolvedCampaign, start: number): Promise<void> {
    const deadline = start + o.waitTimeoutMs;
    for (let failures = 0; ; failures++) {
      try {
        if (await this.#write(lock, o.value)) return;
        lock.lose('stolen'); // the lock went between the grant and the proclamation
        throw lock.endReason;
      } catch (err) {
        if (!isTransientRedisError(err) || !lock.held) throw err;
        const delay = backoffMs(failures);
        if (performance.now() + delay >= deadline) throw new LockTimeoutError(this.name, performance.now() - start, { cause: err });
        await sleep(delay, o.signal ? AbortSignal.any([o.signal, this.#closing.signal]) : this.#closing.signal);
      }
    }
  }

  /**
   * The lock's release, then a message on `:elected`: a release announces only the next waiter, and
   * with nobody queued it announces nothing, yet observers must learn that nobody leads. The message
   * goes once the release is answered, so an observer woken by it reads after the release (sent at
   * once, it could overtake a release that had to be resent in full after a NOSCRIPT, as one is
   * after a SCRIPT FLUSH).
   */
  #resigner(lock: HeldLock): () => Promise<void> {
    let resigned: Promise<void> | undefined;
    return () => {
      if (resigned) return resigned;
      const wasHeld = lock.held;
      resigned = lock.release();
      if (wasHeld) void resigned.finally(() => this.#client.publish(this.#keys.elected, lock.fence.toString())).catch(noop);
      return resigned;
    };
  }

  /** PROCLAIM: true if written (we lead), false if the lock is not ours. */
  async #write(lock: HeldLock, value: Buffer): Promise<boolean> {
    const k = this.#keys;
    const reply = await this.#client.evalScript(
      PROCLAIM,
      [k.lock, k.record, k.terms],
      [lock.token, lock.fence.toString(), value, k.elected, Math.ceil(2 * lock.ttlMs)],
    );
    return reply === 1;
  }

  /** READ_LEADER. `seen`: the last term the caller has seen (-1: only the present). */
  async #read(seen: bigint, signal?: AbortSignal): Promise<Reading> {
    const k = this.#keys;
    const reply = await this.#client.evalScript(READ_LEADER, [k.lock, k.record, k.terms], [seen.toString()], { signal });
    return parseReading(this.name, k.lock, reply);
  }
}

function parseReading(name: string, key: string, reply: RespValue): Reading {
  if (!Array.isArray(reply) || reply.length !== 5 || !Array.isArray(reply[3])) throw new ProtocolError(`unexpected READ_LEADER reply`);
  const [pttl, fence, value, missed, newest] = reply;
  const leader = typeof fence === 'string' ? { name, key, fence: BigInt(fence), value: Buffer.from(String(value), 'hex') } : null;
  const terms = (missed as RespValue[]).map((e) => {
    const entry = String(e);
    const colon = entry.indexOf(':');
    return { name, key, fence: BigInt(entry.slice(0, colon)), value: Buffer.from(entry.slice(colon + 1), 'hex') };
  });
  return { leader, missed: terms, pttl: Number(pttl), newest: BigInt(String(newest)) };
}

/**
 * One observe() on Redis: subscribed to the election's channels; reads once per wake-up (messages
 * that arrive during a read cause one more read after it, not one each).
 */
class RedisObserver {
  readonly feed: LeaderFeed;
  readonly #read: (seen: bigint, signal: AbortSignal) => Promise<Reading>;
  readonly #client: RedisBackend;
  readonly #keys: ElectionKeys;
  readonly #signal: AbortSignal | undefined;
  readonly #stop = new AbortController();
  readonly #stopSignal: AbortSignal;
  /** The newest term delivered (or known to be history at the start): later reads report terms after it. */
  #seen = -1n;
  #reading = false;
  #again = false;
  #timer: NodeJS.Timeout | undefined;
  #unsubscribe: Array<() => void> = [];

  constructor(read: (seen: bigint, signal: AbortSignal) => Promise<Reading>, client: RedisBackend, keys: ElectionKeys, signal: AbortSignal | undefined, closing: AbortSignal, onStop: () => void) {
    this.#read = read;
    this.#client = client;
    this.#keys = keys;
    this.#signal = signal;
    this.#stopSignal = AbortSignal.any([this.#stop.signal, closing]);
    const abort = (): void => this.feed.end(signal!.reason);
    this.feed = new LeaderFeed(() => {
      this.#stop.abort();
      clearTimeout(this.#timer);
      for (const off of this.#unsubscribe) off();
      signal?.removeEventListener('abort', abort);
      onStop();
    });
    signal?.addEventListener('abort', abort, { once: true });
  }

  start(): void {
    if (this.#signal?.aborted) return this.feed.end(this.#signal.reason);
    void this.#subscribe().then(
      () => this.#wake(),
      (err: unknown) => this.#stopSignal.aborted || this.feed.end(err),
    );
  }

  /** Both channels, retried while Redis is unreachable. A message (or null: a resubscription) wakes us. */
  async #subscribe(): Promise<void> {
    const onMessage = (): void => this.#wake();
    for (const channel of [this.#keys.elected, this.#keys.channel]) {
      const subscribe = (): Promise<() => void> => this.#client.subscribe(channel, onMessage, this.#stopSignal);
      const off = await untilAnswered(subscribe, isTransientRedisError, this.#stopSignal);
      if (this.feed.done) off();
      else this.#unsubscribe.push(off);
    }
  }

  #wake(): void {
    if (this.feed.done) return;
    if (this.#reading) {
      this.#again = true;
      return;
    }
    this.#reading = true;
    void this.#readAll().finally(() => (this.#reading = false));
  }

  async #readAll(): Promise<void> {
    try {
      do {
        this.#again = false;
        await this.#readOnce();
      } while (this.#again && !this.feed.done);
    } catch (err) {
      if (!this.#stopSignal.aborted) this.feed.end(err);
    }
  }

  async #readOnce(): Promise<void> {
    const r = await untilAnswered(() => this.#read(this.#seen, this.#stopSignal), isTransientRedisError, this.#stopSignal);
    if (this.feed.done) return;
    if (this.#seen < 0n) this.#seen = r.newest; // the terms before our first read are history, not news
    for (const term of r.missed) this.#deliver(term);
    this.#deliver(r.leader);
    clearTimeout(this.#timer);
    // The one change Redis does not announce: the lease running out. Look once when it would.
    if (r.leader && r.pttl > 0) {
      this.#timer = setTimeout(() => this.#wake(), Math.min(r.pttl + 1 + jitter(5), MAX_TIMER_MS));
      this.#timer.unref();
    }
  }

  #deliver(leader: Leader | null): void {
    if (leader && leader.fence > this.#seen) this.#seen = leader.fence;
    this.feed.push(leader);
  }
}
