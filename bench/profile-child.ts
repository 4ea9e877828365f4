/**
 * The loop bench/profile.ts profiles: one wirelock scenario, warmed up first, then profiled for N
 * seconds through node:inspector (so start-up and module loading stay out of the profile). Writes the
 * .cpuprofile to the given path and prints the rate on its last line.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { etcdLibraries, redlockLibraries, singleRedisLibraries, type Library } from './lib/adapters.js';
import { contended, uncontended } from './lib/scenarios.js';

const [scenario, seconds, out, ...urls] = process.argv.slice(2);
const s = Number(seconds);

function library(): Library {
  switch (scenario) {
    case 'redis':
    case 'redis-contended':
      return singleRedisLibraries(urls[0]!)[0]!;
    case 'redlock':
      return redlockLibraries(urls)[0]!;
    case 'etcd':
    case 'etcd-contended':
      return etcdLibraries(urls[0]!, [])[0]!;
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
}

const lib = library();
const contendedRun = scenario!.endsWith('-contended');
const run = (secs: number): Promise<string> =>
  contendedRun
    ? contended(lib, { workers: 16, seconds: secs }).then((r) => `${r.acqPerSec.toFixed(0)} acquisitions/s (16 workers, hold 1 ms, think 0–2 ms)`)
    : uncontended(lib, secs).then((r) => `${r.toFixed(0)} cycles/s`);

await run(1); // warm-up: JIT, connections, sessions, script caches
const inspector = new Session();
inspector.connect();
await inspector.post('Profiler.enable');
await inspector.post('Profiler.start');
const rate = await run(s);
const { profile } = await inspector.post('Profiler.stop');
writeFileSync(out!, JSON.stringify(profile));
inspector.disconnect();
console.log(rate);
