/**
 * `wirelock status`: who holds a lock, for how long, the last fence, and who waits, read straight
 * from the servers (nothing is written). With `--watch`, the same view redrawn in place: at every
 * interval, and at once when the lock changes hands (Redis: the lock's release channel; etcd: a watch
 * on the lock's prefix).
 */
import { prefixEnd } from '../etcdrpc/codec.js';
import { SortOrder, SortTarget } from '../etcdrpc/types.js';
import type { Watcher } from '../etcdrpc/watch.js';
import { redisKeys, rwKeys, semaphoreKeys } from '../locks/redis-scripts.js';
import type { RedisClient } from '../resp/client.js';
import { RedisCluster } from '../resp/cluster.js';
import { Script } from '../resp/script.js';
import type { StatusFlags } from './args.js';
import { openBackend, type Backend } from './connect.js';
import { describe as describeError, formatMs } from './exit.js';

/** Where the watched view is drawn: process.stdout, in practice. */
export interface Screen {
  write(text: string): void;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export async function status(flags: StatusFlags, print: (line: string) => void, screen: Screen): Promise<void> {
  const backend = await openBackend(flags);
  try {
    if (flags.watch) await watchStatus(backend, flags, screen);
    else for (const line of (await readView(backend, flags)).lines) print(line);
  } finally {
    await backend.close();
  }
}

/**
 * How long something has been in view. Redis records when each waiter joined (the server's clock),
 * but neither server records when a holder got the lock or when an etcd waiter's key was made in
 * wall time, so the watch times those from when it first saw them: `≥` marks what was already there
 * when the watch started, whose age is only known to be at least that.
 */
class FirstSeen {
  readonly #since = new Map<string, { at: number; before: boolean }>();
  #first = true;

  age(id: string, now: number): string {
    let entry = this.#since.get(id);
    if (!entry) this.#since.set(id, (entry = { at: now, before: this.#first }));
    return `${entry.before ? '≥' : ''}${formatMs(now - entry.at)}`;
  }

