/**
 * The gRPC side of the etcd client: one channel per endpoint, failover between them, the call
 * deadline, retries, and the auth token.
 *
 * Retry rules (the same lines etcd's Go client draws):
 * - reads and lease calls are sent again, on the next endpoint, after an Unavailable answer;
 * - writes are sent again only when grpc-js had no connection to send them on (so the first
 *   one cannot have been applied), unless the caller vouches that the write is idempotent;
 * - "invalid auth token" (an expired simple token) re-authenticates once and sends the call again:
 *   etcd rejects such a call before applying it.
 * Every attempt shares one deadline (`callTimeoutMs`); a DEADLINE_EXCEEDED becomes TimeoutError.
 */
import * as grpc from '@grpc/grpc-js';
import type { SecureContextOptions } from 'node:tls';
import { etcdChannels, redactEtcd } from '../diagnostics.js';
import { backoffMs, noop, onAbort, sharedController, sleep } from '../abort.js';
import { ClosedError, ProtocolError, invalidType, invalidValue } from '../errors.js';
import { method, type MethodInfo } from './codec.js';
import { isInvalidToken, isUnavailable, toError, wasNotSent } from './status.js';
import type { AuthenticateRequest, AuthenticateResponse } from './types.js';

/** Options of one etcd call. */
export interface CallOptions {
  /** Aborts the call; it rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * Deadline for the call, all retries included, in milliseconds.
   * @defaultValue the client's `callTimeoutMs`
   */
  timeoutMs?: number;
}

interface UnaryOptions extends CallOptions {
  /** False for the Authenticate call itself: no token to get before it, none to refresh after it. Default true. */
  authenticate?: boolean;
}

/** 'read': safe to send again. 'write': only if it never left. 'idempotent-write': the caller vouches. */
export type RetryPolicy = 'read' | 'write' | 'idempotent-write';

/** The checked options of a Transport (EtcdClient.connect() builds them from EtcdOptions). */
export interface TransportOptions {
  /** Endpoint URLs, all http:// or all https://. */
  endpoints: string[];
  /** User to authenticate as; none: no authentication. */
  username?: string;
  /** The user's password (an empty one is sent when absent). */
  password?: string;
  /** CA and client certificate for https:// endpoints. */
  tls?: SecureContextOptions;
  /** Deadline of each call, retries included, in milliseconds. */
  callTimeoutMs: number;
}

/** The least time worth starting one more attempt with, before a call's deadline. */
const MIN_ATTEMPT_MS = 20;

/** etcd refuses keepalive pings more often than every 5 s (GOAWAY too_many_pings). */
const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  // etcd's enforcement policy counts a ping with no stream open as a strike.
  'grpc.keepalive_permit_without_calls': 0,
  // Come back quickly when a member restarts (grpc's default backoff grows to two minutes).
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 2_000,
  // Retries are ours (transport.unary); grpc-js's own layer would only add a buffering copy per call.
  'grpc.enable_retries': 0,
};

/** One member's address and its gRPC channel. */
export class Endpoint {
  /** As given, e.g. "http://127.0.0.1:2379": the name errors and diagnostics use. */
  readonly url: string;
  readonly #target: string;
  readonly #credentials: grpc.ChannelCredentials;
  #client: grpc.Client | undefined;

  constructor(url: string, credentials: grpc.ChannelCredentials) {
    this.url = url;
    this.#target = new URL(url).host;
    this.#credentials = credentials;
  }

  /** The channel, created on first use and kept (grpc-js reconnects it by itself). */
  get client(): grpc.Client {
    this.#client ??= new grpc.Client(this.#target, this.#credentials, CHANNEL_OPTIONS);
    return this.#client;
  }

  /** Closes the channel; the next use of `client` creates a new one. */
  close(): void {
    this.#client?.close();
    this.#client = undefined;
  }
}

/** The channels of one client, the endpoint calls go to, the auth token, and unary calls with their retries. */
export class Transport {
  /** One per endpoint URL, in the order given. */
  readonly endpoints: readonly Endpoint[];
  /** Default deadline of each call, retries included, in milliseconds. */
  readonly callTimeoutMs: number;
  readonly #username: string | undefined;
  readonly #password: string | undefined;
  readonly #closing = sharedController();
  #current = 0;
  #token: string | undefined;
  #authenticating: Promise<void> | undefined;
  readonly #inflight = new Set<ReturnType<grpc.Channel['createCall']>>();

