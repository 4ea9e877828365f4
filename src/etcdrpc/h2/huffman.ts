/**
 * The static Huffman code of HPACK (RFC 7541 section 5.2 and Appendix B), which string literals may be
 * written in.
 *
 * The code table below is Appendix B transcribed: for each symbol (octets 0-255, then EOS as 256) its
 * code aligned on the least significant bit, and its length in bits. Everything else is derived from
 * it once, at module load:
 *
 * - the encoder reads the table directly;
 * - the decoder walks a state machine four bits at a time. Its states are the 256 internal nodes of
 *   the code's binary tree (the bits of a code read so far); each (state, nibble) pair says which node
 *   the nibble leads to, and which octet, if any, it completed on the way. The shortest code has 5
 *   bits, so a nibble completes at most one. Two table reads per input octet, no per-bit branching.
 *
 * Building the tree checks the transcription: a code that is a prefix of another, or a branch of
 * the tree that leads nowhere (the code is complete: every sequence of bits starts with some code),
 * throws when this module loads, so a typo cannot pass quietly.
 *
 * Decoding is strict, as RFC 7541 5.2 requires: the padding at the end must be shorter than 8 bits
 * and all ones (the most significant bits of EOS), and EOS itself must not appear in the string.
 */
import { ProtocolError } from '../../errors.js';

