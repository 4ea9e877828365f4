import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import { setTimeout as delay } from 'node:timers/promises';
import {
  ClosedError,
  ConnectionError,
  ProtocolError,
  RedisClient,
  RespError,
  Script,
  TimeoutError,
  type RespValue,
} from '../src/index.js';
import { freePort, startRedis, type RedisServer } from '../src/testing/servers.js';
import { FakeServer } from './support/fake-server.js';
import { rejection, waitFor } from './support/wait.js';

/** Records every payload published on the given channels until `stop()` is called. */
function record(names: string[]): { events: Array<{ channel: string; payload: any }>; stop: () => void } {
  const events: Array<{ channel: string; payload: any }> = [];
  const handlers = names.map((name) => {
    const handler = (payload: unknown): void => void events.push({ channel: name, payload });
    dc.subscribe(name, handler);
    return () => dc.unsubscribe(name, handler);
  });
  return { events, stop: () => handlers.forEach((off) => off()) };
}

/** Decoder vectors: the bytes a server sends, and what send() must resolve with (or reject with). */
const vectors: Array<{ name: string; bytes: string | Buffer; value?: RespValue; error?: { prefix: string; text: string } }> = [
  { name: 'simple string', bytes: '+OK\r\n', value: 'OK' },
  { name: 'empty simple string', bytes: '+\r\n', value: '' },
  { name: 'error reply', bytes: '-ERR unknown command\r\n', error: { prefix: 'ERR', text: 'unknown command' } },
  { name: 'error reply with its own prefix', bytes: '-WRONGTYPE Operation against a key\r\n', error: { prefix: 'WRONGTYPE', text: 'Operation against a key' } },
  { name: 'integer', bytes: ':42\r\n', value: 42 },
  { name: 'negative integer', bytes: ':-7\r\n', value: -7 },
  { name: 'zero', bytes: ':0\r\n', value: 0 },
  { name: 'bulk string', bytes: '$5\r\nhello\r\n', value: 'hello' },
  { name: 'empty bulk string', bytes: '$0\r\n\r\n', value: '' },
  { name: 'bulk string holding CRLF', bytes: '$4\r\na\r\nb\r\n', value: 'a\r\nb' },
  { name: 'bulk string of multi-byte UTF-8', bytes: Buffer.concat([Buffer.from('$7\r\n'), Buffer.from('é😀!', 'utf8'), Buffer.from('\r\n')]), value: 'é😀!' },
  { name: 'null bulk string', bytes: '$-1\r\n', value: null },
  { name: 'empty array', bytes: '*0\r\n', value: [] },
  { name: 'null array', bytes: '*-1\r\n', value: null },
  { name: 'array of mixed types', bytes: '*4\r\n:1\r\n$1\r\na\r\n$-1\r\n+ok\r\n', value: [1, 'a', null, 'ok'] },
  { name: 'nested arrays', bytes: '*3\r\n*2\r\n:1\r\n:2\r\n*0\r\n*1\r\n*1\r\n$2\r\nxy\r\n', value: [[1, 2], [], [['xy']]] },
  { name: 'array holding a null array', bytes: '*2\r\n*-1\r\n:5\r\n', value: [null, 5] },
];

describe('RedisClient decoding (fake server)', () => {
  for (const byteByByte of [false, true]) {
    describe(byteByByte ? 'replies written one byte at a time' : 'replies written whole', () => {
      let fake: FakeServer;
      let client: RedisClient;
      before(async () => {
        fake = await FakeServer.start({ byteByByte, onCommand: (args) => (args[0] === 'VEC' ? vectors[Number(args[1])]!.bytes : undefined) });
        client = await RedisClient.connect(fake.url);
      });
      after(async () => {
        client?.send(['QUIT']).catch(() => {}); // the fake does not answer QUIT: do not wait for it
        await fake?.close();
        await client?.close().catch(() => {});
      });

      it('decodes every vector, pipelined in one write, each to its own command', async () => {
        const results = await Promise.allSettled(vectors.map((_, i) => client.send(['VEC', i])));
        vectors.forEach((v, i) => {
          const r = results[i]!;
          if (v.error) {
            expect(r.status, v.name).to.equal('rejected');
            const err = (r as PromiseRejectedResult).reason;
            expect(err, v.name).to.be.instanceOf(RespError);
            expect(err.code).to.equal('WL_RESP');
            expect(err.prefix, v.name).to.equal(v.error.prefix);
            expect(err.message, v.name).to.contain(v.error.text);
            expect(err.command, v.name).to.equal('VEC');
          } else {
            expect(r.status, v.name).to.equal('fulfilled');
            expect((r as PromiseFulfilledResult<RespValue>).value, v.name).to.deep.equal(v.value);
          }
        });
        // All of them went out on one connection (the pipelining did not open more).
        expect(fake.connections.length).to.equal(1);
      });
    });
  }
});

