/**
 * The package as a user gets it: `npm pack` (its prepack builds dist/ afresh), the tarball installed
 * into a temporary project, and there imported (ESM), required (CJS, Node's require(esm)), type-checked
 * as a consumer under node16 and bundler resolution, and run as `npx wirelock --version`.
 *
 * The install is offline and hermetic: the temporary project gets a lockfile made from ours (the
 * package's own dependencies only, with their registry URLs filled in, since our lockfile omits them),
 * so `npm ci --offline` takes every tarball from the npm cache that `npm ci` filled. Nothing is skipped:
 * a missing file, export or tool fails the test.
 */
import { expect } from 'chai';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runProcess, type RunResult } from './support/run.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  version: string;
  dependencies: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
  engines: { node: string };
  bin: Record<string, string>;
  license: string;
};
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const NPX = process.platform === 'win32' ? 'npx.cmd' : 'npx';
const TSC = path.join(root, 'node_modules/typescript/bin/tsc');
/** `wirelock/metrics` is exported exactly when its source is in the repo: never an entry to a missing file. */
const HAS_METRICS = existsSync(path.join(root, 'src/metrics.ts'));

/** The `npm pack --json` report of one tarball (the same shape as `npm pack --dry-run --json`). */
interface PackReport {
  filename: string;
  integrity: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: { path: string; size: number }[];
}

async function must(cmd: string, args: string[], cwd: string): Promise<RunResult> {
  const r = await runProcess(cmd, args, { cwd });
  if (r.code !== 0) throw new Error(`${[cmd, ...args].join(' ')} exited ${r.code} in ${cwd}\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** Our lockfile's entries for what the package itself needs (not dev), each with its tarball URL. */
function dependencyLock(): Record<string, Record<string, unknown>> {
  const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, Record<string, unknown>> };
  const entries: Record<string, Record<string, unknown>> = {};
  for (const [where, entry] of Object.entries(lock.packages)) {
    if (where === '' || entry.dev || entry.link) continue;
    const name = where.slice(where.lastIndexOf('node_modules/') + 'node_modules/'.length);
    // Without `resolved`, npm asks the registry for the package document even offline; npm maps this
    // default host to a configured mirror (replace-registry-host), and takes the tarball from the
    // cache by its integrity.
    const resolved = entry.resolved ?? `https://registry.npmjs.org/${name}/-/${name.split('/').pop()}-${String(entry.version)}.tgz`;
    entries[where] = { ...entry, resolved };
  }
  return entries;
}

