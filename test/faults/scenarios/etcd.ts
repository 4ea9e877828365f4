/**
 * etcd scenarios: 7. the leader killed under a holder (3-member cluster), 8. a waiter whose lease
 * expires while it queues, and 5 for etcd: the member a client talks to blackholed, half-open or reset.
 */
import { expect } from 'chai';
import { EtcdClient, EtcdLocker, LockLostError, type Lock } from '../../../src/index.js';
import type { EtcdCluster, EtcdMember } from '../../../src/testing/servers.js';
import { replayMutex, type MutexEvent } from '../../../src/testing/history.js';
import { FaultProxy } from '../../support/proxy.js';
import { big, ms, sleep } from '../../support/faults-workers.js';
import { report, worker, type Env } from '../../support/faults-env.js';

/** The cluster's endpoints with `first` first: a client talks to it until it fails. */
export const via = (cluster: EtcdCluster, first: EtcdMember): string[] => [first.clientUrl, ...cluster.members.filter((m) => m !== first).map((m) => m.clientUrl)];

/**
 * 7. The leader, which the holder talks to, is killed while the holder holds and a waiter waits.
 * The holder stays in its section for `holdMs` or until it is told the lock is lost, then releases.
 * Pass (replayed against the mutex model): the waiter never enters while the holder is in its section.
 * With a long TTL the holder is expected to keep the lock throughout (`expectKept`).
 */
export async function leaderKill(cluster: EtcdCluster, env: Env, ttlMs: number, holdMs: number, expectKept: boolean, label: string): Promise<void> {
  await env.reset();
  const key = `leader-kill-${ttlMs}-${Date.now()}`;
  const leader = await cluster.leader();
  const follower = cluster.members.find((m) => m !== leader)!;
  const clientOptions = { callTimeoutMs: 2000 };
  const [holder, waiter] = await Promise.all([
    worker({ ...env, urls: via(cluster, leader) }, { name: 'holder', clientOptions }),
    worker({ ...env, urls: via(cluster, follower) }, { name: 'waiter', clientOptions }),
  ]);
  try {
    const h = await holder.request({ op: 'acquire', key, ttlMs, waitTimeoutMs: 10_000 }, ['acquired', 'acquire-failed'], 20_000);
    expect(h.got, JSON.stringify(h)).to.equal(true);
    waiter.send({ op: 'acquire', key, ttlMs, waitTimeoutMs: holdMs + ttlMs + 20_000 });
    await sleep(300);
    const killedAt = process.hrtime.bigint();
    await leader.kill();
    holder.send({ op: 'section', ms: holdMs });
    const elected = await cluster.leader().then(() => ms(killedAt, process.hrtime.bigint()));
    const section = await holder.next('section', holdMs + 10_000);
    const released = await holder.request({ op: 'release' }, 'released', 10_000);
    const w = await waiter.next(['acquired', 'acquire-failed'], ttlMs + 30_000);
    // With a short TTL, the waiter's own lease can run out during the election too (its renewals go
    // unanswered for longer than the TTL): it is then told so and never granted, which is correct.
    const waiterLeaseRanOut = !expectKept && w.type === 'acquire-failed' && (w.error as { reason?: string })?.reason === 'session-expired';
    if (!waiterLeaseRanOut) expect(w.type, JSON.stringify(w)).to.equal('acquired');
    const renewalsAfterKill = holder.all('validity').filter((e) => big(e, 'at') > killedAt).length;
    const events: MutexEvent[] = [
      { kind: 'enter', worker: holder.id, at: big(h, 'enter'), fence: big(h, 'fence') },
      { kind: 'exit', worker: holder.id, at: big(section, 'exit') },
    ];
    if (!waiterLeaseRanOut) events.push({ kind: 'enter', worker: waiter.id, at: big(w, 'enter'), fence: big(w, 'fence') });
    const replay = replayMutex(events);
    report(
      `${label}: TTL ${ttlMs} ms, leader killed, a new one answering after ${Math.round(elected)} ms; holder ` +
        `${section.lost ? `told it LOST the lock ${Math.round(ms(killedAt, big(section, 'exit')))} ms after the kill` : `kept the lock for ${holdMs} ms (${renewalsAfterKill} renewals after the kill)`}; ` +
        `release ${released.ok ? 'ok' : `failed (${String((released.error as { name?: string })?.name)})`}; ` +
        (waiterLeaseRanOut
          ? "the waiter's own lease ran out during the election: it was told (session-expired) and never granted; "
          : `waiter entered ${Math.round(ms(big(section, 'exit'), big(w, 'enter')))} ms after the holder's section ended; `) +
        `model violations ${replay.violations.length}`,
    );
    expect(replay.violations, 'the waiter entered while the holder was in its section').to.deep.equal([]);
    if (expectKept) {
      expect(section.lost, 'the holder lost its lock').to.equal(false);
      expect(renewalsAfterKill, 'renewals after the kill').to.be.above(0);
    }
  } finally {
    await Promise.all([holder.stop(), waiter.stop()]);
    await leader.restart();
  }
}

