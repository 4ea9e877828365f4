/**
 * RESP fuzzing: what a broken or hostile server can do to a client, over a real socket, with fast-check.
 *
 * - Valid replies (nested arrays, binary bulk strings, error replies in the middle of a pipeline) cut
 *   at random chunk boundaries: every command gets exactly its own reply.
 * - A poisoned pipeline (an unknown type byte, an array longer than 2^32, nesting deeper than the stack,
 *   a bulk string announcing more than maxReplyBytes): the replies before it are right, the rest reject
 *   with ProtocolError, and the connection is closed (the client reconnects for the next command).
 * - Random garbage: every command settles by its timeout; nothing is thrown out of a socket event.
 * - Memory: a reply that never ends is cut off at maxReplyBytes.
 * No uncaught exception, no unhandled rejection, no hang (every command has a timeout).
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { ConnectionError, ProtocolError, RedisClient, RespError, TimeoutError } from '../src/index.js';
import { FakeServer, type FakeConnection } from './support/fake-server.js';

type Reply =
  | { t: 'simple'; s: string }
  | { t: 'error'; s: string }
  | { t: 'int'; n: number }
  | { t: 'bulk'; b: Uint8Array }
  | { t: 'nullbulk' }
  | { t: 'nullarray' }
  | { t: 'array'; items: Reply[] };

const line = fc.string({ maxLength: 40 }).map((s) => s.replace(/[\r\n]/g, ''));
const { reply: replyArb } = fc.letrec<{ reply: Reply; leaf: Reply }>((tie) => ({
  leaf: fc.oneof(
    line.map((s): Reply => ({ t: 'simple', s })),
    fc.maxSafeInteger().map((n): Reply => ({ t: 'int', n })),
    // Bulk strings may hold anything, \r\n included: their length says where they end.
    fc.uint8Array({ maxLength: 200 }).map((b): Reply => ({ t: 'bulk', b })),
    fc.constant<Reply>({ t: 'nullbulk' }),
    fc.constant<Reply>({ t: 'nullarray' }),
  ),
  reply: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    tie('leaf'),
    fc.array(tie('reply'), { maxLength: 5 }).map((items): Reply => ({ t: 'array', items })),
  ),
}));
/** A top-level reply: anything, or an error reply (errors are what make a pipeline interesting). */
const topArb = fc.oneof(replyArb, line.filter((s) => s.length > 0).map((s): Reply => ({ t: 'error', s: `ERR ${s}` })));

function encode(r: Reply): Buffer {
  switch (r.t) {
    case 'simple':
      return Buffer.from(`+${r.s}\r\n`);
    case 'error':
      return Buffer.from(`-${r.s}\r\n`);
    case 'int':
      return Buffer.from(`:${r.n}\r\n`);
    case 'bulk':
      return Buffer.concat([Buffer.from(`$${r.b.length}\r\n`), r.b, Buffer.from('\r\n')]);
    case 'nullbulk':
      return Buffer.from('$-1\r\n');
    case 'nullarray':
      return Buffer.from('*-1\r\n');
    case 'array':
      return Buffer.concat([Buffer.from(`*${r.items.length}\r\n`), ...r.items.map(encode)]);
  }
}

/** What the client resolves with (returnBuffers: true). */
function decoded(r: Reply): unknown {
  switch (r.t) {
    case 'simple':
      return Buffer.from(r.s);
    case 'int':
      return r.n;
    case 'bulk':
      return Buffer.from(r.b);
    case 'nullbulk':
    case 'nullarray':
      return null;
    case 'array':
      return r.items.map(decoded);
    case 'error':
      throw new Error('an error reply rejects');
  }
}

