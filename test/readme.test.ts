/**
 * The docs' code runs as written. Every ```ts / ```js block of README.md, and every block of
 * docs/api.md marked runnable (an HTML comment `<!-- runnable … -->` on the line before the fence,
 * or `// runnable` as the block's first line), is run as a user would run a pasted program: its own
 * file in an ES module project, `node --import tsx`, a child process. Only two things change:
 * - the package's import specifiers ('wirelock', 'wirelock/testing', …) point at src/, found through
 *   package.json's exports, so a subpath the package does not export fails here too;
 * - the well-known local addresses (redis://localhost:6379, http://127.0.0.1:2379) become those of
 *   servers this test starts.
 * A block passes when it exits 0 by itself within the timeout: one that leaves a client open never
 * exits, and is killed and fails. Fragments in api.md (signatures with `…`) stay unmarked and are
 * not run.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { RedisClient } from '../src/index.js';
import { startEtcd, startRedis, type EtcdServer, type RedisServer } from '../src/testing/servers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const RUN_TIMEOUT_MS = 30_000;

interface Block {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: 'ts' | 'js';
  code: string;
}

const LANGS: Record<string, Block['lang']> = { ts: 'ts', typescript: 'ts', js: 'js', javascript: 'js' };

/** The ```ts / ```js blocks of a Markdown file; with `markedOnly`, only those marked runnable. */
function codeBlocks(file: string, markedOnly: boolean): Block[] {
  const lines = readFileSync(path.join(root, file), 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w+)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const end = lines.indexOf('```', i + 1);
    if (end < 0) throw new Error(`${file}:${i + 1}: unclosed code fence`);
    const code = lines.slice(i + 1, end).join('\n');
    const lang = LANGS[open[1]!];
    const before = lines.slice(0, i).reverse().find((l) => l.trim() !== '') ?? '';
    const marked = /^<!--\s*runnable\b.*-->$/.test(before.trim()) || /^\/\/\s*runnable\b/.test(code);
    if (lang && (marked || !markedOnly)) blocks.push({ file, line: i + 1, lang, code });
    i = end;
  }
  return blocks;
}

/** 'wirelock' and its subpaths -> file URLs of the src/ modules that package.json's exports build them from. */
function packageSpecifiers(): Map<string, string> {
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
    name: string;
    exports: Record<string, string | { import?: string }>;
  };
  const map = new Map<string, string>();
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    const built = typeof target === 'string' ? target : target.import;
    const m = built && /^\.\/dist\/(.+)\.js$/.exec(built);
    if (!m) continue; // ./package.json
    const specifier = subpath === '.' ? pkg.name : `${pkg.name}/${subpath.slice(2)}`;
    map.set(specifier, pathToFileURL(path.join(root, 'src', `${m[1]}.ts`)).href);
  }
  return map;
}

const REDIS_ADDRESS = /redis:\/\/(?:localhost|127\.0\.0\.1):6379/g;
const ETCD_ADDRESS = /https?:\/\/(?:localhost|127\.0\.0\.1):2379/g;

/** The program as this test runs it: imports from src/, addresses of the servers started here. */
function rewrite(block: Block, specifiers: Map<string, string>, servers: { redis: string; etcd?: string }): string {
  const code = block.code
    .replace(/(\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)(['"])(wirelock(?:\/[\w-]+)?)\2/g, (_, lead: string, _q, spec: string) => {
      const url = specifiers.get(spec);
      if (!url) throw new Error(`${block.file}:${block.line}: '${spec}' is not exported by package.json`);
      return `${lead}${JSON.stringify(url)}`;
    })
    .replace(REDIS_ADDRESS, servers.redis)
    .replace(ETCD_ADDRESS, () => {
      if (!servers.etcd) throw new Error('etcd was not started');
      return servers.etcd;
    });
  // An address the substitutions do not know would reach whatever listens there, or nothing.
  expect(code, `${block.file}:${block.line}: a server address this test does not substitute`).to.not.match(/:(6379|2379)\b/);
  return code;
}

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  killed: boolean;
  output: string;
}

/** Runs one program to its own exit, or kills it (and its children: servers it started) at the timeout. */
function runProgram(file: string): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], { cwd: root, detached: true });
    let output = '';
    let killed = false;
    child.stdout.on('data', (d: Buffer) => (output += d));
    child.stderr.on('data', (d: Buffer) => (output += d));
    const timer = setTimeout(() => {
      killed = true;
      process.kill(-child.pid!, 'SIGKILL');
    }, RUN_TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, killed, output });
    });
  });
}

const sources = [
  { file: 'README.md', blocks: codeBlocks('README.md', false) },
  { file: 'docs/api.md', blocks: codeBlocks('docs/api.md', true) },
];

describe('the code blocks of README.md and docs/api.md run as written', function () {
  this.timeout(RUN_TIMEOUT_MS + 30_000);
  const specifiers = packageSpecifiers();
  const needsEtcd = sources.some((s) => s.blocks.some((b) => new RegExp(ETCD_ADDRESS.source).test(b.code)));
  let redis: RedisServer;
  let etcd: EtcdServer | undefined;
  let dir: string;

  before(async () => {
    redis = await startRedis();
    if (needsEtcd) etcd = await startEtcd();
    dir = mkdtempSync(path.join(tmpdir(), 'wirelock-readme-'));
    // A user's ES module project: top-level await and `import` in a .ts file.
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  });

  after(async () => {
    await redis?.stop();
    await etcd?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // A block must not see the keys an earlier one left behind (a failed one may leave a lock held).
  beforeEach(async () => {
    const client = await RedisClient.connect(redis.url);
    await client.send(['FLUSHALL']);
    await client.close();
  });

  for (const { file, blocks } of sources) {
    it(`${file} has runnable code blocks`, () => {
      expect(blocks.length, `${file}: no runnable ts/js code block found`).to.be.at.least(1);
    });

    for (const block of blocks) {
      it(`${file}:${block.line} (${block.code.split('\n').find((l) => /\S/.test(l))?.trim()}) exits 0 by itself`, async () => {
        const program = rewrite(block, specifiers, { redis: redis.url, ...(etcd && { etcd: etcd.clientUrl }) });
        const name = `${file.replace(/\W/g, '_')}_${block.line}.${block.lang === 'ts' ? 'ts' : 'mjs'}`;
        const target = path.join(dir, name);
        writeFileSync(target, program);
        const r = await runProgram(target);
        const show = `${file}:${block.line}, run as ${target}\n${r.output}`;
        expect(r.killed, `did not exit by itself within ${RUN_TIMEOUT_MS} ms (a client or timer left open?)\n${show}`).to.equal(false);
        expect(r.signal, show).to.equal(null);
        expect(r.code, show).to.equal(0);
      });
    }
  }
});
