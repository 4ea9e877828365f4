/**
 * Redis connection options, and the `redis://` / `rediss://` URL form of them.
 *
 *   redis://[user[:password]@]host[:port][/db]      rediss:// = the same over TLS
 *   redis+sentinel://[user[:password]@]host1:port1,host2:port2/masterName[/db]
 *                                                    rediss+sentinel:// = TLS to the sentinels and the master
 *
 * User and password are percent-decoded, so a password with `@` or `:` is written %40 / %3A.
 */
import type tls from 'node:tls';
import { backoffMs } from '../abort.js';
import { invalidType, invalidValue, outOfRange } from '../errors.js';

/** Decides whether (and when) to reconnect after a connection is lost: a delay in ms, or false to give up. */
export type ReconnectStrategy = (attempt: number, cause: Error | undefined) => number | false;

/**
 * How {@link RedisClient.connect} reaches and logs in to a Redis server. Every field is optional; a
 * `redis://` URL sets host, port, username, password, db and (for `rediss://`) tls.
 */
export interface RedisOptions {
  /**
   * The server's host name or IP address.
   * @defaultValue `'127.0.0.1'`
   */
  host?: string;
  /**
   * The server's TCP port (an integer from 1 to 65535).
   * @defaultValue `6379`
   */
  port?: number;
  /**
   * ACL user name (Redis 6+), sent with AUTH. AUTH is sent only when `password` is set.
   * @defaultValue none: AUTH, if sent, carries only the password (the `default` user)
   */
  username?: string;
  /**
   * The password sent with AUTH on every (re)connect. It never appears in an error message.
   * @defaultValue none: no AUTH is sent
   */
  password?: string;
  /**
   * Database index selected on every (re)connect.
   * @defaultValue `0`
   */
  db?: number;
  /**
   * true, or node:tls options (ca, cert, key, servername, rejectUnauthorized…). Certificates are verified by default.
   * @defaultValue none: plain TCP (`true` for a `rediss://` URL)
   */
  tls?: boolean | tls.ConnectionOptions;
  /**
   * How long to wait for the TCP (or TLS) connection to be established, in ms, before failing with
   * ConnectionError; also how long the first connect without a password waits for the server to answer
   * its PING (TimeoutError).
   * @defaultValue `5000`
   */
  connectTimeoutMs?: number;
  /**
   * How long a command waits for its reply (a wait for a reconnect included), in ms, unless the command's
   * own `timeoutMs` says otherwise. A timed-out connection is destroyed, never reused.
   * @defaultValue `5000`
   */
  commandTimeoutMs?: number;
  /**
   * When to reconnect after the connection is lost.
   * @defaultValue min(2^attempt × 50, 2000) ms plus up to 200 ms of jitter, forever
   */
  reconnect?: ReconnectStrategy;
  /**
   * Return bulk strings as Buffers instead of UTF-8 strings.
   * @defaultValue `false`
   */
  returnBuffers?: boolean;
  /**
   * The most bytes one reply may take on the wire. A server that sends more (or announces a longer bulk
   * string) gets ProtocolError and the connection is closed, so a broken or hostile server cannot make
   * the client buffer without bound.
   * @defaultValue 512 MiB, Redis's own largest bulk string (proto-max-bulk-len)
   */
  maxReplyBytes?: number;
  /**
   * Sentinels to ask for the master of `masterName` (Redis Sentinel). With them, `host` and `port` are
   * not used: the client connects to the master they name, confirms it with ROLE, and follows each
   * failover (`+switch-master`, or a READONLY reply from a demoted node). At least one.
   * @defaultValue none: connect to `host`:`port`
   */
  sentinels?: SentinelAddress[];
  /** The master's name as the sentinels monitor it (`sentinel monitor <name> …`). Required with `sentinels`. */
  masterName?: string;
  /**
   * ACL user for the sentinels themselves (their own `requirepass`/ACL, not the data nodes').
   * @defaultValue none
   */
  sentinelUsername?: string;
  /**
   * Password for the sentinels themselves; `password` is the data nodes'. Never in an error message.
   * @defaultValue none: no AUTH to the sentinels
   */
  sentinelPassword?: string;
  /**
   * TLS to the sentinels: true, or node:tls options.
   * @defaultValue the same as `tls`
   */
  sentinelTls?: boolean | tls.ConnectionOptions;
}

