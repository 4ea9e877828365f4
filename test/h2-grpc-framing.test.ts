/**
 * gRPC's length-prefixed messages (PROTOCOL-HTTP2.md) whole, byte by byte and many to a chunk; the
 * size limit checked on the prefix, before any of the body; and the grpc-timeout and grpc-message codecs.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { ProtocolError } from '../src/errors.js';
import {
  DEFAULT_MAX_MESSAGE_SIZE,
  GrpcFramingError,
  GrpcMessageReader,
  decodeGrpcMessageText,
  encodeGrpcMessage,
  encodeGrpcMessageText,
  formatGrpcTimeout,
  parseGrpcTimeout,
  type GrpcMessageReaderOptions,
} from '../src/etcdrpc/h2/grpc-framing.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const bytewise = (bytes: Buffer): Buffer[] => Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));

function read(chunks: Buffer[], options?: GrpcMessageReaderOptions): string[] {
  const reader = new GrpcMessageReader(options);
  const out = chunks.flatMap((c) => reader.push(c));
  reader.end();
  return out.map((m) => m.toString('hex'));
}

/** The messages in `bytes`, which must be the same pushed whole and byte by byte. */
function readBoth(bytes: Buffer): string[] {
  const whole = read([bytes]);
  expect(read(bytewise(bytes)), 'byte by byte').to.deep.equal(whole);
  return whole;
}

function failure(fn: () => unknown): GrpcFramingError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(GrpcFramingError);
    return err as GrpcFramingError;
  }
  throw new Error('expected a GrpcFramingError');
}

