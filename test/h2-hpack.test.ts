/**
 * HPACK (RFC 7541): the codec against the RFC's own examples, then against itself.
 *
 * - Appendix C, all of it: integers (C.1), single fields (C.2), three requests and three responses
 *   with and without Huffman (C.3-C.6), checking the decoded lists and the dynamic table after
 *   every block; our encoder, left to its own strategy, writes those exact octets.
 * - Huffman (Appendix B): the strings of the examples, every octet value, random buffers, and the
 *   strictness of RFC 7541 5.2 (padding, EOS).
 * - The encoder's choices: indexed repeats, sensitive fields never indexed, table size updates.
 * - fast-check: encoder -> decoder round trips over sequences of blocks and table size changes,
 *   the two tables equal after each block; random and mutated blocks decode or throw HpackError.
 * - Every decoding error is an HpackError that says what and where, and never shows a value.
 *
 * Header strings are latin1 (one character per octet), as in the codec.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { ProtocolError } from '../src/errors.js';
import { HpackDecoder, HpackEncoder, HpackError, STATIC_TABLE, decodeInteger, encodeInteger, type HeaderList } from '../src/etcdrpc/h2/hpack.js';
import { huffmanDecode, huffmanEncode, huffmanEncodedLength } from '../src/etcdrpc/h2/huffman.js';
import { thrown } from './support/thrown.js';

/** Octets from a hex dump as the RFC prints it ("8286 8441 ..."). */
const hex = (dump: string): Buffer => Buffer.from(dump.replace(/\s+/g, ''), 'hex');
const latin1 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('latin1');

/** Decoding `block` fails with an HpackError whose message matches `message`. */
function decodeError(block: Buffer, message: RegExp, decoder = new HpackDecoder()): HpackError {
  const err = thrown(() => decoder.decode(block));
  expect(err, err.stack).to.be.instanceOf(HpackError);
  expect(err.message).to.match(message);
  return err as HpackError;
}

/** One block of an Appendix C example: its octets, what it decodes to, and the table after it. */
interface Step {
  block: string;
  headers: HeaderList;
  table: HeaderList;
  size: number;
}

// C.3 and C.4 encode the same three requests; C.5 and C.6 the same three responses.
const REQUESTS: HeaderList[] = [
  [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
  ],
  [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
    ['cache-control', 'no-cache'],
  ],
  [
    [':method', 'GET'],
    [':scheme', 'https'],
    [':path', '/index.html'],
    [':authority', 'www.example.com'],
    ['custom-key', 'custom-value'],
  ],
];
const REQUEST_TABLES: Array<[HeaderList, number]> = [
  [[[':authority', 'www.example.com']], 57],
  [
    [
      ['cache-control', 'no-cache'],
      [':authority', 'www.example.com'],
    ],
    110,
  ],
  [
    [
      ['custom-key', 'custom-value'],
      ['cache-control', 'no-cache'],
      [':authority', 'www.example.com'],
    ],
    164,
  ],
];
const COOKIE = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';
const RESPONSES: HeaderList[] = [
  [
    [':status', '302'],
    ['cache-control', 'private'],
    ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
    ['location', 'https://www.example.com'],
  ],
  [
    [':status', '307'],
    ['cache-control', 'private'],
    ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
    ['location', 'https://www.example.com'],
  ],
  [
    [':status', '200'],
    ['cache-control', 'private'],
    ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'],
    ['location', 'https://www.example.com'],
    ['content-encoding', 'gzip'],
    ['set-cookie', COOKIE],
  ],
];
const RESPONSE_TABLES: Array<[HeaderList, number]> = [
  [
    [
      ['location', 'https://www.example.com'],
      ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
      ['cache-control', 'private'],
      [':status', '302'],
    ],
    222,
  ],
  [
    [
      [':status', '307'],
      ['location', 'https://www.example.com'],
      ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
      ['cache-control', 'private'],
    ],
    222,
  ],
  [
    [
      ['set-cookie', COOKIE],
      ['content-encoding', 'gzip'],
      ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'],
    ],
    215,
  ],
];

const steps = (lists: HeaderList[], tables: Array<[HeaderList, number]>, blocks: string[]): Step[] =>
  blocks.map((block, i) => ({ block, headers: lists[i]!, table: tables[i]![0], size: tables[i]![1] }));

