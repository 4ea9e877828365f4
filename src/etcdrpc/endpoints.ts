/**
 * The two ways wirelock reaches an etcd member, behind one small interface: `'h2'`, its own gRPC over
 * HTTP/2 on node:net/node:tls (h2/), and `'grpc-js'`, @grpc/grpc-js (the design's original choice,
 * kept selectable). transport.ts draws the retry rules once, above either.
 *
 * Both report a failed call as a gRPC status ({ code, details }) and nothing else: transport.ts and
 * status.ts turn it into a wirelock error. Both say "failed to connect" / "No connection established"
 * when the request cannot have left, which is what status.ts's wasNotSent() reads.
 */
import * as grpc from '@grpc/grpc-js';
import type { SecureContextOptions } from 'node:tls';
import { noop, onAbort } from '../abort.js';
import { invalidType, invalidValue } from '../errors.js';
import type { MethodInfo } from './codec.js';
import { H2Channel } from './h2/grpc.js';
import type { HeaderList } from './h2/hpack.js';

/** Which transport an EtcdClient uses. */
export type TransportKind = 'h2' | 'grpc-js';

/** A bidi stream as watch.ts and lease.ts use one: grpc-js's ClientDuplexStream and H2Duplex both fit. */
export interface RpcDuplex<Req, Res> {
  write(message: Req): unknown;
  cancel(): void;
  on(event: 'data', fn: (message: Res) => void): unknown;
  on(event: 'error', fn: (failure: { code: number; details: string }) => void): unknown;
  on(event: 'end', fn: () => void): unknown;
}

/** One member's address and the way to call it. */
export interface RpcEndpoint {
  /** As given, e.g. "http://127.0.0.1:2379": the name errors and diagnostics use. */
  readonly url: string;
  /** One unary call; `deadline` is on performance.now()'s clock. Rejects with a gRPC status. */
  unary(path: string, request: Buffer, metadata: HeaderList, deadline: number, signal: AbortSignal | undefined): Promise<Buffer>;
  stream<Req, Res>(m: MethodInfo<Req, Res>, metadata: HeaderList): RpcDuplex<Req, Res>;
  /** Closes the connection and ends the calls in flight; the next call makes a new one. */
  close(): void;
}

/** Builds one endpoint per URL. Throws TypeError for mixed schemes or TLS options without https://. */
export function makeEndpoints(kind: TransportKind, urls: string[], tls: SecureContextOptions | undefined): RpcEndpoint[] {
  const secure = urls.map((e) => new URL(e).protocol === 'https:');
  if (secure.some((s) => s !== secure[0])) throw invalidValue('endpoints must all be http:// or all https://');
  if (!secure[0] && tls !== undefined) throw invalidValue('tls options need https:// endpoints');
  if (tls?.passphrase !== undefined) throw invalidValue('tls.passphrase is not supported: give an unencrypted key');
  const pems = tls && { ca: pem(tls.ca, 'ca'), key: pem(tls.key, 'key'), cert: pem(tls.cert, 'cert') };
  if (kind === 'h2') {
    const options = pems && { ...(pems.ca && { ca: pems.ca }), ...(pems.key && { key: pems.key }), ...(pems.cert && { cert: pems.cert }) };
    return urls.map((url) => new H2Endpoint(url, options));
  }
  const credentials = secure[0] ? grpc.credentials.createSsl(pems?.ca ?? null, pems?.key ?? null, pems?.cert ?? null) : grpc.credentials.createInsecure();
  return urls.map((url) => new GrpcJsEndpoint(url, credentials));
}

function pem(value: unknown, name: string): Buffer | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string' || Buffer.isBuffer(value)) return Buffer.from(value);
  if (Array.isArray(value) && value.every((v) => typeof v === 'string' || Buffer.isBuffer(v))) {
    return Buffer.from(value.map((v) => v.toString()).join('\n'));
  }
  throw invalidType(`tls.${name} must be a PEM string or Buffer (or an array of them)`);
}

class H2Endpoint implements RpcEndpoint {
  readonly url: string;
  readonly #channel: H2Channel;

  constructor(url: string, tls: { ca?: Buffer; key?: Buffer; cert?: Buffer } | undefined) {
    this.url = url;
    this.#channel = new H2Channel({ url, ...(tls && { tls }) });
  }

  unary(path: string, request: Buffer, metadata: HeaderList, deadline: number, signal: AbortSignal | undefined): Promise<Buffer> {
    return this.#channel.unary(path, request, metadata, deadline, signal);
  }

  stream<Req, Res>(m: MethodInfo<Req, Res>, metadata: HeaderList): RpcDuplex<Req, Res> {
    return this.#channel.stream(m.path, metadata, m.request.encode, m.response.decode);
  }

  close(): void {
    this.#channel.close();
  }
}

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

class GrpcJsEndpoint implements RpcEndpoint {
  readonly url: string;
  readonly #target: string;
  readonly #credentials: grpc.ChannelCredentials;
  #client: grpc.Client | undefined;
  /** grpc-js's close() leaves calls in flight running: close() cancels them. */
  readonly #inflight = new Set<ReturnType<grpc.Channel['createCall']>>();

  constructor(url: string, credentials: grpc.ChannelCredentials) {
    this.url = url;
    this.#target = new URL(url).host;
    this.#credentials = credentials;
  }

  /** The channel, created on first use and kept (grpc-js reconnects it by itself). */
  get #channel(): grpc.Client {
    this.#client ??= new grpc.Client(this.#target, this.#credentials, CHANNEL_OPTIONS);
    return this.#client;
  }

  /**
   * Straight on the channel (the layer grpc-js's Client builds on): with no interceptors to run, this
   * skips a caller-stack capture and two wrapper objects per call.
   */
  unary(path: string, request: Buffer, metadata: HeaderList, deadline: number, signal: AbortSignal | undefined): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      // grpc-js wants a wall-clock deadline; the budget itself is measured on the monotonic clock.
      const call = this.#channel.getChannel().createCall(path, Date.now() + Math.max(1, deadline - performance.now()), null, null, null);
      let answer: Buffer | undefined;
      let offAbort = noop;
      call.start(toMetadata(metadata), {
        onReceiveMetadata: noop,
        onReceiveMessage: (message: Buffer) => {
          answer = message;
        },
        onReceiveStatus: (status: grpc.StatusObject) => {
          offAbort();
          this.#inflight.delete(call);
          if (status.code !== grpc.status.OK) return reject({ code: status.code, details: status.details });
          if (answer === undefined) return reject({ code: grpc.status.INTERNAL, details: 'no message' });
          resolve(answer);
        },
      });
      call.sendMessageWithContext({}, request);
      call.halfClose();
      call.startRead();
      offAbort = onAbort(signal, () => call.cancelWithStatus(grpc.status.CANCELLED, 'aborted by the caller'));
      this.#inflight.add(call);
    });
  }

  stream<Req, Res>(m: MethodInfo<Req, Res>, metadata: HeaderList): RpcDuplex<Req, Res> {
    return this.#channel.makeBidiStreamRequest<Req, Res>(m.path, m.request.encode, m.response.decode, toMetadata(metadata));
  }

  close(): void {
    for (const call of this.#inflight) call.cancelWithStatus(grpc.status.CANCELLED, 'client closed');
    this.#inflight.clear();
    this.#client?.close();
    this.#client = undefined;
  }
}

function toMetadata(headers: HeaderList): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [name, value] of headers) md.set(name, value);
  return md;
}