/** RFC 7541 Appendix B: `[code, length in bits]` for symbols 0-255 and EOS (256), in symbol order. */
const CODE_TABLE: ReadonlyArray<readonly [code: number, bits: number]> = [
  [0x1ff8, 13], [0x7fffd8, 23], [0xfffffe2, 28], [0xfffffe3, 28], // 0-3
  [0xfffffe4, 28], [0xfffffe5, 28], [0xfffffe6, 28], [0xfffffe7, 28], // 4-7
  [0xfffffe8, 28], [0xffffea, 24], [0x3ffffffc, 30], [0xfffffe9, 28], // 8-11
  [0xfffffea, 28], [0x3ffffffd, 30], [0xfffffeb, 28], [0xfffffec, 28], // 12-15
  [0xfffffed, 28], [0xfffffee, 28], [0xfffffef, 28], [0xffffff0, 28], // 16-19
  [0xffffff1, 28], [0xffffff2, 28], [0x3ffffffe, 30], [0xffffff3, 28], // 20-23
  [0xffffff4, 28], [0xffffff5, 28], [0xffffff6, 28], [0xffffff7, 28], // 24-27
  [0xffffff8, 28], [0xffffff9, 28], [0xffffffa, 28], [0xffffffb, 28], // 28-31
  [0x14, 6], [0x3f8, 10], [0x3f9, 10], [0xffa, 12], // 32-35: SP ! " #
  [0x1ff9, 13], [0x15, 6], [0xf8, 8], [0x7fa, 11], // 36-39: $ % & '
  [0x3fa, 10], [0x3fb, 10], [0xf9, 8], [0x7fb, 11], // 40-43: ( ) * +
  [0xfa, 8], [0x16, 6], [0x17, 6], [0x18, 6], // 44-47: , - . /
  [0x0, 5], [0x1, 5], [0x2, 5], [0x19, 6], // 48-51: 0 1 2 3
  [0x1a, 6], [0x1b, 6], [0x1c, 6], [0x1d, 6], // 52-55: 4 5 6 7
  [0x1e, 6], [0x1f, 6], [0x5c, 7], [0xfb, 8], // 56-59: 8 9 : ;
  [0x7ffc, 15], [0x20, 6], [0xffb, 12], [0x3fc, 10], // 60-63: < = > ?
  [0x1ffa, 13], [0x21, 6], [0x5d, 7], [0x5e, 7], // 64-67: @ A B C
  [0x5f, 7], [0x60, 7], [0x61, 7], [0x62, 7], // 68-71: D E F G
  [0x63, 7], [0x64, 7], [0x65, 7], [0x66, 7], // 72-75: H I J K
  [0x67, 7], [0x68, 7], [0x69, 7], [0x6a, 7], // 76-79: L M N O
  [0x6b, 7], [0x6c, 7], [0x6d, 7], [0x6e, 7], // 80-83: P Q R S
  [0x6f, 7], [0x70, 7], [0x71, 7], [0x72, 7], // 84-87: T U V W
  [0xfc, 8], [0x73, 7], [0xfd, 8], [0x1ffb, 13], // 88-91: X Y Z [
  [0x7fff0, 19], [0x1ffc, 13], [0x3ffc, 14], [0x22, 6], // 92-95: \ ] ^ _
  [0x7ffd, 15], [0x3, 5], [0x23, 6], [0x4, 5], // 96-99: ` a b c
  [0x24, 6], [0x5, 5], [0x25, 6], [0x26, 6], // 100-103: d e f g
  [0x27, 6], [0x6, 5], [0x74, 7], [0x75, 7], // 104-107: h i j k
  [0x28, 6], [0x29, 6], [0x2a, 6], [0x7, 5], // 108-111: l m n o
  [0x2b, 6], [0x76, 7], [0x2c, 6], [0x8, 5], // 112-115: p q r s
  [0x9, 5], [0x2d, 6], [0x77, 7], [0x78, 7], // 116-119: t u v w
  [0x79, 7], [0x7a, 7], [0x7b, 7], [0x7ffe, 15], // 120-123: x y z {
  [0x7fc, 11], [0x3ffd, 14], [0x1ffd, 13], [0xffffffc, 28], // 124-127: | } ~
  [0xfffe6, 20], [0x3fffd2, 22], [0xfffe7, 20], [0xfffe8, 20], // 128-131
  [0x3fffd3, 22], [0x3fffd4, 22], [0x3fffd5, 22], [0x7fffd9, 23], // 132-135
  [0x3fffd6, 22], [0x7fffda, 23], [0x7fffdb, 23], [0x7fffdc, 23], // 136-139
  [0x7fffdd, 23], [0x7fffde, 23], [0xffffeb, 24], [0x7fffdf, 23], // 140-143
  [0xffffec, 24], [0xffffed, 24], [0x3fffd7, 22], [0x7fffe0, 23], // 144-147
  [0xffffee, 24], [0x7fffe1, 23], [0x7fffe2, 23], [0x7fffe3, 23], // 148-151
  [0x7fffe4, 23], [0x1fffdc, 21], [0x3fffd8, 22], [0x7fffe5, 23], // 152-155
  [0x3fffd9, 22], [0x7fffe6, 23], [0x7fffe7, 23], [0xffffef, 24], // 156-159
  [0x3fffda, 22], [0x1fffdd, 21], [0xfffe9, 20], [0x3fffdb, 22], // 160-163
  [0x3fffdc, 22], [0x7fffe8, 23], [0x7fffe9, 23], [0x1fffde, 21], // 164-167
  [0x7fffea, 23], [0x3fffdd, 22], [0x3fffde, 22], [0xfffff0, 24], // 168-171
  [0x1fffdf, 21], [0x3fffdf, 22], [0x7fffeb, 23], [0x7fffec, 23], // 172-175
  [0x1fffe0, 21], [0x1fffe1, 21], [0x3fffe0, 22], [0x1fffe2, 21], // 176-179
  [0x7fffed, 23], [0x3fffe1, 22], [0x7fffee, 23], [0x7fffef, 23], // 180-183
  [0xfffea, 20], [0x3fffe2, 22], [0x3fffe3, 22], [0x3fffe4, 22], // 184-187
  [0x7ffff0, 23], [0x3fffe5, 22], [0x3fffe6, 22], [0x7ffff1, 23], // 188-191
  [0x3ffffe0, 26], [0x3ffffe1, 26], [0xfffeb, 20], [0x7fff1, 19], // 192-195
  [0x3fffe7, 22], [0x7ffff2, 23], [0x3fffe8, 22], [0x1ffffec, 25], // 196-199
  [0x3ffffe2, 26], [0x3ffffe3, 26], [0x3ffffe4, 26], [0x7ffffde, 27], // 200-203
  [0x7ffffdf, 27], [0x3ffffe5, 26], [0xfffff1, 24], [0x1ffffed, 25], // 204-207
  [0x7fff2, 19], [0x1fffe3, 21], [0x3ffffe6, 26], [0x7ffffe0, 27], // 208-211
  [0x7ffffe1, 27], [0x3ffffe7, 26], [0x7ffffe2, 27], [0xfffff2, 24], // 212-215
  [0x1fffe4, 21], [0x1fffe5, 21], [0x3ffffe8, 26], [0x3ffffe9, 26], // 216-219
  [0xffffffd, 28], [0x7ffffe3, 27], [0x7ffffe4, 27], [0x7ffffe5, 27], // 220-223
  [0xfffec, 20], [0xfffff3, 24], [0xfffed, 20], [0x1fffe6, 21], // 224-227
  [0x3fffe9, 22], [0x1fffe7, 21], [0x1fffe8, 21], [0x7ffff3, 23], // 228-231
  [0x3fffea, 22], [0x3fffeb, 22], [0x1ffffee, 25], [0x1ffffef, 25], // 232-235
  [0xfffff4, 24], [0xfffff5, 24], [0x3ffffea, 26], [0x7ffff4, 23], // 236-239
  [0x3ffffeb, 26], [0x7ffffe6, 27], [0x3ffffec, 26], [0x3ffffed, 26], // 240-243
  [0x7ffffe7, 27], [0x7ffffe8, 27], [0x7ffffe9, 27], [0x7ffffea, 27], // 244-247
  [0x7ffffeb, 27], [0xffffffe, 28], [0x7ffffec, 27], [0x7ffffed, 27], // 248-251
  [0x7ffffee, 27], [0x7ffffef, 27], [0x7fffff0, 27], [0x3ffffee, 26], // 252-255
  [0x3fffffff, 30], // 256: EOS
];