describe('RedisClient failure rules (fake server)', () => {
  const fakes: FakeServer[] = [];
  const clients: RedisClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) {
      c.send(['QUIT']).catch(() => {});
      await Promise.race([c.close().catch(() => {}), delay(50)]);
    }
    await Promise.all(fakes.splice(0).map((f) => f.close()));
  });
  async function fakeAndClient(onCommand: (args: string[], conn: { index: number }) => string | undefined, commandTimeoutMs = 5000) {
    const fake = await FakeServer.start({ onCommand });
    fakes.push(fake);
    const client = await RedisClient.connect({ host: fake.host, port: fake.port, commandTimeoutMs });
    clients.push(client);
    return { fake, client };
  }

  it('a silent server: WL_TIMEOUT, the connection is destroyed, later commands use a new connection', async () => {
    // The first connection never answers; later ones do.
    const { fake, client } = await fakeAndClient((_, conn) => (conn.index === 1 ? undefined : '+PONG\r\n'));
    const start = performance.now();
    const timedOut = client.send(['PING'], { timeoutMs: 200 });
    const behind = client.send(['ECHO', 'x']); // pipelined behind it, with the default (5 s) timeout
    const err = await rejection(timedOut);
    expect(err).to.be.instanceOf(TimeoutError);
    expect(err.code).to.equal('WL_TIMEOUT');
    expect((err as TimeoutError).timeoutMs).to.equal(200);
    expect(performance.now() - start).to.be.below(2000);
    // The command behind it could have been answered with the timed-out command's reply: it fails instead.
    const behindErr = await rejection(behind);
    expect(behindErr).to.be.instanceOf(ConnectionError);
    expect(behindErr.cause).to.be.instanceOf(TimeoutError);
    expect(performance.now() - start).to.be.below(2000);
    await waitFor(() => fake.connections[0]!.closed, 2000, 'the timed-out connection to close');

    expect(await client.send(['PING'])).to.equal('PONG');
    expect(fake.connections.length).to.equal(2);
    expect(fake.connections[1]!.commands).to.deep.equal([['PING']]); // ours: only a first connect asks a PING of its own
  });

  it('garbage bytes: WL_PROTOCOL, the connection is closed, later commands use a new connection', async () => {
    const { fake, client } = await fakeAndClient((_, conn) => (conn.index === 1 ? 'hello, this is not RESP\r\n' : '+PONG\r\n'));
    const first = client.send(['PING']);
    const second = client.send(['PING']);
    const err = await rejection(first);
    expect(err).to.be.instanceOf(ProtocolError);
    expect(err.code).to.equal('WL_PROTOCOL');
    expect((await rejection(second)).code).to.equal('WL_PROTOCOL');
    await waitFor(() => fake.connections[0]!.closed, 2000, 'the connection to close');
    expect(await client.send(['PING'])).to.equal('PONG');
    expect(fake.connections.length).to.equal(2);
  });

  it('a reply nobody asked for closes the connection', async () => {
    const rec = record(['wirelock:resp:close']);
    try {
      const { fake, client } = await fakeAndClient((_, conn) => (conn.index === 1 ? '+OK\r\n+SURPRISE\r\n' : '+PONG\r\n'));
      expect(await client.send(['PING'])).to.equal('OK');
      await waitFor(() => fake.connections[0]!.closed, 2000, 'the connection to close');
      const closed = rec.events.find((e) => e.payload.error instanceof ProtocolError);
      expect(closed, 'a close event with a ProtocolError').to.not.equal(undefined);
      expect(await client.send(['PING'])).to.equal('PONG');
    } finally {
      rec.stop();
    }
  });

  it('abort before the write: the command never reaches the server', async () => {
    const { fake, client } = await fakeAndClient(() => '+OK\r\n');
    const ac = new AbortController();
    const reason = new Error('changed my mind');
    const aborted = client.send(['SET', 'never', 'written'], { signal: ac.signal });
    ac.abort(reason);
    expect(await rejection(aborted)).to.equal(reason);
    // An already-aborted signal rejects at once, with its reason.
    expect(await rejection(client.send(['SET', 'never', 'either'], { signal: ac.signal }))).to.equal(reason);
    expect(await client.send(['PING'])).to.equal('OK');
    expect(fake.commands).to.deep.equal([['PING'], ['PING']]); // the handshake's, then ours
  });

  it('a server that accepts and never answers: connect() rejects with WL_TIMEOUT within connectTimeoutMs', async () => {
    const fake = await FakeServer.start({ silentPing: true });
    fakes.push(fake);
    const start = performance.now();
    const err = await rejection(RedisClient.connect({ host: fake.host, port: fake.port, connectTimeoutMs: 300 }));
    expect(err).to.be.instanceOf(TimeoutError);
    expect(performance.now() - start).to.be.within(250, 2000);
    expect(fake.commands).to.deep.equal([['PING']]);
    await waitFor(() => fake.connections[0]!.closed, 2000, 'the connection to close');
  });

  it('a server that answers the handshake PING with an error other than NOAUTH is connected to (LOADING, BUSY, …)', async () => {
    const fake = await FakeServer.start({
      silentPing: true,
      onCommand: (args) => (args[0] === 'PING' ? '-LOADING Redis is loading the dataset in memory\r\n' : '+OK\r\n'),
    });
    fakes.push(fake);
    const client = await RedisClient.connect({ host: fake.host, port: fake.port });
    clients.push(client);
    expect(await client.send(['SET', 'k', 'v'])).to.equal('OK');
  });

  it('connection refused: connect() rejects with WL_CONNECTION', async () => {
    const port = await freePort();
    const err = await rejection(RedisClient.connect({ host: '127.0.0.1', port, connectTimeoutMs: 2000 }));
    expect(err).to.be.instanceOf(ConnectionError);
    expect(err.code).to.equal('WL_CONNECTION');
    expect(err.message).to.contain(`127.0.0.1:${port}`);
    expect((err.cause as NodeJS.ErrnoException).code).to.equal('ECONNREFUSED');
  });

  it('rejects a bad per-command timeout at once instead of waiting without a deadline', async () => {
    const { fake, client } = await fakeAndClient(() => undefined);
    for (const timeoutMs of [NaN, -1, 0, '100' as unknown as number]) {
      let timer: NodeJS.Timeout | undefined;
      const hang = new Promise((resolve) => (timer = setTimeout(resolve, 1000, 'still pending')));
      const outcome = await Promise.race([rejection(client.send(['PING'], { timeoutMs })), hang]);
      clearTimeout(timer);
      expect(outcome, String(timeoutMs)).to.be.instanceOf(RangeError);
    }
    expect(fake.commands).to.deep.equal([['PING']]); // the connect handshake's, and nothing of ours
  });

  it('rejects bad connect options', async () => {
    expect(await rejection(RedisClient.connect('http://127.0.0.1:1'))).to.be.instanceOf(TypeError);
    expect(await rejection(RedisClient.connect('redis://127.0.0.1:1/notanumber'))).to.be.instanceOf(TypeError);
    expect(await rejection(RedisClient.connect({ port: 0 }))).to.be.instanceOf(RangeError);
    expect(await rejection(RedisClient.connect({ port: 1, commandTimeoutMs: -1 }))).to.be.instanceOf(RangeError);
    expect(await rejection(RedisClient.connect(42 as unknown as string))).to.be.instanceOf(TypeError);
  });
});

