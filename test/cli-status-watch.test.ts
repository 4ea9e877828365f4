/**
 * `wirelock status --watch` as a person sees it: the CLI runs in a real terminal (a detached tmux
 * session of its own, on a private tmux socket), the screen is read with `tmux capture-pane`, and the
 * lock is taken, queued for and released by library clients against real servers meanwhile. A missing
 * tmux fails these tests; it is installed with the servers (scripts/setup.mjs --tests, .ci/run).
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EtcdClient, EtcdLocker, RedisClient, RedisLocker, type Lock } from '../src/index.js';
import { startEtcd, startRedis, type EtcdServer, type RedisServer } from '../src/testing/servers.js';
import { runProcess } from './support/run.js';
import { waitFor } from './support/wait.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = [process.execPath, '--import', 'tsx', path.join(root, 'src/cli/main.ts')];
const SOCKET = `wirelock-test-${process.pid}`;

const tmux = (...args: string[]): string => execFileSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** A terminal of `width`×`height` running `wirelock status …`; after it exits, it prints `exit N` and stays. */
class Terminal {
  readonly name: string;
  constructor(name: string, args: string[], width = 140, height = 30) {
    this.name = name;
    const command = `${[...CLI, ...args].map(quote).join(' ')}; echo "exit $?"; sleep 600`;
    tmux('new-session', '-d', '-s', name, '-x', String(width), '-y', String(height), '-c', root, command);
  }
  /** What is on the screen now, line by line (trailing blanks dropped). */
  screen(): string {
    return tmux('capture-pane', '-p', '-t', this.name).replace(/\s+$/, '');
  }
  /** The screen plus everything that scrolled off it. */
  everything(): string {
    return tmux('capture-pane', '-p', '-S', '-', '-t', this.name);
  }
  async waitForScreen(pattern: RegExp, what: string, timeoutMs = 8000): Promise<string> {
    let last = '';
    try {
      await waitFor(() => pattern.test((last = this.screen())), timeoutMs, what, 50);
    } catch (err) {
      throw new Error(`${(err as Error).message}; the screen was:\n${last}`);
    }
    return last;
  }
  interrupt(): void {
    tmux('send-keys', '-t', this.name, 'C-c');
  }
  kill(): void {
    try {
      tmux('kill-session', '-t', this.name);
    } catch {
      // already gone
    }
  }
}

