/**
 * Fault suite, full run only (`npm run test:faults`): etcd on a 3-member cluster.
 * 7. the leader killed under a holder; 5. the member a holder talks to blackholed, half-open or reset;
 * 8. a waiter whose lease expires while it queues.
 */
import { suiteServers } from '../support/faults-env.js';
import { etcdMemberFaults, leaderKill, waiterLeaseExpires } from './scenarios/etcd.js';

describe('faults: etcd on a 3-member cluster', function () {
  this.timeout(90_000);
  const servers = suiteServers({ etcd: 3 });

  it('7. leader killed, TTL 10 s: the holder keeps its lock and no waiter enters until it releases', () =>
    leaderKill(servers.etcd.cluster, servers.etcd.env, 10_000, 8000, true, 'EtcdLocker'));
  it('7. leader killed, TTL 2 s: if the holder loses its lock, it is told before a waiter can enter', () =>
    leaderKill(servers.etcd.cluster, servers.etcd.env, 2000, 6000, false, 'EtcdLocker'));
  it('5. the member the holder talks to is blackholed, half-open or reset: renewals move on, the lock is kept', () =>
    etcdMemberFaults(servers.etcd.cluster, servers.etcd.env, 'EtcdLocker'));
  it('8. a waiter whose lease expires while queued is never granted; a granted lock has a live lease and a verified key', () =>
    waiterLeaseExpires(servers.etcd.cluster.endpoints, 'EtcdLocker'));
});
