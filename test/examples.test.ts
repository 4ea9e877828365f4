/**
 * examples/ must keep working: each is run as a user would (a child process, on a clean clone, with
 * the servers it starts itself), and its output is checked.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import parse from 'parse-prometheus-text-format';
import { fileURLToPath } from 'node:url';
import { RedisClient, RedisLocker } from '../src/index.js';
import { startRedis, type RedisServer } from '../src/testing/servers.js';
import { runProcess, type RunResult } from './support/run.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');


const run = (cmd: string, args: string[], env: Record<string, string> = {}): Promise<RunResult> => runProcess(cmd, args, { cwd: root, env });

const tsExample = (name: string, ...args: string[]): Promise<RunResult> =>
  run(process.execPath, ['--import', 'tsx', path.join(root, 'examples', name), ...args]);

const show = (r: RunResult): string => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;

describe('examples', function () {
  this.timeout(30_000);

  it('redis-using.ts: three hosts run the job one after the other with rising fences; a fourth skips', async () => {
    const r = await tsExample('redis-using.ts');
    expect(r.code, show(r)).to.equal(0);
    const lines = r.stdout.trim().split('\n');
    // Never two jobs at once: every "running" is followed by the same host's "done".
    const runs = lines.filter((l) => /: running with fence |: done$/.test(l));
    expect(runs, show(r)).to.have.length(6);
    const fences: number[] = [];
    for (let i = 0; i < runs.length; i += 2) {
      const m = /^(host-\w): running with fence (\d+)$/.exec(runs[i]!);
      expect(m, runs[i]).to.not.equal(null);
      expect(runs[i + 1]).to.equal(`${m![1]}: done`);
      fences.push(Number(m![2]));
    }
    expect(fences).to.deep.equal([...fences].sort((a, b) => a - b));
    expect(new Set(fences).size).to.equal(3);
    expect(lines.at(-1)).to.equal('host-d: the report is already running elsewhere: skipped (WL_LOCK_TIMEOUT)');
  });

  it('etcd-fenced-write.ts: the stalled holder\'s late write is refused and the successor\'s value stays', async () => {
    const r = await tsExample('etcd-fenced-write.ts');
    expect(r.code, show(r)).to.equal(0);
    const fenceA = /A holds the lock \(fence (\d+)\); its write: applied/.exec(r.stdout);
    const fenceB = /B holds the lock \(fence (\d+)\); its write: applied/.exec(r.stdout);
    expect(fenceA, show(r)).to.not.equal(null);
    expect(fenceB, show(r)).to.not.equal(null);
    expect(BigInt(fenceB![1]!) > BigInt(fenceA![1]!)).to.equal(true);
    expect(r.stdout).to.include('A wakes up and writes: REFUSED: A no longer holds the lock');
    expect(r.stdout).to.include('app/config = "written by B"');
  });

  it('metrics-server.ts: /metrics serves the Prometheus text of a lock taken in a loop, and SIGTERM stops it cleanly', async () => {
    const password = 'pw-example-M3trics';
    const redis = await startRedis({ password });
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'examples/metrics-server.ts'), redis.url], { cwd: root });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
    try {
      const started = performance.now();
      while (!/metrics on (\S+)\n/.test(stdout)) {
        expect(child.exitCode, `exited early\n${stderr}`).to.equal(null);
        expect(performance.now() - started, `no address printed\n${stderr}`).to.be.below(15_000);
        await new Promise((r) => setTimeout(r, 20));
      }
      const url = /metrics on (\S+)\n/.exec(stdout)![1]!;
      const scrape = async (): Promise<{ text: string; acquisitions: number; releases: number }> => {
        const res = await fetch(url);
        expect(res.status).to.equal(200);
        expect(res.headers.get('content-type')).to.equal('text/plain; version=0.0.4; charset=utf-8');
        const text = await res.text();
        const value = (name: string): number => Number(parse(text).find((f) => f.name === name)?.metrics[0]?.value ?? 0);
        return { text, acquisitions: value('wirelock_lock_acquisitions_total'), releases: value('wirelock_lock_releases_total') };
      };
      const first = await scrape();
      await new Promise((r) => setTimeout(r, 400));
      const second = await scrape();
      expect(second.acquisitions, second.text).to.be.above(first.acquisitions);
      expect(second.releases).to.be.within(second.acquisitions - 1, second.acquisitions);
      expect(second.text).to.match(/^wirelock_redis_commands_total\{server="127\.0\.0\.1:\d+",command="EVALSHA"\} \d+$/m);
      expect(second.text).to.not.include(password);
      expect((await fetch(url.replace('/metrics', '/other'))).status).to.equal(404);
      child.kill('SIGTERM');
      const [code] = await exited;
      expect(code, stderr).to.equal(0);
    } finally {
      child.kill('SIGKILL');
      await redis.stop();
    }
  });

  describe('cron-job.sh (wirelock run --wait 0 around a job)', () => {
    let redis: RedisServer;
    let client: RedisClient;
    before(async () => {
      redis = await startRedis();
      client = await RedisClient.connect(redis.url);
    });
    after(async () => {
      await client?.close();
      await redis?.stop();
    });
    const cron = (): Promise<RunResult> => run('sh', [path.join(root, 'examples/cron-job.sh')], { REDIS_URL: redis.url, JOB_SECONDS: '0.2', WIRELOCK: '' });

    it('runs the job under the lock, with the fence in its environment', async () => {
      const r = await cron();
      expect(r.code, show(r)).to.equal(0);
      expect(r.stdout).to.match(/report: running on \S+ with fence \d+\n/);
      expect(r.stdout).to.match(/report: done\n/);
      // Released on the way out: the lock is free again.
      expect(await client.send(['EXISTS', 'wirelock:{nightly-report}'])).to.equal(0);
    });

    it('skips (exit 0, no job) while another host holds the lock, and runs again once it is free', async () => {
      const locker = new RedisLocker(client);
      const held = await locker.acquire('nightly-report');
      try {
        const r = await cron();
        expect(r.code, show(r)).to.equal(0);
        expect(r.stdout).to.match(/report: skipped, another host holds the lock\n/);
        expect(r.stdout).to.not.include('running on');
      } finally {
        await held.release();
        await locker.close();
      }
      const again = await cron();
      expect(again.code, show(again)).to.equal(0);
      const fence = /with fence (\d+)\n/.exec(again.stdout);
      expect(fence, show(again)).to.not.equal(null);
      expect(BigInt(fence![1]!) > held.fence, `${fence![1]} > ${held.fence}`).to.equal(true);
    });
  });
});
