/**
 * HTTP/2 frames (RFC 9113 §4, §6): the constants, Http2Error (the peer broke the RFC), and encoders
 * from fields to bytes. The incremental parser from bytes to one typed callback per frame is in
 * frame-parser.ts (which imports this file; this one imports nothing of it). No I/O and no stream state:
 * the connection owns streams, windows and HPACK; these modules only know what a frame, or a header
 * block, looks like on the wire (§4.1):
 *
 *   HTTP Frame {
 *     Length (24),              payload octets, not counting these 9
 *     Type (8),
 *     Flags (8),
 *     Reserved (1),             ignored on receipt, sent as 0
 *     Stream Identifier (31),   0 = the connection itself
 *     Frame Payload (..),
 *   }
 *
 * What the parser checks and what the connection checks is set out in frame-parser.ts. SETTINGS values
 * (§6.5.2) have one rule set, settingProblem, which the encoder and the parser both apply; it, checkInt
 * and typeName are exported for frame-parser.ts, not for callers.
 */
import { invalidType, outOfRange, ProtocolError } from '../../errors.js';


/** Frame types (§6, §11.2). */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** Frame flags (§6). The same bit means different things in different frame types: ACK and END_STREAM are both 0x1. */
export const Flags = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

/** SETTINGS parameter identifiers (§6.5.2). */
export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** Error codes carried by RST_STREAM and GOAWAY (§7). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

const codeNames = new Map<number, string>(Object.entries(ErrorCode).map(([name, code]) => [code, name]));
const typeNames = new Map<number, string>(Object.entries(FrameType).map(([name, type]) => [type, name]));

/** The name of an HTTP/2 error code, e.g. `'CANCEL'`; an unknown code (§7 allows them) reads `'UNKNOWN_ERROR_0x2a'`. */
export function errorCodeName(code: number): string {
  return codeNames.get(code) ?? `UNKNOWN_ERROR_0x${code.toString(16)}`;
}

export function typeName(type: number): string {
  return typeNames.get(type) ?? `unknown type 0x${type.toString(16)}`;
}

/** The 24 octets a client sends before its first SETTINGS frame (§3.4). Shared: never write into it. */
export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Octets in every frame header (§4.1). */
export const FRAME_HEADER_LENGTH = 9;
/** SETTINGS_MAX_FRAME_SIZE before any SETTINGS (§6.5.2), and the smallest value it may take (2^14). */
export const DEFAULT_MAX_FRAME_SIZE = 16_384;
/** The largest SETTINGS_MAX_FRAME_SIZE (2^24-1, what the 24-bit length can say). */
export const MAX_MAX_FRAME_SIZE = 16_777_215;
/** SETTINGS_INITIAL_WINDOW_SIZE before any SETTINGS, and the connection window's first size (§6.9.2). */
export const DEFAULT_INITIAL_WINDOW_SIZE = 65_535;
/** The largest flow-control window, and the largest WINDOW_UPDATE increment (2^31-1, §6.9.1). */
export const MAX_WINDOW_SIZE = 2_147_483_647;
/** The largest stream identifier (31 bits, §5.1.1). */
export const MAX_STREAM_ID = 2_147_483_647;
/** The default of {@link FrameParserOptions.maxHeaderBlockSize}. */
export const DEFAULT_MAX_HEADER_BLOCK_SIZE = 65_536;

/**
 * The peer broke RFC 9113. `streamId` 0 means a connection error (§5.4.1: send GOAWAY with
 * `errorCode`, close the connection); any other id is a stream error (§5.4.2: send RST_STREAM with
 * `errorCode` on that stream, and the connection carries on).
 */
export class Http2Error extends ProtocolError {
  /** The HTTP/2 error code (§7) to send the peer, e.g. {@link ErrorCode}.FRAME_SIZE_ERROR. */
  readonly errorCode: number;
  /** 0 for a connection error, else the stream the error is confined to. */
  readonly streamId: number;
  constructor(errorCode: number, streamId: number, detail: string) {
    super(`${errorCodeName(errorCode)}: ${detail}${streamId === 0 ? '' : ` (stream ${streamId})`}`);
    this.errorCode = errorCode;
    this.streamId = streamId;
  }
}

/** One SETTINGS parameter, as it sits on the wire (§6.5.1): a 16-bit id and a 32-bit value. */
export type SettingEntry = [id: number, value: number];

