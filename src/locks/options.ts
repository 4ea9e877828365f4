/**
 * Argument checks shared by every locker: bad input is a TypeError/RangeError at once, never a hang.
 */
import type { AcquireOptions } from './types.js';
import { MAX_TIMER_MS } from '../abort.js';
import { invalidType, invalidValue, outOfRange } from '../errors.js';

export const DEFAULT_TTL_MS = 10_000;

export interface ResolvedAcquire {
  ttlMs: number;
  waitTimeoutMs: number;
  signal: AbortSignal | undefined;
  autoExtend: boolean;
}

export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string') throw invalidType(`lock key must be a string, got ${typeof key}`);
  if (key.length === 0) throw invalidValue('lock key must not be empty');
}

/** A Redis key prefix: any string without braces (the lock's name is each key's {hash tag}). */
export function checkPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string') throw invalidType('prefix must be a string');
  if (/[{}]/.test(prefix)) throw invalidValue('prefix must not contain { or } (the key name is the hash tag)');
  return prefix;
}

export function checkTtl(name: string, ttlMs: unknown): number {
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw outOfRange(`${name} must be a finite number > 0, got ${String(ttlMs)}`);
  }
  return ttlMs;
}

export function resolveAcquire(key: unknown, opts: AcquireOptions | undefined, defaultTtlMs: number): ResolvedAcquire {
  checkKey(key);
  if (opts !== undefined && (typeof opts !== 'object' || opts === null)) {
    throw invalidType('acquire options must be an object');
  }
  const ttlMs = checkTtl('ttlMs', opts?.ttlMs ?? defaultTtlMs);
  let waitTimeoutMs = opts?.waitTimeoutMs ?? Infinity;
  if (typeof waitTimeoutMs !== 'number' || Number.isNaN(waitTimeoutMs) || waitTimeoutMs < 0) {
    throw outOfRange(`waitTimeoutMs must be a number >= 0 (or Infinity), got ${String(waitTimeoutMs)}`);
  }
  // Beyond setTimeout's range (about 24.8 days) a deadline timer would fire after 1 ms: treat it as no deadline.
  if (waitTimeoutMs > MAX_TIMER_MS) waitTimeoutMs = Infinity;
  const signal = opts?.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidType('signal must be an AbortSignal');
  const autoExtend = opts?.autoExtend ?? true;
  if (typeof autoExtend !== 'boolean') throw invalidType('autoExtend must be a boolean');
  return { ttlMs, waitTimeoutMs, signal, autoExtend };
}

/**
 * Clock drift allowance, from the Redlock paper: the holder's and the server's clocks may run at
 * slightly different rates, so some of the TTL is not counted on. 1% of the TTL, plus 2 ms for the
 * granularity of Redis's own expiry timer.
 */
export function driftMs(ttlMs: number, driftFactor = 0.01): number {
  return Math.floor(ttlMs * driftFactor) + 2;
}

/** `limit` as a semaphore takes it: an integer from 1 to 2^31 - 1. */
export function checkLimit(limit: unknown): number {
  if (typeof limit !== 'number') throw invalidType(`limit must be a number, got ${limit === undefined ? 'none' : typeof limit}`);
  if (!Number.isInteger(limit) || limit < 1 || limit > 0x7fffffff) throw outOfRange(`limit must be an integer >= 1, got ${String(limit)}`);
  return limit;
}
