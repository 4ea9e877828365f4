/**
 * RedisClient and RedisLocker on a Sentinel-managed master, against real redis-server and
 * redis-sentinel processes (wirelock/testing's startRedisSentinel): discovery (also with a sentinel
 * down, a wrong master name, sentinel credentials), following a forced failover (`+switch-master`),
 * and the locks across it: kept when replication carried them over, lost with reason 'failover' at
 * once when it did not, and a waiter that still gets the lock from the new master.
 */
import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import { ConnectionError, LockLostError, RedisClient, RedisLocker } from '../src/index.js';
import type { RespMasterPayload } from '../src/diagnostics.js';
import { startRedisSentinel, type RedisSentinel } from '../src/testing/servers.js';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually } from './support/etcd.js';
import { runProcess } from './support/run.js';
import { makeTlsFiles, type TlsFiles } from './support/tls.js';
import { sleep } from './support/wait.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const addr = (a: { host: string; port: number }): string => `${a.host}:${a.port}`;

describe('Redis Sentinel', function () {
  this.timeout(60_000);
  let setup: RedisSentinel;
  const clients: RedisClient[] = [];
  const connect = async (url: string, opts?: Parameters<typeof RedisClient.connect>[1]): Promise<RedisClient> => {
    const c = await RedisClient.connect(url, opts);
    clients.push(c);
    return c;
  };

  before(async () => {
    // Two replicas: after a failover the sentinels point the other one at the new master at once, so
    // the next test has an in-sync replica without waiting ~10 s for the old master to be turned into one.
    setup = await startRedisSentinel({ replicas: 2, sentinels: 3 });
  });
  after(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    await setup?.stop();
  });

  it('finds the master through the sentinels and confirms it with ROLE', async () => {
    const events: RespMasterPayload[] = [];
    const on = (m: unknown): void => void events.push(m as RespMasterPayload);
    dc.subscribe('wirelock:resp:master', on);
    try {
      const c = await connect(setup.url);
      const master = await setup.master();
      expect(c.address).to.equal(addr(master));
      expect(await c.send(['SET', 'sentinel:a', '1'])).to.equal('OK');
      const role = (await c.send(['ROLE'])) as unknown[];
      expect(role[0]).to.equal('master');
      expect(events.some((e) => e.cause === 'discovered' && e.address === addr(master) && e.masterName === setup.masterName)).to.equal(true);
    } finally {
      dc.unsubscribe('wirelock:resp:master', on);
    }
  });

  it('asks the next sentinel when one is down (paused: it accepts and never answers)', async () => {
    const first = setup.sentinels[0]!;
    first.pause();
    try {
      const c = await connect(setup.url, { connectTimeoutMs: 500, commandTimeoutMs: 500 });
      expect(c.address).to.equal(addr(await setup.master()));
    } finally {
      first.resume();
    }
  });

  it('a master name no sentinel monitors is a ConnectionError that says so', async () => {
    const url = setup.url.replace(`/${setup.masterName}`, '/nosuchmaster');
    const err = await RedisClient.connect(url).then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(ConnectionError);
    expect(String((err as Error).message)).to.match(/does not monitor "nosuchmaster"/);
  });

  it('follows a forced failover: commands go to the new master, announced on wirelock:resp:master', async () => {
    const c = await connect(setup.url);
    const before = await setup.master();
    expect(c.address).to.equal(addr(before));
    const events: RespMasterPayload[] = [];
    const on = (m: unknown): void => void events.push(m as RespMasterPayload);
    dc.subscribe('wirelock:resp:master', on);
    try {
      const after = await setup.failover();
      expect(addr(after)).to.not.equal(addr(before));
      await eventually(() => c.address === addr(after), 10_000, 'the client on the new master');
      expect(await c.send(['SET', 'sentinel:b', '2'])).to.equal('OK');
      expect(((await c.send(['ROLE'])) as unknown[])[0]).to.equal('master');
      expect(events.find((e) => e.cause === 'switch-master')).to.include({ address: addr(after), previous: addr(before) });
    } finally {
      dc.unsubscribe('wirelock:resp:master', on);
    }
  });

  it('a held lock that replication carried over is kept through a failover, and renewed on the new master', async () => {
    const c = await connect(setup.url);
    const locker = new RedisLocker(c);
    // The TTL outlasts the failover. No renewal reaches the new master from the promotion until the
    // client finds it (2.3-2.5 s here when forced, more under load), and its copy expires one TTL after
    // the last renewal it got, up to ttl/3 before the promotion. 3 s was sometimes too short in CI.
    const ttlMs = 8000;
    const lock = await locker.acquire('kept', { ttlMs });
    // The lock is on the replica (which may still be syncing after the previous test's failover).
    await eventually(async () => (await c.send(['WAIT', 1, 1000])) === 1, 10_000, 'the replica acknowledging');
    await setup.failover();
    await eventually(async () => c.connected && c.address === addr(await setup.master()), 10_000, 'the client on the new master');
    await sleep(ttlMs + 500); // past one TTL: it lives only if renewed on the new master
    expect(lock.signal.aborted, String(lock.signal.reason)).to.equal(false);
    expect(await c.send(['GET', 'wirelock:{kept}'])).to.equal(lock.token);
    await lock.release();
    await locker.close();
  });

  it("a held lock the new master does not have aborts with LockLostError('failover') at once, long before its TTL", async () => {
    const c = await connect(setup.url);
    const locker = new RedisLocker(c);
    const lock = await locker.acquire('gone', { ttlMs: 30_000 });
    await eventually(async () => (await c.send(['WAIT', 1, 1000])) === 1, 10_000, 'the replica acknowledging');
    // The replicas (whichever is promoted) lose the key: as if replication had not carried it over.
    // Settled first: failover() waits for that itself, and a replica resynced meanwhile would get the
    // key back from the master.
    await setup.settled();
    const master = await setup.master();
    const admins = await Promise.all(setup.nodes.filter((n) => n.port !== master.port).map((n) => connect(n.url)));
    for (const admin of admins) {
      await admin.send(['CONFIG', 'SET', 'replica-read-only', 'no']);
      await admin.send(['DEL', 'wirelock:{gone}']);
    }
    const start = performance.now();
    await setup.failover();
    await eventually(() => lock.signal.aborted, 10_000, 'the loss signal');
    const err = lock.signal.reason as LockLostError;
    expect(err).to.be.instanceOf(LockLostError);
    expect(err.reason).to.equal('failover');
    expect(performance.now() - start, 'ms from the failover to the loss').to.be.below(15_000);
    for (const admin of admins) await admin.send(['CONFIG', 'SET', 'replica-read-only', 'yes']).catch(() => {});
    await locker.close();
  });

  it('a waiter queued before a failover gets the lock from the new master when the holder releases', async () => {
    const [a, b] = await Promise.all([connect(setup.url), connect(setup.url)]);
    const [la, lb] = [new RedisLocker(a), new RedisLocker(b)];
    const held = await la.acquire('handoff', { ttlMs: 20_000 });
    const waiting = lb.acquire('handoff', { ttlMs: 20_000, waitTimeoutMs: 30_000 });
    await sleep(200);
    await eventually(async () => (await a.send(['WAIT', 1, 1000])) === 1, 10_000, 'the replica acknowledging');
    await setup.failover();
    await eventually(async () => a.address === addr(await setup.master()) && b.address === addr(await setup.master()), 10_000, 'both clients on the new master');
    const released = performance.now();
    await held.release();
    const got = await waiting;
    expect(performance.now() - released, 'ms from the release to the grant (woken, not at the TTL)').to.be.below(3000);
    expect(got.fence > held.fence).to.equal(true);
    await got.release();
    await Promise.all([la.close(), lb.close()]);
  });
});

