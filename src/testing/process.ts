/**
 * Shared plumbing of the local servers module: free ports, temp dirs, finding binaries, and making sure
 * no server outlives the process that started it (even when a test fails or throws).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const live = new Set<ChildProcess>();
/** Temp dirs not removed yet: the exit hook removes them, so a failed run leaves no data behind. */
const dirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A fresh temp dir; under /dev/shm when it exists (cheap fsync for etcd). */
export function tempDir(prefix: string): string {
  let base = os.tmpdir();
  try {
    accessSync('/dev/shm', constants.W_OK);
    base = '/dev/shm';
  } catch {
    // no /dev/shm: the OS temp dir will do
  }
  installExitHook();
  const dir = mkdtempSync(path.join(base, `wirelock-${prefix}-`));
  dirs.add(dir);
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

/** The absolute path of `binary` on PATH, or an Error that names the Debian package to install. */
export function findBinary(binary: string, debianPackage: string): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, binary);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new Error(
    `${binary} not found on PATH: install it with \`apt-get install -y ${debianPackage}\` (Debian package ${debianPackage})`,
  );
}

export interface Launched {
  child: ChildProcess;
  /** stdout+stderr so far (capped), for error messages. */
  output(): string;
  /** Resolves with the exit code/signal once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Spawns a server and resolves once `readyLine` appears in its output; rejects (with its output) if it
 * exits first or is not ready within timeoutMs.
 */
export function launch(binary: string, args: string[], readyLine: RegExp, timeoutMs: number): Promise<Launched> {
  installExitHook();
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let out = '';
    let ready = false;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
      child.once('exit', (code, signal) => {
        live.delete(child);
        res({ code, signal });
      }),
    );
    const onData = (chunk: Buffer): void => {
      if (out.length < 64 * 1024) out += chunk.toString();
      if (!ready && readyLine.test(out)) {
        ready = true;
        clearTimeout(timer);
        resolve({ child, output: () => out, exited });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // 'close', not 'exit': on a busy machine a process can be seen to exit before its last output is
    // read, and that output ("Address already in use") is what a caller decides to retry on.
    child.once('close', (code, signal) => {
      if (ready) return;
      clearTimeout(timer);
      reject(new Error(`${path.basename(binary)} exited (${code ?? signal}) before it was ready:\n${out.slice(-4000)}`));
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${path.basename(binary)} not ready after ${timeoutMs} ms:\n${out.slice(-4000)}`));
    }, timeoutMs);
  });
}

/** SIGTERM, then SIGKILL if it has not exited within graceMs. SIGCONTs first, in case it was paused. */
export async function terminate(l: Launched, graceMs = 3000): Promise<void> {
  if (l.child.exitCode !== null || l.child.signalCode !== null) return;
  l.child.kill('SIGCONT');
  l.child.kill('SIGTERM');
  const timer = setTimeout(() => l.child.kill('SIGKILL'), graceMs);
  await l.exited;
  clearTimeout(timer);
}

/**
 * Polls `check` until it returns a value (not undefined), every `intervalMs`; past `timeoutMs` throws
 * an Error `<label>: <what> within <ms> ms (last error: …)`. A check that throws counts as "not yet".
 */
export async function until<T>(label: string, what: string, timeoutMs: number, check: () => Promise<T | undefined>, intervalMs = 100): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) {
      throw new Error(`${label}: ${what} within ${Math.round(timeoutMs)} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
