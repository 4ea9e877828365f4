/**
 * EtcdSemaphore against a real etcd: never more than `limit` holders, admitted in create-revision
 * order, a fence per permit, several permits on one session, owner-checked release, typed losses,
 * waits that end at their deadline (taking their key out of line), and a handoff that makes only the
 * admitted waiter send anything.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import dc from 'node:diagnostics_channel';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ClosedError, CompareResult, CompareTarget, EtcdClient, EtcdSemaphore, LockLostError, LockTimeoutError, type Lock,
} from '../src/index.js';
import type { EtcdCallPayload } from '../src/diagnostics.js';
import { startEtcd, type EtcdServer } from '../src/testing/servers.js';
import { eventually, queuedKeys, rejection, sleep } from './support/etcd.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('EtcdSemaphore', function () {
  this.timeout(30_000);
  let etcd: EtcdServer;
  let admin: EtcdClient;
  const clients: EtcdClient[] = [];
  const semaphores: EtcdSemaphore[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  let n = 0;
  const fresh = (name: string): string => `${name}-${++n}`;

  const connect = async (): Promise<EtcdClient> => {
    const c = await EtcdClient.connect({ endpoints: etcd.endpoints });
    clients.push(c);
    return c;
  };
  /** A semaphore on a client of its own, as a separate process would have. */
  const semaphore = async (limit: number, client?: EtcdClient): Promise<EtcdSemaphore> => {
    const s = new EtcdSemaphore(client ?? (await connect()), { limit });
    semaphores.push(s);
    return s;
  };
  /** The keys in line for `key` (default prefix), oldest first. */
  const line = (key: string): Promise<string[]> => queuedKeys(admin, `wirelock/${key}`);
  const leaseOf = (permit: Lock): bigint => BigInt(`0x${permit.token.slice(permit.token.lastIndexOf('/') + 1).split('-')[0]}`);

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    etcd = await startEtcd();
    admin = await EtcdClient.connect({ endpoints: etcd.endpoints });
  });
  afterEach(async () => {
    await Promise.all(semaphores.splice(0).map((s) => s.close()));
    await Promise.all(clients.splice(0).map((c) => c.close()));
    expect(unhandled, 'unhandled rejections').to.deep.equal([]);
  });
  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    await admin?.close();
    await etcd?.stop();
  });

  it('admits `limit` holders at once, one session holding several, and the next waits until one releases', async () => {
    const key = fresh('three');
    const s = await semaphore(3);
    const permits = await Promise.all([1, 2, 3].map(() => s.acquire(key)));
    // One session, three permits: each its own key `<name>/<lease hex>-<n hex>` on the same lease.
    const lease = leaseOf(permits[0]!);
    for (const p of permits) {
      expect(p.token).to.match(new RegExp(`^wirelock/${key}/${lease.toString(16)}-[0-9a-f]+$`));
      const [kv] = (await admin.range({ key: p.token })).kvs;
      expect(kv!.lease).to.equal(lease);
      expect(kv!.create_revision).to.equal(p.fence);
    }
    expect(new Set(permits.map((p) => p.token)).size).to.equal(3);
    expect(await line(key)).to.have.members(permits.map((p) => p.token));

    expect(await s.tryAcquire(key)).to.equal(null);
    expect(await line(key), 'tryAcquire leaves no key').to.have.length(3);
    let fourth: Lock | undefined;
    const waiting = s.acquire(key).then((p) => (fourth = p));
    await eventually(async () => (await line(key)).length === 4, 3000, 'the fourth in line');
    await sleep(200);
    expect(fourth, 'a fourth holder').to.equal(undefined);
    await permits[1]!.release();
    await waiting;
    expect(fourth!.fence > permits[2]!.fence).to.equal(true);
    expect(await line(key)).to.have.members([permits[0]!.token, permits[2]!.token, fourth!.token]);
  });

  it('admits waiters in the order they queued (FIFO), each by the release before it', async () => {
    const key = fresh('fifo');
    const holder = await semaphore(2);
    const held = [await holder.acquire(key), await holder.acquire(key)];
    const admitted: number[] = [];
    const permits: Lock[] = [];
    for (let i = 0; i < 4; i++) {
      const s = await semaphore(2);
      void s.acquire(key).then((p) => {
        admitted.push(i);
        permits[i] = p;
      });
      await eventually(async () => (await line(key)).length === 3 + i, 3000, `waiter ${i} in line`);
    }
    // Each release admits exactly the oldest waiter left: the holders' two, then the first two admitted.
    for (let i = 0; i < 4; i++) {
      await (i < 2 ? held[i]! : permits[i - 2]!).release();
      await eventually(() => admitted.length === i + 1, 3000, `waiter ${i} admitted`);
      await sleep(50);
      expect(admitted).to.deep.equal([0, 1, 2, 3].slice(0, i + 1));
    }
    const fences = [...held, ...permits].map((p) => p.fence);
    for (let i = 1; i < fences.length; i++) expect(fences[i]! > fences[i - 1]!, `fence ${i}`).to.equal(true);
  });

  it('a release by anyone else changes nothing: a guarded delete with another revision leaves the key', async () => {
    const key = fresh('foreign');
    const s = await semaphore(2);
    const permit = await s.acquire(key);
    const wrong = await admin.txn({
      compare: [{ key: permit.token, target: CompareTarget.CREATE, result: CompareResult.EQUAL, create_revision: permit.fence + 1n }],
      success: [{ request_delete_range: { key: permit.token } }],
    });
    expect(wrong.succeeded).to.equal(false);
    expect(await line(key)).to.deep.equal([permit.token]);
    expect(permit.signal.aborted).to.equal(false);
    // Our own release twice: the second finds nothing of ours, and leaves the next holder's key alone.
    await permit.release();
    const next = await (await semaphore(2)).acquire(key);
    await permit.release();
    expect(await line(key)).to.deep.equal([next.token]);
    expect(next.signal.aborted).to.equal(false);
  });

  it('a revoked lease ends every permit on it with LockLostError(session-expired); a deleted key with (stolen)', async () => {
    const key = fresh('lost');
    const s = await semaphore(3);
    const [a, b] = [await s.acquire(key, { ttlMs: 4000 }), await s.acquire(key, { ttlMs: 4000 })];
    const other = await (await semaphore(3)).acquire(key);
    const start = performance.now();
    await admin.leaseRevoke({ ID: leaseOf(a) });
    await eventually(() => a.signal.aborted && b.signal.aborted, 3000, 'both permits lost');
    expect(performance.now() - start, 'noticed from the watch, not at the TTL').to.be.below(1500);
    for (const p of [a, b]) {
      expect(p.signal.reason).to.be.instanceOf(LockLostError);
      expect((p.signal.reason as LockLostError).reason).to.equal('session-expired');
      await p.release(); // a no-op after a loss
    }
    expect(other.signal.aborted, 'another session\'s permit').to.equal(false);

    // Its key deleted behind its back, on a live lease: stolen, and only that permit.
    const c = await s.acquire(key);
    const d = await s.acquire(key);
    await admin.deleteRange({ key: c.token });
    await eventually(() => c.signal.aborted, 3000, 'the permit lost');
    expect((c.signal.reason as LockLostError).reason).to.equal('stolen');
    expect(d.signal.aborted).to.equal(false);
    expect(await line(key)).to.deep.equal([other.token, d.token]);
  });

  it('gives up at waitTimeoutMs, on abort and on close(), taking its key out of line', async () => {
    const key = fresh('give-up');
    const holder = await (await semaphore(1)).acquire(key);
    const waiter = await semaphore(1);

    const start = performance.now();
    const timedOut = await rejection(waiter.acquire(key, { waitTimeoutMs: 300 }));
    const waited = performance.now() - start;
    expect(timedOut).to.be.instanceOf(LockTimeoutError);
    expect(waited).to.be.within(295, 450);
    await eventually(async () => (await line(key)).length === 1, 2000, 'the timed-out waiter\'s key deleted');

    const ac = new AbortController();
    const aborted = waiter.acquire(key, { signal: ac.signal });
    await eventually(async () => (await line(key)).length === 2, 2000, 'the waiter in line');
    const reason = new Error('no longer needed');
    ac.abort(reason);
    expect(await rejection(aborted, 100)).to.equal(reason);
    await eventually(async () => (await line(key)).length === 1, 2000, 'the aborted waiter\'s key deleted');

    const once = performance.now();
    expect(await rejection(waiter.acquire(key, { waitTimeoutMs: 0 }))).to.be.instanceOf(LockTimeoutError);
    expect(performance.now() - once, 'one attempt').to.be.below(500);
    expect(await line(key)).to.deep.equal([holder.token]);

    const closing = waiter.acquire(key);
    await eventually(async () => (await line(key)).length === 2, 2000, 'the waiter in line');
    const closed = rejection(closing, 100);
    await waiter.close();
    expect(await closed).to.be.instanceOf(ClosedError);
    await eventually(async () => (await line(key)).length === 1, 2000, 'the closed waiter\'s key deleted');
    expect(await line(key)).to.deep.equal([holder.token]);
    expect(holder.signal.aborted).to.equal(false);
  });

  it('follows its session: validUntil moves with renewals; autoExtend: false gives a lease of its own that ends at its TTL', async () => {
    const key = fresh('lease');
    const s = await semaphore(2);
    const kept = await s.acquire(key, { ttlMs: 2000 });
    const first = kept.validUntil;
    expect(first).to.be.within(performance.now() + 1000, performance.now() + 2000);
    await eventually(() => kept.validUntil > first + 300, 2000, 'a renewal');

    const own = await s.acquire(key, { ttlMs: 2000, autoExtend: false });
    expect(leaseOf(own)).to.not.equal(leaseOf(kept));
    await eventually(() => own.signal.aborted, 4000, 'the unrenewed permit ended');
    expect((own.signal.reason as LockLostError).reason).to.equal('session-expired');
    await eventually(async () => (await line(key)).length === 1, 3000, 'its key gone with its lease');
    expect(kept.signal.aborted).to.equal(false);
  });

  it('a release makes exactly one waiter send anything (limit 2, 6 waiters): one check Txn', async () => {
    const key = fresh('handoff');
    const client = await connect();
    const holder = await semaphore(2, client);
    const held = [await holder.acquire(key), await holder.acquire(key)];
    const waiters: Array<{ token?: string; permit?: Lock }> = [];
    for (let i = 0; i < 6; i++) {
      const w: { token?: string; permit?: Lock } = {};
      waiters.push(w);
      const s = await semaphore(2, client);
      // The ones still waiting at the end are rejected by close() (ClosedError), as they should be.
      s.acquire(key).then((p) => (w.permit = p), (err: unknown) => expect(err).to.be.instanceOf(ClosedError));
      await eventually(async () => (await line(key)).length === 3 + i, 3000, `waiter ${i} in line`);
      w.token = (await line(key))[2 + i];
    }

    const calls: EtcdCallPayload[] = [];
    const onCall = (m: unknown): void => void calls.push(m as EtcdCallPayload);
    const watchSends: unknown[] = [];
    const onSend = (m: unknown): void => {
      const { stream, message } = m as { stream: string; message: { create_request?: unknown; cancel_request?: unknown } };
      if (stream === 'Watch.Watch' && (message.create_request || message.cancel_request)) watchSends.push(message);
    };
    dc.subscribe('wirelock:etcd:call', onCall);
    dc.subscribe('wirelock:etcd:stream:send', onSend);
    try {
      await sleep(300);
      expect(calls, 'calls while everyone waits').to.deep.equal([]);
      await held[0]!.release();
      await eventually(() => waiters[0]!.permit !== undefined, 3000, 'the oldest waiter admitted');
      await sleep(300); // anything the others would send
    } finally {
      dc.unsubscribe('wirelock:etcd:call', onCall);
      dc.unsubscribe('wirelock:etcd:stream:send', onSend);
    }
    const sender = (c: EtcdCallPayload): string => String((c.request as { compare?: Array<{ key: unknown }> }).compare?.[0]?.key);
    expect(calls.map((c) => `${c.method} ${sender(c)}`)).to.deep.equal([`KV.Txn ${held[0]!.token}`, `KV.Txn ${waiters[0]!.token}`]);
    expect(waiters.slice(1).every((w) => w.permit === undefined)).to.equal(true);
    // On the Watch stream: only the releaser's cancel. The admitted waiter keeps the watch it waited with.
    expect(watchSends).to.have.length(1);
  });

  it('never admits more than `limit` at once: 12 acquirers on their own clients, limit 3', async () => {
    const key = fresh('many');
    const limit = 3;
    let holders = 0;
    let maxHolders = 0;
    const holds: Array<{ requested: number; enter: number; exit: number; fence: bigint }> = [];
    await Promise.all(
      Array.from({ length: 12 }, async () => {
        const s = await semaphore(limit);
        for (let i = 0; i < 8; i++) {
          const requested = performance.now();
          const p = await s.acquire(key);
          const enter = performance.now();
          maxHolders = Math.max(maxHolders, ++holders);
          await sleep(Math.random() * 4);
          holders--;
          holds.push({ requested, enter, exit: performance.now(), fence: p.fence });
          await p.release();
        }
      }),
    );
    expect(maxHolders).to.equal(limit);
    checkFences(holds);
  });

  it('never admits more than `limit` at once across worker processes (4 processes, limit 2)', async function () {
    this.timeout(60_000);
    const key = fresh('procs');
    const limit = 2;
    const worker = path.join(root, 'test', 'support', 'etcd-semaphore-worker.ts');
    const runs = await Promise.all(
      Array.from({ length: 4 }, () => new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', 'tsx', worker, etcd.endpoints[0]!, key, String(limit), '15', '3'], { cwd: root });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => (out += d));
        child.stderr.on('data', (d: Buffer) => (err += d));
        child.once('error', reject);
        child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`worker exited ${code}: ${err}`))));
      })),
    );
    const holds = runs.flatMap((out) => out.trim().split('\n')).map((line) => {
      const h = JSON.parse(line) as Record<string, string>;
      return { requested: Number(BigInt(h.requested!)) / 1e6, enter: Number(BigInt(h.enter!)) / 1e6, exit: Number(BigInt(h.exit!)) / 1e6, fence: BigInt(h.fence!) };
    });
    expect(holds).to.have.length(60);
    // A sweep over enter/exit stamps: at no moment more than `limit` inside.
    const stamps = holds.flatMap((h) => [{ at: h.enter, d: 1 }, { at: h.exit, d: -1 }]).sort((x, y) => x.at - y.at || x.d - y.d);
    let inside = 0;
    let most = 0;
    for (const s of stamps) most = Math.max(most, (inside += s.d));
    expect(most).to.be.within(1, limit);
    checkFences(holds);
  });

  it('rejects bad arguments at once', async () => {
    const client = await connect();
    const thrown = (fn: () => unknown): (Error & { code?: string }) | undefined => {
      try {
        fn();
      } catch (err) {
        return err as Error & { code?: string };
      }
      return undefined;
    };
    for (const limit of [0, -1, 1.5, Number.NaN, Infinity]) {
      const err = thrown(() => new EtcdSemaphore(client, { limit }));
      expect(err, String(limit)).to.be.instanceOf(RangeError);
      expect(err!.code).to.equal('ERR_OUT_OF_RANGE');
    }
    for (const opts of [{ limit: '3' }, {}, undefined]) {
      const err = thrown(() => new EtcdSemaphore(client, opts as unknown as { limit: number }));
      expect(err, JSON.stringify(opts)).to.be.instanceOf(TypeError);
      expect(err!.code).to.equal('ERR_INVALID_ARG_TYPE');
    }
    expect(thrown(() => new EtcdSemaphore({} as EtcdClient, { limit: 1 }))).to.be.instanceOf(TypeError);
    const s = await semaphore(1, client);
    expect(await rejection(s.acquire(''))).to.be.instanceOf(TypeError);
    expect(await rejection(s.acquire('k', { ttlMs: -1 }))).to.be.instanceOf(RangeError);
    expect(await rejection(s.tryAcquire('k', { waitTimeoutMs: Number.NaN }))).to.be.instanceOf(RangeError);
  });
});

/**
 * Fences are distinct, and a permit asked for after another was released has a higher fence. (Two
 * permits held at once may enter in either order: the fence orders them by when they queued.)
 */
function checkFences(holds: Array<{ requested: number; exit: number; fence: bigint }>): void {
  expect(new Set(holds.map((h) => h.fence)).size, 'distinct fences').to.equal(holds.length);
  const byExit = [...holds].sort((a, b) => a.exit - b.exit);
  for (const h of holds) {
    const before = byExit.filter((b) => b.exit < h.requested);
    for (const b of before) expect(h.fence > b.fence, `fence ${h.fence} after ${b.fence}`).to.equal(true);
  }
}
