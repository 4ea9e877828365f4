/**
 * RedisCluster against a real cluster (3 masters, a replica each, joined by redis-cli --cluster
 * create): routing by slot, MOVED after a real slot migration, ASK and TRYAGAIN during one, sharded
 * pub/sub that follows its slot, the lockers on a cluster (a handoff woken by SPUBLISH, a lock and a
 * waiter that live through a migration of their slot), a CLUSTER FAILOVER that keeps a replicated lock
 * and loses one the new master lacks (LockLostError 'failover'), WAIT on the slot's own master, a
 * password cluster, and a TLS-only cluster (private CA).
 */
import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import { LockLostError, RedisClient, RedisCluster, RedisElection, RedisLocker, RedisRWLock, RedisSemaphore, ReplicaError, keySlot } from '../src/index.js';
import { startRedisCluster, type RedisClusterServers, type RedisClusterNode } from '../src/testing/servers.js';
import type { RespCommandPayload, RespRedirectPayload } from '../src/diagnostics.js';
import net from 'node:net';
import { eventually } from './support/etcd.js';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runProcess } from './support/run.js';
import { makeTlsFiles, type TlsFiles } from './support/tls.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = (args: string[]) => runProcess(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), ...args], { cwd: root });

const addr = (n: RedisClusterNode): string => `${n.host}:${n.port}`;

/** Records the redirects (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) the clients follow while `fn` runs. */
async function redirectsDuring<T>(fn: () => Promise<T>): Promise<{ result: T; seen: RespRedirectPayload[] }> {
  const seen: RespRedirectPayload[] = [];
  const listener = (m: unknown): void => void seen.push(m as RespRedirectPayload);
  dc.subscribe('wirelock:resp:redirect', listener);
  try {
    return { result: await fn(), seen };
  } finally {
    dc.unsubscribe('wirelock:resp:redirect', listener);
  }
}

/** A master other than the one serving `slot` now. */
async function otherMaster(setup: RedisClusterServers, slot: number): Promise<RedisClusterNode> {
  const owner = await setup.masterOf(slot);
  for (const n of setup.nodes) if (n !== owner && (await n.role()) === 'master') return n;
  throw new Error('no other master');
}

