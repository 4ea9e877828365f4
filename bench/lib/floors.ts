/**
 * The floors: what one uncontended lock cycle costs with no client library at all, so the bench can say
 * how far above the wire each client sits. Both write pre-encoded bytes to a bare net.Socket and read
 * only as much of the answer as they must; they do the server the same work a lock cycle does.
 *
 * - RESP: `SET key token NX PX 10000`, then a compare-and-delete `EVALSHA` (the raw ioredis row's
 *   two commands), one after the other, on one key. For Redlock, the same two sent to every node at
 *   once, each round done at the quorum.
 * - HTTP/2: the two gRPC unary `KV.Txn` calls of EtcdLocker's cycle, as it sends them (the put on a
 *   lease with the two newest keys of the range read back, then the delete guarded by the key's
 *   create revision), with a header block encoded once (literals without indexing, so it needs no
 *   HPACK state), answering the server's SETTINGS and PINGs, and counting a call done at its
 *   END_STREAM. Nothing of the answer is decoded.
 * - And one step up, for the etcd row's breakdown: the same two pre-encoded Txns through wirelock's
 *   own HTTP/2 channel (src/etcdrpc/h2), each answer decoded by protobufjs, with no client API and
 *   no lock logic above it.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { method } from '../../src/etcdrpc/codec.js';
import { HpackEncoder } from '../../src/etcdrpc/h2/hpack.js';
import { CLIENT_PREFACE, FrameType, dataFrame, frameHeader, pingFrame, settingsAck, settingsFrame, windowUpdateFrame } from '../../src/etcdrpc/h2/frames.js';
import { encodeGrpcMessage } from '../../src/etcdrpc/h2/grpc-framing.js';
import { encodeCommand } from '../../src/resp/encoder.js';
import { EtcdClient } from '../../src/etcdrpc/client.js';
import { H2Channel } from '../../src/etcdrpc/h2/grpc.js';
import type { MethodInfo } from '../../src/etcdrpc/codec.js';
import type { LeaseGrantRequest, LeaseRevokeRequest, PutRequest, TxnRequest, TxnResponse } from '../../src/etcdrpc/types.js';
import { CompareResult, CompareTarget, SortOrder, SortTarget, WatchFilter } from '../../src/etcdrpc/types.js';
import type { Library } from './adapters.js';

function connect(url: string): Promise<net.Socket> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(u.port), u.hostname, () => resolve(socket));
    socket.once('error', reject);
    socket.setNoDelay(true);
  });
}

/** The compare-and-delete script raw ioredis runs to release (bench/lib/adapters.ts), and the floor and commandCosts too. */
export const COMPARE_AND_DELETE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/** Cycles/s of `cycle` run back to back for `seconds`. */
async function cyclesPerSecond(seconds: number, cycle: () => Promise<void>): Promise<number> {
  const end = performance.now() + seconds * 1000;
  const start = performance.now();
  let n = 0;
  while (performance.now() < end) {
    await cycle();
    n++;
  }
  return n / ((performance.now() - start) / 1000);
}

/** The RESP floors' commands: SCRIPT LOAD of the compare-and-delete (a bulk-string answer: two line ends), then the cycle's SET NX PX and EVALSHA. */
function respFloorCommands(): { load: Buffer; set: Buffer; del: Buffer } {
  const sha = createHash('sha1').update(COMPARE_AND_DELETE).digest('hex');
  return {
    load: encodeCommand(['SCRIPT', 'LOAD', COMPARE_AND_DELETE]),
    set: encodeCommand(['SET', 'floor:{k}', 'tok', 'NX', 'PX', '10000']),
    del: encodeCommand(['EVALSHA', sha, '1', 'floor:{k}', 'tok']),
  };
}

/** Cycles/s of SET NX PX + EVALSHA on a bare socket (every reply is one line: count the line ends). */
async function respFloor(url: string, seconds: number): Promise<number> {
  const socket = await connect(url);
  let pending: (() => void) | undefined;
  let lines = 0;
  let want = 0;
  socket.on('data', (chunk: Buffer) => {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
    if (pending && lines >= want) pending();
  });
  const roundTrip = (bytes: Buffer, replies: number): Promise<void> =>
    new Promise((resolve) => {
      want = lines + replies;
      pending = resolve;
      socket.write(bytes);
    });
  const { load, set, del } = respFloorCommands();
  try {
    await roundTrip(load, 2);
    return await cyclesPerSecond(seconds, async () => {
      await roundTrip(set, 1);
      await roundTrip(del, 1);
    });
  } finally {
    socket.destroy();
  }
}

/**
 * Cycles/s of the same two commands as respFloor on bare sockets to every Redlock node at once, each
 * round done when a majority has answered (the quorum a Redlock round ends at). A node that answers
 * late answers before its next command's reply, so a reply is matched to its round by its place.
 */
