/**
 * TokenProxy: an HTTP/2 (gRPC) proxy in front of a real etcd that hands out auth tokens of the test's
 * choosing, for what a real etcd cannot do: issue a token the test knows in advance (a sentinel it can
 * then search every output for).
 *
 *   client --(Authenticate)--> proxy: answers itself, token = the next sentinel
 *   client --(any call, metadata token: sentinel)--> proxy --(token: a real one)--> etcd
 *
 * The proxy authenticates to etcd itself with the real credentials and swaps the tokens on the way.
 * `invalidate()` makes the proxy refuse the current sentinel once, as etcd refuses an expired token
 * (UNAUTHENTICATED "etcdserver: invalid auth token"), so the client must authenticate again and gets
 * the next sentinel: a token refresh.
 */
import http2 from 'node:http2';
import { method } from '../../src/etcdrpc/codec.js';
import type { AuthenticateRequest, AuthenticateResponse } from '../../src/etcdrpc/types.js';

const AUTHENTICATE = '/etcdserverpb.Auth/Authenticate';

/** One gRPC message frame: a compression flag, a 4-byte length, the message. */
function frame(message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

export class TokenProxy {
  readonly #server: http2.Http2Server;
  readonly #upstream: http2.ClientHttp2Session;
  readonly #sentinels: string[];
  #issued = 0;
  #refused = new Set<string>();
  #realToken = '';
  /** Authenticate calls answered, and calls forwarded. */
  authentications = 0;
  forwarded = 0;

  private constructor(server: http2.Http2Server, upstream: http2.ClientHttp2Session, sentinels: string[]) {
    this.#server = server;
    this.#upstream = upstream;
    this.#sentinels = sentinels;
    server.on('stream', (stream, headers) => this.#onStream(stream, headers));
  }

  static async start(target: string, credentials: { username: string; password: string }, sentinels: string[]): Promise<TokenProxy> {
    const upstream = http2.connect(target);
    upstream.on('error', () => {});
    const server = http2.createServer();
    const proxy = new TokenProxy(server, upstream, sentinels);
    proxy.#realToken = await proxy.#authenticate(credentials);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as { port: number }).port}`;
  }

  /** The sentinel handed out last. */
  get current(): string {
    return this.#sentinels[Math.max(0, this.#issued - 1)]!;
  }

  /** The next call that carries the current sentinel is refused as an expired token. */
  invalidate(): void {
    this.#refused.add(this.current);
  }

  async stop(): Promise<void> {
    this.#upstream.close();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on('error', () => {});
    if (headers[':path'] === AUTHENTICATE) {
      this.authentications++;
      stream.resume();
      const token = this.#sentinels[Math.min(this.#issued++, this.#sentinels.length - 1)]!;
      const m = method<AuthenticateRequest, AuthenticateResponse>('Auth', 'Authenticate');
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(frame(m.response.encode({ header: undefined as never, token })));
      return;
    }
    const token = headers.token;
    if (typeof token === 'string' && this.#refused.delete(token)) {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '16', 'grpc-message': 'etcdserver: invalid auth token' }, { endStream: true });
      return;
    }
    this.forwarded++;
    const out: http2.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(headers)) {
      if (name.startsWith(':') && name !== ':path' && name !== ':method') continue;
      out[name] = value as string | string[];
    }
    if (typeof token === 'string' && this.#sentinels.includes(token)) out.token = this.#realToken;
    const req = this.#upstream.request(out);
    let trailers: http2.OutgoingHttpHeaders = {};
    req.on('error', () => stream.close(http2.constants.NGHTTP2_CANCEL));
    stream.on('close', () => req.close(http2.constants.NGHTTP2_CANCEL));
    req.on('response', (h) => {
      const reply: http2.OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(h)) if (name === ':status' || !name.startsWith(':')) reply[name] = value;
      // Trailers-only (an error without a message): the status is in these headers, nothing follows.
      if (h['grpc-status'] !== undefined) return void stream.respond(reply, { endStream: true });
      stream.respond(reply, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers(trailers));
    });
    req.on('trailers', (t) => {
      trailers = {};
      for (const [name, value] of Object.entries(t)) if (!name.startsWith(':')) trailers[name] = value as string | string[];
    });
    req.on('data', (chunk: Buffer) => stream.write(chunk));
    req.on('end', () => !stream.closed && stream.end());
    stream.on('data', (chunk: Buffer) => req.write(chunk));
    stream.on('end', () => req.end());
  }

  async #authenticate(credentials: { username: string; password: string }): Promise<string> {
    const m = method<AuthenticateRequest, AuthenticateResponse>('Auth', 'Authenticate');
    const req = this.#upstream.request({ ':method': 'POST', ':path': AUTHENTICATE, 'content-type': 'application/grpc', te: 'trailers' });
    req.end(frame(m.request.encode({ name: credentials.username, password: credentials.password })));
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    await new Promise<void>((resolve, reject) => {
      req.on('end', resolve);
      req.on('error', reject);
    });
    const body = Buffer.concat(chunks);
    if (body.length < 5) throw new Error('etcd did not answer Authenticate (wrong credentials?)');
    return m.response.decode(body.subarray(5)).token;
  }
}
