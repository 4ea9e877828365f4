/**
 * Lock metrics on /metrics for Prometheus, served with node:http, while a worker takes and releases
 * a lock in a loop.
 *
 *   node --import tsx examples/metrics-server.ts [redis://[:password@]host:6379] [--port 9464]
 *
 * Without a URL it starts a throwaway redis-server (wirelock/testing). It prints the address it
 * serves on, and stops cleanly (releasing the lock, closing the server) on SIGINT or SIGTERM.
 */
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { RedisClient, RedisLocker } from '../src/index.js';
import { metrics } from '../src/metrics.js';
import { startRedis } from '../src/testing/servers.js';

const args = process.argv.slice(2);
const portAt = args.indexOf('--port');
const port = portAt === -1 ? 0 : Number(args.splice(portAt, 2)[1]);
const server = args[0] ? undefined : await startRedis();
const url = args[0] ?? server!.url;

// Subscribe before connecting, so the connection's own commands (HELLO, AUTH) are counted too.
const m = metrics();
const client = await RedisClient.connect(url);
const locker = new RedisLocker(client);

const httpServer = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/metrics') {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
    res.end(m.prometheus());
  } else {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
  }
});
await new Promise<void>((resolve) => httpServer.listen(port, '127.0.0.1', resolve));
const { port: bound } = httpServer.address() as { port: number };
console.log(`metrics on http://127.0.0.1:${bound}/metrics`);

const stop = new AbortController();
process.once('SIGINT', () => stop.abort());
process.once('SIGTERM', () => stop.abort());

// The worker: a short job under the lock, a pause, again.
try {
  while (!stop.signal.aborted) {
    await locker.using('report', async (lock) => sleep(20 + Math.random() * 30, undefined, { signal: lock.signal }), { ttlMs: 5000 });
    await sleep(50, undefined, { signal: stop.signal }).catch(() => {});
  }
} finally {
  await locker.close();
  await client.close();
  m.close();
  await new Promise((resolve) => httpServer.close(resolve));
  await server?.stop();
}