/** The end-of-string symbol: never encoded, its leading ones pad the last octet (RFC 7541 5.2). */
const EOS = 256;

const CODES = new Uint32Array(257);
const LENGTHS = new Uint8Array(257);
for (const [sym, [code, bits]] of CODE_TABLE.entries()) {
  CODES[sym] = code;
  LENGTHS[sym] = bits;
}

/** The length in octets of `bytes` Huffman-coded, padding included. */
export function huffmanEncodedLength(bytes: Buffer): number {
  let bits = 0;
  for (let i = 0; i < bytes.length; i++) bits += LENGTHS[bytes[i]!]!;
  return (bits + 7) >> 3;
}

/** Huffman-codes `bytes` (RFC 7541 5.2), padding the last octet with ones (the start of EOS). */
export function huffmanEncode(bytes: Buffer): Buffer {
  const out = Buffer.allocUnsafe(huffmanEncodedLength(bytes));
  let n = 0;
  // The bits not yet written out, and how many: always fewer than 8 between symbols.
  let acc = 0;
  let pending = 0;
  for (let i = 0; i < bytes.length; i++) {
    const code = CODES[bytes[i]!]!;
    // A code has up to 30 bits, 7 may be pending: feed long codes 24 bits at a time so that `acc`
    // stays within the 31 bits that JavaScript's bitwise operators handle as a positive number.
    for (let left = LENGTHS[bytes[i]!]!; left > 0; ) {
      const take = Math.min(left, 24);
      left -= take;
      acc = (acc << take) | ((code >>> left) & ((1 << take) - 1));
      pending += take;
      while (pending >= 8) {
        pending -= 8;
        out[n++] = (acc >>> pending) & 0xff;
      }
      acc &= (1 << pending) - 1;
    }
  }
  if (pending > 0) out[n++] = ((acc << (8 - pending)) | (0xff >> pending)) & 0xff;
  return out;
}

// The decoding state machine. A tree node is an index into CHILDREN (two slots: bit 0, bit 1); a
// slot holds the child node's number, or ~symbol (a negative number) when the child is a leaf.
const NODES = 256; // a complete binary tree with 257 leaves has 256 internal nodes
const CHILDREN = new Int32Array(NODES * 2);
/**
 * How decoding may end in each node, i.e. what the bits read since the last symbol say as padding
 * (RFC 7541 5.2): 0 = fine (at most 7 bits, all ones), 1 = all ones but 8 bits or more, 2 = not all
 * ones (a truncated code, or padding that is not the start of EOS).
 */
