/**
 * EtcdElection: leader election on etcd, key for key etcd's Go `concurrency.Election` and
 * `etcdctl elect <name>`, so wirelock, Go programs and etcdctl elect one leader among them.
 *
 * Layout: every candidate writes `<name>/<its lease ID in lowercase hex>` on its lease, with its
 * value. The key with the lowest create revision leads; its value is the proclamation, its create
 * revision the term (the fence). It is the mutex's queue (etcd-queue.ts) with a value in the key:
 *
 *  campaign  enqueue (one Txn: create our key with the value if absent, else read it), then wait
 *            until no older key remains, watching only the immediate predecessor, and our own key;
 *            a last Txn re-checks that our key is still ours before we lead.
 *  proclaim  Txn: if our key still has the create revision we lead with, put the new value (on our
 *            lease). Otherwise we no longer lead: LockLostError.
 *  resign    Txn: the same compare, then delete our key; the next candidate's watch fires at once.
 *            Then our lease is revoked.
 *  leader    the oldest key under `<name>/` (one Range).
 *  observe   one Range, then one watch on the prefix from the revision after it: every event is
 *            applied in revision order; when the leader's key goes, a Range *at that revision*
 *            finds its successor, so no leader is ever skipped. The watch survives stream breaks
 *            (it resumes after the last revision delivered); after a compaction it re-reads.
 *
 * Each campaign has a lease of its own (Go shares the session's: two campaigns of one session
 * would share one key). Its end is the leadership's end: a lost lease (renewals refused or late),
 * our key deleted by someone else (a watch on it while we lead), or the local clock reaching
 * validUntil (the session's timer: the lease certainly exists up to then, and no later).
 */
import { EtcdClient } from '../etcdrpc/client.js';
import { isTransientEtcdError } from '../etcdrpc/status.js';
import { EventType, SortOrder, SortTarget, WatchFilter } from '../etcdrpc/types.js';
import type { Event, KeyValue, RangeResponse, ResponseHeader } from '../etcdrpc/types.js';
import { noop, sharedController } from '../abort.js';
import { lockChannels } from '../diagnostics.js';
import { ClosedError, EtcdError, LockLostError, LockTimeoutError, SessionExpiredError, WatchCompactedError, invalidType } from '../errors.js';
import { Status } from '../etcdrpc/status.js';
import { HeldLock, type LockOps } from './held-lock.js';
import { Session, ttlSeconds } from './etcd-session.js';
import { assertSessionLive, deleteOwnKey, enqueue, lost, ownsKey, prefixRange, waitTurn, type QueueEntry } from './etcd-queue.js';
import {
  LeaderFeed, LeadershipHandle, checkElectionName, checkObserveOptions, resolveCampaign,
  type CampaignOptions, type Election, type Leader, type Leadership, type ObserveOptions, type ResolvedCampaign,
} from './election.js';
import { DEFAULT_TTL_MS, checkTtl } from './options.js';
import { gaveUp, untilAnswered, waitFor, type Wait } from './waiting.js';

/** Options of an EtcdElection, given to its constructor. */
export interface EtcdElectionOptions {
  /**
   * Default lease length of a campaign, in ms (rounded up to whole seconds, min 2 s).
   * @defaultValue `10000`
   */
  ttlMs?: number;
}

/**
 * Leader election on etcd, key for key Go's `concurrency.Election` and `etcdctl elect <name>`, so
 * wirelock, Go programs and etcdctl elect one leader among them. Each campaign has a lease of its own;
 * the oldest candidate's key leads, and its create revision is the term (the fence).
 */
export class EtcdElection implements Election {
  /** The election's name: candidates' keys are `<name>/<lease hex>`, as `etcdctl elect <name>` writes them. */
  readonly name: string;
  readonly #client: EtcdClient;
  readonly #ttlMs: number;
  readonly #closing = sharedController();
  readonly #leading = new Set<LeadershipHandle>();
  /** Campaigns still running (a campaign that was given up runs until its lease is revoked), and revocations after a loss. */
  readonly #busy = new Set<Promise<unknown>>();
  readonly #feeds = new Set<LeaderFeed>();

  constructor(client: EtcdClient, name: string, opts: EtcdElectionOptions = {}) {
    if (!(client instanceof EtcdClient)) throw invalidType('EtcdElection needs an EtcdClient');
    if (opts === null || typeof opts !== 'object') throw invalidType('election options must be an object');
    this.#client = client;
    this.name = checkElectionName(name);
    this.#ttlMs = checkTtl('ttlMs', opts.ttlMs ?? DEFAULT_TTL_MS);
  }

