/**
 * gRPC over our own HTTP/2 (the "gRPC over HTTP2" protocol): a channel per etcd member that keeps one
 * connection, and on it unary calls and bidi streams.
 *
 * A call is one HTTP/2 stream: HEADERS (:method POST, :scheme, :path /pkg.Service/Method, :authority,
 * content-type application/grpc, te trailers, grpc-timeout, then the metadata), the request as one
 * length-prefixed DATA message, and for a unary call END_STREAM with it. The answer is HEADERS
 * (:status 200), DATA messages, and trailers (grpc-status, grpc-message), or "trailers only": one
 * HEADERS with END_STREAM carrying grpc-status.
 *
 * Failures reach the caller as an {@link RpcFailure}: a gRPC status code and text. Those of the
 * connection are UNAVAILABLE, and their text starts "no connection established" or "failed to
 * connect" when the request certainly never left (no connection, or GOAWAY or REFUSED_STREAM said it
 * was not processed): status.ts's wasNotSent() relies on that wording, and only then may a write be
 * sent again.
 */
import { EventEmitter } from 'node:events';
import type tls from 'node:tls';
import { Status } from '../status.js';
import { backoffMs, noop, onAbort } from '../../abort.js';
import { Http2Session, type H2Stream, type StreamEvents } from './session.js';
import { GrpcFramingError, GrpcMessageReader, encodeGrpcMessage, formatGrpcTimeout, decodeGrpcMessageText } from './grpc-framing.js';
import { ErrorCode } from './frames.js';
import type { HeaderList } from './hpack.js';

/** A failed call or stream, as a gRPC status. */
export class RpcFailure extends Error {
  readonly code: number;
  readonly details: string;
  constructor(code: number, details: string) {
    super(details);
    this.code = code;
    this.details = details;
  }
}

export interface H2ChannelOptions {
  /** http://host:port or https://host:port. */
  url: string;
  /** TLS options for https:// (CA, client certificate). */
  tls?: tls.ConnectionOptions;
  connectTimeoutMs?: number;
  /**
   * A keepalive PING this often while calls or streams are open. etcd counts pings more often than its
   * `--grpc-keepalive-min-time` (5 s by default) as strikes and answers GOAWAY "too_many_pings".
   * @defaultValue `10000`
   */
  keepaliveMs?: number;
}

/** Metadata names whose values are secrets: HPACK never-indexed (RFC 7541 7.1.3), never in a table. */
const SENSITIVE: ReadonlySet<string> = new Set(['token', 'authorization']);
/** Headers that change on every call: not worth a dynamic-table entry. */
const NO_INDEX: ReadonlySet<string> = new Set(['grpc-timeout']);
const USER_AGENT = 'wirelock-h2';

/** HTTP status to gRPC status, for answers that are not gRPC at all (the gRPC HTTP/2 spec's table). */
function fromHttpStatus(status: number): number {
  switch (status) {
    case 400: return Status.INTERNAL;
    case 401: return Status.UNAUTHENTICATED;
    case 403: return Status.PERMISSION_DENIED;
    case 404: return Status.UNIMPLEMENTED;
    case 429: case 502: case 503: case 504: return Status.UNAVAILABLE;
    default: return Status.UNKNOWN;
  }
}

/** The HTTP/2 side of one call: collects response headers, messages and trailers into a status. */
class CallReader implements StreamEvents {
  readonly #reader = new GrpcMessageReader();
  readonly #onMessage: (m: Buffer) => void;
  readonly #onEnd: (failure: RpcFailure | undefined) => void;
  readonly #label: string;
  #gotHeaders = false;
  #ended = false;

  constructor(label: string, onMessage: (m: Buffer) => void, onEnd: (failure: RpcFailure | undefined) => void) {
    this.#label = label;
    this.#onMessage = onMessage;
    this.#onEnd = onEnd;
  }

