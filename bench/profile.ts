/**
 * Where the time goes: runs one wirelock scenario in a child process, profiled after its warm-up
 * through node:inspector, and returns where the time went: by kind (waiting, socket writes, garbage
 * collection, wirelock's own code, gRPC, Node internals…) and the top frames by self time.
 *
 *   node --import tsx bench/profile.ts <scenario> <url…>     (scenario: redis | redlock | etcd | etcd-contended)
 * Called by bench/run.ts for docs/bench.md.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeArgs, repoRoot } from './lib/paths.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Profiles `scenario` for `seconds`; returns markdown lines (a table of the top frames). */
export function profile(scenario: string, urls: string[], seconds = 3, top = 12): string[] {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wirelock-prof-'));
  try {
    const file = path.join(dir, 'profile.cpuprofile');
    const r = spawnSync(process.execPath, [...nodeArgs('profile-child'), scenario, String(seconds), file, ...urls], {
      encoding: 'utf8',
      cwd: repoRoot,
    });
    if (r.status !== 0) throw new Error(`profile child failed: ${r.stderr}`);
    const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
    const rate = r.stdout.trim().split('\n').at(-1) ?? '';
    return [`${scenario}: ${rate}`, '', ...kinds(prof), '', ...table(prof, top)];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What a frame is: waiting, a socket write, GC, wirelock's code, a dependency, or Node itself. */
function kindOf(frame: ProfileNode['callFrame']): string {
  const { functionName, url } = frame;
  if (functionName === '(idle)') return 'waiting (idle: network and server)';
  if (functionName === '(garbage collector)') return 'garbage collection';
  if (functionName === '(program)') return 'native, outside JavaScript';
  if (functionName === 'writeBuffer' || functionName === 'writev' || functionName === 'writeUtf8String') return 'socket writes (syscalls)';
  if (url.includes('/src/')) return 'wirelock (src/)';
  if (url.includes('@grpc/grpc-js')) return '@grpc/grpc-js';
  if (url.includes('protobufjs')) return 'protobufjs';
  if (url.includes('redis-parser')) return 'redis-parser';
  if (url.includes('/bench/')) return 'the benchmark loop';
  return 'Node.js internals';
}

function kinds(prof: CpuProfile): string[] {
  const selfByNode = new Map<number, number>();
  prof.samples.forEach((id, i) => selfByNode.set(id, (selfByNode.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)));
  const byKind = new Map<string, number>();
  let total = 0;
  for (const n of prof.nodes) {
    const t = selfByNode.get(n.id) ?? 0;
    total += t;
    const k = kindOf(n.callFrame);
    byKind.set(k, (byKind.get(k) ?? 0) + t);
  }
  const rows = [...byKind.entries()].sort((a, b) => b[1] - a[1]);
  return ['| share | where |', '|---:|---|', ...rows.map(([k, t]) => `| ${((100 * t) / total).toFixed(1)}% | ${k} |`)];
}

function table(prof: CpuProfile, top: number): string[] {
  const selfByNode = new Map<number, number>();
  prof.samples.forEach((id, i) => selfByNode.set(id, (selfByNode.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)));
  const byFrame = new Map<string, number>();
  let total = 0;
  for (const n of prof.nodes) {
    const t = selfByNode.get(n.id) ?? 0;
    total += t;
    const { functionName, url, lineNumber } = n.callFrame;
    const where = url ? `${url.replace(/^.*\/(node_modules|src|bench)\//, '$1/').replace(/^node:/, 'node:')}:${lineNumber + 1}` : '';
    const name = `${functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
    byFrame.set(name, (byFrame.get(name) ?? 0) + t);
  }
  const rows = [...byFrame.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  return ['| self time | frame |', '|---:|---|', ...rows.map(([name, t]) => `| ${((100 * t) / total).toFixed(1)}% | \`${name}\` |`)];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const [scenario, ...urls] = process.argv.slice(2);
  console.log(profile(scenario!, urls).join('\n'));
}
