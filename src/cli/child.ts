/**
 * A command that runs only while something is held: a lock (`wirelock run`) or a leadership
 * (`wirelock elect`). Written once so that both stop their command the same way.
 *
 * Unlike `etcdctl lock`, which keeps running the command after its session is lost, a lost hold
 * stops the command: SIGTERM, then SIGKILL after the grace period, then status 76 with the reason.
 * SIGINT, SIGTERM and SIGHUP sent to wirelock are passed to the command, which decides when it is
 * done. Releasing what is held is the caller's, once this has settled, on every path.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { LockLostError } from '../errors.js';
import { EXIT, describe, formatMs, signalStatus } from './exit.js';

/** The signals that ask wirelock to stop: passed on to a command, or ending a command-less wait. */
export const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export interface HeldCommand {
  /** The command and its arguments. */
  argv: string[];
  /** Added to the command's environment. */
  env: Record<string, string>;
  /** The hold's signal: aborting with a LockLostError stops the command; any other reason is our own release. */
  signal: AbortSignal;
  /** After a loss: the time between SIGTERM and SIGKILL. */
  graceMs: number;
  /** How the messages name the hold: `name` 'lock "nightly"', `noun` 'the lock'. */
  held: { name: string; noun: string };
}

/** Runs the command while the hold lasts; resolves with the status wirelock should exit with. */
export function runWhileHeld(cmd: HeldCommand, say: (line: string) => void): Promise<number> {
  return new Promise((resolve) => {
    const [file, ...args] = cmd.argv;
    // Lost between the grant and now: the command must not start at all.
    if (cmd.signal.aborted && cmd.signal.reason instanceof LockLostError) {
      say(`${cmd.held.name} lost (${cmd.signal.reason.reason}) before the command could start: ${cmd.signal.reason.message}`);
      resolve(EXIT.lost);
      return;
    }
    let child: ChildProcess;
    try {
      child = spawn(file!, args, { stdio: 'inherit', env: { ...process.env, ...cmd.env } });
    } catch (err) {
      say(`cannot start ${JSON.stringify(file)}: ${describe(err)}`);
      resolve(127);
      return;
    }
    let lost: LockLostError | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
    const onLoss = (): void => {
      const reason: unknown = cmd.signal.reason;
      if (!(reason instanceof LockLostError)) return; // released: we are on our way out anyway
      lost = reason;
      say(`${cmd.held.name} lost (${reason.reason}): stopping the command (SIGTERM, SIGKILL after ${formatMs(cmd.graceMs)})`);
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), cmd.graceMs);
    };
    cmd.signal.addEventListener('abort', onLoss, { once: true });
    for (const s of STOP_SIGNALS) process.on(s, forward);
    child.once('error', (err) => {
      say(`cannot start ${JSON.stringify(file)}: ${describe(err)}`);
      cleanup();
      resolve((err as NodeJS.ErrnoException).code === 'ENOENT' ? 127 : 126);
    });
    child.once('exit', (code, signal) => {
      cleanup();
      if (lost) {
        say(`the command was stopped because ${cmd.held.noun} was lost: ${lost.message}`);
        resolve(EXIT.lost);
        return;
      }
      resolve(code ?? (signal ? signalStatus(signal) : 128));
    });
    function cleanup(): void {
      clearTimeout(killTimer);
      cmd.signal.removeEventListener('abort', onLoss);
      for (const s of STOP_SIGNALS) process.off(s, forward);
    }
  });
}
