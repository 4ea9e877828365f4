/**
 * HPACK, the header compression of HTTP/2 (RFC 7541), as a codec without I/O: HpackEncoder turns a
 * header list into a header block, HpackDecoder turns a block back into a list.
 *
 * Invariant: an encoder and the decoder at the other end of the connection hold the same dynamic
 * table after every block. Nothing re-synchronizes them, so
 * - a decoder that failed once refuses every later block (RFC 9113 4.3: a COMPRESSION_ERROR is a
 *   connection error), and
 * - the encoder checks a whole header list before it changes its table for any of it.
 *
 * Strings are octets on the wire and latin1 here: each octet is one character U+0000-U+00FF, so any
 * bytes round-trip and `.length` is the octet count the RFC's sizes use. gRPC metadata is ASCII
 * (binary values travel base64'd in `-bin` headers); a caller with UTF-8 text converts it with
 * `Buffer.from(s, 'utf8').toString('latin1')` and back. HPACK itself does not check names (case,
 * pseudo-headers): that is HTTP/2's job, one layer up.
 *
 * Header values never appear in errors: they can be tokens. Names can.
 *
 * The tables and the integer and string primitives are in hpack-table.ts. This file re-exports the
 * public ones (HpackError, STATIC_TABLE, encodeInteger, decodeInteger): importers use only hpack.ts.
 */
import { invalidType, invalidValue, outOfRange } from '../../errors.js';
import {
  BlockWriter,
  DynamicTable,
  HpackError,
  MAX_INTEGER,
  STATIC_FIELDS,
  STATIC_NAMES,
  STATIC_TABLE,
  decodeInteger,
  entrySize,
  fieldKey,
  type TableEntry,
} from './hpack-table.js';
import { huffmanDecode } from './huffman.js';

export { HpackError, STATIC_TABLE, decodeInteger, encodeInteger } from './hpack-table.js';

/** A header list: `[name, value]` pairs in order, names lowercase as on the wire, strings latin1. */
export type HeaderList = Array<[name: string, value: string]>;

/** Checks a size option: an integer from 0 to 2^32 - 1. */
function sizeOption(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0 || value > MAX_INTEGER) throw outOfRange(`${name} must be an integer from 0 to 2^32 - 1, got ${value}`);
  return value;
}

/** Options of an {@link HpackDecoder}. */
export interface HpackDecoderOptions {
  /**
   * The largest dynamic table the peer may use, in octets: our SETTINGS_HEADER_TABLE_SIZE. The
   * table starts at this size; a size update above it is an error.
   * @defaultValue 4096 (HTTP/2's initial value)
   */
  maxTableSize?: number;
  /**
   * The largest header list a block may decode to, counted as RFC 9113 6.5.2 does: name + value
   * + 32 octets for each field. A larger one is an HpackError.
   * @defaultValue 65536
   */
  maxHeaderListSize?: number;
}

/** Decodes the header blocks of one direction of one HTTP/2 connection, in order. */
export class HpackDecoder {
  readonly #maxTableSize: number;
  readonly #maxHeaderListSize: number;
  readonly #table: DynamicTable;
  /** The first error: after it the table is out of step with the peer's, for good. */
  #failed: HpackError | undefined;

  constructor(opts: HpackDecoderOptions = {}) {
    this.#maxTableSize = sizeOption(opts.maxTableSize, 'maxTableSize', 4096);
    this.#maxHeaderListSize = sizeOption(opts.maxHeaderListSize, 'maxHeaderListSize', 64 * 1024);
    this.#table = new DynamicTable(this.#maxTableSize);
  }

  /** The dynamic table's size in octets (RFC 7541 4.1). */
  get tableSize(): number {
    return this.#table.size;
  }
  /** How many entries the dynamic table holds. */
  get tableLength(): number {
    return this.#table.length;
  }
  /** The dynamic table's entries, newest first (for tests and diagnostics). */
  table(): HeaderList {
    return this.#table.list();
  }