describe('gRPC message framing', () => {
  it('encodes a message behind a 0 flag and its big-endian length', () => {
    expect(encodeGrpcMessage(Buffer.from('abc')).toString('hex')).to.equal('00' + '00000003' + '616263');
    expect(encodeGrpcMessage(Buffer.alloc(0)).toString('hex')).to.equal('0000000000');
    expect(encodeGrpcMessage(Buffer.alloc(0x1234)).subarray(0, 5).toString('hex')).to.equal('0000001234');
    expect(() => encodeGrpcMessage('abc' as unknown as Buffer)).to.throw(TypeError);
  });

  it('reads a message, whole and byte by byte', () => {
    expect(readBoth(hex('00 00000003 616263'))).to.deep.equal(['616263']);
  });

  it('reads many messages in one chunk, 0-length ones included', () => {
    const bytes = hex('00 00000000    00 00000002 0102    00 00000000    00 00000001 ff    00 00000000');
    expect(readBoth(bytes)).to.deep.equal(['', '0102', '', 'ff', '']);
  });

  it('a message cut anywhere, the prefix too (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 10 }), fc.array(fc.nat(), { maxLength: 20 }), (messages, cuts) => {
        const all = Buffer.concat(messages.map((m) => encodeGrpcMessage(Buffer.from(m))));
        const points = [...new Set(cuts.map((c) => c % (all.length + 1)))].sort((a, b) => a - b);
        const chunks = [0, ...points].map((from, i) => all.subarray(from, points[i] ?? all.length));
        expect(read(chunks)).to.deep.equal(messages.map((m) => Buffer.from(m).toString('hex')));
      }),
      { numRuns: 300 },
    );
  });

  it('a 5 MiB message across many DATA-sized chunks', () => {
    const message = Buffer.alloc(5 * 1024 * 1024);
    for (let i = 0; i < message.length; i += 997) message[i] = i & 0xff;
    const bytes = Buffer.concat([encodeGrpcMessage(message), encodeGrpcMessage(Buffer.from('next'))]);
    const reader = new GrpcMessageReader();
    const out: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += 16_384) out.push(...reader.push(bytes.subarray(at, at + 16_384)));
    reader.end();
    expect(out).to.have.length(2);
    expect(out[0]!.equals(message)).to.equal(true);
    expect(out[1]!.toString()).to.equal('next');
  });

  it('refuses a message over maxMessageSize from its prefix, before the body arrives', () => {
    const reader = new GrpcMessageReader({ maxMessageSize: 100 });
    expect(reader.push(hex('00 00000064'))).to.deep.equal([]); // exactly 100: fine, waiting for its body
    reader.push(Buffer.alloc(100));
    const err = failure(() => reader.push(hex('00 00000065'))); // 101, and no body sent at all
    expect(err.grpcCode).to.equal(8); // RESOURCE_EXHAUSTED
    expect(err.message).to.equal('a gRPC message of 101 octets, more than maxMessageSize 100');
    // The default limit, against a prefix announcing 4 GiB - 1.
    expect(DEFAULT_MAX_MESSAGE_SIZE).to.equal(16 * 1024 * 1024);
    expect(failure(() => new GrpcMessageReader().push(hex('00 ffffffff'))).grpcCode).to.equal(8);
    // The prefix cut in two is checked as soon as it is whole.
    const cut = new GrpcMessageReader({ maxMessageSize: 10 });
    cut.push(hex('00 0000'));
    expect(failure(() => cut.push(hex('00 0b'))).grpcCode).to.equal(8);
  });

  it('refuses a compressed message (we never ask for compression) and a flag other than 0 or 1', () => {
    const compressed = failure(() => new GrpcMessageReader().push(hex('01 00000001 ff')));
    expect(compressed.grpcCode).to.equal(13); // INTERNAL
    expect(compressed.message).to.match(/compressed/);
    expect(failure(() => new GrpcMessageReader().push(hex('02 00000000'))).message).to.match(/Compressed-Flag 2/);
  });

  it('end() throws when the stream stops inside a message or its prefix', () => {
    const inBody = new GrpcMessageReader();
    inBody.push(hex('00 00000004 0102'));
    const err = failure(() => inBody.end());
    expect(err.grpcCode).to.equal(13);
    expect(err.message).to.equal('the stream ended after 2 of the 4 octets of a message');
    const inPrefix = new GrpcMessageReader();
    inPrefix.push(hex('00 00'));
    expect(failure(() => inPrefix.end()).message).to.equal('the stream ended after 2 of the 5 octets of a message prefix');
    new GrpcMessageReader().end(); // nothing pushed: fine
  });

  it('stays failed, and its error is a ProtocolError', () => {
    const reader = new GrpcMessageReader();
    const err = failure(() => reader.push(hex('01 00000000')));
    expect(() => reader.push(hex('00 00000000'))).to.throw(err);
    expect(() => reader.end()).to.throw(err);
    expect(err).to.be.instanceOf(ProtocolError);
    expect(err.code).to.equal('WL_PROTOCOL');
  });

  it('maxMessageSize must be 0 to 2^32-1', () => {
    expect(() => new GrpcMessageReader({ maxMessageSize: -1 })).to.throw(RangeError);
    expect(() => new GrpcMessageReader({ maxMessageSize: 2 ** 32 })).to.throw(RangeError);
    expect(read([hex('00 00000000')], { maxMessageSize: 0 })).to.deep.equal(['']);
  });
});

