/**
 * All of wirelock's `node:diagnostics_channel` channels, declared in one place, with the shape of
 * every payload. Publishers build a payload only when its channel has subscribers (`hasSubscribers`),
 * and the types below keep every publisher to its channel's shape; secrets are redacted with the two
 * functions at the end of this file, which every payload that could carry one goes through.
 * docs/diagnostics.md (and docs/etcd.md for the etcd channels) describes each payload in prose.
 */
import dc from 'node:diagnostics_channel';
import type { LockLostError, LockLostReason } from './errors.js';

/** A channel whose payloads are `T` (node's Channel, typed). */
export interface Channel<T> {
  readonly name: string | symbol;
  readonly hasSubscribers: boolean;
  publish(message: T): void;
}

function channel<T>(name: string): Channel<T> {
  return dc.channel(name) as Channel<T>;
}

// ---- RESP (src/resp)

export interface RespConnectPayload {
  /** Process-wide connection number; a reconnect gets a new one. */
  connection: number;
  /** host:port. */
  address: string;
  tls: boolean;
  db: number;
  username: string | undefined;
  reconnected: boolean;
}
/** `args` are redacted (redactCommand). */
export interface RespCommandPayload { connection: number; address: string; args: Array<string | Buffer | number> }
export interface RespReplyPayload { connection: number; address: string; command: string; reply: unknown; durationMs: number }
/** `written: false`: the command never reached the wire (aborted or timed out before its flush, or its connection was down). */
export interface RespErrorPayload { connection: number; address: string; command: string; error: unknown; written: boolean; durationMs: number }
export interface RespClosePayload { connection: number; address: string; error?: Error }
export interface RespMessagePayload { address: string; channel: string; message: string | Buffer }

/** The master of a Sentinel-managed name was found, or moved. */
export interface RespMasterPayload {
  /** The name the sentinels monitor. */
  masterName: string;
  /** host:port of the master now. */
  address: string;
  /** host:port of the master before; undefined at the first discovery. */
  previous: string | undefined;
  /** `discovered`: a sentinel named it when asked (at connect, or after the node we were on answered READONLY or a ROLE other than master); `switch-master`: a sentinel announced a failover. */
  cause: 'discovered' | 'switch-master';
}

/** Redis Cluster: a node answered MOVED, ASK, TRYAGAIN or CLUSTERDOWN, and the command is sent again. */
export interface RespRedirectPayload {
  /** The error reply's first word. */
  kind: 'MOVED' | 'ASK' | 'TRYAGAIN' | 'CLUSTERDOWN';
  /** The command's name (never its arguments). */
  command: string;
  /** The key's slot; undefined for a command without keys. */
  slot: number | undefined;
  /** host:port of the node that answered. */
  from: string;
  /** host:port the command goes to next (MOVED and ASK); undefined for a retry after a pause. */
  to: string | undefined;
}

/** Redis Cluster: the client read the slot map from a node (at connect, after a MOVED, a lost node, or on its timer). */
export interface RespSlotsPayload {
  /** host:port of the node that answered CLUSTER SHARDS (or CLUSTER SLOTS). */
  from: string;
  /** host:port of every master that serves slots now. */
  masters: string[];
  /** How many slots have a different master than in the map before. */
  changed: number;
  /** Why it was read. */
  cause: 'connect' | 'moved' | 'node-down' | 'timer' | 'clusterdown';
}

export const respChannels = {
  /** A RESP connection is established (after AUTH/SELECT). */
  connect: channel<RespConnectPayload>('wirelock:resp:connect'),
  /** A command is written to the socket. */
  command: channel<RespCommandPayload>('wirelock:resp:command'),
  /** A reply (not an error reply) arrived for a command. */
  reply: channel<RespReplyPayload>('wirelock:resp:reply'),
  /** A command failed: error reply, timeout, abort, or its connection closed. */
  error: channel<RespErrorPayload>('wirelock:resp:error'),
  /** A RESP connection closed. */
  close: channel<RespClosePayload>('wirelock:resp:close'),
  /** A pub/sub message arrived on the subscriber connection. */
  message: channel<RespMessagePayload>('wirelock:resp:message'),
  /** Redis Sentinel: the master was found, or moved (a failover). */
  master: channel<RespMasterPayload>('wirelock:resp:master'),
  /** Redis Cluster: a command is redirected (MOVED, ASK) or retried after a pause (TRYAGAIN, CLUSTERDOWN). */
  redirect: channel<RespRedirectPayload>('wirelock:resp:redirect'),
  /** Redis Cluster: the slot map was read. */
  slots: channel<RespSlotsPayload>('wirelock:resp:slots'),
} as const;

// ---- Locks (src/locks), shared by every backend. Fences are bigints; times are performance.now() ms.

export type LockBackend = 'redis' | 'redlock' | 'etcd';

export interface LockAcquirePayload {
  backend: LockBackend;
  key: string;
  token: string;
  fence: bigint;
  /** Absent for the raw etcd Mutex, which has no HeldLock. */
  validUntil?: number;
  waitedMs: number;
  attempts?: number;
}
/**
 * An acquire found the lock held and is about to sleep. RedisLocker: `pttl`, `headLeft`; Redlock:
 * `pttl`, or `delayMs` when backing off from unreachable nodes; etcd: `token` (our key),
 * `predecessor` (the key it waits on) and `revision` (of its last read).
 */
