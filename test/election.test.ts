import { expect } from 'chai';
import {
  ClosedError, EtcdClient, EtcdElection, LockLostError, LockReleasedError, LockTimeoutError, RedisClient, RedisElection,
  type Election, type Leader,
} from '../src/index.js';
import { startEtcd, startEtcdCluster, startRedis, type EtcdCluster, type EtcdServer, type RedisServer } from '../src/testing/servers.js';
import { FaultProxy } from './support/proxy.js';
import { etcdctl, eventually, queuedKeys, rejection, sleep } from './support/etcd.js';
import { runChild, srcUrl } from './support/clock.js';

/** Collects what an observe() yields, as "fence:value" or "none". Resolves once the first state is in. */
async function collect(election: Election, signal?: AbortSignal): Promise<{ seen: string[]; leaders: Array<Leader | null>; done: Promise<unknown> }> {
  const seen: string[] = [];
  const leaders: Array<Leader | null> = [];
  const done = (async () => {
    for await (const l of election.observe({ signal })) {
      leaders.push(l);
      seen.push(l ? `${l.fence}:${l.value.toString()}` : 'none');
    }
  })().catch((err: unknown) => err);
  await eventually(() => seen.length > 0, 5000, 'the first observation');
  return { seen, leaders, done };
}

/** The values observed, without fences: what a term-agnostic assertion compares. */
const values = (seen: string[]): string[] => seen.map((s) => (s === 'none' ? s : s.slice(s.indexOf(':') + 1)));

interface Backend {
  make(name: string, ttlMs?: number): Promise<Election>;
  /** Takes the leader's term away behind its back (deletes its key or lock). */
  steal(name: string): Promise<void>;
}

