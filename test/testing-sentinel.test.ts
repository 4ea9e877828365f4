/**
 * wirelock/testing's startRedisSentinel itself, against real redis-server and redis-sentinel processes:
 * the master the sentinels name is the first node, the replica replicates, failover() moves the master
 * (and back again) and waits until the new one answers ROLE master, a failover right after another
 * waits for the old master to resync (writes in between survive), a sentinel with a stale view or one
 * that is paused or killed does not break failover(), passwords that need quoting work and no error
 * shows them, a sentinel port taken before launch is retried, the sentinels start in parallel,
 * startTimeoutMs bounds the data nodes too, and stop() leaves no process behind.
 *
 * The start tests put a wrapper `redis-sentinel` first on PATH: a shell script that execs the real one
 * (after logging when it ran, or after taking the port its config names), since a port taken between
 * freePort() and the launch is a race no real server can be asked to lose.
 */
import { expect } from 'chai';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { RedisClient } from '../src/index.js';
import { findBinary } from '../src/testing/process.js';
import { startRedisSentinel, type RedisSentinel } from '../src/testing/servers.js';

/** One command on a short-lived connection to a data node or a sentinel. */
async function send(at: { host: string; port: number }, args: Array<string | number>, password?: string): Promise<unknown> {
  const c = await RedisClient.connect({ host: at.host, port: at.port, password, reconnect: () => false });
  try {
    return await c.send(args);
  } finally {
    await c.close();
  }
}

/** ROLE's first element on a data node. */
const roleOf = async (at: { host: string; port: number }, password?: string): Promise<string> =>
  String(((await send(at, ['ROLE'], password)) as unknown[])[0]);