describe('the npm package, packed and installed into a fresh project', function () {
  this.timeout(120_000);
  let tmp: string;
  let app: string;
  let pack: PackReport;
  let files: string[];

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'wirelock-pack-'));
    const packed = await must(NPM, ['pack', '--json', '--pack-destination', tmp], root);
    // The prepack build writes its own lines to stdout before the JSON report.
    pack = (JSON.parse(packed.stdout.slice(packed.stdout.indexOf('[\n'))) as PackReport[])[0]!;
    files = pack.files.map((f) => f.path).sort();
    console.log(`      ${pack.filename}: ${pack.entryCount} files, ${pack.size} bytes packed, ${pack.unpackedSize} unpacked`);

    app = path.join(tmp, 'app');
    mkdirSync(app);
    const spec = `file:../${pack.filename}`;
    // What `npm init -y` makes: no "type", so .js files are CommonJS.
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, dependencies: { wirelock: spec } }, null, 2));
    const lock = {
      name: 'app',
      version: '1.0.0',
      lockfileVersion: 3,
      requires: true,
      packages: {
        '': { name: 'app', version: '1.0.0', dependencies: { wirelock: spec } },
        'node_modules/wirelock': {
          version: pkg.version,
          resolved: spec,
          integrity: pack.integrity,
          license: pkg.license,
          dependencies: pkg.dependencies,
          bin: pkg.bin,
          engines: pkg.engines,
        },
        ...dependencyLock(),
      },
    };
    writeFileSync(path.join(app, 'package-lock.json'), JSON.stringify(lock, null, 2));
    await must(NPM, ['ci', '--offline', '--no-audit', '--no-fund'], app);
  });

  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('ships dist, the protos, README and LICENSE, and no source maps or sources', () => {
    for (const f of ['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'protos/rpc.proto', 'protos/kv.proto']) {
      expect(files, f).to.include(f);
    }
    expect(readFileSync(path.join(app, 'node_modules/wirelock/LICENSE'), 'utf8')).to.match(/^MIT License\n\nCopyright \(c\) 2026 the wirelock authors\n/);
    expect(files.filter((f) => f.endsWith('.map'))).to.deep.equal([]);
    expect(files.filter((f) => !/^(dist\/|protos\/|LICENSE$|README\.md$|package\.json$)/.test(f))).to.deep.equal([]);
  });

  it('publishes no internals in its types: Session.lose and markUncertain, BaseLocker\'s protected API', () => {
    const types = (file: string): string => readFileSync(path.join(app, 'node_modules/wirelock/dist', file), 'utf8');
    expect(types('locks/etcd-session.d.ts')).to.not.match(/\b(lose|markUncertain)\(/);
    expect(types('locks/etcd-session.d.ts')).to.match(/\bkeepAliveOnce\(/); // the rest is there
    expect(types('locks/base-locker.d.ts')).to.not.include('protected');
    expect(types('locks/base-locker.d.ts')).to.match(/\busing<T>\(/);
  });

  it('points every export at a file in the tarball, and exports wirelock/metrics exactly when it exists', () => {
    const targets = Object.values(pkg.exports).flatMap((t) => (typeof t === 'string' ? [t] : Object.values(t)));
    for (const t of targets) expect(files, t).to.include(t.replace(/^\.\//, ''));
    expect(Object.keys(pkg.exports)).to.deep.equal(['.', './testing', ...(HAS_METRICS ? ['./metrics'] : []), './package.json']);
    for (const entry of Object.values(pkg.exports)) {
      if (typeof entry === 'string') continue;
      // `types` first (TypeScript takes the first condition that matches), `default` last, for require(esm).
      expect(Object.keys(entry)).to.deep.equal(['types', 'import', 'default']);
    }
  });

  it('is imported as ESM, and locks and talks to etcd from the installed copy', async () => {
    writeFileSync(
      path.join(app, 'esm.mjs'),
      `import { RedisClient, RedisLocker, EtcdClient, encodeCommand } from 'wirelock';
import { startRedis, startEtcd } from 'wirelock/testing';
${HAS_METRICS ? "import * as metrics from 'wirelock/metrics';\nif (Object.keys(metrics).length === 0) throw new Error('wirelock/metrics exports nothing');" : ''}
if (Buffer.from(encodeCommand(['PING'])).toString() !== '*1\\r\\n$4\\r\\nPING\\r\\n') throw new Error('encodeCommand');
const [redis, etcd] = await Promise.all([startRedis(), startEtcd()]);
try {
  const client = await RedisClient.connect(redis.url);
  const locker = new RedisLocker(client);
  const lock = await locker.acquire('pack-test', { ttlMs: 5000 });
  console.log('redis fence', typeof lock.fence);
  await lock.release();
  await locker.close();
  await client.close();
  // The protos are found next to dist/ in the installed package.
  const kv = await EtcdClient.connect({ endpoints: etcd.endpoints });
  await kv.put({ key: 'pack-test', value: 'v' });
  const { kvs } = await kv.range({ key: 'pack-test' });
  console.log('etcd', Buffer.from(kvs[0].value).toString());
  await kv.close();
} finally {
  await Promise.all([redis.stop(), etcd.stop()]);
}
`,
    );
    const r = await must(process.execPath, ['esm.mjs'], app);
    expect(r.stdout).to.equal('redis fence bigint\netcd v\n');
    expect(r.stderr).to.equal('');
  });

  it("is required from CommonJS (Node's require(esm), no flag, no warning): the same module as the import", async () => {
    writeFileSync(
      path.join(app, 'cjs.cjs'),
      `const wirelock = require('wirelock');
const testing = require('wirelock/testing');
${HAS_METRICS ? "const metrics = require('wirelock/metrics');\nif (Object.keys(metrics).length === 0) throw new Error('wirelock/metrics exports nothing');" : ''}
console.log(typeof wirelock.RedisLocker, typeof wirelock.EtcdLocker, typeof testing.startRedis, require('wirelock/package.json').version);
import('wirelock').then((esm) => console.log(esm.RedisLocker === wirelock.RedisLocker));
`,
    );
    const r = await must(process.execPath, ['cjs.cjs'], app);
    expect(r.stdout).to.equal(`function function function ${pkg.version}\ntrue\n`);
    expect(r.stderr).to.equal('');
  });

  // TypeScript's node16 models a Node without require(esm), so a CommonJS (.cts) consumer needs node20.
  for (const [what, module, resolution, file] of [
    ['an ESM consumer with node16', 'node16', 'node16', 'consumer.mts'],
    ['a consumer with bundler', 'esnext', 'bundler', 'consumer.ts'],
    ['a CommonJS consumer with node20', 'node20', 'nodenext', 'consumer.cts'],
  ] as const) {
    it(`type-checks ${what} module resolution`, async () => {
      const dir = path.join(app, module);
      mkdirSync(dir);
      writeFileSync(
        path.join(dir, file),
        `import { RedisClient, RedisLocker, WirelockError, type Lock, type RedisOptions } from 'wirelock';
import { startRedis, type RedisServer } from 'wirelock/testing';
${HAS_METRICS ? "import * as metrics from 'wirelock/metrics';\nexport const m: object = metrics;" : ''}
export async function once(server: RedisServer, opts: RedisOptions = {}): Promise<bigint> {
  const client = await RedisClient.connect(server.url, opts);
  const lock: Lock = await new RedisLocker(client).acquire('k', { ttlMs: 1000 });
  // @ts-expect-error: the types are real, not any: a fence is a bigint
  const wrong: string = lock.fence;
  void wrong;
  return lock.fence;
}
export const isOurs = (e: unknown): boolean => e instanceof WirelockError;
export const start: () => Promise<RedisServer> = startRedis;
`,
      );
      writeFileSync(
        path.join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            target: 'ES2022',
            module,
            moduleResolution: resolution,
            strict: true,
            noEmit: true,
            // Our .d.ts are checked too, as a consumer's compiler sees them.
            skipLibCheck: false,
            types: ['node'],
          },
          files: [file],
        }),
      );
      const r = await runProcess(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: dir });
      expect(r.stdout + r.stderr).to.equal('');
      expect(r.code).to.equal(0);
    });
  }

  it('runs as `npx wirelock --version` (and -v), printing the version from package.json', async () => {
    for (const flag of ['--version', '-v']) {
      // `--no`: never fetch; `--`: the flag is wirelock's, not npx's own --version.
      const r = await must(NPX, ['--no', '--', 'wirelock', flag], app);
      expect(r.stdout).to.equal(`${pkg.version}\n`);
    }
  });
});

describe('wirelock --version from the sources', () => {
  const cli = (args: string[]) => runProcess(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), ...args], { cwd: root });

  it('prints the package version and exits 0, and the usage lists it', async () => {
    const r = await cli(['--version']);
    expect([r.code, r.stdout, r.stderr]).to.deep.equal([0, `${pkg.version}\n`, '']);
    expect((await cli(['--help'])).stdout).to.include('\n  wirelock --version\n');
  });
});