describe('grpc-timeout', () => {
  it('formats in the finest unit that fits in 8 digits', () => {
    const cases: Array<[number, string]> = [
      [1, '1000000n'],
      [50, '50000000n'],
      [99.999999, '99999999n'],
      [100, '100000u'],
      [1500, '1500000u'],
      [30_000, '30000000u'],
      [99_999.999, '99999999u'],
      [100_000, '100000m'],
      [86_400_000, '86400000m'], // a day
      [172_800_000, '172800S'], // two days
      [99_999_999_000, '99999999S'],
      [100_000_000_000, '1666667M'], // rounded up
      [99_999_999 * 3_600_000, '99999999H'],
    ];
    for (const [ms, text] of cases) expect(formatGrpcTimeout(ms), String(ms)).to.equal(text);
  });

  it('rounds up, never down, and never to 0', () => {
    expect(formatGrpcTimeout(1e-9)).to.equal('1n');
    expect(formatGrpcTimeout(1.1)).to.equal('1100000n'); // not 1100001n from 1.1 * 1e6
    expect(formatGrpcTimeout(100.0001)).to.equal('100001u'); // 100000.1 us
    expect(formatGrpcTimeout(100_001.5)).to.equal('100002m');
  });

  it('refuses what it cannot say', () => {
    for (const ms of [0, -1, NaN, Infinity, -Infinity, 99_999_999 * 3_600_000 + 1]) {
      expect(() => formatGrpcTimeout(ms), String(ms)).to.throw(RangeError);
    }
  });

  it('parses every unit', () => {
    const cases: Array<[string, number]> = [
      ['1500m', 1500],
      ['30S', 30_000],
      ['2M', 120_000],
      ['1H', 3_600_000],
      ['1500u', 1.5],
      ['2000000n', 2],
      ['99999999H', 99_999_999 * 3_600_000],
      ['0m', 0],
    ];
    for (const [text, ms] of cases) expect(parseGrpcTimeout(text), text).to.equal(ms);
  });

  it('rejects malformed values with undefined', () => {
    for (const text of ['', 'm', '123456789m', '10', '10x', '-1m', ' 1m', '1m ', '1.5m', '1s', '1h', '٣m']) {
      expect(parseGrpcTimeout(text), JSON.stringify(text)).to.equal(undefined);
    }
  });

  it('round-trips within one unit, never shorter (property)', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-6, max: 1e13, noNaN: true }), (ms) => {
        const text = formatGrpcTimeout(ms);
        expect(text).to.match(/^\d{1,8}[HMSmun]$/);
        const back = parseGrpcTimeout(text)!;
        const unit = parseGrpcTimeout(`1${text.at(-1)}`)!;
        expect(back).to.be.at.least(ms * (1 - 1e-12) - 1e-6);
        expect(back - ms).to.be.below(unit * (1 + 1e-9) + 1e-6);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('grpc-message percent-encoding', () => {
  it('decodes %XX octets as UTF-8', () => {
    expect(decodeGrpcMessageText('etcdserver: request timed out')).to.equal('etcdserver: request timed out');
    expect(decodeGrpcMessageText('hello%20world%25')).to.equal('hello world%');
    expect(decodeGrpcMessageText('%E2%9C%93 done')).to.equal('✓ done');
    expect(decodeGrpcMessageText('%e2%9c%93')).to.equal('✓'); // lowercase too
    expect(decodeGrpcMessageText('line1%0D%0Aline2')).to.equal('line1\r\nline2');
    expect(decodeGrpcMessageText('')).to.equal('');
  });

  it('never throws on broken input: bad escapes stay as they are, bad UTF-8 becomes U+FFFD', () => {
    expect(decodeGrpcMessageText('100%')).to.equal('100%');
    expect(decodeGrpcMessageText('%4')).to.equal('%4');
    expect(decodeGrpcMessageText('%zz%41')).to.equal('%zzA');
    expect(decodeGrpcMessageText('%FF')).to.equal('\uFFFD');
    expect(decodeGrpcMessageText('%E2%9C')).to.equal('\uFFFD');
    expect(decodeGrpcMessageText('a%E2%9Cb')).to.equal('a\uFFFDb');
  });

  it('encodes octets outside %x20-%x7E and % itself, in uppercase hex', () => {
    expect(encodeGrpcMessageText('a%b')).to.equal('a%25b');
    expect(encodeGrpcMessageText('✓\n\t~ ')).to.equal('%E2%9C%93%0A%09~ ');
    expect(encodeGrpcMessageText('\x7f')).to.equal('%7F');
  });

  it('round-trips any text (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 60 }), (text) => {
        const encoded = encodeGrpcMessageText(text);
        expect(encoded).to.match(/^[\x20-\x7e]*$/);
        expect(decodeGrpcMessageText(encoded)).to.equal(text);
      }),
      { numRuns: 500 },
    );
  });
});
