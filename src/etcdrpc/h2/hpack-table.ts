/**
 * The tables and primitive representations HPACK (RFC 7541) is built from: the static table
 * (Appendix A), the dynamic table (2.3.2, 4), integers with an N-bit prefix (5.1, encodeInteger and
 * decodeInteger) and the block writer that also writes string literals (5.2). hpack.ts, the decoder
 * and the encoder of whole header blocks (section 6), is written on top of these.
 *
 * A separate file so that hpack.ts reads as the RFC's section 6 does. HpackError lives here because
 * decodeInteger throws it: in hpack.ts, which re-exports this file, it would make the two modules
 * import each other at run time. From hpack.ts this file takes only the HeaderList type, which
 * compiles away. hpack.ts re-exports the public part (HpackError, STATIC_TABLE, encodeInteger,
 * decodeInteger); the rest is exported for hpack.ts alone.
 *
 * Strings are latin1 here as in hpack.ts: one character per octet.
 */
import { ProtocolError, outOfRange } from '../../errors.js';
import type { HeaderList } from './hpack.js';
import { huffmanEncode, huffmanEncodedLength } from './huffman.js';

/**
 * A header block could not be decoded: what HTTP/2 calls a COMPRESSION_ERROR, fatal to the
 * connection (RFC 9113 4.3). Its code is `WL_PROTOCOL`.
 */
export class HpackError extends ProtocolError {
  /** Where in the header block the bad representation (field, integer or string) starts, if known. */
  readonly offset: number | undefined;
  constructor(message: string, offset?: number, options?: { cause?: unknown }) {
    super(`HPACK: ${message}${offset === undefined ? '' : ` (at octet ${offset} of the header block)`}`, options);
    this.offset = offset;
  }
}

/** The static table (RFC 7541 Appendix A): `STATIC_TABLE[i - 1]` is index i. */
export const STATIC_TABLE: ReadonlyArray<readonly [name: string, value: string]> = [
  [':authority', ''], // 1
  [':method', 'GET'], // 2
  [':method', 'POST'], // 3
  [':path', '/'], // 4
  [':path', '/index.html'], // 5
  [':scheme', 'http'], // 6
  [':scheme', 'https'], // 7
  [':status', '200'], // 8
  [':status', '204'], // 9
  [':status', '206'], // 10
  [':status', '304'], // 11
  [':status', '400'], // 12
  [':status', '404'], // 13
  [':status', '500'], // 14
  ['accept-charset', ''], // 15
  ['accept-encoding', 'gzip, deflate'], // 16
  ['accept-language', ''], // 17
  ['accept-ranges', ''], // 18
  ['accept', ''], // 19
  ['access-control-allow-origin', ''], // 20
  ['age', ''], // 21
  ['allow', ''], // 22
  ['authorization', ''], // 23
  ['cache-control', ''], // 24
  ['content-disposition', ''], // 25
  ['content-encoding', ''], // 26
  ['content-language', ''], // 27
  ['content-length', ''], // 28
  ['content-location', ''], // 29
  ['content-range', ''], // 30
  ['content-type', ''], // 31
  ['cookie', ''], // 32
  ['date', ''], // 33
  ['etag', ''], // 34
  ['expect', ''], // 35
  ['expires', ''], // 36
  ['from', ''], // 37
  ['host', ''], // 38
  ['if-match', ''], // 39
  ['if-modified-since', ''], // 40
  ['if-none-match', ''], // 41
  ['if-range', ''], // 42
  ['if-unmodified-since', ''], // 43
  ['last-modified', ''], // 44
  ['link', ''], // 45
  ['location', ''], // 46
  ['max-forwards', ''], // 47
  ['proxy-authenticate', ''], // 48
  ['proxy-authorization', ''], // 49
  ['range', ''], // 50
  ['referer', ''], // 51
  ['refresh', ''], // 52
  ['retry-after', ''], // 53
  ['server', ''], // 54
  ['set-cookie', ''], // 55
  ['strict-transport-security', ''], // 56
  ['transfer-encoding', ''], // 57
  ['user-agent', ''], // 58
  ['vary', ''], // 59
  ['via', ''], // 60
  ['www-authenticate', ''], // 61
];

