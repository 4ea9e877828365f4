/**
 * `wirelock run`: hold a lock for the lifetime of a command.
 *
 * Unlike `etcdctl lock`, which keeps running the command after its session is lost, a lost lock
 * stops the command: SIGTERM, then SIGKILL after the grace period, then exit 76 with the reason.
 * SIGINT/SIGTERM sent to wirelock are passed to the command; the lock is released on every path.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { LockLostError, LockTimeoutError, type WirelockError } from '../errors.js';
import type { Lock } from '../locks/types.js';
import type { RunFlags } from './args.js';
import { openBackend } from './connect.js';

export const EXIT = { usage: 2, unavailable: 69, held: 75, lost: 76 } as const;

export class CliExit extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

export async function run(flags: RunFlags, say: (line: string) => void): Promise<number> {
  const backend = await openBackend(flags);
  let lock: Lock | null = null;
  try {
    const opts = { ttlMs: flags.ttlMs, autoExtend: true };
    try {
      lock = flags.waitMs === 0 ? await backend.locker.tryAcquire(flags.key, opts) : await backend.locker.acquire(flags.key, { ...opts, waitTimeoutMs: flags.waitMs });
    } catch (err) {
      if (err instanceof LockTimeoutError) throw new CliExit(EXIT.held, `lock "${flags.key}" is still held elsewhere after ${formatMs(flags.waitMs)}`);
      throw err;
    }
    if (!lock) throw new CliExit(EXIT.held, `lock "${flags.key}" is held elsewhere`);
    return await supervise(lock, flags, say);
  } finally {
    // Released on every path (the command's exit, a signal, an error); a lost lock's release is a no-op.
    await lock?.release().catch((err: unknown) => say(`warning: release failed: ${describe(err)}`));
    await backend.close().catch(() => {});
  }
}

/** Runs the command under the lock; resolves with the exit status wirelock should exit with. */
function supervise(lock: Lock, flags: RunFlags, say: (line: string) => void): Promise<number> {
  return new Promise((resolve) => {
    const [cmd, ...args] = flags.command;
    let child: ChildProcess;
    try {
      child = spawn(cmd!, args, {
        stdio: 'inherit',
        env: { ...process.env, WIRELOCK_KEY: flags.key, WIRELOCK_FENCE: lock.fence.toString() },
      });
    } catch (err) {
      say(`cannot start ${JSON.stringify(cmd)}: ${describe(err)}`);
      resolve(127);
      return;
    }
    let lost: LockLostError | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
    const onLoss = (): void => {
      const reason = lock.signal.reason;
      if (!(reason instanceof LockLostError)) return; // released: we are on our way out anyway
      lost = reason;
      say(`lock "${flags.key}" lost (${reason.reason}): stopping the command (SIGTERM, SIGKILL after ${formatMs(flags.graceMs)})`);
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), flags.graceMs);
    };
    lock.signal.addEventListener('abort', onLoss, { once: true });
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    process.on('SIGHUP', forward);
    child.once('error', (err) => {
      say(`cannot start ${JSON.stringify(cmd)}: ${describe(err)}`);
      cleanup();
      resolve((err as NodeJS.ErrnoException).code === 'ENOENT' ? 127 : 126);
    });
    child.once('exit', (code, signal) => {
      cleanup();
      if (lost) {
        say(`the command was stopped because the lock was lost: ${lost.message}`);
        resolve(EXIT.lost);
        return;
      }
      resolve(code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0));
    });
    function cleanup(): void {
      clearTimeout(killTimer);
      lock.signal.removeEventListener('abort', onLoss);
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      process.off('SIGHUP', forward);
    }
  });
}

export function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as WirelockError).code;
    return code ? `${err.message} [${code}]` : err.message;
  }
  return String(err);
}

export function formatMs(ms: number): string {
  if (ms === Infinity) return 'forever';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${+(ms / 1000).toFixed(1)}s`;
  return `${+(ms / 60_000).toFixed(1)}m`;
}
