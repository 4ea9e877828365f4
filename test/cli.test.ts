/**
 * The `wirelock` command, driven as a user would: child processes against real servers.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RedisClient } from '../src/index.js';
import { startEtcd, startRedis, startRedisNodes, type EtcdServer, type RedisServer } from '../src/testing/servers.js';
import { runProcess, type RunResult } from './support/run.js';
import { sleep, waitFor } from './support/wait.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = [process.execPath, '--import', 'tsx', path.join(root, 'src/cli/main.ts')];


const cli = (args: string[], opts: { env?: Record<string, string>; onStart?: (child: ChildProcess) => void } = {}): Promise<RunResult> =>
  runProcess(CLI[0]!, [...CLI.slice(1), ...args], { cwd: root, ...opts });

describe('wirelock CLI', function () {
  this.timeout(30_000);
  let redis: RedisServer;
  let secured: RedisServer;
  let etcd: EtcdServer;
  let admin: RedisClient;
  const PASSWORD = 'cli-s3cret-sentinel';

  before(async () => {
    [redis, secured, etcd] = await Promise.all([startRedis(), startRedis({ password: PASSWORD }), startEtcd()]);
    admin = await RedisClient.connect(redis.url);
  });
  after(async () => {
    await admin?.close();
    await Promise.all([redis?.stop(), secured?.stop(), etcd?.stop()]);
  });

  it('runs the command under the lock with WIRELOCK_KEY and WIRELOCK_FENCE, and passes its exit code through', async () => {
    const r = await cli(['run', '--redis', redis.url, '--key', 'pass', '--', 'sh', '-c', 'echo "$WIRELOCK_KEY $WIRELOCK_FENCE"; exit 7']);
    expect(r.code).to.equal(7);
    expect(r.stdout.trim()).to.match(/^pass \d+$/);
    expect(await admin.send(['EXISTS', 'wirelock:{pass}'])).to.equal(0); // released after the command
    const ok = await cli(['run', '--redis', redis.url, '--key', 'pass', '--', 'true']);
    expect(ok.code).to.equal(0);
    // A fence given to a second run is greater than the first one's.
    const [a, b] = await Promise.all([1, 2].map(() => cli(['run', '--redis', redis.url, '--key', 'fences', '--', 'sh', '-c', 'echo $WIRELOCK_FENCE'])));
    expect(new Set([a!.stdout.trim(), b!.stdout.trim()]).size).to.equal(2);
  });

  it('--wait 0 exits 75 when the lock is held elsewhere, without running the command', async () => {
    const holder = cli(['run', '--redis', redis.url, '--key', 'busy', '--', 'sleep', '3']);
    await waitFor(async () => (await admin.send(['EXISTS', 'wirelock:{busy}'])) === 1, 10_000, 'the first run to hold the lock', 25);
    const r = await cli(['run', '--redis', redis.url, '--key', 'busy', '--wait', '0', '--', 'sh', '-c', 'echo RAN']);
    expect(r.code).to.equal(75);
    expect(r.stdout).to.not.include('RAN');
    expect(r.stderr).to.include('held elsewhere');
    // A bounded wait that runs out is the same "not acquired" status.
    const waited = await cli(['run', '--redis', redis.url, '--key', 'busy', '--wait', '300ms', '--', 'true']);
    expect(waited.code).to.equal(75);
    expect((await holder).code).to.equal(0);
  });

  it('a lost lock stops the command (SIGTERM) and exits 76 with the reason', async () => {
    const running = cli(['run', '--redis', redis.url, '--key', 'lost', '--ttl', '1s', '--grace', '2s', '--', 'sh', '-c', 'trap "echo TERMINATED; exit 9" TERM; sleep 20 & wait']);
    await waitFor(async () => (await admin.send(['EXISTS', 'wirelock:{lost}'])) === 1, 10_000, 'the run to hold the lock', 25);
    await admin.send(['SET', 'wirelock:{lost}', 'someone-else', 'PX', '10000']); // taken over behind its back
    const t0 = performance.now();
    const r = await running;
    expect(r.code).to.equal(76);
    expect(r.stdout).to.include('TERMINATED');
    expect(r.stderr).to.match(/lost \(stolen\)/);
    expect(performance.now() - t0).to.be.below(5000);
    expect(await admin.send(['GET', 'wirelock:{lost}'])).to.equal('someone-else'); // never deletes another holder's lock
    await admin.send(['DEL', 'wirelock:{lost}']);
  });

  it('SIGINT reaches the command, and the lock is released', async () => {
    let child: ChildProcess | undefined;
    const running = cli(['run', '--redis', redis.url, '--key', 'sigint', '--', 'sh', '-c', 'trap "echo GOT-INT; exit 5" INT; sleep 20 & wait'], {
      onStart: (c) => (child = c),
    });
    await waitFor(async () => (await admin.send(['EXISTS', 'wirelock:{sigint}'])) === 1, 10_000, 'the run to hold the lock', 25);
    await sleep(200);
    child!.kill('SIGINT');
    const r = await running;
    expect(r.stdout).to.include('GOT-INT');
    expect(r.code).to.equal(5);
    expect(await admin.send(['EXISTS', 'wirelock:{sigint}'])).to.equal(0);
  });

  it('servers it cannot reach exit 69 with one line, and the command is not run', async () => {
    for (const backend of [['--redis', 'redis://127.0.0.1:1'], ['--etcd', 'http://127.0.0.1:1']]) {
      const r = await cli(['run', ...backend, '--key', 'x', '--', 'sh', '-c', 'echo RAN']);
      expect(r.code, backend.join(' ')).to.equal(69);
      expect(r.stdout).to.not.include('RAN');
      expect(r.stderr).to.match(/^wirelock: .*\[WL_CONNECTION\]\n$/);
    }
  });

  it('bad flags print the usage and exit 2', async () => {
    for (const args of [
      ['run', '--redis', redis.url, '--key', 'x'], // no command
      ['run', '--key', 'x', '--', 'true'], // no backend
      ['run', '--redis', redis.url, '--etcd', etcd.clientUrl, '--key', 'x', '--', 'true'],
      ['run', '--redis', redis.url, '--key', 'x', '--ttl', 'soon', '--', 'true'],
      ['run', '--redis', redis.url, '--bogus', '--', 'true'],
      ['status', '--redis', redis.url],
      ['frobnicate'],
      [],
    ]) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).to.equal(2);
      expect(r.stdout + r.stderr, args.join(' ')).to.include('usage:');
    }
    const help = await cli(['run', '--help']);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.include('Exit status');
  });

  it('never prints a password: not on success, not on a wrong one, not in a trace', async () => {
    const url = new URL(secured.url);
    const bare = `redis://${url.host}`;
    const viaEnv = await cli(['trace', '--redis', bare, '--key', 'pw'], { env: { WIRELOCK_REDIS_PASSWORD: PASSWORD } });
    expect(viaEnv.code).to.equal(0);
    expect(viaEnv.stdout).to.include('AUTH [redacted]');
    const wrongEnv = await cli(['run', '--redis', bare, '--key', 'pw', '--', 'true'], { env: { WIRELOCK_REDIS_PASSWORD: `${PASSWORD}-wrong` } });
    expect(wrongEnv.code).to.equal(69);
    expect(wrongEnv.stderr).to.include('WRONGPASS');
    // No password at all, to a server that needs one: said at connect, before any lock command.
    const none = await cli(['run', '--redis', bare, '--key', 'pw', '--', 'true']);
    expect(none.code).to.equal(69);
    expect(none.stderr).to.include('NOAUTH server requires a password');
    expect(none.stderr).to.not.include('Protocol error');
    const wrongUrl = await cli(['status', '--redis', `redis://:${PASSWORD}-x@${url.host}`, '--key', 'pw']);
    expect(wrongUrl.code).to.equal(69);
    const ok = await cli(['status', '--redis', secured.url, '--key', 'pw']);
    expect(ok.code).to.equal(0);
    for (const r of [viaEnv, wrongEnv, none, wrongUrl, ok]) expect(r.stdout + r.stderr).to.not.include(PASSWORD);
  });

  it('status shows the holder, time left, fence and the waiters in order', async () => {
    const holder = cli(['run', '--redis', redis.url, '--key', 'st', '--', 'sleep', '3']);
    await waitFor(async () => (await admin.send(['EXISTS', 'wirelock:{st}'])) === 1, 10_000, 'the holder', 25);
    const waiter = cli(['run', '--redis', redis.url, '--key', 'st', '--', 'true']);
    await waitFor(async () => (await admin.send(['ZCARD', 'wirelock:{st}:queue'])) === 1, 10_000, 'the waiter to queue', 25);
    const r = await cli(['status', '--redis', redis.url, '--key', 'st']);
    expect(r.code).to.equal(0);
    expect(r.stdout).to.match(/held by token [0-9a-f]{32}, [\d.]+s left; last fence \d+/);
    expect(r.stdout).to.match(/1 waiting, in order:\n\s+1\. [0-9a-f]{32}/);
    expect((await holder).code).to.equal(0);
    expect((await waiter).code).to.equal(0);
  });

  it('trace prints the commands and replies of one acquire and release', async () => {
    const r = await cli(['trace', '--redis', redis.url, '--key', 'tr']);
    expect(r.code).to.equal(0);
    // A new process's first run of a script goes in full: shown by its SHA1 and length.
    expect(r.stdout).to.match(/→ {2}redis c\d+ {2}EVAL <source of [0-9a-f]{40}, \d+ bytes> 4 wirelock:\{tr\}/);
    expect(r.stdout).to.match(/← {2}redis c\d+ {2}\[1,\d+\]/);
    expect(r.stdout).to.include('●  lock "tr" acquired');
    const e = await cli(['trace', '--etcd', etcd.clientUrl, '--key', 'tr']);
    expect(e.code).to.equal(0);
    expect(e.stdout).to.include('→  etcd KV.Txn');
    expect(e.stdout).to.include('●  lock "tr" released');
  });

  it('Redlock with several --redis URLs', async () => {
    const nodes = await startRedisNodes(3);
    try {
      const r = await cli(['run', '--redis', nodes.map((n) => n.url).join(','), '--key', 'rl', '--', 'sh', '-c', 'echo $WIRELOCK_FENCE']);
      expect(r.code).to.equal(0);
      expect(r.stdout.trim()).to.match(/^\d+$/); // the lock's fence
      const s = await cli(['status', '--redis', nodes.map((n) => n.url).join(','), '--key', 'rl']);
      expect(s.stdout).to.include('Redlock over 3 nodes');
      expect(s.stdout).to.include('not held by any quorum');
    } finally {
      await Promise.all(nodes.map((n) => n.stop()));
    }
  });

  it('wirelock run --etcd and etcdctl lock exclude each other', async () => {
    // etcdctl holds NAME; wirelock --wait 0 must find it held.
    const etcdctl = spawn('etcdctl', ['--endpoints', etcd.clientUrl, 'lock', 'interop', 'sleep', '3'], { stdio: 'ignore', env: { ...process.env, ETCDCTL_API: '3' } });
    const exited = new Promise((r) => etcdctl.once('exit', r));
    try {
      await waitFor(async () => {
        const s = await cli(['status', '--etcd', etcd.clientUrl, '--key', 'interop']);
        return s.stdout.includes('held by interop/');
      }, 10_000, 'etcdctl to hold the lock', 25);
      const r = await cli(['run', '--etcd', etcd.clientUrl, '--key', 'interop', '--wait', '0', '--', 'true']);
      expect(r.code).to.equal(75);
      // And the other way: while wirelock holds it, etcdctl waits until wirelock's command has ended.
      await exited;
      const stamps = path.join(os.tmpdir(), `wirelock-interop-${process.pid}`);
      rmSync(stamps, { force: true });
      const ours = cli(['run', '--etcd', etcd.clientUrl, '--key', 'interop', '--', 'sh', '-c', `sleep 1.5; echo "ours-end $(date +%s%N)" >> ${stamps}`]);
      await waitFor(async () => (await cli(['status', '--etcd', etcd.clientUrl, '--key', 'interop'])).stdout.includes('held by'), 10_000, 'wirelock to hold', 25);
      const theirs = new Promise<void>((resolve) => {
        const c = spawn('etcdctl', ['--endpoints', etcd.clientUrl, 'lock', 'interop', '--', 'sh', '-c', `echo "theirs-start $(date +%s%N)" >> ${stamps}`], {
          stdio: 'ignore',
          env: { ...process.env, ETCDCTL_API: '3' },
        });
        c.once('exit', () => resolve());
      });
      await Promise.all([ours, theirs]);
      const lines = readFileSync(stamps, 'utf8').trim().split('\n').map((l) => l.split(' '));
      rmSync(stamps, { force: true });
      expect(lines.map((l) => l[0])).to.deep.equal(['ours-end', 'theirs-start']);
      expect(BigInt(lines[1]![1]!) > BigInt(lines[0]![1]!), "etcdctl ran after our command ended").to.equal(true);
    } finally {
      etcdctl.kill('SIGKILL');
    }
  });

  for (const backend of ['redis', 'etcd'] as const) {
    it(`--permits N on ${backend}: up to N commands at once, the rest wait; status --permits shows holders and waiters`, async () => {
      const url = backend === 'redis' ? ['--redis', redis.url] : ['--etcd', etcd.clientUrl];
      const key = `permits-${backend}`;
      const stamps = path.join(os.tmpdir(), `wirelock-permits-${backend}-${process.pid}`);
      rmSync(stamps, { force: true });
      // Long enough for the checks below, each a CLI start of about a second, to see them hold.
      const job = `echo "start $(date +%s%N) $WIRELOCK_FENCE" >> ${stamps}; sleep 4; echo "end $(date +%s%N)" >> ${stamps}`;
      const runs = [1, 2, 3].map(() => cli(['run', ...url, '--key', key, '--permits', '2', '--ttl', '5s', '--', 'sh', '-c', job]));
      // While two hold and one waits: status shows 2 of 2, one waiter; --wait 0 finds every permit taken.
      await waitFor(async () => {
        const s = await cli(['status', ...url, '--key', key, '--permits', '2']);
        return /2 of 2 permits held/.test(s.stdout) && /1 waiting, in order:/.test(s.stdout);
      }, 10_000, 'two holders and a waiter', 50);
      const full = await cli(['run', ...url, '--key', key, '--permits', '2', '--wait', '0', '--', 'true']);
      expect(full.code).to.equal(75);
      expect(full.stderr).to.include(`semaphore "${key}" (2 permits) is held elsewhere (every permit)`);
      for (const r of await Promise.all(runs)) expect(r.code, r.stderr).to.equal(0);
      // From the stamps: never more than 2 inside at once, and 2 at once at some point.
      const events = readFileSync(stamps, 'utf8').trim().split('\n').map((l) => l.split(' '));
      const timeline = events.map(([what, ns]) => ({ at: BigInt(ns!), delta: what === 'start' ? 1 : -1 })).sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.delta));
      let inside = 0;
      let most = 0;
      for (const e of timeline) most = Math.max(most, (inside += e.delta));
      expect(most).to.equal(2);
      const fences = events.filter(([w]) => w === 'start').map(([, , f]) => BigInt(f!));
      expect(new Set(fences).size).to.equal(3);
      rmSync(stamps, { force: true });
    });
  }

  for (const backend of ['redis', 'etcd'] as const) {
    it(`--shared and --exclusive on ${backend}: readers together, the writer alone; status --rw shows who holds and waits`, async () => {
      const url = backend === 'redis' ? ['--redis', redis.url] : ['--etcd', etcd.clientUrl];
      const key = `rw-${backend}`;
      const stamps = path.join(os.tmpdir(), `wirelock-rw-${backend}-${process.pid}`);
      rmSync(stamps, { force: true });
      // Readers hold long enough for the checks below to see them (each CLI start takes about a second).
      const job = (who: string): string => `echo "start ${who} $(date +%s%N)" >> ${stamps}; sleep ${who === 'w' ? 0.5 : 5}; echo "end ${who} $(date +%s%N)" >> ${stamps}`;
      const run = (side: string, who: string) => cli(['run', ...url, '--key', key, side, '--ttl', '5s', '--', 'sh', '-c', job(who)]);
      const readers = [run('--shared', 'r1'), run('--shared', 'r2')];
      await waitFor(async () => /held for reading by 2/.test((await cli(['status', ...url, '--key', key, '--rw'])).stdout), 10_000, 'two readers', 50);
      const writer = run('--exclusive', 'w');
      await waitFor(async () => /1 waiting, in order:\n\s+1\. write/.test((await cli(['status', ...url, '--key', key, '--rw'])).stdout), 10_000, 'the writer to wait', 50);
      // A waiting writer stops new readers.
      const late = await cli(['run', ...url, '--key', key, '--shared', '--wait', '0', '--', 'true']);
      expect(late.code).to.equal(75);
      for (const r of await Promise.all([...readers, writer])) expect(r.code, r.stderr).to.equal(0);
      const at = new Map(readFileSync(stamps, 'utf8').trim().split('\n').map((l) => { const [what, who, ns] = l.split(' '); return [`${what} ${who}`, BigInt(ns!)]; }));
      // The readers overlapped; the writer started after both had ended.
      expect(at.get('start r2')! < at.get('end r1')! && at.get('start r1')! < at.get('end r2')!, 'readers overlap').to.equal(true);
      expect(at.get('start w')! > at.get('end r1')! && at.get('start w')! > at.get('end r2')!, 'the writer is alone').to.equal(true);
      rmSync(stamps, { force: true });
    });
  }

  it('--permits refuses Redlock and a bad count', async () => {
    const r = await cli(['run', '--redis', `${redis.url},${redis.url}`, '--key', 'x', '--permits', '2', '--', 'true']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.include('no semaphore over Redlock');
    const bad = await cli(['run', '--redis', redis.url, '--key', 'x', '--permits', '0', '--', 'true']);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.include('not a whole number >= 1');
  });
});
