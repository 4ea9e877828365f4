/**
 * RedisSemaphore against a real redis-server: never more than `limit` holders, first come first
 * served, a fence per permit, permits that expire by the server's clock (a crashed holder whose wall
 * clock is an hour off), owner-checked release and extension, and a handoff that wakes only the
 * waiter it admits.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import dc from 'node:diagnostics_channel';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClosedError, LockLostError, LockTimeoutError, RedisClient, RedisLocker, RedisSemaphore, type Lock } from '../src/index.js';
import { SEMAPHORE_EXTEND, SEMAPHORE_RELEASE, semaphoreKeys } from '../src/locks/redis-scripts.js';
import { startRedis, type RedisServer } from '../src/testing/servers.js';
import { rejection, sleep, waitFor } from './support/wait.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const keys = (name: string) => semaphoreKeys('wirelock:', name);

describe('RedisSemaphore', function () {
  this.timeout(30_000);
  let server: RedisServer;
  let admin: RedisClient;
  const clients: RedisClient[] = [];
  const semaphores: RedisSemaphore[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);

  /** A semaphore on a connection of its own, as a separate process would have. */
  async function semaphore(limit: number): Promise<RedisSemaphore> {
    const client = await RedisClient.connect(server.url);
    clients.push(client);
    const s = new RedisSemaphore(client, { limit });
    semaphores.push(s);
    return s;
  }
  const holders = async (name: string): Promise<string[]> => (await admin.send(['ZRANGE', keys(name).lock, 0, -1])) as string[];
  const queued = async (name: string): Promise<number> => (await admin.send(['ZCARD', keys(name).queue])) as number;

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    server = await startRedis();
    admin = await RedisClient.connect(server.url);
  });
  afterEach(async () => {
    await Promise.all(semaphores.splice(0).map((s) => s.close()));
    await Promise.all(clients.splice(0).map((c) => c.close()));
    expect(unhandled, 'unhandled rejections').to.deep.equal([]);
  });
  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    await admin?.close();
    await server?.stop();
  });

  it('admits `limit` holders, and the next waits until one releases', async () => {
    const s = await semaphore(3);
    const permits = await Promise.all([1, 2, 3].map(() => s.acquire('three', { ttlMs: 5000 })));
    expect(await holders('three')).to.have.members(permits.map((p) => p.token));
    expect(await s.tryAcquire('three')).to.equal(null);
    const fourth = s.acquire('three', { ttlMs: 5000 });
    await waitFor(async () => (await queued('three')) === 1, 3000, 'the fourth to queue');
    await permits[1]!.release();
    const got = await fourth;
    expect(got.fence > permits[2]!.fence).to.equal(true);
    expect(await holders('three')).to.have.members([permits[0]!.token, permits[2]!.token, got.token]);
    for (const p of [permits[0]!, permits[2]!, got]) await p.release();
    expect(await admin.send(['EXISTS', keys('three').lock, keys('three').queue])).to.equal(0);
  });

  it('never has more than `limit` holders: 12 clients hammering a limit of 3', async () => {
    const limit = 3;
    const all = await Promise.all(Array.from({ length: 12 }, () => semaphore(limit)));
    let inside = 0;
    let most = 0;
    const fences: bigint[] = [];
    const deadline = performance.now() + 2500;
    await Promise.all(
      all.map(async (s) => {
        while (performance.now() < deadline) {
          const p = await s.acquire('hammer', { ttlMs: 5000 });
          inside++;
          most = Math.max(most, inside);
          fences.push(p.fence);
          // The server agrees: our token is among at most `limit` live permits.
          const live = await holders('hammer');
          expect(live).to.include(p.token);
          expect(live.length).to.be.at.most(limit);
          await sleep(Math.random() * 3);
          inside--;
          await p.release();
        }
      }),
    );
    expect(most).to.equal(limit);
    expect(fences.length).to.be.above(50);
    expect(new Set(fences.map(String)).size, 'every permit has its own fence').to.equal(fences.length);
  });

  it('serves waiters first come, first served, and fences follow grant order', async () => {
    const s = await semaphore(2);
    const first = await Promise.all([s.acquire('fifo'), s.acquire('fifo')]);
    const order: number[] = [];
    const waiters: Array<Promise<Lock>> = [];
    for (let i = 0; i < 5; i++) {
      const w = (await semaphore(2)).acquire('fifo', { ttlMs: 5000 });
      waiters.push(w.then((p) => (order.push(i), p)));
      await waitFor(async () => (await queued('fifo')) === i + 1, 3000, `waiter ${i} to queue`);
    }
    // A newcomer's one attempt does not jump the queue, even when a permit is about to come free.
    expect(await s.tryAcquire('fifo')).to.equal(null);
    let held = first;
    const granted: Lock[] = [];
    for (let i = 0; i < 5; i++) {
      await held[0]!.release();
      const next = await waiters[i]!;
      granted.push(next);
      held = [held[1]!, next];
    }
    expect(order).to.deep.equal([0, 1, 2, 3, 4]);
    const fences = [...first, ...granted].map((p) => p.fence);
    for (let i = 1; i < fences.length; i++) expect(fences[i]! > fences[i - 1]!, `fence ${i}`).to.equal(true);
    await Promise.all(held.map((p) => p.release()));
  });

  it('a release wakes only the waiter it admits: one command from it, none from the other waiters', async () => {
    const holder = await semaphore(2);
    const permits = await Promise.all([holder.acquire('herd'), holder.acquire('herd')]);
    const waiting: Array<Promise<Lock>> = [];
    for (let i = 0; i < 6; i++) {
      waiting.push((await semaphore(2)).acquire('herd', { ttlMs: 20_000 }));
      await waitFor(async () => (await queued('herd')) === i + 1, 3000, `waiter ${i} to queue`);
    }
    await sleep(100); // every waiter subscribed and asleep
    const sent: string[] = [];
    const onCommand = (m: unknown): void => void sent.push(String((m as { args: unknown[] }).args[0]));
    dc.subscribe('wirelock:resp:command', onCommand);
    try {
      await permits[0]!.release();
      const next = await waiting[0]!;
      await sleep(300); // time for anyone else to (wrongly) try
      // The release and the admitted waiter's single attempt (a script each: EVAL on a connection's
      // first run of it, EVALSHA after), and that waiter leaving the release channel; nothing from
      // the five still waiting.
      const kinds = sent.map((c) => (c === 'EVAL' || c === 'EVALSHA' ? 'script' : c)).sort();
      expect(kinds, sent.join(' ')).to.deep.equal(['UNSUBSCRIBE', 'script', 'script']);
      await next.release();
    } finally {
      dc.unsubscribe('wirelock:resp:command', onCommand);
    }
    await permits[1]!.release();
    await Promise.all(waiting.slice(1).map(async (w) => (await w).release()));
  });

  it("a crashed holder's permit comes back at its TTL by the server's clock, whatever the holder's wall clock says", async () => {
    // The holder runs with its wall clock an hour behind. A permit scored by the client's clock would
    // read as long expired to the server, and the waiter below would get it at once.
    const child = spawn('faketime', ['--exclude-monotonic', '-f', '-1h', process.execPath, '--import', 'tsx', 'test/support/semaphore-holder.ts', server.url, 'crash', '1', '2000'], {
      cwd: root,
      // Its own process group: `faketime` runs node as its child, and killing only the wrapper would
      // leave node holding this process's output pipe (CI's `npm test | tee` then never ends).
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => void (stderr += d));
    const kill = (): void => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => {
          out += d;
          if (out.includes('\n')) resolve(out);
        });
        child.once('exit', (code) => reject(new Error(`holder exited with ${code} before holding: ${stderr}`)));
      });
      const heldAt = performance.now();
      const [, , , wall] = line.trim().split(' ');
      expect(Date.now() - Number(wall), "the holder's wall clock is an hour behind").to.be.above(3_500_000);
      kill();
      const waiter = await semaphore(1);
      const p = await waiter.acquire('crash', { ttlMs: 5000, waitTimeoutMs: 10_000 });
      const after = performance.now() - heldAt;
      expect(after, 'ms from the grant to the next grant').to.be.within(1800, 4000);
      await p.release();
    } finally {
      kill();
    }
  });

  it('release and extend with a foreign token change nothing', async () => {
    const s = await semaphore(2);
    const p = await s.acquire('foreign', { ttlMs: 5000, autoExtend: false });
    const k = keys('foreign');
    const before = await admin.send(['ZRANGE', k.lock, 0, -1, 'WITHSCORES']);
    const forged = 'f'.repeat(32);
    expect(await admin.evalScript(SEMAPHORE_RELEASE, [k.lock, k.fence, k.queue, k.queueExpiry], [forged, k.channel, 2])).to.equal(0);
    expect(await admin.evalScript(SEMAPHORE_EXTEND, [k.lock], [forged, 60_000])).to.equal(0);
    expect(await admin.send(['ZRANGE', k.lock, 0, -1, 'WITHSCORES'])).to.deep.equal(before);
    await p.release();
  });

  it('a permit that is gone is lost: extend() rejects and the signal aborts with LockLostError', async () => {
    const s = await semaphore(2);
    const p = await s.acquire('gone', { ttlMs: 5000, autoExtend: false });
    await admin.send(['ZREM', keys('gone').lock, p.token]);
    const err = await rejection(p.extend());
    expect(err).to.be.instanceOf(LockLostError);
    expect((err as LockLostError).reason).to.equal('expired');
    expect(p.signal.aborted).to.equal(true);
    expect(p.signal.reason).to.be.instanceOf(LockLostError);
  });

  it('auto-extension keeps a permit past its TTL', async () => {
    const s = await semaphore(1);
    const p = await s.acquire('extended', { ttlMs: 600 });
    await sleep(1500);
    expect(p.signal.aborted).to.equal(false);
    expect(await holders('extended')).to.deep.equal([p.token]);
    await p.release();
  });

  it('a wait rejects at its deadline, on abort and on close, and leaves the queue', async () => {
    const s = await semaphore(1);
    const p = await s.acquire('waits');
    const waiter = await semaphore(1);
    const t0 = performance.now();
    expect(await rejection(waiter.acquire('waits', { waitTimeoutMs: 300 }))).to.be.instanceOf(LockTimeoutError);
    expect(performance.now() - t0).to.be.within(280, 1500);
    const ac = new AbortController();
    const aborted = waiter.acquire('waits', { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('no longer needed')), 100);
    expect((await rejection(aborted)).message).to.equal('no longer needed');
    const closing = waiter.acquire('waits');
    await waitFor(async () => (await queued('waits')) === 1, 3000, 'the waiter to queue');
    await waiter.close();
    expect(await rejection(closing)).to.be.instanceOf(ClosedError);
    await waitFor(async () => (await queued('waits')) === 0, 3000, 'the queue to empty');
    await p.release();
  });

  it('a semaphore and a lock of the same name never share a key', async () => {
    const s = await semaphore(1);
    const locker = new RedisLocker(admin);
    const [p, l] = await Promise.all([s.acquire('shared-name'), locker.acquire('shared-name')]);
    expect(await admin.send(['TYPE', 'wirelock:{shared-name}'])).to.equal('string');
    expect(await admin.send(['TYPE', keys('shared-name').lock])).to.equal('zset');
    await Promise.all([p.release(), l.release()]);
    await locker.close();
  });

  it('refuses a bad limit with a typed error', () => {
    for (const limit of [0, -1, 1.5, NaN, Infinity, 2 ** 31]) {
      const err = (() => {
        try {
          new RedisSemaphore(admin, { limit });
        } catch (e) {
          return e as RangeError & { code?: string };
        }
      })();
      expect(err, String(limit)).to.be.instanceOf(RangeError);
      expect(err!.code).to.equal('ERR_OUT_OF_RANGE');
    }
    expect(() => new RedisSemaphore(admin, { limit: '2' as unknown as number })).to.throw(TypeError);
    expect(() => new RedisSemaphore(admin, {} as { limit: number })).to.throw(TypeError, /limit/);
    expect(() => new RedisSemaphore({} as RedisClient, { limit: 1 })).to.throw(TypeError, /RedisSemaphore needs a RedisClient/);
  });
});