const ENDING = new Uint8Array(NODES);
/** One entry per (node, nibble): next node (bits 0-7), completed symbol (bits 8-15) and flags. */
const TRANSITIONS = new Uint32Array(NODES * 16);
const EMITS = 1 << 16;
const HITS_EOS = 1 << 17;

function buildDecoder(): void {
  let nodes = 1; // node 0 is the root
  const depth = new Uint8Array(NODES);
  const allOnes = new Uint8Array(NODES).fill(1, 0, 1);
  for (let sym = 0; sym <= EOS; sym++) {
    const code = CODES[sym]!;
    let node = 0;
    for (let bit = LENGTHS[sym]! - 1; bit >= 0; bit--) {
      const slot = node * 2 + ((code >>> bit) & 1);
      const child = CHILDREN[slot]!;
      if (child < 0 || (bit === 0 && child !== 0)) throw new Error(`HPACK Huffman table: the code of symbol ${sym} clashes with another`);
      if (bit === 0) {
        CHILDREN[slot] = ~sym;
      } else if (child > 0) {
        node = child;
      } else {
        if (nodes === NODES) throw new Error('HPACK Huffman table: more internal nodes than a complete code has');
        const next = nodes++;
        depth[next] = depth[node]! + 1;
        allOnes[next] = allOnes[node]! & (code >>> bit) & 1;
        CHILDREN[slot] = next;
        node = next;
      }
    }
  }
  if (nodes !== NODES || CHILDREN.includes(0)) throw new Error('HPACK Huffman table: the code is not complete');

  for (let node = 0; node < NODES; node++) {
    ENDING[node] = !allOnes[node] ? 2 : depth[node]! > 7 ? 1 : 0;
    for (let nibble = 0; nibble < 16; nibble++) {
      let at = node;
      let entry = 0;
      for (let bit = 3; bit >= 0; bit--) {
        const child = CHILDREN[at * 2 + ((nibble >> bit) & 1)]!;
        if (child >= 0) {
          at = child;
          continue;
        }
        const sym = ~child;
        if (sym === EOS) {
          entry |= HITS_EOS;
          break;
        }
        if (entry & EMITS) throw new Error('HPACK Huffman table: two symbols in one nibble');
        entry |= EMITS | (sym << 8);
        at = 0;
      }
      TRANSITIONS[node * 16 + nibble] = entry | at;
    }
  }
}
buildDecoder();

/**
 * Decodes a Huffman-coded string literal (RFC 7541 5.2).
 *
 * @throws ProtocolError if the string holds EOS, or ends in padding longer than 7 bits or not all
 *   ones. The message gives the octet offset within `bytes`; the caller adds where the string was.
 */
export function huffmanDecode(bytes: Buffer): Buffer {
  // The shortest code has 5 bits: at most 8/5 output octets per input octet.
  const out = Buffer.allocUnsafe(((bytes.length * 8) / 5) | 0);
  let n = 0;
  let state = 0;
  for (let i = 0; i < bytes.length; i++) {
    const octet = bytes[i]!;
    // The high nibble, then the low one.
    const high = TRANSITIONS[state * 16 + (octet >> 4)]!;
    if (high & EMITS) out[n++] = (high >> 8) & 0xff;
    const low = TRANSITIONS[(high & 0xff) * 16 + (octet & 0x0f)]!;
    if (low & EMITS) out[n++] = (low >> 8) & 0xff;
    // EOS in the high nibble leaves `high`'s next node meaningless, so `low` too: both fail here.
    if ((high | low) & HITS_EOS) throw new ProtocolError(`Huffman string holds the EOS symbol (in octet ${i} of the string)`);
    state = low & 0xff;
  }
  const ending = ENDING[state]!;
  if (ending === 1) throw new ProtocolError('Huffman string ends in padding longer than 7 bits');
  if (ending === 2) throw new ProtocolError('Huffman string ends in padding that is not all ones (a truncated code, or not the start of EOS)');
  return out.subarray(0, n);
}
