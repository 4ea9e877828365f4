/**
 * Redaction, end to end: every secret is a sentinel the test knows, the library is driven through
 * its normal and its failure paths (wrong passwords, NOPERM, lost connections, re-authentication,
 * a worker process), and everything it produced is searched for the sentinels:
 * - stdout/stderr of this process and of a worker process,
 * - every error message (with stack, cause chain and own properties),
 * - util.inspect of clients, lockers and locks,
 * - every payload on every wirelock:* diagnostics channel.
 * Zero hits allowed for Redis passwords and etcd passwords and tokens, in text, hex or base64.
 *
 * etcd picks its own tokens, so a TokenProxy in front of it hands the client sentinel tokens instead
 * (and swaps in a real one on the way to etcd), including a forced re-authentication.
 *
 * Lock tokens are holder identities, not credentials: they are published on the lock diagnostics
 * channels by design, and a lock (or a locker holding it) shows its own. They must not appear in errors.
 */
import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import { inspect } from 'node:util';
import {
  EtcdClient, EtcdLocker, RedisClient, RedisLocker, Redlock, RespError, type Lock,
} from '../src/index.js';
import { startEtcd, startRedis, type EtcdServer, type RedisServer } from '../src/testing/servers.js';
import { TokenProxy } from './support/faults-token-proxy.js';
import { FaultWorker, stopAllWorkers } from './support/faults-workers.js';

const REDIS_PW = 'SNTL-redis-pw-7f3a2e';
const ACL_PW = 'SNTL-acl-pw-91c2b4';
const WRONG_PW = 'SNTL-wrong-pw-0b6d1f';
const NEW_PW = 'SNTL-new-pw-5e8a90';
const ETCD_ROOT_PW = 'SNTL-etcd-root-pw-3c1d';
const ETCD_PW = 'SNTL-etcd-pw-4d8e77';
const ETCD_TOKENS = ['SNTL-etcd-token-one-5b1c', 'SNTL-etcd-token-two-a77e', 'SNTL-etcd-token-three-c3d9'];
const SECRETS = [REDIS_PW, ACL_PW, WRONG_PW, NEW_PW, ETCD_ROOT_PW, ETCD_PW, ...ETCD_TOKENS];

/** The least an ACL user needs to use RedisLocker and Redlock under one prefix (see docs/safety.md). */
const LOCK_COMMANDS = [
  '+evalsha', '+eval', '+set', '+get', '+del', '+exists', '+incr', '+pttl', '+pexpire', '+publish', '+time',
  '+zadd', '+zrem', '+zrange', '+zrangebyscore', '+zremrangebyscore', '+zscore', '+subscribe', '+unsubscribe',
];

const CHANNELS = [
  'resp:connect', 'resp:command', 'resp:reply', 'resp:error', 'resp:close', 'resp:message',
  'lock:acquire', 'lock:wait', 'lock:extend', 'lock:release', 'lock:lost',
  'etcd:call', 'etcd:response', 'etcd:error', 'etcd:stream:open', 'etcd:stream:send', 'etcd:stream:receive', 'etcd:stream:close', 'etcd:session',
].map((c) => `wirelock:${c}`);

/**
 * Everything a value shows, as text: util.inspect with hidden properties, plus a walk that turns
 * Buffers into text (inspect shows them as hex) and follows errors' causes and own properties.
 */
