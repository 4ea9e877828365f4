/**
 * The N nodes of a Redlock, and the one thing done with them: run a script on every node at once and
 * count the answers against the quorum. Answers never reject (a failing node is an answer too), and
 * every node that did not say yes can be described for a QuorumError.
 */
import { RedisClient } from '../resp/client.js';
import type { Script } from '../resp/script.js';
import { isTransientRedisError } from '../resp/transient.js';
import { driftMs } from './options.js';
import { ClosedError, ConnectionError, QuorumError, TimeoutError, invalidType, invalidValue, type QuorumNodeFailure, type RedlockNodeOutcome } from '../errors.js';

export type Failure = 'timeout' | 'connection' | 'error';

/** One node's answer to one script: its reply, or why there is none. */
export interface Answer {
  reply: unknown;
  failure: Failure | undefined;
  error: unknown;
}

/** How a QuorumError shows one answer: a failure kind (its error is the cause), a full entry, or nothing (it said yes). */
export type Describe = (a: Answer, i: number) => RedlockNodeOutcome | { kind: RedlockNodeOutcome; cause: unknown } | undefined;

export class RedlockNodes {
  readonly clients: readonly RedisClient[];
  /** floor(N/2) + 1. */
  readonly quorum: number;

  constructor(clients: unknown) {
    if (!Array.isArray(clients) || clients.length === 0) throw invalidValue('Redlock needs a non-empty array of RedisClients');
    const seen = new Set<string>();
    for (const client of clients) {
      if (!(client instanceof RedisClient)) throw invalidType('Redlock needs RedisClients (one per independent master)');
      // Two clients of one server would let one machine cast two votes: the quorum would mean nothing.
      if (seen.has(client.address)) throw invalidValue(`Redlock got the same server twice (${client.address})`);
      seen.add(client.address);
    }
    this.clients = [...(clients as RedisClient[])];
    this.quorum = quorumOf(clients.length);
  }

  get size(): number {
    return this.clients.length;
  }

  call(client: RedisClient, script: Script, keys: string[], args: Array<string | number>, timeoutMs: number): Promise<Answer> {
    // A client with no connection right now waits for its reconnect (up to timeoutMs): if that times
    // out, the node was unreachable (refused, down), not slow.
    const connected = client.connected;
    return client.evalScript(script, keys, args, { timeoutMs }).then(
      (reply): Answer => ({ reply, failure: undefined, error: undefined }),
      (error: unknown): Answer => ({ reply: undefined, failure: classify(error, connected), error }),
    );
  }

  /**
   * Calls every node at once and resolves as soon as the outcome is known: Q answers satisfy `yes`, or
   * N-Q+1 do not (Q is out of reach). Nodes still in flight are `undefined` then; the array keeps filling
   * in as they answer, so a slow or stopped node costs the caller nothing once the others have decided.
   */
  round(call: (client: RedisClient) => Promise<Answer>, yes: (a: Answer) => boolean): Promise<Array<Answer | undefined>> {
    const n = this.clients.length;
    const answers: Array<Answer | undefined> = new Array(n).fill(undefined);
    return new Promise((resolve) => {
      let ayes = 0;
      let nays = 0;
      for (let i = 0; i < n; i++) {
        void call(this.clients[i]!).then((a) => {
          answers[i] = a;
          if (yes(a)) ayes++;
          else nays++;
          // Once every node has answered, one of the two has happened.
          if (roundDecided(ayes, nays, n)) resolve(answers);
        });
      }
    });
  }

  /**
   * A QuorumError listing every node that did not say yes: `describe` says how; a node that has not
   * answered at all is a timeout. `causes[i]`, when set, replaces node i's answer's error as the cause.
   */
  quorumError(
    key: string,
    what: string,
    answers: Array<Answer | undefined>,
    timeoutMs: number,
    attempts: number,
    describe: Describe,
    causes: Array<unknown> = [],
  ): QuorumError {
    const nodes: QuorumNodeFailure[] = [];
    answers.forEach((a, i) => {
      const node = this.clients[i]!.address;
      if (a === undefined) {
        nodes.push({ node, kind: 'timeout', cause: new TimeoutError(`${node}: no answer within ${timeoutMs} ms`, timeoutMs) });
        return;
      }
      const d = describe(a, i);
      if (d === undefined) return;
      nodes.push(typeof d === 'string' ? { node, kind: d, cause: causes[i] ?? a.error } : { node, ...d });
    });
    const said = nodes.map((f) => `${f.node} ${f.kind}${describeCause(f.cause)}`).join('; ');
    const n = this.clients.length;
    const message =
      `lock "${key}": ${what} did not reach a quorum (${n - nodes.length} of ${n}, need ${this.quorum}) ` +
      `after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${said}`;
    return new QuorumError(key, message, nodes, attempts);
  }
}

// The quorum arithmetic, as pure functions (test/redlock-quorum.test.ts checks them without a server).

/** A majority of n: floor(n/2) + 1. Two majorities of one set always share a node. */
export function quorumOf(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** A round's outcome is known: a quorum said yes, or so many said no that a quorum is out of reach. */
export function roundDecided(ayes: number, nays: number, n: number): boolean {
  const q = quorumOf(n);
  return ayes >= q || nays >= n - q + 1;
}

/**
 * What is left of a lease granted at `ttlMs` after `elapsedMs` of acquiring, minus the drift
 * allowance: the hold is valid only while this is > 0.
 */
export function validityMs(ttlMs: number, elapsedMs: number, driftFactor: number): number {
  return ttlMs - elapsedMs - driftMs(ttlMs, driftFactor);
}

/**
 * How long until `needed` more nodes are free, from the PTTLs of the keys that others hold there:
 * the needed-th shortest. A key without expiry (-1, not written by a lock) counts as `ttlMs`.
 */
export function quorumPttl(pttls: number[], needed: number, ttlMs: number): number {
  const sorted = pttls.map((p) => (p >= 0 ? p : ttlMs)).sort((a, b) => a - b);
  return sorted[Math.min(needed, sorted.length) - 1] ?? 0;
}

/** REDLOCK_ACQUIRE granted the lock on this node: {1, fence}. */
export function isGrant(a: Answer): boolean {
  return a.failure === undefined && (a.reply as [number, number])[0] === 1;
}

/** REDLOCK_ACQUIRE did not grant ({0, pttl, headLeft}): SET NX failed atomically or was not tried, so our token is not there. */
export function heldElsewhere(a: Answer | undefined): boolean {
  return a !== undefined && a.failure === undefined && (a.reply as [number, number])[0] !== 1;
}

export function answered(a: Answer): boolean {
  return a.failure === undefined;
}

/**
 * Worth trying again later: the node timed out, was unreachable (but its client was not closed by its
 * owner), or answered "not yet" (LOADING, BUSY, …: the same replies a waiter waits out).
 */
export function retryLater(a: Answer): boolean {
  if (a.failure === 'error') return isTransientRedisError(a.error);
  return a.failure === 'timeout' || (a.failure === 'connection' && !(a.error instanceof ClosedError));
}

function classify(error: unknown, wasConnected: boolean): Failure {
  if (error instanceof TimeoutError) return wasConnected ? 'timeout' : 'connection';
  if (error instanceof ConnectionError || error instanceof ClosedError) return 'connection';
  return 'error';
}

function describeCause(cause: unknown): string {
  const message = cause && typeof cause === 'object' && 'message' in cause ? cause.message : undefined;
  return typeof message === 'string' ? ` (${message})` : '';
}