/** Cuts `bytes` at the given fractions: random chunk boundaries. */
function cut(bytes: Buffer, at: number[]): Buffer[] {
  const points = [...new Set(at.map((f) => Math.floor(f * bytes.length)))].filter((p) => p > 0 && p < bytes.length).sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    chunks.push(bytes.subarray(from, p));
    from = p;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('RESP fuzzing (fake server, fast-check)', function () {
  this.timeout(60_000);
  let fake: FakeServer;
  let client: RedisClient;
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);

  /** The connection the client uses now (it reconnects after a ProtocolError). */
  async function serverSide(): Promise<FakeConnection> {
    const until = performance.now() + 5000;
    for (;;) {
      const conn = fake.connections.filter((c) => !c.closed).at(-1);
      if (conn) return conn;
      if (performance.now() > until) throw new Error('the client did not reconnect');
      await sleep(5);
    }
  }

  /**
   * Sends n commands, waits until the server has them all, then answers with `chunks`, one write each.
   * `sent.at` is set to when the commands were sent (after the ping that readies the connection).
   */
  async function exchange(n: number, chunks: Buffer[], timeoutMs = 3000, sent = { at: 0 }): Promise<Array<PromiseSettledResult<unknown>>> {
    // A ping first: the client is connected (a reconnect after the previous case has finished). The
    // previous case's garbage may have left half a reply in the parser (`$9\r\nab`), which swallows
    // this ping's PONG: then the ping waits out its timeout and the client replaces the connection.
    await client.send(['PING'], { timeoutMs: 5000 }).catch(() => {});
    await serverSide();
    sent.at = performance.now();
    // The connection that gets the commands is the one they arrive on: the client may still be
    // replacing the previous case's connection (closed by a ProtocolError) when they are sent.
    const before = new Map(fake.connections.map((c) => [c, c.commands.length]));
    const sends = Array.from({ length: n }, (_, i) => client.send(['GET', `k${i}`], { timeoutMs }));
    const settled = Promise.allSettled(sends);
    const until = performance.now() + 5000;
    let conn: FakeConnection | undefined;
    while (!(conn = fake.connections.find((c) => c.commands.length >= (before.get(c) ?? 0) + n))) {
      if (performance.now() > until) throw new Error('the commands did not reach the server');
      await sleep(1);
    }
    for (const chunk of chunks) {
      if (conn.closed) break;
      conn.socket.write(chunk);
      await tick();
    }
    return settled;
  }

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    // Answers PING itself; everything else is answered by the test, byte for byte.
    fake = await FakeServer.start({ onCommand: (args) => (args[0] === 'PING' ? '+PONG\r\n' : undefined) });
    client = await RedisClient.connect(fake.url, { returnBuffers: true, commandTimeoutMs: 3000, reconnect: () => 10 });
  });
  afterEach(() => {
    expect(unhandled, 'unhandled rejections').to.deep.equal([]);
  });
  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    await client?.close();
    await fake?.close();
  });

  it('valid replies at random chunk boundaries: each command gets its own reply, error replies included', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(topArb, { minLength: 1, maxLength: 10 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 }), async (replies, at) => {
        const results = await exchange(replies.length, cut(Buffer.concat(replies.map(encode)), at));
        results.forEach((res, i) => {
          const r = replies[i]!;
          if (r.t === 'error') {
            expect(res.status, `reply ${i}`).to.equal('rejected');
            const err = (res as PromiseRejectedResult).reason as RespError;
            expect(err).to.be.instanceOf(RespError);
            expect(err.message.startsWith(r.s), `${err.message} / ${r.s}`).to.equal(true);
          } else {
            expect(res.status, `reply ${i}: ${String((res as PromiseRejectedResult).reason)}`).to.equal('fulfilled');
            expect((res as PromiseFulfilledResult<unknown>).value).to.deep.equal(decoded(r));
          }
        });
      }),
      { numRuns: 60 },
    );
  });

  const poisons: Array<[string, Buffer]> = [
    ['an unknown type byte', Buffer.from('!oops\r\n')],
    ['a RESP3 type byte the client does not speak', Buffer.from('%1\r\n+a\r\n+b\r\n')],
    ['an array longer than 2^32 elements', Buffer.from('*4294967296\r\n')],
    ['nesting deeper than the stack', Buffer.from(`${'*1\r\n'.repeat(100_000)}:1\r\n`)],
    ['a bulk string announcing more than maxReplyBytes', Buffer.from('$1099511627776\r\n')],
  ];
  it('a poisoned pipeline: the replies before the poison are right, the rest reject with ProtocolError, the connection closes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(replyArb, { maxLength: 5 }),
        fc.constantFrom(...poisons),
        fc.array(replyArb, { maxLength: 3 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 }),
        async (before, [, poison], after, at) => {
          const conn = await serverSide();
          const n = before.length + 1 + after.length;
          const stream = Buffer.concat([...before.map(encode), poison, ...after.map(encode)]);
          const results = await exchange(n, cut(stream, at));
          before.forEach((r, i) => {
            expect(results[i]!.status, `reply ${i}`).to.equal('fulfilled');
            expect((results[i] as PromiseFulfilledResult<unknown>).value).to.deep.equal(decoded(r));
          });
          for (const res of results.slice(before.length)) {
            expect(res.status).to.equal('rejected');
            const reason = (res as PromiseRejectedResult).reason as Error;
            expect(reason, String(reason)).to.be.instanceOf(ProtocolError);
            expect((reason as ProtocolError).code).to.equal('WL_PROTOCOL');
          }
          const until = performance.now() + 2000;
          while (!conn.closed && performance.now() < until) await sleep(5);
          expect(conn.closed, 'the connection was closed').to.equal(true);
        },
      ),
      { numRuns: 40 },
    );
    // And the client works again on a new connection.
    const [res] = await exchange(1, [Buffer.from('+ok\r\n')]);
    expect((res as PromiseFulfilledResult<unknown>).value).to.deep.equal(Buffer.from('ok'));
  });

  it('random garbage: every command settles by its timeout with a typed error or a reply; nothing escapes', async () => {
    let outcomes = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ minLength: 1, maxLength: 300 }),
          // Garbage that looks like RESP: type bytes, digits, signs, CRLFs.
          fc.array(fc.constantFrom('$', '*', '+', '-', ':', '1', '0', '9', '-', '\r\n', 'x', '\r', '\n'), { minLength: 1, maxLength: 60 })
            .map((parts) => new Uint8Array(Buffer.from(parts.join('')))),
        ),
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }),
        async (bytes, n, at) => {
          const sent = { at: 0 };
          const results = await exchange(n, cut(Buffer.from(bytes), at), 200, sent);
          expect(performance.now() - sent.at, 'ms for every command to settle').to.be.below(200 + 2000);
          for (const res of results) {
            outcomes++;
            if (res.status === 'fulfilled') continue;
            const reason = res.reason as Error;
            const typed = [ProtocolError, RespError, TimeoutError, ConnectionError].some((T) => reason instanceof T);
            expect(typed, `untyped failure: ${String(reason)}`).to.equal(true);
          }
        },
      ),
      { numRuns: 60 },
    );
    expect(outcomes).to.be.above(0);
  });

  it('negative lengths other than -1 read as nil, and the replies after them stay aligned', async () => {
    const results = await exchange(4, [Buffer.from('$-5\r\n*-7\r\n$3\r\nabc\r\n:42\r\n')]);
    expect(results.map((r) => (r as PromiseFulfilledResult<unknown>).value)).to.deep.equal([null, null, Buffer.from('abc'), 42]);
  });
});