/** One sentinel's address, in {@link RedisOptions.sentinels}. */
export interface SentinelAddress {
  /** The sentinel's host name or IP address. */
  host: string;
  /** Its TCP port (sentinels listen on 26379 by default). */
  port: number;
}

/** Where the sentinels are and how to log in to them (ResolvedRedisOptions.sentinel). */
export interface ResolvedSentinel {
  sentinels: Array<{ host: string; port: number }>;
  masterName: string;
  username: string | undefined;
  password: string | undefined;
  tls: tls.ConnectionOptions | undefined;
}

/** RedisOptions with every default filled in and every value checked (what resolveRedisOptions returns). */
export interface ResolvedRedisOptions {
  host: string;
  port: number;
  username: string | undefined;
  password: string | undefined;
  db: number;
  tls: tls.ConnectionOptions | undefined;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  reconnect: ReconnectStrategy;
  returnBuffers: boolean;
  maxReplyBytes: number;
  /** Set when the master is found through Sentinel. */
  sentinel: ResolvedSentinel | undefined;
}

/** 512 MiB: the largest bulk string a default Redis accepts (proto-max-bulk-len). */
export const DEFAULT_MAX_REPLY_BYTES = 512 * 1024 * 1024;

/** The default ReconnectStrategy: min(2^attempt × 50, 2000) ms plus up to 200 ms of jitter, never giving up. */
export const defaultReconnect: ReconnectStrategy = (attempt) =>
  backoffMs(attempt, { capMs: 2000, jitterMs: 200 });

/**
 * The options a `redis://` or `rediss://` URL gives: host, port, percent-decoded username and password,
 * db from the path, and `tls: true` for rediss. Throws TypeError (ERR_INVALID_ARG_VALUE) for a malformed URL.
 */
