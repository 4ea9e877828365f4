import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import { inspect } from 'node:util';
import { ConnectionError, RedisClient, RedisLocker, RespError } from '../src/index.js';
import { startRedis, type RedisServer } from '../src/testing/servers.js';
import { FakeServer } from './support/fake-server.js';
import { makeTlsFiles, type TlsFiles } from './support/tls.js';
import { rejection } from './support/wait.js';

/** Everything an error shows: message, stack, cause chain and own properties. */
function everything(value: unknown): string {
  return inspect(value, { depth: Infinity, showHidden: true });
}

const PASSWORD = 'S3cret-default:pass@word';
const ACL_USER = 'locker';
const ACL_PASSWORD = 'Acl-user-pw-7731';

describe('RESP security: AUTH and ACL', () => {
  let server: RedisServer;
  before(async () => {
    server = await startRedis({
      password: PASSWORD,
      // An ACL user restricted to keys and channels under app:
      args: ['--user', ACL_USER, 'on', `>${ACL_PASSWORD}`, '~app:*', '&app:*', '+@all'],
    });
  });
  after(async () => {
    await server?.stop();
  });

  it('AUTH with the default user works (URL with a percent-encoded password)', async () => {
    expect(server.url).to.contain(encodeURIComponent(PASSWORD));
    const client = await RedisClient.connect(server.url);
    try {
      expect(await client.send(['PING'])).to.equal('PONG');
      expect(await client.send(['ACL', 'WHOAMI'])).to.equal('default');
    } finally {
      await client.close();
    }
  });

  it('a wrong password rejects with RespError WRONGPASS, and nothing shows the password', async () => {
    const wrong = 'Wr0ng-pa55word-xyz';
    const events: unknown[] = [];
    const names = ['wirelock:resp:connect', 'wirelock:resp:command', 'wirelock:resp:reply', 'wirelock:resp:error', 'wirelock:resp:close'];
    const handler = (payload: unknown): void => void events.push(payload);
    for (const name of names) dc.subscribe(name, handler);
    try {
      for (const url of [
        `redis://:${wrong}@${server.host}:${server.port}`,
        `redis://${ACL_USER}:${wrong}@${server.host}:${server.port}`,
      ]) {
        const err = await rejection(RedisClient.connect(url));
        expect(err).to.be.instanceOf(RespError);
        expect((err as RespError).prefix).to.equal('WRONGPASS');
        expect(err.code).to.equal('WL_RESP');
        expect(err.message).to.not.contain(wrong);
        expect(everything(err)).to.not.contain(wrong);
      }
      const err = await rejection(RedisClient.connect({ host: server.host, port: server.port, password: wrong }));
      expect((err as RespError).prefix).to.equal('WRONGPASS');
      expect(everything(err)).to.not.contain(wrong);
    } finally {
      for (const name of names) dc.unsubscribe(name, handler);
    }
    expect(events.length).to.be.above(0);
    expect(everything(events)).to.not.contain(wrong);
  });


  it('no password for a server that needs one: connect() rejects with NOAUTH and says so, and a locker never starts', async () => {
    const started = performance.now();
    for (const db of [0, 3]) {
      // db 0: the handshake's PING asks; db 3: SELECT gets the NOAUTH.
      const err = await rejection(RedisClient.connect({ host: server.host, port: server.port, db }));
      expect(err, `db ${db}`).to.be.instanceOf(RespError);
      expect((err as RespError).prefix).to.equal('NOAUTH');
      expect(err.code).to.equal('WL_RESP');
      expect(err.message).to.contain('server requires a password');
    }
    expect(performance.now() - started).to.be.below(2000);
  });
  it('a malformed URL is rejected without echoing its password', async () => {
    const secret = 'url-secret-4242';
    for (const url of [`redis://:${secret}@127.0.0.1:99999`, `redis://u:${secret}@[::1`, `redis://:${secret}@127.0.0.1/x`]) {
      const err = await rejection(RedisClient.connect(url));
      expect(err).to.be.instanceOf(TypeError);
      expect(everything(err), url).to.not.contain(secret);
    }
  });

  it('diagnostics redact AUTH arguments; util.inspect(client) shows no password', async () => {
    const commands: any[] = [];
    const all: unknown[] = [];
    const onCommand = (p: unknown): void => void commands.push(p);
    const onAny = (p: unknown): void => void all.push(p);
    const names = ['wirelock:resp:connect', 'wirelock:resp:reply', 'wirelock:resp:error', 'wirelock:resp:close'];
    dc.subscribe('wirelock:resp:command', onCommand);
    for (const name of names) dc.subscribe(name, onAny);
    let client: RedisClient | undefined;
    let aclClient: RedisClient | undefined;
    try {
      client = await RedisClient.connect(server.url);
      aclClient = await RedisClient.connect(`redis://${ACL_USER}:${ACL_PASSWORD}@${server.host}:${server.port}`);
      await client.send(['PING']);
      // AUTH sent by hand is redacted too, whatever its outcome.
      await client.send(['AUTH', ACL_USER, ACL_PASSWORD]);
      await rejection(client.send(['AUTH', 'nobody', ACL_PASSWORD]));
      expect(inspect(client)).to.not.contain(PASSWORD);
      expect(inspect(client)).to.not.contain(encodeURIComponent(PASSWORD));
      expect(inspect(aclClient)).to.contain(ACL_USER);
      expect(inspect(aclClient)).to.not.contain(ACL_PASSWORD);
      expect(String(client)).to.not.contain(PASSWORD);
    } finally {
      dc.unsubscribe('wirelock:resp:command', onCommand);
      for (const name of names) dc.unsubscribe(name, onAny);
      await client?.close();
      await aclClient?.close();
    }
    const auths = commands.filter((c) => String(c.args[0]).toUpperCase() === 'AUTH');
    expect(auths.length).to.equal(4);
    for (const auth of auths) {
      expect(auth.args.slice(1)).to.deep.equal(auth.args.slice(1).map(() => '[redacted]'));
    }
    for (const secret of [PASSWORD, ACL_PASSWORD]) {
      expect(everything(commands)).to.not.contain(secret);
      expect(everything(all)).to.not.contain(secret);
    }
  });

  it('an ACL user restricted to app:* can lock under that prefix and gets NOPERM outside it', async () => {
    const client = await RedisClient.connect(`redis://${ACL_USER}:${ACL_PASSWORD}@${server.host}:${server.port}`);
    const owner = await RedisClient.connect(`redis://${ACL_USER}:${ACL_PASSWORD}@${server.host}:${server.port}`);
    try {
      expect(await client.send(['ACL', 'WHOAMI'])).to.equal(ACL_USER);
      const locker = new RedisLocker(client, { prefix: 'app:' });
      const ownerLocker = new RedisLocker(owner, { prefix: 'app:' });
      // The whole cycle: acquire, a waiter woken by the release on app:{…}:release, extend, release.
      const held = await ownerLocker.acquire('job', { ttlMs: 10_000 });
      const waiting = locker.acquire('job', { ttlMs: 5000, waitTimeoutMs: 5000 });
      setTimeout(() => void held.release(), 100);
      const lock = await waiting;
      expect(lock.fence > held.fence).to.equal(true);
      await lock.extend(5000);
      await lock.release();
      await locker.close();
      await ownerLocker.close();

      const outside = new RedisLocker(client, { prefix: 'other:' });
      const err = await rejection(outside.acquire('job', { ttlMs: 1000 }));
      expect(err).to.be.instanceOf(RespError);
      expect((err as RespError).prefix).to.equal('NOPERM');
      const err2 = await rejection(outside.tryAcquire('job', { ttlMs: 1000 }));
      expect((err2 as RespError).prefix).to.equal('NOPERM');
      await outside.close();
      expect((await rejection(client.send(['SET', 'other:x', '1']))) as RespError).to.have.property('prefix', 'NOPERM');
    } finally {
      await client.close();
      await owner.close();
    }
  });
});

