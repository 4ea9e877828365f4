/**
 * The API reference: `npm run docs` (TypeDoc over the three entry points, typedoc.json) must build
 * with no warning at all. typedoc.json turns on the `notDocumented` validation for every kind of
 * public declaration and treats warnings as errors, so an export without its TSDoc, a broken
 * `{@link}`, or a public type that names an unexported one fails this test.
 */
import { expect } from 'chai';
import { readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runProcess } from './support/run.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('API reference (TypeDoc)', function () {
  this.timeout(120_000);
  const out = path.join(os.tmpdir(), `wirelock-reference-${process.pid}`);
  after(() => rmSync(out, { recursive: true, force: true }));

  it('npm run docs builds with every public export documented and no warning', async () => {
    const r = await runProcess('npm', ['run', 'docs', '--', '--out', out], { cwd: root });
    const output = `${r.stdout}\n${r.stderr}`;
    expect(output, output).to.not.match(/\[warning\]|\[error\]/);
    expect(r.code, output).to.equal(0);
    expect(output).to.match(/html generated at/);
  });

  it('the reference states the defaults (read from the generated pages)', () => {
    const page = (file: string): string =>
      readFileSync(path.join(out, file), 'utf8')
        .replace(/<[^>]+>/g, ' ')
        .replace(/&#39;/g, "'")
        .replace(/\s+/g, ' ');
    const redis = page('interfaces/wirelock.RedisOptions.html');
    expect(redis).to.match(/commandTimeoutMs.*Default Value\s*5000/);
    expect(redis).to.match(/port.*Default Value\s*6379/);
    const acquire = page('interfaces/wirelock.AcquireOptions.html');
    expect(acquire).to.match(/waitTimeoutMs.*Default Value\s*Infinity/);
    expect(page('classes/wirelock.RedisLocker.html')).to.include('acquire');
    expect(page('modules/wirelock_metrics.html')).to.include('metrics');
    expect(page('modules/wirelock_testing.html')).to.include('startRedis');
  });
});