describe('RedisCluster on a real cluster', function () {
  this.timeout(90_000);
  let setup: RedisClusterServers;
  const clients: Array<RedisCluster | RedisClient> = [];
  const connect = async (opts: { topologyRefreshMs?: number } = {}): Promise<RedisCluster> => {
    const c = await RedisCluster.connect({ seeds: [setup.url], ...opts });
    clients.push(c);
    return c;
  };

  before(async () => {
    setup = await startRedisCluster({ masters: 3, replicasPerMaster: 1 });
  });
  after(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    await setup?.stop();
  });

  it('routes each command to its slot\'s master; keyless ones to any; CROSSSLOT and one-connection commands are refused before sending', async () => {
    const c = await connect();
    expect(c.masters).to.have.length(3);
    const keys = ['alpha', 'beta', 'gamma', 'delta', 'epsilon'];
    const owners = new Set<string>();
    for (const k of keys) {
      await c.send(['SET', k, `v-${k}`]);
      owners.add(c.masterOf(k)!);
      // The node the map names holds it: asked directly, no redirect.
      const direct = await RedisClient.connect(`redis://${c.masterOf(k)}`);
      expect(await direct.send(['GET', k])).to.equal(`v-${k}`);
      await direct.close();
    }
    expect(owners.size, 'the keys spread over the masters').to.be.greaterThan(1);
    expect(await c.send(['PING'])).to.equal('PONG');
    expect(await c.send(['OBJECT', 'ENCODING', 'alpha'])).to.equal('embstr'); // a subcommand's key, from COMMAND INFO
    expect(await c.send(['MGET', '{t}a', '{t}b'])).to.deep.equal([null, null]);
    const cross = await c.send(['MGET', 'alpha', 'beta']).catch((e: Error & { code?: string }) => e);
    expect((cross as Error & { code?: string }).code).to.equal('ERR_INVALID_ARG_VALUE');
    expect((cross as Error).message).to.match(/CROSSSLOT.*hash tag/);
    const multi = await c.send(['MULTI']).catch((e: Error) => e);
    expect((multi as Error).message).to.match(/transaction needs one connection/);
  });

  it('MOVED after a real slot migration: the command follows it and the map learns the new owner', async () => {
    const c = await connect({ topologyRefreshMs: Infinity });
    const key = '{moved}k';
    const slot = keySlot(key);
    await c.send(['SET', key, 'before']);
    const target = await otherMaster(setup, slot);
    await setup.moveSlot(slot, target);
    const { result, seen } = await redirectsDuring(() => c.send(['GET', key]));
    expect(result).to.equal('before');
    expect(seen.filter((r) => r.kind === 'MOVED').map((r) => [r.slot, r.to])).to.deep.equal([[slot, addr(target)]]);
    expect(c.masterOf(key)).to.equal(addr(target));
    const again = await redirectsDuring(() => c.send(['GET', key]));
    expect(again.seen, 'no redirect once the map knows').to.deep.equal([]);
  });

  it('during a migration: ASK for the keys already moved, TRYAGAIN for a script whose keys are split, and every answer right', async () => {
    const c = await connect({ topologyRefreshMs: Infinity });
    const keys = Array.from({ length: 12 }, (_, i) => `{asking}k${i}`);
    const slot = keySlot(keys[0]!);
    for (const k of keys) await c.send(['SET', k, k]);
    const target = await otherMaster(setup, slot);
    const { seen } = await redirectsDuring(async () => {
      const moving = setup.moveSlot(slot, target, { keysPerBatch: 1, pauseBetweenBatchesMs: 60 });
      const answers: unknown[] = [];
      let scripted = 0;
      const deadline = performance.now() + 20_000;
      let done = false;
      void moving.finally(() => (done = true));
      while (!done && performance.now() < deadline) {
        answers.push(...(await Promise.all(keys.map((k) => c.send(['GET', k])))));
        // Two keys of the slot in one script: split by the migration it is TRYAGAIN until the slot is whole.
        const both = await c.send(['EVAL', "return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}", 2, keys[0]!, keys[11]!], { timeoutMs: 20_000 });
        expect(both).to.deep.equal([keys[0], keys[11]]);
        scripted++;
        await new Promise((r) => setTimeout(r, 20));
      }
      await moving;
      for (let i = 0; i < answers.length; i++) expect(answers[i]).to.equal(keys[i % keys.length]);
      expect(scripted).to.be.greaterThan(0);
    });
    const kinds = new Set(seen.map((r) => r.kind));
    expect(kinds.has('ASK'), `redirects seen: ${JSON.stringify([...kinds])}`).to.equal(true);
    expect(kinds.has('TRYAGAIN'), `redirects seen: ${JSON.stringify([...kinds])}`).to.equal(true);
    expect(await c.send(['GET', keys[5]!])).to.equal(keys[5]);
  });

  it('a sharded subscription follows its slot to the new node: the listener is told (null), then hears SPUBLISH there', async () => {
    const c = await connect({ topologyRefreshMs: Infinity });
    const channel = '{shard}:events';
    const slot = keySlot(channel);
    const got: Array<string | null> = [];
    const off = await c.subscribe(channel, (m) => void got.push(m === null ? null : String(m)));
    await c.publish(channel, 'one');
    await eventually(() => got.includes('one'), 5000, 'the first message');
    const target = await otherMaster(setup, slot);
    await setup.moveSlot(slot, target);
    await eventually(() => got.includes(null), 10_000, 'the listener told of the move');
    // Published on the new owner: heard only if the subscription moved there.
    const direct = await RedisClient.connect(`redis://${addr(target)}`);
    await eventually(async () => {
      await direct.send(['SPUBLISH', channel, 'two']);
      return got.includes('two');
    }, 10_000, 'a message on the new node');
    await direct.close();
    off();
  });

  it('a RedisLocker on a cluster: the waiter is woken by the release (SPUBLISH), not by its fallback timer', async () => {
    const c = await connect();
    const locker = new RedisLocker(c, { ttlMs: 30_000 });
    const held = await locker.acquire('handoff');
    const start = performance.now();
    const waiting = locker.acquire('handoff', { waitTimeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 200));
    await held.release();
    const next = await waiting;
    // The holder's PTTL was 30 s and a place is refreshed every ttl/3 = 10 s: only the message can wake it this soon.
    expect(performance.now() - start).to.be.below(2000);
    expect(next.fence > held.fence).to.equal(true);
    await next.release();
    await locker.close();
  });

  it('a held lock and a queued waiter live through a migration of their slot; the release still wakes the waiter', async () => {
    const c = await connect();
    const locker = new RedisLocker(c, { ttlMs: 2000 });
    const key = 'resharded';
    const slot = keySlot(`wirelock:{${key}}`);
    const held = await locker.acquire(key);
    const waiting = locker.acquire(key, { waitTimeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 100));
    const target = await otherMaster(setup, slot);
    await setup.moveSlot(slot, target);
    await new Promise((r) => setTimeout(r, 2500)); // past one TTL: the lock lives only if it renewed on the new owner
    expect(held.signal.aborted, String(held.signal.reason)).to.equal(false);
    expect(c.masterOf(`wirelock:{${key}}`)).to.equal(addr(target));
    const start = performance.now();
    await held.release();
    const next = await waiting;
    expect(performance.now() - start, 'woken, not timed').to.be.below(600);
    await next.release();
    await locker.close();
  });

  it('the semaphore, the read-write lock and the election run on a cluster too, woken by SPUBLISH', async () => {
    const c = await connect();
    const sem = new RedisSemaphore(c, { limit: 2, ttlMs: 30_000 });
    const [p1, p2] = await Promise.all([sem.acquire('sem'), sem.acquire('sem')]);
    expect(await sem.tryAcquire('sem')).to.equal(null);
    const third = sem.acquire('sem', { waitTimeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, 100));
    let start = performance.now();
    await p1.release();
    const p3 = await third;
    expect(performance.now() - start, 'woken by the release').to.be.below(1000);
    await Promise.all([p2.release(), p3.release(), sem.close()]);

    const [rwA, rwB] = [new RedisRWLock(c, { ttlMs: 30_000 }), new RedisRWLock(c, { ttlMs: 30_000 })];
    const reads = await Promise.all([rwA.read.acquire('rw'), rwB.read.acquire('rw')]);
    const writer = new RedisRWLock(c, { ttlMs: 30_000 });
    const writing = writer.write.acquire('rw', { waitTimeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, 100));
    start = performance.now();
    await Promise.all(reads.map((r) => r.release()));
    const w = await writing;
    expect(performance.now() - start, 'the writer woken by the last reader').to.be.below(1000);
    expect(w.fence > reads[1]!.fence && w.fence > reads[0]!.fence).to.equal(true);
    await w.release();
    await Promise.all([rwA.close(), rwB.close(), writer.close()]);

    const election = new RedisElection(c, 'cluster-election', { ttlMs: 30_000 });
    const seen: Array<string | null> = [];
    const observer = (async () => {
      for await (const leader of election.observe()) {
        seen.push(leader === null ? null : leader.value.toString());
        if (seen.includes('second')) return;
      }
    })();
    const first = await election.campaign('first');
    const next = election.campaign('second', { waitTimeoutMs: 5000 });
    await eventually(() => seen.includes('first'), 5000, 'the observer seeing the first leader');
    await first.resign();
    const second = await next;
    expect(second.fence > first.fence).to.equal(true);
    await observer;
    await second.resign();
    await election.close();
  });

  it('minReplicas: the WAIT goes to the slot\'s own master, right behind the script; more replicas than there are is a typed failure', async () => {
    const c = await connect();
    const ok = new RedisLocker(c, { minReplicas: 1, replicaTimeoutMs: 1000 });
    const lock = await ok.acquire('replicated');
    const before = lock.validUntil;
    await lock.extend();
    expect(lock.validUntil).to.be.greaterThan(before);
    await lock.release();
    const sem = new RedisSemaphore(c, { limit: 2, minReplicas: 2, replicaTimeoutMs: 100 });
    const err = await sem.tryAcquire('replicated-sem').catch((e: unknown) => e);
    expect(err).to.be.instanceOf(ReplicaError);
    await Promise.all([ok.close(), sem.close()]);
  });

  it("CLUSTER FAILOVER: a replicated lock is kept; a lock the new master lacks aborts with LockLostError('failover') within seconds (TTL 30 s)", async () => {
    const c = await connect({ topologyRefreshMs: 500 });
    const locker = new RedisLocker(c, { ttlMs: 30_000 });
    // Two locks on one master: pick names until both hash to the same master.
    const names: string[] = [];
    const master = c.masterOf('wirelock:{kept-0}')!;
    for (let i = 0; names.length < 2; i++) if (c.masterOf(`wirelock:{kept-${i}}`) === master) names.push(`kept-${i}`);
    const [keptName, goneName] = names as [string, string];
    const gone = await locker.acquire(goneName);
    const masterNode = setup.nodes.find((n) => addr(n) === master)!;
    const direct = await RedisClient.connect(`redis://${master}`);
    expect(await direct.send(['WAIT', 1, 2000])).to.equal(1);
    // The replica loses that key: as if replication had not carried it over. (A cluster replica
    // redirects a DEL of a key to its master; a keyless FLUSHALL it runs itself, once writable.)
    const replica = await (async () => {
      for (const n of setup.nodes) {
        if (n === masterNode || (await n.role()) !== 'replica') continue;
        const rc = await RedisClient.connect(n.url);
        const info = String(await rc.send(['INFO', 'replication']));
        await rc.close();
        if (info.includes(`master_port:${masterNode.port}`)) return n;
      }
      throw new Error('no replica of that master');
    })();
    const rc = await RedisClient.connect(replica.url);
    await rc.send(['CONFIG', 'SET', 'replica-read-only', 'no']);
    await rc.send(['FLUSHALL']);
    // Granted after that, and replicated: this one the new master has.
    const kept = await locker.acquire(keptName);
    expect(await direct.send(['WAIT', 1, 2000])).to.equal(1);
    await direct.close();
    await rc.send(['READONLY']); // reads of its master's slots, on the replica itself
    expect([await rc.send(['EXISTS', `wirelock:{${goneName}}`]), await rc.send(['EXISTS', `wirelock:{${keptName}}`])]).to.deep.equal([0, 1]);
    const start = performance.now();
    await setup.failover(replica);
    await eventually(() => gone.signal.aborted, 10_000, 'the loss signal');
    const err = gone.signal.reason as LockLostError;
    expect(err).to.be.instanceOf(LockLostError);
    expect(err.reason).to.equal('failover');
    expect(performance.now() - start, 'ms from the failover to the loss').to.be.below(10_000);
    expect(kept.signal.aborted, String(kept.signal.reason)).to.equal(false);
    expect(c.masterOf(`wirelock:{${keptName}}`)).to.equal(addr(replica));
    await rc.send(['CONFIG', 'SET', 'replica-read-only', 'yes']).catch(() => {});
    await rc.close();
    await kept.release();
    await locker.close();
  });

  it('reads the map with CLUSTER SLOTS from a node that does not know CLUSTER SHARDS (as before Redis 7), and routes by it', async () => {
    // No server here lacks SHARDS, so a proxy in front of the seed renames it on the way in
    // (SHARDS -> SHARDX, same length): the node answers "unknown subcommand", as Redis 6 does.
    const seed = setup.nodes[0]!;
    const proxy = net.createServer((inbound) => {
      const upstream = net.connect(seed.port, seed.host);
      inbound.on('data', (chunk: Buffer) => upstream.write(Buffer.from(chunk.toString('latin1').replace(/\$6\r\nSHARDS\r\n/gi, '$6\r\nSHARDX\r\n'), 'latin1')));
      upstream.pipe(inbound);
      inbound.on('error', () => upstream.destroy());
      upstream.on('error', () => inbound.destroy());
      inbound.on('close', () => upstream.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const port = (proxy.address() as net.AddressInfo).port;
    const sent: Array<{ address: string; args: string }> = [];
    const listener = (m: unknown): void => {
      const { address, args } = m as RespCommandPayload;
      if (String(args[0]).toUpperCase() === 'CLUSTER') sent.push({ address, args: args.map(String).join(' ') });
    };
    dc.subscribe('wirelock:resp:command', listener);
    try {
      const c = await RedisCluster.connect({ seeds: [`redis://127.0.0.1:${port}`], topologyRefreshMs: 60_000 });
      try {
        expect(sent.slice(0, 2)).to.deep.equal([
          { address: `127.0.0.1:${port}`, args: 'CLUSTER SHARDS' },
          { address: `127.0.0.1:${port}`, args: 'CLUSTER SLOTS' },
        ]);
        // The map from CLUSTER SLOTS names the masters of now (earlier tests failed some over), and
        // each key goes to its owner.
        const live: string[] = [];
        for (const n of setup.nodes) if ((await n.role()) === 'master') live.push(addr(n));
        expect([...c.masters].sort()).to.deep.equal(live.sort());
        for (const k of ['alpha', 'beta', 'gamma', 'delta']) {
          await c.send(['SET', `slots-${k}`, k]);
          expect(c.masterOf(`slots-${k}`)).to.equal(addr(await setup.masterOf(keySlot(`slots-${k}`))));
        }
      } finally {
        await c.close();
      }
    } finally {
      dc.unsubscribe('wirelock:resp:command', listener);
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it('the CLI: run --redis-cluster under the lock (the fence in its environment), status of a held lock, trace shows the slot map', async () => {
    const seeds = setup.urls.slice(0, 2).join(',');
    const run = await cli(['run', '--redis-cluster', seeds, '--key', 'cli-lock', '--', 'sh', '-c', 'echo "fence=$WIRELOCK_FENCE"']);
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/^fence=\d+$/m);
    const c = await connect();
    const locker = new RedisLocker(c, { ttlMs: 20_000 });
    const held = await locker.acquire('cli-status');
    const status = await cli(['status', '--redis-cluster', setup.url, '--key', 'cli-status']);
    expect(status.code, status.stderr).to.equal(0);
    expect(status.stdout).to.include(`held by token ${held.token}`).and.include(`last fence ${held.fence}`);
    await held.release();
    await locker.close();
    const trace = await cli(['trace', '--redis-cluster', setup.url, '--key', 'cli-trace']);
    expect(trace.code, trace.stderr).to.equal(0);
    expect(trace.stdout).to.include('CLUSTER SHARDS').and.match(/slot map from .* \(connect\)/);
    const both = await cli(['run', '--redis', setup.url, '--redis-cluster', setup.url, '--key', 'k', '--', 'true']);
    expect(both.code).to.equal(2);
    expect(both.stderr).to.include('exactly one of --redis, --redis-cluster or --etcd');
  });
});

describe('RedisCluster with a password', function () {
  this.timeout(90_000);
  let setup: RedisClusterServers;
  const secret = 'cluster s3cret "quoted"';
  before(async () => {
    setup = await startRedisCluster({ masters: 3, password: secret });
  });
  after(async () => {
    await setup?.stop();
  });

  it('logs in to every node with it (URL or options); a wrong or missing one fails connect() and no error shows it', async () => {
    const { host, port } = setup.nodes[0]!;
    const c = await RedisCluster.connect({ seeds: [`redis://${host}:${port}`], password: secret });
    // Keys on every master: each connection logged in.
    for (const k of ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta']) await c.send(['SET', k, '1']);
    expect(new Set(['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta'].map((k) => c.masterOf(k))).size).to.equal(3);
    await c.close();
    const viaUrl = await RedisCluster.connect(`redis://:${encodeURIComponent(secret)}@${host}:${port}`);
    expect(await viaUrl.send(['GET', 'alpha'])).to.equal('1');
    await viaUrl.close();
    const wrong = await RedisCluster.connect({ seeds: [`redis://${host}:${port}`], password: 'not-it-9d2f' }).catch((e: Error) => e);
    expect((wrong as Error).message).to.match(/WRONGPASS|invalid username-password/).and.not.include('not-it-9d2f');
    const none = await RedisCluster.connect(`redis://${host}:${port}`).catch((e: Error) => e);
    expect((none as Error).message).to.match(/NOAUTH/).and.not.include(secret);
  });
});

describe('RedisCluster over TLS (a private CA; bus, replication and MIGRATE over TLS too)', function () {
  this.timeout(90_000);
  let setup: RedisClusterServers;
  let files: TlsFiles;
  before(async () => {
    files = makeTlsFiles();
    setup = await startRedisCluster({
      masters: 3,
      replicasPerMaster: 1,
      tls: { certFile: files.serverCertFile, keyFile: files.serverKeyFile, caFile: files.caFile },
    });
  });
  after(async () => {
    await setup?.stop();
    files?.remove();
  });

  it('maps the TLS ports, follows MOVED after a migration, waits for the replica, and refuses a server its CA did not sign', async () => {
    expect(setup.url).to.match(/^rediss:\/\//);
    const c = await RedisCluster.connect({ seeds: [setup.url], tls: { ca: files.ca } });
    try {
      // The map names each master by its TLS port (the only one it has).
      expect([...c.masters].sort()).to.deep.equal(setup.nodes.slice(0, 3).map(addr).sort());
      const locker = new RedisLocker(c, { ttlMs: 10_000, minReplicas: 1 });
      const lock = await locker.acquire('tls-job');
      const slot = keySlot('wirelock:{tls-job}');
      const to = await otherMaster(setup, slot);
      await setup.moveSlot(slot, to);
      // The held lock moved with its slot (MIGRATE over TLS); the release follows MOVED to it.
      const { seen } = await redirectsDuring(() => lock.release());
      expect(seen.map((r) => r.kind)).to.include('MOVED');
      expect(c.masterOf('wirelock:{tls-job}')).to.equal(addr(to));
      // A grant waits for a replica's acknowledgement: replication runs over TLS.
      const again = await locker.acquire('tls-job');
      await again.release();
      await locker.close();
    } finally {
      await c.close();
    }
    const untrusted = await RedisCluster.connect({ seeds: [setup.url], tls: { ca: files.otherCa }, connectTimeoutMs: 2000 }).catch((e: Error) => e);
    expect(untrusted).to.be.instanceOf(Error);
    expect((untrusted as Error).message).to.match(/certificate|self[- ]signed|unable to verify/i);
  });
});
