/**
 * Error replies that a server gives for a while and then stops giving: after a restart (LOADING),
 * around a failover (READONLY, MASTERDOWN), or while another client's script runs (BUSY). A waiter
 * with a deadline must ride them out, backing off, like a refused connection; an error reply that
 * waiting cannot fix (NOPERM) still rejects at once.
 *
 * Each reply is produced for real, by a redis-server put in that state. Redlock runs on one node here:
 * that node's reply alone decides, as a quorum of nodes in the same state would.
 */
import { expect } from 'chai';
import { QuorumError, RedisClient, RedisLocker, Redlock, RespError, type Lock, type Locker } from '../src/index.js';
import { freePort, startRedis, type RedisServer, type RedisServerOptions } from '../src/testing/servers.js';
import { makeDump, startLoading, type Dump } from './support/loading-redis.js';
import { rejection, sleep, waitFor } from './support/wait.js';

interface Outcome<T> {
  value?: T;
  error?: unknown;
  /** How long the promise took to settle. */
  ms: number;
}

/** Settles `p` without ever leaving a rejection unhandled, and times it. */
async function outcome<T>(p: Promise<T>): Promise<Outcome<T>> {
  const start = performance.now();
  try {
    return { value: await p, ms: performance.now() - start };
  } catch (error) {
    return { error, ms: performance.now() - start };
  }
}

function granted(r: Outcome<Lock>): Lock {
  if (r.error !== undefined) throw new Error(`acquire rejected after ${Math.round(r.ms)} ms instead of waiting: ${String(r.error)}`);
  return r.value!;
}

/** The error reply behind a locker's rejection: RedisLocker's own, or the one node's cause in Redlock's QuorumError. */
function errorReply(err: unknown): RespError | undefined {
  if (err instanceof RespError) return err;
  if (err instanceof QuorumError) {
    const cause = err.nodes[0]?.cause;
    return cause instanceof RespError ? cause : undefined;
  }
  return undefined;
}

/** What the server answers to a write from a script now: the prefix of its error reply. */
async function writeRefusal(admin: RedisClient): Promise<string | undefined> {
  const err = await admin.send(['EVAL', "return redis.call('SET', KEYS[1], '1')", 1, 'probe']).then(
    () => undefined,
    (e: unknown) => e,
  );
  return err instanceof RespError ? err.prefix : undefined;
}

/** A Lua busy loop of `ms` milliseconds (on the server's clock). */
const BUSY_LOOP = `local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > tonumber(ARGV[1]) * 1000
return 1`;

const kinds: Array<{ name: string; make: (client: RedisClient) => Locker }> = [
  { name: 'RedisLocker', make: (client) => new RedisLocker(client) },
  { name: 'Redlock', make: (client) => new Redlock([client]) },
];

