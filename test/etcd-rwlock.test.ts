/**
 * EtcdRWLock against a real etcd: readers share, a writer is alone, a waiting writer stops new
 * readers (so readers arriving continuously cannot starve it), create revisions fence both modes, an
 * upgrade is refused, a waiter re-checks its own key before a grant, losses are typed, waits end at
 * their deadline (taking their key out of line), and a handoff makes only the admitted send anything.
 */
import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import { ClosedError, EtcdClient, EtcdRWLock, LockLostError, LockTimeoutError, type Lock } from '../src/index.js';
import type { EtcdCallPayload } from '../src/diagnostics.js';
import { startEtcd, type EtcdServer } from '../src/testing/servers.js';
import { eventually, queuedKeys, rejection, sleep } from './support/etcd.js';

/** One hold as a test saw it: [enter, exit] lies inside the time it was held (performance.now()). */
interface Hold {
  mode: 'read' | 'write';
  enter: number;
  exit: number;
  fence: bigint;
}

/** Every pair of holds that overlap in time while one of them writes: empty if the lock excluded. */
function violations(holds: Hold[]): string[] {
  const found: string[] = [];
  const byEnter = [...holds].sort((a, b) => a.enter - b.enter);
  for (const [i, a] of byEnter.entries()) {
    for (const b of byEnter.slice(i + 1)) {
      if (b.enter >= a.exit) break;
      if (a.mode === 'write' || b.mode === 'write') found.push(`${a.mode} ${a.fence} overlaps ${b.mode} ${b.fence}`);
    }
  }
  return found;
}

