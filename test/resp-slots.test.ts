/**
 * Redis Cluster's key slots, pure and against the server: the CRC16/XMODEM check value, the cluster
 * specification's hash-tag cases, and random keys (braces included) compared with `CLUSTER KEYSLOT`
 * on a real cluster-enabled redis-server. Also RedisCluster.connect's argument checks, which never
 * echo a password.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { crc16, keySlot, SLOT_COUNT } from '../src/resp/slots.js';
import { RedisClient, RedisCluster } from '../src/index.js';
import { startRedis, type RedisServer } from '../src/testing/servers.js';

describe('Redis Cluster key slots', () => {
  it('CRC16/XMODEM check value: "123456789" is 0x31C3', () => {
    expect(crc16(Buffer.from('123456789'))).to.equal(0x31c3);
    expect(crc16(Buffer.alloc(0))).to.equal(0);
  });

  it('the specification\'s hash-tag cases', () => {
    // Only what is between the first { and the first } after it, when that is not empty.
    expect(keySlot('{user1000}.following')).to.equal(keySlot('{user1000}.followers'));
    expect(keySlot('{user1000}.following')).to.equal(keySlot('user1000'));
    expect(keySlot('foo{{bar}}zap')).to.equal(keySlot('{bar'));
    expect(keySlot('foo{bar}{zap}')).to.equal(keySlot('bar'));
    expect(keySlot('foo{}{bar}')).to.equal(crc16(Buffer.from('foo{}{bar}')) % SLOT_COUNT); // empty tag: the whole key
    expect(keySlot('{}')).to.equal(crc16(Buffer.from('{}')) % SLOT_COUNT);
    expect(keySlot('no-close{abc')).to.equal(crc16(Buffer.from('no-close{abc')) % SLOT_COUNT);
    // Known slots (as `CLUSTER KEYSLOT` gives them).
    expect(keySlot('foo')).to.equal(12182);
    expect(keySlot('bar')).to.equal(5061);
    expect(keySlot('')).to.equal(0);
  });

  it('a string is hashed as its UTF-8 bytes; a Buffer as itself', () => {
    expect(keySlot('clé')).to.equal(keySlot(Buffer.from('clé', 'utf8')));
    expect(keySlot(Buffer.from([0xff, 0x7b, 0x01, 0x7d]))).to.equal(crc16(Buffer.from([0x01])) % SLOT_COUNT);
  });

  it('every key of a wirelock lock, its queue and its release channel share one slot', () => {
    for (const name of ['orders', 'a{b}c', 'x}y{', '']) {
      const lock = `wirelock:{${name}}`;
      const slots = new Set([lock, `${lock}:fence`, `${lock}:queue`, `${lock}:queue:exp`, `${lock}:release`, `${lock}:sem:release`].map((k) => keySlot(k)));
      // An empty name makes an empty tag: each key is hashed whole, so they do not share one (the lockers refuse empty names).
      if (name !== '') expect(slots.size, name).to.equal(1);
    }
  });

  describe('against the server (CLUSTER KEYSLOT)', function () {
    this.timeout(60_000);
    let server: RedisServer;
    let client: RedisClient;
    before(async () => {
      server = await startRedis({ args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'] });
      client = await RedisClient.connect(server.url);
    });
    after(async () => {
      await client?.close();
      await server?.stop();
    });

    it('500 random keys, braces included, hash to the server\'s slot', async () => {
      const piece = fc.oneof(fc.constantFrom('{', '}', '{}', 'a', ':', ''), fc.string({ maxLength: 6 }), fc.uint8Array({ maxLength: 4 }).map((b) => Buffer.from(b).toString('latin1')));
      const keys = fc.sample(fc.array(piece, { maxLength: 6 }).map((parts) => parts.join('')), { numRuns: 500, seed: 42 });
      const answers = await Promise.all(keys.map((k) => client.send(['CLUSTER', 'KEYSLOT', k])));
      for (let i = 0; i < keys.length; i++) expect(keySlot(keys[i]!), JSON.stringify(keys[i])).to.equal(answers[i]);
    });
  });
});

describe('RedisCluster.connect arguments', () => {
  const rejection = async (p: Promise<unknown>): Promise<Error & { code?: string }> => {
    try {
      await p;
    } catch (err) {
      return err as Error & { code?: string };
    }
    throw new Error('did not reject');
  };

  it('no seeds, a bad seed, a Sentinel URL, a database, mixed TLS: typed errors at once', async () => {
    expect((await rejection(RedisCluster.connect([]))).code).to.equal('ERR_INVALID_ARG_VALUE');
    expect((await rejection(RedisCluster.connect({ seeds: [{ host: 'h', port: 0 }] }))).code).to.equal('ERR_OUT_OF_RANGE');
    expect((await rejection(RedisCluster.connect('redis+sentinel://h:1/m'))).message).to.match(/Sentinel URL is not a cluster seed/);
    expect((await rejection(RedisCluster.connect('redis://h:1/2'))).message).to.match(/only database 0/);
    expect((await rejection(RedisCluster.connect(['redis://a:1', 'rediss://b:2']))).message).to.match(/mix redis:\/\/ and rediss:\/\//);
    expect((await rejection(RedisCluster.connect(42 as never))).code).to.equal('ERR_INVALID_ARG_TYPE');
    expect((await rejection(RedisCluster.connect({ seeds: ['redis://h:1'], topologyRefreshMs: -1 }))).code).to.equal('ERR_OUT_OF_RANGE');
  });

  it('a malformed seed URL with a password is refused without echoing it', async () => {
    const err = await rejection(RedisCluster.connect('redis://:hunter2-secret@[bad'));
    expect(err.code).to.equal('ERR_INVALID_ARG_VALUE');
    expect(err.message).to.not.include('hunter2');
  });

  it('no seed reachable: ConnectionError naming the seed, never its password', async () => {
    const err = await rejection(RedisCluster.connect({ seeds: ['redis://:hunter2-secret@127.0.0.1:1'], connectTimeoutMs: 500 }));
    expect(err.constructor.name).to.equal('ConnectionError');
    expect(err.message).to.include('127.0.0.1:1').and.not.include('hunter2');
  });
});
