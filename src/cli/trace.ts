/**
 * `wirelock trace`: acquire and release once, and print what went over the wire, from the
 * diagnostics channels (the same payloads any subscriber gets; secrets are already redacted there).
 */
import dc from 'node:diagnostics_channel';
import type { CommonFlags } from './args.js';
import { openBackend } from './connect.js';
import { formatMs } from './run.js';

/** Turns payload values into short, readable text: Buffers as text when printable, bigints as digits. */
export function show(value: unknown, max = 320): string {
  const text = JSON.stringify(value, (k, v: unknown) => {
    if (typeof v === 'bigint') return v.toString();
    if (v instanceof Error) return `(error) ${v.message}`; // an error nested in an array reply
    // etcd's response header: only the revision matters to the lock; the ids and term are noise here.
    if (k === 'header' && v && typeof v === 'object' && 'revision' in v) return { revision: String((v as { revision: unknown }).revision) };
    if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
      const buf = Buffer.from((v as { data: number[] }).data);
      return /^[\x20-\x7e]*$/.test(buf.toString('latin1')) ? buf.toString() : `0x${buf.toString('hex')}`;
    }
    return v;
  });
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function args(list: Array<string | number | Buffer>): string {
  return list.map((a) => (Buffer.isBuffer(a) ? `<${a.length} bytes>` : String(a))).map((a) => (/[\s"]/.test(a) || a === '' ? JSON.stringify(a) : a)).join(' ');
}

type Line = (text: string) => void;

/** Subscribes a printer to every wirelock channel; returns the function that unsubscribes it. */
export function tracePrinter(print: Line, start = performance.now()): () => void {
  const t = (): string => `+${(performance.now() - start).toFixed(2).padStart(8)} ms`;
  const handlers: Record<string, (m: never) => string | undefined> = {
    'wirelock:resp:connect': (m: { connection: number; address: string; tls: boolean }) => `   redis c${m.connection} connected to ${m.address}${m.tls ? ' (TLS)' : ''}`,
    'wirelock:resp:command': (m: { connection: number; args: Array<string | number | Buffer> }) => `→  redis c${m.connection}  ${args(m.args)}`,
    'wirelock:resp:reply': (m: { connection: number; reply: unknown; durationMs: number }) => `←  redis c${m.connection}  ${show(m.reply)}   (${m.durationMs.toFixed(2)} ms)`,
    'wirelock:resp:error': (m: { connection: number; command: string; error: Error }) => `←  redis c${m.connection}  ${m.command} failed: ${m.error.message}`,
    'wirelock:resp:message': (m: { channel: string; message: unknown }) => `⇠  redis pub/sub  ${m.channel}  ${show(m.message)}`,
    'wirelock:resp:close': (m: { connection: number }) => `   redis c${m.connection} closed`,
    'wirelock:etcd:call': (m: { method: string; request: unknown }) => `→  etcd ${m.method}  ${show(m.request)}`,
    'wirelock:etcd:response': (m: { method: string; response: unknown; durationMs: number }) => `←  etcd ${m.method}  ${show(m.response)}   (${m.durationMs.toFixed(2)} ms)`,
    'wirelock:etcd:error': (m: { method: string; error: Error }) => `←  etcd ${m.method} failed: ${m.error.message}`,
    'wirelock:etcd:stream:open': (m: { stream: string }) => `   etcd ${m.stream} stream opened`,
    'wirelock:etcd:stream:send': (m: { stream: string; message: unknown }) => `→  etcd ${m.stream} (stream)  ${show(m.message)}`,
    'wirelock:etcd:stream:receive': (m: { stream: string; message: unknown }) => `←  etcd ${m.stream} (stream)  ${show(m.message)}`,
    'wirelock:lock:acquire': (m: { key: string; fence: bigint; validUntil?: number; waitedMs?: number }) =>
      `●  lock "${m.key}" acquired: fence ${m.fence}` +
      (m.validUntil !== undefined ? `, valid for ${formatMs(m.validUntil - performance.now())}` : '') +
      (m.waitedMs !== undefined ? `, waited ${m.waitedMs.toFixed(2)} ms` : ''),
    'wirelock:lock:wait': (m: { key: string }) => `…  lock "${m.key}" is held: waiting`,
    'wirelock:lock:extend': (m: { key: string }) => `●  lock "${m.key}" extended`,
    'wirelock:lock:release': (m: { key: string }) => `●  lock "${m.key}" released by its holder`,
    'wirelock:lock:lost': (m: { key: string; reason: string }) => `!  lock "${m.key}" LOST (${m.reason})`,
  };
  const subscriptions = Object.entries(handlers).map(([name, format]) => {
    const fn = (message: unknown): void => {
      const text = format(message as never);
      if (text !== undefined) print(`${t()}  ${text}`);
    };
    dc.subscribe(name, fn);
    return () => dc.unsubscribe(name, fn);
  });
  return () => subscriptions.forEach((off) => off());
}

export async function trace(flags: CommonFlags & { ttlMs?: number }, print: Line): Promise<void> {
  const start = performance.now();
  const stop = tracePrinter(print, start);
  try {
    print(`wirelock trace: acquire and release "${flags.key}" once (→ sent, ← received, ● lock state)`);
    const backend = await openBackend(flags);
    try {
      const lock = await backend.locker.acquire(flags.key, { ttlMs: flags.ttlMs ?? 10_000, waitTimeoutMs: 30_000 });
      await lock.release();
    } finally {
      await backend.close();
    }
  } finally {
    stop();
  }
  print(`done in ${(performance.now() - start).toFixed(1)} ms`);
}