  headers(headers: HeaderList, endStream: boolean): void {
    if (!this.#gotHeaders) {
      this.#gotHeaders = true;
      const status = Number(headers.find(([n]) => n === ':status')?.[1]);
      if (status !== 200) return this.#end(new RpcFailure(fromHttpStatus(status), `${this.#label} answered HTTP status ${status}`));
      const type = headers.find(([n]) => n === 'content-type')?.[1] ?? '';
      if (!type.startsWith('application/grpc')) return this.#end(new RpcFailure(Status.UNKNOWN, `${this.#label} answered with content-type ${JSON.stringify(type)}, not gRPC`));
      if (!endStream) return;
    }
    // Trailers (or a trailers-only answer): the call's status.
    const code = Number(headers.find(([n]) => n === 'grpc-status')?.[1] ?? NaN);
    if (!Number.isInteger(code)) return this.#end(new RpcFailure(Status.UNKNOWN, `${this.#label} ended the call without a grpc-status`));
    if (code === Status.OK) {
      try {
        this.#reader.end();
      } catch (err) {
        return this.#end(new RpcFailure(Status.INTERNAL, `${this.#label}: ${(err as Error).message}`));
      }
      return this.#end(undefined);
    }
    this.#end(new RpcFailure(code, decodeGrpcMessageText(headers.find(([n]) => n === 'grpc-message')?.[1] ?? '')));
  }

  data(chunk: Buffer, endStream: boolean): void {
    if (this.#ended) return;
    let messages: Buffer[];
    try {
      messages = this.#reader.push(chunk);
    } catch (err) {
      // RESOURCE_EXHAUSTED for a message over the size limit, INTERNAL for a malformed one.
      const code = err instanceof GrpcFramingError ? err.grpcCode : Status.INTERNAL;
      return this.#end(new RpcFailure(code, `${this.#label}: ${(err as Error).message}`));
    }
    for (const m of messages) this.#onMessage(m);
    // DATA with END_STREAM and no trailers: the server broke the protocol.
    if (endStream) this.#end(new RpcFailure(Status.INTERNAL, `${this.#label} ended the call without trailers`));
  }

  reset(code: number): void {
    // RST_STREAM: REFUSED_STREAM means it was not processed (RFC 9113 8.7), so it may be sent again.
    const text = code === ErrorCode.REFUSED_STREAM ? 'failed to connect: the server refused the stream (REFUSED_STREAM)' : `the server reset the stream (code ${code})`;
    this.#end(new RpcFailure(code === ErrorCode.CANCEL ? Status.CANCELLED : Status.UNAVAILABLE, text));
  }

  closed(error: Error, sent: boolean): void {
    const text = error.message.replace(/^\S+: /, '');
    // Only a request that never reached the socket may be called unsent (status.ts wasNotSent()).
    const unsent = text.startsWith('failed to connect') ? text : `failed to connect: ${text}`;
    this.#end(new RpcFailure(Status.UNAVAILABLE, sent ? text.replace(/^failed to connect: /, 'connection lost: ') : unsent));
  }

  #end(failure: RpcFailure | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#onEnd(failure);
  }
}

/** `p`, unless the deadline (performance.now() clock) passes or `signal` aborts first. */
function untilDeadline<T>(p: Promise<T>, deadline: number, signal: AbortSignal | undefined): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let off = noop;
    const finish = (settle: () => void): void => {
      clearTimeout(timer);
      off();
      settle();
    };
    const timer = setTimeout(() => finish(() => reject(new RpcFailure(Status.DEADLINE_EXCEEDED, 'deadline exceeded while connecting'))), Math.max(1, deadline - performance.now()));
    off = onAbort(signal, () => finish(() => reject(new RpcFailure(Status.CANCELLED, 'aborted by the caller'))));
    p.then((v) => finish(() => resolve(v)), (err: unknown) => finish(() => reject(err)));
  });
}

