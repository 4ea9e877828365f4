/**
 * Fault suite, full run only (`npm run test:faults`): leader election while its leaders fail.
 * Four candidate processes campaign in a loop on one election; leaders are paused past their TTL
 * and killed; on a 3-member etcd cluster the etcd leader member is killed too, and a leader's links
 * are blackholed and reset. (A single redis-server killed loses every lease: not a fault to survive.)
 */
import { suiteServers } from '../support/faults-env.js';
import { electionUnderFaults } from './scenarios/election.js';

describe('faults: leader election, leaders paused and killed while candidates campaign in a loop', function () {
  this.timeout(90_000);
  const servers = suiteServers({ redis: 1, etcd: 3 });

  it('RedisElection, TTL 1 s: one leader at a time, terms increase, a paused leader\'s late write is refused, a killed one replaced within TTL + 500 ms', () =>
    electionUnderFaults({ env: servers.redis.env('redis') }, {
      candidates: 4,
      ttlMs: 1000,
      termMs: [40, 300],
      faults: ['pause', 'kill', 'pause', 'kill', 'pause', 'kill'],
      slackMs: 500,
    }, 'RedisElection'));

  // etcd's shortest lease is 2 s, and its lessor looks for expired leases every 500 ms.
  it('EtcdElection on 3 members, TTL 2 s: the same, with the etcd leader member killed and a leader\'s links blackholed and reset', () =>
    electionUnderFaults({ env: servers.etcd.env, cluster: servers.etcd.cluster }, {
      candidates: 4,
      ttlMs: 2000,
      termMs: [40, 300],
      faults: ['pause', 'kill', 'partition', 'pause', 'kill', 'reset', 'member-kill'],
      slackMs: 1500,
    }, 'EtcdElection'));
});
