// Bad arguments are TypeError / RangeError, as in Node, with Node's codes (no server needed).
import { expect } from 'chai';
import { EtcdClient, RedisClient, encodeCommand } from '../src/index.js';
import { resolveAcquire } from '../src/locks/options.js';
import { resolveRedisOptions } from '../src/resp/options.js';

function thrown(fn: () => unknown): (Error & { code?: string }) | undefined {
  try {
    fn();
  } catch (err) {
    return err as Error & { code?: string };
  }
  return undefined;
}

describe('argument errors carry a code, as Node\'s own do', () => {
  const cases: Array<[string, () => unknown, typeof TypeError | typeof RangeError, string]> = [
    ['a key that is not a string', () => resolveAcquire(42, undefined, 1000), TypeError, 'ERR_INVALID_ARG_TYPE'],
    ['an empty key', () => resolveAcquire('', undefined, 1000), TypeError, 'ERR_INVALID_ARG_VALUE'],
    ['a negative ttlMs', () => resolveAcquire('k', { ttlMs: -1 }, 1000), RangeError, 'ERR_OUT_OF_RANGE'],
    ['a NaN waitTimeoutMs', () => resolveAcquire('k', { waitTimeoutMs: Number.NaN }, 1000), RangeError, 'ERR_OUT_OF_RANGE'],
    ['a signal that is not an AbortSignal', () => resolveAcquire('k', { signal: {} as AbortSignal }, 1000), TypeError, 'ERR_INVALID_ARG_TYPE'],
    ['a malformed Redis URL', () => resolveRedisOptions('redis://[', undefined), TypeError, 'ERR_INVALID_ARG_VALUE'],
    ['a port out of range', () => resolveRedisOptions({ port: 70000 }, undefined), RangeError, 'ERR_OUT_OF_RANGE'],
    ['an undefined command argument', () => encodeCommand(['SET', undefined as unknown as string]), TypeError, 'ERR_INVALID_ARG_TYPE'],
  ];
  for (const [what, fn, type, code] of cases) {
    it(`${what}: ${type.name} ${code}`, () => {
      const err = thrown(fn);
      expect(err, what).to.be.instanceOf(type);
      expect(err!.code).to.equal(code);
    });
  }

  it('async entry points reject with the same: RedisClient.connect, EtcdClient.connect', async () => {
    const redis = await RedisClient.connect('ftp://x').then(() => undefined, (e: Error & { code?: string }) => e);
    expect(redis).to.be.instanceOf(TypeError);
    expect(redis!.code).to.equal('ERR_INVALID_ARG_VALUE');
    const etcd = await EtcdClient.connect({ endpoints: [] }).then(() => undefined, (e: Error & { code?: string }) => e);
    expect(etcd).to.be.instanceOf(TypeError);
    expect(etcd!.code).to.equal('ERR_INVALID_ARG_VALUE');
  });
});