/**
 * 8. A waiter whose lease (autoExtend: false: nobody renews it) runs out while it queues must never be
 * granted. Then the holder releases at various moments around the waiter's lease end: each acquire
 * either rejects, or returns a lock whose lease is alive and whose key has the create revision the
 * lock reports as its fence (checked at once, from another client).
 */
export async function waiterLeaseExpires(endpoints: string[], label: string): Promise<void> {
  const [hc, wc, admin] = await Promise.all([0, 1, 2].map(() => EtcdClient.connect({ endpoints })));
  const holder = new EtcdLocker(hc!);
  const waiter = new EtcdLocker(wc!);
  const leaseOf = (lock: Lock): bigint => BigInt(`0x${lock.token.slice(lock.token.lastIndexOf('/') + 1)}`);
  const lines: string[] = [];
  try {
    const key = `expires-queued-${Date.now()}`;
    const held = await holder.acquire(key, { ttlMs: 10_000 });
    const t0 = performance.now();
    const err = await waiter.acquire(key, { ttlMs: 2000, autoExtend: false, waitTimeoutMs: 10_000 }).then(
      (l) => { throw new Error(`granted a lock whose lease ran out while queued: ${l.token}`); },
      (e: unknown) => e,
    );
    const took = performance.now() - t0;
    expect(err, String(err)).to.be.instanceOf(LockLostError);
    expect((err as LockLostError).reason).to.equal('session-expired');
    expect(took).to.be.below(2000 + 3000);
    expect(held.signal.aborted).to.equal(false);
    await held.release();
    lines.push(`queued past its 2 s lease: rejected after ${Math.round(took)} ms (${(err as LockLostError).reason})`);

    for (const releaseAfter of [1500, 1800, 1900, 1950, 2000, 2050, 2100, 2300]) {
      const k = `${key}-${releaseAfter}`;
      const h = await holder.acquire(k, { ttlMs: 10_000 });
      // Settled into a value at once: a rejection while we sleep must not count as unhandled.
      const waiting = waiter.acquire(k, { ttlMs: 2000, autoExtend: false, waitTimeoutMs: 8000 }).then((l) => l, (e: unknown) => e as Error);
      await sleep(releaseAfter);
      await h.release();
      const outcome = await waiting;
      if (outcome instanceof Error) {
        expect(outcome, String(outcome)).to.be.instanceOf(LockLostError);
        lines.push(`${releaseAfter} ms: rejected (${(outcome as LockLostError).reason})`);
        continue;
      }
      const lock = outcome;
      const returnedAt = performance.now();
      const [lease, kv] = await Promise.all([admin!.leaseTimeToLive({ ID: leaseOf(lock) }), admin!.range({ key: lock.token })]);
      const checkedAt = performance.now();
      const leftMs = lock.validUntil - returnedAt;
      if (checkedAt < lock.validUntil) {
        // etcd answers the remaining TTL in whole seconds, rounded down (0 = under a second left), and -1 for no lease.
        expect(lease.TTL >= 0n, `the lease of a lock just returned (${releaseAfter} ms): TTL ${lease.TTL}`).to.equal(true);
        expect(kv.kvs[0]?.create_revision, `its key's create revision (${releaseAfter} ms)`).to.equal(lock.fence);
      }
      lines.push(
        `${releaseAfter} ms: granted, lease ${lease.TTL >= 0n ? 'alive' : 'GONE'}, create revision ${kv.kvs[0]?.create_revision === lock.fence ? 'verified' : 'MISMATCH'}, ` +
          `validUntil ${Math.round(leftMs)} ms ahead${leftMs <= 0 ? ' (ALREADY PAST: signal aborted ' + String(lock.signal.aborted) + ')' : ''}`,
      );
      await lock.release();
    }
    report(`${label}: ${lines.join('; ')}`);
  } finally {
    await Promise.all([holder.close(), waiter.close()]);
    await Promise.all([hc, wc, admin].map((c) => c!.close()));
  }
}