describe('wirelock status --watch (in a real terminal)', function () {
  this.timeout(60_000);
  let redis: RedisServer;
  let etcd: EtcdServer;
  const terminals: Terminal[] = [];
  const open = (name: string, args: string[]): Terminal => {
    const t = new Terminal(name, args);
    terminals.push(t);
    return t;
  };

  before(async () => {
    // One idle session for the whole suite keeps the tmux server up: killing a test's last session
    // would stop it, and a new session started while it stops fails ("server exited unexpectedly").
    tmux('new-session', '-d', '-s', 'keep', 'sleep 3600');
    [redis, etcd] = await Promise.all([startRedis(), startEtcd()]);
  });
  afterEach(() => {
    for (const t of terminals.splice(0)) t.kill();
  });
  after(async () => {
    try {
      tmux('kill-server');
    } catch {
      // no sessions left
    }
    await Promise.all([redis?.stop(), etcd?.stop()]);
  });

  it('Redis: holder, fence, TTL and the queue with ages, redrawn in place; a release shows at once; Ctrl-C ends it', async () => {
    const client = await RedisClient.connect(redis.url);
    const locker = new RedisLocker(client);
    const waiterClient = await RedisClient.connect(redis.url);
    const waiterLocker = new RedisLocker(waiterClient);
    try {
      // A long interval: whatever shows sooner after a release came from the wake-up, not the timer.
      const term = open('redis', ['status', '--redis', redis.url, '--key', 'jobs', '--watch', '--interval', '30s']);
      await term.waitForScreen(/lock "jobs" \(Redis; key wirelock:\{jobs\}\)\n\s+free; last fence none yet/, 'the free lock');

      const held = await locker.acquire('jobs', { ttlMs: 20_000 });
      // No message announces an uncontended grant: a fresh terminal with a short interval shows it.
      term.kill();
      const live = open('redis2', ['status', '--redis', redis.url, '--key', 'jobs', '--watch', '--interval', '200ms']);
      let screen = await live.waitForScreen(new RegExp(`held by token ${held.token}, [\\d.]+s left, held ≥[\\d.]+m?s; last fence ${held.fence}`), 'the holder');
      expect(screen).to.match(/^wirelock status --watch · \d\d:\d\d:\d\d · every 200ms and on each release · Ctrl-C to stop/);

      const waiting = waiterLocker.acquire('jobs', { ttlMs: 20_000, waitTimeoutMs: 30_000 });
      screen = await live.waitForScreen(/1 waiting, in order:\n\s+1\. [0-9a-f]{32} \(waiting [\d.]+m?s; place lapses in [\d.]+m?s\)/, 'the waiter');
      // Its age grows, by the server's clock.
      const age = (s: string): number => {
        const m = /waiting ([\d.]+)(ms|s)/.exec(s)!;
        return Number(m[1]) * (m[2] === 's' ? 1000 : 1);
      };
      const before = age(screen);
      await waitFor(() => age(live.screen()) >= before + 1000, 5000, 'the waiter to age', 100);

      // Redrawn in place: one header on the screen and none scrolled off, after many frames.
      expect(live.everything().match(/wirelock status --watch/g)).to.have.length(1);

      // The slow terminal again, then the release: the new holder appears long before its 30 s timer.
      live.kill();
      const slow = open('redis3', ['status', '--redis', redis.url, '--key', 'jobs', '--watch', '--interval', '30s']);
      await slow.waitForScreen(/1 waiting/, 'the slow view to draw');
      await held.release();
      const next = await waiting;
      await slow.waitForScreen(new RegExp(`held by token ${next.token}, [\\d.]+s left, held [\\d.]+m?s; last fence ${next.fence}`), 'the next holder', 8000);
      expect(slow.screen()).to.not.match(/waiting, in order/);
      await next.release();

      slow.interrupt();
      const end = await slow.waitForScreen(/exit \d+/, 'the watch to end');
      expect(end).to.match(/exit 0$/);
      expect(end).to.include('lock "jobs" (Redis'); // the last frame stays on screen
    } finally {
      await locker.close();
      await waiterLocker.close();
      await Promise.all([client.close(), waiterClient.close()]);
    }
  });

  it('etcd: the keys in creation order with their leases, the holder and each waiter timed; every change shows at once', async () => {
    const client = await EtcdClient.connect({ endpoints: [etcd.clientUrl] });
    // No prefix, as the CLI has by default for etcd: the keys `etcdctl lock reports` uses.
    const a = new EtcdLocker(client, { prefix: '' });
    const b = new EtcdLocker(client, { prefix: '' });
    let held: Lock | undefined;
    try {
      const term = open('etcd', ['status', '--etcd', etcd.clientUrl, '--key', 'reports', '--watch', '--interval', '30s']);
      await term.waitForScreen(/lock "reports" \(etcd mutex; keys reports\/<lease>.*\n\s+free/, 'the free lock');

      held = await a.acquire('reports', { ttlMs: 10_000 });
      // The token of an etcd lock is its key, `<name>/<lease hex>`.
      const leaseHex = held.token.split('/')[1]!;
      let screen = await term.waitForScreen(
        new RegExp(`held by ${held.token} \\(create revision ${held.fence}; lease ${leaseHex} has \\d+ s of 10 s left; held [\\d.]+m?s\\); fence ${held.fence}`),
        'the holder (a put wakes the view)',
      );
      expect(screen).to.include('every 30s and on each change');

      const waiting = b.acquire('reports', { ttlMs: 10_000, waitTimeoutMs: 30_000 });
      screen = await term.waitForScreen(/1 waiting, in order:\n\s+1\. reports\/[0-9a-f]+ \(create revision (\d+); lease [0-9a-f]+ has \d+ s of 10 s left; waiting [\d.]+m?s\)/, 'the waiter');
      const waiterRev = BigInt(/1\. reports\/[0-9a-f]+ \(create revision (\d+)/.exec(screen)![1]!);
      expect(waiterRev > held.fence).to.equal(true);

      await held.release();
      held = await waiting;
      expect(held.fence).to.equal(waiterRev);
      await term.waitForScreen(new RegExp(`held by reports/[0-9a-f]+ \\(create revision ${waiterRev};.*; fence ${waiterRev}`), 'the next holder');
      await held.release();
      held = undefined;
      await term.waitForScreen(/\n\s+free$/, 'the lock free again');
      term.interrupt();
      expect(await term.waitForScreen(/exit \d+/, 'the watch to end')).to.match(/exit 0$/);
    } finally {
      await held?.release().catch(() => {});
      await a.close();
      await b.close();
      await client.close();
    }
  });

  it('a narrow terminal: lines are cut to its width, never wrapped', async () => {
    const client = await RedisClient.connect(redis.url);
    const locker = new RedisLocker(client);
    try {
      const held = await locker.acquire('narrow', { ttlMs: 20_000 });
      const t = new Terminal('narrow', ['status', '--redis', redis.url, '--key', 'narrow', '--watch', '--interval', '200ms'], 50, 12);
      terminals.push(t);
      const screen = await t.waitForScreen(/held by token/, 'the holder');
      for (const line of screen.split('\n')) expect([...line].length, line).to.be.at.most(50);
      expect(screen).to.match(/…$/m);
      expect(t.everything().match(/wirelock status/g)).to.have.length(1);
      await held.release();
    } finally {
      await locker.close();
      await client.close();
    }
  });

  it('not a terminal: frames one after another, no escape codes; SIGINT ends it with 0', async () => {
    const r = await runProcess(CLI[0]!, [...CLI.slice(1), 'status', '--redis', redis.url, '--key', 'piped', '--watch', '--interval', '100ms'], {
      cwd: root,
      onStart: (child) => setTimeout(() => child.kill('SIGINT'), 2500),
    });
    expect(r.code).to.equal(0);
    expect(r.stdout).to.not.include('\x1b');
    const frames = r.stdout.split('\n\n').filter((f) => f.startsWith('wirelock status --watch'));
    expect(frames.length).to.be.at.least(3);
    expect(r.stdout).to.include('lock "piped" (Redis; key wirelock:{piped})');
  });

  it('usage errors: --interval without --watch, or too short', async () => {
    const without = await runProcess(CLI[0]!, [...CLI.slice(1), 'status', '--redis', redis.url, '--key', 'x', '--interval', '1s'], { cwd: root });
    expect(without.code).to.equal(2);
    expect(without.stderr).to.include('--interval goes with --watch');
    const short = await runProcess(CLI[0]!, [...CLI.slice(1), 'status', '--redis', redis.url, '--key', 'x', '--watch', '--interval', '10ms'], { cwd: root });
    expect(short.code).to.equal(2);
    expect(short.stderr).to.include('at least 100ms');
  });
});
