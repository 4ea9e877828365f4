/**
 * The gRPC side of the etcd client: one channel per endpoint (endpoints.ts: wirelock's own HTTP/2, or
 * grpc-js), failover between them, the call deadline, retries, and the auth token.
 *
 * Retry rules (the same lines etcd's Go client draws):
 * - reads and lease calls are sent again, on the next endpoint, after an Unavailable answer;
 * - writes are sent again only when the transport had no connection to send them on (so the first
 *   one cannot have been applied), unless the caller vouches that the write is idempotent;
 * - "invalid auth token" (an expired simple token) re-authenticates once and sends the call again:
 *   etcd rejects such a call before applying it.
 * Every attempt shares one deadline (`callTimeoutMs`); a DEADLINE_EXCEEDED becomes TimeoutError.
 */
import type { SecureContextOptions } from 'node:tls';
import { etcdChannels, redactEtcd } from '../diagnostics.js';
import { backoffMs, sharedController, sleep } from '../abort.js';
import { ClosedError, ProtocolError } from '../errors.js';
import { method, type MethodInfo } from './codec.js';
import { makeEndpoints, type RpcDuplex, type RpcEndpoint, type TransportKind } from './endpoints.js';
import type { HeaderList } from './h2/hpack.js';
import { isInvalidToken, isUnavailable, toError, wasNotSent } from './status.js';
import type { AuthenticateRequest, AuthenticateResponse } from './types.js';

export type { RpcEndpoint as Endpoint, TransportKind } from './endpoints.js';

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
  /** Which gRPC transport: wirelock's own HTTP/2 ('h2') or @grpc/grpc-js. */
  transport: TransportKind;
}

/** The least time worth starting one more attempt with, before a call's deadline. */
const MIN_ATTEMPT_MS = 20;

/** The channels of one client, the endpoint calls go to, the auth token, and unary calls with their retries. */
export class Transport {
  /** One per endpoint URL, in the order given. */
  readonly endpoints: readonly RpcEndpoint[];
  /** Default deadline of each call, retries included, in milliseconds. */
  readonly callTimeoutMs: number;
  readonly #username: string | undefined;
  readonly #password: string | undefined;
  readonly #closing = sharedController();
  #current = 0;
  #token: string | undefined;
  #authenticating: Promise<void> | undefined;

  constructor(opts: TransportOptions) {
    this.endpoints = makeEndpoints(opts.transport, opts.endpoints, opts.tls);
    this.callTimeoutMs = opts.callTimeoutMs;
    this.#username = opts.username;
    this.#password = opts.password;
  }

  /** True once close() has been called. */
  get closed(): boolean {
    return this.#closing.signal.aborted;
  }

  /** The endpoint new calls and streams go to. */
  get current(): RpcEndpoint {
    return this.endpoints[this.#current]!;
  }

  /** `failed` did not serve: move on to the next endpoint (unless someone already did). */
  failover(failed: RpcEndpoint): void {
    if (this.current === failed) this.#current = (this.#current + 1) % this.endpoints.length;
  }

  /**
   * Metadata for a call or stream: the auth token, and for streams `hasleader: true`, which makes a
   * member with no leader refuse the stream instead of keeping it open and silent.
   */
  metadata(kind: 'unary' | 'stream'): HeaderList {
    const md: HeaderList = [];
    if (this.#token !== undefined) md.push(['token', this.#token]);
    if (kind === 'stream') md.push(['hasleader', 'true']);
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

  /** One attempt on `endpoint`, with the diagnostics around it. Rejects with a wirelock error. */
  async #attempt<Req, Res>(
    m: MethodInfo<Req, Res>,
    endpoint: RpcEndpoint,
    request: Req,
    bytes: Buffer,
    deadline: number,
    timeoutMs: number,
    attempt: number,
    signal: AbortSignal | undefined,
  ): Promise<Res> {
    const sentAt = performance.now();
    if (etcdChannels.call.hasSubscribers) {
      etcdChannels.call.publish({ method: m.name, endpoint: endpoint.url, request: redactEtcd(m.name, request), attempt });
    }
    let answer: Buffer;
    try {
      answer = await endpoint.unary(m.path, bytes, this.metadata('unary'), deadline, signal);
    } catch (failure) {
      const { code, details } = failure as { code: number; details: string };
      throw toError({ code, details }, m.name, endpoint.url, timeoutMs);
    }
    let res: Res;
    try {
      res = m.response.decode(answer);
    } catch (err) {
      throw new ProtocolError(`${m.name} from ${endpoint.url}: the answer could not be decoded`, { cause: err });
    }
    if (etcdChannels.response.hasSubscribers) {
      etcdChannels.response.publish({ method: m.name, endpoint: endpoint.url, response: redactEtcd(m.name, res), durationMs: performance.now() - sentAt });
    }
    return res;
  }

  /** Opens a bidi stream on the current endpoint (token and hasleader in its metadata). */
  openStream<Req, Res>(m: MethodInfo<Req, Res>): { call: RpcDuplex<Req, Res>; endpoint: RpcEndpoint } {
    if (this.closed) throw this.#closing.signal.reason;
    const endpoint = this.current;
    const call = endpoint.stream(m, this.metadata('stream'));
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
    for (const e of this.endpoints) e.close();
  }
}