describe('Redis Sentinel with credentials', function () {
  this.timeout(60_000);
  let setup: RedisSentinel;
  before(async () => {
    setup = await startRedisSentinel({ replicas: 1, sentinels: 1, password: 'data-pw-7Q', sentinelPassword: 'sentinel-pw-3K' });
  });
  after(async () => {
    await setup?.stop();
  });

  it('logs in to the sentinels with their own password and to the master with the data password; errors show neither', async () => {
    const refused = await RedisClient.connect(setup.url).then(() => undefined, (e: unknown) => e as Error);
    expect(refused).to.be.instanceOf(ConnectionError);
    expect(refused!.message).to.match(/NOAUTH/);
    const wrong = await RedisClient.connect(setup.url, { sentinelPassword: 'not-it-9Z' }).then(() => undefined, (e: unknown) => e as Error);
    expect(wrong).to.be.instanceOf(ConnectionError);
    for (const e of [refused!, wrong!]) {
      expect(`${e.message} ${String((e as { cause?: unknown }).cause)}`).to.not.match(/data-pw-7Q|sentinel-pw-3K|not-it-9Z/);
    }
    const c = await RedisClient.connect(setup.url, { sentinelPassword: 'sentinel-pw-3K' });
    try {
      expect(await c.send(['SET', 'k', 'v'])).to.equal('OK');
    } finally {
      await c.close();
    }
  });

  it('the CLI takes the Sentinel URL as one --redis URL, and the sentinels\' password from WIRELOCK_SENTINEL_PASSWORD', async () => {
    const cli = (args: string[]): ReturnType<typeof runProcess> =>
      runProcess(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), ...args], { cwd: root, env: { WIRELOCK_SENTINEL_PASSWORD: 'sentinel-pw-3K' } });
    const r = await cli(['run', '--redis', setup.url, '--key', 'cli', '--', 'sh', '-c', 'echo "held $WIRELOCK_FENCE"']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/^held \d+/);
    expect(`${r.stdout}${r.stderr}`).to.not.match(/data-pw-7Q|sentinel-pw-3K/);
    const status = await cli(['status', '--redis', setup.url, '--key', 'cli']);
    expect(status.code, status.stderr).to.equal(0);
  });
});

