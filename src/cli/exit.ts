/**
 * What every `wirelock` command shares on its way out: the exit statuses, the error that carries
 * one, and how errors and durations are written on the one line each gets.
 */
import { constants as osConstants } from 'node:os';
import type { WirelockError } from '../errors.js';

/** 75 and 69 are EX_TEMPFAIL and EX_UNAVAILABLE of sysexits.h. */
export const EXIT = { usage: 2, unavailable: 69, held: 75, lost: 76 } as const;

/** Ends the command with `code`; main prints `message` as the one line. */
export class CliExit extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

/** The shell's status for a process a signal ended: 128 + its number. */
export function signalStatus(signal: NodeJS.Signals): number {
  return 128 + (osConstants.signals[signal] ?? 0);
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