describe('RedisClient against redis-server', () => {
  let server: RedisServer;
  let client: RedisClient;
  let admin: RedisClient;
  before(async () => {
    server = await startRedis();
    client = await RedisClient.connect(server.url);
    admin = await RedisClient.connect(server.url);
  });
  after(async () => {
    await client?.close();
    await admin?.close();
    await server?.stop();
  });

  it('keeps replies in order under hundreds of concurrent commands on one client', async () => {
    const n = 500;
    await client.send(['DEL', 'pipe:ctr']);
    const incrs: Array<Promise<RespValue>> = [];
    const gets: Array<Promise<RespValue>> = [];
    for (let i = 0; i < n; i++) {
      incrs.push(client.send(['INCR', 'pipe:ctr']));
      void client.send(['SET', `pipe:${i}`, i]);
      gets.push(client.send(['GET', `pipe:${i}`]));
    }
    const [incrReplies, getReplies] = await Promise.all([Promise.all(incrs), Promise.all(gets)]);
    incrReplies.forEach((v, i) => expect(v).to.equal(i + 1));
    getReplies.forEach((v, i) => expect(v).to.equal(String(i)));

    // Concurrent sequences from many async tasks, interleaved across ticks.
    await client.send(['DEL', 'pipe:ctr2']);
    const seen: number[] = [];
    await Promise.all(
      Array.from({ length: 20 }, async (_, w) => {
        let last = 0;
        for (let i = 0; i < 25; i++) {
          const v = (await client.send(['INCR', 'pipe:ctr2'])) as number;
          expect(v).to.be.above(last);
          last = v;
          seen.push(v);
          expect(await client.send(['ECHO', `w${w}:${i}`])).to.equal(`w${w}:${i}`);
        }
      }),
    );
    expect(seen.sort((a, b) => a - b)).to.deep.equal(Array.from({ length: 500 }, (_, i) => i + 1));
  });

  it('abort before the write: the command is not applied', async () => {
    const ac = new AbortController();
    const p = client.send(['SET', 'abort:before', 'x'], { signal: ac.signal });
    ac.abort(new Error('stop'));
    expect((await rejection(p)).message).to.equal('stop');
    expect(await client.send(['GET', 'abort:before'])).to.equal(null);
  });

  it('abort after the write only stops the wait; later replies stay aligned', async () => {
    const id = await client.send(['CLIENT', 'ID']);
    const ac = new AbortController();
    const reason = new Error('no longer interested');
    const blocked = client.send(['BLPOP', 'abort:list', '5'], { signal: ac.signal });
    await waitFor(async () => String(await admin.send(['CLIENT', 'LIST'])).includes('cmd=blpop'), 2000, 'BLPOP to block');
    const start = performance.now();
    ac.abort(reason);
    expect(await rejection(blocked)).to.equal(reason);
    expect(performance.now() - start).to.be.below(1000);
    // The server still runs the BLPOP: it takes this element, and its (discarded) reply comes before ECHO's.
    await admin.send(['RPUSH', 'abort:list', 'taken-by-the-abandoned-blpop']);
    expect(await client.send(['ECHO', 'after'])).to.equal('after');
    expect(await client.send(['LLEN', 'abort:list'])).to.equal(0);
    expect(await client.send(['CLIENT', 'ID'])).to.equal(id); // same connection throughout
  });

  it('socket closed by the server: pending commands reject, are not replayed, and the client reconnects', async () => {
    const id = await client.send(['CLIENT', 'ID']);
    const blocked = client.send(['BLPOP', 'kill:list', '5']);
    await waitFor(async () => String(await admin.send(['CLIENT', 'LIST'])).includes('cmd=blpop'), 2000, 'BLPOP to block');
    await admin.send(['CLIENT', 'KILL', 'ID', String(id)]);
    const err = await rejection(blocked);
    expect(err).to.be.instanceOf(ConnectionError);
    expect(err.code).to.equal('WL_CONNECTION');
    const newId = await client.send(['CLIENT', 'ID']);
    expect(newId).to.not.equal(id);
    // Had the BLPOP been replayed on the new connection, it would take this element.
    await admin.send(['RPUSH', 'kill:list', 'stays']);
    await delay(100);
    expect(await admin.send(['LLEN', 'kill:list'])).to.equal(1);
  });

  it('selects the db from the URL, on every (re)connect', async () => {
    const c3 = await RedisClient.connect(`${server.url}/3`);
    try {
      await c3.send(['SET', 'db:key', 'three']);
      expect(await client.send(['GET', 'db:key'])).to.equal(null);
      expect(String(await c3.send(['CLIENT', 'INFO']))).to.match(/ db=3 /);
      const id = await c3.send(['CLIENT', 'ID']);
      await admin.send(['CLIENT', 'KILL', 'ID', String(id)]);
      await waitFor(async () => (await c3.send(['CLIENT', 'ID']).catch(() => id)) !== id, 3000, 'the reconnect');
      expect(String(await c3.send(['CLIENT', 'INFO']))).to.match(/ db=3 /);
      expect(await c3.send(['GET', 'db:key'])).to.equal('three');
    } finally {
      await c3.close();
    }
  });

  it('returns Buffers when asked to', async () => {
    const cb = await RedisClient.connect({ host: server.host, port: server.port, returnBuffers: true });
    try {
      const bin = Buffer.from([0, 255, 13, 10, 128]);
      await cb.send(['SET', 'bin:key', bin]);
      const got = await cb.send(['GET', 'bin:key']);
      expect(Buffer.isBuffer(got) && got.equals(bin)).to.equal(true);
    } finally {
      await cb.close();
    }
  });

  it('evalScript keeps the order of what is sent behind a script\'s first run, on each new connection', async () => {
    const key = `order-${Math.random()}`;
    const set = new Script(`redis.call('SET', KEYS[1], ARGV[1]) return 1 -- ${Math.random()}`, 1);
    await client.send(['SCRIPT', 'LOAD', 'return 0']); // the connection is up
    // Not awaited: the GET is written right behind the script. Had the script gone by SHA first, the
    // server's NOSCRIPT would have let the GET run before the script's second sending.
    const ran = client.evalScript(set, [key], ['1']);
    const read = client.send(['GET', key]);
    expect(await ran).to.equal(1);
    expect(String(await read)).to.equal('1');
    // A new connection (the old one killed) does not assume the server still has it: in full again.
    const rec = record(['wirelock:resp:command', 'wirelock:resp:connect']);
    try {
      await admin.send(['CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes']);
      await waitFor(() => rec.events.some((e) => e.channel === 'wirelock:resp:connect'), 3000, 'the reconnect');
      const again = client.evalScript(set, [key], ['2']);
      const reread = client.send(['GET', key]);
      expect(await again).to.equal(1);
      expect(String(await reread)).to.equal('2');
      const names = rec.events.filter((e) => e.channel === 'wirelock:resp:command').map((e) => String(e.payload.args[0])).filter((n) => n === 'EVAL' || n === 'EVALSHA');
      expect(names).to.deep.equal(['EVAL']);
    } finally {
      rec.stop();
    }
  });

  it('evalScript: EVAL on a connection\'s first run, EVALSHA after, EVAL once after SCRIPT FLUSH, error replies are not retried', async () => {
    const script = new Script(`return 'echo:' .. ARGV[1] .. ':${Math.random()}'`, 0);
    const rec = record(['wirelock:resp:command']);
    const sent = (): string[] =>
      rec.events.map((e) => String(e.payload.args[0])).filter((name) => name === 'EVAL' || name === 'EVALSHA');
    try {
      expect(String(await client.evalScript(script, [], ['a']))).to.match(/^echo:a:/);
      expect(sent()).to.deep.equal(['EVAL']);
      await client.send(['SCRIPT', 'FLUSH']);
      rec.events.length = 0;
      expect(String(await client.evalScript(script, [], ['b']))).to.match(/^echo:b:/);
      expect(sent()).to.deep.equal(['EVALSHA', 'EVAL']);
      rec.events.length = 0;
      expect(String(await client.evalScript(script, [], ['c']))).to.match(/^echo:c:/);
      expect(sent()).to.deep.equal(['EVALSHA']);
      expect(await client.send(['SCRIPT', 'EXISTS', script.sha])).to.deep.equal([1]);

      const failing = new Script(`return redis.call('NOSUCHCOMMAND${Math.random()}')`, 0);
      await client.evalScript(failing, [], []).catch(() => {}); // EVAL caches it, though it fails
      rec.events.length = 0;
      const err = await rejection(client.evalScript(failing, [], []));
      expect(err).to.be.instanceOf(RespError);
      expect(sent()).to.deep.equal(['EVALSHA']);
    } finally {
      rec.stop();
    }
    expect(await rejection(client.evalScript(new Script('return 1', 1), [], []))).to.be.instanceOf(TypeError);
  });

  it('an error nested in an array reply (EXEC, a script\'s table) is a RespError element; the rest of the array is kept', async () => {
    await client.send(['SET', 'nested:str', 'x']);
    const queued = [client.send(['MULTI']), client.send(['INCR', 'nested:str']), client.send(['SET', 'nested:ok', 'y']), client.send(['EXEC'])];
    const [multi, q1, q2, exec] = await Promise.all(queued);
    expect([multi, q1, q2].map(String)).to.deep.equal(['OK', 'QUEUED', 'QUEUED']);
    expect(exec).to.be.an('array').with.length(2);
    const [failed, ok] = exec as unknown[];
    expect(failed).to.be.instanceOf(RespError);
    expect((failed as RespError).prefix).to.equal('ERR');
    expect((failed as RespError).command).to.equal('EXEC');
    expect(String(ok)).to.equal('OK');
    expect(String(await client.send(['GET', 'nested:ok']))).to.equal('y');

    const table = await client.send(['EVAL', "return {1, {redis.error_reply('WRONGTHING deep')}, 'z'}", '0']);
    expect(table).to.be.an('array').with.length(3);
    const inner = (table as unknown[])[1] as unknown[];
    expect(inner[0]).to.be.instanceOf(RespError);
    expect((inner[0] as RespError).prefix).to.equal('WRONGTHING');
  });

  it('pub/sub: a listener that throws gets its error rethrown on its own; the connection and other listeners carry on', async () => {
    const caught: unknown[] = [];
    const got: unknown[] = [];
    // Mocha turns uncaught exceptions into failures: stand in for it during this test only.
    const saved = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', (err) => caught.push(err));
    try {
      const unThrow = await client.subscribe('throws', () => {
        throw new Error('listener bug');
      });
      const unGood = await client.subscribe('throws', (m) => got.push(m));
      await admin.send(['PUBLISH', 'throws', 'one']);
      await waitFor(() => got.length === 1 && caught.length === 1, 2000, 'delivery and the rethrow');
      expect((caught[0] as Error).message).to.equal('listener bug');
      await admin.send(['PUBLISH', 'throws', 'two']); // the subscriber connection is still up
      await waitFor(() => got.length === 2, 2000, 'a second delivery');
      unThrow();
      unGood();
    } finally {
      process.removeAllListeners('uncaughtException');
      for (const l of saved) process.on('uncaughtException', l);
    }
  });

  it('pub/sub: reference-counted channels and message delivery', async () => {
    const got1: unknown[] = [];
    const got2: unknown[] = [];
    const gotOther: unknown[] = [];
    const numsub = async (ch: string): Promise<unknown> => ((await admin.send(['PUBSUB', 'NUMSUB', ch])) as unknown[])[1];
    const un1 = await client.subscribe('news', (m) => got1.push(m));
    const un2 = await client.subscribe('news', (m) => got2.push(m));
    const unOther = await client.subscribe('other', (m) => gotOther.push(m));
    expect(await numsub('news')).to.equal(1); // one subscription on the server for two listeners
    expect(await admin.send(['PUBLISH', 'news', 'hello'])).to.equal(1);
    await waitFor(() => got1.length === 1 && got2.length === 1, 2000, 'delivery');
    expect(got1).to.deep.equal(['hello']);
    expect(gotOther).to.deep.equal([]);

    un1();
    un1(); // idempotent: must not drop the other listener's reference
    expect(await numsub('news')).to.equal(1);
    await admin.send(['PUBLISH', 'news', 'second']);
    await waitFor(() => got2.length === 2, 2000, 'delivery to the remaining listener');
    expect(got1).to.deep.equal(['hello']);

    un2();
    await waitFor(async () => (await numsub('news')) === 0, 2000, 'UNSUBSCRIBE');
    expect(await numsub('other')).to.equal(1);
    unOther();
    await waitFor(async () => (await numsub('other')) === 0, 2000, 'UNSUBSCRIBE');

    // An already-aborted signal: rejects with its reason, subscribes nothing.
    const ac = new AbortController();
    ac.abort(new Error('nope'));
    expect((await rejection(client.subscribe('aborted', () => {}, ac.signal))).message).to.equal('nope');
    await delay(50);
    expect(await numsub('aborted')).to.equal(0);
  });

  it('pub/sub: resubscribes after the subscriber connection is killed, and tells listeners with null', async () => {
    const got: unknown[] = [];
    const un = await client.subscribe('resub', (m) => got.push(m));
    await admin.send(['CLIENT', 'KILL', 'TYPE', 'pubsub']);
    await waitFor(() => got.includes(null), 5000, 'the null wake-up after the reconnect');
    await waitFor(async () => (await admin.send(['PUBLISH', 'resub', 'back'])) === 1, 3000, 'the resubscription');
    await waitFor(() => got.includes('back'), 2000, 'delivery after the resubscription');
    un();
  });

  it('a command issued while disconnected waits for the reconnect, up to its own timeout', async () => {
    const own = await startRedis();
    const c = await RedisClient.connect(own.url);
    try {
      await own.kill();
      await waitFor(() => !c.connected, 2000, 'the client to see the loss');
      const start = performance.now();
      const err = await rejection(c.send(['PING'], { timeoutMs: 300 }));
      const took = performance.now() - start;
      expect(err).to.be.instanceOf(TimeoutError);
      expect(took).to.be.at.least(250);
      expect(took).to.be.below(2000);
      const waiting = c.send(['PING'], { timeoutMs: 10_000 });
      await own.restart();
      expect(await waiting).to.equal('PONG');
    } finally {
      await c.close();
      await own.stop();
    }
  });

  it('close() while a command waits for the reconnect rejects it with ClosedError at once', async () => {
    const own = await startRedis();
    const c = await RedisClient.connect(own.url);
    try {
      await own.kill();
      await waitFor(() => !c.connected, 2000, 'the client to see the loss');
      const waiting = rejection(c.send(['PING'], { timeoutMs: 10_000 }));
      const start = performance.now();
      await c.close();
      expect(await waiting).to.be.instanceOf(ClosedError);
      expect(performance.now() - start).to.be.below(1000);
    } finally {
      await c.close();
      await own.stop();
    }
  });

  it('diagnostics: connect, command, reply, error and close events', async () => {
    const rec = record(['wirelock:resp:connect', 'wirelock:resp:command', 'wirelock:resp:reply', 'wirelock:resp:error', 'wirelock:resp:close']);
    let c: RedisClient | undefined;
    try {
      c = await RedisClient.connect(`${server.url}/2`);
      expect(await c.send(['PING'])).to.equal('PONG');
      await rejection(c.send(['NOSUCHCOMMAND']));
      await c.close();
      const connect = rec.events.find((e) => e.channel === 'wirelock:resp:connect')!;
      expect(connect.payload).to.include({ address: server.host + ':' + server.port, db: 2, reconnected: false, tls: false });
      const conn = connect.payload.connection;
      const mine = rec.events.filter((e) => e.payload.connection === conn);
      const commands = mine.filter((e) => e.channel === 'wirelock:resp:command').map((e) => e.payload.args[0]);
      expect(commands).to.deep.equal(['SELECT', 'PING', 'NOSUCHCOMMAND', 'QUIT']);
      const reply = mine.find((e) => e.channel === 'wirelock:resp:reply' && e.payload.command === 'PING')!;
      expect(reply.payload.reply).to.equal('PONG');
      expect(reply.payload.durationMs).to.be.a('number').at.least(0);
      const error = mine.find((e) => e.channel === 'wirelock:resp:error')!;
      expect(error.payload.command).to.equal('NOSUCHCOMMAND');
      expect(error.payload.error).to.be.instanceOf(RespError);
      expect(mine.some((e) => e.channel === 'wirelock:resp:close')).to.equal(true);
    } finally {
      rec.stop();
      await c?.close();
    }
  });

  it('timeouts beyond the 32-bit timer range (about 24.8 days) are not cut to 1 ms', async () => {
    expect(await client.send(['BLPOP', 'long:list', '0.2'], { timeoutMs: 1e10 })).to.equal(null);
    const c = await RedisClient.connect({ host: server.host, port: server.port, commandTimeoutMs: 1e10, connectTimeoutMs: 1e10 });
    try {
      expect(await c.send(['BLPOP', 'long:list', '0.2'])).to.equal(null);
    } finally {
      await c.close();
    }
  });

  it('close(): later commands reject with ClosedError', async () => {
    const c = await RedisClient.connect(server.url);
    const inFlight = c.send(['ECHO', 'before close']);
    await c.close();
    expect(await inFlight).to.equal('before close');
    const err = await rejection(c.send(['PING']));
    expect(err).to.be.instanceOf(ClosedError);
    expect(await rejection(c.subscribe('x', () => {}))).to.be.instanceOf(ClosedError);
    await c.close(); // idempotent
  });
});