export function parseRedisUrl(url: string): RedisOptions {
  if (/^rediss?\+sentinel:/i.test(url)) return parseSentinelUrl(url);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    // The URL may hold a password: never echo it back.
    throw invalidValue('invalid Redis URL (expected redis://[user[:password]@]host[:port][/db])');
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw invalidValue(`unsupported Redis URL scheme "${u.protocol}" (expected redis: or rediss:)`);
  }
  const opts: RedisOptions = { host: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1' };
  if (u.port) opts.port = Number(u.port);
  if (u.username) opts.username = decodeURIComponent(u.username);
  if (u.password) opts.password = decodeURIComponent(u.password);
  const path = u.pathname.replace(/^\//, '');
  if (path) {
    if (!/^\d+$/.test(path)) throw invalidValue(`invalid database "${path}" in Redis URL (expected a number)`);
    opts.db = Number(path);
  }
  if (u.protocol === 'rediss:') opts.tls = true;
  return opts;
}

/**
 * `redis+sentinel://[user[:password]@]host1:port1,host2:port2/masterName[/db]`: the sentinels (port
 * 26379 when omitted), the master's name, and the data nodes' credentials and db.
 * `rediss+sentinel://` uses TLS for the sentinels and the master. The sentinels' own credentials
 * can only be given as options (`sentinelUsername`, `sentinelPassword`).
 */
function parseSentinelUrl(url: string): RedisOptions {
  const m = /^(rediss?)\+sentinel:\/\/(?:([^@/]*)@)?([^/@]+)\/([^/]+)(?:\/([^/]*))?\/?$/i.exec(url);
  // The URL may hold a password: never echo it back.
  if (!m) throw invalidValue('invalid Redis Sentinel URL (expected redis+sentinel://[user[:password]@]host:port[,host:port…]/masterName[/db])');
  const [, scheme, auth, hosts, name, db] = m;
  const opts: RedisOptions = { masterName: decodeURIComponent(name!), sentinels: [] };
  for (const part of hosts!.split(',')) {
    const hp = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(part.trim());
    if (!hp) throw invalidValue(`invalid sentinel address "${part}" in Redis Sentinel URL (expected host[:port])`);
    opts.sentinels!.push({ host: hp[1] ?? hp[2]!, port: hp[3] === undefined ? 26379 : Number(hp[3]) });
  }
  if (auth) {
    const colon = auth.indexOf(':');
    const user = colon === -1 ? auth : auth.slice(0, colon);
    if (user) opts.username = decodeURIComponent(user);
    if (colon !== -1) opts.password = decodeURIComponent(auth.slice(colon + 1));
  }
  if (db) {
    if (!/^\d+$/.test(db)) throw invalidValue(`invalid database "${db}" in Redis Sentinel URL (expected a number)`);
    opts.db = Number(db);
  }
  if (scheme!.toLowerCase() === 'rediss') opts.tls = true;
  return opts;
}

/** The sentinel part of the options, checked; undefined without `sentinels`. */
function resolveSentinel(o: RedisOptions, tlsOpts: tls.ConnectionOptions | undefined): ResolvedSentinel | undefined {
  if (o.sentinels === undefined) {
    if (o.masterName !== undefined) throw invalidValue('masterName is given without sentinels');
    return undefined;
  }
  if (!Array.isArray(o.sentinels) || o.sentinels.length === 0) throw invalidValue('sentinels must be a non-empty array of { host, port }');
  const sentinels = o.sentinels.map((s, i) => {
    if (s === null || typeof s !== 'object' || typeof s.host !== 'string' || s.host === '') throw invalidValue(`sentinels[${i}] must be { host, port }`);
    if (!Number.isInteger(s.port) || s.port <= 0 || s.port > 65535) throw outOfRange(`invalid port of sentinels[${i}]: ${String(s.port)}`);
    return { host: s.host, port: s.port };
  });
  if (typeof o.masterName !== 'string' || o.masterName === '') throw invalidValue('masterName (the name the sentinels monitor) is required with sentinels');
  const sentinelTls = o.sentinelTls === undefined ? tlsOpts : o.sentinelTls === true ? {} : o.sentinelTls ? o.sentinelTls : undefined;
  return { sentinels, masterName: o.masterName, username: o.sentinelUsername, password: o.sentinelPassword, tls: sentinelTls };
}

/**
 * A URL or options object, with `overrides` on top, resolved to ResolvedRedisOptions: defaults filled in,
 * port, db and timeouts checked (RangeError with ERR_OUT_OF_RANGE when out of range).
 */
export function resolveRedisOptions(input: string | RedisOptions, overrides?: RedisOptions): ResolvedRedisOptions {
  if (typeof input !== 'string' && (typeof input !== 'object' || input === null)) {
    throw invalidType('RedisClient.connect expects a redis:// URL or an options object');
  }
  if (overrides !== undefined && (typeof overrides !== 'object' || overrides === null)) {
    throw invalidType('RedisClient.connect options must be an object');
  }
  const o = { ...(typeof input === 'string' ? parseRedisUrl(input) : input), ...overrides };
  const port = o.port ?? 6379;
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw outOfRange(`invalid port: ${String(port)}`);
  const db = o.db ?? 0;
  if (!Number.isInteger(db) || db < 0) throw outOfRange(`invalid db: ${String(db)}`);
  const tlsOpts = o.tls === true ? {} : o.tls ? o.tls : undefined;
  return {
    host: o.host ?? '127.0.0.1',
    port,
    username: o.username,
    password: o.password,
    db,
    tls: tlsOpts,
    connectTimeoutMs: positive('connectTimeoutMs', o.connectTimeoutMs, 5000),
    commandTimeoutMs: positive('commandTimeoutMs', o.commandTimeoutMs, 5000),
    reconnect: o.reconnect ?? defaultReconnect,
    returnBuffers: o.returnBuffers ?? false,
    maxReplyBytes: positive('maxReplyBytes', o.maxReplyBytes, DEFAULT_MAX_REPLY_BYTES),
    sentinel: resolveSentinel(o, tlsOpts),
  };
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value > 0)) throw outOfRange(`${name} must be a positive number, got ${String(value)}`);
  return value;
}
