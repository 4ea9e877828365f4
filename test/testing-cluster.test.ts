/**
 * wirelock/testing's startRedisCluster itself, against real redis-server processes joined by redis-cli:
 * the cluster covers all 16384 slots, replicas follow their masters, moveSlot() migrates a slot live
 * (the old owner answers -MOVED after, -ASK for a moved key while half done, -TRYAGAIN for a key set
 * split across both), failover() swaps master and replica (TAKEOVER too, with the master paused),
 * settled() leaves paused and killed nodes out, the password is enforced and never shown in an error,
 * a missing redis-cli fails naming its package, and stop() leaves no process behind.
 */
import { expect } from 'chai';
import { chmodSync, existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { RedisClient, RespError } from '../src/index.js';
import { keySlot } from '../src/resp/slots.js';
import { findBinary } from '../src/testing/process.js';
import { startRedisCluster, type RedisClusterNode, type RedisClusterServers } from '../src/testing/servers.js';

/** One command on a fresh connection to `node` (with the cluster's password, if any). */
async function send(node: RedisClusterNode, args: Array<string | number>, password?: string): Promise<unknown> {
  const c = await RedisClient.connect({ host: node.host, port: node.port, password, reconnect: () => false });
  try {
    return await c.send(args);
  } finally {
    await c.close();
  }
}

/** The error reply a command gets (it must get one). */
async function errorOf(node: RedisClusterNode, args: Array<string | number>, password?: string): Promise<string> {
  const c = await RedisClient.connect({ host: node.host, port: node.port, password, reconnect: () => false });
  try {
    await c.send(args);
  } catch (err) {
    expect(err).to.be.instanceOf(RespError);
    return (err as RespError).message.replace(/ \(in reply to \w+\)$/, '');
  } finally {
    await c.close();
  }
  throw new Error(`${args[0]} got no error reply`);
}

/** The first line of the reply to a command sent on a bare socket (no AUTH). */
function rawCommand(port: number, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let out = '';
    socket.setTimeout(3000, () => socket.destroy(new Error(`no reply from 127.0.0.1:${port}`)));
    socket.once('connect', () => socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`));
    socket.on('data', (chunk) => {
      out += chunk.toString();
      if (out.includes('\r\n')) {
        socket.destroy();
        resolve(out.slice(0, out.indexOf('\r\n')));
      }
    });
    socket.once('error', reject);
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A key whose slot is served by `master`, and that slot. */
async function keyOn(cluster: RedisClusterServers, master: RedisClusterNode, prefix: string): Promise<{ key: string; slot: number }> {
  for (let i = 0; ; i++) {
    const key = `${prefix}:${i}`;
    if ((await cluster.masterOf(keySlot(key))) === master) return { key, slot: keySlot(key) };
  }
}

describe('wirelock/testing: startRedisCluster, 3 masters', function () {
  this.timeout(60_000);
  let cluster: RedisClusterServers;

  before(async () => {
    const t0 = performance.now();
    cluster = await startRedisCluster();
    console.log(`      (started in ${Math.round(performance.now() - t0)} ms)`);
  });
  after(async () => {
    await cluster?.stop();
  });

  it('has 3 masters, each cluster_state:ok, covering all 16384 slots between them', async () => {
    expect(cluster.nodes).to.have.length(3);
    expect(cluster.urls).to.deep.equal(cluster.nodes.map((n) => `redis://127.0.0.1:${n.port}`));
    expect(cluster.url).to.equal(cluster.urls[0]);
    for (const node of cluster.nodes) {
      expect(node.busPort).to.equal(node.port + 10_000);
      expect(await node.role()).to.equal('master');
      expect(node.id).to.equal(await send(node, ['CLUSTER', 'MYID']));
      expect(String(await send(node, ['CLUSTER', 'INFO']))).to.match(/cluster_state:ok/).and.match(/cluster_slots_ok:16384/);
    }
    const slots = (await send(cluster.nodes[1]!, ['CLUSTER', 'SLOTS'])) as Array<[number, number, [string, number, string]]>;
    expect(slots.reduce((n, [start, end]) => n + end - start + 1, 0)).to.equal(16384);
    // nodes[i] got the i-th share of the slots.
    const owners = slots.sort((a, b) => a[0] - b[0]).map((r) => r[2][2]);
    expect(owners).to.deep.equal(cluster.nodes.map((n) => n.id));
  });

  it('fails, naming the Debian package, when redis-cli is not on PATH', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'wirelock-path-'));
    symlinkSync(findBinary('redis-server', 'redis-server'), path.join(dir, 'redis-server'));
    const pathBefore = process.env.PATH;
    process.env.PATH = dir;
    try {
      const err = await startRedisCluster().then(() => undefined, (e: unknown) => e);
      expect((err as Error).message).to.match(/redis-cli not found on PATH.*redis-tools/);
    } finally {
      process.env.PATH = pathBefore;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('starts a node again on other ports when its port was taken between picking and binding', async () => {
    // A redis-server on PATH that fails each node's first start as a port taken meanwhile would.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'wirelock-wrapper-'));
    const script = path.join(dir, 'redis-server');
    writeFileSync(script, [
      '#!/bin/sh',
      'seen="$(dirname "$1")/.tried"',
      'if [ ! -e "$seen" ]; then touch "$seen"; echo "# Could not create server TCP listening socket 127.0.0.1:1: bind: Address already in use"; exit 1; fi',
      `exec '${findBinary('redis-server', 'redis-server')}' "$@"`,
    ].join('\n'));
    chmodSync(script, 0o755);
    const pathBefore = process.env.PATH;
    process.env.PATH = `${dir}${path.delimiter}${pathBefore ?? ''}`;
    let retried: RedisClusterServers | undefined;
    try {
      retried = await startRedisCluster();
      for (const n of retried.nodes) expect(existsSync(path.join(n.dir, '.tried')), 'a first start that failed').to.equal(true);
      await retried.settled(1000);
    } finally {
      process.env.PATH = pathBefore;
      await retried?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses fewer than 3 masters with a RangeError, before starting anything', async () => {
    const err = await startRedisCluster({ masters: 2 }).then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(RangeError);
    expect((err as Error).message).to.match(/masters must be an integer >= 3/);
  });

  it('moveSlot(): a key survives the move, the target serves it and the old owner answers -MOVED', async () => {
    const [a, b] = cluster.nodes as [RedisClusterNode, RedisClusterNode];
    const { key, slot } = await keyOn(cluster, a, 'moved');
    expect(await send(a, ['CLUSTER', 'KEYSLOT', key])).to.equal(slot);
    expect(await send(a, ['SET', key, 'v1'])).to.equal('OK');
    const t0 = performance.now();
    const move = await cluster.moveSlot(slot, b);
    console.log(`      (moveSlot of 1 key, agreement included: ${Math.round(performance.now() - t0)} ms)`);
    expect(move).to.deep.equal({ from: a, to: b, keys: 1 });
    expect(await cluster.masterOf(slot)).to.equal(b);
    expect(await send(b, ['GET', key])).to.equal('v1');
    expect(await errorOf(a, ['GET', key])).to.equal(`MOVED ${slot} 127.0.0.1:${b.port}`);
    await cluster.moveSlot(slot, 0); // back, by index
    expect(await send(a, ['GET', key])).to.equal('v1');
    const again = await cluster.moveSlot(slot, 0).then(() => undefined, (e: unknown) => e);
    expect((again as Error).message).to.match(/already served by/);
    expect(await cluster.moveSlot(16384, 1).then(() => undefined, (e: unknown) => e)).to.be.instanceOf(RangeError);
    expect(await cluster.moveSlot(0, 7).then(() => undefined, (e: unknown) => e)).to.be.instanceOf(RangeError);
  });

  it('moveSlot() paused between batches: the source answers -ASK for a moved key, -TRYAGAIN across both, the target only after ASKING', async () => {
    const [a, , c] = cluster.nodes as [RedisClusterNode, RedisClusterNode, RedisClusterNode];
    const { key: tag } = await keyOn(cluster, a, 'half');
    const keys = ['x', 'y', 'z'].map((k) => `{${tag}}${k}`);
    const slot = keySlot(keys[0]!);
    for (const k of keys) await send(a, ['SET', k, `value of ${k}`]);
    const moving = cluster.moveSlot(slot, c, { keysPerBatch: 1, pauseBetweenBatchesMs: 1500 });
    // Poll until one key is gone from the source: the other two are still there for 1.5 s.
    let moved: string | undefined;
    let ask = '';
    for (const deadline = performance.now() + 5000; !moved && performance.now() < deadline;) {
      for (const k of keys) {
        ask = await errorOf(a, ['GET', k]).catch(() => '');
        if (ask) {
          moved = k;
          break;
        }
      }
    }
    expect(moved, 'a key answered with an error').to.be.a('string');
    expect(ask).to.equal(`ASK ${slot} 127.0.0.1:${c.port}`);
    const stayed = keys.find((k) => k !== moved)!;
    expect(await send(a, ['GET', stayed])).to.equal(`value of ${stayed}`);
    expect(await errorOf(a, ['MGET', moved!, stayed])).to.match(/^TRYAGAIN /);
    // The target serves the moved key to a client that said ASKING (on the same connection) and redirects the rest.
    expect(await errorOf(c, ['GET', moved!])).to.equal(`MOVED ${slot} 127.0.0.1:${a.port}`);
    const viaAsk = await RedisClient.connect({ host: c.host, port: c.port, reconnect: () => false });
    const [asking, value] = await Promise.all([viaAsk.send(['ASKING']), viaAsk.send(['GET', moved!])]);
    await viaAsk.close();
    expect([asking, value]).to.deep.equal(['OK', `value of ${moved}`]);

    const move = await moving;
    expect(move.keys).to.equal(3);
    for (const k of keys) expect(await send(c, ['GET', k])).to.equal(`value of ${k}`);
    expect(await errorOf(a, ['GET', keys[0]!])).to.equal(`MOVED ${slot} 127.0.0.1:${c.port}`);
  });

  it('stop() leaves no process behind, and is idempotent', async () => {
    const pids = cluster.nodes.map((n) => n.pid);
    expect(pids.every(alive)).to.equal(true);
    await cluster.stop();
    await cluster.stop();
    expect(pids.filter(alive)).to.deep.equal([]);
  });
});

