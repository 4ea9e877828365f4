/**
 * Server-side operation counters for "operations per handoff".
 *
 * Redis: INFO commandstats also counts the commands a Lua script runs inside the server, so it would
 * charge a script's internals as round trips. Instead, clients connect through a counting proxy that
 * parses the client-to-server byte stream and counts the commands actually sent.
 *
 * etcd: its /metrics endpoint counts every gRPC request message the server received (unary requests
 * and stream messages alike) and every message it sent, per method.
 */
import net from 'node:net';
import RedisParser from 'redis-parser';
import type { RedisClient } from '../../src/index.js';
import { QUEUE_ACQUIRE, QUEUE_RELEASE, queueKeys, redisKeys, type RedisKeys } from '../../src/locks/redis-scripts.js';
import { Script } from '../../src/resp/script.js';
import { COMPARE_AND_DELETE } from './floors.js';

export interface CountingProxy {
  /** redis:// URL of the proxy. */
  url: string;
  /** Commands sent by clients so far. */
  commands(): number;
  close(): Promise<void>;
}

export function countingRedisProxy(target: { host: string; port: number }): Promise<CountingProxy> {
  let count = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client).add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const parser = new RedisParser({
      returnReply: () => void count++,
      returnError: () => {},
      returnFatalError: () => client.destroy(),
    });
    client.on('data', (chunk: Buffer) => {
      parser.execute(chunk);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      resolve({
        url: `redis://127.0.0.1:${port}`,
        commands: () => count,
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}

/** Sums etcd's grpc_server_msg_received_total (and, for `sent`, msg_sent_total) over the given methods. */
export async function etcdMessages(endpoint: string, opts: { sent?: boolean; method?: RegExp } = {}): Promise<number> {
  const res = await fetch(`${endpoint}/metrics`);
  const text = await res.text();
  const metric = opts.sent ? 'grpc_server_msg_sent_total' : 'grpc_server_msg_received_total';
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(metric)) continue;
    const method = /grpc_method="([^"]+)"/.exec(line)?.[1] ?? '';
    if (opts.method && !opts.method.test(method)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/**
 * CPU time the Redis servers have used so far, user and system, in µs, summed over `servers` (INFO
 * cpu, from the server's getrusage). Read before and after a round, it is what the round cost the
 * servers: running the commands and scripts, and the reads, writes and event-loop waits around them.
 */
export async function redisCpuUs(servers: RedisClient[]): Promise<number> {
  let total = 0;
  for (const c of servers) {
    const info = String(await c.send(['INFO', 'cpu']));
    const field = (name: string): number => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info)?.[1] ?? NaN);
    total += (field('used_cpu_user') + field('used_cpu_sys')) * 1e6;
  }
  return total;
}

/** Time inside the server per call, µs (INFO commandstats usec_per_call), of the uncontended cycle's commands. */
export interface CommandCosts {
  /** wirelock's RedisLocker: QUEUE_ACQUIRE and QUEUE_RELEASE, on a new key each cycle. */
  acquire: number;
  release: number;
  /** What raw ioredis sends: SET NX PX, and a compare-and-delete script. */
  setNx: number;
  compareAndDelete: number;
}

/**
 * Runs `cycles` uncontended cycles of each pair of commands, 16 at a time, and reads how long the
 * server spent inside each command (commandstats counts from the command's start to its end inside
 * the server: no I/O; a script's time includes the commands it calls). Each phase starts from
 * CONFIG RESETSTAT, so each figure is one command's own.
 */
export async function commandCosts(client: RedisClient, cycles: number): Promise<CommandCosts> {
  const cad = new Script(COMPARE_AND_DELETE, 1);
  const run = `cost:${process.pid}:${Date.now()}`;
  const keys = Array.from({ length: cycles }, (_, i) => redisKeys('bench:', `${run}:${i}`));
  const perCall = async (command: string, f: (i: number) => Promise<unknown>): Promise<number> => {
    await client.send(['CONFIG', 'RESETSTAT']);
    let next = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < cycles) await f(next++);
    }));
    const info = String(await client.send(['INFO', 'commandstats']));
    const m = new RegExp(`^cmdstat_${command}:calls=(\\d+),usec=(\\d+)`, 'm').exec(info);
    return m ? Number(m[2]) / Number(m[1]) : NaN;
  };
  const acquireOn = (k: RedisKeys, token: string): Promise<unknown> => client.evalScript(QUEUE_ACQUIRE, queueKeys(k), [token, 10000, 0, k.channel]);
  const releaseOn = (k: RedisKeys, token: string): Promise<unknown> => client.evalScript(QUEUE_RELEASE, queueKeys(k), [token, k.channel]);
  // The first run of each script on this connection goes as EVAL: run each once, so that every
  // measured call is an EVALSHA.
  const warm = redisKeys('bench:', `${run}:warm`);
  await acquireOn(warm, 'w');
  await releaseOn(warm, 'w');
  await client.evalScript(cad, [warm.lock], ['w']);
  const acquire = await perCall('evalsha', (i) => acquireOn(keys[i]!, `t${i}`));
  const release = await perCall('evalsha', (i) => releaseOn(keys[i]!, `t${i}`));
  const setNx = await perCall('set', (i) => client.send(['SET', `${keys[i]!.lock}:raw`, `t${i}`, 'NX', 'PX', 10000]));
  const compareAndDelete = await perCall('evalsha', (i) => client.evalScript(cad, [`${keys[i]!.lock}:raw`], [`t${i}`]));
  return { acquire, release, setNx, compareAndDelete };
}