async function redlockFloor(urls: string[], seconds: number): Promise<number> {
  const nodes = await Promise.all(
    urls.map(async (url) => {
      const node = { socket: await connect(url), sent: 0, lines: 0 };
      node.socket.on('data', (chunk: Buffer) => {
        for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) node.lines++;
        check?.();
      });
      return node;
    }),
  );
  const quorum = Math.floor(nodes.length / 2) + 1;
  let check: (() => void) | undefined;
  // Every node's reply to this round's command: the first `lines` past the count sent before it.
  const round = (bytes: Buffer, linesPerReply: number, needed = quorum): Promise<void> =>
    new Promise((resolve) => {
      const wants = nodes.map((node) => {
        node.sent += linesPerReply;
        node.socket.write(bytes);
        return node.sent;
      });
      check = () => {
        if (nodes.filter((node, i) => node.lines >= wants[i]!).length >= needed) {
          check = undefined;
          resolve();
        }
      };
      check();
    });
  try {
    const { load, set, del } = respFloorCommands();
    await round(load, 2, nodes.length); // every node must have the script
    return await cyclesPerSecond(seconds, async () => {
      await round(set, 1);
      await round(del, 1);
    });
  } finally {
    for (const node of nodes) node.socket.destroy();
  }
}

/**
 * EtcdLocker's two Txns on `lock` (src/locks/etcd-queue.ts: enqueue and deleteOwnKey), for a key on
 * `lease`. Encoded once: the delete's guard is "create revision > 0" where the locker's names the
 * revision it read, the same compare for the server.
 */
function lockerTxns(lock: string, lease: bigint): { txn: MethodInfo<TxnRequest, TxnResponse>; put: Buffer; del: Buffer } {
  const txn = method<TxnRequest, TxnResponse>('KV', 'Txn');
  const key = Buffer.from(`${lock}/${lease.toString(16)}`);
  const range = { key: Buffer.from(`${lock}/`), range_end: Buffer.from(`${lock}0`) };
  const put = txn.request.encode({
    compare: [{ key, target: CompareTarget.CREATE, result: CompareResult.EQUAL, create_revision: 0n }],
    success: [
      { request_put: { key, value: Buffer.alloc(0), lease } },
      { request_range: { ...range, sort_order: SortOrder.DESCEND, sort_target: SortTarget.CREATE, limit: 2n } },
    ],
    failure: [{ request_range: { key } }, { request_range: { ...range, sort_order: SortOrder.ASCEND, sort_target: SortTarget.CREATE, limit: 1n } }],
  } as TxnRequest);
  const del = txn.request.encode({
    compare: [{ key, target: CompareTarget.CREATE, result: CompareResult.GREATER, create_revision: 0n }],
    success: [{ request_delete_range: { key } }],
  } as TxnRequest);
  return { txn, put, del };
}

/** A lease for the floors' keys, granted through wirelock's client (the lock's session would have one already). */
async function withLease<T>(url: string, fn: (lease: bigint) => Promise<T>): Promise<T> {
  const client = await EtcdClient.connect({ endpoints: [url] });
  try {
    const { ID } = await client.leaseGrant({ TTL: 60n } as LeaseGrantRequest);
    try {
      return await fn(ID);
    } finally {
      await client.leaseRevoke({ ID } as LeaseRevokeRequest);
    }
  } finally {
    await client.close();
  }
}

/** Cycles/s of the locker's two KV.Txn unary calls, pre-encoded, on a bare HTTP/2 connection. */
async function h2Floor(url: string, seconds: number, lease: bigint): Promise<number> {
  const socket = await connect(url);
  const { txn, put: putMessage, del: delMessage } = lockerTxns('floor', lease);
  const put = encodeGrpcMessage(putMessage);
  const del = encodeGrpcMessage(delMessage);
  const u = new URL(url);
  const block = new HpackEncoder({ huffman: false }).encode(
    [[':method', 'POST'], [':scheme', 'http'], [':path', txn.path], [':authority', u.host], ['content-type', 'application/grpc'], ['te', 'trailers']],
    { noIndex: new Set([':method', ':scheme', ':path', ':authority', 'content-type', 'te']) },
  );
  // The header frame's stream id is patched per call; the block never changes (no HPACK state).
  const request = (id: number, body: Buffer): Buffer => Buffer.concat([frameHeader(block.length, FrameType.HEADERS, 0x4, id), block, dataFrame(id, body, true)]);
  let waitingFor = -1;
  let done: (() => void) | undefined;
  let buf: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    let replies: Buffer[] | undefined;
    while (buf.length >= 9) {
      const length = buf.readUIntBE(0, 3);
      if (buf.length < 9 + length) break;
      const type = buf[3]!;
      const flags = buf[4]!;
      const id = buf.readUInt32BE(5) & 0x7fffffff;
      if (type === FrameType.SETTINGS && !(flags & 1)) (replies ??= []).push(settingsAck());
      else if (type === FrameType.PING && !(flags & 1)) (replies ??= []).push(pingFrame(buf.subarray(9, 17), true));
      else if (type === FrameType.HEADERS && flags & 1 && id === waitingFor) done?.();
      buf = buf.subarray(9 + length);
    }
    if (replies) socket.write(Buffer.concat(replies));
  });
  // Windows as large as they go: the floor never gives any back.
  socket.write(Buffer.concat([CLIENT_PREFACE, settingsFrame([[2, 0], [4, 2 ** 31 - 1]]), windowUpdateFrame(0, 2 ** 31 - 1 - 65_535)]));
  let next = 1;
  const call = (body: Buffer): Promise<void> =>
    new Promise((resolve) => {
      waitingFor = next;
      done = resolve;
      socket.write(request(next, body));
      next += 2;
    });
  try {
    await call(del); // warm: the first call also carries the connection's start
    return await cyclesPerSecond(seconds, async () => {
      await call(put);
      await call(del);
    });
  } finally {
    socket.destroy();
  }
}