  /** True once close() has been called; campaigns, leader() and observe() then fail with ClosedError. */
  get closed(): boolean {
    return this.#closing.signal.aborted;
  }

  campaign(value: string | Buffer, opts?: CampaignOptions): Promise<Leadership> {
    let o: ResolvedCampaign;
    try {
      o = resolveCampaign(value, opts, this.#ttlMs);
      if (this.closed) throw this.#closing.signal.reason;
    } catch (err) {
      return Promise.reject(err);
    }
    const init = { key: this.name, start: performance.now(), waitTimeoutMs: o.waitTimeoutMs, signal: o.signal, closing: this.#closing.signal, backend: 'etcd' as const };
    if (o.waitTimeoutMs === 0) {
      // One attempt: a 0 ms deadline would otherwise end it before it reached etcd (as for the lockers).
      return this.#track(this.#campaign(undefined, init, o)).catch((err: unknown) => {
        throw gaveUp('etcd', this.name, init.start, o.signal, err);
      });
    }
    return waitFor(init, (wait) => this.#track(this.#campaign(wait, init, o)), (l) => l.resign());
  }

  /** The oldest candidate's key, or null when nobody campaigns. */
  async leader(): Promise<Leader | null> {
    if (this.closed) throw this.#closing.signal.reason;
    return this.#toLeader((await this.#readLeader()).kvs[0]);
  }

  observe(opts?: ObserveOptions): AsyncIterableIterator<Leader | null> {
    const signal = checkObserveOptions(opts);
    if (this.closed) throw this.#closing.signal.reason;
    const ctx: ObserverContext = {
      client: this.#client,
      name: this.name,
      closing: this.#closing.signal,
      read: (revision, sig) => this.#readLeader(revision, sig),
      toLeader: (kv) => this.#toLeader(kv),
    };
    const observer = new Observer(ctx, signal, () => this.#feeds.delete(observer.feed));
    this.#feeds.add(observer.feed);
    observer.start();
    return observer.feed;
  }

  /** Resigns every leadership, rejects pending campaigns (ClosedError), ends observers. Does not close the client. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.#closing.abort(new ClosedError('EtcdElection'));
    for (const feed of this.#feeds) feed.end();
    await Promise.allSettled([...this.#leading].map((l) => l.resign()));
    // Given-up campaigns end by revoking their leases: wait for that, so none leaves a key to lead later.
    await Promise.allSettled([...this.#busy]);
  }

  /** Keeps `work` in #busy until it settles. */
  #track<T>(work: Promise<T>): Promise<T> {
    this.#busy.add(work);
    const done = (): void => void this.#busy.delete(work);
    work.then(done, done);
    return work;
  }

  /** The range read that finds the leader: the oldest key under `<name>/`, at `revision` (0: now). */
  #readLeader(revision = 0n, signal?: AbortSignal): Promise<RangeResponse> {
    const range = { ...prefixRange(this.name), sort_order: SortOrder.ASCEND, sort_target: SortTarget.CREATE, limit: 1, revision };
    return this.#client.range(range, { signal });
  }

