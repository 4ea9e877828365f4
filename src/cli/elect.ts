/**
 * `wirelock elect`: leader election from the command line.
 *
 *  campaign  campaign with --value, waiting up to --wait (SIGINT, SIGTERM or SIGHUP withdraws the
 *            candidacy); once leading print `leading <key> fence <fence>`, then run CMD while
 *            leading, stopped on loss exactly as `wirelock run` stops its command (child.ts), or
 *            without CMD lead until a signal. Resign on every way out, so the next candidate
 *            takes over at once instead of when our lease runs out.
 *  observe   print the leader now, then each change, one line each, until a signal.
 *
 * The lines on stdout are data, one per event, so a value or key from the server must never break
 * one: formatText prints plain text as is and quotes everything else. Messages go to stderr.
 */
import { keepAlive } from '../abort.js';
import { LockLostError, LockTimeoutError } from '../errors.js';
import type { Election, Leader, Leadership } from '../locks/election.js';
import { EtcdElection } from '../locks/etcd-election.js';
import { RedisElection } from '../locks/redis-election.js';
import type { ElectFlags } from './args.js';
import { STOP_SIGNALS, runWhileHeld } from './child.js';
import { connectClients, keyPrefix } from './connect.js';
import { CliExit, EXIT, describe, formatMs, signalStatus } from './exit.js';

export async function elect(flags: ElectFlags, print: (line: string) => void, say: (line: string) => void): Promise<number> {
  const clients = await connectClients(flags);
  let election: Election;
  try {
    // etcd: the name as etcdctl uses it (the CLI's etcd prefix is empty unless --prefix is given).
    election = clients.etcd
      ? new EtcdElection(clients.etcd, `${keyPrefix(flags)}${flags.name}`, { ttlMs: flags.ttlMs })
      : new RedisElection(clients.redis[0]!, flags.name, { ttlMs: flags.ttlMs, prefix: keyPrefix(flags) });
  } catch (err) {
    await clients.close();
    throw err;
  }
  try {
    return flags.observe ? await observe(election, print) : await lead(election, flags, print, say);
  } finally {
    // Also waits for a given-up campaign to withdraw (its lease revoked), so no key of ours is left to lead later.
    await election.close().catch(() => {});
    await clients.close().catch(() => {});
  }
}

async function lead(election: Election, flags: ElectFlags, print: (line: string) => void, say: (line: string) => void): Promise<number> {
  const held = { name: `leadership of "${flags.name}"`, noun: 'the leadership' };
  const stop = onStopSignals();
  let leadership: Leadership;
  try {
    leadership = await election.campaign(flags.value!, { ttlMs: flags.ttlMs, waitTimeoutMs: flags.waitMs, signal: stop.signal });
  } catch (err) {
    if (stop.signal.aborted) {
      const signal = stop.signal.reason as NodeJS.Signals;
      throw new CliExit(signalStatus(signal), `${signal} while waiting to lead "${flags.name}": the candidacy was withdrawn`);
    }
    if (err instanceof LockTimeoutError) throw new CliExit(EXIT.held, `still not leading "${flags.name}" after ${formatMs(flags.waitMs)}`);
    throw err;
  } finally {
    stop.dispose();
  }
  try {
    print(`leading ${formatText(leadership.key)} fence ${leadership.fence}`);
    if (flags.command.length === 0) return await untilStopped(leadership, held.name, say);
    return await runWhileHeld(
      {
        argv: flags.command,
        env: { WIRELOCK_ELECTION: flags.name, WIRELOCK_LEADER_KEY: leadership.key, WIRELOCK_FENCE: leadership.fence.toString() },
        signal: leadership.signal,
        graceMs: flags.graceMs,
        held,
      },
      say,
    );
  } finally {
    // Resigned on every path; resigning a lost leadership does nothing and never touches the next leader's key.
    await leadership.resign().catch((err: unknown) => say(`warning: resign failed: ${describe(err)}`));
  }
}

/** Leads until a stop signal (status 0) or the loss of the leadership (76). */
function untilStopped(leadership: Leadership, name: string, say: (line: string) => void): Promise<number> {
  return new Promise((resolve) => {
    const stop = onStopSignals();
    const letGo = keepAlive(); // a signal listener alone would not keep the process waiting
    const end = (): void => {
      stop.dispose();
      letGo();
      stop.signal.removeEventListener('abort', end);
      leadership.signal.removeEventListener('abort', end);
      const reason: unknown = leadership.signal.reason;
      if (!(reason instanceof LockLostError)) return resolve(0);
      say(`${name} lost (${reason.reason}): ${reason.message}`);
      resolve(EXIT.lost);
    };
    if (leadership.signal.aborted) return end();
    stop.signal.addEventListener('abort', end, { once: true });
    leadership.signal.addEventListener('abort', end, { once: true });
  });
}

async function observe(election: Election, print: (line: string) => void): Promise<number> {
  const stop = onStopSignals();
  // A reader that went away (`… --observe | head -1`) ends the observation as a signal does; other
  // output errors end it with the error.
  const output = new AbortController();
  const onOutputError = (err: NodeJS.ErrnoException): void => output.abort(err);
  process.stdout.on('error', onOutputError);
  const signal = AbortSignal.any([stop.signal, output.signal]);
  try {
    for await (const leader of election.observe({ signal })) print(leaderLine(leader));
  } catch (err) {
    if (!signal.aborted) throw err;
    if (output.signal.aborted && (output.signal.reason as NodeJS.ErrnoException).code !== 'EPIPE') throw output.signal.reason;
  } finally {
    stop.dispose();
    process.stdout.off('error', onOutputError);
  }
  return 0;
}

function leaderLine(leader: Leader | null): string {
  return leader ? `leader ${formatText(leader.key)} fence ${leader.fence} value ${formatText(leader.value)}` : 'no leader';
}

/** Aborts (with the signal's name as the reason) on SIGINT, SIGTERM or SIGHUP, until disposed. */
function onStopSignals(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const stop = (signal: NodeJS.Signals): void => controller.abort(signal);
  for (const s of STOP_SIGNALS) process.on(s, stop);
  return {
    signal: controller.signal,
    dispose: () => {
      for (const s of STOP_SIGNALS) process.off(s, stop);
    },
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }); // a BOM is data here, kept (and quoted)
/** Control, format (bidi overrides, zero-width), private-use, unassigned, line and paragraph separators. */
const UNSAFE = /[\p{C}\p{Zl}\p{Zp}]/u;
const UNSAFE_ALL = /[\p{C}\p{Zl}\p{Zp}]/gu;

/**
 * A value or key on one line, unambiguously. Plain text (UTF-8 without the characters above, not
 * empty, no space at either end, not starting with `"` or `hex:`) is printed as is; other UTF-8 as
 * a JSON string with every such character \u-escaped (JSON.parse gives it back); bytes that are not
 * UTF-8 as `hex:<bytes>`. The two reserved starts keep the three forms apart.
 */
export function formatText(value: Buffer | string): string {
  let text: string;
  if (typeof value === 'string') text = value;
  else {
    try {
      text = utf8.decode(value);
    } catch {
      return `hex:${value.toString('hex')}`;
    }
  }
  if (text !== '' && !UNSAFE.test(text) && text.trim() === text && !text.startsWith('"') && !text.startsWith('hex:')) return text;
  // One \uXXXX per UTF-16 unit: a character beyond U+FFFF becomes its surrogate pair, as JSON spells it.
  const escape = (c: string): string => c.split('').map((u) => `\\u${u.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');
  return JSON.stringify(text).replace(UNSAFE_ALL, escape);
}
