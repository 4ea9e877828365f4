/**
 * The HTTP/2 frame parser (RFC 9113 §4, §6): the bytes a server sends, cut anywhere, in; one typed
 * callback per frame out. No I/O and no stream state. The frame layout, the constants, Http2Error and
 * the encoders are in frames.ts; the parser has a file of its own so that reading and writing frames
 * can each be read apart.
 *
 * Who checks what. The parser checks everything a frame shows by itself: its size, whether it belongs
 * on stream 0, its padding, HEADERS/CONTINUATION sequencing, SETTINGS values (§6.5.2) and zero
 * WINDOW_UPDATE increments, so the connection is only ever handed well-formed fields. The connection
 * checks what needs state: frames on idle or closed streams (§5.1), flow-control windows (§6.9), that
 * the server's first frame is SETTINGS (§3.4), SETTINGS ACK timeouts (§6.5.3).
 * The parser speaks for a client that has disabled push (§8.4): PUSH_PROMISE and ENABLE_PUSH=1 are errors.
 */
import {
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_MAX_HEADER_BLOCK_SIZE,
  ErrorCode,
  FRAME_HEADER_LENGTH,
  Flags,
  FrameType,
  Http2Error,
  MAX_MAX_FRAME_SIZE,
  Setting,
  checkInt,
  settingProblem,
  typeName,
  type SettingEntry,
} from './frames.js';

/**
 * What {@link FrameParser} calls, once per frame (a header block: once per block). Buffers handed
 * over may be views into the chunks given to `push()`: the parser never writes into a chunk, and the
 * caller must not reuse one either while a view of it is kept.
 */
export interface FrameHandler {
  /** A DATA frame (§6.1), padding removed. `flowLength` is the whole payload length, padding included: what counts against flow control (§6.9.1). */
  data(streamId: number, payload: Buffer, endStream: boolean, flowLength: number): void;
  /** A whole header block (§4.3): HEADERS plus any CONTINUATION frames, padding and priority fields removed. Pass it to HPACK even for a stream being reset: the dynamic table must stay in step. */
  headers(streamId: number, block: Buffer, endStream: boolean): void;
  /** RST_STREAM (§6.4): the peer ended the stream with `code`. */
  rstStream(streamId: number, code: number): void;
  /** A SETTINGS frame's parameters in order (§6.5), values already checked; unknown ids are passed on, to be ignored (§6.5.2). */
  settings(list: SettingEntry[]): void;
  /** The peer's SETTINGS ACK: our last SETTINGS now applies (§6.5.3). */
  settingsAck(): void;
  /** A PING (§6.7); with `ack` false it must be answered with `pingFrame(opaque, true)`. */
  ping(opaque: Buffer, ack: boolean): void;
  /** GOAWAY (§6.8): the peer processed no stream above `lastStreamId` and will take no new ones. */
  goaway(lastStreamId: number, code: number, debug: Buffer): void;
  /** WINDOW_UPDATE (§6.9) for a stream, or the connection when `streamId` is 0; `increment` is 1..2^31-1. */
  windowUpdate(streamId: number, increment: number): void;
  /** A stream error (§5.4.2): reset that stream with `err.errorCode`; the connection and the parser carry on. */
  streamError(err: Http2Error): void;
  /** Every frame's header (§4.1) as it is read, before the checks and the frame's own callback. Optional, for diagnostics. */
  frame?(type: number, flags: number, streamId: number, length: number): void;
  /** A frame of a type this parser does not know; §4.1 and §5.5 say to ignore it. Optional, for diagnostics. */
  unknown?(type: number, flags: number, streamId: number, payload: Buffer): void;
}

/** {@link FrameParser} options. */
export interface FrameParserOptions {
  /** Our SETTINGS_MAX_FRAME_SIZE: a longer frame is a FRAME_SIZE_ERROR (§4.2). Default 16384; raise it with `setMaxFrameSize()` once the peer has acknowledged a larger one. */
  maxFrameSize?: number;
  /** The largest header block we buffer across HEADERS and CONTINUATION frames; more is ENHANCE_YOUR_CALM (§10.5.1). Default 65536. */
  maxHeaderBlockSize?: number;
}

const EMPTY = Buffer.alloc(0);

