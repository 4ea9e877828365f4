/**
 * Redis Sentinel options, pure: the `redis+sentinel://` URL form and the options form resolve to the
 * same sentinels, master name, data-node credentials and db; the sentinels' own credentials come only
 * from options; bad input is a typed error that never echoes a password.
 */
import { expect } from 'chai';
import { resolveRedisOptions } from '../src/resp/options.js';

const error = (f: () => unknown): Error & { code?: string } => {
  try {
    f();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('did not throw');
};

describe('Redis Sentinel options', () => {
  it('parses redis+sentinel://user:pass@h1:p1,h2,[::1]:p3/name/db', () => {
    const o = resolveRedisOptions('redis+sentinel://app:s%40cret@10.0.0.1:26380,sentinel-b,[::1]:5000/my%20master/3');
    expect(o.sentinel).to.deep.equal({
      sentinels: [{ host: '10.0.0.1', port: 26380 }, { host: 'sentinel-b', port: 26379 }, { host: '::1', port: 5000 }],
      masterName: 'my master',
      username: undefined,
      password: undefined,
      tls: undefined,
    });
    // user:pass in the URL are the data nodes'
    expect([o.username, o.password, o.db, o.tls]).to.deep.equal(['app', 's@cret', 3, undefined]);
  });

  it('rediss+sentinel:// is TLS to the master and the sentinels; sentinelTls may differ', () => {
    expect(resolveRedisOptions('rediss+sentinel://h:1/m').sentinel!.tls).to.deep.equal({});
    expect(resolveRedisOptions('rediss+sentinel://h:1/m').tls).to.deep.equal({});
    const o = resolveRedisOptions('rediss+sentinel://h:1/m', { sentinelTls: false });
    expect([o.tls, o.sentinel!.tls]).to.deep.equal([{}, undefined]);
  });

  it('the options form, with the sentinels\' own credentials', () => {
    const o = resolveRedisOptions({ sentinels: [{ host: 'a', port: 1 }], masterName: 'm', password: 'data', sentinelUsername: 'watch', sentinelPassword: 'sent' });
    expect(o.sentinel).to.include({ masterName: 'm', username: 'watch', password: 'sent' });
    expect(o.password).to.equal('data');
    // Options win over the URL, as for redis:// URLs.
    expect(resolveRedisOptions('redis+sentinel://h:1/m', { sentinelPassword: 'p' }).sentinel!.password).to.equal('p');
  });

  it('no sentinels: no sentinel part; a masterName alone is refused', () => {
    expect(resolveRedisOptions('redis://h:1').sentinel).to.equal(undefined);
    expect(error(() => resolveRedisOptions({ masterName: 'm' }))).to.include({ code: 'ERR_INVALID_ARG_VALUE' });
  });

  for (const [what, input] of [
    ['no master name', 'redis+sentinel://:hunter2@h:1'],
    ['an empty host list', 'redis+sentinel://:hunter2@/m'],
    ['a bad port', 'redis+sentinel://:hunter2@h:x/m'],
    ['a bad db', 'redis+sentinel://:hunter2@h:1/m/x'],
  ] as const) {
    it(`refuses ${what} with a TypeError that does not show the password`, () => {
      const err = error(() => resolveRedisOptions(input));
      expect(err).to.be.instanceOf(TypeError);
      expect(err.code).to.equal('ERR_INVALID_ARG_VALUE');
      expect(err.message).to.not.include('hunter2');
    });
  }

  it('checks the options form: sentinels non-empty, each { host, port }, masterName required', () => {
    expect(error(() => resolveRedisOptions({ sentinels: [], masterName: 'm' }))).to.include({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(error(() => resolveRedisOptions({ sentinels: [{ host: 'a', port: 0 }], masterName: 'm' }))).to.include({ code: 'ERR_OUT_OF_RANGE' });
    expect(error(() => resolveRedisOptions({ sentinels: [{ host: '', port: 1 }], masterName: 'm' }))).to.include({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(error(() => resolveRedisOptions({ sentinels: [{ host: 'a', port: 1 }] }))).to.include({ code: 'ERR_INVALID_ARG_VALUE' });
  });
});