describe('RESP security: TLS', () => {
  let files: TlsFiles;
  let server: RedisServer;
  let selfSigned: RedisServer;
  before(async () => {
    files = makeTlsFiles();
    [server, selfSigned] = await Promise.all([
      startRedis({ tls: { certFile: files.serverCertFile, keyFile: files.serverKeyFile, caFile: files.caFile } }),
      startRedis({ tls: { certFile: files.selfSignedCertFile, keyFile: files.selfSignedKeyFile, caFile: files.selfSignedCertFile } }),
    ]);
  });
  after(async () => {
    await Promise.all([server?.stop(), selfSigned?.stop()]);
    files?.remove();
  });

  it('rediss:// with the test CA works (by IP and by host name)', async () => {
    expect(server.url).to.match(/^rediss:\/\//);
    for (const host of ['127.0.0.1', 'localhost']) {
      const client = await RedisClient.connect(`rediss://${host}:${server.port}`, { tls: { ca: files.ca } });
      try {
        expect(await client.send(['PING'])).to.equal('PONG');
        expect(String(await client.send(['CLIENT', 'INFO']))).to.match(/ db=0 /);
      } finally {
        await client.close();
      }
    }
    const viaOptions = await RedisClient.connect({ host: '127.0.0.1', port: server.port, tls: { ca: files.ca } });
    try {
      expect(await viaOptions.send(['ECHO', 'over tls'])).to.equal('over tls');
    } finally {
      await viaOptions.close();
    }
  });

  it('without the CA the server is rejected', async () => {
    const err = await rejection(RedisClient.connect(`rediss://127.0.0.1:${server.port}`));
    expect(err).to.be.instanceOf(ConnectionError);
    expect((err.cause as NodeJS.ErrnoException).code).to.be.oneOf(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN']);
  });

  it('a self-signed server is rejected (also with a different CA)', async () => {
    const plain = await rejection(RedisClient.connect(`rediss://127.0.0.1:${selfSigned.port}`));
    expect(plain).to.be.instanceOf(ConnectionError);
    expect((plain.cause as NodeJS.ErrnoException).code).to.equal('DEPTH_ZERO_SELF_SIGNED_CERT');
    const withOtherCa = await rejection(RedisClient.connect(`rediss://127.0.0.1:${selfSigned.port}`, { tls: { ca: files.ca } }));
    expect(withOtherCa).to.be.instanceOf(ConnectionError);
  });

  it('no plaintext fallback: a TLS client never sends RESP (or its password) in the clear', async () => {
    const fake = await FakeServer.start({ onCommand: () => '+OK\r\n' });
    try {
      const secret = 'never-in-the-clear-123';
      const err = await rejection(
        RedisClient.connect(`rediss://:${secret}@127.0.0.1:${fake.port}`, { connectTimeoutMs: 500, tls: { ca: files.ca } }),
      );
      expect(err).to.be.instanceOf(ConnectionError);
      expect(err.message).to.not.contain(secret);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(fake.connections.length).to.be.at.least(1);
      for (const conn of fake.connections) {
        const bytes = Buffer.concat(conn.raw);
        expect(bytes[0], 'a TLS record, not RESP').to.equal(0x16);
        expect(bytes.toString('latin1')).to.not.contain(secret);
        expect(conn.commands).to.deep.equal([]);
      }
    } finally {
      await fake.close();
    }
  });
});
