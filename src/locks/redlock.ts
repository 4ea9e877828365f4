/**
 * Redlock: one lock over N independent Redis masters, held while a majority, Q = floor(N/2)+1, agrees.
 * Each node keeps RedisLocker's queue of waiters (src/locks/redis-scripts.ts), ordered by each waiter's
 * ticket; docs/redlock.md has the commands on the wire and what the fence does and does not guarantee.
 *
 * acquire  REDLOCK_ACQUIRE on every node at once, each bounded by nodeTimeoutMs: SET NX PX if the
 *          node's queue is empty or we are its head, else join it at our ticket. Held only if Q nodes
 *          granted AND validity = ttl - elapsed - drift > 0 (drift = ttl * driftFactor + 2 ms, elapsed on
 *          performance.now()). Otherwise each node that may hold our token (those that timed out too:
 *          their SET may still land) gets REDLOCK_YIELD (grant back, place kept) or QUEUE_RELEASE, then
 *          we wait for releases naming us and try again.
 * fence    the highest counter among the granting nodes. Granting nodes whose counter is behind are
 *          raised to it (RAISE_FENCE) unless Q of them are already there, so a quorum carries it.
 * extend   EXTEND on every node; needs Q confirmations before validUntil.
 * release  QUEUE_RELEASE on every node, each bounded by nodeTimeoutMs: it names the next waiter.
 *
 * A round resolves as soon as its outcome is known (Q yes, or too many no for Q), so a stopped node
 * costs at most nodeTimeoutMs and usually nothing: its command lands or times out on its own.
 */
import type { RedisClient } from '../resp/client.js';
import { isTransientRedisError } from '../resp/transient.js';
import { LockLostError, LockTimeoutError, outOfRange, type QuorumError } from '../errors.js';
import { lockChannels } from '../diagnostics.js';
import { jitter, noop } from '../abort.js';
import { BaseLocker } from './base-locker.js';
import { HeldLock, type LockOps } from './held-lock.js';
import { DEFAULT_TTL_MS, checkPrefix, checkTtl, driftMs, resolveAcquire, type ResolvedAcquire } from './options.js';
import { EXTEND, QUEUE_RELEASE, RAISE_FENCE, REDLOCK_ACQUIRE, REDLOCK_YIELD, queueKeys, redisKeys, type RedisKeys } from './redis-scripts.js';
import {
  RedlockNodes, answered, heldElsewhere, isGrant, quorumPttl, retryLater, validityMs, type Answer, type Describe,
} from './redlock-nodes.js';
import { randomToken } from './token.js';
import type { AcquireOptions, Lock, LockerOptions } from './types.js';
import { gaveUp, retryInBackground, waitFor, type Wait } from './waiting.js';

/** Redlock's options: those of every locker, plus its clock drift allowance and per-node timeout. */
export interface RedlockOptions extends LockerOptions {
  /**
   * Share of the TTL not counted on, for clocks running at different rates; 2 ms are added. Must be in [0, 1).
   * @defaultValue `0.01`
   */
  driftFactor?: number;
  /**
   * Per-node bound, in ms, on each command of an attempt.
   * @defaultValue 1% of the lock's TTL, at least min(50 ms, TTL/10)
   */
  nodeTimeoutMs?: number;
}

/**
 * One acquire's identity on the nodes: the token it locks and queues under, and its ticket, its place
 * in every node's queue (wall-clock µs when the wait began: the same on every node, so they all order
 * the waiters alike). `queued` false: a single attempt that does not join the queues (tryAcquire).
 */
interface Claim {
  token: string;
  ticket: number;
  queued: boolean;
}

/** One acquire attempt. `answers[i]` is undefined while node i has not answered. */
interface Outcome {
  lock: HeldLock | undefined;
  answers: Array<Answer | undefined>;
  /** The failed RAISE_FENCE answers of granting nodes that were behind, by node (see #raiseFence). */
  raiseFailures: Answer[];
  raiseFailed: boolean;
  granted: number;
  held: number;
  /** Error replies that waiting will not change (NOPERM, WRONGTYPE…; not LOADING, BUSY…). */
  errors: number;
  elapsedMs: number;
  validityMs: number;
  timeoutMs: number;
  /** Not held, and every node's answer is known (so the token can be used again): see #takeBack. */
  clean: boolean;
}

