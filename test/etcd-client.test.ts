import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import {
  ClosedError, CompareResult, CompareTarget, ConnectionError, EtcdClient, EtcdError, EventType, SortOrder, SortTarget,
  TimeoutError, WatchCompactedError, prefixEnd, type EtcdEvent,
} from '../src/index.js';
import { freePort, startEtcd, type EtcdServer } from '../src/testing/servers.js';
import { FaultProxy } from './support/proxy.js';
import { etcdctl, eventually, rejection, sleep } from './support/etcd.js';

describe('EtcdClient against etcd', function () {
  let etcd: EtcdServer;
  let client: EtcdClient;
  let n = 0;
  /** A key no other test uses. */
  const fresh = (name: string): string => `client-test/${name}/${++n}`;

  before(async () => {
    etcd = await startEtcd();
    client = await EtcdClient.connect({ endpoints: etcd.endpoints });
  });
  after(async () => {
    await client?.close();
    await etcd?.stop();
  });

  it('puts, ranges (with bigint revisions) and deletes', async () => {
    const key = fresh('kv');
    const put = await client.put({ key, value: 'one' });
    expect(put.header.revision).to.be.a('bigint');
    const got = await client.range({ key });
    expect(got.kvs).to.have.length(1);
    expect(got.kvs[0]!.value.toString()).to.equal('one');
    expect(got.kvs[0]!.create_revision).to.equal(put.header.revision);
    expect(got.kvs[0]!.version).to.equal(1n);
    expect(got.kvs[0]!.lease).to.equal(0n);
    const del = await client.deleteRange({ key, prev_kv: true });
    expect(del.deleted).to.equal(1n);
    expect(del.prev_kvs[0]!.value.toString()).to.equal('one');
    expect((await client.range({ key })).kvs).to.deep.equal([]);
  });

  it('an empty value comes back as an empty Buffer, not a missing field', async () => {
    const key = fresh('empty');
    await client.put({ key, value: '' });
    const [kv] = (await client.range({ key })).kvs;
    expect(Buffer.isBuffer(kv!.value)).to.equal(true);
    expect(kv!.value.length).to.equal(0);
  });

  it('ranges a prefix sorted by create revision, with limit, count and max_create_revision', async () => {
    const pfx = `${fresh('prefix')}/`;
    const revs: bigint[] = [];
    for (const k of ['c', 'a', 'b']) revs.push((await client.put({ key: pfx + k })).header.revision);
    const end = prefixEnd(Buffer.from(pfx));
    const newest = await client.range({ key: pfx, range_end: end, sort_order: SortOrder.DESCEND, sort_target: SortTarget.CREATE, limit: 2 });
    expect(newest.kvs.map((kv) => kv.key.toString())).to.deep.equal([pfx + 'b', pfx + 'a']);
    expect(newest.more).to.equal(true);
    expect(newest.count).to.equal(3n);
    const before = await client.range({ key: pfx, range_end: end, sort_order: SortOrder.DESCEND, sort_target: SortTarget.CREATE, max_create_revision: revs[2]! - 1n, limit: 1 });
    expect(before.kvs.map((kv) => kv.key.toString())).to.deep.equal([pfx + 'a']);
    expect((await client.range({ key: pfx, range_end: end, count_only: true })).count).to.equal(3n);
  });

  it('runs a Txn: compare create_revision 0, then put; the second time the else branch', async () => {
    const key = fresh('txn');
    const txn = () =>
      client.txn({
        compare: [{ key, target: CompareTarget.CREATE, result: CompareResult.EQUAL, create_revision: 0n }],
        success: [{ request_put: { key, value: 'mine' } }],
        failure: [{ request_range: { key } }],
      });
    const first = await txn();
    expect(first.succeeded).to.equal(true);
    expect(first.responses[0]!.response_put).to.not.equal(null);
    const second = await txn();
    expect(second.succeeded).to.equal(false);
    expect(second.responses[0]!.response_put).to.equal(null);
    expect(second.responses[0]!.response_range!.kvs[0]!.create_revision).to.equal(first.header.revision);
  });

  it('grants, renews, inspects and revokes leases; keys go with their lease', async () => {
    const key = fresh('leased');
    const grant = await client.leaseGrant({ TTL: 1 });
    expect(grant.TTL).to.equal(2n); // etcd's minimum
    expect(grant.ID > 2n ** 53n || grant.ID > 0n).to.equal(true);
    await client.put({ key, lease: grant.ID });
    const ka = await client.leaseKeepAlive(grant.ID);
    expect(ka.ID).to.equal(grant.ID);
    expect(ka.TTL).to.equal(2n);
    const ttl = await client.leaseTimeToLive({ ID: grant.ID, keys: true });
    expect(ttl.grantedTTL).to.equal(2n);
    expect(ttl.keys.map((k) => k.toString())).to.deep.equal([key]);
    await client.leaseRevoke({ ID: grant.ID });
    expect((await client.range({ key })).kvs).to.have.length(0);
    // A keep-alive on a revoked lease answers TTL 0 (not an error), TimeToLive answers -1.
    expect((await client.leaseKeepAlive(grant.ID)).TTL).to.equal(0n);
    expect((await client.leaseTimeToLive({ ID: grant.ID })).TTL).to.equal(-1n);
  });

  it('renews many leases concurrently over the one keep-alive stream', async () => {
    const opened: unknown[] = [];
    const onOpen = (m: unknown): void => void opened.push(m);
    dc.subscribe('wirelock:etcd:stream:open', onOpen);
    try {
      const leases = await Promise.all(Array.from({ length: 5 }, () => client.leaseGrant({ TTL: 5 })));
      const answers = await Promise.all(leases.flatMap((l) => [client.leaseKeepAlive(l.ID), client.leaseKeepAlive(l.ID)]));
      expect(answers.map((a) => a.ID)).to.deep.equal(leases.flatMap((l) => [l.ID, l.ID]));
      await Promise.all(leases.map((l) => client.leaseRevoke({ ID: l.ID })));
    } finally {
      dc.unsubscribe('wirelock:etcd:stream:open', onOpen);
    }
    expect(opened.filter((o) => (o as { stream: string }).stream === 'Lease.LeaseKeepAlive')).to.have.length.at.most(1);
  });

  it('rejects a revoke of an unknown lease with etcd\'s code and message', async () => {
    const err = await rejection(client.leaseRevoke({ ID: 0x1234567n }));
    expect(err).to.be.instanceOf(EtcdError);
    expect((err as EtcdError).grpcCode).to.equal(5);
    expect((err as EtcdError).details).to.equal('etcdserver: requested lease not found');
    expect((err as EtcdError).code).to.equal('WL_ETCD');
  });

  it('watches: puts and deletes in order, history from a start revision, nothing after cancel', async () => {
    const key = fresh('watched');
    const first = await client.put({ key, value: 'a' });
    const seen: Array<[number, string, bigint]> = [];
    const watcher = client.watch(key, { start_revision: first.header.revision }, {
      onEvents: (events) => {
        for (const e of events) seen.push([e.type, e.kv!.value.toString(), e.kv!.mod_revision]);
      },
      onError: (err) => expect.fail(String(err)),
    });
    await client.put({ key, value: 'b' });
    const del = await client.deleteRange({ key });
    await eventually(() => seen.length === 3, 3000, 'three events');
    expect(seen.map(([t, v]) => [t, v])).to.deep.equal([[EventType.PUT, 'a'], [EventType.PUT, 'b'], [EventType.DELETE, '']]);
    expect(seen[2]![2]).to.equal(del.header.revision);
    watcher.cancel();
    await client.put({ key, value: 'c' });
    await sleep(150);
    expect(seen).to.have.length(3);
  });

  it('multiplexes watches on one stream and tells them apart', async () => {
    const [k1, k2] = [fresh('mux'), fresh('mux')];
    const got: Record<string, string[]> = { [k1]: [], [k2]: [] };
    const handlers = (k: string) => ({
      onEvents: (events: EtcdEvent[]) => events.forEach((e) => got[k]!.push(e.kv!.value.toString())),
      onError: (err: Error) => expect.fail(String(err)),
    });
    let createdCount = 0;
    const w1 = client.watch(k1, {}, { ...handlers(k1), onCreated: () => void createdCount++ });
    const w2 = client.watch(k2, {}, { ...handlers(k2), onCreated: () => void createdCount++ });
    await eventually(() => createdCount === 2, 3000, 'both created');
    await client.put({ key: k2, value: 'x' });
    await client.put({ key: k1, value: 'y' });
    await client.put({ key: k2, value: 'z' });
    await eventually(() => got[k1]!.length === 1 && got[k2]!.length === 2, 3000, 'events');
    expect(got).to.deep.equal({ [k1]: ['y'], [k2]: ['x', 'z'] });
    w1.cancel();
    w2.cancel();
  });

  it('reports a watch on a compacted revision as WatchCompactedError', async () => {
    const key = fresh('compacted');
    const r1 = await client.put({ key, value: '1' });
    const r2 = await client.put({ key, value: '2' });
    await etcdctl(etcd.endpoints, ['compaction', String(r2.header.revision)]);
    const err = await new Promise<Error>((resolve) => {
      client.watch(key, { start_revision: r1.header.revision }, { onEvents: () => {}, onError: resolve });
    });
    expect(err).to.be.instanceOf(WatchCompactedError);
    expect((err as WatchCompactedError).compactRevision).to.equal(r2.header.revision);
    expect((err as WatchCompactedError).grpcCode).to.equal(11);
  });

  it('resumes every watch after a stream break from the revision after the last event', async () => {
    const proxy = await FaultProxy.start({ port: Number(new URL(etcd.clientUrl).port) });
    const viaProxy = await EtcdClient.connect({ endpoints: [`http://127.0.0.1:${proxy.port}`] });
    try {
      const key = fresh('resume');
      const seen: string[] = [];
      let created = 0;
      const errors: unknown[] = [];
      viaProxy.watch(key, {}, {
        onEvents: (events) => events.forEach((e) => seen.push(e.kv!.value.toString())),
        onError: (err) => errors.push(err),
        onCreated: () => void created++,
      });
      await eventually(() => created === 1, 3000, 'created');
      await client.put({ key, value: 'before' });
      await eventually(() => seen.length === 1, 3000, 'first event');
      proxy.refuse().reset(); // every connection reset; reconnects refused for now
      await client.put({ key, value: 'during-1' });
      await client.put({ key, value: 'during-2' });
      await sleep(200);
      proxy.pass();
      await client.put({ key, value: 'after' });
      await eventually(() => seen.length >= 4, 5000, 'events after the break');
      await sleep(100);
      expect(seen).to.deep.equal(['before', 'during-1', 'during-2', 'after']);
      expect(created).to.equal(2);
      expect(errors).to.deep.equal([]);
    } finally {
      await viaProxy.close();
      await proxy.stop();
    }
  });

  it('moves a silent Watch stream to the next endpoint (progress probe)', async function () {
    this.timeout(20_000);
    const proxy = await FaultProxy.start({ port: Number(new URL(etcd.clientUrl).port) });
    const c = await EtcdClient.connect({ endpoints: [`http://127.0.0.1:${proxy.port}`, etcd.clientUrl] });
    try {
      const key = fresh('probe');
      const seen: string[] = [];
      let created = 0;
      c.watch(key, {}, { onEvents: (evs) => evs.forEach((e) => seen.push(e.kv!.value.toString())), onError: () => {}, onCreated: () => void created++ });
      await eventually(() => created === 1, 3000, 'created');
      proxy.blackhole(); // the connection stays open; nothing gets through either way
      await client.put({ key, value: 'while-silent' });
      await eventually(() => seen.includes('while-silent'), 12_000, 'the event, through the other endpoint');
      expect(created).to.equal(2);
    } finally {
      await c.close();
      await proxy.stop();
    }
  });

  it('fails over to the next endpoint when one is down', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    const both = await EtcdClient.connect({ endpoints: [dead, etcd.clientUrl], callTimeoutMs: 3000 });
    try {
      const key = fresh('failover');
      await both.put({ key, value: 'v' }); // a write: never sent to the dead endpoint, so retried
      expect((await both.range({ key })).kvs).to.have.length(1);
    } finally {
      await both.close();
    }
  });

  it('rejects at connect when no endpoint answers, within the call timeout', async () => {
    const start = performance.now();
    const err = await rejection(EtcdClient.connect({ endpoints: [`http://127.0.0.1:${await freePort()}`], callTimeoutMs: 500 }));
    expect(err).to.satisfy((e: Error) => e instanceof ConnectionError || e instanceof TimeoutError);
    expect(performance.now() - start).to.be.below(3000);
  });

  it('gives up on a silent server at the call deadline with TimeoutError, and does not resend a write', async () => {
    const proxy = await FaultProxy.start({ port: Number(new URL(etcd.clientUrl).port) });
    const slow = await EtcdClient.connect({ endpoints: [`http://127.0.0.1:${proxy.port}`], callTimeoutMs: 300 });
    const calls: unknown[] = [];
    const onCall = (m: unknown): void => void calls.push(m);
    dc.subscribe('wirelock:etcd:call', onCall);
    try {
      proxy.hold();
      const key = fresh('silent');
      const start = performance.now();
      const err = await rejection(slow.put({ key, value: 'v' }));
      expect(err).to.be.instanceOf(TimeoutError);
      expect(performance.now() - start).to.be.within(250, 2500);
      expect(calls.filter((c) => (c as { method: string }).method === 'KV.Put')).to.have.length(1);
    } finally {
      dc.unsubscribe('wirelock:etcd:call', onCall);
      proxy.pass();
      await slow.close();
      await proxy.stop();
    }
  });

  it('publishes calls and stream messages on wirelock:etcd:* channels', async () => {
    const events: Array<[string, Record<string, unknown>]> = [];
    const names = ['call', 'response', 'stream:send', 'stream:receive'];
    const subs = names.map((name) => {
      const fn = (m: unknown): void => void events.push([name, m as Record<string, unknown>]);
      dc.subscribe(`wirelock:etcd:${name}`, fn);
      return [name, fn] as const;
    });
    try {
      const key = fresh('diag');
      await client.range({ key });
      let created = false;
      const w = client.watch(key, {}, { onEvents: () => {}, onError: () => {}, onCreated: () => (created = true) });
      await eventually(() => created, 3000, 'created');
      w.cancel();
    } finally {
      for (const [name, fn] of subs) dc.unsubscribe(`wirelock:etcd:${name}`, fn);
    }
    const call = events.find(([n, m]) => n === 'call' && m.method === 'KV.Range');
    expect(call?.[1].endpoint).to.equal(etcd.clientUrl);
    expect(String((call?.[1].request as { key: string }).key)).to.match(/^client-test\/diag/);
    expect(events.some(([n, m]) => n === 'response' && m.method === 'KV.Range' && typeof m.durationMs === 'number')).to.equal(true);
    expect(events.some(([n, m]) => n === 'stream:send' && m.stream === 'Watch.Watch')).to.equal(true);
    expect(events.some(([n, m]) => n === 'stream:receive' && (m.message as { created: boolean }).created)).to.equal(true);
  });

  it('rejects bad arguments at once', async () => {
    const bad: Array<[() => unknown, RegExp]> = [
      [() => EtcdClient.connect(undefined as never), /options object/],
      [() => EtcdClient.connect({ endpoints: [] }), /non-empty array/],
      [() => EtcdClient.connect({ endpoints: ['127.0.0.1:2379'] }), /http:\/\/host:port/],
      [() => EtcdClient.connect({ endpoints: ['http://u:secret@127.0.0.1:2379'] }), /must not carry credentials/],
      [() => EtcdClient.connect({ endpoints: ['http://127.0.0.1:1', 'https://127.0.0.1:2'] }), /all be http/],
      [() => EtcdClient.connect({ endpoints: ['http://127.0.0.1:1'], tls: {} }), /need https/],
      [() => EtcdClient.connect({ endpoints: ['http://127.0.0.1:1'], callTimeoutMs: -1 }), /callTimeoutMs/],
      [() => EtcdClient.connect({ endpoints: ['http://127.0.0.1:1'], callTimeoutMs: NaN }), /callTimeoutMs/],
      [() => EtcdClient.connect({ endpoints: ['http://127.0.0.1:1'], password: 'x' }), /needs a username/],
      [() => client.range({ key: 5 as never }), /key/],
      [() => client.put({ key: 'k', lease: 1.5 }), /lease/],
      [() => client.range(null as never), /request object/],
      [() => client.range({ key: 'k' }, { timeoutMs: 0 }), /timeoutMs/],
      [() => client.txn({ compare: [{ key: 'k', target: 1, result: 0, create_revision: 'x' as never }] }), /create_revision/],
      [() => client.leaseKeepAlive(1.5 as never), /ID/],
    ];
    for (const [call, message] of bad) {
      let err: unknown;
      try {
        await call();
      } catch (e) {
        err = e;
      }
      expect(err, String(message)).to.satisfy((e: unknown) => e instanceof TypeError || e instanceof RangeError);
      expect((err as Error).message, String(message)).to.match(message);
      expect((err as Error).message).to.not.include('secret');
    }
    expect(() => client.watch(7 as never, {}, { onEvents: () => {}, onError: () => {} })).to.throw(TypeError);
    expect(() => client.watch('k', {}, {} as never)).to.throw(TypeError, /handlers/);
  });

  it('close() rejects pending calls and ends watches with ClosedError', async () => {
    const proxy = await FaultProxy.start({ port: Number(new URL(etcd.clientUrl).port) });
    const c = await EtcdClient.connect({ endpoints: [`http://127.0.0.1:${proxy.port}`] });
    let watchError: unknown;
    c.watch('x', {}, { onEvents: () => {}, onError: (e) => (watchError = e) });
    proxy.hold();
    const pending = c.range({ key: 'x' });
    await sleep(50);
    await c.close();
    expect(await rejection(pending)).to.be.instanceOf(ClosedError);
    expect(watchError).to.be.instanceOf(ClosedError);
    expect(await rejection(c.range({ key: 'x' }))).to.be.instanceOf(ClosedError);
    proxy.pass();
    await proxy.stop();
  });
});
