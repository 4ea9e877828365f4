/**
 * All of wirelock's `node:diagnostics_channel` channels, declared in one place.
 * Payloads are built only when a channel has subscribers, and secrets are redacted here,
 * at the one place payloads are built (see docs/diagnostics.md for every payload's shape).
 */
import dc from 'node:diagnostics_channel';

export const channels = {
  /** A RESP connection is established (after AUTH/SELECT). */
  respConnect: dc.channel('wirelock:resp:connect'),
  /** A command is written to the socket. */
  respCommand: dc.channel('wirelock:resp:command'),
  /** A reply (not an error reply) arrived for a command. */
  respReply: dc.channel('wirelock:resp:reply'),
  /** A command failed: error reply, timeout, abort, or its connection closed. */
  respError: dc.channel('wirelock:resp:error'),
  /** A RESP connection closed. */
  respClose: dc.channel('wirelock:resp:close'),
  /** A pub/sub message arrived on the subscriber connection. */
  respMessage: dc.channel('wirelock:resp:message'),

  /** A lock was acquired. */
  lockAcquire: dc.channel('wirelock:lock:acquire'),
  /** An acquire found the lock held and starts (or continues) waiting. */
  lockWait: dc.channel('wirelock:lock:wait'),
  /** A lock's lease was extended. */
  lockExtend: dc.channel('wirelock:lock:extend'),
  /** A lock was released by its holder. */
  lockRelease: dc.channel('wirelock:lock:release'),
  /** A lock was lost (its signal aborted with LockLostError). */
  lockLost: dc.channel('wirelock:lock:lost'),
} as const;

export const REDACTED = '[redacted]';

/**
 * Commands whose arguments carry secrets, and how many leading arguments stay visible.
 * AUTH [user] pass: only the command name stays; HELLO ... AUTH user pass; ACL SETUSER may carry >passwords.
 */
export function redactCommand(args: ReadonlyArray<string | Buffer | number>): Array<string | Buffer | number> {
  const name = String(args[0] ?? '').toUpperCase();
  switch (name) {
    case 'AUTH':
      return [args[0]!, ...args.slice(1).map(() => REDACTED)];
    case 'HELLO': {
      const out = [...args];
      for (let i = 1; i + 2 < out.length; i++) {
        if (String(out[i]).toUpperCase() === 'AUTH') out[i + 2] = REDACTED;
      }
      return out;
    }
    case 'ACL':
    case 'CONFIG':
    case 'MIGRATE':
      // These can carry passwords in many positions; keep only the subcommand.
      return [args[0]!, ...(args.length > 1 ? [args[1]!] : []), ...args.slice(2).map(() => REDACTED)];
    default:
      return args as Array<string | Buffer | number>;
  }
}

// ---- etcd (src/etcdrpc, src/locks/etcd-*): payload shapes are documented in docs/etcd.md.

export const etcdChannels = {
  /** A unary call is sent: `{ method, endpoint, request, attempt }`. */
  call: dc.channel('wirelock:etcd:call'),
  /** A unary call answered: `{ method, endpoint, response, durationMs }`. */
  response: dc.channel('wirelock:etcd:response'),
  /** A unary call failed: `{ method, endpoint, error, retry }` (`retry`: it will be sent again). */
  error: dc.channel('wirelock:etcd:error'),
  /** A stream (Watch or LeaseKeepAlive) is opened: `{ stream, endpoint }`. */
  streamOpen: dc.channel('wirelock:etcd:stream:open'),
  /** A message is written on a stream: `{ stream, endpoint, message }`. */
  streamSend: dc.channel('wirelock:etcd:stream:send'),
  /** A message arrived on a stream: `{ stream, endpoint, message }`. */
  streamReceive: dc.channel('wirelock:etcd:stream:receive'),
  /** A stream ended: `{ stream, endpoint, error }` (`error` undefined when we closed it). */
  streamClose: dc.channel('wirelock:etcd:stream:close'),
  /** A session changed state: `{ lease, event: 'granted' | 'renewed' | 'lost' | 'closed', ttl, validUntil, error? }`. */
  session: dc.channel('wirelock:etcd:session'),
} as const;

/**
 * An etcd message as it may be published: the Authenticate password and the token it returns are
 * replaced. Every etcd payload goes through here; other messages carry no secrets and pass as they are.
 */
export function redactEtcd(method: string, message: unknown): unknown {
  if (method !== 'Auth.Authenticate' || message === null || typeof message !== 'object') return message;
  const m = message as Record<string, unknown>;
  if ('password' in m) return { name: m.name, password: REDACTED };
  if ('token' in m) return { header: m.header, token: REDACTED };
  return message;
}