  #toLeader(kv: KeyValue | undefined): Leader | null {
    return kv ? { name: this.name, key: kv.key.toString(), value: kv.value, fence: kv.create_revision } : null;
  }

  /**
   * One campaign: a lease of its own, our key (with the value) in the queue, the wait for our turn.
   * Transient failures are retried on the same lease (enqueue finds our key if it landed); a lost
   * lease, or our key deleted while we queue, ends the campaign with LockLostError: that candidacy
   * never leads. Without a `wait` (waitTimeoutMs 0) it is one attempt: LockTimeoutError if someone
   * else leads. Whatever the campaign leaves behind, its lease's revocation removes, and the campaign
   * settles only once that is done (close() waits for it).
   */
  async #campaign(wait: Wait | undefined, init: { start: number; signal: AbortSignal | undefined }, o: ResolvedCampaign): Promise<LeadershipHandle> {
    const signal = wait?.signal ?? (init.signal ? AbortSignal.any([init.signal, this.#closing.signal]) : this.#closing.signal);
    const session = await this.#newSession(wait, signal, o);
    const entry: QueueEntry = { client: this.#client, session, name: this.name, key: `${this.name}/${session.leaseHex}`, aheadPrefix: this.name };
    try {
      for (let attempts = 1; ; attempts++) {
        try {
          const place = await enqueue(entry, signal, o.value);
          if (!place.first && !wait) throw new LockTimeoutError(this.name, performance.now() - init.start);
          // A retried enqueue finds the key it wrote (the lease is new: no other value can be there).
          const header = place.first ? place.header : await waitTurn(entry, place, wait!);
          if (signal.aborted) throw signal.reason; // our turn came after the wait ended: give it back
          assertSessionLive(entry);
          return this.#lead(entry, place.rev, header, init.start, attempts);
        } catch (err) {
          if (err instanceof LockLostError || err instanceof LockTimeoutError) throw err;
          if (session.signal.aborted && !signal.aborted) throw lost(this.name, 'session-expired', session.signal.reason);
          if (!wait || signal.aborted || !isTransientEtcdError(err)) throw err;
          await wait.backoff(err, { baseMs: 100 });
        }
      }
    } catch (err) {
      await session.close().catch(noop); // revoking the lease deletes our key, wherever the campaign stopped
      throw err;
    }
  }

  async #newSession(wait: Wait | undefined, signal: AbortSignal, o: ResolvedCampaign): Promise<Session> {
    for (;;) {
      try {
        return await Session.create(this.#client, { ttlMs: ttlSeconds(o.ttlMs) * 1000, signal });
      } catch (err) {
        if (!wait || signal.aborted || !isTransientEtcdError(err)) throw err;
        await wait.backoff(err, { baseMs: 100 });
      }
    }
  }

  /** We lead: a HeldLock that follows the lease, and a watch on our key that ends it if the key is deleted. */
  #lead(entry: QueueEntry, rev: bigint, header: ResponseHeader, start: number, attempts: number): LeadershipHandle {
    const { session } = entry;
    const ops: LockOps = {
      extend: async (lock) => {
        try {
          return await session.keepAliveOnce();
        } catch (err) {
          if (err instanceof SessionExpiredError) throw new LockLostError(lock.key, 'session-expired', { cause: err });
          throw err;
        }
      },
      // The guarded delete hands over at once; revoking the lease then ends what is left of the campaign.
      release: async () => {
        try {
          await deleteOwnKey(entry, rev);
        } finally {
          await session.close().catch(noop);
        }
      },
    };
    // Declared first: the session may have ended already, and then ends the lock while it is set up.
    let watch: { cancel(): void } | undefined;
    let handle: LeadershipHandle | undefined;
    const lock = new HeldLock({
      backend: 'etcd',
      key: this.name,
      token: entry.key,
      fence: rev,
      validUntil: session.validUntil,
      ttlMs: session.ttl * 1000,
      autoExtend: false, // the session renews the lease
      localExpiry: false, // the session's timer ends it at validUntil (through `ended`)
      keepsAlive: true,
      ops,
      onEnd: (l) => {
        watch?.cancel();
        session.offRenewed(renewed);
        session.offEnded(ended);
        if (handle) this.#leading.delete(handle);
        if (l.endReason instanceof LockLostError) void this.#track(session.close().catch(noop)); // nothing of ours may stay behind
      },
    });
    const renewed = (validUntil: number): void => lock.renewed(validUntil);
    const ended = (reason: Error): void => lock.lose('session-expired', reason);
    // From the revision after the one that showed us first: a deletion since then is reported.
    watch = this.#client.watch(entry.key, { filters: [WatchFilter.NOPUT], start_revision: header.revision + 1n }, {
      onEvents: () => lock.lose('stolen'),
      onError: (err) => {
        if (!(err instanceof WatchCompactedError)) return; // the client is closing: the session ends the lock
        void this.#client.range({ key: entry.key }).then((r) => r.kvs[0]?.create_revision === rev || lock.lose('stolen'), noop);
      },
    });
    session.onRenewed(renewed);
    session.onEnded(ended); // at once if the lease is gone already
    if (!lock.held) throw lock.endReason;
    const write = async (value: Buffer): Promise<boolean> => {
      const res = await this.#client.txn(
        { compare: [ownsKey(entry.key, rev)], success: [{ request_put: { key: entry.key, value, lease: session.lease } }] },
        { idempotent: true },
      );
      return res.succeeded;
    };
    handle = new LeadershipHandle(this.name, entry.key, lock, write);
    if (this.closed) {
      void handle.resign().catch(noop);
      throw this.#closing.signal.reason;
    }
    this.#leading.add(handle);
    if (lockChannels.acquire.hasSubscribers) {
      const { validUntil } = lock;
      lockChannels.acquire.publish({ backend: 'etcd', key: this.name, token: entry.key, fence: rev, validUntil, waitedMs: performance.now() - start, attempts });
    }
    return handle;
  }
}

