/**
 * RESP encoder: a pure function from command arguments to the bytes of a RESP array of bulk strings.
 *
 *   ['SET', 'k', 'v']  ->  *3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n
 *
 * Buffers pass through untouched (binary-safe), numbers become decimal strings, strings are UTF-8.
 * Anything else is a TypeError naming the argument's index, so a stray `undefined` never reaches the wire.
 */
import { invalidType, invalidValue } from '../errors.js';

/** One command argument: a string (sent as UTF-8), a Buffer (sent as is) or a finite number (sent in decimal). */
export type RespArg = string | Buffer | number;

/**
 * The bytes of a command as a RESP array of bulk strings, e.g. `['SET', 'k', 'v']` becomes
 * `*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n`. Throws TypeError for an empty command or an argument
 * that is not a string, Buffer or finite number; the message names the argument's index.
 */
export function encodeCommand(args: ReadonlyArray<RespArg>): Buffer {
  if (!Array.isArray(args) || args.length === 0) {
    throw invalidValue('a command needs at least one argument (its name)');
  }
  // Fast path: all-string commands (the common case) become one string and one Buffer.from().
  let head = `*${args.length}\r\n`;
  let parts: Buffer[] | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (typeof arg === 'string') {
      head += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`;
    } else if (typeof arg === 'number') {
      if (!Number.isFinite(arg)) throw invalidValue(`command argument ${i} is not a finite number: ${arg}`);
      const s = String(arg);
      head += `$${s.length}\r\n${s}\r\n`;
    } else if (Buffer.isBuffer(arg)) {
      parts ??= [];
      parts.push(Buffer.from(`${head}$${arg.length}\r\n`), arg);
      head = '\r\n';
    } else {
      throw invalidType(`command argument ${i} must be a string, Buffer or number, got ${describe(arg)}`);
    }
  }
  if (!parts) return Buffer.from(head);
  parts.push(Buffer.from(head));
  return Buffer.concat(parts);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}
