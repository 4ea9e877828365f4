/**
 * gRPC over HTTP/2 (grpc/grpc doc/PROTOCOL-HTTP2.md): the length-prefixed messages inside a stream's
 * DATA frames, and the two header values that need their own codec, grpc-timeout and grpc-message.
 *
 *   Length-Prefixed-Message → Compressed-Flag Message-Length Message
 *   Compressed-Flag         → 0 / 1                  one octet
 *   Message-Length          → {length of Message}    four octets, big-endian, unsigned
 *
 * Messages do not line up with DATA frames: one frame may carry many messages, one message may span
 * many frames, and even the 5-octet prefix may be cut in two. GrpcMessageReader keeps the state in
 * between. No I/O here: the HTTP/2 session feeds it the payloads of one stream's DATA frames.
 */
import { invalidType, outOfRange, ProtocolError } from '../../errors.js';

/** Octets before each message: the Compressed-Flag and the Message-Length. */
export const GRPC_PREFIX_LENGTH = 5;

/**
 * The default of {@link GrpcMessageReaderOptions.maxMessageSize}: 16 MiB. grpc-go's client allows
 * 4 MiB, but an etcd Range over many keys answers in one message, and etcd's own client accepts up to
 * 2 GiB; 16 MiB keeps large ranges working while still bounding what a server can make us buffer.
 */
export const DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024;

// The gRPC status codes these errors map to (grpc doc/statuscodes.md).
const RESOURCE_EXHAUSTED = 8;
const INTERNAL = 13;

/**
 * A stream's DATA did not hold valid gRPC messages. Only that call fails (reset its stream); the
 * connection is fine. `grpcCode` is the status the call fails with.
 */
export class GrpcFramingError extends ProtocolError {
  /** RESOURCE_EXHAUSTED (8) for a message over the size limit, INTERNAL (13) for anything else. */
  readonly grpcCode: number;
  constructor(grpcCode: number, message: string) {
    super(message);
    this.grpcCode = grpcCode;
  }
}

/** One message with its prefix, in one Buffer. Never compressed: we send no grpc-encoding. */
export function encodeGrpcMessage(message: Buffer): Buffer {
  if (!Buffer.isBuffer(message)) throw invalidType(`a gRPC message must be a Buffer, got ${typeof message}`);
  if (message.length > 0xffff_ffff) throw outOfRange(`a gRPC message of ${message.length} octets is more than 2^32-1`);
  const buf = Buffer.allocUnsafe(GRPC_PREFIX_LENGTH + message.length);
  buf[0] = 0;
  buf.writeUInt32BE(message.length, 1);
  message.copy(buf, GRPC_PREFIX_LENGTH);
  return buf;
}

/** {@link GrpcMessageReader} options. */
export interface GrpcMessageReaderOptions {
  /** The largest message accepted; a larger announced length fails before any of it is buffered. Default 16 MiB ({@link DEFAULT_MAX_MESSAGE_SIZE}). */
  maxMessageSize?: number;
}

/**
 * Cuts one stream's DATA payloads into gRPC messages. Each message is copied at most once: one that
 * sits inside a chunk is returned as a view of it (so do not reuse pushed chunks), one that spans
 * chunks gets one buffer of its announced length.
 *
 * After an error, every later `push()` and `end()` throws the same error.
 */
export class GrpcMessageReader {
  readonly #maxMessageSize: number;
  /** The prefix, when a chunk boundary cuts through it. */
  readonly #prefix = Buffer.alloc(GRPC_PREFIX_LENGTH);
  #prefixFilled = 0;
  /** A message spanning chunks: allocated at its full length, `#filled` octets in so far. */
  #message: Buffer | undefined;
  #filled = 0;
  #failure: GrpcFramingError | undefined;

