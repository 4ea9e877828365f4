/**
 * A fenced write to etcd: the write is a transaction that applies only while the writer still holds
 * the lock, so a holder that stalled past its lease cannot overwrite its successor's work.
 *
 *   node --import tsx examples/etcd-fenced-write.ts [http://host:2379[,http://host2:2379,…]]
 *
 * Without endpoints it starts a throwaway single-member etcd (wirelock/testing) and stops it at the end.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { EtcdClient, EtcdLocker, ownerCompare, type Lock } from '../src/index.js';
import { startEtcd } from '../src/testing/servers.js';

const server = process.argv[2] ? undefined : await startEtcd();
const endpoints = process.argv[2]?.split(',') ?? server!.endpoints;
const client = await EtcdClient.connect({ endpoints });

/**
 * Puts `value` only if `lock` is still held: ownerCompare(lock) checks that the lock's own etcd key
 * still exists with the create revision it was granted with (its fence). The check and the put are
 * one transaction, so nothing can slip in between them, unlike a check in the client before writing.
 */
async function fencedPut(lock: Lock, value: string): Promise<boolean> {
  const res = await client.txn({
    compare: [ownerCompare(lock)],
    success: [{ request_put: { key: 'app/config', value } }],
  });
  return res.succeeded;
}

// Two workers; in real life two processes, each with its own client.
const a = new EtcdLocker(client);
const b = new EtcdLocker(client);
try {
  // autoExtend: false gives A a lease that nobody renews: it stands in for a holder whose
  // keep-alives stopped (a long GC pause, a stopped VM, a network partition).
  const lockA = await a.acquire('config', { ttlMs: 2000, autoExtend: false });
  console.log(`A holds the lock (fence ${lockA.fence}); its write: ${(await fencedPut(lockA, 'written by A')) ? 'applied' : 'REFUSED'}`);

  console.log('A stalls; its lease runs out after 2 s and etcd deletes its lock key');
  const lockB = await b.acquire('config', { ttlMs: 5000, waitTimeoutMs: 15_000 });
  console.log(`B holds the lock (fence ${lockB.fence}); its write: ${(await fencedPut(lockB, 'written by B')) ? 'applied' : 'REFUSED'}`);

  // A comes back and writes as if nothing happened. Its local lock.signal has aborted by now, but a
  // holder can be paused between checking the signal and writing: the transaction is what stops it.
  await sleep(100);
  const late = await fencedPut(lockA, 'late write by A');
  console.log(`A wakes up and writes: ${late ? 'applied (the guard FAILED)' : 'REFUSED: A no longer holds the lock'}`);

  const { kvs } = await client.range({ key: 'app/config' });
  console.log(`app/config = "${Buffer.from(kvs[0]!.value).toString()}"`);
  await lockB.release();
  await lockA.release(); // a no-op: it was lost, and release never deletes another holder's key
  if (late) process.exitCode = 1;
} finally {
  await a.close();
  await b.close();
  await client.close();
  await server?.stop();
}
