/**
 * `wirelock elect`, driven as a user would: child processes against real servers, and etcdctl.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EtcdClient, RedisClient } from '../src/index.js';
import { formatText } from '../src/cli/elect.js';
import { startEtcd, startRedis, type EtcdServer, type RedisServer } from '../src/testing/servers.js';
import { etcdctl, etcdctlElect, queuedKeys } from './support/etcd.js';
import { runProcess, type RunResult } from './support/run.js';
import { waitFor } from './support/wait.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CLI = [process.execPath, '--import', 'tsx', path.join(root, 'src/cli/main.ts')];

const cli = (args: string[]): Promise<RunResult> => runProcess(CLI[0]!, [...CLI.slice(1), ...args], { cwd: root });

/** A long-running `wirelock elect`, with its output so far, line by line. */
interface Running {
  child: ChildProcess;
  lines(): string[];
  stderr(): string;
  /** Resolves with the first stdout line matching `re` (fails after 15 s). */
  line(re: RegExp, what: string): Promise<RegExpExecArray>;
  exited: Promise<number | null>;
}

const running = new Set<Running>();

function start(args: string[]): Running {
  const child = spawn(CLI[0]!, [...CLI.slice(1), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const lines = (): string[] => stdout.split('\n').slice(0, -1); // only complete lines
  const r: Running = {
    child,
    lines,
    stderr: () => stderr,
    line: async (re, what) => {
      let found: RegExpExecArray | null = null;
      await waitFor(() => lines().some((l) => (found = re.exec(l)) !== null), 15_000, `${what} (stdout: ${JSON.stringify(stdout)}, stderr: ${JSON.stringify(stderr)})`, 10);
      return found!;
    },
    exited,
  };
  running.add(r);
  void exited.then(() => running.delete(r));
  return r;
}

const LEADING = /^leading (\S+) fence (\d+)$/;

describe('wirelock elect', function () {
  this.timeout(60_000);
  let redis: RedisServer;
  let etcd: EtcdServer;
  let admin: RedisClient;
  let etcdAdmin: EtcdClient;

  before(async () => {
    [redis, etcd] = await Promise.all([startRedis(), startEtcd()]);
    admin = await RedisClient.connect(redis.url);
    etcdAdmin = await EtcdClient.connect({ endpoints: etcd.endpoints });
  });
  afterEach(async () => {
    for (const r of running) r.child.kill('SIGKILL');
    await Promise.all([...running].map((r) => r.exited));
  });
  after(async () => {
    await admin?.close();
    await etcdAdmin?.close();
    await Promise.all([redis?.stop(), etcd?.stop()]);
  });

  const backends = [
    {
      kind: 'etcd',
      flags: (): string[] => ['--etcd', etcd.clientUrl],
      key: (name: string) => new RegExp(`^${name}/[0-9a-f]+$`),
      waiting: async (name: string) => (await queuedKeys(etcdAdmin, name)).length - 1,
    },
    {
      kind: 'Redis',
      flags: (): string[] => ['--redis', redis.url],
      key: (name: string) => new RegExp(`^wirelock:\\{${name}\\}$`),
      waiting: async (name: string) => Number(await admin.send(['ZCARD', `wirelock:{${name}}:queue`])),
    },
  ];

  for (const b of backends) {
    it(`${b.kind}: one candidate leads and runs its command, the other waits; ending the first hands over; --observe prints each change in order`, async () => {
      const name = `handover-${b.kind}`;
      const observer = start(['elect', ...b.flags(), '--name', name, '--observe']);
      await observer.line(/^no leader$/, 'the observer to report nobody leads');
      const a = start(['elect', ...b.flags(), '--name', name, '--value', 'host-a', '--',
        'sh', '-c', 'echo "A runs with fence $WIRELOCK_FENCE key $WIRELOCK_LEADER_KEY of $WIRELOCK_ELECTION"; trap "echo A-TERM; exit 5" TERM; sleep 30 & wait']);
      const [, aKey, aFence] = await a.line(LEADING, 'A to lead');
      expect(aKey).to.match(b.key(name));
      await a.line(new RegExp(`^A runs with fence ${aFence} key ${aKey!.replace(/[{}]/g, '\\$&')} of ${name}$`), "A's command to run");
      const bee = start(['elect', ...b.flags(), '--name', name, '--value', 'host-b', '--', 'sh', '-c', 'echo "B runs with fence $WIRELOCK_FENCE"']);
      await observer.line(new RegExp(`^leader \\S+ fence ${aFence} value host-a$`), 'the observer to see A');
      await waitFor(async () => (await b.waiting(name)) === 1, 15_000, 'B to queue', 25);
      await new Promise((r) => setTimeout(r, 500));
      expect(bee.lines(), 'B waits while A leads').to.deep.equal([]);

      a.child.kill('SIGTERM'); // passed on to A's command; A resigns once it has exited
      expect(await a.exited).to.equal(5);
      expect(a.lines()).to.include('A-TERM');
      const handedOver = performance.now();
      const [, bKey, bFence] = await bee.line(LEADING, 'B to lead');
      expect(performance.now() - handedOver, 'handed over at the resign, not when a lease ran out').to.be.below(5000);
      expect(BigInt(bFence!) > BigInt(aFence!), 'a new term has a greater fence').to.equal(true);
      expect(await bee.exited).to.equal(0);
      expect(bee.lines()).to.deep.equal([`leading ${bKey} fence ${bFence}`, `B runs with fence ${bFence}`]);

      await waitFor(() => observer.lines().length >= 4 && observer.lines().at(-1) === 'no leader', 15_000, 'the observer to see B resign', 10);
      observer.child.kill('SIGINT');
      expect(await observer.exited).to.equal(0);
      // Redis may show nobody between two terms (the lock is B's a moment before B's value is); etcd never does.
      const leaders = observer.lines().filter((l) => l !== 'no leader');
      expect(leaders).to.deep.equal([`leader ${aKey} fence ${aFence} value host-a`, `leader ${bKey} fence ${bFence} value host-b`]);
      expect(observer.lines()[0]).to.equal('no leader');
      expect(observer.lines().at(-1)).to.equal('no leader');
      if (b.kind === 'etcd') expect(observer.lines(), observer.lines().join('\n')).to.have.length(4);
      expect(observer.stderr()).to.equal('');
    });
  }

  it('etcd: a leader whose lease is revoked (etcdctl lease revoke) stops its command and exits 76', async () => {
    const leader = start(['elect', '--etcd', etcd.clientUrl, '--name', 'revoked', '--value', 'v', '--grace', '2s', '--',
      'sh', '-c', 'trap "echo TERMINATED; exit 9" TERM; echo RUNNING; sleep 30 & wait']);
    const [, key] = await leader.line(LEADING, 'the leader');
    await leader.line(/^RUNNING$/, 'its command');
    const lease = key!.slice('revoked/'.length);
    await etcdctl(etcd.endpoints, ['lease', 'revoke', lease]);
    const t0 = performance.now();
    expect(await leader.exited).to.equal(76);
    expect(performance.now() - t0).to.be.below(5000);
    expect(leader.lines()).to.include('TERMINATED');
    expect(leader.stderr()).to.match(/^wirelock: leadership of "revoked" lost \(\S+\): stopping the command \(SIGTERM, SIGKILL after 2s\)$/m);
    expect(leader.stderr()).to.match(/^wirelock: the command was stopped because the leadership was lost: /m);
  });

  it('Redis: a leader whose lock key is deleted stops its command and exits 76; without a command it exits 76 too', async () => {
    const leader = start(['elect', '--redis', redis.url, '--name', 'deleted', '--value', 'v', '--ttl', '1s', '--grace', '2s', '--',
      'sh', '-c', 'trap "echo TERMINATED; exit 9" TERM; echo RUNNING; sleep 30 & wait']);
    await leader.line(LEADING, 'the leader');
    await leader.line(/^RUNNING$/, 'its command');
    expect(await admin.send(['DEL', 'wirelock:{deleted}'])).to.equal(1);
    const t0 = performance.now();
    expect(await leader.exited).to.equal(76);
    expect(performance.now() - t0).to.be.below(5000);
    expect(leader.lines()).to.include('TERMINATED');
    expect(leader.stderr()).to.match(/^wirelock: leadership of "deleted" lost \(\S+\): stopping the command/m);

    const bare = start(['elect', '--redis', redis.url, '--name', 'deleted', '--value', 'v', '--ttl', '1s']);
    await bare.line(LEADING, 'the command-less leader');
    await admin.send(['DEL', 'wirelock:{deleted}']);
    expect(await bare.exited).to.equal(76);
    expect(bare.stderr()).to.match(/^wirelock: leadership of "deleted" lost \(\S+\): /m);
  });

  it('without a command it leads until SIGINT, then resigns and exits 0', async () => {
    const leader = start(['elect', '--etcd', etcd.clientUrl, '--name', 'bare', '--value', 'v']);
    const [, key] = await leader.line(LEADING, 'the leader');
    expect(await queuedKeys(etcdAdmin, 'bare')).to.deep.equal([key]);
    leader.child.kill('SIGINT');
    expect(await leader.exited).to.equal(0);
    expect(await queuedKeys(etcdAdmin, 'bare')).to.deep.equal([]); // resigned, not left to expire
  });

  it('a waiting candidate that gets SIGTERM withdraws at once (no key left to lead later) and exits 143', async () => {
    const leader = start(['elect', '--etcd', etcd.clientUrl, '--name', 'withdraw', '--value', 'first']);
    const [, key] = await leader.line(LEADING, 'the leader');
    const waiter = start(['elect', '--etcd', etcd.clientUrl, '--name', 'withdraw', '--value', 'second', '--', 'echo', 'NEVER']);
    await waitFor(async () => (await queuedKeys(etcdAdmin, 'withdraw')).length === 2, 15_000, 'the waiter to queue', 25);
    waiter.child.kill('SIGTERM');
    expect(await waiter.exited).to.equal(143);
    expect(waiter.lines()).to.deep.equal([]);
    expect(waiter.stderr()).to.include('SIGTERM while waiting to lead "withdraw"');
    expect(await queuedKeys(etcdAdmin, 'withdraw')).to.deep.equal([key]);
    leader.child.kill('SIGTERM');
    expect(await leader.exited).to.equal(0);
  });

  it('--wait that runs out exits 75 without running the command; --wait 0 tries once', async () => {
    for (const backend of [['--redis', redis.url], ['--etcd', etcd.clientUrl]]) {
      const once = await cli(['elect', ...backend, '--name', 'once', '--value', 'o', '--wait', '0', '--', 'echo', 'RAN']);
      expect(once.code, `${backend[0]} --wait 0 when nobody leads: ${once.stderr}`).to.equal(0);
      expect(once.stdout).to.match(/^leading \S+ fence \d+\nRAN\n$/);
      await start(['elect', ...backend, '--name', 'busy', '--value', 'v']).line(LEADING, `a leader (${backend[0]})`);
      const r = await cli(['elect', ...backend, '--name', 'busy', '--value', 'w', '--wait', '500ms', '--', 'echo', 'RAN']);
      expect(r.code, backend[0]).to.equal(75);
      expect(r.stdout).to.equal('');
      expect(r.stderr).to.equal('wirelock: still not leading "busy" after 500ms\n');
      const busy = await cli(['elect', ...backend, '--name', 'busy', '--value', 'w', '--wait', '0', '--', 'echo', 'RAN']);
      expect(busy.code, backend[0]).to.equal(75);
      expect(busy.stdout).to.equal('');
    }
    expect(await queuedKeys(etcdAdmin, 'busy'), 'the given-up candidates left no key').to.have.length(1);
  });

  it('interop: --observe sees a leader campaigned by `etcdctl elect`, and etcdctl sees ours', async () => {
    const observer = start(['elect', '--etcd', etcd.clientUrl, '--name', 'interop', '--observe']);
    await observer.line(/^no leader$/, 'the observer');
    const theirs = etcdctlElect(etcd.endpoints, 'interop', { proposal: 'from-etcdctl' });
    try {
      const [, key, fence] = await observer.line(/^leader (interop\/[0-9a-f]+) fence (\d+) value from-etcdctl$/, "the observer to see etcdctl's leader");
      // A wirelock candidate waits behind etcdctl, and leads once etcdctl resigns.
      const ours = start(['elect', '--etcd', etcd.clientUrl, '--name', 'interop', '--value', 'from-wirelock']);
      await waitFor(async () => (await queuedKeys(etcdAdmin, 'interop')).length === 2, 15_000, 'our candidate to queue', 25);
      expect(ours.lines()).to.deep.equal([]);
      await theirs.stop();
      const [, ourKey, ourFence] = await ours.line(LEADING, 'ours to lead');
      await observer.line(new RegExp(`^leader ${ourKey} fence ${ourFence} value from-wirelock$`), 'the observer to see ours');
      const listener = etcdctlElect(etcd.endpoints, 'interop');
      try {
        await waitFor(() => listener.leaders().some((l) => l.key === ourKey && l.value === 'from-wirelock'), 15_000, 'etcdctl elect -l to see ours', 25);
      } finally {
        await listener.stop();
      }
      ours.child.kill('SIGTERM');
      expect(await ours.exited).to.equal(0);
      await waitFor(() => observer.lines().at(-1) === 'no leader' && observer.lines().length === 4, 15_000, 'the observer to see ours resign', 10);
      expect(observer.lines()).to.deep.equal(['no leader', `leader ${key} fence ${fence} value from-etcdctl`, `leader ${ourKey} fence ${ourFence} value from-wirelock`, 'no leader']);
    } finally {
      await theirs.stop();
    }
  });

  it('--observe ends with 0, without a stack trace, when its reader has gone away', async () => {
    const observer = start(['elect', '--etcd', etcd.clientUrl, '--name', 'reader', '--observe']);
    await observer.line(/^no leader$/, 'the observer');
    observer.child.stdout!.destroy(); // as `| head -1` does once it has its line
    const leader = start(['elect', '--etcd', etcd.clientUrl, '--name', 'reader', '--value', 'v']);
    await leader.line(LEADING, 'the leader');
    expect(await observer.exited).to.equal(0);
    expect(observer.stderr()).to.equal('');
    leader.child.kill('SIGTERM');
    expect(await leader.exited).to.equal(0);
  });

  it('prints a value with newlines or control characters as a JSON string, on one line', async () => {
    const observer = start(['elect', '--redis', redis.url, '--name', 'odd', '--observe']);
    await observer.line(/^no leader$/, 'the observer');
    const value = 'two\nlines\x1b[31m red';
    const leader = start(['elect', '--redis', redis.url, '--name', 'odd', '--value', value]);
    await leader.line(LEADING, 'the leader');
    const [line] = await observer.line(/^leader .*$/, 'the observer to see the leader');
    expect(line).to.equal(`leader wirelock:{odd} fence ${LEADING.exec(leader.lines()[0]!)![2]} value "two\\nlines\\u001b[31m red"`);
    expect(JSON.parse(line!.slice(line!.indexOf(' value ') + 7))).to.equal(value);
    leader.child.kill('SIGTERM');
    expect(await leader.exited).to.equal(0);
  });

  it('formatText: plain text as is; anything that could break or fake a line quoted; bytes that are not UTF-8 as hex', () => {
    const vectors: Array<[Buffer | string, string]> = [
      ['10.0.0.7:8080', '10.0.0.7:8080'],
      ['host a', 'host a'], // inner spaces are fine: the value is the rest of the line
      ['ünïcødé ✓ 🦀', 'ünïcødé ✓ 🦀'],
      ['', '""'],
      [' padded', '" padded"'],
      ['trail\t', '"trail\\t"'],
      ['a\nleader x fence 1 value forged', '"a\\nleader x fence 1 value forged"'],
      ['cr\r', '"cr\\r"'],
      ['del\x7f', '"del\\u007f"'],
      ['c1\u0085', '"c1\\u0085"'],
      ['bidi\u202Eevil', '"bidi\\u202eevil"'],
      ['zero\u200Bwidth', '"zero\\u200bwidth"'],
      ['line\u2028sep', '"line\\u2028sep"'],
      ['"quoted"', '"\\"quoted\\""'],
      ['hex:00', '"hex:00"'],
      [Buffer.from([0xef, 0xbb, 0xbf, 0x61]), '"\\ufeffa"'], // a BOM is kept, and shown
      [Buffer.from([0xff, 0x00, 0x41]), 'hex:ff0041'],
      [Buffer.from([0xf3, 0xa0, 0x80, 0x81]), '"\\udb40\\udc01"'], // U+E0001, a format character beyond U+FFFF
    ];
    for (const [input, printed] of vectors) {
      const out = formatText(typeof input === 'string' ? Buffer.from(input) : input);
      expect(out, JSON.stringify(input)).to.equal(printed);
      expect(out).to.not.match(/[\n\r]/);
      if (out.startsWith('"')) expect(Buffer.from(JSON.parse(out) as string).equals(typeof input === 'string' ? Buffer.from(input) : input)).to.equal(true);
    }
  });

  it('bad usage exits 2 with a clear message and the usage', async () => {
    const cases: Array<[string[], string]> = [
      [['elect', '--etcd', etcd.clientUrl, '--value', 'v', '--', 'true'], '--name NAME is required'],
      [['elect', '--etcd', etcd.clientUrl, '--name', 'n', '--observe', '--', 'true'], '--observe runs no command'],
      [['elect', '--etcd', etcd.clientUrl, '--name', 'n', '--', 'true'], '--value V is required to campaign'],
      [['elect', '--redis', redis.url, '--name', 'n'], '--value V is required to campaign'],
      [['elect', '--etcd', etcd.clientUrl, '--name', 'n', '--observe', '--value', 'v'], '--value is for campaigning, not for --observe'],
      [['elect', '--redis', `${redis.url},${redis.url}`, '--name', 'n', '--observe'], 'elect takes one --redis URL'],
      [['elect', '--name', 'n', '--observe'], 'give exactly one of --redis, --redis-cluster or --etcd'],
      [['elect', '--etcd', etcd.clientUrl, '--name', 'n', '--key', 'k', '--observe'], 'unknown option "--key"'],
    ];
    for (const [args, message] of cases) {
      const r = await cli(args);
      expect(r.code, args.join(' ')).to.equal(2);
      expect(r.stderr, args.join(' ')).to.include(`wirelock: ${message}`);
      expect(r.stderr, args.join(' ')).to.include('usage: wirelock elect');
      expect(r.stdout).to.equal('');
    }
    const help = await cli(['elect', '--help']);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.include('leader <key> fence <fence> value <value>');
  });
});
