/**
 * Scenario 5: network faults between a client and one node, through the TCP fault proxy (delay,
 * blackhole, reset, half-open, hold-then-flush). Pass: per-command timeouts fire, a connection that
 * timed out or broke is discarded (never reused), replies never reach the wrong command, and Redlock
 * keeps working on the healthy majority. A quorum that answers only after 0.6×TTL each way fails
 * (validity ≤ 0) and is released on every node.
 *
 * In-process: the client's own behaviour is under test, observed on its diagnostics channels.
 */
import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import { ConnectionError, QuorumError, RedisClient, Redlock, TimeoutError, WirelockError } from '../../../src/index.js';
import type { RedisServer } from '../../../src/testing/servers.js';
import { FaultProxy } from '../../support/proxy.js';
import { report } from '../../support/faults-env.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Counts, per address, the command timeouts and the connections closed (diagnostics channels). */
function watchConnections(): { timeouts(address: string): number; closes(address: string): number; stop(): void } {
  const timeouts = new Map<string, number>();
  const closes = new Map<string, number>();
  const onError = (p: unknown): void => {
    const { address, error } = p as { address: string; error: unknown };
    if (error instanceof TimeoutError) timeouts.set(address, (timeouts.get(address) ?? 0) + 1);
  };
  const onClose = (p: unknown): void => {
    const { address } = p as { address: string };
    closes.set(address, (closes.get(address) ?? 0) + 1);
  };
  dc.subscribe('wirelock:resp:error', onError);
  dc.subscribe('wirelock:resp:close', onClose);
  return {
    timeouts: (a) => timeouts.get(a) ?? 0,
    closes: (a) => closes.get(a) ?? 0,
    stop: () => {
      dc.unsubscribe('wirelock:resp:error', onError);
      dc.unsubscribe('wirelock:resp:close', onClose);
    },
  };
}

/** Waits (at most 5 s) until `client` answers a PING: it has noticed a reset and reconnected. */
async function untilAnswers(client: RedisClient): Promise<void> {
  const until = performance.now() + 5000;
  for (;;) {
    try {
      await client.send(['PING'], { timeoutMs: 1000 });
      return;
    } catch (err) {
      if (performance.now() > until) throw err;
      await sleep(50);
    }
  }
}

type Fault = 'delay' | 'blackhole' | 'reset' | 'half-open' | 'hold-flush';
const FAULTS: Fault[] = ['delay', 'blackhole', 'reset', 'half-open', 'hold-flush'];

/** Applies `fault` for about `ms`, then lets traffic through again. */
async function inject(proxy: FaultProxy, fault: Fault, ms: number): Promise<void> {
  switch (fault) {
    case 'delay':
      proxy.delay(ms);
      await sleep(ms);
      proxy.delay(0);
      return;
    case 'reset':
      proxy.reset();
      return;
    case 'blackhole':
      proxy.blackhole();
      break;
    case 'half-open':
      proxy.halfOpen();
      break;
    case 'hold-flush':
      proxy.hold();
      break;
  }
  await sleep(ms);
  proxy.pass();
}

/**
 * Random faults while commands are in flight on one connection: every reply that arrives must be the
 * reply to its own command (ECHO of a unique payload), every failure a TimeoutError or ConnectionError.
 */
export async function respUnderFaults(server: RedisServer, rounds: number, label: string): Promise<void> {
  const proxy = await FaultProxy.start({ port: server.port });
  const client = await RedisClient.connect(proxy.url('redis'), { commandTimeoutMs: 150, connectTimeoutMs: 500 });
  const conns = watchConnections();
  const counts: Record<string, number> = { ok: 0, timeout: 0, connection: 0, misaligned: 0, other: 0 };
  const seen: Record<Fault, number> = { delay: 0, blackhole: 0, reset: 0, 'half-open': 0, 'hold-flush': 0 };
  try {
    for (let round = 0; round < rounds; round++) {
      const fault = FAULTS[round % FAULTS.length]!;
      seen[fault]++;
      const sends = Array.from({ length: 30 }, (_, i) => {
        const payload = `r${round}-c${i}-${Math.random().toString(36).slice(2)}`;
        const timeoutMs = i % 3 === 0 ? 50 + Math.floor(Math.random() * 250) : undefined;
        return client.send(['ECHO', payload], timeoutMs ? { timeoutMs } : undefined).then(
          (reply) => (reply === payload ? 'ok' : 'misaligned'),
          (err: unknown) => (err instanceof TimeoutError ? 'timeout' : err instanceof ConnectionError ? 'connection' : `other: ${String(err)}`),
        );
      });
      await sleep(Math.random() * 20);
      await inject(proxy, fault, 100 + Math.floor(Math.random() * 250));
      for (const outcome of await Promise.all(sends)) {
        if (outcome in counts) counts[outcome]!++;
        else counts.other!++;
      }
    }
    // Healthy again: everything goes through, in order.
    const payloads = Array.from({ length: 200 }, (_, i) => `after-${i}`);
    const replies = await Promise.all(payloads.map((p) => client.send(['ECHO', p], { timeoutMs: 5000 })));
    report(
      `${label}: ${rounds} rounds × 30 commands under ${FAULTS.map((f) => `${f} ×${seen[f]}`).join(', ')}: ` +
        `${counts.ok} answered right, ${counts.misaligned} misaligned, ${counts.timeout} timed out, ${counts.connection} connection errors, ` +
        `${counts.other} other; ${conns.timeouts(proxy.address)} command timeouts fired, ${conns.closes(proxy.address)} connections discarded, ` +
        `${proxy.accepted} opened; then 200 of 200 answered right`,
    );
    expect(counts.misaligned, 'replies handed to the wrong command').to.equal(0);
    expect(counts.other, 'failures other than timeout/connection').to.equal(0);
    expect(counts.timeout, 'timeouts').to.be.above(0);
    expect(conns.closes(proxy.address), 'connections discarded').to.be.above(0);
    expect(replies).to.deep.equal(payloads);
  } finally {
    conns.stop();
    await client.close();
    await proxy.stop();
  }
}

