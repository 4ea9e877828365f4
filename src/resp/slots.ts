/**
 * Redis Cluster's key space: 16384 hash slots. A key's slot is CRC16 (the XMODEM variant: polynomial
 * 0x1021, initial value 0, no reflection, no final XOR) of the key, modulo 16384. When the key holds
 * a hash tag, only the tag is hashed: the bytes between the first `{` and the first `}` after it,
 * provided there is at least one byte between them. `{user1}:a` and `{user1}:b` share a slot;
 * `{}x` and `x{}` are hashed whole. That is how every key of one wirelock lock, and its pub/sub
 * channel, land on one node: they all carry the lock name as their tag (`P{K}…`).
 *
 * Pure functions only: the cluster client routes with them, the tests check them against vectors and
 * against the server's own `CLUSTER KEYSLOT`.
 */

/** How many hash slots a Redis Cluster has. */
export const SLOT_COUNT = 16384;

/** CRC16/XMODEM, one byte at a time from a 256-entry table (built once, below). */
const TABLE = new Uint16Array(256);
for (let i = 0; i < 256; i++) {
  let crc = i << 8;
  for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  TABLE[i] = crc;
}

/** CRC16/XMODEM of `bytes[start, end)`: check value 0x31C3 for the ASCII bytes of "123456789". */
export function crc16(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = 0;
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ bytes[i]!) & 0xff]!;
  return crc;
}

/** The slot of a key (a string is hashed as its UTF-8 bytes, as the server receives it). */
export function keySlot(key: string | Buffer | Uint8Array): number {
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  const open = bytes.indexOf(0x7b); // '{'
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1); // the first '}' after it
    if (close > open + 1) return crc16(bytes, open + 1, close) % SLOT_COUNT;
  }
  return crc16(bytes) % SLOT_COUNT;
}