/**
 * Turns the bytes a server sends, cut anywhere, into {@link FrameHandler} calls.
 *
 * Each payload is copied at most once: a frame inside one chunk is handed over as a view of it; a
 * frame split across chunks gets one buffer of its announced length, filled as chunks come. The length
 * is checked against `maxFrameSize` before anything is buffered.
 *
 * A connection error is thrown from `push()` as an {@link Http2Error} with `streamId` 0; so is any
 * error a handler throws. Either way the parser is then done: the rest of that chunk is not read, and
 * every later `push()` throws the same error again.
 */
export class FrameParser {
  readonly #handler: FrameHandler;
  #maxFrameSize: number;
  readonly #maxHeaderBlockSize: number;
  /** The 9 header octets, when a chunk boundary cuts through them. */
  readonly #head = Buffer.alloc(FRAME_HEADER_LENGTH);
  #headFilled = 0;
  // The frame whose header has been read.
  #length = 0;
  #type = 0;
  #flags = 0;
  #streamId = 0;
  /** Its payload, when it spans chunks: allocated at its full length, `#filled` octets in so far. */
  #payload: Buffer | undefined;
  #filled = 0;
  /** A header block between a HEADERS without END_HEADERS and the CONTINUATION that ends it (§6.10). */
  #block: { streamId: number; endStream: boolean; fragments: Buffer[]; size: number } | undefined;
  #failure: { error: unknown } | undefined;