/** What an Observer needs of its election. */
interface ObserverContext {
  client: EtcdClient;
  name: string;
  closing: AbortSignal;
  read(revision: bigint, signal: AbortSignal): Promise<RangeResponse>;
  toLeader(kv: KeyValue | undefined): Leader | null;
}

/**
 * One observe(): the leader now, then each change, from one watch on the election's prefix.
 * Events are applied one batch at a time, in order (a Range at a past revision may be needed
 * between two events).
 */
class Observer {
  readonly feed: LeaderFeed;
  readonly #ctx: ObserverContext;
  readonly #stop = new AbortController();
  readonly #signal: AbortSignal | undefined;
  /** Everything up to this revision is reflected in the last state pushed. */
  #rev = 0n;
  #leader: Leader | null = null;
  #watch: { cancel(): void } | undefined;
  #chain: Promise<void> = Promise.resolve();
  readonly #offAbort: () => void;

  constructor(ctx: ObserverContext, signal: AbortSignal | undefined, onStop: () => void) {
    this.#ctx = ctx;
    this.#signal = signal;
    this.feed = new LeaderFeed(() => {
      this.#stop.abort();
      this.#watch?.cancel();
      this.#offAbort();
      onStop();
    });
    const abort = (): void => this.feed.end(signal!.reason);
    signal?.addEventListener('abort', abort, { once: true });
    this.#offAbort = () => signal?.removeEventListener('abort', abort);
  }

  start(): void {
    if (this.#signal?.aborted) return this.feed.end(this.#signal.reason);
    this.#serially(() => this.#resync());
  }

  /** Runs `step` after every step before it; a failure ends the feed with it. */
  #serially(step: () => Promise<void>): void {
    this.#chain = this.#chain.then(async () => {
      if (this.feed.done) return;
      try {
        await step();
      } catch (err) {
        if (!this.#stop.signal.aborted) this.feed.end(err);
      }
    });
  }

  /** Reads the leader now, pushes it, and watches from the revision after the read. */
  async #resync(): Promise<void> {
    this.#watch?.cancel();
    const res = await this.#read(0n);
    this.#rev = res.header.revision;
    this.#set(this.#ctx.toLeader(res.kvs[0]));
    const { key, range_end } = prefixRange(this.#ctx.name);
    this.#watch = this.#ctx.client.watch(key, { range_end, start_revision: this.#rev + 1n }, {
      onEvents: (events) => this.#serially(() => this.#apply(events)),
      onError: (err) => this.#serially(async () => {
        if (!(err instanceof WatchCompactedError)) throw err;
        await this.#resync(); // history is gone: read the present, then go on from it
      }),
    });
  }

  async #apply(events: Event[]): Promise<void> {
    for (const ev of events) {
      const kv = ev.kv;
      if (!kv || kv.mod_revision <= this.#rev) continue; // already reflected in a read
      const key = kv.key.toString();
      if (ev.type === EventType.DELETE) {
        if (this.#leader && key === this.#leader.key) await this.#successor(kv.mod_revision);
        else this.#rev = kv.mod_revision;
        continue;
      }
      this.#rev = kv.mod_revision;
      if (this.#leader && key === this.#leader.key) this.#set({ ...this.#leader, value: kv.value });
      // Nobody led at the last revision we saw, so the first key created since is the oldest.
      else if (!this.#leader) this.#set(this.#ctx.toLeader(kv));
    }
  }

  /** The leader's key was deleted at `revision`: the oldest key left at that revision leads now. */
  async #successor(revision: bigint): Promise<void> {
    let at = revision;
    let res: RangeResponse;
    try {
      res = await this.#read(revision);
    } catch (err) {
      if (!(err instanceof EtcdError && err.grpcCode === Status.OUT_OF_RANGE)) throw err;
      res = await this.#read(0n); // compacted meanwhile: the present is the best there is
      at = res.header.revision;
    }
    this.#rev = at;
    this.#set(this.#ctx.toLeader(res.kvs[0]));
  }

  #set(leader: Leader | null): void {
    this.#leader = leader;
    this.feed.push(leader);
  }

  /** A leader read, retried while etcd is unreachable (an observer outlives outages). */
  #read(revision: bigint): Promise<RangeResponse> {
    const signal = AbortSignal.any([this.#stop.signal, this.#ctx.closing]);
    return untilAnswered(() => this.#ctx.read(revision, signal), isTransientEtcdError, signal);
  }
}
