/**
 * Scenario 3: the server is paused (SIGSTOP: it accepts connections and answers nothing) while a client
 * acquires. Pass: the acquire rejects by its deadline with a typed error; the client tries to take back
 * every attempt it sent (one may land when the server resumes); once resumed, no lock is left behind
 * after its TTL, so others can take it.
 *
 * In-process: what is tested is the client's behaviour, which the diagnostics channels show exactly.
 */
import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import {
  EtcdClient, EtcdLocker, LockTimeoutError, QuorumError, RedisClient, RedisLocker, Redlock, TimeoutError, ConnectionError,
  prefixEnd,
} from '../../../src/index.js';
import { QUEUE_ACQUIRE, QUEUE_RELEASE, REDLOCK_ACQUIRE } from '../../../src/locks/redis-scripts.js';
import type { Script } from '../../../src/resp/script.js';
import type { EtcdMember, RedisServer } from '../../../src/testing/servers.js';
import { report } from '../../support/faults-env.js';
import { rejection } from '../../support/wait.js';

/**
 * Samples `present()` every 50 ms for `forMs`: a late write may land at any moment after the resume,
 * so a single look proves nothing. Says when the key was first and last seen (ms from now).
 */
async function watchKey(present: () => Promise<boolean>, forMs: number): Promise<{ seen: [number, number] | undefined; atEnd: boolean }> {
  const start = performance.now();
  let seen: [number, number] | undefined;
  let atEnd = false;
  for (;;) {
    const t = performance.now() - start;
    atEnd = await present();
    if (atEnd) seen = [seen?.[0] ?? t, t];
    if (t >= forMs) return { seen, atEnd };
    await new Promise((r) => setTimeout(r, 50));
  }
}

const seenText = (w: { seen: [number, number] | undefined }): string =>
  w.seen ? `a late attempt landed: key there from ${Math.round(w.seen[0])} to ${Math.round(w.seen[1])} ms after SIGCONT` : 'no key seen after SIGCONT';

/** Records the tokens of the scripts written to the wire (EVALSHA, or EVAL after NOSCRIPT). */
function scriptLog(): { tokens(script: Script, at: number): string[]; stop(): void } {
  const sent: Array<Array<string>> = [];
  const listener = (p: unknown): void => {
    const args = (p as { args: unknown[] }).args.map(String);
    if (args[0] === 'EVALSHA' || args[0] === 'EVAL') sent.push(args);
  };
  dc.subscribe('wirelock:resp:command', listener);
  return {
    tokens: (script, at) => sent.filter((a) => a[1] === script.sha || a[1] === script.lua).map((a) => a[at]!),
    stop: () => dc.unsubscribe('wirelock:resp:command', listener),
  };
}

export async function pausedRedis(server: RedisServer, label: string): Promise<void> {
  const ttlMs = 2000;
  const key = `paused-acquire-${Date.now()}`;
  const lockKey = `wirelock:{${key}}`;
  const [client, admin] = await Promise.all([RedisClient.connect(server.url, { commandTimeoutMs: 300 }), RedisClient.connect(server.url)]);
  const locker = new RedisLocker(client);
  const log = scriptLog();
  let resumed = false;
  try {
    server.pause();
    const t0 = performance.now();
    const err = await rejection(locker.acquire(key, { ttlMs, waitTimeoutMs: 1000 }), 5000);
    const took = performance.now() - t0;
    expect(err, String(err)).to.be.instanceOf(LockTimeoutError);
    expect(err.cause, 'the last failure is the cause').to.satisfy((c: unknown) => c instanceof TimeoutError || c instanceof ConnectionError);
    server.resume();
    resumed = true;
    const w = await watchKey(async () => (await admin.send(['EXISTS', lockKey, `${lockKey}:queue`])) !== 0, ttlMs + 1000);
    // A release may wait for a connection while the server is paused: look once everything has settled.
    const attempts = log.tokens(QUEUE_ACQUIRE, 7);
    const released = new Set(log.tokens(QUEUE_RELEASE, 7));
    expect(attempts.length).to.be.above(0);
    for (const token of attempts) expect(released.has(token), `no release sent for attempt ${token}`).to.equal(true);
    const other = await new RedisLocker(admin).tryAcquire(key, { ttlMs: 1000 });
    report(
      `${label}: rejected after ${Math.round(took)} ms (waitTimeoutMs 1000) with ${err.name} (cause ${(err.cause as Error).name}); ` +
        `${attempts.length} attempts written, each followed by a release; ${seenText(w)}; TTL ${ttlMs}`,
    );
    expect(took, 'ms to reject').to.be.below(2000);
    expect(w.atEnd, 'a lock key left TTL + 1 s after the resume').to.equal(false);
    expect(other, 'another client can take the lock').to.not.equal(null);
    await other!.release();
  } finally {
    if (!resumed) server.resume();
    log.stop();
    await locker.close();
    await Promise.all([client.close(), admin.close()]);
  }
}

