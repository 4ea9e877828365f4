/**
 * A tiny fake RESP server for what a real redis-server cannot be made to do on demand: stay silent,
 * answer with garbage, or answer with exact bytes (whole, or one byte per write to exercise the decoder).
 *
 * It parses the commands it receives (RESP arrays of bulk strings) and asks `onCommand` what to send back:
 * bytes to write, or nothing to stay silent. Everything it sees is recorded, per connection.
 */
import net from 'node:net';
import RedisParser from 'redis-parser';

export interface FakeConnection {
  /** 1 for the first accepted connection, 2 for the next, … */
  readonly index: number;
  readonly socket: net.Socket;
  /** The commands received on this connection, in order. */
  readonly commands: string[][];
  /** Every byte received on this connection, as it came. */
  readonly raw: Buffer[];
  closed: boolean;
}

export type FakeReply = string | Buffer | undefined | void;

export interface FakeServerOptions {
  /**
   * What to answer to one command: bytes to write, or undefined to stay silent. Default: silent.
   * A connection's first command, when it is the PING of the client's connect handshake, is answered
   * +PONG without asking (it is still recorded), unless `silentPing` is set.
   */
  onCommand?: (args: string[], conn: FakeConnection) => FakeReply;
  /** Leave the handshake PING to onCommand too (a server that accepts and then says nothing at all). */
  silentPing?: boolean;
  /** Write each reply one byte at a time, yielding to the event loop between writes. */
  byteByByte?: boolean;
  /** Port to listen on (to come back on the same port after close()). Default: a free one. */
  port?: number;
}

export class FakeServer {
  readonly host = '127.0.0.1';
  readonly connections: FakeConnection[] = [];
  readonly #server: net.Server;
  readonly #opts: FakeServerOptions;

  private constructor(server: net.Server, opts: FakeServerOptions) {
    this.#server = server;
    this.#opts = opts;
    server.on('connection', (socket) => this.#accept(socket));
  }

  static start(opts: FakeServerOptions = {}): Promise<FakeServer> {
    const server = net.createServer();
    const fake = new FakeServer(server, opts);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, '127.0.0.1', () => resolve(fake));
    });
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  get url(): string {
    return `redis://${this.host}:${this.port}`;
  }

  /** Every command received, over all connections, in arrival order per connection. */
  get commands(): string[][] {
    return this.connections.flatMap((c) => c.commands);
  }

  /** Connections the fake server has accepted that are still open. */
  get openConnections(): number {
    return this.connections.filter((c) => !c.closed).length;
  }

  /** Stops listening and drops every connection. */
  close(): Promise<void> {
    for (const c of this.connections) c.socket.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    const conn: FakeConnection = { index: this.connections.length + 1, socket, commands: [], raw: [], closed: false };
    this.connections.push(conn);
    let writing = Promise.resolve();
    const parser = new RedisParser({
      returnReply: (reply: unknown) => {
        const args = (reply as unknown[]).map(String);
        conn.commands.push(args);
        const handshake = conn.commands.length === 1 && args[0] === 'PING' && !this.#opts.silentPing;
        const answer = handshake ? '+PONG\r\n' : this.#opts.onCommand?.(args, conn);
        if (answer === undefined || conn.closed) return;
        const bytes = Buffer.isBuffer(answer) ? answer : Buffer.from(answer);
        // Replies are chained so byte-by-byte answers to pipelined commands never interleave.
        writing = writing.then(() => this.#write(conn, bytes));
      },
      returnError: () => {},
      // Not RESP (a TLS ClientHello, say): keep the bytes in `raw` and read no further commands.
      returnFatalError: () => {},
    });
    socket.on('data', (chunk: Buffer) => {
      conn.raw.push(chunk);
      try {
        parser.execute(chunk);
      } catch {
        // same as a fatal error: not RESP
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => (conn.closed = true));
  }

  async #write(conn: FakeConnection, bytes: Buffer): Promise<void> {
    if (!this.#opts.byteByByte) {
      if (!conn.closed) conn.socket.write(bytes);
      return;
    }
    for (let i = 0; i < bytes.length; i++) {
      if (conn.closed) return;
      conn.socket.write(bytes.subarray(i, i + 1));
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
}