  /**
   * Decodes one complete header block (the fragments of a HEADERS frame and its CONTINUATIONs, joined).
   *
   * @throws HpackError if the block is malformed or too large; this decoder then refuses every later block
   */
  decode(block: Buffer): HeaderList {
    if (this.#failed) throw new HpackError('the decoder failed on an earlier block and its table is out of step', undefined, { cause: this.#failed });
    try {
      return this.#decode(block);
    } catch (err) {
      this.#failed = err instanceof HpackError ? err : new HpackError('unexpected failure', undefined, { cause: err });
      throw this.#failed;
    }
  }

  #decode(block: Buffer): HeaderList {
    const headers: HeaderList = [];
    let listSize = 0;
    let pos = 0;
    /** Reads a string literal (RFC 7541 5.2) at `pos`: an H bit, a 7-bit-prefix length, the octets. */
    const string = (): string => {
      const start = pos;
      const { value: length, next } = decodeInteger(block, start, 7);
      if (length > block.length - next) throw new HpackError(`a string literal of ${length} octets runs past the end of the block`, start);
      pos = next + length;
      if ((block[start]! & 0x80) === 0) return block.toString('latin1', next, pos);
      try {
        return huffmanDecode(block.subarray(next, pos)).toString('latin1');
      } catch (err) {
        throw new HpackError((err as Error).message, start, { cause: err });
      }
    };
    while (pos < block.length) {
      const start = pos;
      const first = block[start]!;
      let name: string;
      let value: string;
      if (first & 0x80) {
        // RFC 7541 6.1: an indexed field, 1xxxxxxx.
        const { value: index, next } = decodeInteger(block, start, 7);
        pos = next;
        if (index === 0) throw new HpackError('index 0 is not a table index (RFC 7541 6.1)', start);
        [name, value] = this.#lookup(index, start);
      } else if ((first & 0xe0) === 0x20) {
        // RFC 7541 6.3: a dynamic table size update, 001xxxxx; only before the first field (4.2).
        if (headers.length > 0) throw new HpackError('a dynamic table size update after a header field (RFC 7541 4.2)', start);
        const { value: size, next } = decodeInteger(block, start, 5);
        pos = next;
        if (size > this.#maxTableSize) throw new HpackError(`a dynamic table size update to ${size} octets, above our limit of ${this.#maxTableSize}`, start);
        this.#table.resize(size);
        continue;
      } else {
        // RFC 7541 6.2: a literal field, with incremental indexing (01xxxxxx, 6-bit name index),
        // never indexed (0001xxxx) or without indexing (0000xxxx) (4-bit name index). Index 0: a literal name.
        const indexing = (first & 0xc0) === 0x40;
        const { value: nameIndex, next } = decodeInteger(block, start, indexing ? 6 : 4);
        pos = next;
        name = nameIndex === 0 ? string() : this.#lookup(nameIndex, start)[0];
        value = string();
        // RFC 7541 4.4: the name was read before the insertion, which may evict the entry it came from.
        if (indexing) this.#table.add(name, value);
      }
      listSize += entrySize(name, value);
      if (listSize > this.#maxHeaderListSize) {
        const limit = `${this.#maxHeaderListSize} octets (name + value + 32 for each field, RFC 9113 6.5.2)`;
        throw new HpackError(`the header list is over ${limit}; "${name}" went past it`, start);
      }
      headers.push([name, value]);
    }
    return headers;
  }

  /** RFC 7541 2.3.3: indices 1-61 are the static table, 62 and up the dynamic table, newest first. */
  #lookup(index: number, at: number): readonly [string, string] {
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]!;
    const entry = this.#table.at(index);
    if (!entry) throw new HpackError(`index ${index} is past the end of the table (61 static and ${this.#table.length} dynamic entries)`, at);
    return [entry.name, entry.value];
  }
}

/**
 * The most dynamic table the encoder keeps, whatever the peer allows: the table is memory we hold
 * for the connection's life, and a peer announcing 4 GiB should not make us keep 4 GiB of headers.
 */
const ENCODER_TABLE_LIMIT = 64 * 1024;
/** A string HPACK can carry as latin1: nothing above U+00FF. */
const LATIN1 = /^[\u0000-\u00ff]*$/;

/** Options of an {@link HpackEncoder}. */
export interface HpackEncoderOptions {
  /**
   * The dynamic table size both ends start with, in octets: the peer's SETTINGS_HEADER_TABLE_SIZE
   * as it stands when the encoder is made. Later changes go through `setMaxTableSize()`.
   * @defaultValue 4096 (HTTP/2's initial value)
   */
  maxTableSize?: number;
  /** Huffman-code strings when that makes them shorter; false writes every string as it is. @defaultValue true */
  huffman?: boolean;
}

/** Options of one {@link HpackEncoder.encode} call. */
export interface EncodeOptions {
  /** Names whose values are secrets (`authorization`, etcd's `token`): never indexed (RFC 7541 7.1.3), never in the table. */
  sensitive?: ReadonlySet<string>;
  /** Names whose values change every time (`grpc-timeout`): written without indexing, so they do not push useful entries out. */
  noIndex?: ReadonlySet<string>;
}

/**
 * Encodes the header blocks of one direction of one HTTP/2 connection, in order, the way a gRPC
 * client wants: a field already in a table costs one octet; any other is added to the dynamic table
 * (its name indexed when a table has it), so the headers every call repeats (`:path`,
 * `:authority`, `content-type`, `te`, `user-agent`) cost one octet each from the second call on.
 */
export class HpackEncoder {
  readonly #table: DynamicTable;
  readonly #huffman: boolean;
  // The newest live dynamic entry with each name, and with each exact field; evictions remove theirs.
  readonly #byName = new Map<string, TableEntry>();
  readonly #byField = new Map<string, TableEntry>();
  /** Table size changes the next block must announce (RFC 7541 4.2): the lowest since the last block, and the last. */
  #resize: { lowest: number; last: number } | undefined;

