/**
 * Scenario 4: Redlock nodes killed (kill -9) under a holder in another process.
 * - A minority down: the holder keeps its validity and goes on extending; other processes are refused.
 * - Then a majority down: the holder is told it lost the lock (by its validUntil at the latest);
 *   an acquire rejects by its deadline with QuorumError naming each node's cause, and the SET it got
 *   on a surviving node is taken back (no partial keys).
 * The killed nodes are restarted at the end (empty: these test servers keep no data).
 */
import { expect } from 'chai';
import type { RedisClient } from '../../../src/index.js';
import type { RedisServer } from '../../../src/testing/servers.js';
import { big, ms, sleep } from '../../support/faults-workers.js';
import { report, worker, type Env } from '../../support/faults-env.js';

export async function redlockKill(env: Env, nodes: RedisServer[], admins: RedisClient[], label: string): Promise<void> {
  const n = nodes.length;
  const minority = Math.floor((n - 1) / 2);
  const ttlMs = 1500;
  const key = `kill-${n}-${Date.now()}`;
  await env.reset();
  const [holder, other] = await Promise.all([worker(env, { name: 'holder' }), worker(env, { name: 'other' })]);
  const killed: RedisServer[] = [];
  try {
    const h = await holder.request({ op: 'acquire', key, ttlMs, waitTimeoutMs: 5000 }, ['acquired', 'acquire-failed'], 15_000);
    expect(h.got, JSON.stringify(h)).to.equal(true);

    // A minority down.
    for (const s of nodes.slice(0, minority)) await s.kill(), killed.push(s);
    const from = holder.all('validity').length;
    await sleep(2 * ttlMs);
    const renewals = holder.all('validity').slice(from);
    const tried = await other.request({ op: 'try', key, ttlMs, waitTimeoutMs: 0 }, ['acquired', 'acquire-failed'], 5000);
    const waited = await other.request({ op: 'acquire', key, ttlMs, waitTimeoutMs: 500 }, ['acquired', 'acquire-failed'], 10_000);
    expect(holder.all('lost'), 'the holder lost its lock with a minority down').to.deep.equal([]);
    expect(renewals.length, 'extensions with a minority down').to.be.at.least(3);
    for (const e of renewals) expect(ms(big(e, 'at'), big(e, 'validUntil')), 'validity left after an extension').to.be.within(ttlMs / 2, ttlMs);
    expect(tried.type === 'acquired' && !tried.got, `tryAcquire by another process: ${JSON.stringify(tried)}`).to.equal(true);
    expect(waited.type, 'acquire by another process').to.equal('acquire-failed');
    expect((waited.error as { code: string }).code).to.equal('WL_LOCK_TIMEOUT');

    // A majority down.
    const majorityAt = process.hrtime.bigint();
    for (const s of nodes.slice(minority, n - minority)) await s.kill(), killed.push(s);
    const lost = await holder.next('lost', 2 * ttlMs + 5000);
    const lostAfterValid = ms(big(holder.all('validity').at(-1) ?? h, 'validUntil'), big(lost, 'at'));

    const key2 = `${key}-fresh`;
    const t0 = process.hrtime.bigint();
    const failed = await other.request({ op: 'acquire', key: key2, ttlMs, waitTimeoutMs: 1000 }, ['acquired', 'acquire-failed'], 10_000);
    const took = ms(t0, big(failed, 'at'));
    const survivors = admins.filter((_, i) => i >= n - minority);
    const partial = await Promise.all(survivors.map((a) => a.send(['EXISTS', `wirelock:{${key2}}`])));
    const causes = ((failed.error as { nodes?: Array<{ node: string; kind: string }> }).nodes ?? []).map((c) => c.kind);
    report(
      `${label}: ${minority} of ${n} killed: ${renewals.length} extensions in ${2 * ttlMs} ms, validity kept, ` +
        `others refused (${(waited.error as { name: string }).name}); ${n - minority} of ${n} killed: holder told ` +
        `${Math.round(ms(majorityAt, big(lost, 'at')))} ms later (${String((lost.error as { reason: string }).reason)}; ` +
        `${lostAfterValid >= 0 ? `${Math.round(lostAfterValid)} ms after` : `${Math.round(-lostAfterValid)} ms before`} its validUntil); ` +
        `a new acquire rejected after ${Math.round(took)} ms (waitTimeoutMs 1000) with ${(failed.error as { name: string }).name} [${causes.join(', ')}]; ` +
        `its keys left on survivors: ${partial.reduce((a, b) => Number(a) + Number(b), 0)}`,
    );
    expect(lostAfterValid, 'ms from validUntil to the loss signal').to.be.below(500);
    expect(failed.type).to.equal('acquire-failed');
    expect((failed.error as { code: string }).code).to.equal('WL_QUORUM');
    expect(causes.filter((k) => k === 'connection' || k === 'timeout').length, 'per-node causes for the dead nodes').to.equal(n - minority);
    expect(took, 'ms to reject').to.be.below(2500);
    expect(partial.every((x) => x === 0), 'keys of the failed acquire left on the surviving nodes').to.equal(true);
  } finally {
    await Promise.all([holder.stop(), other.stop()]);
    for (const s of killed) await s.restart();
  }
}