/** The same two Txns through wirelock's H2Channel, each answer decoded: the transport's own cost. */
async function h2ChannelLoop(url: string, seconds: number, lease: bigint): Promise<number> {
  const channel = new H2Channel({ url });
  const { txn, put, del } = lockerTxns('channel', lease);
  const call = async (body: Buffer): Promise<TxnResponse> => txn.response.decode(await channel.unary(txn.path, body, [], performance.now() + 5000));
  try {
    await call(del); // warm: the first call also makes the connection
    return await cyclesPerSecond(seconds, async () => {
      await call(put);
      await call(del);
    });
  } finally {
    channel.close();
  }
}

/** A floor as a bench row: never the anchor (reference), run in this process without a LockAdapter. */
function floorLibrary(name: string, run: (seconds: number) => Promise<number>): Library {
  return {
    name,
    ours: false,
    reference: true,
    make: () => Promise.reject(new Error('a floor runs its own loop')),
    external: {
      uncontended: run,
      contended: () => Promise.reject(new Error('a floor has no contended loop')),
    },
  };
}

export const respFloorLibrary = (url: string): Library => floorLibrary('floor: bare net.Socket, SET NX PX + EVALSHA', (s) => respFloor(url, s));
export const redlockFloorLibrary = (urls: string[]): Library => floorLibrary(`floor: bare net.Sockets to the ${urls.length} nodes, SET NX PX + EVALSHA, each round at the quorum`, (s) => redlockFloor(urls, s));
export const h2FloorLibrary = (url: string): Library => floorLibrary("floor: bare HTTP/2 socket, the locker's 2 KV.Txn pre-encoded", (s) => withLease(url, (lease) => h2Floor(url, s, lease)));
export const h2ChannelLibrary = (url: string): Library => floorLibrary("wirelock's HTTP/2 channel alone: the same 2 Txn, answers decoded", (s) => withLease(url, (lease) => h2ChannelLoop(url, s, lease)));

/**
 * The floor of an etcd lock handoff, as two clients see it: the ms from one client's guarded delete
 * (the holder's release, a raft write) to the delete event on another client's watch (how a waiter
 * learns of it), median of `count`, on wirelock's client. Any etcd lock passes through at least this
 * between holders: a release must be a write, and the next holder must hear of it.
 */
export async function etcdHandoffFloor(url: string, count: number): Promise<number> {
  const [holder, waiter] = await Promise.all([EtcdClient.connect({ endpoints: [url] }), EtcdClient.connect({ endpoints: [url] })]);
  const key = Buffer.from('floor/handoff');
  // What the next event (or the watch's creation) settles; a watch error fails the run instead of hanging it.
  let waiting: { resolve(): void; reject(err: Error): void } | undefined;
  const next = (): Promise<void> => new Promise<void>((resolve, reject) => (waiting = { resolve, reject }));
  const ready = next();
  const watcher = waiter.watch(key, { filters: [WatchFilter.NOPUT] }, {
    onEvents: () => waiting?.resolve(),
    onError: (err) => waiting?.reject(err),
    onCreated: () => waiting?.resolve(),
  });
  const times: number[] = [];
  try {
    await ready;
    for (let i = 0; i < count; i++) {
      await holder.put({ key, value: Buffer.alloc(0) } as PutRequest);
      const event = next();
      const sent = performance.now();
      const deleted = holder.txn({ compare: [{ key, target: CompareTarget.CREATE, result: CompareResult.GREATER, create_revision: 0n }], success: [{ request_delete_range: { key } }] } as TxnRequest);
      await event; // the event may come before the holder's own answer
      times.push(performance.now() - sent);
      await deleted;
    }
  } finally {
    watcher.cancel();
    await Promise.all([holder.close(), waiter.close()]);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}
