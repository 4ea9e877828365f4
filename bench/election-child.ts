/**
 * A candidate in its own process, for bench/election.ts: campaigns, prints "leading <fence>", then
 * leads until it is killed. Usage: election-child.ts etcd|redis <endpoint or url> <name> <ttlMs>
 */
import { EtcdClient, EtcdElection, RedisClient, RedisElection, type Election } from '../src/index.js';

const [backend, url, name, ttl] = process.argv.slice(2);
const ttlMs = Number(ttl);
const election: Election =
  backend === 'etcd'
    ? new EtcdElection(await EtcdClient.connect({ endpoints: [url!] }), name!, { ttlMs })
    : new RedisElection(await RedisClient.connect(url!), name!, { ttlMs });
const leadership = await election.campaign(`child-${process.pid}`);
process.stdout.write(`leading ${leadership.fence}\n`);
leadership.signal.addEventListener('abort', () => process.exit(3));