describe('Redis error replies that are transient while waiting', function () {
  let master: RedisServer;
  let busy: RedisServer;
  let acl: RedisServer;
  let dump: Dump;
  const cleanups: Array<() => Promise<unknown>> = [];

  async function server(opts: RedisServerOptions): Promise<RedisServer> {
    const s = await startRedis(opts);
    cleanups.push(() => s.stop());
    return s;
  }
  async function connect(url: string | { port: number; commandTimeoutMs?: number }): Promise<RedisClient> {
    const c = await RedisClient.connect(url);
    cleanups.push(() => c.close());
    return c;
  }
  function locker(make: (client: RedisClient) => Locker, client: RedisClient): Locker {
    const l = make(client);
    cleanups.unshift(() => l.close()); // before its client closes
    return l;
  }

  before(async () => {
    [master, busy, acl, dump] = await Promise.all([
      startRedis({ args: ['--repl-diskless-sync-delay', '0'] }), // a replica syncs at once, not after 5 s
      startRedis({ args: ['--busy-reply-threshold', '100'] }),
      startRedis({ args: ['--user', 'locker', 'on', '>locker-pw', '~app:*', '&app:*', '+@all'] }),
      makeDump(2000),
    ]);
  });
  afterEach(async () => {
    const all = cleanups.splice(0);
    for (const cleanup of all) await cleanup().catch(() => {});
  });
  after(async () => {
    await Promise.all([master?.stop(), busy?.stop(), acl?.stop()]);
    dump?.remove();
  });

  for (const { name, make } of kinds) {
    describe(name, () => {
      it('READONLY from a replica: the acquire waits, and gets the lock once the replica is promoted', async () => {
        const replica = await server({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
        const admin = await connect(replica.url);
        await waitFor(async () => String(await admin.send(['INFO', 'replication'])).includes('master_link_status:up'), 5000, 'the replica to sync');
        expect(await writeRefusal(admin)).to.equal('READONLY');

        const acquiring = outcome(locker(make, await connect(replica.url)).acquire('ro', { ttlMs: 5000, waitTimeoutMs: 5000 }));
        await sleep(300);
        await admin.send(['REPLICAOF', 'NO', 'ONE']);
        const r = await acquiring;
        const lock = granted(r);
        expect(r.ms).to.be.at.least(250); // it waited for the promotion
        expect(await admin.send(['GET', 'wirelock:{ro}'])).to.equal(lock.token);
        await lock.release();
      });

      it('MASTERDOWN from a replica that serves no stale data: the acquire waits, and gets the lock once it is promoted', async () => {
        const nobody = await freePort(); // the replica's master is unreachable
        const replica = await server({ args: ['--replicaof', '127.0.0.1', String(nobody), '--replica-serve-stale-data', 'no'] });
        const admin = await connect(replica.url);
        expect(await writeRefusal(admin)).to.equal('MASTERDOWN');

        const acquiring = outcome(locker(make, await connect(replica.url)).acquire('md', { ttlMs: 5000, waitTimeoutMs: 5000 }));
        await sleep(300);
        await admin.send(['REPLICAOF', 'NO', 'ONE']);
        const r = await acquiring;
        const lock = granted(r);
        expect(r.ms).to.be.at.least(250);
        expect(await admin.send(['GET', 'wirelock:{md}'])).to.equal(lock.token);
        await lock.release();
      });

      it('BUSY while another client runs a long script: the acquire waits, and gets the lock once the script ends', async () => {
        const scripter = await connect({ port: busy.port, commandTimeoutMs: 10_000 });
        const probe = await connect(busy.url);
        const script = outcome(scripter.send(['EVAL', BUSY_LOOP, 0, 1500]));
        let scriptEnded = Infinity;
        void script.then(() => (scriptEnded = performance.now()));
        await waitFor(
          async () => (await probe.send(['PING']).then(() => undefined, (e: unknown) => errorReply(e)?.prefix)) === 'BUSY',
          3000,
          'the server to answer BUSY',
        );

        const acquiring = outcome(locker(make, await connect(busy.url)).acquire('busy', { ttlMs: 5000, waitTimeoutMs: 8000 }));
        const r = await acquiring;
        const lock = granted(r);
        expect((await script).error).to.equal(undefined);
        expect(performance.now()).to.be.at.least(scriptEnded); // granted only after the script was done
        expect(await probe.send(['GET', 'wirelock:{busy}'])).to.equal(lock.token);
        await lock.release();
      });

      it('LOADING from a server loading its data set after a restart: the acquire waits, and gets the lock once it is loaded', async () => {
        const loading = await startLoading(dump, 500); // 2000 keys × 500 µs: about a second of LOADING
        cleanups.push(() => loading.stop());
        const probe = await connect(loading.url);
        await waitFor(
          async () => (await probe.send(['PING']).then(() => undefined, (e: unknown) => errorReply(e)?.prefix)) === 'LOADING',
          3000,
          'the server to answer LOADING',
        );

        const acquiring = outcome(locker(make, await connect(loading.url)).acquire('loading', { ttlMs: 5000, waitTimeoutMs: 10_000 }));
        const r = await acquiring;
        const lock = granted(r);
        expect(String(await probe.send(['INFO', 'persistence']))).to.match(/\bloading:0\b/);
        expect(await probe.send(['EXISTS', 'filler:1999'])).to.equal(1); // the whole data set was loaded
        expect(await probe.send(['GET', 'wirelock:{loading}'])).to.equal(lock.token);
        await lock.release();
      });

      it('NOPERM is final: the acquire rejects at once with the error reply, not at its deadline', async () => {
        // The ACL user may use keys under app: only; the default prefix wirelock: is outside it.
        const client = await connect(`redis://locker:locker-pw@127.0.0.1:${acl.port}`);
        const start = performance.now();
        const err = await rejection(locker(make, client).acquire('denied', { ttlMs: 5000, waitTimeoutMs: 5000 }), 8000);
        expect(performance.now() - start).to.be.below(2000);
        expect(errorReply(err)?.prefix, String(err)).to.equal('NOPERM');
      });
    });
  }
});
