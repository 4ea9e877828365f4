/**
 * Redlock against real redis-servers (3 and 5 of them), with SIGSTOP, kill -9 and a delaying proxy for
 * the faults. Every test makes its own clients, so a killed or paused node cannot leak into the next.
 */
import { expect } from 'chai';
import { ClosedError, LockLostError, LockTimeoutError, QuorumError, RedisClient, Redlock } from '../src/index.js';
import type { Lock, RedlockNodeFailure, RedlockOptions } from '../src/index.js';
import { startRedisNodes, type RedisServer } from '../src/testing/servers.js';
import { checkHistory, type Hold } from '../src/testing/history.js';
import { FaultProxy } from './support/proxy.js';
import { REDLOCK_ACQUIRE, TICKET_SKEW_US, queueKeys, redisKeys } from '../src/locks/redis-scripts.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('Redlock', function () {
  this.timeout(20_000);
  let servers: RedisServer[];
  let open: RedisClient[] = [];
  let lockers: Redlock[] = [];
  let proxies: FaultProxy[] = [];
  let keyCount = 0;
  const key = (): string => `rl-${process.pid}-${keyCount++}`;
  const lockKey = (k: string): string => `wirelock:{${k}}`;

  /** Clients of the given servers (or ports), with a fast reconnect so a restarted node is back quickly. */
  async function clients(targets: Array<{ port: number }>): Promise<RedisClient[]> {
    const cs = await Promise.all(
      targets.map((t) => RedisClient.connect({ port: t.port, commandTimeoutMs: 2000, connectTimeoutMs: 1000, reconnect: () => 20 })),
    );
    open.push(...cs);
    return cs;
  }

  async function redlock(targets: Array<{ port: number }>, opts?: RedlockOptions): Promise<Redlock> {
    const locker = new Redlock(await clients(targets), opts);
    lockers.push(locker);
    return locker;
  }

  /** What each server holds under the lock's key and its fence counter, read on fresh connections. */
  async function inspect(targets: RedisServer[], k: string): Promise<Array<{ lock: unknown; fence: unknown }>> {
    const admin = await clients(targets);
    return Promise.all(
      admin.map(async (c) => ({ lock: await c.send(['GET', lockKey(k)]), fence: await c.send(['GET', `${lockKey(k)}:fence`]) })),
    );
  }

  /**
   * The lock's value on each server, once it equals `expected` (polled for up to 1 s): acquire and
   * release resolve as soon as a quorum has answered, so the last node may still be a moment behind.
   */
  async function locksOn(targets: RedisServer[], k: string, expected: unknown[]): Promise<unknown[]> {
    const admin = await clients(targets);
    const until = performance.now() + 1000;
    for (;;) {
      const values = await Promise.all(admin.map((c) => c.send(['GET', lockKey(k)])));
      if (JSON.stringify(values) === JSON.stringify(expected) || performance.now() > until) return values;
      await sleep(10);
    }
  }

  async function onNodes(targets: RedisServer[], args: Array<string | number>): Promise<void> {
    const admin = await clients(targets);
    await Promise.all(admin.map((c) => c.send(args)));
  }

  function kinds(err: QuorumError): Map<string, string> {
    return new Map((err.nodes as RedlockNodeFailure[]).map((f) => [f.node, f.kind]));
  }

  async function rejection(p: Promise<unknown>): Promise<unknown> {
    try {
      await p;
    } catch (err) {
      return err;
    }
    throw new Error('expected a rejection');
  }

  before(async () => {
    servers = await startRedisNodes(5);
  });
  afterEach(async () => {
    await Promise.allSettled(lockers.map((l) => l.close()));
    await Promise.allSettled(proxies.map((p) => p.stop()));
    await Promise.allSettled(open.map((c) => c.close()));
    for (const s of servers) s.resume();
    open = [];
    lockers = [];
    proxies = [];
  });
  after(async () => {
    await Promise.all((servers ?? []).map((s) => s.stop()));
  });

  it('rejects bad arguments with TypeError/RangeError', async () => {
    const [a, b] = await clients(servers.slice(0, 2));
    const twin = (await clients([servers[0]!]))[0]!;
    expect(() => new Redlock([])).to.throw(TypeError);
    expect(() => new Redlock(undefined as unknown as RedisClient[])).to.throw(TypeError);
    expect(() => new Redlock([a!, a!])).to.throw(TypeError, /same server/);
    expect(() => new Redlock([a!, twin])).to.throw(TypeError, /same server/);
    expect(() => new Redlock([a!, { send() {} } as unknown as RedisClient])).to.throw(TypeError);
    expect(() => new Redlock([a!, b!], { driftFactor: 1 })).to.throw(RangeError);
    expect(() => new Redlock([a!, b!], { driftFactor: NaN })).to.throw(RangeError);
    expect(() => new Redlock([a!, b!], { nodeTimeoutMs: 0 })).to.throw(RangeError);
    expect(() => new Redlock([a!, b!], { prefix: 'x{' })).to.throw(TypeError);
    const locker = new Redlock([a!, b!]);
    lockers.push(locker);
    expect(await rejection(locker.acquire(''))).to.be.instanceOf(TypeError);
    expect(await rejection(locker.acquire('k', { ttlMs: -1 }))).to.be.instanceOf(RangeError);
  });

  it('holds the key on every node, fences, and releases it everywhere', async () => {
    const nodes = servers.slice(0, 3);
    const locker = await redlock(nodes);
    expect(locker.quorum).to.equal(2);
    const k = key();
    const before = performance.now();
    const lock = await locker.acquire(k, { ttlMs: 5000 });
    expect(lock.fence > 0n).to.equal(true);
    expect(lock.validUntil).to.be.at.least(before + 5000 - 52).and.at.most(performance.now() + 5000 - 52);
    expect(await locksOn(nodes, k, [lock.token, lock.token, lock.token])).to.deep.equal([lock.token, lock.token, lock.token]);
    expect(await locker.tryAcquire(k)).to.equal(null);
    await lock.release();
    expect(lock.signal.aborted).to.equal(true);
    expect(await locksOn(nodes, k, [null, null, null])).to.deep.equal([null, null, null]);
    const again = await locker.acquire(k);
    expect(again.fence > lock.fence).to.equal(true);
    await again.release();
  });

  it('is exclusive under contention across clients, with increasing fences', async () => {
    const nodes = servers.slice(0, 3);
    const k = key();
    const holds: Hold[] = [];
    let inside = 0;
    let maxInside = 0;
    const worker = async (w: number): Promise<void> => {
      const locker = await redlock(nodes);
      for (let i = 0; i < 12; i++) {
        await locker.using(
          k,
          async (lock) => {
            const enter = process.hrtime.bigint();
            maxInside = Math.max(maxInside, ++inside);
            await sleep(1 + (i % 3));
            inside--;
            holds.push({ worker: w, enter, exit: process.hrtime.bigint(), fence: lock.fence });
          },
          { ttlMs: 3000, waitTimeoutMs: 15_000 },
        );
      }
    };
    await Promise.all([0, 1, 2, 3].map(worker));
    const report = checkHistory(holds);
    expect(report.holds).to.equal(48);
    expect(maxInside).to.equal(1);
    expect(report.overlaps).to.deep.equal([]);
    expect(report.fenceRegressions).to.deep.equal([]);
  });

  it('keeps fences increasing when the nodes’ counters have diverged', async () => {
    const nodes = servers.slice(0, 3);
    const locker = await redlock(nodes);
    const k = key();
    // Node 0 is far ahead (say it granted many attempts that failed elsewhere: its counter is 1000 s
    // ahead of its clock), and node 2 is taken by someone else: the quorum is nodes 0 and 1.
    const [s, us] = (await (await clients([nodes[0]!]))[0]!.send(['TIME'])) as [string, string];
    const high = Number(s) * 1e6 + Number(us) + 1e9;
    await onNodes([nodes[0]!], ['SET', `${lockKey(k)}:fence`, high, 'PX', 10_000]);
    await onNodes([nodes[2]!], ['SET', lockKey(k), 'someone-else', 'PX', 10_000]);
    const first = await locker.acquire(k);
    expect(first.fence).to.equal(BigInt(high + 1));
    // Node 1 was behind: it was raised to the fence before the lock was handed out.
    expect((await inspect(nodes, k)).map((n) => Number(n.fence))).to.deep.equal([high + 1, high + 1, 0]);
    await first.release();
    // Now node 0 is taken: the next quorum is nodes 1 and 2, and node 1 carries the fence on.
    await onNodes([nodes[2]!], ['DEL', lockKey(k)]);
    await onNodes([nodes[0]!], ['SET', lockKey(k), 'someone-else', 'PX', 10_000]);
    const second = await locker.acquire(k);
    expect(second.fence).to.equal(BigInt(high + 2));
    await second.release();
  });

  it('wakes a waiter on release, long before the TTL', async () => {
    const nodes = servers.slice(0, 3);
    const [a, b] = [await redlock(nodes), await redlock(nodes)];
    const k = key();
    const held = await a.acquire(k, { ttlMs: 10_000, autoExtend: false });
    const waiting = b.acquire(k, { ttlMs: 10_000, waitTimeoutMs: 8000 });
    await sleep(100);
    const t0 = performance.now();
    await held.release();
    const next = await waiting;
    expect(performance.now() - t0).to.be.lessThan(2000);
    expect(next.fence > held.fence).to.equal(true);
    await next.release();
  });

  it('takes a crashed holder’s lock once its PTTLs on a quorum run out', async () => {
    const nodes = servers.slice(0, 3);
    const [a, b] = [await redlock(nodes), await redlock(nodes)];
    const k = key();
    const held = await a.acquire(k, { ttlMs: 400, autoExtend: false });
    const t0 = performance.now();
    const next = await b.acquire(k, { waitTimeoutMs: 5000 });
    const waited = performance.now() - t0;
    expect(waited).to.be.greaterThan(250).and.lessThan(3000);
    expect(held.signal.aborted).to.equal(true); // its local timer gave it up at validUntil
    await next.release();
  });

  it('times out a contended wait with LockTimeoutError naming the holders', async () => {
    const nodes = servers.slice(0, 3);
    const [a, b] = [await redlock(nodes), await redlock(nodes)];
    const k = key();
    const held = await a.acquire(k, { ttlMs: 10_000 });
    const t0 = performance.now();
    const err = await rejection(b.acquire(k, { waitTimeoutMs: 300 }));
    expect(performance.now() - t0).to.be.lessThan(2300);
    expect(err).to.be.instanceOf(LockTimeoutError);
    const cause = (err as LockTimeoutError).cause as QuorumError;
    expect(cause).to.be.instanceOf(QuorumError);
    expect([...kinds(cause).values()]).to.deep.equal(['held', 'held', 'held']);
    const ac = new AbortController();
    const aborted = b.acquire(k, { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stop')), 50);
    expect(((await rejection(aborted)) as Error).message).to.equal('stop');
    // waitTimeoutMs: 0 is one round: it times out at once while held…
    const t1 = performance.now();
    expect(await rejection(b.acquire(k, { waitTimeoutMs: 0 }))).to.be.instanceOf(LockTimeoutError);
    expect(performance.now() - t1).to.be.lessThan(1000);
    await held.release();
    // …and always gets a free lock (a 0 ms deadline must not cancel the round on the wire).
    for (let i = 0; i < 30; i++) await (await b.acquire(k, { waitTimeoutMs: 0 })).release();
  });

  it('cleans up its partial locks after a failed attempt', async () => {
    const nodes = servers.slice(0, 3);
    const locker = await redlock(nodes);
    const k = key();
    await onNodes(nodes.slice(0, 2), ['SET', lockKey(k), 'someone-else', 'PX', 10_000]);
    expect(await locker.tryAcquire(k)).to.equal(null);
    let state = await inspect(nodes, k);
    // Node 2 granted (its counter was written), and was given back at once.
    expect(state[2]!.lock).to.equal(null);
    expect(state[2]!.fence).to.not.equal(null);
    const firstFence = Number(state[2]!.fence);
    // Two waiters, each getting node 2 in turn and giving it back: neither's release may wake the other
    // (it cannot give them a quorum), so both sleep on the holder's PTTL instead of trying in a loop.
    const other = await redlock(nodes);
    const waits = await Promise.all([locker, other].map((l) => rejection(l.acquire(k, { waitTimeoutMs: 500 }))));
    for (const err of waits) {
      expect(err).to.be.instanceOf(LockTimeoutError);
      const cause = (err as LockTimeoutError).cause as QuorumError;
      expect(cause.attempts).to.be.at.most(4);
    }
    state = await inspect(nodes, k);
    expect(state.map((n) => n.lock)).to.deep.equal(['someone-else', 'someone-else', null]);
    expect(Number(state[2]!.fence)).to.be.greaterThan(firstFence);
  });

  it('fails at once with QuorumError on error replies from a majority, and takes back the SETs that landed', async () => {
    const nodes = servers.slice(0, 3);
    const locker = await redlock(nodes);
    const k = key();
    // The fence counter is a hash on two nodes: there the SET lands, then reading the counter fails (WRONGTYPE).
    await onNodes(nodes.slice(0, 2), ['HSET', `${lockKey(k)}:fence`, 'f', 'v']);
    const err = await rejection(locker.acquire(k));
    expect(err).to.be.instanceOf(QuorumError);
    const byNode = kinds(err as QuorumError);
    expect(byNode.get(nodes[0]!.host + ':' + nodes[0]!.port)).to.equal('error');
    expect(byNode.get(nodes[1]!.host + ':' + nodes[1]!.port)).to.equal('error');
    const admin = await clients(nodes);
    expect(await Promise.all(admin.map((c) => c.send(['EXISTS', lockKey(k)])))).to.deep.equal([0, 0, 0]);
  });

  it('acquires with a minority stopped (SIGSTOP), within a few node timeouts', async () => {
    const nodes = servers.slice(0, 3);
    const locker = await redlock(nodes, { nodeTimeoutMs: 50 });
    nodes[2]!.pause();
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const lock = await locker.acquire(key(), { ttlMs: 2000, waitTimeoutMs: 5000 });
      expect(performance.now() - t0).to.be.lessThan(1500);
      await lock.release();
    }
  });

  it('acquires with 2 of 5 stopped', async () => {
    const nodes = servers.slice(0, 5);
    const locker = await redlock(nodes, { nodeTimeoutMs: 50 });
    expect(locker.quorum).to.equal(3);
    nodes[1]!.pause();
    nodes[3]!.pause();
    const t0 = performance.now();
    const lock = await locker.acquire(key(), { ttlMs: 2000, waitTimeoutMs: 5000 });
    expect(performance.now() - t0).to.be.lessThan(1500);
    await lock.extend();
    await lock.release();
  });

  it('acquires, extends and releases with a minority killed', async () => {
    const nodes = servers.slice(0, 3);
    const locker = await redlock(nodes, { nodeTimeoutMs: 50 });
    await nodes[1]!.kill();
    try {
      const lock = await locker.acquire(key(), { ttlMs: 2000, waitTimeoutMs: 5000 });
      await lock.extend();
      expect(lock.signal.aborted).to.equal(false);
      await lock.release();
    } finally {
      await nodes[1]!.restart();
    }
  });

  it('reports QuorumError with each node’s cause when a majority is down, within waitTimeoutMs', async () => {
    const nodes = servers.slice(0, 3);
    const locker = await redlock(nodes, { nodeTimeoutMs: 50 });
    await nodes[0]!.kill();
    nodes[1]!.pause();
    try {
      const t0 = performance.now();
      const err = await rejection(locker.acquire(key(), { waitTimeoutMs: 600 }));
      const took = performance.now() - t0;
      expect(took).to.be.greaterThan(500).and.lessThan(2600);
      expect(err).to.be.instanceOf(QuorumError);
      const q = err as QuorumError;
      expect(q.code).to.equal('WL_QUORUM');
      expect(q.attempts).to.be.greaterThan(1);
      const byNode = kinds(q);
      expect(byNode.get(`127.0.0.1:${nodes[0]!.port}`)).to.equal('connection');
      expect(byNode.get(`127.0.0.1:${nodes[1]!.port}`)).to.equal('timeout');
      expect(byNode.has(`127.0.0.1:${nodes[2]!.port}`)).to.equal(false);
      expect(q.message).to.match(/need 2/);
      // One attempt, no waiting: the same error at once.
      expect(await rejection(locker.tryAcquire(key()))).to.be.instanceOf(QuorumError);
    } finally {
      nodes[1]!.resume();
      await nodes[0]!.restart();
    }
  });

  it('reports QuorumError with 3 of 5 killed', async () => {
    const nodes = servers.slice(0, 5);
    const locker = await redlock(nodes, { nodeTimeoutMs: 50 });
    const dead = [nodes[0]!, nodes[2]!, nodes[4]!];
    await Promise.all(dead.map((n) => n.kill()));
    try {
      const err = await rejection(locker.acquire(key(), { waitTimeoutMs: 300 }));
      expect(err).to.be.instanceOf(QuorumError);
      expect([...kinds(err as QuorumError).values()]).to.deep.equal(['connection', 'connection', 'connection']);
    } finally {
      await Promise.all(dead.map((n) => n.restart()));
    }
  });

  it('does not hold a lock whose quorum came after its validity, and releases it on every node', async () => {
    const nodes = servers.slice(0, 3);
    proxies = await Promise.all(nodes.map((n) => FaultProxy.start({ port: n.port })));
    const slow = await redlock(
      proxies.map((p) => ({ port: p.port })),
      { driftFactor: 0.8, nodeTimeoutMs: 3000 },
    );
    const k = key();
    // Load the scripts (a restarted node answers NOSCRIPT once), and let the last release land everywhere.
    await slow.tryAcquire(k, { ttlMs: 1000, autoExtend: false }).then((l) => l?.release());
    await sleep(50);
    expect(await locksOn(nodes, k, [null, null, null])).to.deep.equal([null, null, null]);
    const counters = (await inspect(nodes, k)).map((n) => Number(n.fence));
    for (const p of proxies) p.delay(150);
    // ttl 1000, drift 802, one round trip 300: validity < 0 although every node granted, and the keys
    // would still live for 700 ms more if they were not released.
    const err = await rejection(slow.tryAcquire(k, { ttlMs: 1000 }));
    expect(err).to.be.instanceOf(QuorumError);
    expect([...kinds(err as QuorumError).values()]).to.deep.equal(['late', 'late', 'late']);
    const state = await inspect(nodes, k);
    expect(state.map((n) => n.lock)).to.deep.equal([null, null, null]);
    // Every node granted (the kinds above say so) before the releases took the keys back: a counter
    // still there has moved on; one may have expired already (it lives for the 1000 ms ttl).
    state.forEach((n, i) => {
      if (n.fence !== null) expect(Number(n.fence), `node ${i}`).to.be.greaterThan(counters[i]!);
    });

    // Elapsed beyond the TTL itself, on the waiting path: never held; QuorumError at the deadline.
    // An attempt here takes three 300 ms round trips (acquire, the fence step, the releases): the
    // deadline leaves room for one to finish on a busy machine.
    const waited = await rejection(slow.acquire(k, { ttlMs: 200, waitTimeoutMs: 2000 }));
    expect(waited).to.be.instanceOf(QuorumError);
    expect(await locksOn(nodes, k, [null, null, null])).to.deep.equal([null, null, null]);
  });

  it('signals quorum-lost when a majority no longer has the key', async () => {
    const nodes = servers.slice(0, 3);
    const locker = await redlock(nodes);
    const k = key();
    const lock = await locker.acquire(k, { ttlMs: 600 });
    // As after a restart without persistence on two nodes.
    await onNodes(nodes.slice(0, 2), ['DEL', lockKey(k)]);
    const reason = await lost(lock, 2000);
    expect(reason).to.be.instanceOf(LockLostError);
    expect((reason as LockLostError).reason).to.equal('quorum-lost');
    expect(await rejection(lock.extend())).to.be.instanceOf(LockLostError);
  });

  it('rejects extend with stolen when another token holds a quorum', async () => {
    const nodes = servers.slice(0, 3);
    const locker = await redlock(nodes);
    const k = key();
    const lock = await locker.acquire(k, { ttlMs: 5000, autoExtend: false });
    await onNodes(nodes.slice(1), ['SET', lockKey(k), 'thief', 'PX', 5000]);
    const err = await rejection(lock.extend());
    expect(err).to.be.instanceOf(LockLostError);
    expect((err as LockLostError).reason).to.equal('stolen');
    expect(lock.signal.aborted).to.equal(true);
    await lock.release(); // best effort; must not touch the thief's keys
    expect(await locksOn(nodes, k, [null, 'thief', 'thief'])).to.deep.equal([null, 'thief', 'thief']);
  });

  it('keeps the lock through a stopped minority, and loses it by validUntil when a majority stops', async () => {
    const nodes = servers.slice(0, 3);
    const locker = await redlock(nodes, { nodeTimeoutMs: 50 });
    const lock = await locker.acquire(key(), { ttlMs: 600 });
    nodes[2]!.pause();
    await sleep(1000); // several extensions, each without node 2
    expect(lock.signal.aborted).to.equal(false);
    nodes[1]!.pause();
    const deadline = lock.validUntil;
    const reason = await lost(lock, 3000);
    expect(reason).to.be.instanceOf(LockLostError);
    expect(performance.now()).to.be.lessThan(deadline + 1000);
  });

  it('close() releases held locks and rejects pending acquires', async () => {
    const nodes = servers.slice(0, 3);
    const [a, b] = [await redlock(nodes), await redlock(nodes)];
    const k = key();
    const lock = await a.acquire(k);
    const pending = rejection(b.acquire(k));
    await sleep(50);
    await Promise.all([a.close(), b.close()]);
    expect(await pending).to.be.instanceOf(ClosedError);
    expect(lock.signal.aborted).to.equal(true);
    expect(await locksOn(nodes, k, [null, null, null])).to.deep.equal([null, null, null]);
    expect(await rejection(a.acquire(k))).to.be.instanceOf(ClosedError);
  });

  it('serves waiters in the order their waits began, each woken by the release before it', async () => {
    const nodes = servers.slice(0, 3);
    const k = key();
    const holder = await redlock(nodes);
    const held = await holder.acquire(k, { ttlMs: 10_000 });
    const waiters = await Promise.all(Array.from({ length: 6 }, () => redlock(nodes)));
    const order: number[] = [];
    const done: Array<Promise<void>> = [];
    for (const [i, w] of waiters.entries()) {
      done.push(w.acquire(k, { ttlMs: 10_000, waitTimeoutMs: 15_000 }).then(async (lock) => {
        order.push(i);
        await sleep(5);
        await lock.release();
      }));
      await sleep(15); // each wait begins (takes its ticket) after the one before
    }
    await sleep(100);
    const t0 = performance.now();
    await held.release();
    await Promise.all(done);
    expect(order).to.deep.equal([0, 1, 2, 3, 4, 5]);
    // Woken by releases: a waiter left to its fallback would sleep ttl/3 (3.3 s) before looking again.
    expect(performance.now() - t0).to.be.lessThan(3000);
    const admin = await clients(nodes);
    const queued = await Promise.all(admin.map((c) => c.send(['EXISTS', `${lockKey(k)}:queue`, `${lockKey(k)}:queue:exp`])));
    expect(queued).to.deep.equal([0, 0, 0]);
  });

  it('takes a ticket as at most 1 s away from the node’s clock, so a client with a skewed clock cannot go ahead of everyone', async () => {
    const [admin] = await clients(servers.slice(0, 1));
    const k = redisKeys('wirelock:', key());
    const keys = queueKeys(k);
    await admin!.send(['SET', k.lock, 'holder', 'PX', 10_000]);
    const [sec, us] = (await admin!.send(['TIME'])) as [string, string];
    const now = Number(sec) * 1e6 + Number(us);
    const hour = 3600 * 1e6;
    const join = async (token: string, ticket: number): Promise<number> => {
      const reply = (await admin!.evalScript(REDLOCK_ACQUIRE, keys, [token, 10_000, 10_000, k.channel, ticket])) as number[];
      expect(reply[0], 'not granted: the lock is held').to.equal(0);
      return Number(await admin!.send(['ZSCORE', k.queue, token]));
    };
    const fair = await join('fair', now + 1000); // a clock 1 ms ahead: taken as it is
    const behind = await join('behind', now - hour);
    const ahead = await join('ahead', now + hour);
    expect(fair).to.equal(now + 1000);
    // Held within the bound of the node's clock when each joined (a few ms after `now`).
    expect(behind).to.be.within(now - TICKET_SKEW_US, now - TICKET_SKEW_US + 1e6 / 10);
    expect(ahead).to.be.within(now + TICKET_SKEW_US, now + TICKET_SKEW_US + 1e6 / 10);
    // Joining again keeps the place (ZADD NX).
    expect(await join('behind', now - 2 * hour)).to.equal(behind);
  });

  it('leaves every node’s queue when a wait ends without the lock (deadline, abort), waking the next in line', async () => {
    const nodes = servers.slice(0, 3);
    const k = key();
    const [a, b, c] = [await redlock(nodes), await redlock(nodes), await redlock(nodes)];
    const held = await a.acquire(k, { ttlMs: 10_000 });
    const ac = new AbortController();
    const timedOut = rejection(b.acquire(k, { waitTimeoutMs: 300 }));
    const aborted = rejection(b.acquire(k, { signal: ac.signal }));
    await sleep(20);
    const third = c.acquire(k, { waitTimeoutMs: 15_000 });
    await sleep(100);
    ac.abort(new Error('stop'));
    expect(await timedOut).to.be.instanceOf(LockTimeoutError);
    expect(((await aborted) as Error).message).to.equal('stop');
    const admin = await clients(nodes);
    const queue = `${lockKey(k)}:queue`;
    // Only the third waiter is left in line on every node.
    const until = performance.now() + 1000;
    let sizes: unknown[] = [];
    while (performance.now() < until) {
      sizes = await Promise.all(admin.map((cl) => cl.send(['ZCARD', queue])));
      if (sizes.every((n) => n === 1)) break;
      await sleep(10);
    }
    expect(sizes).to.deep.equal([1, 1, 1]);
    const t0 = performance.now();
    await held.release();
    const lock = await third;
    expect(performance.now() - t0).to.be.lessThan(2000);
    await lock.release();
    expect(await Promise.all(admin.map((cl) => cl.send(['EXISTS', queue])))).to.deep.equal([0, 0, 0]);
  });
});

