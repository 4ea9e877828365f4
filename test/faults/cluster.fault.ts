/**
 * Fault suite, full run only (`npm run test:faults`): a RedisLocker on a Redis Cluster (3 masters with a
 * replica each) under 8 contending processes, each its own RedisCluster client, one hot lock:
 * 1. its slot migrated live between masters 10 times (small batches with pauses, so the clients meet
 *    ASK and TRYAGAIN mid-migration): no double grant, no repeated fence;
 * 2. CLUSTER FAILOVER to the hot master's replica 10 times, with minReplicas 0 and 1: a manual failover
 *    waits for the replica to catch up, so no double grant either way (sent by failoverTo, which
 *    asks again when the replica gives up, and counts the replicas that said 'master' and took it back);
 * 3. the hot master killed (kill -9) 3 times, its replica promoted by the cluster: asynchronous
 *    replication may lose a grant, so double grants are only reported; the service must come back and
 *    every later grant's fence be above every earlier one.
 */
import { expect } from 'chai';
import { RedisClient, RedisCluster } from '../../src/index.js';
import { startRedis, startRedisCluster, type RedisServer } from '../../src/testing/servers.js';
import { report } from '../support/faults-env.js';
import { sleep } from '../support/faults-workers.js';
import { failoverTo, faultsUnderContention, masters, replicaOf, stopClusterWorkers, type ClusterEnv } from './scenarios/cluster.js';

const hr = (): bigint => process.hrtime.bigint();

describe('faults: Redis Cluster resharding, failovers and a killed master under contention', function () {
  this.timeout(600_000);
  let env: ClusterEnv;
  let resourceServer: RedisServer;
  let admin: RedisClient;

  before(async () => {
    const [cluster, server] = await Promise.all([startRedisCluster({ masters: 3, replicasPerMaster: 1 }), startRedis()]);
    resourceServer = server;
    admin = await RedisClient.connect(resourceServer.url);
    env = { cluster, resourceUrl: resourceServer.url, killed: new Set(), reset: async () => void (await admin.send(['DEL', 'fault:resource'])) };
  });
  after(async () => {
    await stopClusterWorkers();
    await admin?.close();
    await Promise.all([env?.cluster.stop(), resourceServer?.stop()]);
  });

  it('resharding: the hot slot migrated 10 times mid-run; no double grant, no repeated fence, every wait ends by its deadline', async () => {
    // Keys of their own in the hot slot make each migration take a dozen batches, so the slot stays
    // half moved (ASK for what has gone, TRYAGAIN for a script whose keys are split) for a while.
    const c = await RedisCluster.connect(env.cluster.url);
    try {
      for (let i = 0; i < 30; i++) await c.send(['SET', `{reshard}:pad:${i}`, 'x']);
    } finally {
      await c.close();
    }
    const r = await faultsUnderContention(env, 'reshard', {
      rounds: 10, minReplicas: 0, ttlMs: 2000, what: 'moveSlot (3 keys a batch, 30 ms between batches)',
      fault: async (_, slot) => {
        const from = await env.cluster.masterOf(slot);
        const all = await masters(env);
        const to = all[(all.indexOf(from) + 1) % all.length]!;
        const started = hr();
        await env.cluster.moveSlot(slot, to, { keysPerBatch: 3, pauseBetweenBatchesMs: 30 });
        return { started, done: hr() };
      },
    });
    expect(r.doubleGrants, 'double grants').to.equal(0);
    expect(r.repeatedFences, 'repeated fences').to.equal(0);
    expect(r.fenceRegressions, 'fence regressions').to.equal(0);
    expect(r.redirects.get('ASK') ?? 0, 'ASK redirects followed').to.be.above(0);
  });

  for (const minReplicas of [0, 1]) {
    it(`CLUSTER FAILOVER of the hot master 10 times, minReplicas ${minReplicas}: no double grant (a manual failover syncs first)`, async () => {
      const asked: number[] = [];
      let flickers = 0;
      const r = await faultsUnderContention(env, `failover-${minReplicas}`, {
        rounds: 10, minReplicas, ttlMs: 2000, what: 'CLUSTER FAILOVER on the hot master\'s replica',
        fault: async (_, slot) => {
          const master = await env.cluster.masterOf(slot);
          const replica = await replicaOf(env, master);
          if (!replica) throw new Error(`127.0.0.1:${master.port} has no replica to fail over to`);
          const started = hr();
          const f = await failoverTo(env, replica, slot);
          asked.push(f.asked);
          flickers += f.flickers;
          return { started, done: hr() };
        },
      });
      report(`CLUSTER FAILOVER sent per round: ${asked.join(', ')}; a replica said 'master' and took it back ${flickers} times`);
      expect(r.doubleGrants, 'double grants').to.equal(0);
      expect(r.repeatedFences, 'repeated fences').to.equal(0);
    });
  }

  it('the hot master killed (kill -9) 3 times, minReplicas 0: double grants reported; the service comes back with higher fences', async () => {
    const r = await faultsUnderContention(env, 'killed', {
      rounds: 3, minReplicas: 0, ttlMs: 2000, what: 'kill -9 of the hot master (replica promoted by the cluster)',
      fault: async (_, slot) => {
        let master = await env.cluster.masterOf(slot);
        if (!(await replicaOf(env, master))) {
          // Its replica was promoted by an earlier kill: move the slot to a master that still has one.
          const all = await masters(env);
          let target: typeof master | undefined;
          for (const m of all) if (!target && (await replicaOf(env, m))) target = m;
          if (!target) throw new Error('no master with a replica left');
          await env.cluster.moveSlot(slot, target);
          master = target;
        }
        const started = hr();
        await master.kill('SIGKILL');
        env.killed.add(master);
        const until = performance.now() + 30_000;
        while ((await env.cluster.masterOf(slot).catch(() => master)) === master) {
          if (performance.now() > until) throw new Error(`slot ${slot} not failed over within 30 s of killing 127.0.0.1:${master.port}`);
          await sleep(50);
        }
        return { started, done: hr() };
      },
    });
    expect(r.fencesNotAbove, 'grants after a kill with a fence not above every fence granted before it').to.equal(0);
  });
});
