import { expect } from 'chai';
import fc from 'fast-check';
import RedisParser from 'redis-parser';
import { encodeCommand } from '../src/resp/encoder.js';
import { thrown } from './support/thrown.js';

const enc = (args: Array<string | Buffer | number>): string => encodeCommand(args).toString('latin1');

describe('RESP encoder', () => {
  it('encodes strings as an array of bulk strings', () => {
    expect(enc(['PING'])).to.equal('*1\r\n$4\r\nPING\r\n');
    expect(enc(['SET', 'k', 'v'])).to.equal('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n');
    expect(enc(['ECHO', ''])).to.equal('*2\r\n$4\r\nECHO\r\n$0\r\n\r\n');
    // CR LF inside an argument is data, not a delimiter: the length prefix makes it safe.
    expect(enc(['SET', 'a\r\nb', ' '])).to.equal('*3\r\n$3\r\nSET\r\n$4\r\na\r\nb\r\n$1\r\n \r\n');
  });

  it('counts UTF-8 bytes, not UTF-16 code units, in bulk lengths', () => {
    const vectors: Array<[string, number]> = [
      ['é', 2],
      ['日本', 6],
      ['😀', 4],
      ['a€b', 5],
    ];
    for (const [s, bytes] of vectors) {
      const out = encodeCommand(['ECHO', s]);
      const expected = Buffer.concat([Buffer.from(`*2\r\n$4\r\nECHO\r\n$${bytes}\r\n`), Buffer.from(s, 'utf8'), Buffer.from('\r\n')]);
      expect(out.equals(expected), s).to.equal(true);
    }
  });

  it('passes Buffers through byte for byte', () => {
    const bin = Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x80, 0x24]);
    const out = encodeCommand(['SET', bin, 'x', Buffer.alloc(0), bin]);
    const expected = Buffer.concat([
      Buffer.from('*5\r\n$3\r\nSET\r\n$6\r\n'),
      bin,
      Buffer.from('\r\n$1\r\nx\r\n$0\r\n\r\n$6\r\n'),
      bin,
      Buffer.from('\r\n'),
    ]);
    expect(out.equals(expected)).to.equal(true);
    // A Buffer as the command name (first argument) works too.
    expect(encodeCommand([Buffer.from('PING')]).toString()).to.equal('*1\r\n$4\r\nPING\r\n');
  });

  it('writes numbers as decimal strings', () => {
    expect(enc(['PEXPIRE', 'k', 300])).to.equal('*3\r\n$7\r\nPEXPIRE\r\n$1\r\nk\r\n$3\r\n300\r\n');
    expect(enc(['X', 0, -1, 2.5])).to.equal('*4\r\n$1\r\nX\r\n$1\r\n0\r\n$2\r\n-1\r\n$3\r\n2.5\r\n');
    expect(enc(['X', 9007199254740991])).to.equal('*2\r\n$1\r\nX\r\n$16\r\n9007199254740991\r\n');
  });

  it('rejects bad arguments with a TypeError naming their index', () => {
    const bad: Array<[unknown, number]> = [
      [undefined, 2],
      [null, 1],
      [{}, 3],
      [[], 1],
      [NaN, 2],
      [Infinity, 1],
      [-Infinity, 1],
      [10n, 2],
      [Symbol('s'), 1],
      [true, 1],
    ];
    for (const [value, index] of bad) {
      const args = ['SET', 'k', 'v', 'x'] as unknown[];
      args[index] = value;
      const err = thrown(() => encodeCommand(args as Array<string>));
      expect(err, String(value)).to.be.instanceOf(TypeError);
      expect(err.message, String(value)).to.match(new RegExp(`argument ${index}\\b`));
    }
  });

  it('rejects an empty command and a non-array', () => {
    expect(thrown(() => encodeCommand([]))).to.be.instanceOf(TypeError);
    expect(thrown(() => encodeCommand('PING' as unknown as string[]))).to.be.instanceOf(TypeError);
  });

  it('round-trips through a RESP parser (property)', () => {
    const arg = fc.oneof(
      fc.string({ unit: 'grapheme', maxLength: 20 }),
      fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a)),
      fc.integer(),
    );
    fc.assert(
      fc.property(fc.array(arg, { minLength: 1, maxLength: 8 }), (args) => {
        let decoded: unknown;
        const parser = new RedisParser({
          returnBuffers: true,
          returnReply: (r: unknown) => (decoded = r),
          returnError: (e: Error) => (decoded = e),
        });
        parser.execute(encodeCommand(args));
        const expected = args.map((a) => (Buffer.isBuffer(a) ? a : Buffer.from(String(a), 'utf8')));
        expect(decoded).to.deep.equal(expected);
      }),
      { numRuns: 300 },
    );
  });
});