  constructor(handler: FrameHandler, options: FrameParserOptions = {}) {
    this.#handler = handler;
    this.#maxFrameSize = DEFAULT_MAX_FRAME_SIZE;
    if (options.maxFrameSize !== undefined) this.setMaxFrameSize(options.maxFrameSize);
    this.#maxHeaderBlockSize = options.maxHeaderBlockSize ?? DEFAULT_MAX_HEADER_BLOCK_SIZE;
    checkInt('maxHeaderBlockSize', this.#maxHeaderBlockSize, 0, Number.MAX_SAFE_INTEGER);
  }

  /** Our SETTINGS_MAX_FRAME_SIZE (2^14..2^24-1). It applies from the next frame header on. */
  setMaxFrameSize(size: number): void {
    checkInt('maxFrameSize', size, DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE);
    this.#maxFrameSize = size;
  }

  /** Parses the next bytes from the server, calling the handler for each frame they complete. */
  push(chunk: Buffer): void {
    if (this.#failure) throw this.#failure.error;
    try {
      this.#consume(chunk);
    } catch (error) {
      this.#failure = { error };
      throw error;
    }
  }

  #consume(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.#payload) {
        const n = Math.min(chunk.length - pos, this.#payload.length - this.#filled);
        chunk.copy(this.#payload, this.#filled, pos, pos + n);
        pos += n;
        this.#filled += n;
        if (this.#filled === this.#payload.length) {
          const payload = this.#payload;
          this.#payload = undefined;
          this.#frame(payload);
        }
        continue;
      }
      if (this.#headFilled === 0 && chunk.length - pos >= FRAME_HEADER_LENGTH) {
        this.#readHeader(chunk, pos);
        pos += FRAME_HEADER_LENGTH;
      } else {
        const n = Math.min(FRAME_HEADER_LENGTH - this.#headFilled, chunk.length - pos);
        chunk.copy(this.#head, this.#headFilled, pos, pos + n);
        pos += n;
        this.#headFilled += n;
        if (this.#headFilled < FRAME_HEADER_LENGTH) return;
        this.#headFilled = 0;
        this.#readHeader(this.#head, 0);
      }
      const length = this.#length;
      if (length === 0) {
        this.#frame(EMPTY);
      } else if (chunk.length - pos >= length) {
        this.#frame(chunk.subarray(pos, pos + length));
        pos += length;
      } else {
        // Every byte of it is written by copies before it is read.
        this.#payload = Buffer.allocUnsafe(length);
        this.#filled = 0;
      }
    }
  }

  /** Reads a frame header (§4.1) and checks all that it shows before its payload is buffered. */
  #readHeader(buf: Buffer, at: number): void {
    const length = buf.readUIntBE(at, 3);
    const type = buf[at + 3]!;
    const flags = buf[at + 4]!;
    const streamId = buf.readUInt32BE(at + 5) & 0x7fff_ffff; // §4.1: the reserved bit MUST be ignored
    this.#length = length;
    this.#type = type;
    this.#flags = flags;
    this.#streamId = streamId;
    this.#handler.frame?.(type, flags, streamId, length);
    const name = typeName(type);
    if (length > this.#maxFrameSize) {
      throw new Http2Error(ErrorCode.FRAME_SIZE_ERROR, 0, `${name} frame of ${length} octets, more than SETTINGS_MAX_FRAME_SIZE ${this.#maxFrameSize}`);
    }
    const block = this.#block;
    if (block && (type !== FrameType.CONTINUATION || streamId !== block.streamId)) {
      // §6.2, §6.10; §5.5: not even an extension frame may interrupt a header block.
      throw protocol(`${name} frame on stream ${streamId} inside the header block of stream ${block.streamId}`);
    }
    switch (type) {
      case FrameType.DATA: // §6.1
        onStream(name, streamId);
        if (flags & Flags.PADDED) atLeast(name, length, 1, 'its Pad Length');
        break;
      case FrameType.HEADERS: // §6.2
        onStream(name, streamId);
        atLeast(name, length, (flags & Flags.PADDED ? 1 : 0) + (flags & Flags.PRIORITY ? 5 : 0), 'its Pad Length and priority fields');
        break;
      case FrameType.PRIORITY: // §6.3; a wrong length is a stream error, reported once the payload is skipped
        onStream(name, streamId);
        break;
      case FrameType.RST_STREAM: // §6.4
        onStream(name, streamId);
        exactly(name, length, 4);
        break;
      case FrameType.SETTINGS: // §6.5
        onConnection(name, streamId);
        if (flags & Flags.ACK) exactly(name, length, 0);
        else if (length % 6 !== 0) throw new Http2Error(ErrorCode.FRAME_SIZE_ERROR, 0, `SETTINGS frame of ${length} octets, not a multiple of 6`);
        break;
      case FrameType.PUSH_PROMISE: // §6.6, §8.4: we always send SETTINGS_ENABLE_PUSH = 0
        throw protocol('PUSH_PROMISE from a server whose client disabled push');
      case FrameType.PING: // §6.7
        onConnection(name, streamId);
        exactly(name, length, 8);
        break;
      case FrameType.GOAWAY: // §6.8
        onConnection(name, streamId);
        atLeast(name, length, 8, 'its Last-Stream-ID and Error Code');
        break;
      case FrameType.WINDOW_UPDATE: // §6.9: on stream 0 or any other
        exactly(name, length, 4);
        break;
      case FrameType.CONTINUATION: // §6.10
        onStream(name, streamId);
        if (!block) throw protocol(`CONTINUATION frame on stream ${streamId} without a HEADERS frame before it`);
        this.#checkBlockSize(block.size + length);
        break;
    }
  }

  /** Hands one whole frame to the handler (or, for a header block fragment, keeps it). */
  #frame(payload: Buffer): void {
    const h = this.#handler;
    const [type, flags, streamId] = [this.#type, this.#flags, this.#streamId];
    switch (type) {
      case FrameType.DATA:
        h.data(streamId, this.#unpadded(payload, 0), (flags & Flags.END_STREAM) !== 0, payload.length);
        return;
      case FrameType.HEADERS: {
        // §6.2: [Pad Length (8)] [Exclusive (1), Stream Dependency (31), Weight (8)] Fragment [Padding].
        // The priority fields are skipped: RFC 9113 deprecates that scheme (§5.3.2) and a client has no use for it.
        const fragment = this.#unpadded(payload, flags & Flags.PRIORITY ? 5 : 0);
        this.#checkBlockSize(fragment.length);
        const endStream = (flags & Flags.END_STREAM) !== 0;
        if (flags & Flags.END_HEADERS) h.headers(streamId, fragment, endStream);
        else this.#block = { streamId, endStream, fragments: [fragment], size: fragment.length };
        return;
      }
      case FrameType.PRIORITY:
        if (payload.length !== 5) {
          h.streamError(new Http2Error(ErrorCode.FRAME_SIZE_ERROR, streamId, `PRIORITY frame of ${payload.length} octets, must be 5`));
        }
        return;
      case FrameType.RST_STREAM:
        h.rstStream(streamId, payload.readUInt32BE(0));
        return;
      case FrameType.SETTINGS:
        if (flags & Flags.ACK) h.settingsAck();
        else h.settings(readSettings(payload));
        return;
      case FrameType.PING:
        h.ping(payload, (flags & Flags.ACK) !== 0);
        return;
      case FrameType.GOAWAY:
        h.goaway(payload.readUInt32BE(0) & 0x7fff_ffff, payload.readUInt32BE(4), payload.subarray(8));
        return;
      case FrameType.WINDOW_UPDATE: {
        const increment = payload.readUInt32BE(0) & 0x7fff_ffff; // §6.9: a reserved bit, then 31 bits
        if (increment !== 0) h.windowUpdate(streamId, increment);
        else if (streamId === 0) throw protocol('WINDOW_UPDATE of 0 for the connection');
        else h.streamError(new Http2Error(ErrorCode.PROTOCOL_ERROR, streamId, 'WINDOW_UPDATE of 0'));
        return;
      }
      case FrameType.CONTINUATION: {
        const block = this.#block!; // #readHeader made sure
        block.fragments.push(payload);
        block.size += payload.length;
        if (flags & Flags.END_HEADERS) {
          this.#block = undefined;
          h.headers(streamId, Buffer.concat(block.fragments, block.size), block.endStream);
        }
        return;
      }
      default:
        h.unknown?.(type, flags, streamId, payload);
    }
  }

  /**
   * The payload without its Pad Length octet, `fixed` octets of fields after it, and its Padding
   * (§6.1, §6.2). Padding that leaves less than nothing for the content is a PROTOCOL_ERROR.
   */
  #unpadded(payload: Buffer, fixed: number): Buffer {
    if (!(this.#flags & Flags.PADDED)) return payload.subarray(fixed);
    const padLength = payload[0]!;
    if (padLength > payload.length - 1 - fixed) {
      throw protocol(`${typeName(this.#type)} frame of ${payload.length} octets with ${padLength} octets of padding`);
    }
    return payload.subarray(1 + fixed, payload.length - padLength);
  }

  #checkBlockSize(size: number): void {
    if (size > this.#maxHeaderBlockSize) {
      throw new Http2Error(ErrorCode.ENHANCE_YOUR_CALM, 0, `header block of more than ${this.#maxHeaderBlockSize} octets`);
    }
  }
}

function protocol(detail: string): Http2Error {
  return new Http2Error(ErrorCode.PROTOCOL_ERROR, 0, detail);
}

/** DATA, HEADERS, PRIORITY, RST_STREAM and CONTINUATION belong to a stream: on stream 0 they are a PROTOCOL_ERROR. */
function onStream(name: string, streamId: number): void {
  if (streamId === 0) throw protocol(`${name} frame on stream 0`);
}

/** §4.2: a frame "too small to contain mandatory frame data" is a FRAME_SIZE_ERROR. */
function atLeast(name: string, length: number, min: number, why: string): void {
  if (length < min) throw new Http2Error(ErrorCode.FRAME_SIZE_ERROR, 0, `${name} frame of ${length} octets, too short for ${why}`);
}

/** A frame type with one fixed length (RST_STREAM, SETTINGS ACK, PING, WINDOW_UPDATE): any other is a FRAME_SIZE_ERROR. */
function exactly(name: string, length: number, size: number): void {
  if (length !== size) throw new Http2Error(ErrorCode.FRAME_SIZE_ERROR, 0, `${name} frame of ${length} octets, must be ${size}`);
}

/** SETTINGS, PING and GOAWAY belong to the connection: on any other stream they are a PROTOCOL_ERROR. */
function onConnection(name: string, streamId: number): void {
  if (streamId !== 0) throw protocol(`${name} frame on stream ${streamId}, must be 0`);
}

/** A SETTINGS payload (§6.5.1): id (16) value (32), six octets each; each value checked (§6.5.2). */
function readSettings(payload: Buffer): SettingEntry[] {
  const list: SettingEntry[] = [];
  for (let at = 0; at < payload.length; at += 6) {
    const id = payload.readUInt16BE(at);
    const value = payload.readUInt32BE(at + 2);
    const problem = settingProblem(id, value);
    if (problem) throw new Http2Error(problem[0], 0, problem[1]);
    // §6.5.2: "A client MUST treat receipt of a SETTINGS frame with SETTINGS_ENABLE_PUSH set to 1 as a connection error".
    if (id === Setting.ENABLE_PUSH && value === 1) throw protocol('SETTINGS_ENABLE_PUSH of 1 from a server');
    list.push([id, value]);
  }
  return list;
}