describe('wirelock/testing: startRedisCluster, 3 masters with a replica each and a password', function () {
  this.timeout(60_000);
  // A space, both quotes, a backslash, a percent sign and a non-ASCII letter: each breaks naive quoting.
  const password = `cl@ster pw "7Q' \\x41 %2F ü`;
  let cluster: RedisClusterServers;

  before(async () => {
    const t0 = performance.now();
    cluster = await startRedisCluster({ replicasPerMaster: 1, password });
    console.log(`      (started in ${Math.round(performance.now() - t0)} ms)`);
  });
  after(async () => {
    await cluster?.stop();
  });

  it('gives each master one replica, which replicates it', async () => {
    expect(cluster.nodes).to.have.length(6);
    const masters = cluster.nodes.slice(0, 3);
    const replicas = cluster.nodes.slice(3);
    for (const m of masters) expect(await m.role()).to.equal('master');
    const followed: number[] = [];
    for (const r of replicas) {
      expect(await r.role()).to.equal('replica');
      const role = (await send(r, ['ROLE'], password)) as [string, string, number, string];
      expect(role[3]).to.equal('connected');
      followed.push(role[2]);
    }
    // replicas of nodes[0] first, then nodes[1]'s, then nodes[2]'s
    expect(followed).to.deep.equal(masters.map((m) => m.port));
    // Every node online in CLUSTER SHARDS, so CLUSTER SLOTS lists the replicas too.
    const slots = (await send(masters[0]!, ['CLUSTER', 'SLOTS'], password)) as unknown[][];
    expect(slots.map((r) => r.length)).to.deep.equal([4, 4, 4]);
  });

  it('enforces the password, and puts it in the URLs percent-encoded', async () => {
    expect(await rawCommand(cluster.nodes[0]!.port, ['GET', 'k'])).to.match(/^-NOAUTH/);
    expect(cluster.url).to.equal(`redis://:${encodeURIComponent(password)}@127.0.0.1:${cluster.nodes[0]!.port}`);
    const c = await RedisClient.connect(cluster.urls[4]!);
    try {
      expect(await c.send(['PING'])).to.equal('PONG');
    } finally {
      await c.close();
    }
  });

  it('failover() swaps master and replica, data kept; a second failover() swaps them back', async () => {
    const [m0] = cluster.nodes as [RedisClusterNode];
    const r0 = cluster.nodes[3]!;
    const { key } = await keyOn(cluster, m0, 'failover');
    await send(m0, ['SET', key, 'kept'], password);
    let t0 = performance.now();
    const first = await cluster.failover();
    console.log(`      (failover until all 6 nodes agree: ${Math.round(performance.now() - t0)} ms)`);
    expect(first).to.deep.equal({ from: m0, to: r0 });
    expect(await r0.role()).to.equal('master');
    expect(await m0.role()).to.equal('replica');
    expect(await cluster.masterOf(0)).to.equal(r0);
    expect(await send(r0, ['GET', key], password)).to.equal('kept');
    expect(await errorOf(m0, ['GET', key], password)).to.equal(`MOVED ${keySlot(key)} 127.0.0.1:${r0.port}`);
    t0 = performance.now();
    expect(await cluster.failover()).to.deep.equal({ from: r0, to: m0 });
    console.log(`      (failover back: ${Math.round(performance.now() - t0)} ms)`);
    expect(await m0.role()).to.equal('master');
    expect(await r0.role()).to.equal('replica');
  });

  it("failover(replica, { mode: 'TAKEOVER' }) while its master is paused; resumed, the old master turns replica", async () => {
    const [, m1] = cluster.nodes as [RedisClusterNode, RedisClusterNode];
    const r1 = cluster.nodes[4]!;
    m1.pause();
    try {
      const t0 = performance.now();
      expect(await cluster.failover(r1, { mode: 'TAKEOVER' })).to.deep.equal({ from: m1, to: r1 });
      console.log(`      (TAKEOVER with the master paused: ${Math.round(performance.now() - t0)} ms)`);
    } finally {
      m1.resume();
    }
    const t0 = performance.now();
    await cluster.settled(15_000);
    console.log(`      (old master resumed, replica again and all agreeing: ${Math.round(performance.now() - t0)} ms)`);
    expect(await m1.role()).to.equal('replica');
    expect(await r1.role()).to.equal('master');
  });

  it('pause() and kill() leave a node out: settled() resolves once the others have marked a killed replica failed', async () => {
    const replica = cluster.nodes[5]!;
    replica.pause();
    await cluster.settled(5000);
    replica.resume();
    await cluster.settled(5000);
    const t0 = performance.now();
    await replica.kill();
    await cluster.settled(15_000);
    console.log(`      (a killed replica marked failed by all in ${Math.round(performance.now() - t0)} ms, node timeout 2000 ms)`);
    const nodes = String(await send(cluster.nodes[0]!, ['CLUSTER', 'NODES'], password));
    expect(nodes.split('\n').find((l) => l.startsWith(replica.id))).to.match(/ slave,fail /);
  });

  it('never shows the password in an error', async () => {
    const errors: unknown[] = [];
    // redis-server echoes a bad config line: here one that holds the password.
    errors.push(await startRedisCluster({ password, args: ['--masterauth', password, 'extra'] }).then(() => undefined, (e: unknown) => e));
    errors.push(await cluster.failover(0).then(() => undefined, (e: unknown) => e)); // a master
    errors.push(await cluster.moveSlot(0, 3).then(() => undefined, (e: unknown) => e)); // to a replica
    for (const err of errors) {
      expect(err).to.be.instanceOf(Error);
      const shown = `${(err as Error).message}\n${(err as Error).stack}`;
      for (const form of [password, encodeURIComponent(password), 'cl@ster pw']) expect(shown).not.to.include(form);
    }
    expect((errors[0] as Error).message).to.include('***');
  });

  it('stop() leaves no process behind', async () => {
    const pids = cluster.nodes.map((n) => n.pid);
    expect(pids.filter(alive), 'all but the replica killed above').to.have.length(5);
    await cluster.stop();
    expect(pids.filter(alive)).to.deep.equal([]);
  });
});
