// EtcdClient.connect() against a cluster that is not there: a clean ConnectionError within its
// connect timeout, not gRPC's text after the whole call timeout.
import { expect } from 'chai';
import net from 'node:net';
import { ConnectionError, EtcdClient, TimeoutError } from '../src/index.js';
import { withoutBoilerplate } from '../src/etcdrpc/status.js';
import { freePort } from '../src/testing/servers.js';

async function failure(opts: Parameters<typeof EtcdClient.connect>[0]): Promise<{ err: Error; ms: number }> {
  const t = performance.now();
  const err = await EtcdClient.connect(opts).then(
    async (c) => {
      await c.close();
      throw new Error('connected to nothing');
    },
    (e: Error) => e,
  );
  return { err, ms: performance.now() - t };
}

describe('EtcdClient.connect() when nobody answers', function () {
  this.timeout(20_000);

  it('a refused endpoint: ConnectionError within connectTimeoutMs, saying what the socket said and nothing of gRPC', async () => {
    const port = await freePort();
    const { err, ms } = await failure({ endpoints: [`http://127.0.0.1:${port}`], connectTimeoutMs: 1000 });
    expect(err).to.be.instanceOf(ConnectionError);
    expect(err.message).to.equal(`http://127.0.0.1:${port}: Maintenance.Status: no connection established (connect ECONNREFUSED 127.0.0.1:${port})`);
    expect(ms).to.be.below(2500);
  });

  it('by default within 3 s, or callTimeoutMs if shorter', async () => {
    const port = await freePort();
    const byDefault = await failure({ endpoints: [`http://127.0.0.1:${port}`] });
    expect(byDefault.err).to.be.instanceOf(ConnectionError);
    expect(byDefault.ms).to.be.within(2000, 4500);
    const short = await failure({ endpoints: [`http://127.0.0.1:${port}`], callTimeoutMs: 800 });
    expect(short.ms).to.be.below(2300);
  });

  it('an endpoint that accepts and says nothing: TimeoutError within connectTimeoutMs', async () => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((s) => void sockets.add(s)); // accepts, never answers the HTTP/2 preface
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = silent.address() as net.AddressInfo;
      const { err, ms } = await failure({ endpoints: [`http://127.0.0.1:${port}`], connectTimeoutMs: 1000 });
      expect(err, String(err)).to.be.instanceOf(TimeoutError);
      expect(ms).to.be.below(2500);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('withoutBoilerplate keeps what matters of grpc-js\'s connect failures', () => {
    expect(withoutBoilerplate('No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1. Resolution note: '))
      .to.equal('no connection established (connect ECONNREFUSED 127.0.0.1:1)');
    expect(withoutBoilerplate('No connection established. Last error: getaddrinfo ENOTFOUND etcd.invalid'))
      .to.equal('no connection established (getaddrinfo ENOTFOUND etcd.invalid)');
    expect(withoutBoilerplate('etcdserver: leader changed')).to.equal('etcdserver: leader changed');
  });
});