/** One etcd member: one HTTP/2 connection, made on first use and again after it is lost. */
export class H2Channel {
  readonly #url: URL;
  readonly #opts: H2ChannelOptions;
  #session: Http2Session | undefined;
  #connecting: Promise<Http2Session> | undefined;
  /** After a failed connect: calls fail fast until then (as grpc-js's TRANSIENT_FAILURE), with this error. */
  #retryAt = 0;
  #lastError: Error | undefined;
  #failures = 0;
  #closed = false;

  constructor(opts: H2ChannelOptions) {
    this.#opts = opts;
    this.#url = new URL(opts.url);
  }

  /** The connection, made if needed. Rejects (not sent) when it cannot be made. */
  async #get(): Promise<Http2Session> {
    if (this.#session?.usable) return this.#session;
    if (this.#closed) throw new RpcFailure(Status.UNAVAILABLE, 'failed to connect: the channel is closed');
    if (this.#connecting) return this.#connecting;
    if (performance.now() < this.#retryAt && this.#lastError) throw new RpcFailure(Status.UNAVAILABLE, `no connection established (${this.#lastError.message})`);
    this.#connecting = Http2Session.connect({
      host: this.#url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(this.#url.port || (this.#url.protocol === 'https:' ? 443 : 80)),
      label: this.#opts.url,
      connectTimeoutMs: this.#opts.connectTimeoutMs ?? 5000,
      keepaliveMs: this.#opts.keepaliveMs ?? 10_000,
      keepaliveTimeoutMs: 5_000,
      ...(this.#url.protocol === 'https:' && { tls: this.#opts.tls ?? {} }),
    }).then(
      (session) => {
        this.#connecting = undefined;
        this.#failures = 0;
        if (this.#closed) {
          session.close();
          throw new RpcFailure(Status.UNAVAILABLE, 'failed to connect: the channel is closed');
        }
        this.#session = session;
        session.onClose(() => {
          if (this.#session === session) this.#session = undefined;
        });
        return session;
      },
      (err: Error) => {
        this.#connecting = undefined;
        // Back off as grpc-js would: 100 ms doubling to 2 s between attempts.
        this.#retryAt = performance.now() + backoffMs(this.#failures++, { baseMs: 100, capMs: 2000, jitterMs: 0 });
        this.#lastError = new Error(err.message.replace(/^.*?failed to connect: /, ''));
        // The wording grpc-js's is reduced to (status.ts withoutBoilerplate): the same error either way.
        throw new RpcFailure(Status.UNAVAILABLE, `no connection established (${this.#lastError.message})`);
      },
    );
    return this.#connecting;
  }

  #headers(path: string, metadata: HeaderList, timeoutMs: number | undefined): HeaderList {
    return [
      [':method', 'POST'],
      [':scheme', this.#url.protocol === 'https:' ? 'https' : 'http'],
      [':path', path],
      [':authority', this.#url.host],
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
      ['user-agent', USER_AGENT],
      ...(timeoutMs === undefined ? [] : [['grpc-timeout', formatGrpcTimeout(timeoutMs)] as [string, string]]),
      ...metadata,
    ];
  }

  /**
   * A unary call. `deadline` is on performance.now()'s clock. Rejects with RpcFailure: DEADLINE_EXCEEDED
   * at the deadline, CANCELLED when `signal` aborts (the stream is reset either way).
   */
  async unary(path: string, request: Buffer, metadata: HeaderList, deadline: number, signal?: AbortSignal): Promise<Buffer> {
    // A connection still being made (a blackholed address takes connectTimeoutMs) must not hold the
    // call past its own deadline.
    const session = this.#session?.usable ? this.#session : await untilDeadline(this.#get(), deadline, signal);
    return new Promise<Buffer>((resolve, reject) => {
      let answer: Buffer | undefined;
      let stream: H2Stream | undefined;
      let off = noop;
      const done = (failure: RpcFailure | undefined): void => {
        clearTimeout(timer);
        off();
        if (failure) return reject(failure);
        if (answer === undefined) return reject(new RpcFailure(Status.INTERNAL, `${this.#opts.url} answered OK with no message`));
        resolve(answer);
      };
      const events = new CallReader(this.#opts.url, (m) => (answer = m), done);
      const left = Math.max(1, deadline - performance.now());
      const timer = setTimeout(() => {
        stream?.cancel(ErrorCode.CANCEL);
        done(new RpcFailure(Status.DEADLINE_EXCEEDED, 'deadline exceeded'));
      }, left);
      try {
        stream = session.request(this.#headers(path, metadata, left), events, { sensitive: SENSITIVE, noIndex: NO_INDEX });
      } catch (err) {
        return done(new RpcFailure(Status.UNAVAILABLE, (err as Error).message.replace(/^\S+: /, '')));
      }
      stream.send(encodeGrpcMessage(request), true);
      off = onAbort(signal, () => {
        stream!.cancel(ErrorCode.CANCEL);
        done(new RpcFailure(Status.CANCELLED, 'aborted by the caller'));
      });
    });
  }

  /** A bidi stream (Watch, LeaseKeepAlive). Messages are written as they come; nothing is retried here. */
  stream<Req, Res>(path: string, metadata: HeaderList, encode: (r: Req) => Buffer, decode: (b: Buffer) => Res): H2Duplex<Req, Res> {
    const duplex = new H2Duplex<Req, Res>(encode);
    this.#get().then(
      (session) => {
        if (duplex.cancelled) return;
        const events = new CallReader(this.#opts.url, (m) => duplex.receive(decode(m)), (failure) => duplex.finish(failure));
        try {
          duplex.attach(session.request(this.#headers(path, metadata, undefined), events, { sensitive: SENSITIVE, noIndex: NO_INDEX }));
        } catch (err) {
          duplex.finish(new RpcFailure(Status.UNAVAILABLE, (err as Error).message.replace(/^\S+: /, '')));
        }
      },
      (err: RpcFailure) => duplex.finish(err),
    );
    return duplex;
  }

  /** Closes the connection (GOAWAY); calls in flight end with UNAVAILABLE. */
  close(): void {
    this.#closed = true;
    this.#session?.close();
    this.#session = undefined;
  }
}

/**
 * A bidi stream as watch.ts and lease.ts use one (the same shape as grpc-js's ClientDuplexStream):
 * write(), cancel(), and the events 'data', 'error' (an RpcFailure) and 'end' (the server finished it
 * with status OK). Writes before the stream is open are kept and sent once it is.
 */
export class H2Duplex<Req, Res> extends EventEmitter {
  cancelled = false;
  readonly #encode: (r: Req) => Buffer;
  #stream: H2Stream | undefined;
  #early: Buffer[] = [];
  #finished = false;

  constructor(encode: (r: Req) => Buffer) {
    super();
    this.#encode = encode;
  }

  write(message: Req): boolean {
    const bytes = encodeGrpcMessage(this.#encode(message));
    if (this.#stream) this.#stream.send(bytes, false);
    else if (!this.#finished) this.#early.push(bytes);
    return true;
  }

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.#stream?.cancel(ErrorCode.CANCEL);
    this.finish(new RpcFailure(Status.CANCELLED, 'cancelled on the client'));
  }

  /** @internal */
  attach(stream: H2Stream): void {
    this.#stream = stream;
    for (const bytes of this.#early) stream.send(bytes, false);
    this.#early = [];
  }

  /** @internal */
  receive(message: Res): void {
    if (!this.#finished) this.emit('data', message);
  }

  /** @internal */
  finish(failure: RpcFailure | undefined): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#early = [];
    // As grpc-js does: a status other than OK is an 'error' (also after cancel()), OK is 'end'.
    if (failure) {
      if (this.listenerCount('error') > 0) this.emit('error', failure);
    } else this.emit('end');
  }
}
