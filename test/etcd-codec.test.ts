import { expect } from 'chai';
import { codec, method, prefixEnd, protoRoot } from '../src/etcdrpc/codec.js';

const MAX_I64 = 2n ** 63n - 1n;
const MIN_I64 = -(2n ** 63n);
const MAX_U64 = 2n ** 64n - 1n;
/** A lease ID as etcd hands them out: well past 2^53, where a JS number would round it. */
const LEASE = 0x694d7c5a1b2c3d4en;

const header = { cluster_id: MAX_U64, member_id: 0x8e9e05c52164694dn, revision: 2n ** 53n + 1n, raft_term: 7n };
const kv = { key: Buffer.from('lock/694d'), create_revision: 12n, mod_revision: 13n, version: 2n, value: Buffer.from('v'), lease: LEASE };

/** One filled-in sample of every message in protos/, requests and responses. */
const samples: Record<string, Record<string, unknown>> = {
  'mvccpb.KeyValue': kv,
  'mvccpb.Event': { type: 1, kv, prev_kv: { ...kv, mod_revision: 12n } },
  'etcdserverpb.ResponseHeader': header,
  'etcdserverpb.RangeRequest': {
    key: Buffer.from('a'), range_end: Buffer.from('b'), limit: 2n, revision: 9n, sort_order: 2, sort_target: 2,
    serializable: true, keys_only: true, count_only: true, min_mod_revision: 1n, max_mod_revision: 2n,
    min_create_revision: 3n, max_create_revision: MAX_I64,
  },
  'etcdserverpb.RangeResponse': { header, kvs: [kv, kv], more: true, count: 2n },
  'etcdserverpb.PutRequest': { key: Buffer.from('k'), value: Buffer.from([0, 255]), lease: LEASE, prev_kv: true },
  'etcdserverpb.PutResponse': { header, prev_kv: kv },
  'etcdserverpb.DeleteRangeRequest': { key: Buffer.from('k'), range_end: Buffer.from([0]), prev_kv: true },
  'etcdserverpb.DeleteRangeResponse': { header, deleted: 3n, prev_kvs: [kv] },
  'etcdserverpb.RequestOp': { request_put: { key: Buffer.from('k'), lease: LEASE } },
  'etcdserverpb.ResponseOp': { response_range: { header, kvs: [kv], count: 1n } },
  'etcdserverpb.Compare': { result: 3, target: 1, key: Buffer.from('k'), create_revision: 0n, range_end: Buffer.from('l') },
  'etcdserverpb.TxnRequest': {
    compare: [{ result: 0, target: 4, key: Buffer.from('k'), lease: LEASE }],
    success: [{ request_range: { key: Buffer.from('k') } }, { request_txn: { compare: [], success: [{ request_delete_range: { key: Buffer.from('x') } }] } }],
    failure: [{ request_put: { key: Buffer.from('k') } }],
  },
  'etcdserverpb.TxnResponse': {
    header, succeeded: true,
    responses: [{ response_put: { header } }, { response_delete_range: { header, deleted: 1n } }, { response_txn: { header, succeeded: false } }],
  },
  'etcdserverpb.WatchRequest': {
    create_request: { key: Buffer.from('k'), range_end: Buffer.from('l'), start_revision: 5n, progress_notify: true, filters: [0, 1], prev_kv: true, watch_id: 7n, fragment: true },
  },
  'etcdserverpb.WatchCreateRequest': { key: Buffer.from('k'), start_revision: 2n ** 60n, watch_id: 1n },
  'etcdserverpb.WatchCancelRequest': { watch_id: 3n },
  'etcdserverpb.WatchProgressRequest': {},
  'etcdserverpb.WatchResponse': {
    header, watch_id: -1n, created: true, canceled: true, compact_revision: 4n, cancel_reason: 'etcdserver: mvcc: required revision has been compacted',
    fragment: true, events: [{ type: 0, kv }],
  },
  'etcdserverpb.LeaseGrantRequest': { TTL: 10n, ID: LEASE },
  'etcdserverpb.LeaseGrantResponse': { header, ID: LEASE, TTL: 10n, error: 'x' },
  'etcdserverpb.LeaseRevokeRequest': { ID: LEASE },
  'etcdserverpb.LeaseRevokeResponse': { header },
  'etcdserverpb.LeaseKeepAliveRequest': { ID: MIN_I64 },
  'etcdserverpb.LeaseKeepAliveResponse': { header, ID: LEASE, TTL: 0n },
  'etcdserverpb.LeaseTimeToLiveRequest': { ID: LEASE, keys: true },
  'etcdserverpb.LeaseTimeToLiveResponse': { header, ID: LEASE, TTL: -1n, grantedTTL: 10n, keys: [Buffer.from('a'), Buffer.from('b')] },
  'etcdserverpb.MemberListRequest': {},
  'etcdserverpb.Member': { ID: MAX_U64, name: 'm1', peerURLs: ['http://127.0.0.1:2380'], clientURLs: ['http://127.0.0.1:2379', 'x'], isLearner: true },
  'etcdserverpb.MemberListResponse': { header, members: [{ ID: 1n, name: 'a' }] },
  'etcdserverpb.StatusRequest': {},
  'etcdserverpb.StatusResponse': {
    header, version: '3.4.23', dbSize: 2n ** 40n, leader: MAX_U64, raftIndex: 5n, raftTerm: 6n, raftAppliedIndex: 5n,
    errors: ['e'], dbSizeInUse: 1n, isLearner: false,
  },
  'etcdserverpb.AuthenticateRequest': { name: 'root', password: 'pw' },
  'etcdserverpb.AuthenticateResponse': { header, token: 'tok.123' },
};

