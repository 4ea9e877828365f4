/**
 * One HTTP/2 connection (RFC 9113) as a gRPC client needs it: the socket, the SETTINGS exchange, the
 * streams and their flow control, PING (answered, and sent as keepalive), RST_STREAM and GOAWAY.
 *
 * Invariants, and what keeps them:
 * - Frames leave in the order they were queued, and a tick's frames leave in one write (`#flush`):
 *   a request's HEADERS and DATA, the next request made in the callbacks of an answer, and every
 *   WINDOW_UPDATE and SETTINGS ack that a chunk of input asked for, share one syscall.
 * - A PING is answered with our next write, at its end, or after PING_ACK_DELAY_MS if we write
 *   nothing sooner (`#deferAck`).
 * - A stream learns exactly one end: `end` (the peer finished it), `reset` (RST_STREAM), or `closed`
 *   (the connection died, or GOAWAY said it was not processed). `sent` on `closed` says whether its
 *   HEADERS reached the socket, so that a write which never left may be sent again elsewhere.
 * - DATA is sent only within both windows, the stream's and the connection's (RFC 9113 6.9): what does
 *   not fit waits in the stream's queue until a WINDOW_UPDATE (or a SETTINGS raising the initial
 *   window) makes room. Received DATA is handed over at once, so its window is given back at once,
 *   in one WINDOW_UPDATE per stream and one for the connection once half a window has been used.
 * - A connection error (bad frames, bad HPACK, a keepalive not answered) sends GOAWAY with its code,
 *   closes the socket, and closes every stream with that error.
 */
import net from 'node:net';
import tls from 'node:tls';
import { etcdChannels } from '../../diagnostics.js';
import { ConnectionError, ProtocolError } from '../../errors.js';
import { HpackDecoder, HpackEncoder, HpackError, type HeaderList } from './hpack.js';
import {
  CLIENT_PREFACE,
  ErrorCode,
  errorCodeName,
  FrameType,
  Http2Error,
  MAX_STREAM_ID,
  Setting,
  dataFrame,
  goawayFrame,
  headersFrames,
  pingFrame,
  rstStreamFrame,
  settingsAck,
  settingsFrame,
  windowUpdateFrame,
} from './frames.js';
import { FrameParser, type FrameHandler } from './frame-parser.js';

/** What a stream's owner (a gRPC call) is told. Each stream gets one of end, reset or closed. */
export interface StreamEvents {
  headers(headers: HeaderList, endStream: boolean): void;
  data(chunk: Buffer, endStream: boolean): void;
  /** The peer reset the stream (RST_STREAM with `code`). */
  reset(code: number): void;
  /** The connection ended before the stream did. `sent`: its HEADERS had been written to the socket. */
  closed(error: Error, sent: boolean): void;
}

export interface SessionOptions {
  host: string;
  port: number;
  /** TLS (ALPN h2) with these options; none: plain TCP ("prior knowledge", RFC 9113 3.3). */
  tls?: tls.ConnectionOptions;
  /** The endpoint's URL: the name in errors and diagnostics. */
  label: string;
  connectTimeoutMs: number;
  /** A PING every this many ms while streams are open (none: no keepalive). etcd refuses more often than every 5 s. */
  keepaliveMs?: number;
  /** How long a keepalive PING may go unanswered before the connection counts as dead. */
  keepaliveTimeoutMs?: number;
}

/** Our receive window, per stream and for the connection: 4 MiB, so a large Range answer needs no round trip per 64 KiB. */
const WINDOW = 4 << 20;
/**
 * How long a PING's ack may wait for a write of ours to ride on (see #deferAck). etcd's own
 * keepalive waits 20 s for an answer by default; grpc-go's bandwidth estimate reads the delay as a
 * longer round trip, which only slows the growth of the window it gives us.
 */
const PING_ACK_DELAY_MS = 5;
/** The RFC's initial window (6.9.2), the connection's until we raise it with a WINDOW_UPDATE. */
const DEFAULT_WINDOW = 65_535;

