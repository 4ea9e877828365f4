/**
 * A redis-server caught in the middle of loading its data set, the way a restarted server is for a
 * while: every command gets `-LOADING Redis is loading the dataset in memory` until it is done.
 *
 *   const dump = await makeDump(2000);              // a dump.rdb with 2000 small keys
 *   const loading = await startLoading(dump, 500);  // answers -LOADING for about 2000 × 500 µs
 *   ...
 *   await loading.stop();
 *   dump.remove();
 *
 * The load is slowed with redis-server's hidden `key-load-delay` (µs per key; present in 7.0, though
 * `CONFIG GET *` hides it), and `loading-process-events-interval-bytes` is lowered so the server
 * answers clients every few dozen keys rather than every 2 MiB read. startRedis() cannot be used: it
 * waits for "Ready to accept connections", which a server logs only after loading.
 */
import { copyFileSync } from 'node:fs';
import path from 'node:path';
import { RedisClient } from '../../src/index.js';
import { startRedis } from '../../src/testing/servers.js';
import { findBinary, freePort, launch, removeDir, tempDir, terminate } from '../../src/testing/process.js';

export interface Dump {
  readonly file: string;
  remove(): void;
}

export interface LoadingRedis {
  readonly port: number;
  readonly url: string;
  stop(): Promise<void>;
}

/** A dump.rdb holding `keys` small string keys named `filler:<n>` (made by a throwaway server). */
export async function makeDump(keys: number): Promise<Dump> {
  const server = await startRedis();
  const dir = tempDir('redis-dump');
  try {
    const client = await RedisClient.connect(server.url);
    try {
      for (let i = 0; i < keys; i += 500) {
        const pairs: string[] = [];
        for (let j = i; j < Math.min(keys, i + 500); j++) pairs.push(`filler:${j}`, `value of filler ${j}`);
        await client.send(['MSET', ...pairs]);
      }
      await client.send(['SAVE']);
    } finally {
      await client.close();
    }
    const file = path.join(dir, 'dump.rdb');
    copyFileSync(path.join(server.dir, 'dump.rdb'), file);
    return { file, remove: () => removeDir(dir) };
  } catch (err) {
    removeDir(dir);
    throw err;
  } finally {
    await server.stop();
  }
}

/** Starts redis-server on a copy of `dump`, loading it at `usPerKey` µs per key; resolves once it is loading. */
export async function startLoading(dump: Dump, usPerKey: number): Promise<LoadingRedis> {
  const dir = tempDir('redis-loading');
  copyFileSync(dump.file, path.join(dir, 'dump.rdb'));
  const port = await freePort();
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--dbfilename', 'dump.rdb',
    '--save', '', '--appendonly', 'no', '--logfile', '',
    '--key-load-delay', String(usPerKey), '--loading-process-events-interval-bytes', '1024',
  ];
  try {
    // The port is open by the time the server logs that it is loading.
    const proc = await launch(findBinary('redis-server', 'redis-server'), args, /Loading RDB produced by/, 10_000);
    return {
      port,
      url: `redis://127.0.0.1:${port}`,
      stop: async () => {
        await terminate(proc);
        removeDir(dir);
      },
    };
  } catch (err) {
    removeDir(dir);
    throw err;
  }
}
