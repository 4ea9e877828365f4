// The docs list every error code there is, and say what extend() does after release(): checked
// against the code, so the two cannot drift apart again.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { LockReleasedError, RedisClient, RedisLocker } from '../src/index.js';
import { startRedis, type RedisServer } from '../src/testing/servers.js';

const read = (file: string): string => readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');
/** Every code a WirelockError subclass passes to super(). */
const codes = [...read('src/errors.ts').matchAll(/super\('(WL_[A-Z_]+)'/g)].map((m) => m[1]!);

describe('docs against the code: error codes, extend() after release()', () => {
  it('WirelockErrorCode lists every code a WirelockError is made with, and no other', () => {
    // Comments first: each member's TSDoc may hold a ';' of its own.
    const source = read('src/errors.ts').replace(/\/\*[\s\S]*?\*\//g, '');
    const union = source.match(/export type WirelockErrorCode =([^;]*);/)![1]!;
    const listed = [...union.matchAll(/'(WL_[A-Z_]+)'/g)].map((m) => m[1]!);
    expect([...listed].sort()).to.deep.equal([...new Set(codes)].sort());
  });

  it('the README and docs/api.md name every error code, and no other', () => {
    expect(codes.length).to.be.above(8);
    for (const file of ['README.md', 'docs/api.md']) {
      const named = new Set([...read(file).matchAll(/`(WL_[A-Z_]+)`/g)].map((m) => m[1]!));
      expect([...named].sort(), file).to.deep.equal([...new Set(codes)].sort());
    }
  });

  describe('extend() after release()', function () {
    this.timeout(20_000);
    let redis: RedisServer;
    before(async () => (redis = await startRedis()));
    after(async () => redis?.stop());

    it('rejects with LockReleasedError, as docs/api.md says', async () => {
      expect(read('docs/api.md')).to.include('and with `LockReleasedError` after `release()`');
      const client = await RedisClient.connect(redis.url);
      const locker = new RedisLocker(client);
      const lock = await locker.acquire('docs-extend');
      await lock.release();
      const err = await lock.extend().then(() => undefined, (e: unknown) => e);
      expect(err).to.be.instanceOf(LockReleasedError);
      await locker.close();
      await client.close();
    });
  });
});
