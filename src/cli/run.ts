/**
 * `wirelock run`: hold a lock for the lifetime of a command.
 *
 * The command runs under the lock as child.ts runs it: a lost lock stops it (SIGTERM, SIGKILL after
 * the grace period, exit 76), signals sent to wirelock are passed on. The lock is released on every path.
 */
import { LockTimeoutError } from '../errors.js';
import type { Lock } from '../locks/types.js';
import type { RunFlags } from './args.js';
import { runWhileHeld } from './child.js';
import { openBackend } from './connect.js';
import { CliExit, EXIT, describe, formatMs } from './exit.js';

export async function run(flags: RunFlags, say: (line: string) => void): Promise<number> {
  const backend = await openBackend(flags, { permits: flags.permits, rw: flags.rw });
  const what =
    flags.permits !== undefined ? `semaphore "${flags.key}" (${flags.permits} permits)`
    : flags.rw !== undefined ? `read-write lock "${flags.key}" (${flags.rw === 'read' ? 'shared' : 'exclusive'})`
    : `lock "${flags.key}"`;
  let lock: Lock | null = null;
  try {
    const opts = { ttlMs: flags.ttlMs, autoExtend: true };
    try {
      lock = flags.waitMs === 0 ? await backend.locker.tryAcquire(flags.key, opts) : await backend.locker.acquire(flags.key, { ...opts, waitTimeoutMs: flags.waitMs });
    } catch (err) {
      if (err instanceof LockTimeoutError) throw new CliExit(EXIT.held, `${what} is still held elsewhere after ${formatMs(flags.waitMs)}`);
      throw err;
    }
    if (!lock) throw new CliExit(EXIT.held, `${what} is held elsewhere${flags.permits === undefined ? '' : ' (every permit)'}`);
    return await runWhileHeld(
      {
        argv: flags.command,
        env: { WIRELOCK_KEY: flags.key, WIRELOCK_FENCE: lock.fence.toString() },
        signal: lock.signal,
        graceMs: flags.graceMs,
        held: { name: what, noun: flags.permits === undefined ? 'the lock' : 'the permit' },
      },
      say,
    );
  } finally {
    // Released on every path (the command's exit, a signal, an error); a lost lock's release is a no-op.
    await lock?.release().catch((err: unknown) => say(`warning: release failed: ${describe(err)}`));
    await backend.close().catch(() => {});
  }
}
