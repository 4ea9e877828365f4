/**
 * Where the bench runs from. `npm run bench` runs it compiled by tsc (build/bench/…, importing
 * build/src/…), so wirelock is measured as users run it: under tsx every closure would also get
 * esbuild's name-keeping helper (a defineProperty per closure created), which the other libraries,
 * plain JavaScript from node_modules, do not pay. Run directly (`node --import tsx bench/x.ts`), it
 * works from the sources, as before.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const self = fileURLToPath(import.meta.url);
/** The bench directory this file was loaded from: bench/ or build/bench/. */
export const benchDir = path.resolve(path.dirname(self), '..');
/** `.ts` from the sources, `.js` when compiled. */
const ext = path.extname(self);

/** The repository root (results and docs are written there, whichever way the bench runs). */
export const repoRoot = ((): string => {
  for (let dir = benchDir; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${benchDir}`);
  }
})();

/** `node` arguments that run bench/<name> the same way this process runs. */
export function nodeArgs(name: string, extra: string[] = []): string[] {
  const file = path.join(benchDir, `${name}${ext}`);
  return ext === '.ts' ? [...extra, '--import', 'tsx', file] : [...extra, file];
}
