/**
 * Helpers for the etcd tests: etcdctl as a child process, waiting for a condition, collecting events.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { SortOrder, SortTarget, prefixEnd, type EtcdClient } from '../../src/index.js';
import { sleep } from './wait.js';
export { rejection, sleep } from './wait.js';

const run = promisify(execFile);

/** The keys queued under an etcd lock name (`<name>/…`), oldest (lowest create revision) first. */
export async function queuedKeys(client: EtcdClient, name: string): Promise<string[]> {
  const pfx = Buffer.from(`${name}/`);
  const res = await client.range({ key: pfx, range_end: prefixEnd(pfx), sort_order: SortOrder.ASCEND, sort_target: SortTarget.CREATE });
  return res.kvs.map((kv) => kv.key.toString());
}

/** Runs `etcdctl` (API v3) against `endpoints` and returns its stdout. */
export async function etcdctl(endpoints: string[], args: string[], extra: string[] = []): Promise<string> {
  const { stdout } = await run('etcdctl', ['--endpoints', endpoints.join(','), ...extra, ...args], {
    env: { ...process.env, ETCDCTL_API: '3' },
    timeout: 15_000,
  });
  return stdout;
}

/** A long-running `etcdctl lock NAME` (it holds the lock until killed), with its output so far. */
export interface EtcdctlLock {
  child: ChildProcess;
  output(): string;
  /** Resolves once etcdctl prints the key it holds (it does so when it has the lock). */
  acquired: Promise<string>;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

export function etcdctlLock(endpoints: string[], name: string, extra: string[] = []): EtcdctlLock {
  const child = spawn('etcdctl', ['--endpoints', endpoints.join(','), ...extra, 'lock', name], {
    env: { ...process.env, ETCDCTL_API: '3' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let resolveAcquired!: (key: string) => void;
  const acquired = new Promise<string>((resolve) => (resolveAcquired = resolve));
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    const line = out.split('\n').find((l) => l.startsWith(`${name}/`));
    if (line) resolveAcquired(line.trim());
  });
  child.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    acquired,
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      await exited;
    },
  };
}

/**
 * A long-running `etcdctl elect`: with a proposal, `elect NAME PROPOSAL` campaigns and leads until
 * stopped (SIGINT makes it resign); without one, `elect -l NAME` observes.
 */
export interface EtcdctlElect {
  child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  /**
   * The leaders etcdctl has printed so far, oldest first: a candidate prints itself once elected, an
   * observer every leader and every value a leader proclaims.
   */
  leaders(): Array<{ key: string; value: string }>;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

export function etcdctlElect(endpoints: string[], name: string, opts: { proposal?: string; extra?: string[] } = {}): EtcdctlElect {
  const role = opts.proposal === undefined ? ['-l', name] : [name, opts.proposal];
  const child = spawn('etcdctl', ['--endpoints', endpoints.join(','), ...(opts.extra ?? []), 'elect', ...role], {
    env: { ...process.env, ETCDCTL_API: '3' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let stdout = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    stdout += chunk.toString();
  });
  child.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    // etcdctl prints each leader as two lines, its key and then its value.
    leaders: () => {
      const lines = stdout.split('\n');
      const found: Array<{ key: string; value: string }> = [];
      for (let i = 0; i + 2 < lines.length; i++) {
        if (lines[i]!.startsWith(`${name}/`)) found.push({ key: lines[i]!, value: lines[++i]! });
      }
      return found;
    },
    exited,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Polls `check` until it returns true; fails after `timeoutMs`. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (performance.now() > until) throw new Error(`${what} not reached within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}