/** Resolves with the lock's abort reason once its signal aborts, or rejects after ms. */
function lost(lock: Lock, ms: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`lock still held after ${ms} ms`)), ms);
    const done = (): void => {
      clearTimeout(timer);
      resolve(lock.signal.reason);
    };
    if (lock.signal.aborted) done();
    else lock.signal.addEventListener('abort', done, { once: true });
  });
}

describe('FaultProxy (test support)', () => {
  let server: RedisServer;
  let proxy: FaultProxy;
  let client: RedisClient;
  before(async () => {
    [server] = await startRedisNodes(1);
    proxy = await FaultProxy.start({ port: server!.port });
    client = await RedisClient.connect({ port: proxy.port, reconnect: () => 20, commandTimeoutMs: 1000 });
  });
  after(async () => {
    await client?.close();
    await proxy?.stop();
    await server?.stop();
  });
  const timed = async (p: Promise<unknown>): Promise<number> => {
    const t0 = performance.now();
    await p;
    return performance.now() - t0;
  };

  it('delays each direction, keeping order when the delay changes mid-stream', async () => {
    proxy.delay({ up: 80, down: 0 });
    expect(await timed(client.send(['PING']))).to.be.at.least(75);
    proxy.delay(60);
    const first = client.send(['INCR', 'proxy:n']);
    await sleep(5);
    proxy.delay(0);
    const second = client.send(['INCR', 'proxy:n']);
    expect([await first, await second]).to.deep.equal([1, 2]);
  });

  it('holds bytes until flush, swallows them in a blackhole, and resets or refuses connections', async () => {
    proxy.delay(0).hold();
    const held = client.send(['INCR', 'proxy:h']);
    let settled = false;
    void held.finally(() => (settled = true));
    await sleep(100);
    expect(settled).to.equal(false);
    proxy.flush();
    expect(await held).to.equal(1);

    proxy.blackhole();
    expect(await rejectionOf(client.send(['PING'], { timeoutMs: 150 }))).to.match(/timed out/);
    proxy.pass(); // the swallowed connections are reset; the client reconnects
    expect(await client.send(['PING'], { timeoutMs: 500 })).to.equal('PONG');

    proxy.refuse().reset();
    expect(await rejectionOf(client.send(['PING'], { timeoutMs: 150 }))).to.match(/^(ConnectionError|TimeoutError)/);
    proxy.pass();
    expect(await client.send(['PING'], { timeoutMs: 500 })).to.equal('PONG');
  });
});

async function rejectionOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return String(err);
  }
  throw new Error('expected a rejection');
}