  /** Ends a frame: forgets what the frame did not show, so a key that comes back is timed anew. */
  endFrame(shown: Set<string>): void {
    this.#first = false;
    for (const id of this.#since.keys()) if (!shown.has(id)) this.#since.delete(id);
  }
}

interface Tracking {
  seen: FirstSeen;
  now: number;
  shown: Set<string>;
}

/** A frame's text, and whether it caught a handoff half-way (free, with waiters: one is about to take it). */
interface View {
  lines: string[];
  settling: boolean;
}

/** What to read: the lock `key`, with `permits` the semaphore of that many permits, with `rw` the read-write lock. */
interface Target {
  key: string;
  permits: number | undefined;
  rw: boolean;
}

function readView(backend: Backend, target: Target, tracking?: Tracking): Promise<View> {
  if (backend.kind === 'etcd') return target.rw ? etcdRwView(backend, target.key, tracking) : etcdView(backend, target, tracking);
  if (target.rw) return redisRwView(backend, target.key, tracking);
  if (target.permits !== undefined) return redisSemaphoreView(backend, target.key, target.permits, tracking);
  return redisView(backend, target.key, tracking);
}

/** How long `id` (a holder or waiter) has been seen, when the watch tracks ages: `, held 3s`. */
function ageOf(tracking: Tracking | undefined, id: string, what: string): string {
  if (!tracking) return '';
  tracking.shown.add(id);
  return `, ${what} ${tracking.seen.age(id, tracking.now)}`;
}

async function redisView(backend: Backend, key: string, tracking?: Tracking): Promise<View> {
  const keys = redisKeys(backend.prefix, key);
  const lines = [`lock "${key}" (${backend.kind === 'redis' ? 'Redis' : `Redlock over ${backend.redis.length} nodes`}; key ${keys.lock})`];
  const holders = new Map<string, number>();
  let settling = false;
  const nodes = await Promise.all(backend.redis.map((client) => readNode(client, keys)));
  for (const [i, node] of nodes.entries()) {
    const client = backend.redis[i]!;
    if (node.token) holders.set(node.token, (holders.get(node.token) ?? 0) + 1);
    let who = 'free';
    if (node.token) {
      who = `held by token ${node.token}, ${node.pttl >= 0 ? `${formatMs(node.pttl)} left` : 'no expiry'}`;
      who += ageOf(tracking, `${client.address} ${node.token}`, 'held');
    }
    lines.push(`  ${backend.redis.length > 1 ? `${client.address}: ` : ''}${who}; last fence ${node.fence ?? 'none yet'}`);
    if (!node.token && node.waiters.some((w) => w.lapsesInMs > 0)) settling = true;
    lines.push(...waiterLines(node.waiters));
  }
  if (backend.kind === 'redlock') {
    const quorum = Math.floor(backend.redis.length / 2) + 1;
    const winner = [...holders.entries()].find(([, n]) => n >= quorum);
    lines.push(
      winner
        ? `  held: token ${winner[0]} is on ${winner[1]} of ${backend.redis.length} nodes (quorum ${quorum})`
        : `  not held by any quorum (${quorum} of ${backend.redis.length} needed)`,
    );
  }
  return { lines, settling };
}

/**
 * One node's view, read in one MULTI/EXEC (one write, one round trip): a transaction, so a handoff
 * cannot fall between the reads and show a waiter that has already left the queue. The queue's
 * scores are the server's µs when each waiter joined; the expiry set's, the server's ms when its
 * place lapses; both are read against the server's TIME, taken in the same transaction.
 */
async function readNode(client: RedisClient | RedisCluster, keys: ReturnType<typeof redisKeys>) {
  const reads = [
    ['GET', keys.lock],
    ['PTTL', keys.lock],
    ['GET', keys.fence],
    ['ZRANGE', keys.queue, 0, -1, 'WITHSCORES'],
    ['ZRANGE', keys.queueExpiry, 0, -1, 'WITHSCORES'],
    ['TIME'],
  ];
  const [token, pttl, fence, queue, expiries, time] = (await transaction(client, reads)) as [string | null, number, string | null, string[], string[], [string, string]];
  return { token, pttl, fence, waiters: queueWaiters(queue, expiries, serverUs(time)) };
}

/**
 * On a cluster, the same reads as one script on the keys' master (a transaction needs one connection,
 * which a cluster client does not keep): ARGV holds each command as its length, then its arguments.
 * A nil reply comes back as false inside a script; it is turned back into null here.
 */
const READS = new Script(
  `local out, i = {}, 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local r = redis.call(unpack(ARGV, i + 1, i + n))
  if r == false then r = '\0nil' end
  out[#out + 1] = r
  i = i + n + 1
end
return out`,
  1,
);

/** `reads` in one MULTI/EXEC: sent in one write, run by the server as one, answered as EXEC's array. */
async function transaction(client: RedisClient | RedisCluster, reads: Array<Array<string | number>>): Promise<unknown[]> {
  if (client instanceof RedisCluster) {
    const key = reads.find((r) => r.length > 1)![1]!;
    const reply = (await client.evalScript(READS, [key], reads.flatMap((r) => [r.length, ...r]))) as unknown[];
    return reply.map((v) => (v === '\0nil' ? null : v));
  }
  const replies = await Promise.all([client.send(['MULTI']), ...reads.map((r) => client.send(r)), client.send(['EXEC'])]);
  return replies[replies.length - 1] as unknown[];
}

/** A TIME reply as µs. */
function serverUs(time: [string, string]): number {
  return Number(time[0]) * 1e6 + Number(time[1]);
}

function waiterLines(waiters: Array<{ token: string; waitingMs: number; lapsesInMs: number }>): string[] {
  if (waiters.length === 0) return [];
  return [
    `  ${waiters.length} waiting, in order:`,
    ...waiters.map((w, i) => {
      const lapse = w.lapsesInMs > 0 ? `place lapses in ${formatMs(w.lapsesInMs)}` : 'place lapsed, dropped at the next attempt';
      return `    ${i + 1}. ${w.token} (waiting ${formatMs(Math.max(0, w.waitingMs))}; ${lapse})`;
    }),
  ];
}

/**
 * A RedisSemaphore's key: its live permits (each with the time its server-clock expiry leaves), the
 * last fence, and the queue; one MULTI/EXEC, as for a lock.
 */
async function redisSemaphoreView(backend: Backend, key: string, permits: number, tracking?: Tracking): Promise<View> {
  const keys = semaphoreKeys(backend.prefix, key);
  const { entries: live, fence, waiters } = await readQueued(backend.redis[0]!, keys);
  const lines = [`semaphore "${key}" (Redis; key ${keys.lock}): ${live.length} of ${permits} permits held; last fence ${fence ?? 'none yet'}`];
  live.forEach((p, i) => lines.push(`    ${i + 1}. token ${p.token}, ${formatMs(p.leftMs)} left${ageOf(tracking, p.token, 'held')}`));
  lines.push(...waiterLines(waiters));
  return { lines, settling: live.length < permits && waiters.some((w) => w.lapsesInMs > 0) };
}

/**
 * A RedisRWLock's key: the readers or the writer holding (each with its server-clock time left), the
 * last fence, and the queue with each waiter's mode. One MULTI/EXEC.
 */
async function redisRwView(backend: Backend, key: string, tracking?: Tracking): Promise<View> {
  const keys = rwKeys(backend.prefix, key);
  const { entries: held, fence, waiters } = await readQueued(backend.redis[0]!, keys);
  const mode = (member: string): string => (member.startsWith('w:') ? 'write' : 'read');
  const holders = held.map((h) => ({ ...h, mode: mode(h.token), token: h.token.slice(2) }));
  const writing = holders.some((h) => h.mode === 'write');
  const state = holders.length === 0 ? 'free' : writing ? 'held for writing' : `held for reading by ${holders.length}`;
  const lines = [`read-write lock "${key}" (Redis; key ${keys.lock}): ${state}; last fence ${fence ?? 'none yet'}`];
  holders.forEach((h, i) => lines.push(`    ${i + 1}. ${h.mode} token ${h.token}, ${formatMs(h.leftMs)} left${ageOf(tracking, h.token, 'held')}`));
  const queued = waiters.map((w) => ({ ...w, token: `${mode(w.token)} ${w.token.slice(2)}` }));
  lines.push(...waiterLines(queued));
  return { lines, settling: !writing && queued.length > 0 && (holders.length === 0 || !queued[0]!.token.startsWith('write')) };
}

/** The live holds (token -> time left), the fence and the queue of a RedisLocker-style key set, in one MULTI/EXEC. */
async function readQueued(client: RedisClient | RedisCluster, keys: ReturnType<typeof redisKeys>) {
  const reads = [
    ['ZRANGE', keys.lock, 0, -1, 'WITHSCORES'],
    ['GET', keys.fence],
    ['ZRANGE', keys.queue, 0, -1, 'WITHSCORES'],
    ['ZRANGE', keys.queueExpiry, 0, -1, 'WITHSCORES'],
    ['TIME'],
  ];
  const [held, fence, queue, expiries, time] = (await transaction(client, reads)) as [string[], string | null, string[], string[], [string, string]];
  const nowUs = serverUs(time);
  const entries: Array<{ token: string; leftMs: number }> = [];
  for (let i = 0; i < held.length; i += 2) {
    const leftMs = Number(held[i + 1]) - nowUs / 1000;
    if (leftMs > 0) entries.push({ token: held[i]!, leftMs }); // an expired one is dropped by the next script run
  }
  return { entries, fence, waiters: queueWaiters(queue, expiries, nowUs) };
}

/** A RedisLocker-style queue read with WITHSCORES: join times (server µs) and place lapses (server ms). */
function queueWaiters(queue: string[], expiries: string[], nowUs: number): Array<{ token: string; waitingMs: number; lapsesInMs: number }> {
  const lapseAt = new Map<string, number>();
  for (let i = 0; i < expiries.length; i += 2) lapseAt.set(expiries[i]!, Number(expiries[i + 1]));
  const waiters: Array<{ token: string; waitingMs: number; lapsesInMs: number }> = [];
  for (let i = 0; i < queue.length; i += 2) {
    const t = queue[i]!;
    waiters.push({ token: t, waitingMs: (nowUs - Number(queue[i + 1])) / 1000, lapsesInMs: (lapseAt.get(t) ?? 0) - nowUs / 1000 });
  }
  return waiters;
}

/**
 * An etcd lock or semaphore: every key under the name, oldest first. For a lock the oldest holds; for
 * a semaphore of N permits, the N oldest do (EtcdSemaphore's rule: a key holds while fewer than N
 * keys are older).
 */
async function etcdView(backend: Backend, target: Target, tracking?: Tracking): Promise<View> {
  const etcd = backend.etcd!;
  const { key, permits } = target;
  const name = `${backend.prefix}${key}`;
  const from = Buffer.from(`${name}/`);
  const res = await etcd.range({ key: from, range_end: prefixEnd(from), sort_order: SortOrder.ASCEND, sort_target: SortTarget.CREATE });
  const lines = [
    permits === undefined
      ? `lock "${key}" (etcd mutex; keys ${name}/<lease>, the same as \`etcdctl lock ${name}\`)`
      : `semaphore "${key}" (etcd; keys ${name}/<lease>-<n>): ${Math.min(permits, res.kvs.length)} of ${permits} permits held`,
  ];
  // The watch sees every change under the prefix, so an etcd view never needs an early re-read.
  if (res.kvs.length === 0) return { lines: permits === undefined ? [...lines, '  free'] : lines, settling: false };
  const leases = await Promise.all(res.kvs.map((kv) => (kv.lease ? etcd.leaseTimeToLive({ ID: kv.lease }) : undefined)));
  const describeKv = (i: number, held: boolean): string => {
    const kv = res.kvs[i]!;
    const lease = leases[i];
    let left = 'no lease';
    if (lease) left = lease.TTL > 0n ? `lease ${kv.lease.toString(16)} has ${lease.TTL} s of ${lease.grantedTTL} s left` : `lease ${kv.lease.toString(16)} expiring`;
    const k = Buffer.from(kv.key).toString();
    // A waiter that becomes a holder starts a new age: the time it has held, not waited.
    const age = ageOf(tracking, `${held ? 'held' : 'waiting'} ${k} ${kv.create_revision}`, held ? 'held' : 'waiting');
    return `${k} (create revision ${kv.create_revision}; ${left}${age.replace(', ', '; ')})`;
  };
  const holding = Math.min(permits ?? 1, res.kvs.length);
  if (permits === undefined) lines.push(`  held by ${describeKv(0, true)}; fence ${res.kvs[0]!.create_revision}`);
  else for (let i = 0; i < holding; i++) lines.push(`    ${i + 1}. ${describeKv(i, true)}; fence ${res.kvs[i]!.create_revision}`);
  if (res.kvs.length > holding) {
    lines.push(`  ${res.kvs.length - holding} waiting, in order:`);
    for (let i = holding; i < res.kvs.length; i++) lines.push(`    ${i - holding + 1}. ${describeKv(i, false)}`);
  }
  return { lines, settling: false };
}

/**
 * An EtcdRWLock (etcd's Go recipe layout): `<name>/read/…` and `<name>/write/…` keys, oldest first.
 * The oldest key holds if it is a writer's; otherwise the readers older than the oldest writer hold.
 */
async function etcdRwView(backend: Backend, key: string, tracking?: Tracking): Promise<View> {
  const etcd = backend.etcd!;
  const name = `${backend.prefix}${key}`;
  const from = Buffer.from(`${name}/`);
  const res = await etcd.range({ key: from, range_end: prefixEnd(from), sort_order: SortOrder.ASCEND, sort_target: SortTarget.CREATE });
  const kvs = res.kvs.filter((kv) => /\/(read|write)\/[^/]+$/.test(Buffer.from(kv.key).toString()));
  const isWrite = (i: number): boolean => Buffer.from(kvs[i]!.key).toString().slice(from.length).startsWith('write/');
  const firstWriter = kvs.findIndex((_, i) => isWrite(i));
  const holding = kvs.length === 0 ? 0 : firstWriter === 0 ? 1 : firstWriter === -1 ? kvs.length : firstWriter;
  const state = holding === 0 ? 'free' : isWrite(0) ? 'held for writing' : `held for reading by ${holding}`;
  const lines = [`read-write lock "${key}" (etcd; keys ${name}/read/… and ${name}/write/…, as Go's recipe.RWMutex): ${state}`];
  const describeKv = async (i: number, held: boolean): Promise<string> => {
    const kv = kvs[i]!;
    const lease = kv.lease ? await etcd.leaseTimeToLive({ ID: kv.lease }) : undefined;
    const left = !lease ? 'no lease' : lease.TTL > 0n ? `lease ${kv.lease.toString(16)} has ${lease.TTL} s left` : `lease ${kv.lease.toString(16)} expiring`;
    const k = Buffer.from(kv.key).toString();
    const age = ageOf(tracking, `${held ? 'held' : 'waiting'} ${k} ${kv.create_revision}`, held ? 'held' : 'waiting');
    return `${isWrite(i) ? 'write' : 'read'} ${k} (create revision ${kv.create_revision}; ${left}${age.replace(', ', '; ')})`;
  };
  for (let i = 0; i < holding; i++) lines.push(`    ${i + 1}. ${await describeKv(i, true)}; fence ${kvs[i]!.create_revision}`);
  if (kvs.length > holding) {
    lines.push(`  ${kvs.length - holding} waiting, in order:`);
    for (let i = holding; i < kvs.length; i++) lines.push(`    ${i - holding + 1}. ${await describeKv(i, false)}`);
  }
  return { lines, settling: false };
}

/**
 * The live view. On a terminal each frame is drawn from the top-left corner over the last one (every
 * line cut to the terminal's width and cleared to its end, then the rest of the screen cleared), so
 * nothing scrolls; elsewhere (a pipe, a file) each frame is printed after the last with a blank line
 * between. A read that fails (a server down) is shown in the frame and tried again at the next one.
 * It ends on SIGINT or SIGTERM, leaving the last frame on screen.
 */
/** How soon a frame that caught a handoff half-way is read again. */
const SETTLE_MS = 100;

async function watchStatus(backend: Backend, flags: StatusFlags, screen: Screen): Promise<void> {
  const seen = new FirstSeen();
  let wake: (() => void) | undefined;
  let changed = false;
  const poke = (): void => {
    changed = true;
    wake?.();
  };
  let stopped = false;
  const stop = (): void => {
    stopped = true;
    wake?.();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const unsubscribe: Array<() => void> = [];
  let etcdWatch: Watcher | undefined;
  const follow = async (): Promise<void> => {
    if (backend.kind === 'etcd') {
      if (etcdWatch) return;
      const from = Buffer.from(`${backend.prefix}${flags.key}/`);
      etcdWatch = backend.etcd!.watch(from, { range_end: prefixEnd(from) }, {
        onEvents: poke,
        onError: () => {
          etcdWatch = undefined; // set up again at the next frame
          poke();
        },
      });
    } else if (unsubscribe.length === 0) {
      const layout = flags.rw ? rwKeys : flags.permits === undefined ? redisKeys : semaphoreKeys;
      const channel = layout(backend.prefix, flags.key).channel;
      for (const client of backend.redis) unsubscribe.push(await client.subscribe(channel, poke));
    }
  };
  // What wakes the view between intervals: Redis announces releases only (an uncontended grant shows
  // at the next interval); etcd's watch sees every key put or deleted under the lock.
  const wakesOn = backend.kind === 'etcd' ? 'on each change' : 'on each release';
  const tty = screen.isTTY === true;
  if (tty) screen.write('\x1b[?25l\x1b[2J'); // hide the cursor, clear the screen
  try {
    let first = true;
    while (!stopped) {
      changed = false;
      const frameStart = performance.now();
      const shown = new Set<string>();
      let body: string[];
      let settling = false;
      try {
        await follow();
        ({ lines: body, settling } = await readView(backend, flags, { seen, now: frameStart, shown }));
        seen.endFrame(shown);
      } catch (err) {
        body = [`lock "${flags.key}": cannot read it now: ${describeError(err)}; trying again`];
      }
      if (stopped) break;
      const clock = new Date().toISOString().slice(11, 19);
      const header = `wirelock status --watch · ${clock} · every ${formatMs(flags.intervalMs)} and ${wakesOn} · Ctrl-C to stop`;
      draw(screen, [header, '', ...body], tty, first);
      first = false;
      if (changed) continue;
      await new Promise<void>((resolve) => {
        // A Redis grant to a waiter is announced by nothing: after a release we saw half-done, look
        // again shortly rather than show a free lock for a whole interval.
        const timer = setTimeout(resolve, settling ? Math.min(SETTLE_MS, flags.intervalMs) : flags.intervalMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    for (const off of unsubscribe) off();
    etcdWatch?.cancel();
    if (tty) screen.write('\x1b[?25h'); // the cursor back
  }
}

function draw(screen: Screen, lines: string[], tty: boolean, first: boolean): void {
  if (!tty) {
    screen.write(`${first ? '' : '\n'}${lines.join('\n')}\n`);
    return;
  }
  const width = screen.columns && screen.columns > 1 ? screen.columns : Infinity;
  const cut = (line: string): string => ([...line].length > width ? `${[...line].slice(0, width - 1).join('')}…` : line);
  screen.write(`\x1b[H${lines.map((l) => `${cut(l)}\x1b[K`).join('\n')}\n\x1b[J`);
}
