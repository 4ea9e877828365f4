/**
 * `wirelock trace`: acquire and release once, and print what went over the wire, from the
 * diagnostics channels (the same payloads any subscriber gets; secrets are already redacted there).
 */
import { createHash } from 'node:crypto';
import dc from 'node:diagnostics_channel';
import { etcdChannels, lockChannels, respChannels, type Channel } from '../diagnostics.js';
import type { CommonFlags } from './args.js';
import { openBackend } from './connect.js';
import { formatMs } from './exit.js';

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

/**
 * A command's arguments as one line. A script sent in full (EVAL, its first run on a connection) is
 * shown by the SHA1 its later EVALSHAs name it by, and its length, not its source.
 */
function args(list: Array<string | number | Buffer>): string {
  const shown = list.map((a, i) => {
    if (i === 1 && String(list[0]).toUpperCase() === 'EVAL') {
      const source = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
      return `<source of ${createHash('sha1').update(source).digest('hex')}, ${source.length} bytes>`;
    }
    if (Buffer.isBuffer(a)) return `<${a.length} bytes>`;
    const text = String(a);
    return /[\s"]/.test(text) || text === '' ? JSON.stringify(text) : text;
  });
  return shown.join(' ');
}

type Line = (text: string) => void;

/** How the printer shows one channel's payloads (undefined: print nothing for it). */
type Format<T> = (m: T) => string | undefined;

/** One line per payload, for every channel a trace shows; typed by the channel tables in diagnostics.ts. */
function formats(): Array<[Channel<never>, Format<never>]> {
  const r = respChannels;
  const e = etcdChannels;
  const l = lockChannels;
  const f = <T>(ch: Channel<T>, format: Format<T>): [Channel<never>, Format<never>] => [ch as Channel<never>, format as Format<never>];
  return [
    f(r.connect, (m) => `   redis c${m.connection} connected to ${m.address}${m.tls ? ' (TLS)' : ''}`),
    f(r.command, (m) => `→  redis c${m.connection}  ${args(m.args)}`),
    f(r.reply, (m) => `←  redis c${m.connection}  ${show(m.reply)}   (${m.durationMs.toFixed(2)} ms)`),
    f(r.error, (m) => `←  redis c${m.connection}  ${m.command} failed: ${errorText(m.error)}`),
    f(r.message, (m) => `⇠  redis pub/sub  ${m.channel}  ${show(m.message)}`),
    f(r.close, (m) => `   redis c${m.connection} closed`),
    f(r.redirect, (m) => `↪  redis ${m.command} slot ${m.slot ?? '-'}: ${m.kind} from ${m.from}${m.to ? ` to ${m.to}` : ', again after a pause'}`),
    f(r.slots, (m) => `   redis slot map from ${m.from} (${m.cause}): masters ${m.masters.join(', ')}; ${m.changed} slots changed`),
    f(e.call, (m) => `→  etcd ${m.method}  ${show(m.request)}`),
    f(e.response, (m) => `←  etcd ${m.method}  ${show(m.response)}   (${m.durationMs.toFixed(2)} ms)`),
    f(e.error, (m) => `←  etcd ${m.method} failed: ${errorText(m.error)}`),
    f(e.streamOpen, (m) => `   etcd ${m.stream} stream opened`),
    f(e.streamSend, (m) => `→  etcd ${m.stream} (stream)  ${show(m.message)}`),
    f(e.streamReceive, (m) => `←  etcd ${m.stream} (stream)  ${show(m.message)}`),
    f(e.h2Frame, (m) => `${m.direction === 'out' ? '→' : '←'}    h2 ${m.type}${frameFlags(m.type, m.flags)} stream ${m.streamId}, ${m.length} B`),
    f(l.acquire, (m) =>
      `●  lock "${m.key}" acquired: fence ${m.fence}` +
      (m.validUntil !== undefined ? `, valid for ${formatMs(m.validUntil - performance.now())}` : '') +
      `, waited ${m.waitedMs.toFixed(2)} ms`),
    f(l.wait, (m) => `…  lock "${m.key}" is held: waiting`),
    f(l.extend, (m) => `●  lock "${m.key}" extended`),
    f(l.release, (m) => `●  lock "${m.key}" released by its holder`),
    f(l.lost, (m) => `!  lock "${m.key}" LOST (${m.reason})`),
  ];
}

/** An HTTP/2 frame's flags by name (RFC 9113 6): the ones its type defines. */
function frameFlags(type: string, flags: number): string {
  const names: Array<[number, string]> =
    type === 'SETTINGS' || type === 'PING' ? [[0x1, 'ACK']]
      : type === 'DATA' ? [[0x1, 'END_STREAM'], [0x8, 'PADDED']]
        : type === 'HEADERS' || type === 'CONTINUATION' ? [[0x1, 'END_STREAM'], [0x4, 'END_HEADERS'], [0x8, 'PADDED'], [0x20, 'PRIORITY']]
          : [];
  const set = names.filter(([bit]) => flags & bit).map(([, name]) => name);
  return set.length ? ` [${set.join(' ')}]` : '';
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Subscribes a printer to every wirelock channel; returns the function that unsubscribes it. */
export function tracePrinter(print: Line, start = performance.now()): () => void {
  const t = (): string => `+${(performance.now() - start).toFixed(2).padStart(8)} ms`;
  const subscriptions = formats().map(([ch, format]) => {
    const fn = (message: unknown): void => {
      const text = format(message as never);
      if (text !== undefined) print(`${t()}  ${text}`);
    };
    dc.subscribe(ch.name, fn);
    return () => dc.unsubscribe(ch.name, fn);
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