describe('EtcdRWLock', function () {
  this.timeout(30_000);
  let etcd: EtcdServer;
  let admin: EtcdClient;
  const clients: EtcdClient[] = [];
  const locks: EtcdRWLock[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  let n = 0;
  const fresh = (name: string): string => `${name}-${++n}`;

  /** An RW lock on a client of its own, as another process would have. */
  const rw = async (opts?: { prefix?: string }): Promise<EtcdRWLock> => {
    const client = await EtcdClient.connect({ endpoints: etcd.endpoints });
    clients.push(client);
    const l = new EtcdRWLock(client, opts);
    locks.push(l);
    return l;
  };
  /** Every key in line for `key` (default prefix), readers and writers, oldest first. */
  const line = (key: string): Promise<string[]> => queuedKeys(admin, `wirelock/${key}`);
  const leaseOf = (lock: Lock): bigint => BigInt(`0x${lock.token.slice(lock.token.lastIndexOf('/') + 1).split('-')[0]}`);

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    etcd = await startEtcd();
    admin = await EtcdClient.connect({ endpoints: etcd.endpoints });
  });
  afterEach(async () => {
    await Promise.all(locks.splice(0).map((l) => l.close()));
    await Promise.all(clients.splice(0).map((c) => c.close()));
    expect(unhandled, 'unhandled rejections').to.deep.equal([]);
  });
  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    await admin?.close();
    await etcd?.stop();
  });

  it("uses the Go recipe's layout: <name>/read/… and <name>/write/… on the session lease, fence = create revision", async () => {
    const key = fresh('layout');
    const l = await rw();
    expect(l.lockName(key)).to.equal(`wirelock/${key}`);
    const r = await l.read.acquire(key);
    expect(r.key).to.equal(key);
    expect(r.token).to.match(new RegExp(`^wirelock/${key}/read/[0-9a-f]+-[0-9a-f]+$`));
    const [kv] = (await admin.range({ key: r.token })).kvs;
    expect(kv!.create_revision).to.equal(r.fence);
    expect(kv!.lease).to.equal(leaseOf(r));
    await r.release();
    expect(await line(key)).to.deep.equal([]);

    const custom = await rw({ prefix: 'locks/' });
    const w = await custom.write.acquire(key);
    expect(w.token).to.match(new RegExp(`^locks/${key}/write/[0-9a-f]+-[0-9a-f]+$`));
    expect(w.fence > r.fence).to.equal(true);
    await w.release();
    // It follows its session: renewals (every TTL/3) move validUntil.
    const kept = await custom.write.acquire(key, { ttlMs: 2000 });
    const first = kept.validUntil;
    await eventually(() => kept.validUntil > first + 300, 3000, 'a renewal');
    await kept.release();
  });

  it('readers share, a writer waits for all of them, and readers wait for the writer; fences order the modes', async () => {
    const key = fresh('share');
    const [a, b, w] = await Promise.all([rw(), rw(), rw()]);
    const readers = await Promise.all([a.read.acquire(key), b.read.acquire(key), a.read.acquire(key)]);
    expect(new Set(readers.map((r) => r.token)).size, 'three keys, one per hold').to.equal(3);
    expect(await w.write.tryAcquire(key)).to.equal(null);
    expect(await line(key), 'tryAcquire leaves no key').to.have.length(3);
    let writer: Lock | undefined;
    const writing = w.write.acquire(key).then((l) => (writer = l));
    await eventually(async () => (await line(key)).length === 4, 3000, 'the writer in line');
    await readers[2]!.release();
    await readers[0]!.release();
    await sleep(200);
    expect(writer, 'the writer beside a reader').to.equal(undefined);
    await readers[1]!.release();
    await writing;
    for (const r of readers) expect(writer!.fence > r.fence, 'the writer is fenced after the readers it waited for').to.equal(true);

    let reader: Lock | undefined;
    const reading = b.read.acquire(key).then((l) => (reader = l));
    await eventually(async () => (await line(key)).length === 2, 3000, 'the reader in line');
    expect(await a.read.tryAcquire(key), 'a reader beside the writer').to.equal(null);
    await sleep(200);
    expect(reader).to.equal(undefined);
    await writer!.release();
    await reading;
    expect(reader!.fence > writer!.fence).to.equal(true);
  });

  it('a waiting writer stops new readers: they queue behind it and go after it, in order', async () => {
    const key = fresh('prefer');
    const [a, w, late, w2] = await Promise.all([rw(), rw(), rw(), rw()]);
    const early = await a.read.acquire(key);
    const order: string[] = [];
    const writing = w.write.acquire(key).then((l) => (order.push('w1'), l));
    await eventually(async () => (await line(key)).length === 2, 3000, 'the writer in line');
    expect(await late.read.tryAcquire(key), 'a new reader does not pass a waiting writer').to.equal(null);
    const lateReads = ['r2', 'r3'].map((name) => late.read.acquire(key).then((l) => (order.push(name), l)));
    await eventually(async () => (await line(key)).length === 4, 3000, 'the late readers in line');
    const second = w2.write.acquire(key).then((l) => (order.push('w2'), l));
    await eventually(async () => (await line(key)).length === 5, 3000, 'a second writer in line');
    const last = late.read.acquire(key).then((l) => (order.push('r4'), l));
    await eventually(async () => (await line(key)).length === 6, 3000, 'a reader behind it');

    await early.release();
    const writer = await writing;
    await sleep(200);
    expect(order).to.deep.equal(['w1']);
    await writer.release();
    const [r2, r3] = await Promise.all(lateReads);
    await sleep(200);
    expect(order.slice(0, 1)).to.deep.equal(['w1']);
    expect(order.slice(1).sort()).to.deep.equal(['r2', 'r3']);
    await r2!.release();
    await sleep(200);
    expect(order, 'w2 waits for both readers').to.have.length(3);
    await r3!.release();
    const writer2 = await second;
    await sleep(200);
    expect(order.at(-1)).to.equal('w2');
    await writer2.release();
    await last;
    expect(order.at(-1)).to.equal('r4');
  });

  it('never a reader beside a writer, never two writers: 10 clients mixing reads and writes', async () => {
    const key = fresh('mixed');
    const all = await Promise.all(Array.from({ length: 10 }, () => rw()));
    const holds: Hold[] = [];
    let readers = 0;
    let writers = 0;
    let bad = 0;
    let round = 0;
    const deadline = performance.now() + 3000;
    await Promise.all(
      all.map(async (l, i) => {
        while (performance.now() < deadline) {
          const mode = (i + round++) % 4 === 0 ? 'write' : 'read';
          const lock = await l[mode].acquire(key, { ttlMs: 5000 });
          const enter = performance.now();
          if (writers > 0 || (mode === 'write' && readers > 0)) bad++;
          if (mode === 'write') writers++;
          else readers++;
          await sleep(Math.random() * 4);
          if (mode === 'write') writers--;
          else readers--;
          holds.push({ mode, enter, exit: performance.now(), fence: lock.fence });
          await lock.release();
        }
      }),
    );
    const writes = holds.filter((h) => h.mode === 'write').length;
    expect(writes, 'writes').to.be.above(10);
    expect(holds.length - writes, 'reads').to.be.above(30);
    expect(bad, 'a hold began beside a writer').to.equal(0);
    expect(violations(holds)).to.deep.equal([]);
    expect(new Set(holds.map((h) => h.fence)).size, 'distinct fences').to.equal(holds.length);
    // The checker can fail: readers did share here, and it flags a reader inside a writer.
    const shared = holds.filter((h) => h.mode === 'read').some((a, _, rs) => rs.some((b) => b !== a && b.enter < a.exit && a.enter < b.exit));
    expect(shared, 'readers held at once').to.equal(true);
    const w = holds.find((h) => h.mode === 'write')!;
    expect(violations([w, { mode: 'read', enter: (w.enter + w.exit) / 2, exit: w.exit + 1, fence: 0n }])).to.have.length(1);
  });

  it('refuses to upgrade a read lock it holds, at once, and says why', async () => {
    const key = fresh('upgrade');
    const l = await rw();
    const r = await l.read.acquire(key);
    const t0 = performance.now();
    const err = await rejection(l.write.acquire(key));
    expect(performance.now() - t0).to.be.below(100);
    expect(err).to.be.instanceOf(TypeError);
    expect(err.code).to.equal('ERR_INVALID_ARG_VALUE');
    expect(err.message).to.match(/holds a read lock on it.*deadlock.*release the read lock first/);
    expect(await rejection(l.write.tryAcquire(key))).to.be.instanceOf(TypeError);
    expect(await line(key), 'nothing written for the refused write').to.deep.equal([r.token]);
    await r.release();
    const w = await l.write.acquire(key, { waitTimeoutMs: 2000 });
    await w.release();
  });

  it('a revoked lease ends its holds with LockLostError(session-expired) at once; a deleted key with (stolen)', async () => {
    const key = fresh('lost');
    const [a, b] = await Promise.all([rw(), rw()]);
    const [r1, r2] = [await a.read.acquire(key, { ttlMs: 5000 }), await a.read.acquire(key, { ttlMs: 5000 })];
    const other = await b.read.acquire(key);
    const start = performance.now();
    await admin.leaseRevoke({ ID: leaseOf(r1) });
    await eventually(() => r1.signal.aborted && r2.signal.aborted, 3000, 'both reads lost');
    expect(performance.now() - start, 'noticed from the watch, not at the next renewal').to.be.below(1000);
    for (const r of [r1, r2]) {
      expect(r.signal.reason).to.be.instanceOf(LockLostError);
      expect((r.signal.reason as LockLostError).reason).to.equal('session-expired');
    }
    expect(other.signal.aborted, "another session's read").to.equal(false);
    await other.release();

    const w = await a.write.acquire(key);
    await admin.deleteRange({ key: w.token });
    await eventually(() => w.signal.aborted, 3000, 'the write lost');
    expect((w.signal.reason as LockLostError).reason).to.equal('stolen');
    await w.release(); // a no-op after a loss
  });

  it('re-checks its own key before a grant: a waiter whose lease went while it queued is never granted on it', async () => {
    const key = fresh('recheck');
    const [a, b] = await Promise.all([rw(), rw()]);
    const writer = await a.write.acquire(key);
    // A lease of its own (autoExtend: false): its end is the end of the wait.
    const own = b.read.acquire(key, { autoExtend: false });
    await eventually(async () => (await line(key)).length === 2, 3000, 'the reader in line');
    let [kv] = (await admin.range({ key: (await line(key))[1]! })).kvs;
    await admin.leaseRevoke({ ID: kv!.lease });
    const err = await rejection(own, 3000);
    expect(err).to.be.instanceOf(LockLostError);
    expect(err.reason).to.equal('session-expired');

    // On the shared session the wait goes on, on a new lease: never granted on the dead key.
    let granted: Lock | undefined;
    const waiting = b.read.acquire(key).then((l) => (granted = l));
    await eventually(async () => (await line(key)).length === 2, 3000, 'the reader in line');
    const readerKey = (await line(key))[1]!;
    [kv] = (await admin.range({ key: readerKey })).kvs;
    await admin.leaseRevoke({ ID: kv!.lease });
    await eventually(async () => {
      const keys = await line(key);
      return keys.length === 2 && keys[1] !== readerKey;
    }, 3000, 'the reader back in line on a new lease');
    await sleep(200);
    expect(granted, 'granted while the writer holds').to.equal(undefined);
    await writer.release();
    await waiting;
    expect(granted!.token).to.not.equal(readerKey);
    const [now] = (await admin.range({ key: granted!.token })).kvs;
    expect(now!.lease, 'its key stands on a live lease, not the revoked one').to.not.equal(kv!.lease);
    await granted!.release();
  });

  it('gives up at waitTimeoutMs, on abort and on close(), taking its key out of line', async () => {
    const key = fresh('give-up');
    const holder = await (await rw()).write.acquire(key);
    const waiter = await rw();

    const start = performance.now();
    const timedOut = await rejection(waiter.read.acquire(key, { waitTimeoutMs: 300 }));
    expect(timedOut).to.be.instanceOf(LockTimeoutError);
    expect(performance.now() - start).to.be.within(295, 450);
    await eventually(async () => (await line(key)).length === 1, 2000, "the timed-out waiter's key deleted");

    const ac = new AbortController();
    const aborted = waiter.write.acquire(key, { signal: ac.signal });
    await eventually(async () => (await line(key)).length === 2, 2000, 'the waiter in line');
    const reason = new Error('no longer needed');
    ac.abort(reason);
    expect(await rejection(aborted, 100)).to.equal(reason);
    await eventually(async () => (await line(key)).length === 1, 2000, "the aborted waiter's key deleted");

    const once = performance.now();
    expect(await rejection(waiter.read.acquire(key, { waitTimeoutMs: 0 }))).to.be.instanceOf(LockTimeoutError);
    expect(performance.now() - once, 'one attempt').to.be.below(500);
    expect(await line(key)).to.deep.equal([holder.token]);

    const closing = [waiter.read.acquire(key), waiter.write.acquire(key)];
    await eventually(async () => (await line(key)).length === 3, 2000, 'both waiters in line');
    const closed = closing.map((p) => rejection(p, 100));
    await waiter.close();
    for (const err of await Promise.all(closed)) expect(err).to.be.instanceOf(ClosedError);
    await eventually(async () => (await line(key)).length === 1, 2000, "the closed waiters' keys deleted");
    expect(holder.signal.aborted).to.equal(false);
    expect(await rejection(waiter.read.acquire(key))).to.be.instanceOf(ClosedError);
  });

  it('a writer release makes only the readers it admits send anything: one check Txn each', async () => {
    const key = fresh('handoff');
    const writer = await (await rw()).write.acquire(key);
    const readers: Array<{ lock?: Lock }> = [];
    for (let i = 0; i < 3; i++) {
      const r: { lock?: Lock } = {};
      readers.push(r);
      void (await rw()).read.acquire(key).then((l) => (r.lock = l), () => {});
      await eventually(async () => (await line(key)).length === 2 + i, 3000, `reader ${i} in line`);
    }
    let behind: Lock | undefined;
    void (await rw()).write.acquire(key).then((l) => (behind = l), () => {}); // rejected by close() at the end
    await eventually(async () => (await line(key)).length === 5, 3000, 'a writer behind the readers');
    let late: Lock | undefined;
    void (await rw()).read.acquire(key).then((l) => (late = l), () => {});
    await eventually(async () => (await line(key)).length === 6, 3000, 'a reader behind that writer');
    const keys = await line(key);

    const calls: EtcdCallPayload[] = [];
    const onCall = (m: unknown): void => void calls.push(m as EtcdCallPayload);
    dc.subscribe('wirelock:etcd:call', onCall);
    try {
      await sleep(300);
      expect(calls, 'calls while everyone waits').to.deep.equal([]);
      await writer.release();
      await eventually(() => readers.every((r) => r.lock !== undefined), 3000, 'the three readers admitted');
      await sleep(300); // anything the others would send
    } finally {
      dc.unsubscribe('wirelock:etcd:call', onCall);
    }
    const sender = (c: EtcdCallPayload): string => String((c.request as { compare?: Array<{ key: unknown }> }).compare?.[0]?.key);
    expect(calls.map((c) => `${c.method} ${sender(c)}`).sort()).to.deep.equal(keys.slice(0, 4).map((k) => `KV.Txn ${k}`).sort());
    expect(behind).to.equal(undefined);
    expect(late).to.equal(undefined);
  });

  it('readers re-acquiring back to back do not starve a writer: its wait is bounded by one read hold', async () => {
    const key = fresh('starve');
    const readers = await Promise.all(Array.from({ length: 6 }, () => rw()));
    const w = await rw();
    let stop = false;
    let reads = 0;
    // Each reader holds 30 ms and asks again at once, so the key is never free of readers.
    const loops = readers.map(async (r) => {
      while (!stop) {
        const l = await r.read.acquire(key, { ttlMs: 5000 });
        reads++;
        await sleep(30);
        await l.release();
      }
    });
    await sleep(300);
    const waits: number[] = [];
    for (let i = 0; i < 8; i++) {
      const asked = performance.now();
      const l = await w.write.acquire(key, { ttlMs: 5000, waitTimeoutMs: 10_000 });
      waits.push(performance.now() - asked);
      await sleep(10);
      await l.release();
      await sleep(100);
    }
    stop = true;
    await Promise.all(loops);
    expect(reads).to.be.above(50);
    const measured = `writer waits ${waits.map((v) => v.toFixed(0)).join(', ')} ms over ${reads} reads`;
    console.log(`      ${measured}`);
    // One reader's hold (30 ms) plus handoffs, not the stream of readers.
    for (const ms of waits) expect(ms, measured).to.be.below(1000);
  });

  it('rejects bad arguments at once', async () => {
    const client = await EtcdClient.connect({ endpoints: etcd.endpoints });
    clients.push(client);
    expect(() => new EtcdRWLock({} as EtcdClient)).to.throw(TypeError);
    expect(() => new EtcdRWLock(client, { prefix: 3 as unknown as string })).to.throw(TypeError);
    expect(() => new EtcdRWLock(client, { ttlMs: 0 })).to.throw(RangeError);
    const l = new EtcdRWLock(client);
    locks.push(l);
    expect(await rejection(l.read.acquire(''))).to.be.instanceOf(TypeError);
    expect(await rejection(l.write.acquire('k', { ttlMs: -1 }))).to.be.instanceOf(RangeError);
    expect(await rejection(l.read.tryAcquire('k', { waitTimeoutMs: Number.NaN }))).to.be.instanceOf(RangeError);
  });
});
