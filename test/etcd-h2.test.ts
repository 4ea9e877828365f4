/**
 * wirelock's own gRPC-over-HTTP/2 transport (`transport: 'h2'`) against real etcd members, for what
 * the shared etcd suite does not show by itself (it runs on both transports; see .ci/run):
 * - every frame on wirelock:etcd:h2:frame both ways: the preface's SETTINGS, the server's SETTINGS
 *   and its PINGs answered, HEADERS with HPACK from etcd's dynamic table and Huffman strings;
 * - values larger than every flow-control window, both ways (a 5 MiB Put and its Range);
 * - a member that is stopped: its connection ends, the watch carries on on another member; GOAWAY
 *   from etcd ("too_many_pings") ends the streams with its reason, and the next call reconnects;
 * - a server that reads nothing (a silent TCP peer): no DATA beyond the initial window is sent,
 *   and the call rejects at its deadline;
 * - a server that does not agree to h2 over TLS (ALPN) or is not HTTP/2 at all: a clear error.
 */
import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import net from 'node:net';
import { ConnectionError, EtcdClient, EtcdLocker, TimeoutError } from '../src/index.js';
import type { EtcdH2FramePayload } from '../src/diagnostics.js';
import { startEtcd, startEtcdCluster, type EtcdCluster, type EtcdServer } from '../src/testing/servers.js';
import { H2Channel, RpcFailure } from '../src/etcdrpc/h2/grpc.js';

/** The h2 frames published while `fn` runs. */
async function framesDuring<T>(fn: () => Promise<T>): Promise<{ result: T; frames: EtcdH2FramePayload[] }> {
  const frames: EtcdH2FramePayload[] = [];
  const listener = (m: unknown): void => void frames.push(m as EtcdH2FramePayload);
  dc.subscribe('wirelock:etcd:h2:frame', listener);
  try {
    return { result: await fn(), frames };
  } finally {
    dc.unsubscribe('wirelock:etcd:h2:frame', listener);
  }
}

describe("etcd over wirelock's own HTTP/2 transport", function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  before(async () => {
    // Requests up to 12 MiB (etcd's default limit is 1.5 MiB).
    etcd = await startEtcd({ args: ['--max-request-bytes', String(12 << 20)] });
  });
  after(async () => {
    await etcd?.stop();
  });

  it('publishes every frame both ways; answers the server\'s SETTINGS and PINGs; locks work', async () => {
    const { frames } = await framesDuring(async () => {
      const c = await EtcdClient.connect({ endpoints: [etcd.clientUrl], transport: 'h2' });
      const locker = new EtcdLocker(c);
      for (let i = 0; i < 5; i++) await (await locker.acquire('h2-frames')).release();
      await locker.close();
      await c.close();
    });
    const kinds = (direction: 'in' | 'out'): Set<string> => new Set(frames.filter((f) => f.direction === direction).map((f) => f.type));
    expect([...kinds('out')]).to.include.members(['SETTINGS', 'WINDOW_UPDATE', 'HEADERS', 'DATA', 'GOAWAY']);
    expect([...kinds('in')]).to.include.members(['SETTINGS', 'HEADERS', 'DATA']);
    // Our SETTINGS first, and the server's SETTINGS acknowledged (flags ACK).
    expect(frames[0]).to.include({ direction: 'out', type: 'SETTINGS', flags: 0, streamId: 0 });
    expect(frames.some((f) => f.direction === 'out' && f.type === 'SETTINGS' && f.flags === 1)).to.equal(true);
    // Every PING the server sent was answered with an ACK.
    const pings = frames.filter((f) => f.direction === 'in' && f.type === 'PING' && f.flags === 0).length;
    const acks = frames.filter((f) => f.direction === 'out' && f.type === 'PING' && f.flags === 1).length;
    expect(acks).to.equal(pings);
    // Client streams are odd and climb.
    const ids = frames.filter((f) => f.direction === 'out' && f.type === 'HEADERS').map((f) => f.streamId);
    expect(ids.every((id, i) => id % 2 === 1 && (i === 0 || id > ids[i - 1]!))).to.equal(true);
    // HPACK: from the second request on, the repeated headers are table indexes: HEADERS shrink.
    const sizes = frames.filter((f) => f.direction === 'out' && f.type === 'HEADERS').map((f) => f.length);
    expect(Math.min(...sizes.slice(1))).to.be.below(sizes[0]! / 2);
  });

  it('moves values larger than every flow-control window both ways (5 MiB Put, then Range)', async () => {
    const c = await EtcdClient.connect({ endpoints: [etcd.clientUrl], transport: 'h2', callTimeoutMs: 20_000 });
    try {
      const value = Buffer.alloc(5 << 20);
      for (let i = 0; i < value.length; i += 4) value.writeUInt32BE(i, i);
      const { frames } = await framesDuring(async () => {
        await c.kv.put({ key: Buffer.from('h2-big'), value });
        const got = await c.kv.range({ key: Buffer.from('h2-big') });
        expect(Buffer.compare(got.kvs[0]!.value, value)).to.equal(0);
      });
      const out = frames.filter((f) => f.direction === 'out' && f.type === 'DATA');
      const inData = frames.filter((f) => f.direction === 'in' && f.type === 'DATA');
      // The request went out in many frames, paced by the server's WINDOW_UPDATEs.
      expect(out.reduce((n, f) => n + f.length, 0)).to.be.above(5 << 20);
      expect(frames.some((f) => f.direction === 'in' && f.type === 'WINDOW_UPDATE')).to.equal(true);
      // The answer came in many frames, and we gave the window back as they came.
      expect(inData.reduce((n, f) => n + f.length, 0)).to.be.above(5 << 20);
      expect(frames.filter((f) => f.direction === 'out' && f.type === 'WINDOW_UPDATE' && f.streamId !== 0).length).to.be.at.least(1);
    } finally {
      await c.close();
    }
  });
});

