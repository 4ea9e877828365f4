import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import { EtcdClient, EtcdError, EtcdLocker, type EtcdOptions } from '../src/index.js';
import { startEtcd, startEtcdCluster, type EtcdCluster, type EtcdServer } from '../src/testing/servers.js';
import { makeTlsFiles, type TlsFiles } from './support/tls.js';
import { eventually, rejection, sleep } from './support/etcd.js';

const ROOT_PASSWORD = 'root-Pa55';
const APP_PASSWORD = 'app-S3cret-never-shown';

/** Every payload published on wirelock:etcd:* while `fn` runs, as text (bigints as decimal). */
async function publishedDuring(fn: () => Promise<void>): Promise<string> {
  const names = ['call', 'response', 'error', 'stream:open', 'stream:send', 'stream:receive', 'stream:close', 'session'];
  const out: string[] = [];
  const subs = names.map((name) => {
    const fn = (m: unknown): void => {
      out.push(JSON.stringify(m, (_k, v) => (typeof v === 'bigint' ? v.toString() : v instanceof Error ? `${v.name}: ${v.message}` : v)));
    };
    dc.subscribe(`wirelock:etcd:${name}`, fn);
    return [name, fn] as const;
  });
  try {
    await fn();
  } finally {
    for (const [name, f] of subs) dc.unsubscribe(`wirelock:etcd:${name}`, f);
  }
  return out.join('\n');
}

describe('etcd auth', function () {
  this.timeout(30_000);
  let etcd: EtcdServer;
  const auth = (password = APP_PASSWORD): Partial<EtcdOptions> => ({ username: 'app', password });

  before(async () => {
    // Simple tokens that expire after 1 s idle, to see the client re-authenticate.
    etcd = await startEtcd({
      auth: { rootPassword: ROOT_PASSWORD, users: [{ name: 'app', password: APP_PASSWORD }] },
      args: ['--auth-token', 'simple', '--auth-token-ttl', '1'],
    });
  });
  after(async () => etcd?.stop());

  it('rejects a wrong password with etcd\'s error, and never shows the password', async () => {
    let text = '';
    let err: Error | undefined;
    text = await publishedDuring(async () => {
      err = await rejection(EtcdClient.connect({ endpoints: etcd.endpoints, ...auth('wrong-Pa55word') }));
    });
    expect(err).to.be.instanceOf(EtcdError);
    expect((err as EtcdError).grpcCode).to.equal(3);
    expect(err!.message).to.include('authentication failed');
    expect(err!.message + String(err!.stack)).to.not.include('wrong-Pa55word');
    expect(text).to.include('Auth.Authenticate');
    expect(text).to.not.include('wrong-Pa55word');
  });

  it('refuses calls without credentials', async () => {
    const client = await EtcdClient.connect({ endpoints: etcd.endpoints });
    try {
      const err = await rejection(client.put({ key: 'k', value: 'v' }));
      expect(err).to.be.instanceOf(EtcdError);
      expect((err as EtcdError).details).to.match(/user name is empty|permission denied/);
    } finally {
      await client.close();
    }
  });

  it('authenticates, sends the token with every call and stream, and never publishes password or token', async () => {
    let client: EtcdClient | undefined;
    const text = await publishedDuring(async () => {
      client = await EtcdClient.connect({ endpoints: etcd.endpoints, ...auth() });
      await client.put({ key: 'auth/k', value: 'v' });
      expect((await client.range({ key: 'auth/k' })).kvs).to.have.length(1);
      const locker = new EtcdLocker(client);
      await locker.using('auth-lock', async () => {});
      await locker.close();
    });
    expect(text).to.include('"token":"[redacted]"');
    expect(text).to.include('"password":"[redacted]"');
    expect(text).to.not.include(APP_PASSWORD);
    // The token itself: whatever it was, no payload carries a simple token's shape ("<16 letters>.<n>").
    expect(text).to.not.match(/"token":"[A-Za-z]{16}\.\d+"/);
    await client!.close();
  });

  it('re-authenticates once when its token has expired, for calls and for watches', async () => {
    const client = await EtcdClient.connect({ endpoints: etcd.endpoints, ...auth() });
    try {
      await sleep(2500); // idle past the 1 s token TTL
      let authCalls = 0;
      const onCall = (m: unknown): void => void ((m as { method: string }).method === 'Auth.Authenticate' && authCalls++);
      dc.subscribe('wirelock:etcd:call', onCall);
      try {
        await client.put({ key: 'auth/again', value: '1' });
        expect(authCalls).to.equal(1);
        await sleep(2500);
        // The Watch stream opens with the expired token: etcd cancels the create, the client re-authenticates.
        const seen: string[] = [];
        const errors: unknown[] = [];
        let created = false;
        client.watch('auth/again', {}, {
          onEvents: (evs) => evs.forEach((e) => seen.push(e.kv!.value.toString())),
          onError: (e) => errors.push(e),
          onCreated: () => (created = true),
        });
        await eventually(() => created, 5000, 'watch created');
        expect(authCalls).to.equal(2);
        await client.put({ key: 'auth/again', value: '2' });
        await eventually(() => seen.includes('2'), 5000, 'watch event after re-authentication');
        expect(errors).to.deep.equal([]);
      } finally {
        dc.unsubscribe('wirelock:etcd:call', onCall);
      }
    } finally {
      await client.close();
    }
  });
});

describe('etcd over TLS (a 3-member cluster, certificates made by the test)', function () {
  this.timeout(30_000);
  let certs: TlsFiles;
  let cluster: EtcdCluster;

  before(async () => {
    certs = makeTlsFiles();
    cluster = await startEtcdCluster(3, {
      tls: { certFile: certs.serverCertFile, keyFile: certs.serverKeyFile, caFile: certs.caFile, clientCertAuth: true },
    });
  });
  after(async () => {
    await cluster?.stop();
    certs?.remove();
  });

  it('serves https endpoints', () => {
    expect(cluster.endpoints.every((e) => e.startsWith('https://127.0.0.1:'))).to.equal(true);
  });

  it('connects with the CA and a client certificate, and locks', async () => {
    const client = await EtcdClient.connect({
      endpoints: cluster.endpoints,
      tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey },
    });
    try {
      expect((await client.memberList()).members).to.have.length(3);
      const locker = new EtcdLocker(client);
      const lock = await locker.acquire('tls');
      expect(lock.token).to.match(/^wirelock\/tls\/[0-9a-f]+$/);
      await lock.release();
      await locker.close();
    } finally {
      await client.close();
    }
  });

  it('fails without a client certificate, or when the server is not signed by the given CA', async () => {
    const noCert = await rejection(EtcdClient.connect({ endpoints: cluster.endpoints, tls: { ca: certs.ca }, callTimeoutMs: 800 }));
    expect((noCert as EtcdError).code).to.be.oneOf(['WL_CONNECTION', 'WL_ETCD', 'WL_TIMEOUT']);
    const wrongCa = await rejection(
      EtcdClient.connect({ endpoints: cluster.endpoints, tls: { ca: certs.otherCa, cert: certs.clientCert, key: certs.clientKey }, callTimeoutMs: 800 }),
    );
    expect((wrongCa as EtcdError).code).to.be.oneOf(['WL_CONNECTION', 'WL_TIMEOUT']);
    const plain = await rejection(EtcdClient.connect({ endpoints: cluster.endpoints.map((e) => e.replace('https', 'http')), callTimeoutMs: 800 }));
    expect((plain as EtcdError).code).to.be.oneOf(['WL_CONNECTION', 'WL_ETCD', 'WL_TIMEOUT']);
  });
});
