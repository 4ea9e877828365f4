import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import { spawn } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import {
  ClosedError,
  LockLostError,
  LockReleasedError,
  LockTimeoutError,
  RedisClient,
  RedisLocker,
  type Lock,
} from '../src/index.js';
import { startRedis, type RedisServer } from '../src/testing/servers.js';
import { rejection, waitFor } from './support/wait.js';

const lockKey = (name: string): string => `wirelock:{${name}}`;
const channel = (name: string): string => `wirelock:{${name}}:release`;
const queue = (name: string): string => `wirelock:{${name}}:queue`;

describe('RedisLocker', () => {
  let server: RedisServer;
  let admin: RedisClient;
  let c1: RedisClient;
  let c2: RedisClient;
  let l1: RedisLocker;
  let l2: RedisLocker;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);

  const numsub = async (name: string): Promise<number> =>
    ((await admin.send(['PUBSUB', 'NUMSUB', channel(name)])) as [string, number])[1];

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    server = await startRedis();
    [admin, c1, c2] = await Promise.all([0, 1, 2].map(() => RedisClient.connect(server.url)));
    l1 = new RedisLocker(c1);
    l2 = new RedisLocker(c2);
  });
  afterEach(() => {
    expect(unhandled, 'unhandled rejections').to.deep.equal([]);
  });
  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    await l1?.close();
    await l2?.close();
    await Promise.all([admin?.close(), c1?.close(), c2?.close()]);
    await server?.stop();
  });

  it('is exclusive across several clients: a read-modify-write with awaits inside loses no update', async () => {
    const clients = await Promise.all([0, 1, 2, 3].map(() => RedisClient.connect(server.url)));
    const lockers = clients.map((c) => new RedisLocker(c));
    await admin.send(['SET', 'excl:counter', '0']);
    let inside = 0;
    let maxInside = 0;
    let shared = 0;
    const fences: bigint[] = [];
    const perTask = 8;
    try {
      await Promise.all(
        lockers.flatMap((locker, w) =>
          [0, 1].map(async () => {
            for (let i = 0; i < perTask; i++) {
              await locker.using(
                'excl',
                async (lock) => {
                  inside++;
                  maxInside = Math.max(maxInside, inside);
                  fences.push(lock.fence);
                  const local = shared;
                  const remote = Number(await clients[w]!.send(['GET', 'excl:counter']));
                  await delay(Math.random() * 2);
                  shared = local + 1;
                  await clients[w]!.send(['SET', 'excl:counter', remote + 1]);
                  inside--;
                },
                { ttlMs: 5000 },
              );
            }
          }),
        ),
      );
    } finally {
      await Promise.all(lockers.map((l) => l.close()));
      await Promise.all(clients.map((c) => c.close()));
    }
    const total = lockers.length * 2 * perTask;
    expect(maxInside).to.equal(1);
    expect(shared).to.equal(total);
    expect(await admin.send(['GET', 'excl:counter'])).to.equal(String(total));
    // Fences, in the order the holders entered, are strictly increasing.
    for (let i = 1; i < fences.length; i++) expect(fences[i]! > fences[i - 1]!, `fence ${i}`).to.equal(true);
    expect(await admin.send(['EXISTS', lockKey('excl')])).to.equal(0);
  });

  it('fences increase strictly per key, across lockers, releases and expiries', async () => {
    const seen: bigint[] = [];
    for (let i = 0; i < 3; i++) {
      const lock = await (i % 2 ? l2 : l1).acquire('fence', { ttlMs: 5000 });
      seen.push(lock.fence);
      await lock.release();
    }
    const expiring = await l1.acquire('fence', { ttlMs: 100, autoExtend: false });
    seen.push(expiring.fence);
    const next = await l2.acquire('fence', { ttlMs: 5000, waitTimeoutMs: 5000 });
    seen.push(next.fence);
    await next.release();
    for (let i = 1; i < seen.length; i++) expect(seen[i]! > seen[i - 1]!, `fences ${seen.join(', ')}`).to.equal(true);
    // Another key has its own counter: a grant there leaves this key's alone.
    const counter = await admin.send(['GET', `${lockKey('fence')}:fence`]);
    const other = await l1.acquire('fence-other', { ttlMs: 5000 });
    expect(other.fence > 0n).to.equal(true);
    expect(await admin.send(['GET', `${lockKey('fence')}:fence`])).to.equal(counter);
    await other.release();
  });

  it('release never deletes another holder\'s key', async () => {
    // A's lease runs out; B takes the lock; A's late release must leave B's key alone.
    const a = await l1.acquire('theirs', { ttlMs: 200, autoExtend: false });
    await waitFor(() => a.signal.aborted, 2000, "A's local expiry");
    expect(a.signal.reason).to.be.instanceOf(LockLostError);
    expect((a.signal.reason as LockLostError).reason).to.equal('expired');
    const b = await l2.acquire('theirs', { ttlMs: 5000, waitTimeoutMs: 5000 });
    expect(b.fence > a.fence).to.equal(true);
    await a.release();
    expect(await admin.send(['GET', lockKey('theirs')])).to.equal(b.token);
    await b.extend(); // still B's
    expect(await l1.tryAcquire('theirs')).to.equal(null);
    await b.release();

    // Overwritten behind a holder's back (no auto-extend to notice it): release leaves the new value.
    const c = await l1.acquire('theirs2', { ttlMs: 5000, autoExtend: false });
    await admin.send(['SET', lockKey('theirs2'), 'intruder', 'PX', '5000']);
    await c.release();
    expect(await admin.send(['GET', lockKey('theirs2')])).to.equal('intruder');
    await c.release(); // idempotent
    await admin.send(['DEL', lockKey('theirs2')]);
  });

  it('wake-on-release: a waiter gets the lock promptly after release, long before the TTL', async () => {
    const a = await l1.acquire('wake', { ttlMs: 10_000 });
    const waiting = l2.acquire('wake', { ttlMs: 10_000 });
    await waitFor(async () => (await numsub('wake')) === 1, 2000, 'the waiter to subscribe');
    await delay(20);
    const released = performance.now();
    await a.release();
    const b = await waiting;
    const handoff = performance.now() - released;
    expect(handoff).to.be.below(1000); // the TTL is 10 s: only the release message explains this
    expect(b.fence > a.fence).to.equal(true);
    await b.release();
    await waitFor(async () => (await numsub('wake')) === 0, 2000, 'the waiter to unsubscribe');
  });

  it('expiry handoff: a holder that never releases is replaced shortly after its TTL', async () => {
    const start = performance.now();
    const a = await l1.acquire('expiry', { ttlMs: 500, autoExtend: false });
    const b = await l2.acquire('expiry', { ttlMs: 5000, waitTimeoutMs: 5000 });
    const at = performance.now() - start;
    expect(at).to.be.at.least(450); // not before the holder's lease could have ended
    expect(at).to.be.below(500 + 1000); // and not a poll interval later
    expect(a.signal.aborted).to.equal(true);
    expect(b.fence > a.fence).to.equal(true);
    await b.release();
  });

  it('waiters get the lock in the order they started waiting', async () => {
    const holder = await l1.acquire('fifo', { ttlMs: 10_000 });
    const clients = await Promise.all([0, 1, 2].map(() => RedisClient.connect(server.url)));
    const lockers = clients.map((c) => new RedisLocker(c));
    const order: number[] = [];
    try {
      const waits: Array<Promise<void>> = [];
      for (let i = 0; i < lockers.length; i++) {
        waits.push(lockers[i]!.acquire('fifo', { ttlMs: 10_000 }).then((lock) => (order.push(i), lock.release())));
        await waitFor(async () => (await admin.send(['ZCARD', queue('fifo')])) === i + 1, 2000, `waiter ${i} to queue`);
      }
      await holder.release();
      await Promise.all(waits);
      expect(order).to.deep.equal([0, 1, 2]);
    } finally {
      await Promise.all(lockers.map((l) => l.close()));
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it('a waiter that crashed holds up the queue for about its ttl, not forever', async () => {
    const holder = await l1.acquire('crash', { ttlMs: 10_000 });
    // A separate process queues for the lock with a 600 ms ttl, then dies without a word (SIGKILL).
    const src = new URL('../src/index.ts', import.meta.url).href;
    const code = `const { RedisClient, RedisLocker } = await import(${JSON.stringify(src)});
      const locker = new RedisLocker(await RedisClient.connect(process.argv[1]));
      await locker.acquire('crash', { ttlMs: 600 });`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code, server.url], { stdio: 'ignore' });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      await waitFor(async () => (await admin.send(['ZCARD', queue('crash')])) === 1, 10_000, 'the child to queue');
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    const waiting = l2.acquire('crash', { ttlMs: 5000, waitTimeoutMs: 5000 });
    await waitFor(async () => (await admin.send(['ZCARD', queue('crash')])) === 2, 2000, 'the second waiter to queue');
    const released = performance.now();
    await holder.release();
    const lock = await waiting;
    expect(performance.now() - released).to.be.below(600 + 1500);
    await lock.release();
    expect(await admin.send(['ZCARD', queue('crash')])).to.equal(0);
  });

  it('autoExtend keeps a 300 ms lock for several TTLs', async () => {
    const lock = await l1.acquire('auto', { ttlMs: 300 });
    await delay(1200);
    expect(lock.signal.aborted).to.equal(false);
    expect(lock.validUntil).to.be.above(performance.now());
    expect(await l2.tryAcquire('auto')).to.equal(null);
    expect(await admin.send(['PTTL', lockKey('auto')])).to.be.above(0);
    await lock.release();
    expect(lock.signal.reason).to.be.instanceOf(LockReleasedError);
    const next = await l2.tryAcquire('auto');
    expect(next).to.not.equal(null);
    await next!.release();
  });

  it('signals a loss when the key is deleted (expired) or overwritten (stolen) behind its back', async () => {
    const lost: any[] = [];
    const onLost = (p: unknown): void => void lost.push(p);
    dc.subscribe('wirelock:lock:lost', onLost);
    try {
      const deleted = await l1.acquire('lost-del', { ttlMs: 300 });
      await admin.send(['DEL', lockKey('lost-del')]);
      await waitFor(() => deleted.signal.aborted, 2000, 'the loss signal');
      const reason = deleted.signal.reason as LockLostError;
      expect(reason).to.be.instanceOf(LockLostError);
      expect(reason.code).to.equal('WL_LOCK_LOST');
      expect(reason.reason).to.equal('expired');
      expect(await rejection(deleted.extend())).to.be.instanceOf(LockLostError);

      const stolen = await l1.acquire('lost-steal', { ttlMs: 300 });
      await admin.send(['SET', lockKey('lost-steal'), 'thief', 'PX', '10000']);
      await waitFor(() => stolen.signal.aborted, 2000, 'the loss signal');
      expect((stolen.signal.reason as LockLostError).reason).to.equal('stolen');
      await stolen.release();
      expect(await admin.send(['GET', lockKey('lost-steal')])).to.equal('thief');
      await admin.send(['DEL', lockKey('lost-steal')]);

      // Without autoExtend, a manual extend finds out.
      const manual = await l1.acquire('lost-manual', { ttlMs: 5000, autoExtend: false });
      await admin.send(['DEL', lockKey('lost-manual')]);
      const err = await rejection(manual.extend());
      expect(err).to.be.instanceOf(LockLostError);
      expect(manual.signal.aborted).to.equal(true);
      expect((manual.signal.reason as LockLostError).reason).to.equal('expired');
    } finally {
      dc.unsubscribe('wirelock:lock:lost', onLost);
    }
    expect(lost.map((p) => [p.key, p.reason])).to.deep.equal([
      ['lost-del', 'expired'],
      ['lost-steal', 'stolen'],
      ['lost-manual', 'expired'],
    ]);
  });

  it('abort of a waiting acquire rejects with signal.reason and leaves no subscription', async () => {
    const a = await l1.acquire('abort', { ttlMs: 10_000 });
    const ac = new AbortController();
    const reason = new Error('the user gave up');
    const waiting = l2.acquire('abort', { signal: ac.signal });
    await waitFor(async () => (await numsub('abort')) === 1, 2000, 'the waiter to subscribe');
    const start = performance.now();
    ac.abort(reason);
    expect(await rejection(waiting)).to.equal(reason);
    expect(performance.now() - start).to.be.below(1000);
    await waitFor(async () => (await numsub('abort')) === 0, 2000, 'the waiter to unsubscribe');
    await waitFor(async () => (await admin.send(['ZCARD', queue('abort')])) === 0, 2000, 'the waiter to leave the queue');
    expect(await admin.send(['GET', lockKey('abort')])).to.equal(a.token);
    await a.release();

    // Already aborted: rejects at once and writes nothing, even on a free key.
    expect(await rejection(l2.acquire('abort', { signal: ac.signal }), 1000)).to.equal(reason);
    expect(await rejection(l2.tryAcquire('abort', { signal: ac.signal }), 1000)).to.equal(reason);
    await delay(50);
    expect(await admin.send(['EXISTS', lockKey('abort')])).to.equal(0);
  });

  it('waitTimeoutMs: rejects with LockTimeoutError and leaves no subscription', async () => {
    const a = await l1.acquire('timeout', { ttlMs: 10_000 });
    const start = performance.now();
    const err = await rejection(l2.acquire('timeout', { waitTimeoutMs: 200 }));
    const took = performance.now() - start;
    expect(err).to.be.instanceOf(LockTimeoutError);
    expect(err.code).to.equal('WL_LOCK_TIMEOUT');
    expect((err as LockTimeoutError).key).to.equal('timeout');
    expect(took).to.be.at.least(190);
    expect(took).to.be.below(2000);
    await waitFor(async () => (await numsub('timeout')) === 0, 2000, 'the waiter to unsubscribe');
    await waitFor(async () => (await admin.send(['ZCARD', queue('timeout')])) === 0, 2000, 'the waiter to leave the queue');
    expect(await admin.send(['GET', lockKey('timeout')])).to.equal(a.token);
    await a.release();
    // A free lock is taken within a short wait budget.
    const b = await l2.acquire('timeout', { waitTimeoutMs: 1000 });
    await b.release();
  });

  it('waitTimeoutMs: 0 means one attempt: a free lock is always taken, a held one times out at once', async () => {
    // A 0 ms deadline must not cancel the one attempt while it is on the wire.
    for (let i = 0; i < 100; i++) {
      const lock = await l1.acquire('zero-wait', { waitTimeoutMs: 0 });
      await lock.release();
    }
    const held = await l1.acquire('zero-wait');
    const start = performance.now();
    const err = await rejection(l2.acquire('zero-wait', { waitTimeoutMs: 0 }));
    expect(err).to.be.instanceOf(LockTimeoutError);
    expect(performance.now() - start).to.be.below(1000);
    // It never joined the queue, so the lock stays free for anyone once released.
    expect(await admin.send(['EXISTS', queue('zero-wait')])).to.equal(0);
    await held.release();
  });

  it('rejects bad arguments at once with TypeError/RangeError', async () => {
    const cases: Array<[unknown, unknown, typeof TypeError | typeof RangeError]> = [
      ['', undefined, TypeError],
      [123, undefined, TypeError],
      [undefined, undefined, TypeError],
      ['bad', { ttlMs: 0 }, RangeError],
      ['bad', { ttlMs: -5 }, RangeError],
      ['bad', { ttlMs: NaN }, RangeError],
      ['bad', { ttlMs: Infinity }, RangeError],
      ['bad', { ttlMs: '100' }, RangeError],
      ['bad', { waitTimeoutMs: NaN }, RangeError],
      ['bad', { waitTimeoutMs: -1 }, RangeError],
      ['bad', 'fast', TypeError],
      ['bad', null, TypeError],
      ['bad', 5, TypeError],
      ['bad', { signal: {} }, TypeError],
      ['bad', { autoExtend: 'yes' }, TypeError],
    ];
    for (const [key, opts, type] of cases) {
      const label = `${String(key)} ${JSON.stringify(opts)}`;
      const calls = [
        () => l1.acquire(key as string, opts as object),
        () => l1.tryAcquire(key as string, opts as object),
        () => l1.using(key as string, async () => 'ran', opts as object),
      ];
      for (const call of calls) {
        let promise: Promise<unknown>;
        try {
          promise = call();
        } catch (err) {
          expect(err, label).to.be.instanceOf(type);
          continue;
        }
        expect(await rejection(promise, 1000), label).to.be.instanceOf(type);
      }
    }
    expect(await admin.send(['KEYS', 'wirelock:{bad}*'])).to.deep.equal([]);
    expect(await admin.send(['KEYS', 'wirelock:{}*'])).to.deep.equal([]);
    expect(await rejection(l1.using('bad', 'not a function' as never))).to.be.instanceOf(TypeError);

    const lock = await l1.acquire('bad-extend', { ttlMs: 5000 });
    expect(await rejection(lock.extend(0))).to.be.instanceOf(RangeError);
    expect(await rejection(lock.extend(NaN))).to.be.instanceOf(RangeError);
    expect(lock.signal.aborted).to.equal(false);
    await lock.release();

    expect(() => new RedisLocker(c1, { ttlMs: 0 })).to.throw(RangeError);
    expect(() => new RedisLocker(c1, { ttlMs: NaN })).to.throw(RangeError);
    expect(() => new RedisLocker(c1, { prefix: 'a{b}:' })).to.throw(TypeError);
    expect(() => new RedisLocker({} as RedisClient)).to.throw(TypeError);
  });

  it('accepts a fractional ttlMs', async () => {
    const lock = await l1.acquire('fractional', { ttlMs: 250.5 });
    expect(await admin.send(['PTTL', lockKey('fractional')])).to.be.within(1, 251);
    await lock.extend(400.25);
    expect(await admin.send(['PTTL', lockKey('fractional')])).to.be.within(251, 401);
    await lock.release();
  });

  it('`await using` releases at the end of the block', async () => {
    let captured: Lock | undefined;
    {
      await using lock = await l1.acquire('await-using', { ttlMs: 5000 });
      captured = lock;
      expect(await admin.send(['GET', lockKey('await-using')])).to.equal(lock.token);
    }
    expect(captured.signal.aborted).to.equal(true);
    expect(captured.signal.reason).to.be.instanceOf(LockReleasedError);
    expect(await admin.send(['EXISTS', lockKey('await-using')])).to.equal(0);
  });

  it('using(): returns fn\'s value, releases when fn throws, and fn\'s error wins over a release error', async () => {
    expect(await l1.using('using', async (lock) => lock.key)).to.equal('using');
    expect(await admin.send(['EXISTS', lockKey('using')])).to.equal(0);

    const boom = new Error('boom');
    expect(await rejection(l1.using('using', async () => Promise.reject(boom)))).to.equal(boom);
    expect(await admin.send(['EXISTS', lockKey('using')])).to.equal(0);

    // Release fails (the client is closed under it): fn's error is still the one reported.
    const c = await RedisClient.connect(server.url);
    const l = new RedisLocker(c);
    const err = await rejection(
      l.using('using-closed', async () => {
        await c.close();
        throw boom;
      }, { ttlMs: 2000 }),
    );
    expect(err).to.equal(boom);
    await l.close();
    await admin.send(['DEL', lockKey('using-closed')]);

    // The lock was lost before fn finished: the section was not exclusive to the end, so using() says so.
    const lostErr = await rejection(
      l1.using('using-lost', async (lock) => {
        await admin.send(['DEL', lockKey('using-lost')]);
        await waitFor(() => lock.signal.aborted, 2000, 'the loss');
        return 'finished';
      }, { ttlMs: 300 }),
    );
    expect(lostErr).to.be.instanceOf(LockLostError);
  });

  it('close(): releases held locks, rejects pending acquires, and refuses new ones', async () => {
    const c = await RedisClient.connect(server.url);
    const l = new RedisLocker(c);
    try {
      const held = await l.acquire('close-a', { ttlMs: 10_000 });
      const blocker = await l2.acquire('close-b', { ttlMs: 10_000 });
      const pending = rejection(l.acquire('close-b', { ttlMs: 10_000 }), 5000);
      await waitFor(async () => (await numsub('close-b')) === 1, 2000, 'the waiter to subscribe');
      await l.close();
      const err = await pending;
      expect(err).to.be.instanceOf(ClosedError);
      expect(err.code).to.equal('WL_CLOSED');
      expect(held.signal.aborted).to.equal(true);
      expect(await admin.send(['EXISTS', lockKey('close-a')])).to.equal(0);
      await waitFor(async () => (await numsub('close-b')) === 0, 2000, 'the waiter to unsubscribe');
      await waitFor(async () => (await admin.send(['ZCARD', queue('close-b')])) === 0, 2000, 'the waiter to leave the queue');
      expect(await admin.send(['GET', lockKey('close-b')])).to.equal(blocker.token);
      expect(await rejection(l.acquire('close-c'))).to.be.instanceOf(ClosedError);
      expect(await rejection(l.tryAcquire('close-c'))).to.be.instanceOf(ClosedError);
      await l.close(); // idempotent
      await blocker.release();
    } finally {
      await c.close();
    }
  });

  it('durations beyond the 32-bit timer range (about 24.8 days) are not cut to 1 ms', async () => {
    const extends_: unknown[] = [];
    const onExtend = (p: unknown): void => void extends_.push(p);
    dc.subscribe('wirelock:lock:extend', onExtend);
    try {
      const long = await l1.acquire('long-ttl', { ttlMs: 3e9, autoExtend: false });
      const longer = await l1.acquire('longer-ttl', { ttlMs: 1e10 });
      await delay(100);
      expect(long.signal.aborted, '3e9 ms lock still held').to.equal(false);
      expect(longer.signal.aborted, '1e10 ms lock still held').to.equal(false);
      expect(extends_, 'no extension storm').to.deep.equal([]);
      expect(await admin.send(['PTTL', lockKey('long-ttl')])).to.be.above(2.9e9);

      let settled = false;
      const waiting = l2.acquire('long-ttl', { waitTimeoutMs: 1e10 }).finally(() => (settled = true));
      await delay(100);
      expect(settled, 'a 1e10 ms wait still waiting').to.equal(false);
      await long.release();
      const next = await waiting;
      await next.release();
      await longer.release();
    } finally {
      dc.unsubscribe('wirelock:lock:extend', onExtend);
    }
  });

  it('validUntil = when the SET was sent + ttl - drift, and moves forward on extend', async () => {
    const ttl = 1000;
    const drift = ttl * 0.01 + 2;
    const before = performance.now();
    const lock = await l1.acquire('valid', { ttlMs: ttl, autoExtend: false });
    const after = performance.now();
    expect(lock.validUntil).to.be.below(performance.now() + ttl);
    expect(lock.validUntil).to.be.at.least(before + ttl - drift);
    expect(lock.validUntil).to.be.at.most(after + ttl - drift);
    const first = lock.validUntil;
    await delay(20);
    const beforeExtend = performance.now();
    await lock.extend(2000);
    expect(lock.validUntil).to.be.above(first);
    expect(lock.validUntil).to.be.at.least(beforeExtend + 2000 - (2000 * 0.01 + 2));
    expect(lock.validUntil).to.be.below(performance.now() + 2000);
    await lock.release();
  });
});