describe('h2 transport: a member that goes away, a peer that reads nothing, a peer that is not HTTP/2', function () {
  this.timeout(90_000);
  let cluster: EtcdCluster;
  before(async () => {
    cluster = await startEtcdCluster(3);
  });
  after(async () => {
    await cluster?.stop();
  });

  it('a stopped member: its watch moves to another member and sees the next change', async () => {
    const c = await EtcdClient.connect({ endpoints: cluster.endpoints, transport: 'h2' });
    try {
      const seen: string[] = [];
      const { frames } = await framesDuring(async () => {
        const first = cluster.members[0]!;
        let created!: () => void;
        const ready = new Promise<void>((r) => (created = r));
        const events = new Promise<void>((resolve, reject) => {
          c.watches.watch('h2-goaway', {}, {
            onCreated: () => created(),
            onEvents: (evs) => {
              for (const e of evs) seen.push(e.kv!.value.toString());
              if (seen.includes('after')) resolve();
            },
            onError: reject,
          });
        });
        await ready;
        await c.kv.put({ key: Buffer.from('h2-goaway'), value: Buffer.from('before') });
        await first.stop(); // graceful: etcd's gRPC server sends GOAWAY to its clients
        await c.kv.put({ key: Buffer.from('h2-goaway'), value: Buffer.from('after') });
        await events;
        await first.restart();
      });
      expect(seen).to.include.members(['before', 'after']);
      // etcd 3.4 closes a stopping member's connections, mostly without a GOAWAY first: what the
      // client must handle is the lost connection, and the watch moving on.
      const fromFirst = frames.filter((f) => f.direction === 'in' && f.endpoint === cluster.members[0]!.clientUrl).map((f) => f.type);
      expect(fromFirst).to.include('DATA');
      expect(frames.some((f) => f.direction === 'out' && f.type === 'HEADERS' && f.endpoint !== cluster.members[0]!.clientUrl)).to.equal(true);
    } finally {
      await c.close();
    }
  });

  it('GOAWAY from etcd (ENHANCE_YOUR_CALM "too_many_pings" for pings too often): the stream ends with it, the next call gets a new connection', async () => {
    const url = cluster.members[1]!.clientUrl;
    const channel = new H2Channel({ url, keepaliveMs: 100 }); // etcd allows one every 5 s
    try {
      const { result: failure, frames } = await framesDuring(
        () =>
          new Promise<RpcFailure>((resolve) => {
            const watch = channel.stream<Buffer, Buffer>('/etcdserverpb.Watch/Watch', [['hasleader', 'true']], (b) => b, (b) => b);
            watch.on('error', (f) => resolve(f as RpcFailure));
            watch.on('end', () => resolve(new RpcFailure(0, 'ended')));
          }),
      );
      const goaway = frames.find((f) => f.direction === 'in' && f.type === 'GOAWAY');
      expect(goaway, JSON.stringify(frames.slice(-10))).to.not.equal(undefined);
      expect(failure.code).to.equal(14); // UNAVAILABLE
      expect(failure.details).to.match(/GOAWAY ENHANCE_YOUR_CALM: too_many_pings/);
      expect(frames.filter((f) => f.direction === 'out' && f.type === 'PING' && f.flags === 0).length).to.be.at.least(2);
      // The channel made a new connection for the next call (a Status call: empty request).
      const again = await framesDuring(() => channel.unary('/etcdserverpb.Maintenance/Status', Buffer.alloc(0), [], performance.now() + 3000));
      expect(again.result.length).to.be.above(0);
      expect(again.frames[0]).to.include({ direction: 'out', type: 'SETTINGS' });
    } finally {
      channel.close();
    }
  });

  it('a peer that accepts and reads nothing: DATA stops at the initial window, and the call rejects at its deadline', async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => {
      sockets.push(s);
      s.pause(); // never reads: the kernel buffers fill, as with a stuck server
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    try {
      // connect() asks for the status, and gets no answer.
      const started = performance.now();
      const err = await EtcdClient.connect({ endpoints: [url], transport: 'h2', connectTimeoutMs: 800 }).catch((e: Error) => e);
      expect(err).to.be.instanceOf(TimeoutError);
      expect(performance.now() - started).to.be.within(700, 2500);
      // A 1 MiB request to it: flow control holds it back (the server never raised the initial
      // 65,535-octet window), and the call still ends at its deadline.
      const channel = new H2Channel({ url });
      try {
        const big = await framesDuring(async () => {
          const started = performance.now();
          const err = await channel.unary('/etcdserverpb.KV/Put', Buffer.alloc(1 << 20), [], performance.now() + 500).catch((e: unknown) => e);
          return { err, tookMs: performance.now() - started };
        });
        expect(big.result.err).to.be.instanceOf(RpcFailure);
        expect((big.result.err as RpcFailure).code).to.equal(4); // DEADLINE_EXCEEDED
        expect(big.result.tookMs).to.be.within(450, 1500);
        const data = big.frames.filter((f) => f.direction === 'out' && f.type === 'DATA');
        expect(data.length).to.be.above(0);
        expect(data.reduce((n, f) => n + f.length, 0)).to.be.at.most(65_535);
        // It was reset when its deadline passed.
        expect(big.frames.some((f) => f.direction === 'out' && f.type === 'RST_STREAM')).to.equal(true);
      } finally {
        channel.close();
      }
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('a TLS peer that never finishes its handshake: the call ends at its own deadline, not at the connect timeout', async () => {
    const sockets: net.Socket[] = [];
    const stuck = net.createServer((s) => void sockets.push(s)); // reads the ClientHello, never answers
    await new Promise<void>((resolve) => stuck.listen(0, '127.0.0.1', resolve));
    const url = `https://127.0.0.1:${(stuck.address() as net.AddressInfo).port}`;
    try {
      const started = performance.now();
      const err = await EtcdClient.connect({ endpoints: [url], transport: 'h2', connectTimeoutMs: 700 }).catch((e: Error) => e);
      const took = performance.now() - started;
      expect(err, String(err)).to.be.instanceOf(TimeoutError);
      expect(took).to.be.within(650, 1500); // the TLS connect itself would wait 5 s
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => stuck.close(resolve));
    }
  });

  it('a peer that is not HTTP/2 (it answers HTTP/1.1): a ConnectionError that names the endpoint and says so', async () => {
    const http1 = net.createServer((s) => {
      s.once('data', () => s.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'));
    });
    await new Promise<void>((resolve) => http1.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(http1.address() as net.AddressInfo).port}`;
    try {
      const started = performance.now();
      const err = await EtcdClient.connect({ endpoints: [url], transport: 'h2', connectTimeoutMs: 3000 }).catch((e: Error) => e);
      // Retried (the member may come back as itself) until connect()'s deadline, then this.
      expect(err).to.be.instanceOf(ConnectionError);
      expect((err as Error).message).to.include(url).and.match(/answered "HTTP\/1\.1 400 Bad Request": it does not speak HTTP\/2/);
      expect(performance.now() - started).to.be.below(3500);
    } finally {
      await new Promise((resolve) => http1.close(resolve));
    }
  });
});