/** One stream of the connection. Its owner writes requests with `send` and may `cancel` it. */
export class H2Stream {
  readonly id: number;
  /** Bytes we may still send on it (the peer's window for it). */
  sendWindow: number;
  /** DATA waiting for window: [payload, endStream]. */
  readonly queue: Array<[Buffer, boolean]> = [];
  /** Bytes received since we last gave the window back. */
  unacked = 0;
  /** Whether its HEADERS have been written to the socket. */
  sent = false;
  done = false;
  readonly events: StreamEvents;
  readonly #session: Http2Session;

  constructor(session: Http2Session, id: number, events: StreamEvents, sendWindow: number) {
    this.#session = session;
    this.id = id;
    this.events = events;
    this.sendWindow = sendWindow;
  }

  /** Queues a DATA frame (split by the peer's max frame size and the windows). */
  send(payload: Buffer, endStream: boolean): void {
    if (this.done) return;
    this.queue.push([payload, endStream]);
    this.#session.pump(this);
  }

  /** RST_STREAM(CANCEL): we are no longer interested. The owner hears nothing more. */
  cancel(code: number = ErrorCode.CANCEL): void {
    if (this.done) return;
    this.#session.resetStream(this, code);
  }
}

export class Http2Session {
  readonly label: string;
  readonly #socket: net.Socket;
  readonly #parser: FrameParser;
  readonly #encoder = new HpackEncoder();
  readonly #decoder = new HpackDecoder();
  readonly #streams = new Map<number, H2Stream>();
  #nextId = 1;
  #out: Buffer[] = [];
  #flushQueued = false;
  /** A setImmediate flush is pending for frames that input asked for (see #queue). */
  #replyQueued = false;
  /** PING acks waiting to ride on our next write (see #deferAck), and the timer that sends them anyway. */
  #acks: Buffer[] = [];
  #ackTimer: NodeJS.Timeout | undefined;
  /** The peer's settings we obey (RFC 9113 6.5.2 defaults until its SETTINGS arrives). */
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = 16_384;
  #peerMaxStreams = Infinity;
  #connSendWindow = DEFAULT_WINDOW;
  #connUnacked = 0;
  /** Streams with DATA waiting for the connection window, in the order they waited. */
  readonly #blocked = new Set<H2Stream>();
  /** Requests waiting for a stream slot (the peer's MAX_CONCURRENT_STREAMS), with how to open each. */
  readonly #waiting: Array<{ stream: H2Stream; open: () => void }> = [];
  #closedWith: Error | undefined;
  /** GOAWAY received: no new streams; the ones it did not process are already closed. */
  #draining = false;
  readonly #onClose: Array<(err: Error) => void> = [];
  readonly #keepaliveMs: number | undefined;
  readonly #keepaliveTimeoutMs: number;
  #keepalive: NodeJS.Timeout | undefined;
  #pingDeadline: NodeJS.Timeout | undefined;
  /** Any byte from the server yet; its SETTINGS yet (RFC 9113 3.4: its first frame must be one). */
  #heard = false;
  #gotSettings = false;

