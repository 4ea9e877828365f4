/**
 * Lock tokens: 128 bits from the system CSPRNG, hex-encoded (32 characters).
 * Drawn from a 4 KiB pool refilled by crypto.randomFillSync, so a token costs a slice, not a syscall.
 * Each byte is handed out once.
 */
import { randomFillSync } from 'node:crypto';

const TOKEN_BYTES = 16;
const pool = Buffer.alloc(4096);
let offset = pool.length;

export function randomToken(): string {
  if (offset + TOKEN_BYTES > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const token = pool.toString('hex', offset, offset + TOKEN_BYTES);
  offset += TOKEN_BYTES;
  return token;
}
