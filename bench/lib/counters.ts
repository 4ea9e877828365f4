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