describe('Redis Sentinel over TLS', function () {
  this.timeout(60_000);
  let files: TlsFiles;
  let setup: RedisSentinel;
  before(async () => {
    files = makeTlsFiles();
    setup = await startRedisSentinel({
      replicas: 1,
      sentinels: 1,
      tls: { certFile: files.serverCertFile, keyFile: files.serverKeyFile, caFile: files.caFile },
    });
  });
  after(async () => {
    await setup?.stop();
    files?.remove();
  });

  it('rediss+sentinel:// asks the sentinels and talks to the master over TLS, with the private CA; without it, refused', async () => {
    expect(setup.url).to.match(/^rediss\+sentinel:\/\//);
    const c = await RedisClient.connect(setup.url, { tls: { ca: files.ca } });
    try {
      expect(c.address).to.equal(addr(await setup.master()));
      expect(await c.send(['SET', 'over-tls', '1'])).to.equal('OK');
    } finally {
      await c.close();
    }
    const untrusted = await RedisClient.connect(setup.url, { connectTimeoutMs: 1000 }).then(() => undefined, (e: unknown) => e);
    expect(untrusted).to.be.instanceOf(ConnectionError);
    // The sentinels' TLS may differ from the master's: a plain connection to a TLS-only sentinel fails.
    const plainSentinels = await RedisClient.connect(setup.url, { tls: { ca: files.ca }, sentinelTls: false, connectTimeoutMs: 1000, commandTimeoutMs: 1000 }).then(() => undefined, (e: unknown) => e);
    expect(plainSentinels).to.be.instanceOf(ConnectionError);
  });
});