  constructor(opts: HpackEncoderOptions = {}) {
    this.#table = new DynamicTable(sizeOption(opts.maxTableSize, 'maxTableSize', 4096), (entry) => this.#forget(entry));
    this.#huffman = opts.huffman ?? true;
  }

  /** The dynamic table's size in octets (RFC 7541 4.1). */
  get tableSize(): number {
    return this.#table.size;
  }
  /** How many entries the dynamic table holds. */
  get tableLength(): number {
    return this.#table.length;
  }
  /** The dynamic table's entries, newest first (for tests and diagnostics). */
  table(): HeaderList {
    return this.#table.list();
  }

  /**
   * The peer's SETTINGS_HEADER_TABLE_SIZE changed. The encoder uses that size (at most 64 KiB) from
   * the next block on, which starts with a dynamic table size update (RFC 7541 6.3): two when the
   * size went down and up again since the last block, the lowest first, so the peer evicts what we
   * evicted (RFC 7541 4.2).
   */
  setMaxTableSize(size: number): void {
    const next = Math.min(sizeOption(size, 'size', 0), ENCODER_TABLE_LIMIT);
    if (!this.#resize && next === this.#table.capacity) return;
    this.#resize = { lowest: Math.min(this.#resize?.lowest ?? next, next), last: next };
  }

  /**
   * Encodes one header list into one header block.
   *
   * @throws TypeError (ERR_INVALID_ARG_VALUE) if a name or value has a character above U+00FF; the
   *   encoder is unchanged then.
   */
  encode(headers: HeaderList, opts: EncodeOptions = {}): Buffer {
    // Check everything first: a throw halfway would leave our table ahead of the peer's.
    for (const field of headers) {
      if (!Array.isArray(field) || typeof field[0] !== 'string' || typeof field[1] !== 'string') throw invalidType('each header must be a [name, value] pair of strings');
      if (!LATIN1.test(field[0])) throw invalidValue(`header name ${JSON.stringify(field[0])} has a character above U+00FF (HPACK strings are octets)`);
      if (!LATIN1.test(field[1])) throw invalidValue(`the value of header "${field[0]}" has a character above U+00FF (HPACK strings are octets)`);
    }
    const out = new BlockWriter();
    if (this.#resize) {
      const { lowest, last } = this.#resize;
      this.#resize = undefined;
      if (lowest < last) this.#sizeUpdate(out, lowest);
      this.#sizeUpdate(out, last);
    }
    for (const [name, value] of headers) {
      if (opts.sensitive?.has(name)) {
        this.#literal(out, 0x10, 4, name, value); // RFC 7541 6.2.3, never indexed
        continue;
      }
      const key = fieldKey(name, value);
      const known = STATIC_FIELDS.get(key) ?? this.#indexOf(this.#byField.get(key));
      if (known !== 0) {
        out.integer(known, 7, 0x80); // RFC 7541 6.1, indexed
      } else if (opts.noIndex?.has(name) || entrySize(name, value) > this.#table.capacity) {
        // An entry larger than the table would only empty it (RFC 7541 4.4).
        this.#literal(out, 0x00, 4, name, value); // RFC 7541 6.2.2, without indexing
      } else {
        this.#literal(out, 0x40, 6, name, value); // RFC 7541 6.2.1, with incremental indexing
        const entry = this.#table.add(name, value)!;
        this.#byName.set(name, entry);
        this.#byField.set(key, entry);
      }
    }
    return out.finish();
  }

  /** RFC 7541 6.3: 001xxxxx with the new size; the table evicts down to it now, as the peer's will. */
  #sizeUpdate(out: BlockWriter, size: number): void {
    out.integer(size, 5, 0x20);
    this.#table.resize(size);
  }

  /** A literal field (RFC 7541 6.2): the name by index when a table has it (static first: it never moves), then the value. */
  #literal(out: BlockWriter, pattern: number, prefixBits: number, name: string, value: string): void {
    const nameIndex = STATIC_NAMES.get(name) ?? this.#indexOf(this.#byName.get(name));
    out.integer(nameIndex, prefixBits, pattern);
    if (nameIndex === 0) out.string(name, this.#huffman);
    out.string(value, this.#huffman);
  }

  #indexOf(entry: TableEntry | undefined): number {
    return entry ? this.#table.indexOf(entry) : 0;
  }

  /** An entry was evicted: forget it, unless a newer entry with the same name or field replaced it. */
  #forget(entry: TableEntry): void {
    if (this.#byName.get(entry.name) === entry) this.#byName.delete(entry.name);
    const key = fieldKey(entry.name, entry.value);
    if (this.#byField.get(key) === entry) this.#byField.delete(key);
  }
}
