/**
 * wirelock/metrics against real servers: what the tests do to the locks is what the scrape says,
 * read back with a real Prometheus text parser (parse-prometheus-text-format), not a regex of ours.
 */
import { expect } from 'chai';
import dc from 'node:diagnostics_channel';
import parse, { type ParsedFamily, type ParsedSample } from 'parse-prometheus-text-format';
import { EtcdClient, EtcdElection, EtcdLocker, LockLostError, LockTimeoutError, RedisClient, RedisLocker } from '../src/index.js';
import { metrics } from '../src/metrics.js';
import { Histogram, Scalar, escapeLabelValue, exposition } from '../src/metrics/exposition.js';
import { startEtcd, startRedis, type EtcdServer, type RedisServer } from '../src/testing/servers.js';
import { rejection, sleep, waitFor } from './support/wait.js';

/** Channel events counted by the test itself, to hold the metrics to. */
function tally(names: string[]): { counts: Map<string, number>; seen: Array<[string, unknown]>; stop(): void } {
  const counts = new Map<string, number>();
  const seen: Array<[string, unknown]> = [];
  const fns = names.map((name) => {
    const fn = (m: unknown): void => {
      counts.set(name, (counts.get(name) ?? 0) + 1);
      seen.push([name, m]);
    };
    dc.subscribe(name, fn);
    return [name, fn] as const;
  });
  return { counts, seen, stop: () => fns.forEach(([name, fn]) => dc.unsubscribe(name, fn)) };
}

function family(families: ParsedFamily[], name: string): ParsedFamily {
  const f = families.find((x) => x.name === name);
  expect(f, `family ${name}`).to.not.equal(undefined);
  return f!;
}

/** Sum of a counter or gauge's samples whose labels include `where`. */
function total(families: ParsedFamily[], name: string, where: Record<string, string> = {}): number {
  return matching(family(families, name), where).reduce((s, m) => s + Number(m.value), 0);
}

function matching(f: ParsedFamily, where: Record<string, string>): ParsedSample[] {
  return f.metrics.filter((m) => Object.entries(where).every(([k, v]) => m.labels?.[k] === v));
}

/**
 * A histogram's series, as the parser reads them. parse-prometheus-text-format 1.1.1 folds a histogram
 * family into one series without labels (its flattenMetrics keeps `le` and drops every other label,
 * and the _sum and _count of labelled series), so labelled histograms are read a second time with
 * their TYPE line taken out: each series' _bucket, _sum and _count lines are then families of their own, every line
 * still parsed (and unescaped) by the parser.
 */
function histograms(text: string, name: string, where: Record<string, string> = {}): Array<{ labels: Record<string, string>; buckets: Array<[number, number]>; sum: number; count: number }> {
  expect(family(parse(text), name).type).to.equal('HISTOGRAM');
  const untyped = parse(text.replace(new RegExp(`^# TYPE ${name} histogram$`, 'm'), ''));
  // Each series' lines start their own family again: gather every family of that name.
  const lines = (suffix: string): ParsedSample[] => untyped.filter((x) => x.name === name + suffix).flatMap((x) => matching(x, where));
  const id = (labels: Record<string, string>): string => JSON.stringify(Object.entries(labels).filter(([k]) => k !== 'le'));
  const series = new Map<string, { labels: Record<string, string>; buckets: Array<[number, number]>; sum: number; count: number }>();
  for (const m of lines('_count')) series.set(id(m.labels!), { labels: m.labels!, buckets: [], sum: NaN, count: Number(m.value) });
  for (const m of lines('_sum')) series.get(id(m.labels!))!.sum = Number(m.value);
  for (const m of lines('_bucket')) {
    series.get(id(m.labels!))!.buckets.push([m.labels!.le === '+Inf' ? Infinity : Number(m.labels!.le), Number(m.value)]);
  }
  return [...series.values()];
}

/** Sum of a histogram's counts; and every series' buckets are cumulative and end at +Inf = count. */
function histogramCount(text: string, name: string, where: Record<string, string> = {}): number {
  let n = 0;
  for (const s of histograms(text, name, where)) {
    const buckets = [...s.buckets].sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]![1], `${name} buckets cumulative`).to.be.at.least(buckets[i - 1]![1]);
    expect(buckets.at(-1)).to.deep.equal([Infinity, s.count]);
    expect(s.sum).to.be.at.least(0);
    n += s.count;
  }
  return n;
}