/**
 * One lock over N independent Redis masters (one RedisClient each), held while a majority,
 * floor(N/2) + 1, agrees. Each acquire, extend and release goes to every node at once; a stopped node
 * costs at most `nodeTimeoutMs`. docs/redlock.md describes what the fence does and does not guarantee.
 */
export class Redlock extends BaseLocker {
  readonly #nodes: RedlockNodes;
  readonly #quorum: number;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #driftFactor: number;
  readonly #nodeTimeoutMs: number | undefined;
  /** How the HeldLocks this locker hands out extend and release themselves (not public: see LockOps). */
  readonly #ops: LockOps = {
    extend: (lock, ttlMs) => this.#extend(lock, ttlMs),
    release: (lock) => this.#release(lock),
  };

  constructor(clients: RedisClient[], opts: RedlockOptions = {}) {
    super('redlock');
    this.#nodes = new RedlockNodes(clients);
    this.#quorum = this.#nodes.quorum;
    this.#prefix = checkPrefix(opts.prefix ?? 'wirelock:');
    this.#ttlMs = checkTtl('ttlMs', opts.ttlMs ?? DEFAULT_TTL_MS);
    const df = opts.driftFactor ?? 0.01;
    if (typeof df !== 'number' || !(df >= 0 && df < 1)) throw outOfRange(`driftFactor must be in [0, 1), got ${String(df)}`);
    this.#driftFactor = df;
    this.#nodeTimeoutMs = opts.nodeTimeoutMs === undefined ? undefined : checkTtl('nodeTimeoutMs', opts.nodeTimeoutMs);
  }

  /**
   * The acquire's options. A TTL no longer than its own drift allowance could never leave a validity
   * (every quorum would come "too late"): it is refused at once instead of being waited on forever.
   */
  #resolve(key: string, opts: AcquireOptions | undefined): ResolvedAcquire {
    const o = resolveAcquire(key, opts, this.#ttlMs);
    const drift = driftMs(o.ttlMs, this.#driftFactor);
    if (o.ttlMs <= drift) throw outOfRange(`ttlMs must be longer than Redlock's drift allowance (${drift} ms), got ${o.ttlMs}`);
    return o;
  }

  /** How many nodes must agree: floor(N/2) + 1. */
  get quorum(): number {
    return this.#quorum;
  }

  /**
   * One round on every node: the lock, or null if other holders have it. Rejects with QuorumError when
   * no quorum could be reached (nodes down, error replies) or the quorum came too late to leave any validity.
   */
  async tryAcquire(key: string, opts?: AcquireOptions): Promise<Lock | null> {
    const o = this.#resolve(key, opts);
    this.checkOpen();
    const start = performance.now();
    const out = await this.#oneRound(key, redisKeys(this.#prefix, key), o, start, newClaim(false));
    if (out.lock) return this.#acquired(out.lock, start, 1);
    // null means "someone else holds it"; unreachable nodes and late quorums are not that.
    if (out.granted >= this.#quorum || !this.#contended(out)) throw this.#acquireError(key, out, 1);
    return null;
  }

  /**
   * Tries rounds until a quorum grants the lock with validity left, sleeping until the holders release
   * (or their keys expire) and backing off while nodes are unreachable. At `waitTimeoutMs` it rejects
   * with LockTimeoutError (cause: the last round's QuorumError) if the last round found the lock held
   * elsewhere or no round had finished, else with QuorumError; at once with QuorumError if more than N - quorum nodes give error replies that waiting
   * will not change. Rejects with `signal.reason` on abort and ClosedError if the locker closes.
   */
  async acquire(key: string, opts?: AcquireOptions): Promise<Lock> {
    const o = this.#resolve(key, opts);
    this.checkOpen();
    const keys = redisKeys(this.#prefix, key);
    const start = performance.now();
    // Uncontended fast path: one round, nothing to set up. It also serves waitTimeoutMs: 0, which
    // means one round (a 0 ms deadline would otherwise cancel that round while on the wire); any
    // other deadline bounds the first round too, inside the wait.
    // A single round (waitTimeoutMs: 0) does not join the queues; a wait joins them from its first round.
    const claim = newClaim(o.waitTimeoutMs !== 0);
    let first: Outcome | undefined;
    if (o.waitTimeoutMs === 0 || (o.waitTimeoutMs === Infinity && !o.signal)) {
      try {
        first = await this.#oneRound(key, keys, o, start, claim);
      } catch (err) {
        throw gaveUp(this.backend, key, start, o.signal, err);
      }
      if (first.lock) return this.#acquired(first.lock, start, 1);
      if (o.waitTimeoutMs === 0) throw gaveUp(this.backend, key, start, o.signal, this.#deadlineError(key, start, first, 1), 'timeout');
      if (this.closed) {
        // Closed while the first round queued us: the wait will not start, so leave the queues here.
        this.#leave(keys, claim.token, o.ttlMs);
        this.checkOpen();
      }
    }
    const state = { last: first, claim };
    const timeoutError = (wait: Wait): Error => this.#deadlineError(key, start, state.last, wait.attempts);
    return this.waitFor(key, start, o, (wait) => this.#waitQuorum(wait, keys, o, state), timeoutError);
  }

  /** One round, abandoned (and its lock given back, should it win) when the caller's signal aborts. */
  #oneRound(key: string, keys: RedisKeys, o: ResolvedAcquire, start: number, claim: Claim): Promise<Outcome> {
    if (!o.signal) return this.#attempt(key, keys, o, claim);
    // No deadline: one round is one round, however long it takes (each node is bounded by its timeout).
    const init = { key, start, waitTimeoutMs: Infinity, signal: o.signal, closing: this.closing.signal };
    return waitFor(init, () => this.#attempt(key, keys, o, claim), async (out) => out.lock?.release());
  }

  /**
   * The slow path, in every node's queue. Subscribes to the release channel on every node, then after
   * each failed attempt:
   * - held elsewhere (or free but someone else's turn): sleeps until release messages naming us (or
   *   naming nobody: no one else queued there) have freed enough nodes for a quorum, counting the
   *   nodes we had got ourselves; or until the holders' keys on those nodes have run out (their PTTLs),
   *   plus jitter; and at least every ttl/3, so that our places in the queues do not lapse. A release
   *   names the head of that node's queue, and the queues order the waiters alike (by ticket), so the
   *   waiters do not all race for each release, and a split vote is not fought again: the next round
   *   goes to the ticket that is first everywhere;
   * - no quorum reachable (nodes down, stopped, restarting, erroring): backs off, capped, with jitter,
   *   until the deadline, then QuorumError with each node's cause.
   * Whatever ends the wait but a grant takes our places out of the queues (and any late grant back).
   */
  async #waitQuorum(wait: Wait, keys: RedisKeys, o: ResolvedAcquire, state: { last: Outcome | undefined; claim: Claim }): Promise<HeldLock> {
    const { claim } = state;
    // Nodes that named us (or no one) in a release since the last attempt began; or look again whatever
    // they say (just subscribed, or a subscriber reconnected and may have missed messages).
    const freed: boolean[] = new Array(this.#nodes.size).fill(false);
    let lookAgain = false;
    const ready = (): boolean => lookAgain || (state.last !== undefined && this.#freedQuorum(state.last, freed));
    const listeners = this.#nodes.clients.map((_, i) => (message: string | Buffer | null): void => {
      if (message === null) lookAgain = true;
      else if (message.length === 0 || String(message) === claim.token) freed[i] = true;
      else return;
      if (ready()) wait.wake();
    });
    let unsubscribe: (() => void) | undefined;
    let granted = false;
    if (state.last) wait.attempts = 1; // the fast path's round
    try {
      for (let retry = state.last === undefined; ; retry = true) {
        if (retry) {
          // A round not every node answered may still land under its token later: that token leaves
          // every queue (sent ahead of the next attempt), and the wait goes on under a new one, at the
          // same ticket, so in the same place.
          if (state.last && !state.last.clean) {
            this.#leave(keys, claim.token, o.ttlMs);
            claim.token = randomToken();
          }
          freed.fill(false);
          lookAgain = false;
          state.last = await this.#attempt(wait.key, keys, o, claim);
          wait.attempts++;
          if (state.last.lock) {
            granted = true;
            return this.#acquired(state.last.lock, wait.start, wait.attempts);
          }
        }
        wait.takeWake(); // wake-ups judged against the previous attempt do not count
        const out = state.last!;
        // Error replies (NOPERM, WRONGTYPE…) from more than N-Q nodes will not go away by waiting.
        if (out.errors > this.#nodes.size - this.#quorum) throw this.#acquireError(wait.key, out, wait.attempts);
        if (!unsubscribe) {
          unsubscribe = await this.#subscribe(keys.channel, listeners, wait, out.timeoutMs);
          lookAgain = true; // a release between that attempt and the subscriptions would go unseen
        }
        await this.#pauseAfter(out, wait, ready, o.ttlMs);
      }
    } finally {
      unsubscribe?.();
      if (!granted) this.#leave(keys, claim.token, o.ttlMs);
    }
  }

  /** Between two attempts: back off from unreachable nodes, or sleep until the holders are gone (or a release wakes us). */
  async #pauseAfter(out: Outcome, wait: Wait, ready: () => boolean, ttlMs: number): Promise<void> {
    if (!this.#contended(out)) {
      const delayMs = wait.backoffDelay(undefined);
      if (lockChannels.wait.hasSubscribers) lockChannels.wait.publish({ backend: 'redlock', key: wait.key, attempts: wait.attempts, delayMs });
      return wait.sleep(delayMs);
    }
    wait.answered();
    if (!ready()) {
      const pttl = this.#quorumPttl(out, ttlMs);
      if (lockChannels.wait.hasSubscribers) lockChannels.wait.publish({ backend: 'redlock', key: wait.key, pttl, attempts: wait.attempts });
      await wait.pause(Math.min(pttl + 1 + jitter(5), ttlMs / 3));
    }
  }

  /** Whether the nodes we got, plus those that announced a release since, make a quorum. */
  #freedQuorum(out: Outcome, freed: boolean[]): boolean {
    let free = 0;
    out.answers.forEach((a, i) => {
      if (freed[i] || (a && isGrant(a))) free++;
    });
    return free >= this.#quorum;
  }

  /**
   * Subscribes `listeners[i]` to `channel` on node i, waiting at most `boundMs` for the confirmations:
   * a node that confirms later still wakes us later, and a missed message costs at most one PTTL.
   */
  async #subscribe(channel: string, listeners: Array<(message: string | Buffer | null) => void>, wait: Wait, boundMs: number): Promise<() => void> {
    const offs: Array<() => void> = [];
    let done = false;
    const stop = (): void => {
      done = true;
      for (const off of offs) off();
    };
    const confirmed = this.#nodes.clients.map((client, i) =>
      client.subscribe(channel, listeners[i]!, wait.signal).then((off) => (done ? off() : void offs.push(off)), noop),
    );
    try {
      await Promise.race([Promise.all(confirmed), wait.sleep(boundMs)]);
    } catch (err) {
      stop();
      throw err;
    }
    return stop;
  }

  /** When the holders' keys on a quorum will all be gone: the Q-th shortest PTTL among them. */
  #quorumPttl(out: Outcome, ttlMs: number): number {
    const pttls: number[] = [];
    for (const a of out.answers) {
      const r = a && a.failure === undefined ? (a.reply as [number, number]) : undefined;
      if (r && r[0] !== 1) pttls.push(r[1]);
    }
    return quorumPttl(pttls, this.#quorum - out.granted, ttlMs);
  }

  /** A quorum is reachable (granted or held by others): waiting for the holders makes sense. */
  #contended(out: Outcome): boolean {
    return out.granted + out.held >= this.#quorum;
  }

  async #attempt(key: string, keys: RedisKeys, o: ResolvedAcquire, claim: Claim): Promise<Outcome> {
    const { token } = claim;
    // Redis takes whole milliseconds: round up, so the lease is never shorter than asked.
    const ttl = Math.ceil(o.ttlMs);
    const timeoutMs = this.#timeoutFor(ttl);
    const start = performance.now();
    const nodes = this.#nodes;
    const scriptKeys = queueKeys(keys);
    const args = [token, ttl, claim.queued ? ttl : 0, keys.channel, claim.ticket];
    const answers = await nodes.round((c) => nodes.call(c, REDLOCK_ACQUIRE, scriptKeys, args, timeoutMs), isGrant);
    const { out, fence } = tally(answers, timeoutMs);
    // A quorum with no validity left is too late already: no fence step for it (our keys may be gone).
    const late = (): boolean => {
      out.elapsedMs = performance.now() - start;
      out.validityMs = validityMs(o.ttlMs, out.elapsedMs, this.#driftFactor);
      return out.validityMs <= 0;
    };
    if (out.granted >= this.#quorum && !late() && (await this.#raiseFence(keys, token, fence, out))) {
      if (!late()) {
        out.lock = this.handOut(
          new HeldLock({
            backend: 'redlock',
            key,
            token,
            fence: BigInt(fence),
            validUntil: start + o.ttlMs - driftMs(o.ttlMs, this.#driftFactor),
            ttlMs: o.ttlMs,
            autoExtend: o.autoExtend,
            ops: this.#ops,
            onEnd: this.forget,
          }),
        );
        return out;
      }
    }
    out.elapsedMs = performance.now() - start;
    out.clean = await this.#takeBack(answers, keys, claim, ttl, timeoutMs, start + ttl);
    return out;
  }

  /**
   * Not held: takes back every SET of ours that may have landed. A node that said "not granted" cannot
   * have one (SET NX failed atomically, or was not tried). Every other node gets, behind the attempt on
   * the same connection, REDLOCK_YIELD while we wait (the grant goes back, our place stays) or
   * QUEUE_RELEASE (the grant and our place go); a node whose attempt failed (its connection is gone, so
   * nothing is ordered behind it) gets QUEUE_RELEASE, retried in the background. True if every node's
   * state under this token is known, so the next round may use it again.
   */
  async #takeBack(answers: Array<Answer | undefined>, keys: RedisKeys, claim: Claim, ttl: number, timeoutMs: number, until: number): Promise<boolean> {
    const nodes = this.#nodes;
    const scriptKeys = queueKeys(keys);
    const yieldArgs = [claim.token, keys.channel, ttl, claim.ticket];
    const backs: Array<Promise<Answer>> = [];
    let clean = true;
    answers.forEach((a, i) => {
      if (heldElsewhere(a)) return;
      const client = nodes.clients[i]!;
      if (a?.failure !== undefined || !claim.queued) {
        if (a?.failure !== undefined) clean = false;
        backs.push(this.#releaseOn(client, keys, claim.token, timeoutMs, until));
        return;
      }
      backs.push(nodes.call(client, REDLOCK_YIELD, scriptKeys, yieldArgs, timeoutMs).then((y) => {
        if (y.failure !== undefined) {
          clean = false;
          if (retryLater(y)) this.#cleanup(client, keys, claim.token, until);
        }
        return y;
      }));
    });
    await Promise.all(backs);
    return clean;
  }

  /**
   * The wait is over without the lock, or goes on under a new token: takes the places of `token` out
   * of every node's queue, and any grant under it that may still land (QUEUE_RELEASE, which wakes the
   * next head).
   * In the background, retried while the token could matter (one TTL).
   */
  #leave(keys: RedisKeys, token: string, ttlMs: number): void {
    const until = performance.now() + ttlMs;
    for (const client of this.#nodes.clients) this.#cleanup(client, keys, token, until, false);
  }

  /**
   * Makes sure a quorum of the granting nodes carries `fence` (see the fencing section of the docs).
   * Granting nodes that are behind are raised; the raise is waited for only when it is needed for Q.
   */
  async #raiseFence(keys: RedisKeys, token: string, fence: number, out: Outcome): Promise<boolean> {
    const behind: number[] = [];
    out.answers.forEach((a, i) => a && isGrant(a) && (a.reply as [number, number])[1] < fence && behind.push(i));
    if (behind.length === 0) return true;
    const nodes = this.#nodes;
    const raised = behind.map((i) => nodes.call(nodes.clients[i]!, RAISE_FENCE, [keys.lock, keys.fence], [token, fence], out.timeoutMs));
    if (out.granted - behind.length >= this.#quorum) return true; // the raises land on their own
    const answers = await Promise.all(raised);
    let carried = out.granted - behind.length;
    answers.forEach((a, j) => (a.reply === 1 ? carried++ : (out.raiseFailures[behind[j]!] = a)));
    out.raiseFailed = carried < this.#quorum;
    return !out.raiseFailed;
  }

  #acquired(lock: HeldLock, start: number, attempts: number): HeldLock {
    if (lockChannels.acquire.hasSubscribers) {
      const { key, token, fence, validUntil } = lock;
      lockChannels.acquire.publish({ backend: 'redlock', key, token, fence, validUntil, waitedMs: performance.now() - start, attempts });
    }
    return lock;
  }

  // The lock operations (#ops), used by the HeldLocks this locker hands out.

  async #extend(lock: HeldLock, ttlMs: number): Promise<number> {
    const keys = redisKeys(this.#prefix, lock.key);
    const ttl = Math.ceil(ttlMs);
    const sentAt = performance.now();
    // A confirmation after validUntil is worth nothing: the lock has been given up locally by then.
    const timeoutMs = Math.max(1, Math.min(this.#timeoutFor(ttl), lock.validUntil - sentAt));
    const nodes = this.#nodes;
    const answers = await nodes.round((c) => nodes.call(c, EXTEND, [keys.lock], [lock.token, ttl], timeoutMs), (a) => a.reply === 1);
    let extended = 0;
    let gone = 0;
    let stolen = 0;
    for (const a of answers) {
      if (a?.reply === 1) extended++;
      else if (a?.reply === 0) gone++;
      else if (a?.reply === -1) stolen++;
    }
    if (extended >= this.#quorum) {
      if (performance.now() < lock.validUntil) return sentAt + ttl - driftMs(ttl, this.#driftFactor);
      throw new LockLostError(lock.key, 'expired');
    }
    const error = this.#nodes.quorumError(lock.key, 'extend', answers, timeoutMs, 1, extendFailure);
    // Nodes that did not answer may still hold our key: while a quorum is possible, this is a transient
    // failure (HeldLock tries again while time is left, and gives up at validUntil). Otherwise it is over.
    if (this.#nodes.size - gone - stolen >= this.#quorum) throw error;
    throw new LockLostError(lock.key, stolen >= this.#quorum ? 'stolen' : 'quorum-lost', { cause: error });
  }

  async #release(lock: HeldLock): Promise<void> {
    const keys = redisKeys(this.#prefix, lock.key);
    const timeoutMs = this.#timeoutFor(lock.ttlMs);
    const until = Math.max(lock.validUntil, performance.now()) + lock.ttlMs;
    // Resolves once a quorum has answered: a stopped node does not hold up the caller (it is still
    // sent the release, and tried again in the background).
    const answers = await this.#nodes.round((c) => this.#releaseOn(c, keys, lock.token, timeoutMs, until), answered);
    let confirmed = 0;
    for (const a of answers) if (a && answered(a)) confirmed++;
    // Fewer than Q answers: the lock may linger on a quorum until its TTL. Say so.
    if (confirmed < this.#quorum) throw this.#nodes.quorumError(lock.key, 'release', answers, timeoutMs, 1, (a) => a.failure);
  }

  /**
   * RELEASE on one node, bounded by timeoutMs. If the node timed out, was unreachable or said "not
   * yet", it is tried again in the background until `until` (after which the key has expired anyway).
   */
  async #releaseOn(client: RedisClient, keys: RedisKeys, token: string, timeoutMs: number, until: number): Promise<Answer> {
    const a = await this.#nodes.call(client, QUEUE_RELEASE, queueKeys(keys), [token, keys.channel], timeoutMs);
    if (retryLater(a)) this.#cleanup(client, keys, token, until);
    return a;
  }

  /** QUEUE_RELEASE under `token` on one node, in the background, until it gets an answer or `until`. */
  #cleanup(client: RedisClient, keys: RedisKeys, token: string, until: number, afterFailure = true): void {
    const step = async (): Promise<boolean> => {
      const left = until - performance.now();
      const a = await this.#nodes.call(client, QUEUE_RELEASE, queueKeys(keys), [token, keys.channel], Math.max(1, Math.min(client.commandTimeoutMs, left)));
      return !retryLater(a);
    };
    // After a failure, give the node's reconnect a moment before the first retry; otherwise send it
    // now, so that it goes out ahead of anything sent after it on the same connection.
    void retryInBackground(step, { until, firstDelayMs: afterFailure ? 50 : undefined });
  }

  /**
   * The default per-node bound: 1% of the TTL, so that a stuck node cannot eat the validity; but at least
   * 50 ms (a tenth of the TTL if that is less), because a busy process's event loop can run its timers
   * tens of ms late, and a timeout on a healthy node costs its connection (see docs/redlock.md).
   */
  #timeoutFor(ttlMs: number): number {
    return this.#nodeTimeoutMs ?? Math.ceil(Math.max(Math.min(50, ttlMs / 10), ttlMs / 100));
  }

  #acquireError(key: string, out: Outcome, attempts: number): QuorumError {
    const { elapsedMs, validityMs } = out;
    const late =
      out.granted >= this.#quorum && !out.raiseFailed
        ? { elapsedMs, validityMs, message: `quorum after ${Math.round(elapsedMs)} ms, validity ${Math.round(validityMs)} ms` }
        : undefined;
    return this.#nodes.quorumError(key, 'acquire', out.answers, out.timeoutMs, attempts, (a, i) => {
      // A failed raise: its own failure, or 0 = our key had already gone from that node.
      const raise = out.raiseFailures[i];
      if (raise) return raise.failure ?? { kind: 'gone', cause: undefined };
      if (a.failure) return a.failure;
      const [granted, pttl] = a.reply as [number, number];
      // -2: the lock is free there, but promised to a waiter ahead of us in that node's line.
      if (granted !== 1) return { kind: 'held', cause: { pttlMs: pttl, message: pttl === -2 ? 'free, another waiter\'s turn' : `PTTL ${pttl} ms` } };
      return late && { kind: 'late', cause: late };
    }, out.raiseFailures.map((r) => r?.error));
  }

  #deadlineError(key: string, start: number, last: Outcome | undefined, attempts: number): Error {
    const waited = performance.now() - start;
    if (last && !last.lock && (!this.#contended(last) || last.granted >= this.#quorum)) {
      return this.#acquireError(key, last, attempts);
    }
    return new LockTimeoutError(key, waited, last ? { cause: this.#acquireError(key, last, attempts) } : undefined);
  }
}

const extendFailure: Describe = (a) => {
  if (a.failure) return a.failure;
  if (a.reply === 1) return undefined;
  return { kind: a.reply === -1 ? 'held' : 'gone', cause: undefined };
};

/** Counts an ACQUIRE round's answers; `fence` is the highest counter among the granting nodes. */
function tally(answers: Array<Answer | undefined>, timeoutMs: number): { out: Outcome; fence: number } {
  const out: Outcome = {
    lock: undefined, answers, raiseFailures: [], raiseFailed: false,
    granted: 0, held: 0, errors: 0, elapsedMs: 0, validityMs: 0, timeoutMs, clean: false,
  };
  let fence = 0;
  for (const a of answers) {
    if (a === undefined) continue;
    if (a.failure === 'error' && !isTransientRedisError(a.error)) out.errors++;
    if (a.failure !== undefined) continue;
    const [granted, n] = a.reply as [number, number];
    if (granted === 1) {
      out.granted++;
      if (n > fence) fence = n;
    } else out.held++;
  }
  return { out, fence };
}

/** A new acquire's claim: a fresh token, and a ticket from the wall clock in µs. */
function newClaim(queued: boolean): Claim {
  return { token: randomToken(), ticket: Math.floor((performance.timeOrigin + performance.now()) * 1000), queued };
}