  constructor(opts: TransportOptions) {
    const credentials = channelCredentials(opts.endpoints, opts.tls);
    this.endpoints = opts.endpoints.map((url) => new Endpoint(url, credentials));
    this.callTimeoutMs = opts.callTimeoutMs;
    this.#username = opts.username;
    this.#password = opts.password;
  }

  /** True once close() has been called. */
  get closed(): boolean {
    return this.#closing.signal.aborted;
  }

  /** The endpoint new calls and streams go to. */
  get current(): Endpoint {
    return this.endpoints[this.#current]!;
  }

  /** `failed` did not serve: move on to the next endpoint (unless someone already did). */
  failover(failed: Endpoint): void {
    if (this.current === failed) this.#current = (this.#current + 1) % this.endpoints.length;
  }

  /**
   * Metadata for a call or stream: the auth token, and for streams `hasleader: true`, which makes a
   * member with no leader refuse the stream instead of keeping it open and silent.
   */
  metadata(kind: 'unary' | 'stream'): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.#token !== undefined) md.set('token', this.#token);
    if (kind === 'stream') md.set('hasleader', 'true');
    return md;
  }

  /** The token a stream was opened with, to tell whether a later "invalid auth token" is stale. */
  get token(): string | undefined {
    return this.#token;
  }