/** Map key of a (name, value) pair; the length prefix keeps `a`+`bc` apart from `ab`+`c`. */
export const fieldKey = (name: string, value: string): string => `${name.length}:${name}${value}`;

// The static table indexed once: the first index of each name, and the index of each exact field.
export const STATIC_NAMES = new Map<string, number>();
export const STATIC_FIELDS = new Map<string, number>();
for (const [i, [name, value]] of STATIC_TABLE.entries()) {
  if (!STATIC_NAMES.has(name)) STATIC_NAMES.set(name, i + 1);
  STATIC_FIELDS.set(fieldKey(name, value), i + 1);
}

/** RFC 7541 4.1: an entry's size is its name's and value's octets plus 32 (an estimate of overhead). */
export const entrySize = (name: string, value: string): number => name.length + value.length + 32;

/** The largest integer we read or write: sizes and lengths beyond 32 bits make no sense here. */
export const MAX_INTEGER = 2 ** 32 - 1;
/** 5 continuation octets carry 35 bits; more can only be padding with zeros, or an attack. */
const MAX_CONTINUATIONS = 5;

/**
 * Reads an integer with an N-bit prefix (RFC 7541 5.1) at `offset`: the low `prefixBits` bits of
 * that octet, then, if they are all ones, 7 bits per continuation octet, least significant first.
 *
 * @returns the value and the offset after it
 * @throws HpackError if the block ends inside it, or it is above 2^32 - 1 or has more than 5 continuation octets
 */
export function decodeInteger(block: Buffer, offset: number, prefixBits: number): { value: number; next: number } {
  if (offset >= block.length) throw new HpackError('the block ends where an integer should start', offset);
  const max = (1 << prefixBits) - 1;
  let value = block[offset]! & max;
  let at = offset + 1;
  if (value < max) return { value, next: at };
  for (let count = 0, factor = 1; ; count++, factor *= 128) {
    if (at >= block.length) throw new HpackError('the block ends inside an integer', offset);
    if (count === MAX_CONTINUATIONS) throw new HpackError(`an integer runs over more than ${MAX_CONTINUATIONS} continuation octets`, offset);
    const octet = block[at++]!;
    value += (octet & 0x7f) * factor;
    if (value > MAX_INTEGER) throw new HpackError('an integer is larger than 2^32 - 1', offset);
    if ((octet & 0x80) === 0) return { value, next: at };
  }
}

/** The output of one header block: a buffer that grows as needed. */
export class BlockWriter {
  #buf = Buffer.allocUnsafe(256);
  #length = 0;

  #room(n: number): void {
    if (this.#length + n <= this.#buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#length + n));
    this.#buf.copy(bigger, 0, 0, this.#length);
    this.#buf = bigger;
  }

  byte(octet: number): void {
    this.#room(1);
    this.#buf[this.#length++] = octet;
  }

  bytes(octets: Buffer): void {
    this.#room(octets.length);
    this.#length += octets.copy(this.#buf, this.#length);
  }

  /** RFC 7541 5.1: `value` with a `prefixBits`-bit prefix, in an octet whose high bits are `pattern`. */
  integer(value: number, prefixBits: number, pattern: number): void {
    const max = (1 << prefixBits) - 1;
    if (value < max) return this.byte(pattern | value);
    this.byte(pattern | max);
    // Arithmetic, not bit operators: these work on 32-bit signed numbers, and `value` may need 32 bits.
    for (value -= max; value >= 128; value = Math.floor(value / 128)) this.byte((value % 128) | 0x80);
    this.byte(value);
  }