describe('RESP: maxReplyBytes bounds what one reply may make the client hold', function () {
  this.timeout(30_000);
  const servers: FakeServer[] = [];
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  /**
   * A server that answers the first command with `head` and then streams `unit` for ever (until the
   * client closes or `capBytes` are written). Resolves with what the command did and how much was sent.
   */
  async function endless(head: string, unit: string, maxReplyBytes: number | undefined, capBytes = 64 * 1024 * 1024) {
    let written = 0;
    const block = Buffer.from(unit.repeat(Math.ceil(65536 / unit.length)));
    const fake = await FakeServer.start({
      onCommand: (args, conn) => {
        if (args[0] !== 'GET') return undefined;
        void (async () => {
          conn.socket.write(head);
          while (!conn.closed && written < capBytes) {
            written += block.length;
            if (!conn.socket.write(block)) await new Promise((r) => conn.socket.once('drain', r).once('close', r));
          }
        })();
        return undefined;
      },
    });
    servers.push(fake);
    const client = await RedisClient.connect(fake.url, { commandTimeoutMs: 10_000, maxReplyBytes, reconnect: () => false });
    const heap = process.memoryUsage();
    const t0 = performance.now();
    const result = await client.send(['GET', 'k']).then((v) => ({ value: v }), (e: unknown) => ({ error: e as Error }));
    const took = performance.now() - t0;
    const grown = process.memoryUsage().rss - heap.rss;
    await client.close();
    return { result, written, took, grown };
  }

  it('an endless line, endless arrays, a too long bulk string: ProtocolError after about maxReplyBytes', async () => {
    const max = 1024 * 1024;
    for (const [what, head, unit] of [
      ['simple string', '+', 'x'],
      ['array of integers', '*1000000000\r\n', ':1\r\n'],
      // Each element is within the limit; together they are not.
      ['array of 64 KiB bulk strings', '*1000000000\r\n', `$65536\r\n${'y'.repeat(65536)}\r\n`],
      ['bulk string announcing more than the limit', `$${2 * 1024 * 1024}\r\n`, 'z'],
    ] as const) {
      const { result, written, took, grown } = await endless(head, unit, max);
      expect('error' in result, `${what}: resolved`).to.equal(true);
      const err = (result as { error: Error }).error;
      expect(err, `${what}: ${String(err)}`).to.be.instanceOf(ProtocolError);
      expect(err.message).to.contain('maxReplyBytes');
      // Sent before the client hung up: the limit, plus what sits in socket buffers on the way.
      expect(written, `${what}: bytes the server got to send`).to.be.below(max + 16 * 1024 * 1024);
      expect(grown, `${what}: RSS growth`).to.be.below(128 * 1024 * 1024);
      expect(took).to.be.below(10_000);
    }
  });

  it('the default (512 MiB) refuses a longer announced bulk string at once, before its bytes arrive', async () => {
    const { result, written } = await endless(`$${1024 * 1024 * 1024}\r\n`, 'z', undefined, 8 * 1024 * 1024);
    const err = (result as { error?: Error }).error;
    expect(err, String(err)).to.be.instanceOf(ProtocolError);
    expect(err!.message).to.contain('536870912');
    expect(written).to.be.at.most(8 * 1024 * 1024 + 65536);
  });

  it('rejects a maxReplyBytes that is not a positive number', async () => {
    for (const bad of [0, -1, NaN, '1024', null]) {
      let err: unknown;
      try {
        await RedisClient.connect({ port: 1, maxReplyBytes: bad as number });
      } catch (e) {
        err = e;
      }
      expect(err, String(bad)).to.be.instanceOf(RangeError);
    }
  });
});