describe('RedisLocker with a paused server (SIGSTOP: connections accepted, nothing answered)', () => {
  let server: RedisServer;
  let admin: RedisClient;
  let client: RedisClient;
  let locker: RedisLocker;
  before(async () => {
    server = await startRedis();
    admin = await RedisClient.connect(server.url);
    client = await RedisClient.connect({ host: server.host, port: server.port, commandTimeoutMs: 200 });
    locker = new RedisLocker(client);
    await (await locker.acquire('warm-up')).release(); // the scripts are cached: EVALSHA will run on resume
  });
  afterEach(() => server.resume());
  after(async () => {
    server?.resume();
    await locker?.close();
    await Promise.all([client?.close(), admin?.close()]);
    await server?.stop();
  });

  it('a lock whose extensions cannot get through is lost at validUntil, by the local timer', async () => {
    const lock = await locker.acquire('paused-hold', { ttlMs: 500 });
    server.pause();
    await waitFor(() => lock.signal.aborted, 3000, 'the local expiry');
    const lostAt = performance.now();
    // Timers start from the event loop's cached clock, so a busy loop can fire one a little early (the safe side).
    expect(lostAt).to.be.at.least(lock.validUntil - 50);
    expect(lostAt).to.be.below(lock.validUntil + 1000);
    expect((lock.signal.reason as LockLostError).reason).to.equal('expired');
  });

  it('a timed-out attempt that lands after the resume is taken back', async () => {
    // A client of its own: nothing else is pipelined with the attempt.
    const own = await RedisClient.connect({ host: server.host, port: server.port, commandTimeoutMs: 200 });
    const ownLocker = new RedisLocker(own);
    server.pause();
    const err = await rejection(ownLocker.tryAcquire('paused-try', { ttlMs: 10_000 }));
    expect(err.code, err.message).to.equal('WL_TIMEOUT');
    server.resume();
    // The SET ran once the server woke up (the fence was written), and the locker deleted it, long before its TTL.
    await waitFor(async () => (await admin.send(['EXISTS', `${lockKey('paused-try')}:fence`])) === 1, 3000, 'the SET to land');
    await waitFor(async () => (await admin.send(['EXISTS', lockKey('paused-try')])) === 0, 3000, 'the cleanup');
    await ownLocker.close();
    await own.close();
  });

  it('waitTimeoutMs bounds a wait on an unresponsive server', async () => {
    const slow = await RedisClient.connect({ host: server.host, port: server.port, commandTimeoutMs: 5000 });
    const slowLocker = new RedisLocker(slow);
    try {
      server.pause();
      const start = performance.now();
      const err = await rejection(slowLocker.acquire('paused-wait', { ttlMs: 5000, waitTimeoutMs: 300 }));
      expect(err).to.be.instanceOf(LockTimeoutError);
      expect(performance.now() - start).to.be.below(2000);
      server.resume();
    } finally {
      server.resume();
      await slowLocker.close();
      await slow.close();
    }
    await waitFor(async () => (await admin.send(['EXISTS', lockKey('paused-wait')])) === 0, 3000, 'the cleanup');
  });
});