  constructor(options: GrpcMessageReaderOptions = {}) {
    this.#maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    if (!Number.isInteger(this.#maxMessageSize) || this.#maxMessageSize < 0 || this.#maxMessageSize > 0xffff_ffff) {
      throw outOfRange(`maxMessageSize must be an integer from 0 to 2^32-1, got ${this.#maxMessageSize}`);
    }
  }

  /** The messages that `chunk` completes, in order (often none, sometimes many). */
  push(chunk: Buffer): Buffer[] {
    if (this.#failure) throw this.#failure;
    const messages: Buffer[] = [];
    let pos = 0;
    while (pos < chunk.length) {
      if (this.#message) {
        const n = Math.min(chunk.length - pos, this.#message.length - this.#filled);
        chunk.copy(this.#message, this.#filled, pos, pos + n);
        pos += n;
        this.#filled += n;
        if (this.#filled === this.#message.length) {
          messages.push(this.#message);
          this.#message = undefined;
        }
        continue;
      }
      let length: number;
      if (this.#prefixFilled === 0 && chunk.length - pos >= GRPC_PREFIX_LENGTH) {
        length = this.#readPrefix(chunk, pos);
        pos += GRPC_PREFIX_LENGTH;
      } else {
        const n = Math.min(GRPC_PREFIX_LENGTH - this.#prefixFilled, chunk.length - pos);
        chunk.copy(this.#prefix, this.#prefixFilled, pos, pos + n);
        pos += n;
        this.#prefixFilled += n;
        if (this.#prefixFilled < GRPC_PREFIX_LENGTH) break;
        this.#prefixFilled = 0;
        length = this.#readPrefix(this.#prefix, 0);
      }
      if (chunk.length - pos >= length) {
        messages.push(chunk.subarray(pos, pos + length)); // a 0-length message too
        pos += length;
      } else {
        this.#message = Buffer.allocUnsafe(length); // filled by copies before anyone reads it
        this.#filled = 0;
      }
    }
    return messages;
  }

  /** The stream has ended (END_STREAM): throws if it ended inside a message. */
  end(): void {
    if (this.#failure) throw this.#failure;
    if (this.#message || this.#prefixFilled > 0) {
      const detail = this.#message
        ? `${this.#filled} of the ${this.#message.length} octets of a message`
        : `${this.#prefixFilled} of the ${GRPC_PREFIX_LENGTH} octets of a message prefix`;
      this.#fail(INTERNAL, `the stream ended after ${detail}`);
    }
  }

  /** The Message-Length of the prefix at `at`, checked (flag and size) before anything is buffered. */
  #readPrefix(buf: Buffer, at: number): number {
    const flag = buf[at]!;
    const length = buf.readUInt32BE(at + 1);
    if (flag === 1) this.#fail(INTERNAL, 'a compressed gRPC message, though no grpc-encoding was asked for');
    if (flag !== 0) this.#fail(INTERNAL, `a gRPC message with Compressed-Flag ${flag}, must be 0 or 1`);
    if (length > this.#maxMessageSize) {
      this.#fail(RESOURCE_EXHAUSTED, `a gRPC message of ${length} octets, more than maxMessageSize ${this.#maxMessageSize}`);
    }
    return length;
  }

  #fail(grpcCode: number, message: string): never {
    this.#failure = new GrpcFramingError(grpcCode, message);
    throw this.#failure;
  }
}

// ---------------------------------------------------------------------------------------------
// grpc-timeout → TimeoutValue TimeoutUnit: at most 8 digits, then H M S m u n (hours .. nanoseconds).

/** The units, finest first, with their size in nanoseconds. */
const TIMEOUT_UNITS: ReadonlyArray<readonly [unit: string, ns: bigint]> = [
  ['n', 1n],
  ['u', 1_000n],
  ['m', 1_000_000n],
  ['S', 1_000_000_000n],
  ['M', 60_000_000_000n],
  ['H', 3_600_000_000_000n],
];
const MAX_TIMEOUT_VALUE = 99_999_999n;
const MS_PER_UNIT: Record<string, number> = { n: 1e-6, u: 1e-3, m: 1, S: 1e3, M: 60e3, H: 3600e3 };

/**
 * The grpc-timeout value for a deadline `ms` milliseconds away, in the finest unit that fits in 8
 * digits: 50 → '50000000n', 1500 → '1500000u', 3 600 000 → '3600000m'. A value that does not divide
 * evenly is rounded up, so the server never gives up before the client's own deadline. Throws
 * RangeError for 0, a negative or non-finite `ms`, or more than 99 999 999 hours (to wait forever,
 * send no grpc-timeout).
 */
export function formatGrpcTimeout(ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) throw outOfRange(`a grpc-timeout must be a positive finite number of ms, got ${ms}`);
  // Whole milliseconds as an exact integer, the fraction rounded to the nanosecond: 1.1 ms must not
  // become 1 100 001 ns through floating-point noise.
  const whole = Math.floor(ms);
  let ns = BigInt(whole) * 1_000_000n + BigInt(Math.round((ms - whole) * 1e6));
  if (ns === 0n) ns = 1n; // less than half a nanosecond, but still a positive timeout
  for (const [unit, size] of TIMEOUT_UNITS) {
    const value = (ns + size - 1n) / size;
    if (value <= MAX_TIMEOUT_VALUE) return `${value}${unit}`;
  }
  throw outOfRange(`a grpc-timeout of ${ms} ms is more than 99999999 hours`);
}

/**
 * A grpc-timeout value in milliseconds ('1500m' → 1500, '30S' → 30000, '1500u' → 1.5), or undefined
 * if it is not 1 to 8 digits followed by one of H M S m u n. '0m' is accepted as 0 (an expired deadline).
 */
export function parseGrpcTimeout(value: string): number | undefined {
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  return m ? Number(m[1]) * MS_PER_UNIT[m[2]!]! : undefined;
}

// ---------------------------------------------------------------------------------------------
// grpc-message: the status message as UTF-8, each octet outside %x20-%x7E, and '%' itself, written %XX.

/**
 * The text of a grpc-message value. Percent-encoded octets are UTF-8 decoded (invalid UTF-8 becomes
 * U+FFFD); a '%' not followed by two hex digits is kept as it is. The spec asks decoders never to fail
 * or drop the message, so this never throws. Lowercase hex is accepted though senders use uppercase.
 */
export function decodeGrpcMessageText(value: string): string {
  // A multi-octet character is always one unbroken run of escapes, so decoding run by run is exact.
  return value.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => Buffer.from(run.replaceAll('%', ''), 'hex').toString('utf8'));
}

/** `text` as a grpc-message value: its UTF-8 octets, percent-encoded where the spec says (for fakes and tests). */
export function encodeGrpcMessageText(text: string): string {
  let out = '';
  for (const octet of Buffer.from(text, 'utf8')) {
    out += octet >= 0x20 && octet <= 0x7e && octet !== 0x25 ? String.fromCharCode(octet) : `%${octet.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