/** Redlock over three proxies; one node at a time suffers each fault while a lock is taken, extended and released. */
export async function redlockOneNodeFaults(servers: RedisServer[], label: string): Promise<void> {
  const proxies = await Promise.all(servers.map((s) => FaultProxy.start({ port: s.port })));
  const clients = await Promise.all(proxies.map((p) => RedisClient.connect(p.url('redis'), { connectTimeoutMs: 500 })));
  const redlock = new Redlock(clients);
  const conns = watchConnections();
  const results: string[] = [];
  try {
    for (const fault of ['delay', 'blackhole', 'half-open', 'reset'] as const) {
      const bad = proxies[0]!;
      const before = { timeouts: conns.timeouts(bad.address), closes: conns.closes(bad.address) };
      if (fault === 'delay') bad.delay(300);
      if (fault === 'blackhole') bad.blackhole();
      if (fault === 'half-open') bad.halfOpen();
      const t0 = performance.now();
      if (fault === 'reset') setTimeout(() => bad.reset(), 1);
      const lock = await redlock.acquire(`net-${fault}-${Date.now()}`, { ttlMs: 2000, waitTimeoutMs: 3000 });
      const took = performance.now() - t0;
      await lock.extend();
      await lock.release();
      await sleep(400); // late answers and background releases on the bad node settle
      bad.delay(0).pass(); // resets the connections that lost bytes
      const timeouts = conns.timeouts(bad.address) - before.timeouts;
      const closes = conns.closes(bad.address) - before.closes;
      // The bad node's client comes back (a command racing the reset fails, and is never replayed)...
      await untilAnswers(clients[0]!);
      // ...and its replies are its own.
      const echoes = await Promise.all(Array.from({ length: 50 }, (_, i) => clients[0]!.send(['ECHO', `${fault}-${i}`], { timeoutMs: 5000 })));
      expect(echoes).to.deep.equal(Array.from({ length: 50 }, (_, i) => `${fault}-${i}`));
      results.push(`${fault}: acquired in ${Math.round(took)} ms, extended, released; ${timeouts} timeouts fired, ${closes} connections discarded on the bad node`);
      expect(took, `acquire with one node ${fault}`).to.be.below(1500);
      if (fault !== 'reset') expect(timeouts, `timeouts on the ${fault} node`).to.be.above(0);
      expect(closes, `connections discarded on the ${fault} node`).to.be.above(0);
    }
    report(`${label}: ${results.join('; ')}`);
  } finally {
    conns.stop();
    await redlock.close();
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(proxies.map((p) => p.stop()));
  }
}

/**
 * Two of three nodes answer only after 0.6×TTL each way (so 1.2×TTL round trips). With a node timeout
 * long enough to wait for them, the quorum comes too late (validity ≤ 0); with the default node timeout
 * they time out. Either way: no lock, and nothing left on any node afterwards.
 */
export async function redlockSlowQuorum(servers: RedisServer[], label: string): Promise<void> {
  const ttlMs = 1000;
  const proxies = await Promise.all(servers.map((s) => FaultProxy.start({ port: s.port })));
  const clients = await Promise.all(proxies.map((p) => RedisClient.connect(p.url('redis'))));
  const admins = await Promise.all(servers.map((s) => RedisClient.connect(s.url)));
  const lines: string[] = [];
  try {
    for (const nodeTimeoutMs of [3 * ttlMs, undefined]) {
      const redlock = new Redlock(clients, { nodeTimeoutMs });
      const key = `slow-quorum-${nodeTimeoutMs ?? 'default'}-${Date.now()}`;
      // Warm the script cache at full speed, so each delayed node sees one command (no NOSCRIPT round).
      await (await redlock.acquire(`${key}-warm`, { ttlMs })).release();
      for (const p of proxies.slice(1)) p.delay(0.6 * ttlMs);
      const t0 = performance.now();
      let err: unknown;
      try {
        await redlock.tryAcquire(key, { ttlMs });
      } catch (e) {
        err = e;
      }
      const took = performance.now() - t0;
      // Let every delayed release (and the expiry of any key it could not reach) play out.
      await sleep(3 * ttlMs);
      for (const p of proxies) p.delay(0);
      const left = await Promise.all(admins.map((a) => a.send(['EXISTS', `wirelock:{${key}}`])));
      const kinds = err instanceof QuorumError ? err.nodes.map((n) => (n as { kind?: string }).kind) : [];
      lines.push(
        `nodeTimeoutMs ${nodeTimeoutMs ?? 'default (50)'}: failed after ${Math.round(took)} ms with ${err instanceof WirelockError ? err.name : String(err)} ` +
          `[${kinds.join(', ')}]; keys left: ${left.reduce((a, b) => Number(a) + Number(b), 0)}`,
      );
      expect(err, 'a lock granted with no validity left').to.be.instanceOf(QuorumError);
      expect(kinds).to.include(nodeTimeoutMs ? 'late' : 'timeout');
      expect(left.every((n) => n === 0), 'keys left behind').to.equal(true);
      await redlock.close();
    }
    report(`${label}, TTL ${ttlMs} ms, 2 of 3 nodes delayed ${0.6 * ttlMs} ms each way: ${lines.join('; ')}`);
  } finally {
    await Promise.all([...clients, ...admins].map((c) => c.close()));
    await Promise.all(proxies.map((p) => p.stop()));
  }
}