function dump(value: unknown): string {
  const out: string[] = [inspect(value, { depth: 6, showHidden: true, maxArrayLength: 200, maxStringLength: 20_000, breakLength: Infinity })];
  const seen = new Set<unknown>();
  const walk = (v: unknown, depth: number): void => {
    if (depth > 8 || v === null || v === undefined) return;
    if (typeof v === 'string') return void out.push(v.slice(0, 20_000));
    if (typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    if (v instanceof Uint8Array) return void out.push(Buffer.from(v.subarray(0, 20_000)).toString('latin1'));
    if (v instanceof Error) {
      out.push(v.name, v.message, String(v.stack));
      walk(v.cause, depth + 1);
    }
    if (v instanceof Map || v instanceof Set) for (const x of v) walk(x, depth + 1);
    // Into plain data and errors; other objects (sockets, channels) are shown by inspect above.
    const proto = Object.getPrototypeOf(v);
    if (!(v instanceof Error) && !Array.isArray(v) && proto !== Object.prototype && proto !== null) return;
    for (const key of Reflect.ownKeys(v)) {
      try {
        walk((v as Record<string | symbol, unknown>)[key], depth + 1);
      } catch {
        // a getter that throws shows nothing
      }
    }
  };
  walk(value, 0);
  return out.join('\n');
}

/** Where each secret (as text, hex, spaced hex as inspect prints Buffers, base64) occurs in `text`. */
function hits(text: string, secrets: string[]): string[] {
  const found: string[] = [];
  for (const s of secrets) {
    const b = Buffer.from(s);
    const forms = [s, encodeURIComponent(s), b.toString('hex'), [...b].map((x) => x.toString(16).padStart(2, '0')).join(' '), b.toString('base64')];
    for (const form of forms) {
      const i = text.indexOf(form);
      if (i !== -1) found.push(`${s} (as ${form === s ? 'text' : form}) …${text.slice(Math.max(0, i - 120), i + form.length + 40)}…`);
    }
  }
  return found;
}

async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

describe('security: redaction of passwords and etcd tokens everywhere (sentinel values)', function () {
  this.timeout(60_000);
  let redis: RedisServer;
  let etcd: EtcdServer;
  let proxy: TokenProxy;
  /** Everything to search: diagnostics payloads, errors, inspected objects, output. */
  const material: Array<[string, unknown]> = [];
  const lockTokens: string[] = [];
  let output = '';
  const listeners = CHANNELS.map((name) => [name, (payload: unknown) => void material.push([name, payload])] as const);
  const writes = { out: process.stdout.write, err: process.stderr.write };
  const keep = (what: string, value: unknown): void => void material.push([what, value]);

  before(async () => {
    for (const [name, fn] of listeners) dc.subscribe(name, fn);
    // Everything printed from here on is searched too (and still printed).
    const tee = (orig: typeof process.stdout.write) =>
      function (this: NodeJS.WriteStream, chunk: unknown, ...rest: unknown[]): boolean {
        output += typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString();
        return (orig as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
      };
    process.stdout.write = tee(writes.out) as typeof process.stdout.write;
    process.stderr.write = tee(writes.err) as typeof process.stderr.write;
    [redis, etcd] = await Promise.all([
      startRedis({
        password: REDIS_PW,
        args: ['--user', 'locker', 'on', `>${ACL_PW}`, 'resetkeys', '~app:*', 'resetchannels', '&app:*', '-@all', ...LOCK_COMMANDS],
      }),
      startEtcd({ auth: { rootPassword: ETCD_ROOT_PW, users: [{ name: 'app', password: ETCD_PW }] } }),
    ]);
    proxy = await TokenProxy.start(etcd.endpoints[0]!, { username: 'app', password: ETCD_PW }, ETCD_TOKENS);
  });
  after(async () => {
    process.stdout.write = writes.out;
    process.stderr.write = writes.err;
    for (const [name, fn] of listeners) dc.unsubscribe(name, fn);
    await stopAllWorkers();
    await proxy?.stop();
    await Promise.all([redis?.stop(), etcd?.stop()]);
  });

  it('Redis: URL and option passwords, hand-sent AUTH/HELLO/ACL/CONFIG, wrong passwords, reconnects', async () => {
    const url = `redis://:${encodeURIComponent(REDIS_PW)}@127.0.0.1:${redis.port}`;
    const client = await RedisClient.connect(url);
    const acl = await RedisClient.connect({ host: '127.0.0.1', port: redis.port, username: 'locker', password: ACL_PW });
    keep('inspect client', inspect(client));
    keep('inspect acl client', inspect(acl));
    keep('String(client)', String(client));
    await client.send(['AUTH', 'locker', ACL_PW]);
    await client.send(['AUTH', 'default', REDIS_PW]);
    await client.send(['HELLO', '2', 'AUTH', 'default', REDIS_PW]);
    await client.send(['ACL', 'SETUSER', 'other', 'on', `>${NEW_PW}`]);
    keep('ACL DELUSER', await client.send(['ACL', 'DELUSER', 'other']));
    keep('wrong AUTH', await failure(client.send(['AUTH', 'default', WRONG_PW])));
    keep('wrong password (URL)', await failure(RedisClient.connect(`redis://:${WRONG_PW}@127.0.0.1:${redis.port}`)));
    keep('wrong password (ACL user)', await failure(RedisClient.connect(`redis://locker:${WRONG_PW}@127.0.0.1:${redis.port}`)));
    keep('malformed URL', await failure(RedisClient.connect(`redis://:${WRONG_PW}@127.0.0.1:99999`)));
    keep('malformed URL 2', await failure(RedisClient.connect(`redis://u:${WRONG_PW}@[::1`)));
    keep('refused', await failure(RedisClient.connect(`redis://:${REDIS_PW}@127.0.0.1:1`)));

    // The password changes under a connected client: its reconnect fails with WRONGPASS, and says so.
    const doomed = await RedisClient.connect(url, { commandTimeoutMs: 500, reconnect: () => 50 });
    await client.send(['CONFIG', 'SET', 'requirepass', NEW_PW]);
    await client.send(['CLIENT', 'KILL', 'USER', 'default']).catch(() => {});
    await new Promise((r) => setTimeout(r, 300));
    keep('reconnect with a stale password', await failure(doomed.send(['PING'])));
    await doomed.close();
    const fresh = await RedisClient.connect(`redis://:${NEW_PW}@127.0.0.1:${redis.port}`);
    await fresh.send(['CONFIG', 'SET', 'requirepass', REDIS_PW]);
    await fresh.close();
    await Promise.all([client.close(), acl.close()]);
  });

  it('Redis: a least-privilege ACL user (its key prefix, its channels, only the lock commands) runs both lockers; everything else is NOPERM', async () => {
    const url = `redis://locker:${ACL_PW}@127.0.0.1:${redis.port}`;
    const [a, b] = await Promise.all([RedisClient.connect(url), RedisClient.connect(url)]);
    const la = new RedisLocker(a, { prefix: 'app:' });
    const lb = new RedisLocker(b, { prefix: 'app:' });
    const held = await la.acquire('job', { ttlMs: 5000 });
    lockTokens.push(held.token);
    const waiting = lb.acquire('job', { ttlMs: 5000, waitTimeoutMs: 5000 });
    setTimeout(() => void held.extend().then(() => held.release()), 100);
    const next = await waiting;
    lockTokens.push(next.token);
    expect(next.fence > held.fence).to.equal(true);
    keep('inspect locker', inspect(la));
    keep('inspect lock', inspect(next));
    await next.release();
    const rl = new Redlock([a], { prefix: 'app:' });
    const r = await rl.acquire('job2', { ttlMs: 5000 });
    lockTokens.push(r.token);
    await r.extend();
    keep('inspect redlock', inspect(rl));
    await r.release();

    const outside = new RedisLocker(a, { prefix: 'other:' });
    const noperm = await failure(outside.acquire('job', { ttlMs: 1000 }));
    expect(noperm).to.be.instanceOf(RespError);
    expect((noperm as RespError).prefix).to.equal('NOPERM');
    keep('NOPERM outside the prefix', noperm);
    for (const cmd of [['KEYS', '*'], ['FLUSHALL'], ['CONFIG', 'GET', 'requirepass'], ['SET', 'other:x', '1'], ['PUBLISH', 'other:ch', 'x'], ['SCRIPT', 'FLUSH']]) {
      const err = await failure(a.send(cmd));
      expect((err as RespError).prefix, cmd.join(' ')).to.equal('NOPERM');
      keep(`NOPERM ${cmd[0]}`, err);
    }
    await Promise.all([la.close(), lb.close(), rl.close(), outside.close()]);
    await Promise.all([a.close(), b.close()]);
  });

  it('etcd: sentinel tokens on every call and stream, a forced re-authentication, wrong passwords', async () => {
    const client = await EtcdClient.connect({ endpoints: [proxy.url], username: 'app', password: ETCD_PW });
    expect(proxy.current).to.equal(ETCD_TOKENS[0]);
    const other = await EtcdClient.connect({ endpoints: [proxy.url], username: 'app', password: ETCD_PW });
    const [l1, l2] = [new EtcdLocker(client), new EtcdLocker(other)];
    const held = await l1.acquire('sec', { ttlMs: 2000 });
    lockTokens.push(held.token);
    const waiting = l2.acquire('sec', { ttlMs: 2000, waitTimeoutMs: 10_000 }); // a watch on the shared stream
    await new Promise((r) => setTimeout(r, 200));
    proxy.invalidate(); // the next call with this token is refused: the client must authenticate again
    await held.release();
    const next: Lock = await waiting;
    lockTokens.push(next.token);
    await client.put({ key: 'sec/k', value: 'v' });
    await new Promise((r) => setTimeout(r, 800)); // a keep-alive round on the session's stream
    await next.release();
    expect(proxy.authentications, 'authentications (re-authentication included)').to.be.at.least(3);
    keep('inspect etcd client', inspect(client));
    keep('inspect etcd locker', inspect(l1));
    keep('inspect etcd lock', inspect(next));
    await Promise.all([l1.close(), l2.close()]);
    await Promise.all([client.close(), other.close()]);

    keep('wrong etcd password', await failure(EtcdClient.connect({ endpoints: etcd.endpoints, username: 'app', password: WRONG_PW })));
    keep('wrong etcd root password', await failure(EtcdClient.connect({ endpoints: etcd.endpoints, username: 'root', password: WRONG_PW })));
    keep('password without user', await failure(EtcdClient.connect({ endpoints: etcd.endpoints, password: ETCD_PW })));
    keep('unreachable, with credentials', await failure(EtcdClient.connect({ endpoints: ['http://127.0.0.1:1'], username: 'app', password: ETCD_PW, callTimeoutMs: 500 })));
  });

  it('a worker process with sentinel credentials prints none of them', async () => {
    const w = await FaultWorker.start({
      id: 'secret-worker',
      backend: 'redis',
      urls: [`redis://locker:${ACL_PW}@127.0.0.1:${redis.port}`],
      resource: { kind: 'redis', url: `redis://:${REDIS_PW}@127.0.0.1:${redis.port}` },
      lockerOptions: { prefix: 'app:' },
    }).catch((err: Error) => err);
    // The resource key is outside the ACL user's reach, but the resource client is the default user.
    if (w instanceof Error) throw w;
    const acquired = await w.request({ op: 'acquire', key: 'worker', ttlMs: 2000, waitTimeoutMs: 2000 }, ['acquired', 'acquire-failed'], 10_000);
    await w.request({ op: 'release' }, 'released', 5000);
    await w.stop();
    keep('worker events', w.events);
    keep('worker stderr', w.stderr);
    expect(acquired.got, JSON.stringify(acquired)).to.equal(true);
  });

  it('zero hits for passwords and etcd tokens, anywhere; no lock token in any error', () => {
    const bySource = material.map(([what, v]) => [what, dump(v)] as const);
    const everything = [...bySource.map(([w, t]) => `[${w}]\n${t}`), `[output]\n${output}`].join('\n');
    expect(everything.length, 'material searched').to.be.above(10_000);
    expect(bySource.some(([w]) => w === 'wirelock:resp:command'), 'RESP commands were captured').to.equal(true);
    expect(bySource.some(([w]) => w === 'wirelock:etcd:stream:send'), 'etcd stream messages were captured').to.equal(true);
    expect(everything).to.include('[redacted]');
    // The search itself finds a secret hidden in a Buffer or deep in a cause chain.
    expect(hits(dump({ b: Buffer.from(ETCD_TOKENS[0]!) }), SECRETS)).to.have.length.above(0);
    expect(hits(dump(new Error('outer', { cause: new Error(`inner ${ACL_PW}`) })), SECRETS)).to.have.length.above(0);
    expect(hits(everything, SECRETS), 'secrets found').to.deep.equal([]);
    // Lock tokens: by design on the lock channels and on the lock (and a locker's held locks); never in an error.
    const errors = bySource.filter(([w]) => !w.startsWith('wirelock:') && !w.startsWith('inspect') && !w.startsWith('worker') && w !== 'ACL DELUSER');
    expect(errors.length).to.be.above(10);
    const tokenHits = hits(errors.map(([w, t]) => `[${w}]\n${t}`).join('\n'), lockTokens.filter((t) => !t.includes('/')));
    expect(tokenHits, 'lock tokens in error messages').to.deep.equal([]);
  });
});