  private constructor(socket: net.Socket, opts: SessionOptions) {
    this.label = opts.label;
    this.#socket = socket;
    this.#keepaliveMs = opts.keepaliveMs;
    this.#keepaliveTimeoutMs = opts.keepaliveTimeoutMs ?? 5000;
    this.#parser = new FrameParser(this.#handler());
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        if (!this.#heard) {
          this.#heard = true;
          // An HTTP/1 server answers our preface with a status line: say so rather than decode it as frames.
          if (chunk.subarray(0, 5).toString('latin1') === 'HTTP/') {
            throw new ConnectionError(opts.label, `the server answered ${JSON.stringify(chunk.subarray(0, chunk.indexOf('\r')).toString('latin1').slice(0, 40))}: it does not speak HTTP/2 (gRPC needs h2, with prior knowledge on http://)`);
          }
        }
        this.#parser.push(chunk);
      } catch (err) {
        this.#fail(err);
      }
    });
    socket.on('error', (err) => this.#fail(new ConnectionError(opts.label, `connection lost: ${err.message}`, { cause: err })));
    socket.on('close', () => this.#fail(new ConnectionError(opts.label, 'the connection was closed by the server')));
    // RFC 9113 3.4: the preface, then our SETTINGS; then raise the connection window (6.9.2: only a
    // WINDOW_UPDATE can). Requests may follow at once, before the server's SETTINGS arrive.
    this.#queue(CLIENT_PREFACE);
    this.#queue(settingsFrame([
      [Setting.ENABLE_PUSH, 0],
      [Setting.INITIAL_WINDOW_SIZE, WINDOW],
      [Setting.MAX_HEADER_LIST_SIZE, 64 * 1024],
    ]));
    this.#queue(windowUpdateFrame(0, WINDOW - DEFAULT_WINDOW));
  }

  /** Connects (TLS with ALPN h2 when `tls` is set) and sends the preface. Rejects with ConnectionError. */
  static connect(opts: SessionOptions): Promise<Http2Session> {
    return new Promise((resolve, reject) => {
      const socket = opts.tls
        ? tls.connect({ ...opts.tls, host: opts.host, port: opts.port, ALPNProtocols: ['h2'], servername: opts.tls.servername ?? (net.isIP(opts.host) ? undefined : opts.host) })
        : net.connect({ host: opts.host, port: opts.port });
      const timer = setTimeout(() => fail(new Error(`no connection within ${opts.connectTimeoutMs} ms`)), opts.connectTimeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(new ConnectionError(opts.label, `failed to connect: ${err.message}`, { cause: err }));
      };
      socket.once('error', fail);
      socket.once(opts.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        if (opts.tls && (socket as tls.TLSSocket).alpnProtocol !== 'h2') {
          socket.destroy();
          return reject(new ConnectionError(opts.label, `failed to connect: the server did not agree to HTTP/2 (ALPN ${String((socket as tls.TLSSocket).alpnProtocol)})`));
        }
        resolve(new Http2Session(socket, opts));
      });
    });
  }

  /** Whether new streams can be opened here. */
  get usable(): boolean {
    return this.#closedWith === undefined && !this.#draining;
  }

  /** How many streams are open now. */
  get openStreams(): number {
    return this.#streams.size;
  }

  /** Called once when the connection ends, with why. */
  onClose(fn: (err: Error) => void): void {
    if (this.#closedWith) fn(this.#closedWith);
    else this.#onClose.push(fn);
  }

  /**
   * Opens a stream with `headers` (HEADERS, END_STREAM if `endStream`). Throws ConnectionError if the
   * connection cannot take new streams; the caller then uses another one.
   */
  request(headers: HeaderList, events: StreamEvents, opts: { endStream?: boolean; sensitive?: ReadonlySet<string>; noIndex?: ReadonlySet<string> } = {}): H2Stream {
    // Stream ids are 31 bits and never reused (RFC 9113 5.1.1): a connection that ran out drains, and
    // its owner opens a new one.
    if (this.#nextId > MAX_STREAM_ID && !this.#draining) {
      this.#draining = true;
      if (this.#streams.size === 0) this.close();
    }
    if (!this.usable) throw new ConnectionError(this.label, `failed to connect: the connection is ${this.#closedWith ? 'closed' : 'going away'}`);
    const stream = new H2Stream(this, this.#nextId, events, this.#peerInitialWindow);
    this.#nextId += 2;
    const open = (): void => {
      if (stream.done) return;
      this.#streams.set(stream.id, stream);
      const block = this.#encoder.encode(headers, opts);
      for (const frame of headersFrames(stream.id, block, { endStream: opts.endStream === true, maxFrameSize: this.#peerMaxFrame })) this.#queue(frame, stream);
      this.#armKeepalive();
      if (stream.queue.length > 0) this.pump(stream); // DATA sent while it waited for a slot
    };
    // Stream ids must be opened in order (RFC 9113 5.1.1): one that waits for a slot holds back the rest.
    if (this.#streams.size < this.#peerMaxStreams && this.#waiting.length === 0) open();
    else this.#waiting.push({ stream, open });
    return stream;
  }

  /** Sends what fits of `stream`'s queued DATA (and remembers it as blocked otherwise). */
  pump(stream: H2Stream): void {
    if (!this.#streams.has(stream.id)) return; // still waiting for a slot: open() comes first
    while (stream.queue.length > 0) {
      const [payload, endStream] = stream.queue[0]!;
      const room = Math.min(stream.sendWindow, this.#connSendWindow, this.#peerMaxFrame);
      if (payload.length > 0 && room <= 0) {
        this.#blocked.add(stream);
        return;
      }
      const n = Math.min(room, payload.length);
      const last = n === payload.length;
      this.#queue(dataFrame(stream.id, n === payload.length ? payload : payload.subarray(0, n), last && endStream));
      stream.sendWindow -= n;
      this.#connSendWindow -= n;
      if (last) stream.queue.shift();
      else stream.queue[0] = [payload.subarray(n), endStream];
    }
    this.#blocked.delete(stream);
  }

  /** Sends RST_STREAM and forgets the stream; its owner is told nothing more. */
  resetStream(stream: H2Stream, code: number): void {
    const opened = this.#streams.has(stream.id);
    this.#finish(stream);
    if (opened && this.#closedWith === undefined) this.#queue(rstStreamFrame(stream.id, code));
  }

  /** GOAWAY(NO_ERROR) and close: streams still open are closed with ClosedError-like ConnectionError. */
  close(): void {
    if (this.#closedWith) return;
    this.#takeAcks(); // ahead of the GOAWAY: the last frame we send
    this.#queue(goawayFrame(0, ErrorCode.NO_ERROR));
    this.#flush();
    this.#fail(new ConnectionError(this.label, 'the connection was closed by the client'), { graceful: true });
  }

  /**
   * Queues a frame for this tick's write. Frames our own calls send are flushed in a microtask, so a
   * request leaves in the tick it was made. Frames that input asked for (a SETTINGS ack, a
   * WINDOW_UPDATE: `reply`) wait for setImmediate, after the promise callbacks the same input set
   * off: a caller's next request, made in those callbacks, then shares their write. (PING acks wait
   * longer: #deferAck.)
   */
  #queue(frame: Buffer, stream?: H2Stream, reply = false): void {
    if (this.#closedWith) return;
    this.#out.push(frame);
    if (stream) stream.sent = true; // counted as written once it is in this tick's write, see #flush
    if (etcdChannels.h2Frame.hasSubscribers && frame !== CLIENT_PREFACE) publishFrame(this.label, 'out', frame);
    if (reply) {
      if (!this.#flushQueued && !this.#replyQueued) {
        this.#replyQueued = true;
        setImmediate(() => {
          this.#replyQueued = false;
          this.#flush();
        });
      }
    } else if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#flush());
    }
  }

  /**
   * Answers a PING with our next write, placed after that write's frames, or after PING_ACK_DELAY_MS
   * if nothing else is written sooner (RFC 9113 6.7 asks for an ack, and only "SHOULD" for priority).
   * grpc-go's server pings on the DATA of every request when no ping of its is unanswered (its
   * bandwidth estimate), and that ping comes ahead of the answer, while the call waits. Answered at
   * once, each ack would be a write of its own: three syscalls for two calls in an acquire+release.
   * Riding behind the next request, the ack costs no syscall, and that request's DATA finds the
   * server's ping still unanswered, so the server pings on every second request only.
   */
  #deferAck(frame: Buffer): void {
    if (this.#closedWith) return;
    this.#acks.push(frame);
    if (this.#acks.length > 1) return; // the timer already runs, for the oldest ack waiting
    // One timer for the connection's life, started again for each first ack waiting (when it fires
    // after the acks have left with a write, it finds none and does nothing).
    if (this.#ackTimer) this.#ackTimer.refresh();
    else {
      this.#ackTimer = setTimeout(() => {
        if (!this.#closedWith && this.#acks.length > 0) this.#flush();
      }, PING_ACK_DELAY_MS);
      this.#ackTimer.unref(); // the socket keeps the process up while the connection is in use
    }
  }

  /** The acks waiting go into this write, behind what is queued; published now, in their order on the wire. */
  #takeAcks(): void {
    if (this.#acks.length === 0) return;
    for (const ack of this.#acks) {
      this.#out.push(ack);
      if (etcdChannels.h2Frame.hasSubscribers) publishFrame(this.label, 'out', ack);
    }
    this.#acks = [];
  }

  #flush(): void {
    this.#flushQueued = false;
    this.#takeAcks();
    if (this.#out.length === 0 || this.#socket.destroyed) return;
    const chunk = this.#out.length === 1 ? this.#out[0]! : Buffer.concat(this.#out);
    this.#out = [];
    this.#socket.write(chunk);
  }

  #finish(stream: H2Stream): void {
    stream.done = true;
    this.#blocked.delete(stream);
    if (!this.#streams.delete(stream.id)) return;
    // A slot is free: the oldest waiting request takes it.
    while (this.#waiting.length > 0 && this.#streams.size < this.#peerMaxStreams) this.#waiting.shift()!.open();
    if (this.#streams.size === 0) {
      this.#disarmKeepalive();
      if (this.#draining) this.#fail(new ConnectionError(this.label, 'the server went away (GOAWAY)'), { graceful: true });
    }
  }

  /** The connection is over: tell every stream, once. */
  #fail(err: unknown, opts: { graceful?: boolean } = {}): void {
    if (this.#closedWith) return;
    const error = err instanceof Error ? err : new ProtocolError(String(err));
    const code = error instanceof Http2Error && error.streamId === 0 ? error.errorCode : error instanceof HpackError ? ErrorCode.COMPRESSION_ERROR : undefined;
    if (!opts.graceful && code !== undefined) {
      // RFC 9113 5.4.1: tell the peer why before closing. Last stream id 0: a client that refuses
      // push has processed no stream of the server's.
      this.#takeAcks();
      this.#out.push(goawayFrame(0, code));
      this.#flush();
    }
    this.#closedWith = error;
    this.#disarmKeepalive();
    clearTimeout(this.#ackTimer);
    this.#acks = [];
    // end(): what is queued (a GOAWAY) still leaves; a peer that never closes its side is cut off.
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), 1000).unref();
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    for (const s of streams) {
      s.done = true;
      s.events.closed(error, s.sent);
    }
    // Requests that never got a slot never left.
    for (const { stream } of this.#waiting.splice(0)) {
      if (stream.done) continue;
      stream.done = true;
      stream.events.closed(error, false);
    }
    for (const fn of this.#onClose.splice(0)) fn(error);
  }

  #armKeepalive(): void {
    if (this.#keepaliveMs === undefined || this.#keepalive) return;
    this.#keepalive = setInterval(() => this.#ping(), this.#keepaliveMs);
    this.#keepalive.unref();
  }

  #disarmKeepalive(): void {
    clearInterval(this.#keepalive);
    clearTimeout(this.#pingDeadline);
    this.#keepalive = undefined;
    this.#pingDeadline = undefined;
  }

  #ping(): void {
    if (this.#pingDeadline) return; // the last one is still unanswered
    this.#queue(pingFrame(KEEPALIVE_OPAQUE, false));
    this.#pingDeadline = setTimeout(
      () => this.#fail(new ConnectionError(this.label, `connection lost: no answer to a keepalive PING within ${this.#keepaliveTimeoutMs} ms`)),
      this.#keepaliveTimeoutMs,
    );
    this.#pingDeadline.unref();
  }

  #handler(): FrameHandler {
    return {
      frame: (type, flags, streamId, length) => {
        if (!this.#gotSettings) {
          if (type !== FrameType.SETTINGS || flags & 1) throw new Http2Error(ErrorCode.PROTOCOL_ERROR, 0, `the server's first frame was ${typeName(type)}, not its SETTINGS (RFC 9113 3.4)`);
          this.#gotSettings = true;
        }
        if (etcdChannels.h2Frame.hasSubscribers) {
          etcdChannels.h2Frame.publish({ endpoint: this.label, direction: 'in', type: typeName(type), flags, streamId, length });
        }
      },
      headers: (id, block, endStream) => {
        // Decode even for a stream we forgot: HPACK state is shared by the whole connection (RFC 7541 2.2).
        const headers = this.#decoder.decode(block);
        const stream = this.#streams.get(id);
        if (!stream) return;
        if (endStream) this.#finish(stream);
        stream.events.headers(headers, endStream);
      },
      data: (id, payload, endStream, flowLength) => {
        this.#connUnacked += flowLength;
        if (this.#connUnacked >= WINDOW / 2) {
          this.#queue(windowUpdateFrame(0, this.#connUnacked), undefined, true);
          this.#connUnacked = 0;
        }
        const stream = this.#streams.get(id);
        if (!stream) return;
        stream.unacked += flowLength;
        if (endStream) this.#finish(stream);
        else if (stream.unacked >= WINDOW / 2) {
          this.#queue(windowUpdateFrame(id, stream.unacked), undefined, true);
          stream.unacked = 0;
        }
        stream.events.data(payload, endStream);
      },
      rstStream: (id, code) => {
        const stream = this.#streams.get(id);
        if (!stream) return;
        this.#finish(stream);
        stream.events.reset(code);
      },
      settings: (list) => {
        for (const [id, value] of list) this.#applySetting(id, value);
        this.#queue(settingsAck(), undefined, true);
      },
      settingsAck: () => {},
      ping: (opaque, ack) => {
        if (!ack) return this.#deferAck(pingFrame(opaque, true));
        if (opaque.equals(KEEPALIVE_OPAQUE)) {
          clearTimeout(this.#pingDeadline);
          this.#pingDeadline = undefined;
        }
      },
      goaway: (lastStreamId, code, debug) => {
        this.#draining = true;
        const why = `the server went away (GOAWAY ${errorCodeName(code)}${debug.length ? `: ${debug.toString('utf8').slice(0, 200)}` : ''})`;
        // Streams above lastStreamId were not processed (RFC 9113 6.8): they may be sent again.
        for (const s of [...this.#streams.values()]) {
          if (s.id <= lastStreamId) continue;
          this.#finish(s);
          s.events.closed(new ConnectionError(this.label, `failed to connect: ${why}; the request was not processed`), false);
        }
        for (const { stream } of this.#waiting.splice(0)) {
          if (stream.done) continue;
          stream.done = true;
          stream.events.closed(new ConnectionError(this.label, `failed to connect: ${why}; the request was not sent`), false);
        }
        if (code !== ErrorCode.NO_ERROR || this.#streams.size === 0) this.#fail(new ConnectionError(this.label, why), { graceful: true });
      },
      windowUpdate: (id, increment) => {
        if (id === 0) {
          this.#connSendWindow += increment;
          if (this.#connSendWindow > 2 ** 31 - 1) throw new Http2Error(ErrorCode.FLOW_CONTROL_ERROR, 0, 'the connection window went past 2^31-1');
          for (const s of [...this.#blocked]) this.pump(s);
          return;
        }
        const stream = this.#streams.get(id);
        if (!stream) return;
        stream.sendWindow += increment;
        if (stream.sendWindow > 2 ** 31 - 1) return this.resetStream(stream, ErrorCode.FLOW_CONTROL_ERROR);
        this.pump(stream);
      },
      streamError: (err) => {
        const stream = this.#streams.get(err.streamId);
        if (!stream) return;
        this.resetStream(stream, err.errorCode);
        stream.events.closed(err, true);
      },
    };
  }

  #applySetting(id: number, value: number): void {
    switch (id) {
      case Setting.HEADER_TABLE_SIZE:
        this.#encoder.setMaxTableSize(value);
        break;
      case Setting.INITIAL_WINDOW_SIZE: {
        // RFC 9113 6.9.2: the change applies to every open stream, and may make a window negative.
        const delta = value - this.#peerInitialWindow;
        this.#peerInitialWindow = value;
        for (const s of this.#streams.values()) s.sendWindow += delta;
        if (delta > 0) for (const s of [...this.#blocked]) this.pump(s);
        break;
      }
      case Setting.MAX_FRAME_SIZE:
        this.#peerMaxFrame = value;
        break;
      case Setting.MAX_CONCURRENT_STREAMS:
        this.#peerMaxStreams = value;
        break;
      default:
        break; // ENABLE_PUSH and MAX_HEADER_LIST_SIZE are advisory for a client; unknown ids are ignored (6.5.2)
    }
  }
}

const KEEPALIVE_OPAQUE = Buffer.from('wl-alive');

const typeName = (type: number): string => Object.entries(FrameType).find(([, v]) => v === type)?.[0] ?? `0x${type.toString(16)}`;

/** wirelock:etcd:h2:frame: the frame's header fields, never its payload (HEADERS carry the auth token). */
function publishFrame(endpoint: string, direction: 'in' | 'out', frame: Buffer): void {
  const type = frame[3]!;
  etcdChannels.h2Frame.publish({
    endpoint,
    direction,
    type: typeName(type),
    flags: frame[4]!,
    streamId: frame.readUInt32BE(5) & 0x7fffffff,
    length: frame.readUIntBE(0, 3),
  });
}