/** A decoded message as plain data: own fields only (protobufjs keeps defaults on the prototype). */
function plain(value: unknown): unknown {
  if (Buffer.isBuffer(value) || typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map(plain);
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
}

/** The sample with proto3's defaults dropped (absent and default are the same on the wire). */
function withoutDefaults(value: unknown, inOneof = false): unknown {
  if (Buffer.isBuffer(value) || typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((v) => withoutDefaults(v));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const isDefault = v === 0n || v === 0 || v === false || v === '' || (Array.isArray(v) && v.length === 0) || (Buffer.isBuffer(v) && v.length === 0);
    if (isDefault && !inOneof && k !== 'create_revision') continue;
    out[k] = withoutDefaults(v);
  }
  return out;
}

describe('etcd codec', () => {
  it('has a sample for every message type in protos/', () => {
    const names: string[] = [];
    const walk = (ns: { nestedArray?: unknown[] }): void => {
      for (const child of ns.nestedArray ?? []) {
        const c = child as { fullName: string; fields?: unknown; nestedArray?: unknown[] };
        if (c.fields !== undefined) names.push(c.fullName.slice(1));
        walk(c);
      }
    };
    walk(protoRoot());
    expect(names.sort()).to.deep.equal(Object.keys(samples).sort());
  });

  for (const [name, sample] of Object.entries(samples)) {
    it(`round-trips ${name}`, () => {
      const c = codec<Record<string, unknown>>(name);
      const bytes = c.encode(sample);
      const decoded = c.decode(bytes);
      // Every field read back, int64 as bigint, bytes as Buffer (defaults included, from the prototype).
      for (const [k, v] of Object.entries(withoutDefaults(sample) as Record<string, unknown>)) {
        expect(withoutDefaults(plain(decoded[k])), `${name}.${k}`).to.deep.equal(plain(v));
      }
      // Scalars that were not sent still read as their defaults, 64-bit ones as 0n.
      if (name === 'etcdserverpb.RangeResponse') expect((c.decode(Buffer.alloc(0)) as { count: unknown }).count).to.equal(0n);
      // And encoding what was decoded gives the same bytes.
      expect(c.encode(decoded).equals(bytes), `${name} re-encodes`).to.equal(true);
    });
  }

  it('writes the exact bytes of a known RangeRequest', () => {
    const bytes = codec('etcdserverpb.RangeRequest').encode({ key: 'a', limit: 2, max_create_revision: 300n });
    // field 1 (bytes) "a"; field 3 varint 2; field 13 varint 300 (0xac 0x02)
    expect(bytes.toString('hex')).to.equal('0a0161' + '1802' + '68ac02');
  });

  it('writes negative and 64-bit values as 10-byte / full varints', () => {
    const c = codec<{ ID: bigint }>('etcdserverpb.LeaseRevokeRequest');
    expect(c.encode({ ID: -1n }).toString('hex')).to.equal('08ffffffffffffffffff01');
    expect(c.encode({ ID: MAX_I64 }).toString('hex')).to.equal('08ffffffffffffffff7f');
    expect(c.decode(Buffer.from('08ffffffffffffffffff01', 'hex')).ID).to.equal(-1n);
  });

  it('reads uint64 above 2^63 as a positive bigint, int64 as signed', () => {
    const h = codec<Record<string, bigint>>('etcdserverpb.ResponseHeader').decode(
      codec('etcdserverpb.ResponseHeader').encode({ member_id: MAX_U64, revision: -2n }),
    );
    expect(h.member_id).to.equal(MAX_U64);
    expect(h.revision).to.equal(-2n);
  });

  it('sends strings as UTF-8 (not base64, protobufjs\'s default)', () => {
    const bytes = codec('etcdserverpb.PutRequest').encode({ key: 'ключ/🔒', value: 'YWJj' });
    const back = codec<{ key: Buffer; value: Buffer }>('etcdserverpb.PutRequest').decode(bytes);
    expect(back.key.toString('utf8')).to.equal('ключ/🔒');
    expect(back.value.toString('utf8')).to.equal('YWJj');
  });

  it('keeps an explicit zero in a oneof (Compare create_revision = 0)', () => {
    const bytes = codec('etcdserverpb.Compare').encode({ result: 0, target: 1, key: 'k', create_revision: 0n });
    expect(bytes.toString('hex')).to.equal('0800' + '1001' + '1a016b' + '2800');
    const back = codec<Record<string, unknown>>('etcdserverpb.Compare').decode(bytes);
    expect(Object.hasOwn(back, 'create_revision')).to.equal(true);
    expect(Object.hasOwn(back, 'version')).to.equal(false);
  });

  it('rejects values it would otherwise encode wrongly', () => {
    const put = codec('etcdserverpb.PutRequest');
    expect(() => put.encode({ key: 'k', lease: 1.5 })).to.throw(TypeError, /lease/);
    expect(() => put.encode({ key: 'k', lease: 2 ** 60 })).to.throw(TypeError, /lease/); // unsafe number
    expect(() => put.encode({ key: 'k', lease: '5' })).to.throw(TypeError, /lease/);
    expect(() => put.encode({ key: 'k', lease: 2n ** 64n })).to.throw(RangeError, /64 bits/);
    expect(() => put.encode({ key: 7 })).to.throw(TypeError, /key/);
    expect(() => codec('etcdserverpb.TxnRequest').encode({ compare: {} })).to.throw(TypeError, /compare/);
  });

  it('computes prefix ends like etcd', () => {
    expect(prefixEnd(Buffer.from('a/')).toString()).to.equal('a0');
    expect(prefixEnd(Buffer.from([0x61, 0xff])).equals(Buffer.from([0x62]))).to.equal(true);
    expect(prefixEnd(Buffer.from([0xff, 0xff])).equals(Buffer.from([0]))).to.equal(true);
    expect(prefixEnd(Buffer.alloc(0)).equals(Buffer.from([0]))).to.equal(true);
  });

  it('names methods by their wire path', () => {
    expect(method('KV', 'Txn').path).to.equal('/etcdserverpb.KV/Txn');
    expect(method('Lease', 'LeaseKeepAlive').path).to.equal('/etcdserverpb.Lease/LeaseKeepAlive');
    expect(() => method('KV', 'Compact')).to.throw(/no method Compact/);
  });
});