function tokensOf(seen: Array<[string, unknown]>): string[] {
  return [...new Set(seen.map(([, p]) => (p as { token?: string }).token).filter((t): t is string => typeof t === 'string'))];
}

describe('metrics', function () {
  this.timeout(30_000);

  describe('text format', () => {
    it('escapes backslash, double quote and newline in label values, and backslash and newline in HELP', () => {
      expect(escapeLabelValue('a\\b"c\nd')).to.equal('a\\\\b\\"c\\nd');
      const c = new Scalar('counter', 'help with \\ and\nnewline and "quotes"', ['v']);
      c.add(['C:\\dir\\file "x"\nnext']);
      c.add(['plain'], 2);
      const text = exposition({ weird_total: c.snapshot() });
      expect(text).to.equal(
        '# HELP weird_total help with \\\\ and\\nnewline and "quotes"\n' +
          '# TYPE weird_total counter\n' +
          'weird_total{v="C:\\\\dir\\\\file \\"x\\"\\nnext"} 1\n' +
          'weird_total{v="plain"} 2\n',
      );
      const [f] = parse(text);
      expect(f!.help).to.equal('help with \\ and\nnewline and "quotes"');
      expect(f!.metrics.map((m) => [m.labels!.v, m.value])).to.deep.equal([['C:\\dir\\file "x"\nnext', '1'], ['plain', '2']]);
    });

    it('writes histograms as cumulative buckets ending in +Inf, then _sum and _count', () => {
      const h = new Histogram('h', ['s'], [0.1, 1]);
      for (const v of [0.05, 0.5, 0.5, 7]) h.observe(['x'], v);
      const text = exposition({ lat_seconds: h.snapshot() });
      expect(text.split('\n').slice(2, 7)).to.deep.equal([
        'lat_seconds_bucket{s="x",le="0.1"} 1',
        'lat_seconds_bucket{s="x",le="1"} 3',
        'lat_seconds_bucket{s="x",le="+Inf"} 4',
        'lat_seconds_sum{s="x"} 8.05',
        'lat_seconds_count{s="x"} 4',
      ]);
      const [f] = parse(text);
      expect(f!.metrics[0]!.buckets).to.deep.equal({ '0.1': '1', '1': '3', '+Inf': '4' });
    });

    it('refuses bad buckets, and prints only HELP and TYPE for a metric nothing has counted yet', () => {
      expect(() => metrics({ buckets: [1, 0.5] })).to.throw(RangeError);
      expect(() => metrics({ buckets: [] })).to.throw(TypeError);
      expect(() => metrics({ buckets: [0, 1] })).to.throw(RangeError);
      const m = metrics({ buckets: [0.01, 0.1] });
      try {
        const families = parse(m.prometheus());
        expect(family(families, 'wirelock_lock_losses_total').type).to.equal('COUNTER');
        expect(m.snapshot().wirelock_locks_held.samples).to.deep.equal([]);
      } finally {
        m.close();
        m.close(); // idempotent
      }
    });
  });

  describe('on Redis (with a password)', () => {
    const password = 'pw-metrics-S3cret';
    let redis: RedisServer;
    let admin: RedisClient;
    const clients: RedisClient[] = [];
    const connect = async (): Promise<RedisClient> => {
      const c = await RedisClient.connect(redis.url);
      clients.push(c);
      return c;
    };
    before(async () => {
      redis = await startRedis({ password });
      admin = await connect();
    });
    after(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await redis?.stop();
    });

    it('counts grants, waits, a timeout, releases and a loss as they happened, with the commands behind them', async () => {
      const keys = ['mx-orders-7f3a', 'mx-billing-92c1', 'mx-nightly-0b5e', 'mx-export-d4e8'];
      const m = metrics();
      const t = tally([
        'wirelock:resp:command', 'wirelock:resp:reply', 'wirelock:resp:error',
        'wirelock:lock:acquire', 'wirelock:lock:wait', 'wirelock:lock:release', 'wirelock:lock:lost',
      ]);
      let text: string;
      try {
        const l1 = new RedisLocker(await connect());
        const l2 = new RedisLocker(await connect());
        for (let i = 0; i < 3; i++) await (await l1.acquire(keys[0]!)).release(); // 3 uncontended
        // A handoff: l2 waits for l1.
        const a = await l1.acquire(keys[1]!);
        const waiting = l2.acquire(keys[1]!, { waitTimeoutMs: 5000 });
        await sleep(150);
        await a.release();
        await (await waiting).release();
        // A timeout, and a tryAcquire that finds the lock held.
        const held = await l1.acquire(keys[2]!);
        expect(await rejection(l2.acquire(keys[2]!, { waitTimeoutMs: 200 }))).to.be.instanceOf(LockTimeoutError);
        expect(await l2.tryAcquire(keys[2]!)).to.equal(null);
        // Mid-way: one lock held now.
        expect(total(parse(m.prometheus()), 'wirelock_locks_held', { backend: 'redis' })).to.equal(1);
        await held.release();
        // A loss: the key deleted behind the holder's back; the late release counts as nothing more.
        const lost = await l1.acquire(keys[3]!, { autoExtend: false });
        await admin.send(['DEL', `wirelock:{${keys[3]}}`]);
        expect(await rejection(lost.extend())).to.be.instanceOf(LockLostError);
        await lost.release();
        await l1.close();
        await l2.close();
        text = m.prometheus();
      } finally {
        t.stop();
        m.close();
      }
      const f = parse(text);
      const redisLock = { backend: 'redis', primitive: 'lock' };
      expect(total(f, 'wirelock_lock_acquisitions_total', redisLock)).to.equal(7);
      expect(total(f, 'wirelock_lock_releases_total', redisLock)).to.equal(6);
      expect(total(f, 'wirelock_lock_losses_total', { ...redisLock, reason: 'expired' })).to.equal(1);
      expect(total(f, 'wirelock_lock_losses_total')).to.equal(1);
      expect(total(f, 'wirelock_locks_held', redisLock)).to.equal(0);
      expect(histogramCount(text, 'wirelock_lock_wait_seconds', redisLock)).to.equal(7);
      expect(histogramCount(text, 'wirelock_lock_hold_seconds', redisLock)).to.equal(7);
      // The handoff and the timeout each slept at least once.
      expect(total(f, 'wirelock_lock_waits_total', redisLock)).to.equal(t.counts.get('wirelock:lock:wait'));
      expect(total(f, 'wirelock_lock_waits_total', redisLock)).to.be.at.least(2);
      // The handoff's grant waited for the release, 150 ms later: above the 0.1 s bucket.
      const [wait] = histograms(text, 'wirelock_lock_wait_seconds', redisLock);
      expect(wait!.count - wait!.buckets.find(([le]) => le === 0.1)![1]).to.be.at.least(1);

      // Commands: one series per server and command name, and the same figures the channels carried.
      const server = `${redis.host}:${redis.port}`;
      expect(total(f, 'wirelock_redis_commands_total')).to.equal(t.counts.get('wirelock:resp:command'));
      expect(total(f, 'wirelock_redis_commands_total', { server, command: 'EVALSHA' })).to.be.at.least(10);
      expect(total(f, 'wirelock_redis_commands_total', { server, command: 'AUTH' })).to.be.at.least(2); // l1's and l2's connections, and a waiter's subscriber connection
      const errors = t.counts.get('wirelock:resp:error') ?? 0;
      const writtenErrors = t.seen.filter(([name, p]) => name === 'wirelock:resp:error' && (p as { written: boolean }).written).length;
      expect(total(f, 'wirelock_redis_command_errors_total')).to.equal(errors);
      expect(histogramCount(text, 'wirelock_redis_command_duration_seconds')).to.equal((t.counts.get('wirelock:resp:reply') ?? 0) + writtenErrors);
      for (const s of family(f, 'wirelock_redis_commands_total').metrics) {
        expect(Object.keys(s.labels!).sort()).to.deep.equal(['command', 'server']);
        expect(s.labels!.command).to.match(/^[A-Z_]+$/);
      }

      // Nothing secret or the caller's own: no password, no token, no key name, anywhere in the text.
      expect(text).to.not.include(password);
      const tokens = tokensOf(t.seen);
      expect(tokens.length).to.be.at.least(7);
      for (const token of tokens) expect(text).to.not.include(token);
      for (const key of keys) expect(text).to.not.include(key);
    });

    it('labels lock metrics with the key (escaped) only under keyLabels, and collectors coexist and stop independently', async () => {
      const key = 'mx-we"ird\\key\nname';
      const plain = metrics();
      const keyed = metrics({ keyLabels: true });
      const t = tally(['wirelock:lock:acquire']);
      const locker = new RedisLocker(await connect());
      try {
        await (await locker.acquire(key)).release();
        plain.close();
        await (await locker.acquire(key)).release(); // only `keyed` sees this one
      } finally {
        await locker.close();
        t.stop();
        keyed.close();
      }
      const plainText = plain.prometheus();
      const keyedText = keyed.prometheus();
      expect(total(parse(plainText), 'wirelock_lock_acquisitions_total')).to.equal(1);
      expect(plainText).to.not.include('mx-we');
      const f = parse(keyedText);
      const text = keyedText;
      expect(total(f, 'wirelock_lock_acquisitions_total', { key })).to.equal(2);
      expect(total(f, 'wirelock_lock_releases_total', { key })).to.equal(2);
      expect(total(f, 'wirelock_locks_held', { key })).to.equal(0);
      expect(histogramCount(text, 'wirelock_lock_hold_seconds', { key })).to.equal(2);
      expect(keyedText).to.include(`key="${escapeLabelValue(key)}"`);
      expect(keyed.snapshot().wirelock_lock_acquisitions_total.samples).to.deep.equal([
        { labels: { backend: 'redis', primitive: 'lock', key }, value: 2 },
      ]);
      for (const token of tokensOf(t.seen)) expect(keyedText).to.not.include(token);
      expect(keyedText).to.not.include(password);
    });
  });

  describe('on etcd', () => {
    let etcd: EtcdServer;
    const clients: EtcdClient[] = [];
    const connect = async (): Promise<EtcdClient> => {
      const c = await EtcdClient.connect({ endpoints: etcd.endpoints });
      clients.push(c);
      return c;
    };
    before(async () => {
      etcd = await startEtcd();
    });
    after(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await etcd?.stop();
    });

    it('counts grants, a wait, a timeout, releases, a session loss and an election, with the RPCs behind them', async () => {
      const keys = ['mx-etcd-ledger-51aa', 'mx-etcd-queue-c07d', 'mx-etcd-leader-e3f9'];
      const m = metrics();
      const t = tally([
        'wirelock:etcd:call', 'wirelock:etcd:response', 'wirelock:etcd:error',
        'wirelock:lock:acquire', 'wirelock:lock:wait', 'wirelock:lock:release', 'wirelock:lock:lost',
      ]);
      let text: string;
      try {
        const admin = await connect();
        const l1 = new EtcdLocker(await connect());
        const l2 = new EtcdLocker(await connect());
        for (let i = 0; i < 2; i++) await (await l1.acquire(keys[0]!)).release();
        const a = await l1.acquire(keys[1]!);
        const waiting = l2.acquire(keys[1]!, { waitTimeoutMs: 5000 });
        await sleep(150);
        await a.release();
        const b = await waiting;
        expect(await rejection(l1.acquire(keys[1]!, { waitTimeoutMs: 300 }))).to.be.instanceOf(LockTimeoutError);
        // A loss: l2's session lease revoked behind its back.
        await admin.leaseRevoke({ ID: BigInt(`0x${b.token.slice(b.token.lastIndexOf('/') + 1)}`) });
        await waitFor(() => b.signal.aborted, 5000, 'the loss');
        await b.release();
        // An election publishes on the lock channels too: a leadership is a held lock.
        const election = new EtcdElection(await connect(), keys[2]!);
        await (await election.campaign('me')).resign();
        await election.close();
        await l1.close();
        await l2.close();
        text = m.prometheus();
      } finally {
        t.stop();
        m.close();
      }
      const f = parse(text);
      const etcdLock = { backend: 'etcd', primitive: 'lock' };
      expect(total(f, 'wirelock_lock_acquisitions_total', etcdLock)).to.equal(5);
      expect(total(f, 'wirelock_lock_releases_total', etcdLock)).to.equal(4);
      expect(total(f, 'wirelock_lock_losses_total', { ...etcdLock, reason: 'session-expired' })).to.equal(1);
      expect(total(f, 'wirelock_locks_held', etcdLock)).to.equal(0);
      expect(histogramCount(text, 'wirelock_lock_wait_seconds', etcdLock)).to.equal(5);
      expect(histogramCount(text, 'wirelock_lock_hold_seconds', etcdLock)).to.equal(5);
      expect(total(f, 'wirelock_lock_waits_total', etcdLock)).to.equal(t.counts.get('wirelock:lock:wait'));
      expect(total(f, 'wirelock_lock_waits_total', etcdLock)).to.be.at.least(2);

      const server = new URL(etcd.clientUrl).host;
      expect(total(f, 'wirelock_etcd_calls_total')).to.equal(t.counts.get('wirelock:etcd:call'));
      expect(total(f, 'wirelock_etcd_calls_total', { server, method: 'KV.Txn' })).to.be.at.least(5);
      expect(histogramCount(text, 'wirelock_etcd_call_duration_seconds')).to.equal(t.counts.get('wirelock:etcd:response'));
      expect(total(f, 'wirelock_etcd_call_errors_total')).to.equal(t.counts.get('wirelock:etcd:error') ?? 0);
      for (const s of family(f, 'wirelock_etcd_calls_total').metrics) expect(s.labels!.server).to.equal(server);

      const tokens = tokensOf(t.seen); // one per session and key: the shared session's key comes back
      expect(tokens.length).to.be.at.least(3);
      for (const token of tokens) expect(text).to.not.include(token);
      for (const key of keys) expect(text).to.not.include(key);
    });
  });

  describe('failed acquires and waiters now (lock:giveup, lock:waiter)', function () {
    this.timeout(30_000);
    let redis: RedisServer;
    let etcd: EtcdServer;
    before(async () => {
      [redis, etcd] = await Promise.all([startRedis(), startEtcd()]);
    });
    after(async () => Promise.all([redis?.stop(), etcd?.stop()]));

    for (const backend of ['redis', 'etcd'] as const) {
      it(`${backend}: counts each way an acquire gives up, and the waiters gauge goes up while one waits and back to 0`, async () => {
        const client = backend === 'redis' ? await RedisClient.connect(redis.url) : await EtcdClient.connect({ endpoints: etcd.endpoints });
        const make = (): RedisLocker | EtcdLocker => (client instanceof RedisClient ? new RedisLocker(client) : new EtcdLocker(client));
        const [holder, waiter, closing] = [make(), make(), make()];
        const m = metrics();
        const where = { backend, primitive: 'lock' };
        try {
          const held = await holder.acquire('mx-busy', { ttlMs: 5000 });
          expect(await rejection(waiter.acquire('mx-busy', { waitTimeoutMs: 200 }))).to.be.instanceOf(LockTimeoutError);
          expect(await rejection(waiter.acquire('mx-busy', { waitTimeoutMs: 0 }))).to.be.instanceOf(LockTimeoutError);
          const ac = new AbortController();
          setTimeout(() => ac.abort(new Error('enough')), 150);
          expect((await rejection(waiter.acquire('mx-busy', { signal: ac.signal }))).message).to.equal('enough');
          const pending = rejection(closing.acquire('mx-busy'));
          await waitFor(() => total(parse(m.prometheus()), 'wirelock_lock_waiters', where) === 1, 3000, 'one waiter');
          await closing.close();
          await pending;
          expect(await waiter.tryAcquire('mx-busy')).to.equal(null); // a try that finds it held is not a failure
          await held.release();
          const f = parse(m.prometheus());
          expect(total(f, 'wirelock_lock_failures_total', { ...where, reason: 'timeout' })).to.equal(2);
          expect(total(f, 'wirelock_lock_failures_total', { ...where, reason: 'aborted' })).to.equal(1);
          expect(total(f, 'wirelock_lock_failures_total', { ...where, reason: 'closed' })).to.equal(1);
          expect(total(f, 'wirelock_lock_failures_total')).to.equal(4);
          expect(total(f, 'wirelock_lock_waiters', where)).to.equal(0);
        } finally {
          m.close();
          await Promise.all([holder.close(), waiter.close()]);
          await client.close();
        }
      });
    }
  });
});