/** The hex dumps of RFC 7541 C.3 to C.6, block by block. */
const EXAMPLES: Record<string, { tableSize: number; huffman: boolean; steps: Step[]; ours?: Record<number, string> }> = {
  'C.3 (requests without Huffman)': {
    tableSize: 4096,
    huffman: false,
    steps: steps(REQUESTS, REQUEST_TABLES, [
      '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
      '8286 84be 5808 6e6f 2d63 6163 6865',
      '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
    ]),
  },
  'C.4 (requests with Huffman)': {
    tableSize: 4096,
    huffman: true,
    steps: steps(REQUESTS, REQUEST_TABLES, [
      '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
      '8286 84be 5886 a8eb 1064 9cbf',
      '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
    ]),
  },
  'C.5 (responses without Huffman, table size 256)': {
    tableSize: 256,
    huffman: false,
    steps: steps(RESPONSES, RESPONSE_TABLES, [
      '4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133' +
        '2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
      '4803 3330 37c1 c0bf',
      '88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d' +
        '54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049' +
        '5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31',
    ]),
  },
  'C.6 (responses with Huffman, table size 256)': {
    tableSize: 256,
    huffman: true,
    steps: steps(RESPONSES, RESPONSE_TABLES, [
      '4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6' +
        '2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3',
      '4883 640e ffc1 c0bf',
      '88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab' +
        '77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f' +
        '9587 3160 65c0 03ed 4ee5 b106 3d50 07',
    ]),
    // '307' is 3 octets Huffman-coded and 3 plain: the RFC's encoder chose Huffman on the tie, ours
    // writes the plain string, as cheap on the wire and cheaper to decode. Same length, same table.
    ours: { 1: '4803 3330 37c1 c0bf' },
  },
};

/** The Huffman-coded strings of C.4 and C.6. */
const HUFFMAN_STRINGS: Array<[string, string]> = [
  ['www.example.com', 'f1e3 c2e5 f23a 6ba0 ab90 f4ff'],
  ['no-cache', 'a8eb 1064 9cbf'],
  ['custom-key', '25a8 49e9 5ba9 7d7f'],
  ['custom-value', '25a8 49e9 5bb8 e8b4 bf'],
  ['302', '6402'],
  ['307', '640e ff'],
  ['private', 'aec3 771a 4b'],
  ['Mon, 21 Oct 2013 20:13:21 GMT', 'd07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff'],
  ['https://www.example.com', '9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3'],
  ['Mon, 21 Oct 2013 20:13:22 GMT', 'd07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff'],
  ['gzip', '9bd9 ab'],
  [COOKIE, '94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07'],
];

