/**
 * RedisRWLock against a real redis-server: readers share, a writer is alone, a waiting writer stops
 * new readers (so readers arriving continuously cannot starve it), one fence orders both modes, an
 * upgrade is refused, and a release wakes exactly the waiters it admits.
 */
import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import { RedisClient, RedisRWLock, type Lock } from '../src/index.js';
import { RW_EXTEND, RW_RELEASE, rwKeys } from '../src/locks/redis-scripts.js';
import { startRedis, type RedisServer } from '../src/testing/servers.js';
import { rejection, sleep, waitFor } from './support/wait.js';

const keys = (name: string) => rwKeys('wirelock:', name);

describe('RedisRWLock', function () {
  this.timeout(30_000);
  let server: RedisServer;
  let admin: RedisClient;
  const clients: RedisClient[] = [];
  const locks: RedisRWLock[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);

  /** An RW lock on a connection of its own, as another process would have. */
  async function rw(): Promise<RedisRWLock> {
    const client = await RedisClient.connect(server.url);
    clients.push(client);
    const l = new RedisRWLock(client);
    locks.push(l);
    return l;
  }
  const queued = async (name: string): Promise<number> => (await admin.send(['ZCARD', keys(name).queue])) as number;
  const holds = async (name: string): Promise<string[]> => (await admin.send(['ZRANGE', keys(name).lock, 0, -1])) as string[];

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    server = await startRedis();
    admin = await RedisClient.connect(server.url);
  });
  afterEach(async () => {
    await Promise.all(locks.splice(0).map((l) => l.close()));
    await Promise.all(clients.splice(0).map((c) => c.close()));
    expect(unhandled, 'unhandled rejections').to.deep.equal([]);
  });
  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    await admin?.close();
    await server?.stop();
  });

  it('readers share, a writer waits for them, and readers wait for the writer', async () => {
    const [a, b, w] = await Promise.all([rw(), rw(), rw()]);
    const readers = await Promise.all([a.read.acquire('doc'), b.read.acquire('doc'), a.read.acquire('doc')]);
    expect((await holds('doc')).filter((m) => m.startsWith('r:'))).to.have.length(3);
    expect(await w.write.tryAcquire('doc')).to.equal(null);
    const writing = w.write.acquire('doc');
    await waitFor(async () => (await queued('doc')) === 1, 3000, 'the writer to queue');
    await readers[0]!.release();
    await readers[1]!.release();
    await sleep(50);
    expect(await queued('doc'), 'still waiting for the last reader').to.equal(1);
    await readers[2]!.release();
    const writer = await writing;
    expect(await holds('doc')).to.deep.equal([`w:${writer.token}`]);
    // While it writes, a reader waits.
    const reading = b.read.acquire('doc');
    await waitFor(async () => (await queued('doc')) === 1, 3000, 'the reader to queue');
    await writer.release();
    const r = await reading;
    expect(r.fence > writer.fence).to.equal(true);
    for (const p of readers) expect(writer.fence > p.fence, 'the writer is fenced after the readers it waited for').to.equal(true);
    await r.release();
  });

  it('a waiting writer stops new readers: they queue behind it and go after it, in order', async () => {
    const [a, w, late] = await Promise.all([rw(), rw(), rw()]);
    const early = await a.read.acquire('pref');
    const writing = w.write.acquire('pref');
    await waitFor(async () => (await queued('pref')) === 1, 3000, 'the writer to queue');
    expect(await late.read.tryAcquire('pref'), 'a new reader does not pass a waiting writer').to.equal(null);
    const order: string[] = [];
    const lateReads = [late.read.acquire('pref'), late.read.acquire('pref')].map((p) => p.then((l) => (order.push('reader'), l)));
    await waitFor(async () => (await queued('pref')) === 3, 3000, 'the late readers to queue');
    void writing.then(() => order.push('writer'));
    await early.release();
    const writer = await writing;
    await sleep(50);
    expect(order).to.deep.equal(['writer']);
    await writer.release();
    const [r1, r2] = await Promise.all(lateReads);
    expect(order).to.deep.equal(['writer', 'reader', 'reader']);
    await Promise.all([r1!.release(), r2!.release()]);
  });

  it('readers arriving continuously do not starve a writer: it waits only for those already in', async () => {
    const readers = await Promise.all(Array.from({ length: 6 }, () => rw()));
    const w = await rw();
    let stop = false;
    let reads = 0;
    // Each reader loop holds 30 ms and comes straight back, so the key is never free of readers.
    const loops = readers.map(async (r) => {
      while (!stop) {
        const l = await r.read.acquire('starve', { ttlMs: 5000 });
        reads++;
        await sleep(30);
        await l.release();
      }
    });
    await sleep(300);
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) {
      const asked = performance.now();
      const l = await w.write.acquire('starve', { ttlMs: 5000, waitTimeoutMs: 10_000 });
      waits.push(performance.now() - asked);
      await sleep(10);
      await l.release();
      await sleep(100);
    }
    stop = true;
    await Promise.all(loops);
    expect(reads).to.be.above(50);
    // Bounded by one reader's hold (30 ms) plus handoffs, not by the stream of readers.
    for (const ms of waits) expect(ms, `writer waits ${waits.map((v) => v.toFixed(0)).join(', ')} ms`).to.be.below(1000);
  });

  it('never a reader beside a writer, never two writers: 10 clients mixing reads and writes', async () => {
    const all = await Promise.all(Array.from({ length: 10 }, () => rw()));
    let readers = 0;
    let writers = 0;
    let bad = 0;
    let done = 0;
    const fences: bigint[] = [];
    const deadline = performance.now() + 2500;
    await Promise.all(
      all.map(async (l, i) => {
        while (performance.now() < deadline) {
          const write = (i + done) % 4 === 0;
          const lock = await (write ? l.write : l.read).acquire('mixed', { ttlMs: 5000 });
          fences.push(lock.fence);
          if (write) {
            if (writers > 0 || readers > 0) bad++;
            writers++;
          } else {
            if (writers > 0) bad++;
            readers++;
          }
          await sleep(Math.random() * 3);
          if (write) writers--;
          else readers--;
          done++;
          await lock.release();
        }
      }),
    );
    expect(bad).to.equal(0);
    expect(done).to.be.above(50);
    expect(new Set(fences.map(String)).size).to.equal(fences.length);
  });

  it('refuses to upgrade a read lock it holds, at once, and says why', async () => {
    const l = await rw();
    const r = await l.read.acquire('upgrade');
    const t0 = performance.now();
    const err = await rejection(l.write.acquire('upgrade'));
    expect(performance.now() - t0).to.be.below(100);
    expect(err).to.be.instanceOf(TypeError);
    expect(err.code).to.equal('ERR_INVALID_ARG_VALUE');
    expect(err.message).to.match(/holds a read lock on it.*deadlock.*release the read lock first/);
    expect(await rejection(l.write.tryAcquire('upgrade'))).to.be.instanceOf(TypeError);
    await r.release();
    const w = await l.write.acquire('upgrade', { waitTimeoutMs: 2000 });
    await w.release();
  });

  it('a writer release admits the whole run of readers at the head in one message, and they alone send', async () => {
    const w = await rw();
    const writer = await w.write.acquire('run');
    const readers = await Promise.all([1, 2, 3].map(() => rw()));
    const waiting: Array<Promise<Lock>> = [];
    for (const [i, r] of readers.entries()) {
      waiting.push(r.read.acquire('run'));
      await waitFor(async () => (await queued('run')) === i + 1, 3000, `reader ${i} to queue`);
    }
    const other = await rw();
    const nextWriter = other.write.acquire('run');
    await waitFor(async () => (await queued('run')) === 4, 3000, 'the second writer to queue');
    await sleep(100);
    const sent: string[] = [];
    const onCommand = (m: unknown): void => void sent.push(String((m as { args: unknown[] }).args[0]));
    dc.subscribe('wirelock:resp:command', onCommand);
    try {
      await writer.release();
      const got = await Promise.all(waiting);
      await sleep(200);
      // The release, one script from each admitted reader and its UNSUBSCRIBE; nothing from the writer
      // behind them. (A script's first run on a connection goes as EVAL, later ones as EVALSHA.)
      expect(sent.filter((c) => c === 'EVALSHA' || c === 'EVAL')).to.have.length(4);
      expect(sent.filter((c) => c === 'UNSUBSCRIBE')).to.have.length(3);
      await Promise.all(got.map((g) => g.release()));
    } finally {
      dc.unsubscribe('wirelock:resp:command', onCommand);
    }
    (await nextWriter).release();
  });

  it('release and extend with a foreign token change nothing', async () => {
    const l = await rw();
    const r = await l.read.acquire('foreign', { autoExtend: false });
    const k = keys('foreign');
    const before = await admin.send(['ZRANGE', k.lock, 0, -1, 'WITHSCORES']);
    const forged = 'f'.repeat(32);
    for (const mode of ['r', 'w']) {
      expect(await admin.evalScript(RW_RELEASE, [k.lock, k.fence, k.queue, k.queueExpiry], [forged, k.channel, mode])).to.equal(0);
    }
    expect(await admin.evalScript(RW_EXTEND, [k.lock], [forged, 60_000])).to.equal(0);
    expect(await admin.send(['ZRANGE', k.lock, 0, -1, 'WITHSCORES'])).to.deep.equal(before);
    await r.release();
  });

  it('a hold expires by the server clock when not extended, and the next writer gets it', async () => {
    const [a, b] = await Promise.all([rw(), rw()]);
    const r = await a.read.acquire('expire', { ttlMs: 500, autoExtend: false });
    const t0 = performance.now();
    const w = await b.write.acquire('expire', { ttlMs: 5000, waitTimeoutMs: 5000 });
    expect(performance.now() - t0).to.be.within(300, 2000);
    expect(r.signal.aborted || performance.now() > r.validUntil).to.equal(true);
    await w.release();
  });
});