/**
 * What is wrong with a SETTINGS value (§6.5.2), or undefined if nothing. One rule set for both
 * directions: the encoder refuses to send what the parser would reject.
 */
export function settingProblem(id: number, value: number): [code: number, detail: string] | undefined {
  if (id === Setting.ENABLE_PUSH && value > 1) {
    return [ErrorCode.PROTOCOL_ERROR, `SETTINGS_ENABLE_PUSH of ${value}, must be 0 or 1`];
  }
  if (id === Setting.INITIAL_WINDOW_SIZE && value > MAX_WINDOW_SIZE) {
    return [ErrorCode.FLOW_CONTROL_ERROR, `SETTINGS_INITIAL_WINDOW_SIZE of ${value}, more than 2^31-1`];
  }
  if (id === Setting.MAX_FRAME_SIZE && (value < DEFAULT_MAX_FRAME_SIZE || value > MAX_MAX_FRAME_SIZE)) {
    return [ErrorCode.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE of ${value}, must be 2^14 to 2^24-1`];
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Encoders. Each frame is one Buffer, header and payload together, so the connection writes it in
// one call and nothing can come between the two halves.

export function checkInt(what: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw outOfRange(`${what} must be an integer from ${min} to ${max}, got ${value}`);
  }
}

function checkBuffer(what: string, value: unknown): asserts value is Buffer {
  if (!Buffer.isBuffer(value)) throw invalidType(`${what} must be a Buffer, got ${typeof value}`);
}

/** A zeroed buffer for a whole frame, its 9-octet header written and its payload left to the caller. */
function frame(length: number, type: number, flags: number, streamId: number): Buffer {
  const buf = Buffer.alloc(FRAME_HEADER_LENGTH + length);
  buf.writeUIntBE(length, 0, 3);
  buf[3] = type;
  buf[4] = flags;
  buf.writeUInt32BE(streamId, 5); // the reserved bit stays 0 (§4.1): streamId <= 2^31-1
  return buf;
}

/** The 9-octet header of a frame (§4.1), for a frame whose payload the caller writes itself. */
export function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  checkInt('frame length', length, 0, MAX_MAX_FRAME_SIZE);
  checkInt('frame type', type, 0, 0xff);
  checkInt('frame flags', flags, 0, 0xff);
  checkInt('stream id', streamId, 0, MAX_STREAM_ID);
  const header = frame(0, type, flags, streamId);
  header.writeUIntBE(length, 0, 3);
  return header;
}

/**
 * A SETTINGS frame (§6.5) carrying `settings` in order. Values the RFC forbids (ENABLE_PUSH not 0/1,
 * INITIAL_WINDOW_SIZE over 2^31-1, MAX_FRAME_SIZE outside 2^14..2^24-1) are a RangeError.
 */
export function settingsFrame(settings: ReadonlyArray<readonly [id: number, value: number]>): Buffer {
  const buf = frame(settings.length * 6, FrameType.SETTINGS, 0, 0);
  settings.forEach(([id, value], i) => {
    checkInt('setting id', id, 0, 0xffff);
    checkInt(`setting 0x${id.toString(16)}`, value, 0, 0xffff_ffff);
    const problem = settingProblem(id, value);
    if (problem) throw outOfRange(problem[1]);
    buf.writeUInt16BE(id, FRAME_HEADER_LENGTH + i * 6);
    buf.writeUInt32BE(value, FRAME_HEADER_LENGTH + i * 6 + 2);
  });
  return buf;
}

/** The empty SETTINGS frame with ACK that acknowledges the peer's SETTINGS (§6.5.3). */
export function settingsAck(): Buffer {
  return frame(0, FrameType.SETTINGS, Flags.ACK, 0);
}

/** {@link headersFrames}' options. */
export interface HeadersFramesOptions {
  /** Set END_STREAM: no DATA follows on this stream (§8.1). */
  endStream: boolean;
  /** The peer's SETTINGS_MAX_FRAME_SIZE, which no frame may exceed (§4.2). Default 16384. */
  maxFrameSize?: number;
}

/**
 * An encoded header block (HPACK output) as a HEADERS frame followed, when the block is bigger than
 * `maxFrameSize`, by CONTINUATION frames (§6.2, §6.10). END_STREAM goes on the HEADERS frame and
 * END_HEADERS on the last one. Write them back to back: no other frame of any stream may come between
 * (§6.10). Never padded, never with priority fields (§5.3.2: deprecated).
 */
export function headersFrames(streamId: number, block: Buffer, options: HeadersFramesOptions): Buffer[] {
  checkInt('HEADERS stream id', streamId, 1, MAX_STREAM_ID);
  checkBuffer('a header block', block);
  const maxFrameSize = options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
  checkInt('maxFrameSize', maxFrameSize, DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE);
  const frames: Buffer[] = [];
  let offset = 0;
  do {
    const length = Math.min(maxFrameSize, block.length - offset);
    const first = offset === 0;
    let flags = offset + length === block.length ? Flags.END_HEADERS : 0;
    if (first && options.endStream) flags |= Flags.END_STREAM;
    const buf = frame(length, first ? FrameType.HEADERS : FrameType.CONTINUATION, flags, streamId);
    block.copy(buf, FRAME_HEADER_LENGTH, offset, offset + length);
    frames.push(buf);
    offset += length;
  } while (offset < block.length);
  return frames;
}

/**
 * A DATA frame (§6.1), unpadded. The caller keeps `payload` within the peer's SETTINGS_MAX_FRAME_SIZE
 * and its flow-control windows; this only refuses what no frame can carry (over 2^24-1 octets).
 */
export function dataFrame(streamId: number, payload: Buffer, endStream: boolean): Buffer {
  checkInt('DATA stream id', streamId, 1, MAX_STREAM_ID);
  checkBuffer('a DATA payload', payload);
  checkInt('DATA payload length', payload.length, 0, MAX_MAX_FRAME_SIZE);
  const buf = frame(payload.length, FrameType.DATA, endStream ? Flags.END_STREAM : 0, streamId);
  payload.copy(buf, FRAME_HEADER_LENGTH);
  return buf;
}

/** A WINDOW_UPDATE frame (§6.9) for a stream, or for the connection when `streamId` is 0. */
export function windowUpdateFrame(streamId: number, increment: number): Buffer {
  checkInt('WINDOW_UPDATE stream id', streamId, 0, MAX_STREAM_ID);
  checkInt('a window increment', increment, 1, MAX_WINDOW_SIZE); // 0 is a PROTOCOL_ERROR at the peer (§6.9)
  const buf = frame(4, FrameType.WINDOW_UPDATE, 0, streamId);
  buf.writeUInt32BE(increment, FRAME_HEADER_LENGTH);
  return buf;
}

/** A PING (§6.7) with 8 opaque octets; with `ack`, the answer to the peer's PING, echoing its octets. */
export function pingFrame(opaque: Buffer, ack: boolean): Buffer {
  checkBuffer('PING opaque data', opaque);
  if (opaque.length !== 8) throw outOfRange(`PING opaque data must be 8 octets, got ${opaque.length}`);
  const buf = frame(8, FrameType.PING, ack ? Flags.ACK : 0, 0);
  opaque.copy(buf, FRAME_HEADER_LENGTH);
  return buf;
}

/** A RST_STREAM frame (§6.4): ends one stream with an error code (CANCEL for a call given up on, §7). */
export function rstStreamFrame(streamId: number, code: number): Buffer {
  checkInt('RST_STREAM stream id', streamId, 1, MAX_STREAM_ID);
  checkInt('an error code', code, 0, 0xffff_ffff);
  const buf = frame(4, FrameType.RST_STREAM, 0, streamId);
  buf.writeUInt32BE(code, FRAME_HEADER_LENGTH);
  return buf;
}

/**
 * A GOAWAY frame (§6.8): no streams above `lastStreamId` were or will be processed. `debug` is opaque
 * diagnostic data (§6.8 warns it may be logged: never put secrets in it).
 */
export function goawayFrame(lastStreamId: number, code: number, debug: Buffer = Buffer.alloc(0)): Buffer {
  checkInt('GOAWAY last stream id', lastStreamId, 0, MAX_STREAM_ID);
  checkInt('an error code', code, 0, 0xffff_ffff);
  checkBuffer('GOAWAY debug data', debug);
  checkInt('GOAWAY debug data length', debug.length, 0, MAX_MAX_FRAME_SIZE - 8);
  const buf = frame(8 + debug.length, FrameType.GOAWAY, 0, 0);
  buf.writeUInt32BE(lastStreamId, FRAME_HEADER_LENGTH);
  buf.writeUInt32BE(code, FRAME_HEADER_LENGTH + 4);
  debug.copy(buf, FRAME_HEADER_LENGTH + 8);
  return buf;
}