describe('HPACK (RFC 7541)', () => {
  describe('integers (C.1)', () => {
    it('encodes 10 with a 5-bit prefix in the prefix itself (C.1.1)', () => {
      expect(encodeInteger(10, 5).toString('hex')).to.equal('0a');
      // The bits above the prefix belong to the representation, and are kept.
      expect(encodeInteger(10, 5, 0xe0).toString('hex')).to.equal('ea');
      expect(decodeInteger(hex('ea'), 0, 5)).to.deep.equal({ value: 10, next: 1 });
    });

    it('encodes 1337 with a 5-bit prefix as 31 then 1306 in two 7-bit groups (C.1.2)', () => {
      expect(encodeInteger(1337, 5).toString('hex')).to.equal('1f9a0a');
      expect(decodeInteger(hex('ff 1f9a0a 00'), 1, 5)).to.deep.equal({ value: 1337, next: 4 });
    });

    it('encodes 42 at an octet boundary with an 8-bit prefix (C.1.3)', () => {
      expect(encodeInteger(42, 8).toString('hex')).to.equal('2a');
      expect(decodeInteger(hex('2a'), 0, 8)).to.deep.equal({ value: 42, next: 1 });
    });

    it('round-trips every prefix size up to 2^32 - 1, using the fewest octets', () => {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.integer({ min: 1, max: 8 }), (value, prefix) => {
          const octets = encodeInteger(value, prefix);
          expect(decodeInteger(octets, 0, prefix)).to.deep.equal({ value, next: octets.length });
          // No needless zero group at the end (a lone 0 after the prefix is the value 2^N - 1 itself).
          if (octets.length > 2) expect(octets.at(-1)).to.not.equal(0);
        }),
      );
      expect(encodeInteger(2 ** 32 - 1, 5).toString('hex')).to.equal('1fe0ffffff0f');
      expect(() => encodeInteger(2 ** 32, 5)).to.throw(RangeError);
    });
  });

  describe('single fields (C.2)', () => {
    it('decodes a literal field with incremental indexing into the table (C.2.1)', () => {
      const decoder = new HpackDecoder();
      expect(decoder.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'))).to.deep.equal([['custom-key', 'custom-header']]);
      expect(decoder.table()).to.deep.equal([['custom-key', 'custom-header']]);
      expect(decoder.tableSize).to.equal(55);
    });

    it('decodes a literal field without indexing, leaving the table empty (C.2.2)', () => {
      const decoder = new HpackDecoder();
      expect(decoder.decode(hex('040c 2f73 616d 706c 652f 7061 7468'))).to.deep.equal([[':path', '/sample/path']]);
      expect(decoder.tableLength).to.equal(0);
    });

    it('decodes a never-indexed literal field, leaving the table empty (C.2.3)', () => {
      const decoder = new HpackDecoder();
      expect(decoder.decode(hex('1008 7061 7373 776f 7264 0673 6563 7265 74'))).to.deep.equal([['password', 'secret']]);
      expect(decoder.tableLength).to.equal(0);
    });

    it('decodes an indexed field from the static table (C.2.4)', () => {
      const decoder = new HpackDecoder();
      expect(decoder.decode(hex('82'))).to.deep.equal([[':method', 'GET']]);
      expect(decoder.tableLength).to.equal(0);
    });

    it('has the 61 entries of Appendix A in the static table', () => {
      expect(STATIC_TABLE).to.have.length(61);
      expect(STATIC_TABLE[0]).to.deep.equal([':authority', '']);
      expect(STATIC_TABLE[15]).to.deep.equal(['accept-encoding', 'gzip, deflate']);
      expect(STATIC_TABLE[60]).to.deep.equal(['www-authenticate', '']);
      const decoder = new HpackDecoder();
      for (let i = 1; i <= 61; i++) expect(decoder.decode(Buffer.from([0x80 | i]))).to.deep.equal([STATIC_TABLE[i - 1]]);
    });
  });

  for (const [title, example] of Object.entries(EXAMPLES)) {
    describe(`header lists, ${title}`, () => {
      it('decodes each block to the RFC header list, with the RFC dynamic table after it', () => {
        const decoder = new HpackDecoder({ maxTableSize: example.tableSize });
        for (const [i, step] of example.steps.entries()) {
          expect(decoder.decode(hex(step.block)), `block ${i + 1}`).to.deep.equal(step.headers);
          expect(decoder.table(), `table after block ${i + 1}`).to.deep.equal(step.table);
          expect(decoder.tableSize, `table size after block ${i + 1}`).to.equal(step.size);
          expect(decoder.tableLength).to.equal(step.table.length);
        }
      });

      it('encodes the header lists to exactly the RFC octets, its table equal to the decoder one', () => {
        const encoder = new HpackEncoder({ maxTableSize: example.tableSize, huffman: example.huffman });
        const decoder = new HpackDecoder({ maxTableSize: example.tableSize });
        for (const [i, step] of example.steps.entries()) {
          const block = encoder.encode(step.headers);
          expect(block.toString('hex'), `block ${i + 1}`).to.equal(hex(example.ours?.[i] ?? step.block).toString('hex'));
          expect(block.length).to.equal(hex(step.block).length);
          expect(decoder.decode(block)).to.deep.equal(step.headers);
          expect(encoder.table()).to.deep.equal(step.table);
          expect(encoder.tableSize).to.equal(step.size);
          expect(encoder.table()).to.deep.equal(decoder.table());
        }
      });

      it('decodes every cut of each block to a prefix of its list, or throws HpackError', () => {
        // A block cut at a field boundary is a valid, shorter block; cut inside a field, it is truncated.
        for (const [i, step] of example.steps.entries()) {
          const block = hex(step.block);
          for (let cut = 0; cut < block.length; cut++) {
            const decoder = new HpackDecoder({ maxTableSize: example.tableSize });
            for (const earlier of example.steps.slice(0, i)) decoder.decode(hex(earlier.block));
            try {
              const headers = decoder.decode(block.subarray(0, cut));
              expect(step.headers.slice(0, headers.length), `cut at ${cut}`).to.deep.equal(headers);
            } catch (err) {
              expect(err, `cut at ${cut}`).to.be.instanceOf(HpackError);
              expect((err as Error).message).to.match(/ends|past the end/);
            }
          }
        }
      });
    });
  }

  describe('Huffman code (Appendix B)', () => {
    it('codes the strings of the examples as the RFC does', () => {
      for (const [text, coded] of HUFFMAN_STRINGS) {
        expect(huffmanEncode(Buffer.from(text, 'latin1')).toString('hex'), text).to.equal(hex(coded).toString('hex'));
        expect(huffmanEncodedLength(Buffer.from(text, 'latin1')), text).to.equal(hex(coded).length);
        expect(huffmanDecode(hex(coded)).toString('latin1'), text).to.equal(text);
      }
    });

    it('round-trips every octet value, alone and all together', () => {
      for (let octet = 0; octet < 256; octet++) {
        const one = Buffer.from([octet]);
        expect(huffmanDecode(huffmanEncode(one)).equals(one), `octet ${octet}`).to.equal(true);
      }
      const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      expect(huffmanDecode(huffmanEncode(all)).equals(all)).to.equal(true);
      expect(huffmanDecode(huffmanEncode(Buffer.alloc(0))).length).to.equal(0);
    });

    it('round-trips random buffers, at the length huffmanEncodedLength says', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
          const coded = huffmanEncode(Buffer.from(bytes));
          expect(coded.length).to.equal(huffmanEncodedLength(Buffer.from(bytes)));
          expect(huffmanDecode(coded).equals(Buffer.from(bytes))).to.equal(true);
        }),
        { numRuns: 500 },
      );
    });

    it('rejects padding longer than 7 bits, padding with a zero, and EOS (RFC 7541 5.2)', () => {
      // 'a' is 00011: one octet 0x1f with its padding of three ones.
      expect(huffmanDecode(hex('1f')).toString()).to.equal('a');
      expect(() => huffmanDecode(hex('1fff'))).to.throw(ProtocolError, /padding longer than 7 bits/);
      expect(() => huffmanDecode(hex('ff'))).to.throw(ProtocolError, /padding longer than 7 bits/);
      expect(() => huffmanDecode(hex('18'))).to.throw(ProtocolError, /not all ones/);
      expect(() => huffmanDecode(hex('1e'))).to.throw(ProtocolError, /not all ones/);
      // EOS is 30 ones: 32 ones hold it, and so do 30 followed by a valid code.
      expect(() => huffmanDecode(hex('ffffffff'))).to.throw(ProtocolError, /EOS/);
      expect(() => huffmanDecode(hex('1f ffff fffc'))).to.throw(ProtocolError, /EOS.*octet 4/);
    });

    it('never throws anything but ProtocolError on random input', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
          try {
            const out = huffmanDecode(Buffer.from(bytes));
            // Whatever decodes, encodes back to the same octets: the code has one spelling per string.
            expect(huffmanEncode(out).equals(Buffer.from(bytes))).to.equal(true);
          } catch (err) {
            expect(err).to.be.instanceOf(ProtocolError);
          }
        }),
        { numRuns: 2000 },
      );
    });
  });

  describe('the encoder', () => {
    /** A gRPC unary call's request headers, as the transport sends them. */
    const call = (path: string, timeout: string): HeaderList => [
      [':method', 'POST'],
      [':scheme', 'http'],
      [':path', path],
      [':authority', '127.0.0.1:2379'],
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
      ['user-agent', 'wirelock/0.1.0'],
      ['grpc-timeout', timeout],
      ['token', 'Sx4aJ9.secret-token-value'],
    ];
    const opts = { sensitive: new Set(['token', 'authorization']), noIndex: new Set(['grpc-timeout']) };

    it('costs one octet per repeated header from the second call on', () => {
      const encoder = new HpackEncoder();
      const decoder = new HpackDecoder();
      const first = encoder.encode(call('/etcdserverpb.KV/Range', '5000m'), opts);
      const second = encoder.encode(call('/etcdserverpb.KV/Range', '4999m'), opts);
      expect(decoder.decode(first)).to.deep.equal(call('/etcdserverpb.KV/Range', '5000m'));
      expect(decoder.decode(second)).to.deep.equal(call('/etcdserverpb.KV/Range', '4999m'));
      // 7 indexed fields (:method POST is static), then grpc-timeout and the token as literals.
      const literals = encoder.encode([call('', '4999m')[7]!, call('', '')[8]!], opts);
      expect(second.length).to.equal(7 + literals.length);
      expect(second.length).to.be.below(first.length / 2);
      expect(second.subarray(0, 7).every((octet) => (octet & 0x80) !== 0)).to.equal(true);
      expect(encoder.table()).to.deep.equal(decoder.table());
      // A new :path costs its literal once, then one octet too.
      const third = encoder.encode(call('/etcdserverpb.Lease/LeaseGrant', '5000m'), opts);
      const fourth = encoder.encode(call('/etcdserverpb.Lease/LeaseGrant', '5000m'), opts);
      expect(decoder.decode(third)).to.deep.equal(decoder.decode(fourth));
      expect(fourth.length).to.equal(second.length);
    });

    it('writes sensitive headers never-indexed (0001xxxx) and keeps them out of both tables', () => {
      const encoder = new HpackEncoder();
      const decoder = new HpackDecoder();
      for (let i = 0; i < 3; i++) {
        const block = encoder.encode([['token', 'Sx4aJ9.secret']], opts);
        expect(block[0]! & 0xf0).to.equal(0x10);
        expect(decoder.decode(block)).to.deep.equal([['token', 'Sx4aJ9.secret']]);
        // authorization's name is in the static table (23): a 4-bit prefix of 15, then 8.
        const auth = encoder.encode([['authorization', 'Bearer x']], opts);
        expect(auth.subarray(0, 2).toString('hex')).to.equal('1f08');
        expect(decoder.decode(auth)).to.deep.equal([['authorization', 'Bearer x']]);
      }
      expect(encoder.tableLength).to.equal(0);
      expect(decoder.tableLength).to.equal(0);
    });

    it('writes noIndex headers without indexing (0000xxxx), leaving the table alone', () => {
      const encoder = new HpackEncoder();
      const block = encoder.encode([['grpc-timeout', '5000m']], opts);
      expect(block[0]! & 0xf0).to.equal(0x00);
      expect(encoder.tableLength).to.equal(0);
      expect(new HpackDecoder().decode(block)).to.deep.equal([['grpc-timeout', '5000m']]);
    });

    it('Huffman-codes a string only when that makes it shorter', () => {
      const encoder = new HpackEncoder();
      const noIndex = new Set(['x-a']);
      // Literal without indexing, literal name: 'x-a' is 18 bits coded (3 octets either way: plain),
      // 'www.example.com' 12 octets coded against 15 plain, and NUL 13 bits against 1 octet.
      expect(encoder.encode([['x-a', 'www.example.com']], { noIndex }).toString('hex')).to.equal('00' + '03782d61' + '8c' + 'f1e3c2e5f23a6ba0ab90f4ff');
      expect(encoder.encode([['x-a', '\u0000']], { noIndex }).toString('hex')).to.equal('00' + '03782d61' + '0100');
    });

    it('starts the next block with a size update after setMaxTableSize, and the decoder follows', () => {
      const encoder = new HpackEncoder();
      const decoder = new HpackDecoder();
      const list: HeaderList = [
        ['x-one', 'a'.repeat(30)],
        ['x-two', 'b'.repeat(30)],
      ];
      decoder.decode(encoder.encode(list));
      expect(decoder.tableLength).to.equal(2);

      encoder.setMaxTableSize(100); // room for one of the two 67-octet entries
      const smaller = encoder.encode([]);
      expect(smaller.toString('hex')).to.equal('3f45'); // 001 11111, then 100 - 31 = 69
      decoder.decode(smaller);
      expect(decoder.table()).to.deep.equal([['x-two', 'b'.repeat(30)]]);
      expect(encoder.table()).to.deep.equal(decoder.table());

      encoder.setMaxTableSize(0);
      const flushed = encoder.encode(list);
      expect(flushed[0]).to.equal(0x20);
      expect(decoder.decode(flushed)).to.deep.equal(list);
      expect(decoder.tableLength).to.equal(0);
      expect(encoder.tableLength).to.equal(0);

      // No change, no update.
      encoder.setMaxTableSize(0);
      expect(encoder.encode([[':method', 'GET']]).toString('hex')).to.equal('82');
    });

    it('announces the lowest size, then the last, when the size went down and up between blocks', () => {
      const encoder = new HpackEncoder();
      const decoder = new HpackDecoder();
      decoder.decode(encoder.encode([['x-kept', 'no']]));
      encoder.setMaxTableSize(0);
      encoder.setMaxTableSize(8192);
      encoder.setMaxTableSize(4096);
      const block = encoder.encode([]);
      expect(block.toString('hex')).to.equal('20' + '3fe11f'); // 0, then 4096 = 31 + 97 + 31 * 128
      decoder.decode(block);
      expect(decoder.tableLength).to.equal(0);
      expect(encoder.tableLength).to.equal(0);
    });

    it('uses at most 64 KiB of table, whatever the peer allows', () => {
      const encoder = new HpackEncoder();
      encoder.setMaxTableSize(2 ** 32 - 1);
      expect(encoder.encode([]).toString('hex')).to.equal(encodeInteger(65536, 5, 0x20).toString('hex'));
      expect(() => encoder.setMaxTableSize(-1)).to.throw(RangeError);
    });

    it('writes a field larger than the table without indexing, instead of emptying the table', () => {
      const encoder = new HpackEncoder({ maxTableSize: 100 });
      const decoder = new HpackDecoder({ maxTableSize: 100 });
      decoder.decode(encoder.encode([['x-small', 'kept']]));
      const big = encoder.encode([['x-big', 'z'.repeat(80)]]);
      expect(big[0]! & 0xf0).to.equal(0x00);
      decoder.decode(big);
      expect(decoder.table()).to.deep.equal([['x-small', 'kept']]);
      expect(encoder.table()).to.deep.equal(decoder.table());
    });

    it('refuses characters above U+00FF without changing its table, and without showing the value', () => {
      const encoder = new HpackEncoder();
      const err = thrown(() => encoder.encode([['x-ok', 'fine'], ['x-bad', 'secret€']])) as Error & { code?: string };
      expect(err).to.be.instanceOf(TypeError);
      expect(err.code).to.equal('ERR_INVALID_ARG_VALUE');
      expect(err.message).to.contain('x-bad').and.not.contain('secret');
      expect(encoder.tableLength).to.equal(0);
      expect(() => encoder.encode([['naïve-€', 'v']])).to.throw(TypeError, /name/);
      // Latin1 itself is fine: every octet is one character.
      const bytes = latin1(new Uint8Array([0, 0x7f, 0x80, 0xe9, 0xff]));
      expect(new HpackDecoder().decode(encoder.encode([['x-bytes', bytes]]))).to.deep.equal([['x-bytes', bytes]]);
    });
  });

  describe('encoder -> decoder (fast-check)', () => {
    // A few names and values that repeat, so that fields hit the tables; random latin1 strings too.
    const NAMES = [':path', ':authority', 'content-type', 'grpc-timeout', 'token', 'x-key', 'date', 'cookie', ''];
    const VALUES = ['', 'GET', '/', 'application/grpc', 'x'.repeat(120), '5000m'];
    const text = fc.uint8Array({ maxLength: 40 }).map(latin1);
    const field = fc.tuple(fc.oneof(fc.constantFrom(...NAMES), text), fc.oneof(fc.constantFrom(...VALUES), text));
    const staticField = fc.integer({ min: 0, max: 60 }).map((i): [string, string] => [...STATIC_TABLE[i]!]);
    const op = fc.oneof(
      { weight: 5, arbitrary: fc.array(fc.oneof(field, staticField), { maxLength: 12 }).map((headers) => ({ headers })) },
      { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: 600 }), { minLength: 1, maxLength: 3 }).map((sizes) => ({ sizes })) },
    );

    it('decodes every block to its list, the two tables equal after each block', () => {
      fc.assert(
        fc.property(fc.array(op, { maxLength: 25 }), fc.integer({ min: 0, max: 600 }), fc.boolean(), (ops, start, huffman) => {
          const encoder = new HpackEncoder({ maxTableSize: start, huffman });
          // The decoder allows more than the encoder ever uses: only the size updates set its table size.
          const decoder = new HpackDecoder({ maxTableSize: 600, maxHeaderListSize: 2 ** 20 });
          decoder.decode(hex('20'));
          decoder.decode(encodeInteger(start, 5, 0x20));
          const encodeOpts = { sensitive: new Set(['token', 'cookie']), noIndex: new Set(['grpc-timeout']) };
          for (const o of ops) {
            if ('sizes' in o) {
              for (const size of o.sizes) encoder.setMaxTableSize(size);
              continue;
            }
            expect(decoder.decode(encoder.encode(o.headers, encodeOpts))).to.deep.equal(o.headers);
            expect(decoder.table()).to.deep.equal(encoder.table());
            expect(decoder.tableSize).to.equal(encoder.tableSize);
            expect(decoder.tableSize).to.be.at.most(600);
            expect(decoder.table().some(([name]) => encodeOpts.sensitive.has(name))).to.equal(false);
          }
        }),
        { numRuns: 300 },
      );
    });

    it('decodes random blocks, or throws HpackError and nothing else', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
          try {
            expect(new HpackDecoder().decode(Buffer.from(bytes))).to.be.an('array');
          } catch (err) {
            expect(err).to.be.instanceOf(HpackError);
          }
        }),
        { numRuns: 3000 },
      );
    });

    it('decodes mutated valid blocks, or throws HpackError and nothing else', () => {
      const valid = Object.values(EXAMPLES).flatMap((e) => e.steps.map((s) => hex(s.block)));
      fc.assert(
        fc.property(
          fc.constantFrom(...valid),
          fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
          (block, edits) => {
            const mutated = Buffer.from(block);
            for (const [at, octet] of edits) mutated[at % mutated.length] = octet;
            try {
              new HpackDecoder({ maxTableSize: 256 }).decode(mutated);
            } catch (err) {
              expect(err).to.be.instanceOf(HpackError);
            }
          },
        ),
        { numRuns: 3000 },
      );
    });
  });

  describe('the decoder, on bad blocks,', () => {
    it('throws HpackErrors: ProtocolErrors with code WL_PROTOCOL and the offset of the bad representation', () => {
      const err = decodeError(hex('82 80'), /index 0 is not a table index.*octet 1 of the header block/);
      expect(err).to.be.instanceOf(ProtocolError);
      expect(err.code).to.equal('WL_PROTOCOL');
      expect(err.name).to.equal('HpackError');
      expect(err.offset).to.equal(1);
    });

    it('rejects an index past the end of the table, for a field or for a name', () => {
      decodeError(hex('be'), /index 62 is past the end of the table \(61 static and 0 dynamic entries\)/);
      decodeError(hex('7e 01 78'), /index 62 is past the end/); // literal with indexing, name index 62
      const decoder = new HpackDecoder();
      decoder.decode(hex('4001 61 0162')); // a: b into the table, at 62
      expect(decoder.decode(hex('be'))).to.deep.equal([['a', 'b']]);
      decodeError(hex('bf'), /index 63 is past the end of the table \(61 static and 1 dynamic entries\)/, decoder);
    });

    it('rejects a size update above our limit, and one after a field', () => {
      decodeError(hex('3fe21f'), /size update to 4097 octets, above our limit of 4096/);
      expect(new HpackDecoder().decode(hex('3fe11f 20 3f45 82'))).to.deep.equal([[':method', 'GET']]);
      decodeError(hex('82 3f45'), /size update after a header field.*octet 1/);
      decodeError(hex('21'), /above our limit of 0/, new HpackDecoder({ maxTableSize: 0 }));
    });

    it('rejects a block that ends inside an integer or a string', () => {
      decodeError(hex('0f'), /ends inside an integer.*octet 0/); // name index 15 needs a continuation
      decodeError(hex('3f'), /ends inside an integer/);
      decodeError(hex('ff 80'), /ends inside an integer/);
      decodeError(hex('04'), /ends where an integer should start.*octet 1/); // no value after the name
      decodeError(hex('400a 6375 73'), /string literal of 10 octets runs past the end of the block.*octet 1/);
      decodeError(hex('0001 61 8a'), /string literal of 10 octets runs past the end.*octet 3/); // a Huffman value
    });

    it('rejects an integer above 2^32 - 1, or one with more than 5 continuation octets', () => {
      expect(decodeInteger(hex('1f e0ffffff0f'), 0, 5).value).to.equal(2 ** 32 - 1);
      decodeError(hex('3f e1ffffff0f'), /larger than 2\^32 - 1/);
      decodeError(hex('3f ffffffff7f'), /larger than 2\^32 - 1/);
      decodeError(hex('3f 8080808080 00'), /more than 5 continuation octets/);
      decodeError(hex('ff' + '80'.repeat(1000)), /more than 5 continuation octets/);
      expect(decodeInteger(hex('3f 8080808000'), 0, 5).value).to.equal(31); // zeros, but within 5 octets
    });

    it('rejects bad Huffman padding and EOS in a string (RFC 7541 5.2)', () => {
      // :path (4) without indexing, then a 2-octet Huffman value: 'a' (00011), then 11 ones.
      decodeError(hex('0482 1fff'), /Huffman string ends in padding longer than 7 bits.*octet 1 of the header block/);
      decodeError(hex('0481 18'), /padding that is not all ones/);
      decodeError(hex('0484 ffffffff'), /EOS/);
      decodeError(hex('0081 18 00'), /not all ones.*octet 1/); // the same in a literal name
      expect(new HpackDecoder().decode(hex('0481 1f'))).to.deep.equal([[':path', 'a']]);
    });

    it('rejects a header list over maxHeaderListSize, naming the field but not showing its value', () => {
      const list: HeaderList = [
        ['x-one', 'a'.repeat(31)], // 5 + 31 + 32 = 68
        ['x-two', 'secret'.repeat(6)], // 5 + 36 + 32 = 73
      ];
      const block = new HpackEncoder().encode(list);
      expect(new HpackDecoder({ maxHeaderListSize: 141 }).decode(block)).to.deep.equal(list);
      const err = decodeError(block, /header list is over 140 octets.*"x-two" went past it/, new HpackDecoder({ maxHeaderListSize: 140 }));
      expect(err.message).to.not.contain('secret');
      // Indexed fields count as much as literal ones: one octet each can make a large list.
      const decoder = new HpackDecoder({ maxHeaderListSize: 1000 });
      decoder.decode(Buffer.concat([hex('4001 61 3c'), Buffer.from('v'.repeat(60))])); // a: v*60, 93 octets
      expect(decoder.decode(hex('be'.repeat(10)))).to.have.length(10);
      decodeError(hex('be'.repeat(11)), /over 1000 octets.*"a" went past it.*octet 10/, decoder);
    });

    it('is unusable after an error: every later block throws, even a valid one', () => {
      const decoder = new HpackDecoder();
      decodeError(hex('80'), /index 0/, decoder);
      const err = decodeError(hex('82'), /failed on an earlier block/, decoder);
      expect(err.cause).to.be.instanceOf(HpackError);
      decodeError(hex('82'), /failed on an earlier block/, decoder);
    });
  });

  describe('the dynamic table', () => {
    it('keeps the name of an entry the insertion evicts (RFC 7541 4.4)', () => {
      const decoder = new HpackDecoder({ maxTableSize: 60 });
      decoder.decode(hex('4004 61626364 0178')); // abcd: x, 37 octets
      // Literal with indexing, name index 62 (abcd), a 20-octet value: 56 octets, which evicts abcd: x first.
      const block = Buffer.concat([hex('7e 14'), Buffer.from('y'.repeat(20))]);
      expect(decoder.decode(block)).to.deep.equal([['abcd', 'y'.repeat(20)]]);
      expect(decoder.table()).to.deep.equal([['abcd', 'y'.repeat(20)]]);
      expect(decoder.tableSize).to.equal(56);
    });

    it('is emptied by an entry larger than the whole table (RFC 7541 4.4)', () => {
      const decoder = new HpackDecoder({ maxTableSize: 60 });
      decoder.decode(hex('4001 61 0162'));
      const block = Buffer.concat([hex('4001 62 1e'), Buffer.from('z'.repeat(30))]);
      expect(decoder.decode(block)).to.deep.equal([['b', 'z'.repeat(30)]]);
      expect(decoder.tableLength).to.equal(0);
      expect(decoder.tableSize).to.equal(0);
    });
  });
});