/** What both elections promise, run against each backend. */
function contract(label: string, backend: () => Backend): void {
  describe(`${label}: the Election contract`, () => {
    let n = 0;
    const fresh = (): string => `el-${label}-${++n}`;

    it('leads at once when alone; leader() tells who; the second candidate waits; resign hands over with a higher term', async () => {
      const name = fresh();
      const [a, b] = await Promise.all([backend().make(name), backend().make(name)]);
      expect(await a.leader()).to.equal(null);
      const la = await a.campaign('alpha');
      const leader = await b.leader();
      expect(leader?.value.toString()).to.equal('alpha');
      expect(leader?.fence).to.equal(la.fence);
      expect(leader?.name).to.equal(name);
      let bLeads = false;
      const pb = b.campaign('beta').then((l) => ((bLeads = true), l));
      await sleep(300);
      expect(bLeads, 'the second candidate leads beside the first').to.equal(false);
      const t = performance.now();
      await la.resign();
      const lb = await pb;
      const handoverMs = performance.now() - t;
      expect(lb.fence > la.fence, 'terms strictly increase').to.equal(true);
      expect(handoverMs, 'a resign hands over at once, not at a lease end').to.be.below(1000);
      expect(la.signal.aborted).to.equal(true);
      expect(la.signal.reason).to.be.instanceOf(LockReleasedError);
      expect((await a.leader())?.value.toString()).to.equal('beta');
      await lb.resign();
      await lb.resign(); // idempotent
      expect(await a.leader()).to.equal(null);
    });

    it('proclaim changes what observers see; after resign it is LockReleasedError; after a loss LockLostError, and the signal says so', async () => {
      const name = fresh();
      const e = await backend().make(name);
      const obs = await collect(e);
      const l = await e.campaign('v1');
      await l.proclaim('v2');
      await l.proclaim(Buffer.from('v3'));
      await eventually(() => obs.seen.at(-1)?.endsWith(':v3') ?? false, 3000, 'the observer sees v3');
      await backend().steal(name);
      const err = await rejection(l.proclaim('v4'));
      expect(err).to.be.instanceOf(LockLostError);
      expect(l.signal.aborted).to.equal(true);
      expect(l.signal.reason).to.be.instanceOf(LockLostError);
      const l2 = await e.campaign('w1');
      await l2.resign();
      expect(await rejection(l2.proclaim('w2'))).to.be.instanceOf(LockReleasedError);
      await eventually(() => obs.seen.at(-1) === 'none', 3000, 'the observer sees no leader');
      // Every value in order: the stolen term's v3 ends; the new term begins with w1.
      const vs = values(obs.seen);
      expect(vs[0]).to.equal('none');
      expect(vs).to.include.members(['v3', 'w1']); // v1 and v2 may be coalesced: same term
      expect(vs.indexOf('v3')).to.be.below(vs.indexOf('w1'));
      expect(vs.at(-1)).to.equal('none');
      await e.close();
    });

    it('observe() yields the current leader at once, and never skips a leader even when the consumer reads late', async () => {
      const name = fresh();
      const [a, b, c, watcher] = await Promise.all([0, 1, 2, 3].map(() => backend().make(name)));
      const la = await a.campaign('a');
      const it = watcher!.observe();
      const first = await it.next();
      expect((first.value as Leader).value.toString()).to.equal('a');
      const pb = b!.campaign('b');
      await sleep(100);
      const pc = c!.campaign('c');
      await sleep(100);
      // The consumer does not read while three leaders come and go.
      await la.resign();
      const lb = await pb;
      await lb.proclaim('b2'); // may be coalesced with b: same term
      await lb.resign();
      const lc = await pc;
      await sleep(300);
      const got: string[] = [];
      for (;;) {
        const next = await Promise.race([it.next(), sleep(500).then(() => undefined)]);
        if (!next) break;
        got.push(next.value ? next.value.value.toString() : 'none');
        if (next.value?.value.toString() === 'c') break;
      }
      const leadersOnly = got.filter((v) => v !== 'none');
      expect(leadersOnly[0]).to.match(/^b2?$/);
      expect(leadersOnly.at(-1)).to.equal('c');
      expect(leadersOnly.filter((v) => v === 'a')).to.have.length(0); // 'a' was delivered already
      await it.return!();
      await lc.resign();
      await Promise.all([a, b!, c!, watcher!].map((e) => e.close()));
    });

    it('a campaign with a deadline rejects with LockTimeoutError at it; an aborted one with the reason; neither leaves anything behind', async () => {
      const name = fresh();
      const [a, b] = await Promise.all([backend().make(name), backend().make(name)]);
      const la = await a.campaign('holder');
      const t = performance.now();
      const timedOut = await rejection(b.campaign('late', { waitTimeoutMs: 300 }));
      const waited = performance.now() - t;
      expect(timedOut).to.be.instanceOf(LockTimeoutError);
      expect(waited).to.be.within(250, 1500);
      const ac = new AbortController();
      const aborted = b.campaign('late', { signal: ac.signal });
      setTimeout(() => ac.abort(new Error('changed my mind')), 100);
      expect((await rejection(aborted)).message).to.equal('changed my mind');
      await la.resign();
      await sleep(200);
      expect(await a.leader(), 'a given-up candidate never leads').to.equal(null);
      await Promise.all([a.close(), b.close()]);
    });

    it('waitTimeoutMs: 0 is one attempt: it leads when nobody does, and is LockTimeoutError when someone does', async () => {
      const name = fresh();
      const [a, b] = await Promise.all([backend().make(name), backend().make(name)]);
      const la = await a.campaign('first', { waitTimeoutMs: 0 });
      expect((await b.leader())?.value.toString()).to.equal('first');
      expect(await rejection(b.campaign('second', { waitTimeoutMs: 0 }))).to.be.instanceOf(LockTimeoutError);
      await la.resign();
      expect(await b.leader()).to.equal(null);
      const lb = await b.campaign('second', { waitTimeoutMs: 0 });
      await lb.resign();
      await Promise.all([a.close(), b.close()]);
    });

    it('close() resigns what it leads, rejects pending campaigns with ClosedError, and ends its observers', async () => {
      const name = fresh();
      const [a, b, other] = await Promise.all([backend().make(name), backend().make(name), backend().make(name)]);
      const la = await a.campaign('a');
      const pending = rejection(a.campaign('a-again'));
      const obs = await collect(a);
      await sleep(200);
      const pb = b.campaign('b');
      await a.close();
      expect(await pending).to.be.instanceOf(ClosedError);
      expect(la.signal.reason).to.be.instanceOf(LockReleasedError);
      expect(await obs.done).to.equal(undefined); // ended, not failed
      const lb = await pb;
      expect((await other.leader())?.value.toString()).to.equal('b');
      expect(() => a.observe()).to.throw(ClosedError);
      expect(await rejection(a.campaign('x'))).to.be.instanceOf(ClosedError);
      await lb.resign();
      await Promise.all([b.close(), other.close()]);
    });

    it('an observer ends with the abort reason; binary values travel intact', async () => {
      const name = fresh();
      const e = await backend().make(name);
      const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const l = await e.campaign(bytes);
      expect((await e.leader())?.value.equals(bytes)).to.equal(true);
      const ac = new AbortController();
      const it = e.observe({ signal: ac.signal });
      expect(((await it.next()).value as Leader).value.equals(bytes)).to.equal(true);
      const pending = it.next();
      ac.abort(new Error('enough'));
      expect((await rejection(pending)).message).to.equal('enough');
      expect((await it.next()).done).to.equal(true);
      await l.resign();
      await e.close();
    });

    it('bad input is a TypeError or RangeError at once', async () => {
      const e = await backend().make(fresh());
      expect(await rejection(e.campaign(42 as unknown as string))).to.be.instanceOf(TypeError);
      expect(await rejection(e.campaign('v', { ttlMs: -1 }))).to.be.instanceOf(RangeError);
      expect(await rejection(e.campaign('v', { waitTimeoutMs: Number.NaN }))).to.be.instanceOf(RangeError);
      expect(await rejection(e.campaign('v', { signal: 'no' as unknown as AbortSignal }))).to.be.instanceOf(TypeError);
      expect(() => e.observe({ signal: {} as AbortSignal })).to.throw(TypeError);
      await e.close();
    });
  });
}