export async function pausedRedlock(servers: RedisServer[], pause: number, label: string): Promise<void> {
  const ttlMs = 2000;
  const key = `paused-acquire-${Date.now()}`;
  const lockKey = `wirelock:{${key}}`;
  const clients = await Promise.all(servers.map((s) => RedisClient.connect(s.url)));
  const admins = await Promise.all(servers.map((s) => RedisClient.connect(s.url)));
  const redlock = new Redlock(clients);
  const paused = servers.slice(0, pause);
  const log = scriptLog();
  let resumed = false;
  try {
    for (const s of paused) s.pause();
    const t0 = performance.now();
    const err = await rejection(redlock.acquire(key, { ttlMs, waitTimeoutMs: 1000 }), 5000);
    const took = performance.now() - t0;
    expect(err, String(err)).to.be.instanceOf(QuorumError);
    const kinds = (err as QuorumError).nodes.map((n) => `${n.node} ${(n as { kind?: string }).kind}`);
    for (const s of paused) expect(kinds.some((k) => k.startsWith(`${s.host}:${s.port} `)), `cause for ${s.port}`).to.equal(true);
    for (const s of paused) s.resume();
    resumed = true;
    const w = await watchKey(async () => (await Promise.all(admins.map((a) => a.send(['EXISTS', lockKey])))).some((n) => n !== 0), ttlMs + 1000);
    // A wait keeps its token from round to round while every node answers, and takes a new one after
    // a round some node did not answer; each token is given back (QUEUE_RELEASE) on every node in the end.
    const attempts = new Set(log.tokens(REDLOCK_ACQUIRE, 7));
    const released = new Set(log.tokens(QUEUE_RELEASE, 7));
    for (const token of attempts) expect(released.has(token), `no release for attempt ${token}`).to.equal(true);
    report(
      `${label}: ${pause} of ${servers.length} paused: rejected after ${Math.round(took)} ms (waitTimeoutMs 1000) with QuorumError [${kinds.join('; ')}]; ` +
        `${attempts.size} attempts, each released on every node; ${seenText(w)}; TTL ${ttlMs}`,
    );
    expect(took, 'ms to reject').to.be.below(2000);
    expect(w.atEnd, 'a lock key left on some node TTL + 1 s after the resume').to.equal(false);
  } finally {
    if (!resumed) for (const s of paused) s.resume();
    log.stop();
    await redlock.close();
    await Promise.all([...clients, ...admins].map((c) => c.close()));
  }
}

/**
 * The etcd analogue: the only member paused while lock Txns are on the wire, for longer than the
 * client's call timeout (so the clean-up deletes time out as well). The locker already has its session
 * (an earlier lock made it), and that session outlives the pause (TTL 5 s), so a Txn that lands on
 * resume would leave a key held by a live lease. Ten acquires of ten keys race at once: whether a
 * late Txn lands before or after its clean-up is up to etcd, so one try proves little.
 */
export async function pausedEtcd(member: EtcdMember, label: string): Promise<void> {
  const ttlMs = 5000;
  const pauseMs = 2000;
  const keys = Array.from({ length: 10 }, (_, i) => `paused-acquire-${Date.now()}-${i}`);
  const [client, admin] = await Promise.all([
    EtcdClient.connect({ endpoints: [member.clientUrl], callTimeoutMs: 500 }),
    EtcdClient.connect({ endpoints: [member.clientUrl] }),
  ]);
  const locker = new EtcdLocker(client);
  const other = new EtcdLocker(admin);
  let resumed = false;
  try {
    await (await locker.acquire(`${keys[0]}-warm`, { ttlMs })).release(); // the shared session exists now
    member.pause();
    const t0 = performance.now();
    const errors = await Promise.all(keys.map((k) => rejection(locker.acquire(k, { ttlMs, waitTimeoutMs: 1500 }), 8000)));
    const took = performance.now() - t0;
    await new Promise((r) => setTimeout(r, Math.max(0, pauseMs - took)));
    member.resume();
    resumed = true;
    const left = async (): Promise<string[]> => {
      const out: string[] = [];
      for (const k of keys) {
        const pfx = Buffer.from(`${locker.lockName(k)}/`);
        if ((await admin.range({ key: pfx, range_end: prefixEnd(pfx), count_only: true })).count > 0n) out.push(k);
      }
      return out;
    };
    const w = await watchKey(async () => (await left()).length > 0, ttlMs + 1000);
    const orphans = await left();
    const taken: string[] = [];
    for (const k of keys) {
      const lock = await other.tryAcquire(k, { ttlMs: 2000 }).catch(() => null);
      if (lock) taken.push(k);
      await lock?.release();
    }
    const err = errors[0]!;
    report(
      `${label}: ${keys.length} acquires rejected after ${Math.round(took)} ms (waitTimeoutMs 1500, callTimeoutMs 500) with ` +
        `${[...new Set(errors.map((e) => e.name))].join('/')}${err.cause ? ` (cause ${(err.cause as Error).name})` : ''}; paused ${pauseMs} ms; ${seenText(w)}; ` +
        `${orphans.length} of ${keys.length} keys STILL THERE at TTL + 1 s; another locker can take ${taken.length} of ${keys.length}`,
    );
    for (const e of errors) expect(e).to.satisfy((x: unknown) => x instanceof LockTimeoutError || x instanceof TimeoutError, String(e));
    expect(took, 'ms to reject').to.be.below(3000);
    expect(orphans, 'orphan keys (held by the live session) outlived the TTL').to.deep.equal([]);
    expect(taken.length, 'locks another locker can take').to.equal(keys.length);
  } finally {
    if (!resumed) member.resume();
    await Promise.all([locker.close(), other.close()]);
    await Promise.all([client.close(), admin.close()]);
  }
}