/**
 * 5 for etcd: the member the holder talks to becomes unreachable in one of three ways (every byte
 * swallowed; its server side closed while the client side stays open and silent; connections reset).
 * Pass: renewals move to another member, the holder keeps its lock, another process is refused.
 */
export async function etcdMemberFaults(cluster: EtcdCluster, env: Env, label: string): Promise<void> {
  await env.reset();
  const proxies = await Promise.all(cluster.members.map((m) => FaultProxy.start({ port: Number(new URL(m.clientUrl).port) })));
  const ttlMs = 3000;
  const [holder, other] = await Promise.all([
    worker({ ...env, urls: proxies.map((p) => p.url('http')) }, { name: 'holder', clientOptions: { callTimeoutMs: 1000 } }),
    worker(env, { name: 'other' }),
  ]);
  const lines: string[] = [];
  try {
    for (const fault of ['blackhole', 'half-open', 'reset'] as const) {
      const key = `member-${fault}-${Date.now()}`;
      const h = await holder.request({ op: 'acquire', key, ttlMs, waitTimeoutMs: 10_000 }, ['acquired', 'acquire-failed'], 20_000);
      expect(h.got, JSON.stringify(h)).to.equal(true);
      const bad = proxies[0]!;
      const at = process.hrtime.bigint();
      if (fault === 'blackhole') bad.blackhole();
      if (fault === 'half-open') bad.halfOpen();
      if (fault === 'reset') bad.refuse().reset();
      await sleep(2 * ttlMs);
      const renewals = holder.all('validity').filter((e) => big(e, 'at') > at).length;
      const tried = await other.request({ op: 'try', key, ttlMs, waitTimeoutMs: 0 }, ['acquired', 'acquire-failed'], 10_000);
      const lost = holder.all('lost').filter((e) => big(e, 'at') > at).length;
      bad.pass();
      const released = await holder.request({ op: 'release' }, 'released', 10_000);
      lines.push(`${fault}: ${renewals} renewals in ${2 * ttlMs} ms, lost ${lost}, other process ${tried.got ? 'GOT IT' : 'refused'}, release ${released.ok ? 'ok' : 'failed'}`);
      expect(lost, `the holder lost its lock (${fault})`).to.equal(0);
      expect(renewals, `renewals through the other members (${fault})`).to.be.at.least(2);
      expect(tried.type === 'acquired' && !tried.got, `another process's tryAcquire (${fault}): ${JSON.stringify(tried)}`).to.equal(true);
    }
    report(`${label}, TTL ${ttlMs} ms, first member behind a fault proxy: ${lines.join('; ')}`);
  } finally {
    await Promise.all([holder.stop(), other.stop()]);
    await Promise.all(proxies.map((p) => p.stop()));
  }
}