  /**
   * Authenticate (if credentials were given), once at a time; `stale` is the token that failed.
   * Resolves when a fresh token is there: an authentication in flight is joined, whoever started it
   * (meanwhile there is no token at all, and a call or stream made then would carry none).
   */
  reauthenticate(stale: string | undefined): Promise<void> {
    if (this.#username === undefined) return Promise.resolve();
    if (this.#authenticating) return this.#authenticating;
    if (this.#token !== stale) return Promise.resolve(); // someone refreshed it already
    this.#authenticating ??= this.#authenticate().finally(() => (this.#authenticating = undefined));
    return this.#authenticating;
  }

  async #authenticate(): Promise<void> {
    this.#token = undefined;
    const m = method<AuthenticateRequest, AuthenticateResponse>('Auth', 'Authenticate');
    const res = await this.unary(m, { name: this.#username!, password: this.#password ?? '' }, 'read', { authenticate: false });
    this.#token = res.token;
  }

  /** A unary call with the retry rules above. Encoding errors (bad arguments) reject at once. */
  async unary<Req, Res>(m: MethodInfo<Req, Res>, request: Req, policy: RetryPolicy, opts: UnaryOptions = {}): Promise<Res> {
    const bytes = m.request.encode(request);
    const timeoutMs = opts.timeoutMs ?? this.callTimeoutMs;
    const deadline = performance.now() + timeoutMs;
    const signal = opts.signal;
    const auth = opts.authenticate ?? true;
    let reauthenticated = false;
    for (let attempt = 1, failedInARow = 0; ; attempt++) {
      if (this.closed) throw this.#closing.signal.reason;
      if (signal?.aborted) throw signal.reason;
      if (auth && this.#username !== undefined && this.#token === undefined) await this.reauthenticate(undefined);
      const endpoint = this.current;
      const token = this.#token;
      try {
        return await this.#attempt(m, endpoint, request, bytes, deadline, timeoutMs, attempt, signal);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (this.closed) throw this.#closing.signal.reason;
        let retry = false;
        if (auth && isInvalidToken(err) && !reauthenticated) {
          reauthenticated = true;
          retry = true;
        }
        // Each endpoint gets one quick try; once all have failed, back off (capped, with jitter).
        let pause = 0;
        if (!retry && isUnavailable(err)) {
          this.failover(endpoint);
          retry = policy !== 'write' || wasNotSent(err);
          if (++failedInARow >= this.endpoints.length) pause = backoffMs(failedInARow - this.endpoints.length, { jitterMs: 25 });
          // A retry that could only start at the deadline would end in a TimeoutError and hide why
          // the call failed (no endpoint can be reached): report this error instead.
          if (deadline - performance.now() - pause < MIN_ATTEMPT_MS) retry = false;
        }
        if (etcdChannels.error.hasSubscribers) {
          etcdChannels.error.publish({ method: m.name, endpoint: endpoint.url, error: err, retry });
        }
        if (!retry) throw err;
        if (isInvalidToken(err)) {
          await this.reauthenticate(token);
          continue;
        }
        if (pause > 0) await sleep(pause, signal);
      }
    }
  }

  /**
   * One attempt, straight on the channel (the layer grpc-js's Client builds on): with no interceptors
   * to run, this skips a caller-stack capture and two wrapper objects per call (docs/bench.md has
   * what that saved).
   */
  #attempt<Req, Res>(
    m: MethodInfo<Req, Res>,
    endpoint: Endpoint,
    request: Req,
    bytes: Buffer,
    deadline: number,
    timeoutMs: number,
    attempt: number,
    signal: AbortSignal | undefined,
  ): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const sentAt = performance.now();
      if (etcdChannels.call.hasSubscribers) {
        etcdChannels.call.publish({ method: m.name, endpoint: endpoint.url, request: redactEtcd(m.name, request), attempt });
      }
      // grpc-js wants a wall-clock deadline; the budget itself is measured on the monotonic clock.
      const call = endpoint.client.getChannel().createCall(m.path, Date.now() + Math.max(1, deadline - sentAt), null, null, null);
      let answer: Buffer | undefined;
      call.start(this.metadata('unary'), {
        onReceiveMetadata: noop,
        onReceiveMessage: (message: Buffer) => {
          answer = message;
        },
        onReceiveStatus: (status: grpc.StatusObject) => {
          offAbort();
          this.#inflight.delete(call);
          if (status.code !== grpc.status.OK) return reject(toError(status, m.name, endpoint.url, timeoutMs));
          let res: Res;
          try {
            if (answer === undefined) throw new Error('no message');
            res = m.response.decode(answer);
          } catch (err) {
            return reject(new ProtocolError(`${m.name} from ${endpoint.url}: the answer could not be decoded`, { cause: err }));
          }
          if (etcdChannels.response.hasSubscribers) {
            etcdChannels.response.publish({
              method: m.name,
              endpoint: endpoint.url,
              response: redactEtcd(m.name, res),
              durationMs: performance.now() - sentAt,
            });
          }
          resolve(res);
        },
      });
      call.sendMessageWithContext({}, bytes);
      call.halfClose();
      call.startRead();
      const offAbort = onAbort(signal, () => call.cancelWithStatus(grpc.status.CANCELLED, 'aborted by the caller'));
      // Not a listener on the close signal per call: hundreds may be in flight.
      this.#inflight.add(call);
    });
  }

  /** Opens a bidi stream on the current endpoint (token and hasleader in its metadata). */
  openStream<Req, Res>(m: MethodInfo<Req, Res>): { call: grpc.ClientDuplexStream<Req, Res>; endpoint: Endpoint } {
    if (this.closed) throw this.#closing.signal.reason;
    const endpoint = this.current;
    const call = endpoint.client.makeBidiStreamRequest<Req, Res>(m.path, m.request.encode, m.response.decode, this.metadata('stream'));
    if (etcdChannels.streamOpen.hasSubscribers) etcdChannels.streamOpen.publish({ stream: m.name, endpoint: endpoint.url });
    return { call, endpoint };
  }

  /** Aborted when the client closes: long waits (stream reconnects) listen to it. */
  get closeSignal(): AbortSignal {
    return this.#closing.signal;
  }

  /** Aborts `closeSignal` with ClosedError, cancels the unary calls in flight and closes every channel. */
  close(): void {
    if (this.closed) return;
    this.#closing.abort(new ClosedError('EtcdClient'));
    for (const call of this.#inflight) call.cancelWithStatus(grpc.status.CANCELLED, 'client closed');
    this.#inflight.clear();
    for (const e of this.endpoints) e.close();
  }
}

function pem(value: unknown, name: string): Buffer | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string' || Buffer.isBuffer(value)) return Buffer.from(value);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string' || Buffer.isBuffer(v))) {
    return Buffer.from(value.map((v) => v.toString()).join('\n'));
  }
  throw invalidType(`tls.${name} must be a PEM string or Buffer (or an array of them)`);
}

/** Plain for http:// endpoints, TLS for https:// (with the given CA and client certificate). */
function channelCredentials(endpoints: string[], tls: SecureContextOptions | undefined): grpc.ChannelCredentials {
  const secure = endpoints.map((e) => new URL(e).protocol === 'https:');
  if (secure.some((s) => s !== secure[0])) throw invalidValue('endpoints must all be http:// or all https://');
  if (!secure[0]) {
    if (tls !== undefined) throw invalidValue('tls options need https:// endpoints');
    return grpc.credentials.createInsecure();
  }
  if (tls?.passphrase !== undefined) throw invalidValue('tls.passphrase is not supported: give an unencrypted key');
  return grpc.credentials.createSsl(pem(tls?.ca, 'ca'), pem(tls?.key, 'key'), pem(tls?.cert, 'cert'));
}