  /** RFC 7541 5.2: a string literal, Huffman-coded if (and only if) that makes it shorter. */
  string(s: string, huffman: boolean): void {
    const raw = Buffer.from(s, 'latin1');
    if (huffman && huffmanEncodedLength(raw) < raw.length) {
      const coded = huffmanEncode(raw);
      this.integer(coded.length, 7, 0x80);
      this.bytes(coded);
    } else {
      this.integer(raw.length, 7, 0x00);
      this.bytes(raw);
    }
  }

  finish(): Buffer {
    return this.#buf.subarray(0, this.#length);
  }
}

/** Writes `value` as an integer with a `prefixBits`-bit prefix (RFC 7541 5.1), the octet's high bits set to `pattern`. */
export function encodeInteger(value: number, prefixBits: number, pattern = 0): Buffer {
  if (!Number.isInteger(value) || value < 0 || value > MAX_INTEGER) throw outOfRange(`an HPACK integer must be an integer from 0 to 2^32 - 1, got ${value}`);
  const out = new BlockWriter();
  out.integer(value, prefixBits, pattern);
  return out.finish();
}

/** One dynamic table entry. `seq` counts insertions, so an entry's index follows from it (see `indexOf`). */
export interface TableEntry {
  readonly name: string;
  readonly value: string;
  readonly size: number;
  readonly seq: number;
}

/**
 * The dynamic table (RFC 7541 2.3.2, 4): a FIFO of fields bounded by the sum of their sizes. New
 * entries get the lowest dynamic index (62); the oldest is evicted first. The encoder and the
 * decoder each keep one, and each change the same way.
 */
export class DynamicTable {
  /** Oldest first; the live entries are those from `#head` on (evicting just moves `#head`). */
  #entries: TableEntry[] = [];
  #head = 0;
  #size = 0;
  #capacity: number;
  #inserted = 0;
  readonly #onEvict: ((entry: TableEntry) => void) | undefined;

  constructor(capacity: number, onEvict?: (entry: TableEntry) => void) {
    this.#capacity = capacity;
    this.#onEvict = onEvict;
  }

  /** The sum of the entries' sizes, in octets (RFC 7541 4.1). */
  get size(): number {
    return this.#size;
  }
  get length(): number {
    return this.#entries.length - this.#head;
  }
  /** The maximum size: what the last dynamic table size update set. */
  get capacity(): number {
    return this.#capacity;
  }

  /** The entry at HPACK index `index` (62 is the newest), or undefined past the end. */
  at(index: number): TableEntry | undefined {
    const fromNewest = index - STATIC_TABLE.length;
    return fromNewest >= 1 && fromNewest <= this.length ? this.#entries[this.#entries.length - fromNewest] : undefined;
  }

  /** The HPACK index of a live entry: each insertion after it pushed it one further. */
  indexOf(entry: TableEntry): number {
    return STATIC_TABLE.length + 1 + (this.#inserted - entry.seq);
  }

  /**
   * RFC 7541 4.4: evicts from the oldest end until the new entry fits, then adds it. An entry larger
   * than the whole table empties the table and is not added (returns undefined).
   */
  add(name: string, value: string): TableEntry | undefined {
    const size = entrySize(name, value);
    this.#evictDownTo(this.#capacity - size);
    if (size > this.#capacity) return undefined;
    const entry: TableEntry = { name, value, size, seq: ++this.#inserted };
    this.#entries.push(entry);
    this.#size += size;
    return entry;
  }

  /** RFC 7541 4.3: a new maximum size; entries are evicted until the table fits in it. */
  resize(capacity: number): void {
    this.#capacity = capacity;
    this.#evictDownTo(capacity);
  }

  /** The entries as `[name, value]`, newest first (index 62 first). */
  list(): HeaderList {
    return this.#entries.slice(this.#head).reverse().map((e): [string, string] => [e.name, e.value]);
  }

  #evictDownTo(limit: number): void {
    while (this.#size > limit && this.length > 0) {
      const oldest = this.#entries[this.#head++]!;
      this.#size -= oldest.size;
      this.#onEvict?.(oldest);
    }
    // Drop the dead prefix now and then, so that the array does not grow without end.
    if (this.#head > 32 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }
}
