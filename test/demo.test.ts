/**
 * `npm run demo -- --quick`, as CI runs it: a child process that starts its own servers and workers.
 * It must exit 0, pass the overlap check on every backend, show the frozen holder's write refused,
 * fail a Sentinel master over and migrate a Cluster slot and fail its master over under contention,
 * elect one leader at a time (and see the next after a kill) on etcd and Redis,
 * and leave a well-formed timeline.svg and a summary.md.
 */
import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import parse from 'parse-prometheus-text-format';
import { runProcess, type RunResult } from './support/run.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * A small XML well-formedness check (no dependency): every tag closed in order, attributes quoted,
 * no stray `<` or `&` in text, one root element. Returns the root's name, or throws saying what is wrong.
 */
function checkXml(text: string): string {
  const stack: string[] = [];
  let root: string | undefined;
  const name = '[A-Za-z_][\\w.:-]*';
  const attr = `\\s+${name}\\s*=\\s*(?:"[^"<&]*(?:&(?:[a-z]+|#\\d+|#x[0-9a-f]+);[^"<&]*)*"|'[^'<&]*')`;
  // Sticky: each matches exactly at lastIndex, however long the tag (a path's d can be long).
  const open = new RegExp(`<(${name})((?:${attr})*)\\s*(/?)>`, 'iy');
  const close = new RegExp(`</(${name})\\s*>`, 'y');
  const entity = /&(?:[a-z]+|#\d+|#x[0-9a-f]+);/iy;
  const at = (re: RegExp, i: number): RegExpExecArray | null => ((re.lastIndex = i), re.exec(text));
  let i = 0;
  while (i < text.length) {
    if (text.startsWith('<?', i)) {
      const end = text.indexOf('?>', i);
      if (end < 0) throw new Error(`unterminated processing instruction at ${i}`);
      i = end + 2;
    } else if (text.startsWith('<!--', i)) {
      const end = text.indexOf('-->', i);
      if (end < 0) throw new Error(`unterminated comment at ${i}`);
      i = end + 3;
    } else if (text.startsWith('</', i)) {
      const m = at(close, i);
      if (!m) throw new Error(`malformed end tag at ${i}: ${text.slice(i, i + 40)}`);
      const expected = stack.pop();
      if (m[1] !== expected) throw new Error(`</${m[1]}> at ${i} closes <${expected ?? 'nothing'}>`);
      i += m[0].length;
    } else if (text[i] === '<') {
      const m = at(open, i);
      if (!m) throw new Error(`malformed start tag at ${i}: ${text.slice(i, i + 60)}`);
      if (stack.length === 0) {
        if (root !== undefined) throw new Error(`a second root element <${m[1]}> at ${i}`);
        root = m[1];
      }
      if (m[3] !== '/') stack.push(m[1]!);
      i += m[0].length;
    } else if (text[i] === '&') {
      const m = at(entity, i);
      if (!m) throw new Error(`bare & at ${i}`);
      i += m[0].length;
    } else {
      if (stack.length === 0 && !/\s/.test(text[i]!)) throw new Error(`text outside the root element at ${i}`);
      i++;
    }
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack.pop()}>`);
  if (root === undefined) throw new Error('no root element');
  return root;
}

describe('checkXml (the well-formedness check the demo test relies on)', () => {
  it('accepts well-formed XML and names the root', () => {
    expect(checkXml('<?xml version="1.0"?>\n<svg a="1" b=\'2\'><g><rect x="0"/><text>a &amp; b &#60;</text></g></svg>\n')).to.equal('svg');
    expect(checkXml(`<svg><path d="${'M1,2 '.repeat(5000)}"/></svg>`)).to.equal('svg');
  });
  it('rejects what is not', () => {
    for (const bad of ['<svg><g></svg>', '<svg>', '<svg a=1></svg>', '<svg>a & b</svg>', '<svg></svg><svg></svg>', '<svg><text>1 < 2</text></svg>', 'x<svg></svg>', '']) {
      expect(() => checkXml(bad), bad).to.throw();
    }
  });
});

describe('npm run demo -- --quick', function () {
  this.timeout(120_000);
  let out: string;
  let result: RunResult;

  /** /metrics as scraped while the demo ran (--metrics 0): every answer, in order. */
  const scrapes: string[] = [];

  before(async () => {
    out = mkdtempSync(path.join(os.tmpdir(), 'wirelock-demo-'));
    let scraping: NodeJS.Timeout | undefined;
    result = await runProcess(process.execPath, ['--import', 'tsx', path.join(root, 'scripts/demo.ts'), '--quick', '--out', out, '--metrics', '0'], {
      cwd: root,
      onStart: (child) => {
        let seen = '';
        child.stdout!.on('data', (d: Buffer) => {
          seen += d;
          const url = /^metrics: (http:\/\/127\.0\.0\.1:\d+\/metrics)/m.exec(seen)?.[1];
          if (!url || scraping) return;
          // Scrape as Prometheus would, every 2 s, until the demo exits.
          scraping = setInterval(() => {
            fetch(url).then(
              async (res) => void (res.ok && scrapes.push(await res.text())),
              () => {}, // the demo is closing its endpoint
            );
          }, 2000);
        });
        child.once('exit', () => clearInterval(scraping));
      },
    });
    clearInterval(scraping);
  });
  after(() => {
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it('exits 0', () => {
    expect(result.code, `${result.stdout}\n${result.stderr}`).to.equal(0);
  });

  it('passes the overlap check on every backend', () => {
    for (const backend of ['RedisLocker', 'Redlock', 'EtcdLocker']) {
      const line = result.stdout.split('\n').find((l) => l.includes(`check ${backend}:`));
      expect(line, `no check line for ${backend} in:\n${result.stdout}`).to.be.a('string');
      expect(line).to.match(/ 0 overlapping holds, 0 fence regressions, stale write refused -> OK, no two holds overlapped$/);
    }
    for (const backend of ['Sentinel', 'Cluster']) {
      const line = result.stdout.split('\n').find((l) => l.includes(`check ${backend}:`));
      expect(line, `no check line for ${backend} in:\n${result.stdout}`).to.be.a('string');
      expect(line).to.match(/ 0 overlapping holds, 0 fence regressions, stale write none \(no holder frozen\) -> OK, no two holds overlapped$/);
    }
    expect(result.stdout).to.match(/^OK: no two holds overlapped on any backend/m);
  });

  it('kills a Redis node and the etcd leader, freezes a holder, and the fence refuses its late write', () => {
    expect(result.stdout).to.match(/redis node 2 \(:\d+\) killed/);
    expect(result.stdout).to.match(/etcd leader m\d killed/);
    expect(result.stdout.match(/frozen \(SIGSTOP\)/g)).to.have.length(3);
    expect(result.stdout.match(/the store REFUSED w\d's late write: fence \d+ < \d+ already seen/g)).to.have.length(3);
  });

  it('fails the Sentinel master over, migrates the lock\'s Cluster slot and fails its master over, and the lock carries on', () => {
    const seen = (what: RegExp): RegExpExecArray => {
      const m = what.exec(result.stdout);
      expect(m, `${what} in:\n${result.stdout}`).to.not.equal(null);
      return m!;
    };
    seen(/SENTINEL FAILOVER mymaster: the sentinels promote a replica of :\d+/);
    seen(/\+switch-master: :\d+ is the master now \(was :\d+\)/);
    seen(/slot \d+, the lock's, migrating live from :\d+ to :\d+/);
    seen(/slot \d+ is served by :\d+, every node agrees \(\d+ keys moved\)/);
    seen(/every node agrees that :\d+ serves slot \d+/);
    // Each fault's line: how long it took and how soon the next hold began (a number, not NaN).
    for (const what of ['SENTINEL FAILOVER', 'slot \\d+ migrating', 'CLUSTER FAILOVER']) {
      seen(new RegExp(`^  ${what}: took [\\d.]+ m?s, \\d+ holds began meanwhile; the first hold after it began [\\d.]+ m?s after$`, 'm'));
    }
  });

  it('elects one leader at a time on etcd and Redis, kills the leader, and every observer sees the next one', () => {
    for (const backend of ['etcd', 'Redis']) {
      const line = result.stdout.split('\n').find((l) => l.includes(`check election on ${backend}:`));
      expect(line, `no election check line for ${backend} in:\n${result.stdout}`).to.be.a('string');
      expect(line).to.match(/: 0 overlapping terms, terms strictly increasing, (\d+) of \1 observers saw every change of leader in order -> OK, one leader at a time$/);
      expect(result.stdout).to.match(new RegExp(`^\\| ${backend} +\\| \\d+ +\\| svc-\\w( -> svc-\\w)+ +\\| [1-9]\\d* .*\\| 0 +\\| OK +\\|$`, 'm'));
    }
  });

  it('serves every process\'s wirelock/metrics while it runs (--metrics), readable by a Prometheus parser', () => {
    expect(scrapes.length, 'scrapes during the run').to.be.at.least(5);
    // The last scrape with the election's services in it: the lock scenes are done, the elections
    // are on, and every worker still lives (a scrape as the demo closes can find nobody).
    const last = [...scrapes].reverse().find((t) => t.includes('process="svc-'))!;
    expect(last, 'a scrape during the elections').to.be.a('string');
    const families = new Map(parse(last).map((f) => [f.name, f]));
    const acquisitions = families.get('wirelock_lock_acquisitions_total')!;
    expect(acquisitions.type).to.equal('COUNTER');
    const byBackend = new Map<string, number>();
    const processes = new Set<string>();
    for (const m of acquisitions.metrics) {
      processes.add(m.labels!.process!);
      byBackend.set(m.labels!.backend!, (byBackend.get(m.labels!.backend!) ?? 0) + Number(m.value));
    }
    for (const backend of ['redis', 'redlock', 'etcd']) expect(byBackend.get(backend) ?? 0, backend).to.be.above(50);
    for (let w = 0; w < 8; w++) expect(processes.has(`w${w}`), `w${w}`).to.equal(true);
    expect([...processes].some((p) => p.startsWith('svc-')), 'an election service').to.equal(true);
    // The frozen holders (one per backend) were told they had lost their locks.
    const losses = families.get('wirelock_lock_losses_total')?.metrics ?? [];
    expect(losses.reduce((n, m) => n + Number(m.value), 0)).to.be.at.least(3);
    expect(families.get('wirelock_lock_wait_seconds')?.type).to.equal('HISTOGRAM');
    expect(families.get('wirelock_redis_commands_total')?.metrics.length ?? 0).to.be.above(0);
    expect(families.get('wirelock_etcd_calls_total')?.metrics.length ?? 0).to.be.above(0);
    // Nothing secret or user-named in a label: no token, no key name.
    expect(last).to.not.match(/demo-counter|[0-9a-f]{32}/);
  });

  it('writes a well-formed timeline.svg with the holds, the kills and the pauses on it', () => {
    const file = path.join(out, 'timeline.svg');
    expect(existsSync(file), file).to.equal(true);
    const svg = readFileSync(file, 'utf8');
    expect(checkXml(svg)).to.equal('svg');
    expect(svg).to.include('xmlns="http://www.w3.org/2000/svg"');
    expect(svg.match(/<title>w\d fence \d+/g)?.length ?? 0).to.be.greaterThan(100);
    expect(svg).to.include('redis node 2 killed');
    expect(svg).to.match(/leader m\d killed/);
    expect(svg.match(/late write refused/g)).to.have.length(3);
    for (const what of ['SENTINEL FAILOVER -&gt; +switch-master', 'CLUSTER FAILOVER -&gt;', 'migrating -&gt; slot']) expect(svg).to.include(what);
    expect(svg.match(/<title>svc-\w led term \d+ /g)?.length ?? 0).to.be.at.least(4);
  });

  it('writes summary.md with the table and each backend', () => {
    const file = path.join(out, 'summary.md');
    expect(existsSync(file), file).to.equal(true);
    const md = readFileSync(file, 'utf8');
    expect(md).to.match(/^\| backend +\| holds/m);
    for (const backend of ['RedisLocker', 'Redlock', 'Sentinel', 'Cluster', 'EtcdLocker']) expect(md).to.match(new RegExp(`^\\| ${backend} .*\\| OK +\\|$`, 'm'));
    expect(md).to.include('No two holds overlapped, on any backend');
    expect(md).to.match(/^\| election +\| terms/m);
    expect(md).to.include('## Leader election on etcd');
    expect(md).to.include('## Leader election on Redis');
  });
});
