/**
 * The loop bench/profile.ts runs under `node --cpu-prof`: one wirelock scenario for N seconds,
 * after a warm-up, printing its rate on the last line.
 */
import { etcdLibraries, redlockLibraries, singleRedisLibraries, type Library } from './lib/adapters.js';
import { contended, uncontended } from './lib/scenarios.js';

const [scenario, seconds, ...urls] = process.argv.slice(2);
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
if (scenario!.endsWith('-contended')) {
  await contended(lib, { workers: 16, seconds: 1 });
  const r = await contended(lib, { workers: 16, seconds: s });
  console.log(`${r.acqPerSec.toFixed(0)} acquisitions/s (16 workers, hold 1 ms, think 0–2 ms)`);
} else {
  await uncontended(lib, 1);
  console.log(`${(await uncontended(lib, s)).toFixed(0)} cycles/s`);
}
