/**
 * `wirelock status`: who holds a lock, for how long, the last fence, and who waits, read straight
 * from the servers (nothing is written).
 */
import { prefixEnd } from '../etcdrpc/codec.js';
import { SortOrder, SortTarget } from '../etcdrpc/types.js';
import { redisKeys } from '../locks/redis-scripts.js';
import type { RedisClient } from '../resp/client.js';
import type { CommonFlags } from './args.js';
import { openBackend, type Backend } from './connect.js';
import { formatMs } from './exit.js';

export async function status(flags: CommonFlags, print: (line: string) => void): Promise<void> {
  const backend = await openBackend(flags);
  try {
    if (backend.kind === 'etcd') await etcdStatus(backend, flags.key, print);
    else await redisStatus(backend, flags.key, print);
  } finally {
    await backend.close();
  }
}

async function redisStatus(backend: Backend, key: string, print: (line: string) => void): Promise<void> {
  const keys = redisKeys(backend.prefix, key);
  print(`lock "${key}" (${backend.kind === 'redis' ? 'Redis' : `Redlock over ${backend.redis.length} nodes`}; key ${keys.lock})`);
  const holders = new Map<string, number>();
  for (const client of backend.redis) {
    const node = await readNode(client, keys);
    if (node.token) holders.set(node.token, (holders.get(node.token) ?? 0) + 1);
    const who = node.token ? `held by token ${node.token}, ${node.pttl >= 0 ? `${formatMs(node.pttl)} left` : 'no expiry'}` : 'free';
    print(`  ${backend.redis.length > 1 ? `${client.address}: ` : ''}${who}; last fence ${node.fence ?? 'none yet'}`);
    if (node.waiters.length > 0) {
      print(`  ${node.waiters.length} waiting, in order:`);
      node.waiters.forEach((w, i) => print(`    ${i + 1}. ${w.token} (place lapses in ${formatMs(Math.max(0, w.lapsesInMs))})`));
    }
  }
  if (backend.kind === 'redlock') {
    const quorum = Math.floor(backend.redis.length / 2) + 1;
    const winner = [...holders.entries()].find(([, n]) => n >= quorum);
    print(winner ? `  held: token ${winner[0]} is on ${winner[1]} of ${backend.redis.length} nodes (quorum ${quorum})` : `  not held by any quorum (${quorum} of ${backend.redis.length} needed)`);
  }
}

async function readNode(client: RedisClient, keys: ReturnType<typeof redisKeys>) {
  const [token, pttl, fence, queue, time] = await Promise.all([
    client.send(['GET', keys.lock]),
    client.send(['PTTL', keys.lock]),
    client.send(['GET', keys.fence]),
    client.send(['ZRANGE', keys.queue, 0, -1]),
    client.send(['TIME']),
  ]);
  const [sec, usec] = time as [string, string];
  const now = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
  const waiters = await Promise.all(
    (queue as string[]).map(async (t) => ({ token: t, lapsesInMs: Number(await client.send(['ZSCORE', keys.queueExpiry, t])) - now })),
  );
  return { token: token as string | null, pttl: pttl as number, fence: fence as string | null, waiters };
}

async function etcdStatus(backend: Backend, key: string, print: (line: string) => void): Promise<void> {
  const etcd = backend.etcd!;
  const name = `${backend.prefix}${key}`;
  const from = Buffer.from(`${name}/`);
  const res = await etcd.range({ key: from, range_end: prefixEnd(from), sort_order: SortOrder.ASCEND, sort_target: SortTarget.CREATE });
  print(`lock "${key}" (etcd mutex; keys ${name}/<lease>, the same as \`etcdctl lock ${name}\`)`);
  if (res.kvs.length === 0) {
    print('  free');
    return;
  }
  const describeKv = async (kv: (typeof res.kvs)[number]): Promise<string> => {
    const ttl = kv.lease ? (await etcd.leaseTimeToLive({ ID: kv.lease })).TTL : -1n;
    const left = ttl > 0n ? `lease ${kv.lease.toString(16)} has ${ttl} s left` : kv.lease ? 'lease expiring' : 'no lease';
    return `${Buffer.from(kv.key).toString()} (create revision ${kv.create_revision}; ${left})`;
  };
  const [holder, ...waiters] = res.kvs;
  print(`  held by ${await describeKv(holder!)}; fence ${holder!.create_revision}`);
  if (waiters.length > 0) {
    print(`  ${waiters.length} waiting, in order:`);
    for (const [i, kv] of waiters.entries()) print(`    ${i + 1}. ${await describeKv(kv)}`);
  }
}