describe('leader election', function () {
  this.timeout(30_000);
  let etcd: EtcdServer;
  let redis: RedisServer;
  let etcdAdmin: EtcdClient;
  let redisAdmin: RedisClient;
  const closers: Array<() => Promise<void>> = [];

  before(async () => {
    [etcd, redis] = await Promise.all([startEtcd(), startRedis()]);
    etcdAdmin = await EtcdClient.connect({ endpoints: etcd.endpoints });
    redisAdmin = await RedisClient.connect(redis.url);
  });
  after(async () => {
    await Promise.allSettled(closers.map((c) => c()));
    await etcdAdmin?.close();
    await redisAdmin?.close();
    await Promise.all([etcd?.stop(), redis?.stop()]);
  });

  const etcdBackend = (): Backend => ({
    make: async (name, ttlMs = 2000) => {
      const client = await EtcdClient.connect({ endpoints: etcd.endpoints });
      const e = new EtcdElection(client, name, { ttlMs });
      closers.push(async () => {
        await e.close();
        await client.close();
      });
      return e;
    },
    steal: async (name) => {
      const [key] = await queuedKeys(etcdAdmin, name);
      await etcdAdmin.deleteRange({ key: key! });
    },
  });
  const redisBackend = (): Backend => ({
    make: async (name, ttlMs = 2000) => {
      const client = await RedisClient.connect(redis.url);
      const e = new RedisElection(client, name, { ttlMs });
      closers.push(async () => {
        await e.close();
        await client.close();
      });
      return e;
    },
    steal: async (name) => void (await redisAdmin.send(['DEL', `wirelock:{${name}}`])),
  });

  contract('etcd', etcdBackend);
  contract('redis', redisBackend);

  describe('what keeps a process alive (child processes)', function () {
    this.timeout(20_000);
    // The child waits, either as an observer or as a candidate behind our leader, with nothing else of
    // its own pending: it stays only if that wait keeps it alive (sockets and retry timers are unref'd).
    const script = (kind: 'etcd' | 'redis', name: string, role: 'observe' | 'campaign'): string => `
      const m = await import(${JSON.stringify(srcUrl('index.ts'))});
      const client = ${kind === 'etcd' ? `await m.EtcdClient.connect({ endpoints: ${JSON.stringify(etcd.endpoints)} })` : `await m.RedisClient.connect(${JSON.stringify(redis.url)})`};
      const e = new m.${kind === 'etcd' ? 'EtcdElection' : 'RedisElection'}(client, ${JSON.stringify(name)}, { ttlMs: 2000 });
      if (${JSON.stringify(role)} === 'observe') {
        const it = e.observe();
        await it.next(); // the parent, at once
        const r = await it.next(); // the parent's next value, seconds later
        console.log('observed', r.value.value.toString());
      } else {
        const l = await e.campaign('child');
        console.log('led', l.fence > 0n);
        await l.resign();
      }
      await e.close();
      await client.close();
    `;
    for (const kind of ['etcd', 'redis'] as const) {
      it(`${kind}: a pending observe() next() and a pending campaign each keep the process alive until answered`, async () => {
        const name = `alive-${kind}`;
        const e = await (kind === 'etcd' ? etcdBackend() : redisBackend()).make(name);
        const l = await e.campaign('parent');
        const observer = runChild(script(kind, name, 'observe'), 15_000);
        const candidate = runChild(script(kind, name, 'campaign'), 15_000);
        await sleep(3000); // longer than anything the children's own timers would wait for
        await l.proclaim('parent-2');
        await sleep(300);
        await l.resign();
        for (const [run, line] of [[await observer, 'observed parent-2'], [await candidate, 'led true']] as const) {
          expect(run.code, `exit code (null: killed); stderr: ${run.stderr}`).to.equal(0);
          expect(run.stdout.trim()).to.equal(line);
        }
      });
    }
  });

  describe('EtcdElection specifics', () => {
    it('writes <name>/<lease hex> with the value on its lease; the fence is the key create revision', async () => {
      const e = await etcdBackend().make('layout');
      const l = await e.campaign('host-1:8080');
      const res = await etcdAdmin.range({ key: l.key });
      const kv = res.kvs[0]!;
      expect(l.key).to.match(/^layout\/[0-9a-f]+$/);
      expect(kv.value.toString()).to.equal('host-1:8080');
      expect(kv.lease.toString(16)).to.equal(l.key.slice('layout/'.length));
      expect(kv.create_revision).to.equal(l.fence);
      await l.resign();
      expect((await etcdAdmin.range({ key: l.key })).kvs).to.have.length(0);
    });

    it('a leader whose lease is revoked is told at once (session-expired); a candidate whose lease expires while queued never leads', async () => {
      const name = 'revoked';
      const [a, b, c] = await Promise.all([0, 1, 2].map(() => etcdBackend().make(name)));
      const la = await a!.campaign('a');
      const pb = b!.campaign('b');
      await eventually(async () => (await queuedKeys(etcdAdmin, name)).length === 2, 3000, 'b queued');
      const [, bKey] = await queuedKeys(etcdAdmin, name);
      // b's lease goes while it waits: its campaign ends, and it never leads.
      await etcdAdmin.leaseRevoke({ ID: BigInt(`0x${bKey!.slice(name.length + 1)}`) });
      const bErr = await rejection(pb, 3000);
      expect(bErr).to.be.instanceOf(LockLostError);
      expect(bErr.reason).to.equal('session-expired');
      const pc = c!.campaign('c');
      await eventually(async () => (await queuedKeys(etcdAdmin, name)).length === 2, 3000, 'c queued');
      const t = performance.now();
      await etcdAdmin.leaseRevoke({ ID: BigInt(`0x${la.key.slice(name.length + 1)}`) });
      await eventually(() => la.signal.aborted, 2000, "the leader's signal aborts");
      expect((la.signal.reason as LockLostError).reason).to.be.oneOf(['session-expired', 'stolen']);
      const lc = await pc;
      expect(performance.now() - t).to.be.below(1500);
      expect((await a!.leader())?.value.toString()).to.equal('c');
      await lc.resign();
    });

    it('close() returns only once a given-up campaign has withdrawn its key', async () => {
      const name = 'withdrawn';
      const [a, b] = await Promise.all([etcdBackend().make(name), etcdBackend().make(name)]);
      const la = await a.campaign('a');
      const ac = new AbortController();
      const pb = rejection(b.campaign('b', { signal: ac.signal }));
      await eventually(async () => (await queuedKeys(etcdAdmin, name)).length === 2, 3000, 'b queued');
      ac.abort(new Error('going'));
      await b.close();
      expect(await queuedKeys(etcdAdmin, name), "b's key is gone when close() returns").to.deep.equal([la.key]);
      expect((await pb).message).to.equal('going');
      await la.resign();
    });

    it('observe() survives its stream being reset: it resumes after the last revision and misses no change', async () => {
      const proxy = await FaultProxy.start({ port: Number(new URL(etcd.clientUrl).port) });
      const client = await EtcdClient.connect({ endpoints: [proxy.url('http')] });
      const watcher = new EtcdElection(client, 'resets');
      const obs = await collect(watcher);
      const e = await etcdBackend().make('resets');
      const l1 = await e.campaign('one');
      await eventually(() => obs.seen.length === 2, 3000, 'first leader observed');
      proxy.refuse().reset(); // drops every connection (the watch stream with it), and refuses new ones
      await l1.proclaim('two');
      await l1.resign();
      const l2 = await e.campaign('three');
      proxy.pass();
      await eventually(() => obs.seen.at(-1)?.endsWith(':three') ?? false, 8000, 'the observer catches up');
      expect(values(obs.seen)).to.deep.equal(['none', 'one', 'two', 'none', 'three']);
      expect(proxy.accepted, 'the client connected again').to.be.above(1);
      await l2.resign();
      await watcher.close();
      await client.close();
      await proxy.stop();
    });

    it('observe() survives compaction of the history it would resume from: it reads the present and goes on', async () => {
      const proxy = await FaultProxy.start({ port: Number(new URL(etcd.clientUrl).port) });
      const client = await EtcdClient.connect({ endpoints: [proxy.url('http')] });
      const watcher = new EtcdElection(client, 'compacted');
      const obs = await collect(watcher);
      const e = await etcdBackend().make('compacted');
      const l1 = await e.campaign('one');
      await eventually(() => obs.seen.length === 2, 3000, 'first leader observed');
      proxy.refuse().reset();
      await l1.resign();
      const l2 = await e.campaign('two');
      await l2.proclaim('three');
      const { header } = await etcdAdmin.range({ key: 'compacted/' });
      await etcdctl(etcd.endpoints, ['compaction', String(header.revision)]);
      proxy.pass();
      await eventually(() => obs.seen.at(-1)?.endsWith(':three') ?? false, 8000, 'the observer catches up after the compaction');
      // What happened during the outage is gone from etcd: the observer reports the present, not the steps.
      expect(values(obs.seen).slice(0, 2)).to.deep.equal(['none', 'one']);
      await l2.proclaim('four');
      await eventually(() => obs.seen.at(-1)?.endsWith(':four') ?? false, 3000, 'and goes on observing');
      await l2.resign();
      await watcher.close();
      await client.close();
      await proxy.stop();
    });
  });

  describe('RedisElection specifics', () => {
    it('keeps the leader record with the lock: it expires with it, and extensions extend both', async () => {
      const e = await redisBackend().make('record', 600);
      const l = await e.campaign('v');
      await sleep(900); // past the first lease: auto-extension (every ttl/3) kept both
      expect(l.signal.aborted).to.equal(false);
      const pttl = Number(await redisAdmin.send(['PTTL', 'wirelock:{record}:leader']));
      expect(pttl).to.be.within(1, 600);
      expect((await e.leader())?.value.toString()).to.equal('v');
      await l.resign();
      expect(await e.leader()).to.equal(null);
    });

    it('a leader that stops renewing loses its term at validUntil; the next leads within the TTL and observers see it', async () => {
      const proxy = await FaultProxy.start({ port: redis.port });
      const client = await RedisClient.connect(proxy.url('redis'));
      const dying = new RedisElection(client, 'crash', { ttlMs: 1000 });
      const other = await redisBackend().make('crash', 1000);
      const obs = await collect(other);
      const la = await dying.campaign('dying');
      const pb = other.campaign('next');
      await sleep(100);
      proxy.blackhole(); // the leader's process as good as dead: nothing it sends arrives
      const t = performance.now();
      const lb = await pb;
      const tookMs = performance.now() - t;
      expect(tookMs).to.be.below(1200);
      expect(la.signal.aborted, 'the old leader knew before the new one led').to.equal(true);
      expect((la.signal.reason as LockLostError).reason).to.equal('expired');
      expect(lb.fence > la.fence).to.equal(true);
      await eventually(() => obs.seen.at(-1)?.endsWith(':next') ?? false, 2000, 'observers see the next leader');
      await lb.resign();
      proxy.pass();
      await dying.close();
      await client.close();
      await proxy.stop();
    });

    it('an observer learns of an expired leader at its lease end, with no message announcing it', async () => {
      const e = await redisBackend().make('expiry', 800);
      const obs = await collect(e);
      const l = await e.campaign('short');
      await eventually(() => obs.seen.length === 2, 2000, 'leader observed');
      // Take the term away silently: the lock's key expires without a release message.
      await redisAdmin.send(['PEXPIRE', 'wirelock:{expiry}', '50']);
      await eventually(() => obs.seen.at(-1) === 'none', 2000, 'observer sees no leader');
      await eventually(() => l.signal.aborted, 2000, 'leader told');
      await e.close();
    });
  });

  describe('etcd leader member killed on a 3-member cluster', function () {
    this.timeout(60_000);
    let cluster: EtcdCluster;
    before(async () => {
      cluster = await startEtcdCluster(3);
    });
    after(async () => cluster?.stop());

    it('the leader keeps its term through the member failover; the next candidate leads after it resigns; observers see both', async () => {
      const clients = await Promise.all([0, 1, 2].map(() => EtcdClient.connect({ endpoints: cluster.endpoints })));
      const [a, b, w] = clients.map((c) => new EtcdElection(c, 'ha', { ttlMs: 5000 }));
      const obs = await collect(w!);
      const la = await a!.campaign('a');
      const pb = b!.campaign('b');
      await sleep(200);
      const member = await cluster.leader();
      await member.kill();
      await sleep(3000);
      expect(la.signal.aborted, 'the term survives the member failover').to.equal(false);
      await la.resign();
      const lb = await pb;
      expect(lb.fence > la.fence).to.equal(true);
      await eventually(() => obs.seen.at(-1)?.endsWith(':b') ?? false, 5000, 'observer sees b');
      expect(values(obs.seen).filter((v) => v !== 'none')).to.deep.equal(['a', 'b']);
      await lb.resign();
      await Promise.all([a!, b!, w!].map((e) => e.close()));
      await Promise.all(clients.map((c) => c.close()));
      await member.restart();
    });
  });
});