/** One command on a bare socket (no AUTH, no PING first): the first line of the reply. */
function rawCommand(port: number, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let out = '';
    socket.setTimeout(3000, () => {
      socket.destroy();
      reject(new Error(`no reply from 127.0.0.1:${port}`));
    });
    socket.once('connect', () =>
      socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`),
    );
    socket.on('data', (chunk) => {
      out += chunk.toString();
      const eol = out.indexOf('\r\n');
      if (eol !== -1) {
        socket.destroy();
        resolve(out.slice(0, eol));
      }
    });
    socket.once('error', reject);
  });
}

/** Whether a process with this ID still exists (signal 0 only checks). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Every process ID of a setup: its data nodes and its sentinels. */
const pidsOf = (setup: RedisSentinel): number[] => [...setup.nodes.map((n) => n.pid), ...setup.sentinels.map((s) => s.pid)];

/** The rejection of `p` (or a failure if it resolves). */
const rejectionOf = (p: Promise<unknown>): Promise<Error> =>
  p.then(
    () => expect.fail('resolved, expected a rejection'),
    (e: unknown) => e as Error,
  );

/**
 * Runs `fn` with a `redis-sentinel` shell script first on PATH; `body` is the script between its
 * shebang and the final `exec <real redis-sentinel> "$@"` ($0.* are its own files). A process ID the
 * script left in $0.holder is killed afterwards.
 */
async function withSentinelWrapper<T>(body: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const real = findBinary('redis-sentinel', 'redis-sentinel');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wirelock-wrapper-'));
  const script = path.join(dir, 'redis-sentinel');
  writeFileSync(script, `#!/bin/sh\n${body}\nexec '${real}' "$@"\n`);
  chmodSync(script, 0o755);
  const pathBefore = process.env.PATH;
  process.env.PATH = `${dir}${path.delimiter}${pathBefore ?? ''}`;
  try {
    return await fn(dir);
  } finally {
    process.env.PATH = pathBefore;
    try {
      process.kill(Number(readFileSync(`${script}.holder`, 'utf8')), 'SIGKILL');
    } catch {
      // none left, or gone already
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('wirelock/testing: startRedisSentinel', function () {
  this.timeout(60_000);
  let setup: RedisSentinel;

  before(async () => {
    const t0 = performance.now();
    setup = await startRedisSentinel({ replicas: 1, sentinels: 3 });
    console.log(`      (started in ${Math.round(performance.now() - t0)} ms)`);
  });
  after(async () => {
    await setup?.stop();
  });

  it('names the first node as master, and the second replicates it', async () => {
    expect(setup.masterName).to.equal('mymaster');
    expect(setup.nodes).to.have.length(2);
    expect(setup.sentinels).to.have.length(3);
    const master = await setup.master();
    expect(master).to.deep.equal({ host: '127.0.0.1', port: setup.nodes[0]!.port });
    expect(await roleOf(setup.nodes[0]!)).to.equal('master');
    expect(await roleOf(setup.nodes[1]!)).to.equal('slave');
    expect(setup.url).to.equal(
      `redis+sentinel://${setup.sentinels.map((s) => `127.0.0.1:${s.port}`).join(',')}/mymaster`,
    );
  });

  it('failover() promotes the replica, and answers ROLE master', async () => {
    const t0 = performance.now();
    const first = await setup.failover();
    const ms = performance.now() - t0;
    expect(first).to.deep.equal({ host: '127.0.0.1', port: setup.nodes[1]!.port });
    expect(await roleOf(first)).to.equal('master');
    expect(await setup.master()).to.deep.equal(first);
    expect(ms).to.be.below(10_000);
    console.log(`      (failover ${Math.round(ms)} ms)`);
  });

  it('a second failover right after the first waits for the old master to resync: a write in between survives', async () => {
    const first = await setup.master();
    expect(await send(first, ['SET', 'between-failovers', 'kept'])).to.equal('OK');
    const t0 = performance.now();
    const second = await setup.failover();
    const ms = performance.now() - t0;
    expect(second).to.deep.equal({ host: '127.0.0.1', port: setup.nodes[0]!.port });
    expect(await roleOf(second)).to.equal('master');
    // Promoted before it had resynced, the old master would not have the key (and its replica would drop it too).
    expect(await send(second, ['GET', 'between-failovers'])).to.equal('kept');
    expect(ms, 'settling (the old master turned into a replica, ~10 s) and the failover').to.be.below(25_000);
    console.log(`      (second failover ${Math.round(ms)} ms, settling included)`);
  });

  it('a sentinel that still names the previous master (and repeats its +switch-master) does not resolve a new failover', async () => {
    const before = await setup.master();
    const previous = setup.nodes.find((n) => n.port !== before.port)!;
    // sentinels[0] forgets, and monitors the previous master again: it names it until the others' hellos
    // (epoch of the last failover) reach it, and then announces "+switch-master mymaster <previous> <before>".
    const stale = setup.sentinels[0]!;
    await send(stale, ['SENTINEL', 'REMOVE', 'mymaster']);
    await send(stale, ['SENTINEL', 'MONITOR', 'mymaster', previous.host, previous.port, 2]);
    await send(stale, ['SENTINEL', 'SET', 'mymaster', 'down-after-milliseconds', 1000, 'failover-timeout', 10_000, 'parallel-syncs', 1]);
    const moved = await setup.failover();
    expect(moved, 'a node other than the master before').to.deep.equal({ host: '127.0.0.1', port: previous.port });
    expect(await roleOf(moved)).to.equal('master');
    for (const s of setup.sentinels) {
      const named = (await send(s, ['SENTINEL', 'get-master-addr-by-name', 'mymaster'])) as unknown[];
      expect(named.map(String), `sentinel ${s.port}`).to.deep.equal(['127.0.0.1', String(moved.port)]);
    }
  });

  it('stop() leaves no process behind, and is idempotent', async () => {
    const pids = pidsOf(setup);
    expect(pids.every(alive), 'all running before stop()').to.equal(true);
    await setup.stop();
    await setup.stop();
    expect(pids.filter(alive), 'still running after stop()').to.deep.equal([]);
  });
});

describe('wirelock/testing: startRedisSentinel with passwords that need quoting', function () {
  this.timeout(60_000);
  // A space, both quotes and a backslash: each breaks an unquoted (or naively quoted) config line.
  const dataPassword = `d@ta pw "7Q' \\x41`;
  const sentinelPassword = `sentinel pw '3K" \\`;
  let setup: RedisSentinel;

  before(async () => {
    setup = await startRedisSentinel({ replicas: 1, sentinels: 3, password: dataPassword, sentinelPassword });
  });
  after(async () => {
    await setup?.stop();
  });

  it('puts the data password in the URL, percent-encoded, and never the sentinels\' one', () => {
    expect(setup.url.startsWith(`redis+sentinel://:${encodeURIComponent(dataPassword)}@127.0.0.1:`)).to.equal(true);
    expect(setup.url).to.not.include(encodeURIComponent(sentinelPassword));
  });

  it('the sentinels refuse a client without AUTH (NOAUTH), and answer one with their password', async () => {
    const sentinel = setup.sentinels[0]!;
    expect(await rawCommand(sentinel.port, ['SENTINEL', 'get-master-addr-by-name', 'mymaster'])).to.match(/^-NOAUTH/);
    const reply = (await send(sentinel, ['SENTINEL', 'get-master-addr-by-name', 'mymaster'], sentinelPassword)) as unknown[];
    expect(reply.map(String)).to.deep.equal(['127.0.0.1', String(setup.nodes[0]!.port)]);
    expect(await roleOf(setup.nodes[1]!, dataPassword)).to.equal('slave');
  });

  it('fails over with both passwords in place (auth-pass as written), and stop() leaves no process behind', async () => {
    const moved = await setup.failover();
    expect(moved.port).to.equal(setup.nodes[1]!.port);
    expect(await roleOf(moved, dataPassword)).to.equal('master');
    const pids = pidsOf(setup);
    await setup.stop();
    expect(pids.filter(alive), 'still running after stop()').to.deep.equal([]);
  });
});

describe('wirelock/testing: startRedisSentinel errors never show a password', function () {
  this.timeout(20_000);

  it('a password a server cannot take (a NUL byte) rejects, with neither password in the message or stack', async () => {
    const err = await rejectionOf(startRedisSentinel({ replicas: 1, sentinels: 1, password: 'nul\0-data-Zq9', sentinelPassword: 'sentinel-Xk2' }));
    expect(`${err.message}\n${err.stack}`).to.not.match(/data-Zq9|sentinel-Xk2/);
    expect(err.message).to.match(/null bytes/);
  });
});

describe('wirelock/testing: failover() with the first sentinel down', function () {
  this.timeout(60_000);
  let paused: RedisSentinel;
  let killed: RedisSentinel;

  before(async () => {
    [paused, killed] = await Promise.all([startRedisSentinel({ replicas: 1, sentinels: 3 }), startRedisSentinel({ replicas: 1, sentinels: 3 })]);
  });
  after(async () => {
    paused?.sentinels[0]!.resume();
    await Promise.all([paused?.stop(), killed?.stop()]);
  });

  it('paused (accepts, answers nothing): the next sentinel fails over', async () => {
    paused.sentinels[0]!.pause();
    const t0 = performance.now();
    const moved = await paused.failover();
    expect(moved.port).to.equal(paused.nodes[1]!.port);
    expect(await roleOf(moved)).to.equal('master');
    expect(performance.now() - t0).to.be.below(10_000);
    paused.sentinels[0]!.resume();
  });

  it('killed: the next sentinel fails over, and master() asks the live ones', async () => {
    await killed.sentinels[0]!.kill();
    const moved = await killed.failover();
    expect(moved.port).to.equal(killed.nodes[1]!.port);
    expect(await roleOf(moved)).to.equal('master');
    expect(await killed.master()).to.deep.equal(moved);
  });
});

describe('wirelock/testing: starting the sentinels', function () {
  this.timeout(60_000);

  it('a sentinel port taken before its launch is retried with another', () =>
    // The first run holds its config's port (a node process listening on it) while the real sentinel starts.
    withSentinelWrapper(
      `if mkdir "$0.held" 2>/dev/null; then
  port=$(sed -n 's/^port \\([0-9]*\\)$/\\1/p' "$1")
  '${process.execPath}' -e 'require("net").createServer().listen(+process.argv[1], "127.0.0.1", () => process.stdout.write("held\\n")); setTimeout(() => {}, 10000)' "$port" > "$0.log" 2>&1 &
  echo $! > "$0.holder"
  while ! grep -q held "$0.log" 2>/dev/null; do sleep 0.01; done
  echo "$port" > "$0.port"
fi`,
      async (dir) => {
        const setup = await startRedisSentinel({ replicas: 1, sentinels: 1 });
        try {
          const held = Number(readFileSync(path.join(dir, 'redis-sentinel.port'), 'utf8'));
          expect(held).to.be.above(0);
          expect(setup.sentinels[0]!.port).to.not.equal(held);
          expect(await setup.master()).to.deep.equal({ host: '127.0.0.1', port: setup.nodes[0]!.port });
        } finally {
          await setup.stop();
        }
      },
    ));

  it('the sentinels start in parallel', () =>
    // Each run logs when it began and takes 0.5 s before the real sentinel: one after another, 3 runs span over 1 s.
    withSentinelWrapper('date +%s%N >> "$0.log"\nsleep 0.5', async (dir) => {
      const setup = await startRedisSentinel({ replicas: 1, sentinels: 3 });
      try {
        const began = readFileSync(path.join(dir, 'redis-sentinel.log'), 'utf8').trim().split('\n').map((ns) => Number(BigInt(ns) / 1_000_000n));
        expect(began).to.have.length(3);
        expect(Math.max(...began) - Math.min(...began), 'ms between the first and the last launch').to.be.below(300);
      } finally {
        await setup.stop();
      }
    }));

  it('startTimeoutMs bounds the data nodes\' start too', async () => {
    const err = await rejectionOf(startRedisSentinel({ replicas: 1, sentinels: 1, startTimeoutMs: 1 }));
    expect(err.message).to.match(/^redis-server not ready after 1 ms/);
  });
});
