/**
 * KNOWN BUG, full run only (kept out of `npm test` until src/etcdrpc/client.ts is fixed): a malformed
 * etcd endpoint that carries credentials is echoed, password and all, in the TypeError's message.
 * (The Redis URL parser never echoes a URL for this reason.) A well-formed URL with credentials is
 * refused without echo; one without a port, with a bad scheme, or that does not parse, is echoed.
 */
import { expect } from 'chai';
import { EtcdClient } from '../../src/index.js';

describe('faults: etcd endpoint errors never echo a password (known bug)', () => {
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
