import { expect } from 'chai';
import { EtcdClient, EtcdLocker, type Lock } from '../src/index.js';
import { startEtcdCluster, type EtcdCluster, type EtcdMember } from '../src/testing/servers.js';
import { eventually, sleep } from './support/etcd.js';

describe('etcd locks on a 3-member cluster', function () {
  this.timeout(40_000);
  let cluster: EtcdCluster;
  const clients: EtcdClient[] = [];
  /** A client whose first endpoint is `first` (calls and streams go there until it fails). */
  const connectVia = async (first: EtcdMember): Promise<EtcdClient> => {
    const endpoints = [first.clientUrl, ...cluster.members.filter((m) => m !== first).map((m) => m.clientUrl)];
    const c = await EtcdClient.connect({ endpoints, callTimeoutMs: 2000 });
    clients.push(c);
    return c;
  };

  before(async () => {
    cluster = await startEtcdCluster(3);
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await cluster?.stop();
  });

  it('the holder keeps its lock (TTL 10 s) when the leader it talks to is killed; a waiter gets it after', async () => {
    const leader = await cluster.leader();
    const follower = cluster.members.find((m) => m !== leader)!;
    const holderLocker = new EtcdLocker(await connectVia(leader));
    const waiterLocker = new EtcdLocker(await connectVia(follower));
    const lock = await holderLocker.acquire('leader-kill', { ttlMs: 10_000 });
    let waiterLock: Lock | undefined;
    const waiting = waiterLocker.acquire('leader-kill', { ttlMs: 10_000 }).then((l) => (waiterLock = l));
    await sleep(200);

    await leader.kill();
    const newLeader = await cluster.leader();
    expect(newLeader).to.not.equal(leader);
    // Renewals (every TTL/3) must now go through the survivors and move validUntil on.
    const validBefore = lock.validUntil;
    await eventually(() => lock.validUntil > validBefore + 1000, 8000, 'a renewal after the kill');
    expect(lock.signal.aborted).to.equal(false);
    expect(waiterLock, 'granted while the holder still holds').to.equal(undefined);
    expect(await new EtcdLocker(await connectVia(newLeader)).tryAcquire('leader-kill')).to.equal(null);

    await lock.release();
    await waiting;
    expect(waiterLock!.fence > lock.fence).to.equal(true);
    await waiterLock!.release();
    await Promise.all([holderLocker.close(), waiterLocker.close()]);
    await leader.restart();
  });

  it('a session moves off a paused member before its lease runs out', async () => {
    const leader = await cluster.leader();
    const follower = cluster.members.find((m) => m !== leader && m.running)!;
    const locker = new EtcdLocker(await connectVia(follower));
    const lock = await locker.acquire('paused-member', { ttlMs: 4000 });
    follower.pause(); // accepts bytes, answers nothing: only timeouts tell
    try {
      await sleep(5000); // more than the whole TTL
      expect(lock.signal.aborted, String(lock.signal.reason)).to.equal(false);
      expect(lock.validUntil).to.be.above(performance.now());
    } finally {
      follower.resume();
    }
    await lock.release();
    await locker.close();
  });
});
