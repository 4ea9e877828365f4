/**
 * wirelock's own gRPC-over-HTTP/2 transport (`transport: 'h2'`) against real etcd members, for what
 * the shared etcd suite does not show by itself (it runs on both transports; see .ci/run):
 * - every frame on wirelock:etcd:h2:frame both ways: the preface's SETTINGS, the server's SETTINGS
 *   and its PINGs answered, HEADERS with HPACK from etcd's dynamic table and Huffman strings;
 * - a PING's ack rides behind our next request (etcd then pings on every second call only), and
 *   leaves within its bound when nothing else is written (a scripted peer);
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
import { CLIENT_PREFACE, Flags, FrameType, dataFrame, headersFrames, pingFrame, settingsFrame } from '../src/etcdrpc/h2/frames.js';
import { encodeGrpcMessage } from '../src/etcdrpc/h2/grpc-framing.js';
import { HpackEncoder } from '../src/etcdrpc/h2/hpack.js';

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

  it("answers etcd's pings behind its next request: grpc-go then pings on every second call, not on every call", async () => {
    const c = await EtcdClient.connect({ endpoints: [etcd.clientUrl], transport: 'h2' });
    const locker = new EtcdLocker(c);
    try {
      await (await locker.acquire('h2-pings')).release(); // the session's lease, and the first calls
      const { frames } = await framesDuring(async () => {
        for (let i = 0; i < 50; i++) await (await locker.acquire('h2-pings')).release();
      });
      const calls = frames.filter((f) => f.direction === 'out' && f.type === 'HEADERS').length;
      const pings = frames.filter((f) => f.direction === 'in' && f.type === 'PING' && f.flags === 0).length;
      expect(calls).to.equal(100); // one Txn to acquire, one to release
      // grpc-go's server pings on a request's DATA unless its last ping is unanswered. Answered at
      // once, the ack would let it ping on all 100 calls; here an ack arrives with the next request,
      // after its DATA. (A cycle slower than the ack's 5 ms bound lets one more ping through.)
      expect(pings).to.be.within(40, 70);
    } finally {
      await locker.close();
      await c.close();
    }
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

  it("a PING's ack rides at the end of our next write, and leaves within its bound when we write nothing", async () => {
    // A scripted peer: its SETTINGS; then, as grpc-go does, a PING as soon as a request's DATA is in
    // (on streams 1, 5, 9, 13, 17), and the answer in a write of its own just after.
    const seen: Array<{ type: number; flags: number; streamId: number; opaque?: string; at: number }> = [];
    const sockets: net.Socket[] = [];
    const encoder = new HpackEncoder();
    const answer = (id: number): Buffer =>
      Buffer.concat([
        ...headersFrames(id, encoder.encode([[':status', '200'], ['content-type', 'application/grpc']]), { endStream: false }),
        dataFrame(id, encodeGrpcMessage(Buffer.from('ok')), false),
        ...headersFrames(id, encoder.encode([['grpc-status', '0']]), { endStream: true }),
      ]);
    const opaque = (id: number): Buffer => Buffer.from(`ping-${String(id).padStart(3, '0')}`);
    let lonePingAt = 0;
    const peer = net.createServer((s) => {
      sockets.push(s);
      s.setNoDelay(true); // as etcd's: Nagle would hold the answer back until the ping's TCP ACK
      let buf = Buffer.alloc(0);
      let prefaced = false;
      s.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (!prefaced) {
          if (buf.length < CLIENT_PREFACE.length) return;
          buf = buf.subarray(CLIENT_PREFACE.length);
          prefaced = true;
          s.write(settingsFrame([]));
        }
        while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
          const length = buf.readUIntBE(0, 3);
          const [type, flags, streamId] = [buf[3]!, buf[4]!, buf.readUInt32BE(5) & 0x7fffffff];
          seen.push({ type, flags, streamId, opaque: type === FrameType.PING ? buf.subarray(9, 17).toString() : undefined, at: performance.now() });
          buf = buf.subarray(9 + length);
          if (type !== FrameType.DATA || !(flags & Flags.END_STREAM)) continue;
          if (streamId % 4 === 1) {
            s.write(pingFrame(opaque(streamId), false));
            setImmediate(() => s.write(answer(streamId)));
          } else s.write(answer(streamId));
          if (streamId === 19) {
            // The last call: a PING now has no request of ours to ride on.
            lonePingAt = performance.now();
            s.write(pingFrame(Buffer.from('lone-pg!'), false));
          }
        }
      });
    });
    await new Promise<void>((resolve) => peer.listen(0, '127.0.0.1', resolve));
    const channel = new H2Channel({ url: `http://127.0.0.1:${(peer.address() as net.AddressInfo).port}` });
    try {
      // Ten calls in a row, each made in the callbacks of the answer before it.
      for (let i = 0; i < 10; i++) {
        const res = await channel.unary('/etcdserverpb.KV/Range', Buffer.from('q'), [], performance.now() + 2000);
        expect(res.toString()).to.equal('ok');
      }
      const deadline = performance.now() + 2000;
      while (!seen.some((f) => f.opaque === 'lone-pg!') && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      const where = (pred: (f: (typeof seen)[number]) => boolean): number => seen.findIndex(pred);
      // Each ping came ahead of its call's answer, and was answered right after the DATA of the
      // next request, in its write. Answered at once, every ack would come before it. (Five
      // exchanges, four needed: a machine that stalls this process for 5 ms between the ping and
      // the answer sends that ack alone, within its bound, as it should.)
      const riding = [1, 5, 9, 13, 17].filter((id) => {
        const ack = where((f) => f.type === FrameType.PING && f.flags === Flags.ACK && f.opaque === opaque(id).toString());
        return ack !== -1 && ack === where((f) => f.type === FrameType.DATA && f.streamId === id + 2) + 1;
      });
      expect(riding.length).to.be.at.least(4);
      // With nothing of ours to ride on, the lone ping was answered anyway, within its 5 ms bound
      // (a wide margin here for a busy machine).
      const lone = seen.find((f) => f.type === FrameType.PING && f.flags === Flags.ACK && f.opaque === 'lone-pg!');
      expect(lone, 'the lone PING was answered').to.not.equal(undefined);
      expect(lone!.at - lonePingAt).to.be.below(500);
    } finally {
      channel.close();
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => peer.close(resolve));
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
