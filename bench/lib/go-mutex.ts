/**
 * etcd's own Go `concurrency.Mutex` as a bench row: bench/go/mutex, built offline (go-build.ts), runs
 * the uncontended and contended scenarios itself and answers with the same figures, one JSON line per
 * command. One process serves every round.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import type { Library } from './adapters.js';
import { goBuild } from './go-build.js';
import { repoRoot } from './paths.js';
import type { ContendedResult } from './scenarios.js';

export interface GoMutex {
  library: Library;
  close(): Promise<void>;
}

export async function goMutex(endpoint: string): Promise<GoMutex> {
  const binary = await goBuild(path.join(repoRoot, 'bench/go/mutex'), 'bench/go/mutex');
  const child: ChildProcess = spawn(binary, ['-endpoints', new URL(endpoint).host], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: Interface = createInterface({ input: child.stdout! });
  // One command at a time: each answer is the next line.
  const waiting: Array<{ command: string; answer(line: string): void; fail(err: Error): void }> = [];
  lines.on('line', (line) => waiting.shift()?.answer(line));
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      for (const w of waiting.splice(0)) w.fail(new Error(`bench/go/mutex exited (${code}) during "${w.command}"`));
      resolve();
    }),
  );
  const ask = (command: string): Promise<Record<string, number>> =>
    new Promise((resolve, reject) => {
      waiting.push({
        command,
        fail: reject,
        answer: (line) => {
          const answer = JSON.parse(line) as Record<string, number> & { error?: string };
          if (answer.error) reject(new Error(`bench/go/mutex: ${answer.error}`));
          else resolve(answer);
        },
      });
      child.stdin!.write(`${command}\n`);
    });
  const library: Library = {
    name: "etcd's Go concurrency.Mutex",
    ours: false,
    make: () => Promise.reject(new Error('the Go row runs its scenarios itself')),
    external: {
      uncontended: async (seconds) => (await ask(`uncontended ${seconds}`)).cyclesPerSec!,
      contended: async (workers, seconds) => ({ ...(await ask(`contended ${workers} ${seconds}`)), serverOpsPerHandoff: NaN }) as unknown as ContendedResult,
    },
  };
  return {
    library,
    close: async () => {
      child.stdin!.end();
      await exited;
    },
  };
}
