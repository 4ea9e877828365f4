/**
 * A malformed etcd endpoint that carries credentials must not be echoed, password and all, in the
 * TypeError's message (it was, until the endpoint check stopped echoing endpoints at all; the Redis
 * URL parser never echoes a URL for the same reason).
 */
import { expect } from 'chai';
import { EtcdClient } from '../../src/index.js';

describe('faults: etcd endpoint errors never echo a password', () => {
  const SECRET = 'SNTL-endpoint-pw-2a9f';
  for (const endpoint of [`http://app:${SECRET}@127.0.0.1`, `http://app:${SECRET}@[::1`, `ftp://app:${SECRET}@127.0.0.1:2379`, `http://app:${SECRET}@127.0.0.1:2379`]) {
    it(`rejects ${endpoint.replace(SECRET, '<password>')} without showing the password`, async () => {
      let err: unknown;
      try {
        await EtcdClient.connect({ endpoints: [endpoint] });
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(TypeError);
      expect(String((err as Error).message) + String((err as Error).stack)).to.not.include(SECRET);
    });
  }
});