export interface LockWaitPayload {
  backend: LockBackend;
  key: string;
  attempts?: number;
  pttl?: number;
  headLeft?: number;
  delayMs?: number;
  token?: string;
  predecessor?: string;
  revision?: bigint;
}
export interface LockExtendPayload { backend: string; key: string; token: string; fence: bigint; validUntil: number }
/** `wasHeld: false`: the lock had already been lost. */
export interface LockReleasePayload { backend: string; key: string; token: string; fence: bigint; wasHeld: boolean }
export interface LockLostPayload { backend: string; key: string; token: string; fence: bigint; reason: LockLostReason; error: LockLostError }

/**
 * An acquire (or campaign) ended without the lock: `reason` 'timeout' (its deadline, or one attempt
 * with waitTimeoutMs 0 that found it held), 'aborted' (the caller's signal), 'closed' (its locker
 * closed) or 'error' (a failure it does not wait out: permission, bad argument, a lost candidacy).
 */
export interface LockGiveUpPayload { backend: LockBackend; key: string; reason: 'timeout' | 'aborted' | 'closed' | 'error'; waitedMs: number; error: unknown }
/**
 * A wait began (`delta` 1) or ended, granted or not (`delta` -1); `id` names the wait (unique in the
 * process), so a subscriber that starts late can ignore the ends of waits it never saw begin.
 */
export interface LockWaiterPayload { backend: LockBackend; key: string; id: number; delta: 1 | -1 }

export const lockChannels = {
  /** A lock was acquired. */
  acquire: channel<LockAcquirePayload>('wirelock:lock:acquire'),
  /** An acquire found the lock held and starts (or continues) waiting. */
  wait: channel<LockWaitPayload>('wirelock:lock:wait'),
  /** A lock's lease was extended. */
  extend: channel<LockExtendPayload>('wirelock:lock:extend'),
  /** A lock was released by its holder. */
  release: channel<LockReleasePayload>('wirelock:lock:release'),
  /** A lock was lost (its signal aborted with LockLostError). */
  lost: channel<LockLostPayload>('wirelock:lock:lost'),
  /** An acquire ended without the lock. */
  giveUp: channel<LockGiveUpPayload>('wirelock:lock:giveup'),
  /** A wait began or ended. */
  waiter: channel<LockWaiterPayload>('wirelock:lock:waiter'),
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

// ---- etcd (src/etcdrpc, src/locks/etcd-*). Messages are the decoded protobuf objects, redacted by redactEtcd.

export interface EtcdCallPayload { method: string; endpoint: string; request: unknown; attempt: number }
export interface EtcdResponsePayload { method: string; endpoint: string; response: unknown; durationMs: number }
/** `retry`: the call will be sent again (on the next endpoint, or after re-authenticating). */
export interface EtcdErrorPayload { method: string; endpoint: string; error: unknown; retry: boolean }
/** `stream` is the method's full name: `Watch.Watch`, `Lease.LeaseKeepAlive`. */
export interface EtcdStreamOpenPayload { stream: string; endpoint: string }
export interface EtcdStreamMessagePayload { stream: string; endpoint: string | undefined; message: unknown }
/** `error` undefined when we closed the stream ourselves. */
export interface EtcdStreamClosePayload { stream: string; endpoint: string; error: Error | undefined }
/**
 * One HTTP/2 frame of the 'h2' transport, sent ('out') or received ('in'): its type name (DATA, HEADERS,
 * SETTINGS, …), flags, stream and payload length. Never the payload (HEADERS carry the auth token).
 */
export interface EtcdH2FramePayload { endpoint: string; direction: 'in' | 'out'; type: string; flags: number; streamId: number; length: number }
export interface EtcdSessionPayload {
  lease: bigint;
  event: 'granted' | 'renewed' | 'lost' | 'closed';
  ttl: number;
  validUntil: number;
  error?: Error;
}

export const etcdChannels = {
  /** A unary call is sent. */
  call: channel<EtcdCallPayload>('wirelock:etcd:call'),
  /** A unary call answered. */
  response: channel<EtcdResponsePayload>('wirelock:etcd:response'),
  /** A unary call failed. */
  error: channel<EtcdErrorPayload>('wirelock:etcd:error'),
  /** A stream (Watch or LeaseKeepAlive) is opened. */
  streamOpen: channel<EtcdStreamOpenPayload>('wirelock:etcd:stream:open'),
  /** A message is written on a stream. */
  streamSend: channel<EtcdStreamMessagePayload>('wirelock:etcd:stream:send'),
  /** A message arrived on a stream. */
  streamReceive: channel<EtcdStreamMessagePayload>('wirelock:etcd:stream:receive'),
  /** A stream ended. */
  streamClose: channel<EtcdStreamClosePayload>('wirelock:etcd:stream:close'),
  /** An HTTP/2 frame of the 'h2' transport was sent or received. */
  h2Frame: channel<EtcdH2FramePayload>('wirelock:etcd:h2:frame'),
  /** A session changed state. */
  session: channel<EtcdSessionPayload>('wirelock:etcd:session'),
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
