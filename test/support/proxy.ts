/**
 * FaultProxy: a TCP proxy between clients and one server that injects network faults on demand, for
 * what a real server cannot be made to do: be slow, vanish without a word, or lose its connections.
 *
 *   const proxy = await FaultProxy.start({ port: redis.port });
 *   const client = await RedisClient.connect(proxy.url('redis'));
 *   proxy.delay(150);          // every byte, each way, arrives 150 ms late
 *   proxy.hold();              // bytes queue up in both directions...
 *   proxy.flush();             // ...and are delivered, in order, now
 *   await proxy.stop();
 *
 * Modes (one at a time; `mode` tells which, every switch is immediate and affects open connections):
 *
 * | mode        | open connections                                   | new connections              |
 * |-------------|----------------------------------------------------|------------------------------|
 * | `pass`      | bytes forwarded, after the configured delay        | connected to the server      |
 * | `hold`      | bytes kept, in order, until `flush()` (or `pass()`) | accepted; bytes kept too     |
 * | `blackhole` | bytes swallowed both ways; no FIN, no RST          | accepted, never answered     |
 * | `half-open` | the server side is closed (the server sees a FIN); | like blackhole               |
 * |             | the client side stays open and silent              |                              |
 * | `refuse`    | untouched                                          | reset (RST) at once          |
 *
 * - `delay(ms)` or `delay({ up, down })` is separate from the mode: `up` is client→server, `down` is
 *   server→client. It applies in `pass`, and to bytes flushed after a `hold`. Order is always kept, even
 *   when the delay is changed while bytes are in flight.
 * - A connection that lost bytes (blackhole) or its server side (half-open) can never carry a correct
 *   byte stream again: when the proxy goes back to `pass`, such connections are reset, as a peer that
 *   rebooted would answer a retransmission with RST. Clients then see a closed connection and reconnect.
 * - `reset()` resets (RST) every open connection, both sides, and leaves the mode as it is.
 * - Half-closes (FIN) are forwarded like data, after the same delay.
 * - No flow control: a held or delayed stream is buffered in memory. Fine for tests, not for bulk data.
 */
import net from 'node:net';

export type FaultMode = 'pass' | 'hold' | 'blackhole' | 'half-open' | 'refuse';

export interface ProxyTarget {
  host?: string;
  port: number;
}

/** One direction of one connection. A `null` chunk stands for the FIN, kept in order with the data. */
class Pipe {
  readonly #dest: () => net.Socket | undefined;
  readonly #delayMs: () => number;
  #queue: Array<{ due: number; chunk: Buffer | null }> = [];
  #timer: NodeJS.Timeout | undefined;
  #lastDue = 0;
  held: Array<Buffer | null> = [];

  constructor(dest: () => net.Socket | undefined, delayMs: () => number) {
    this.#dest = dest;
    this.#delayMs = delayMs;
  }

  /** Sends (after the delay) a chunk, or the FIN when `chunk` is null. */
  send(chunk: Buffer | null): void {
    const delay = this.#delayMs();
    if (delay <= 0 && this.#queue.length === 0) return this.#deliver(chunk);
    const due = Math.max(performance.now() + delay, this.#lastDue);
    this.#lastDue = due;
    this.#queue.push({ due, chunk });
    if (this.#queue.length === 1) this.#arm();
  }

  /** Sends what `hold` kept, in order. */
  flushHeld(): void {
    const held = this.held;
    this.held = [];
    for (const chunk of held) this.send(chunk);
  }

  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue = [];
    this.held = [];
  }

  #arm(): void {
    const head = this.#queue[0];
    if (!head) return;
    this.#timer = setTimeout(() => this.#drain(), Math.max(0, head.due - performance.now()));
  }

  #drain(): void {
    this.#timer = undefined;
    const now = performance.now();
    while (this.#queue.length > 0 && this.#queue[0]!.due <= now + 0.5) this.#deliver(this.#queue.shift()!.chunk);
    this.#arm();
  }

  #deliver(chunk: Buffer | null): void {
    const dest = this.#dest();
    if (!dest || dest.destroyed) return;
    if (chunk === null) dest.end();
    else dest.write(chunk);
  }
}

class Link {
  readonly client: net.Socket;
  server: net.Socket | undefined;
  /** Lost bytes or its server side: must not go back to forwarding. */
  broken = false;
  readonly up: Pipe;
  readonly down: Pipe;

  constructor(client: net.Socket, upDelay: () => number, downDelay: () => number) {
    this.client = client;
    this.up = new Pipe(() => this.server, upDelay);
    this.down = new Pipe(() => this.client, downDelay);
  }

  destroy(rst: boolean): void {
    this.up.clear();
    this.down.clear();
    for (const socket of [this.client, this.server]) {
      if (!socket || socket.destroyed) continue;
      if (rst) socket.resetAndDestroy();
      else socket.destroy();
    }
  }
}

export class FaultProxy {
  readonly host: string;
  readonly target: Required<ProxyTarget>;
  readonly #server: net.Server;
  readonly #links = new Set<Link>();
  #mode: FaultMode = 'pass';
  #upDelay = 0;
  #downDelay = 0;
  /** Every connection accepted since start (open or not). */
  accepted = 0;

  private constructor(server: net.Server, host: string, target: Required<ProxyTarget>) {
    this.#server = server;
    this.host = host;
    this.target = target;
    server.on('connection', (socket) => this.#accept(socket));
  }

  /** Listens on `opts.port` (default: a free port) of 127.0.0.1 and forwards to `target`. */
  static start(target: ProxyTarget, opts: { host?: string; port?: number } = {}): Promise<FaultProxy> {
    const host = opts.host ?? '127.0.0.1';
    const server = net.createServer({ allowHalfOpen: true });
    const proxy = new FaultProxy(server, host, { host: target.host ?? '127.0.0.1', port: target.port });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, host, () => {
        server.off('error', reject);
        resolve(proxy);
      });
    });
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  /** host:port of the proxy. */
  get address(): string {
    return `${this.host}:${this.port}`;
  }

  /** `scheme://host:port` of the proxy, e.g. url('redis') or url('http'). */
  url(scheme: string): string {
    return `${scheme}://${this.address}`;
  }

  get mode(): FaultMode {
    return this.#mode;
  }

  /** Open connections (client side not yet closed). */
  get connections(): number {
    return this.#links.size;
  }

  /** Delays every chunk by `ms` each way, or by `up` (client→server) and `down` (server→client) ms. */
  delay(ms: number | { up?: number; down?: number }): this {
    if (typeof ms === 'number') this.#upDelay = this.#downDelay = ms;
    else {
      this.#upDelay = ms.up ?? 0;
      this.#downDelay = ms.down ?? 0;
    }
    return this;
  }

  /** Forwards normally again. Held bytes are delivered first; broken connections are reset. */
  pass(): this {
    const from = this.#mode;
    this.#mode = 'pass';
    for (const link of [...this.#links]) {
      if (link.broken) this.#drop(link, true);
      else if (from === 'hold') {
        link.up.flushHeld();
        link.down.flushHeld();
      }
    }
    return this;
  }

  /** Keeps every byte, both ways, until flush() or pass(). */
  hold(): this {
    this.#mode = 'hold';
    return this;
  }

  /** Delivers what hold() kept, in order, and goes back to pass. */
  flush(): this {
    return this.pass();
  }

  /** Swallows every byte, both ways, without closing anything. New connections are accepted and ignored. */
  blackhole(): this {
    this.#mode = 'blackhole';
    for (const link of this.#links) {
      link.broken = true;
      link.up.clear();
      link.down.clear();
    }
    return this;
  }

  /** Closes the server side of every connection while the client side stays open and silent. */
  halfOpen(): this {
    this.#mode = 'half-open';
    for (const link of this.#links) {
      link.broken = true;
      link.up.clear();
      link.down.clear();
      link.server?.destroy();
      link.server = undefined;
    }
    return this;
  }

  /** New connections are reset (RST) as soon as they are accepted; open ones are left alone. */
  refuse(): this {
    this.#mode = 'refuse';
    return this;
  }

  /** Resets (RST) every open connection, both sides. The mode does not change. */
  reset(): this {
    for (const link of [...this.#links]) this.#drop(link, true);
    return this;
  }

  /** Stops listening and destroys every connection. */
  stop(): Promise<void> {
    for (const link of [...this.#links]) this.#drop(link, false);
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: net.Socket): void {
    this.accepted++;
    if (this.#mode === 'refuse') {
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    const link = new Link(client, () => this.#upDelay, () => this.#downDelay);
    this.#links.add(link);
    client.setNoDelay(true);
    client.on('error', () => this.#drop(link, false));
    client.on('close', () => this.#drop(link, false));
    client.on('data', (chunk: Buffer) => this.#forward(link, link.up, chunk));
    client.on('end', () => this.#forward(link, link.up, null));
    if (this.#mode === 'blackhole' || this.#mode === 'half-open') {
      link.broken = true; // never connected upstream: it can carry nothing
      return;
    }
    const server = net.connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true });
    link.server = server;
    server.setNoDelay(true);
    // The server went away (or refused us): the client sees its connection reset, as it would without us.
    server.on('error', () => this.#drop(link, true));
    // A graceful close arrives as 'end' and is forwarded (after the delay) like data; the client side then
    // closes in its own time, which drops the link.
    server.on('data', (chunk: Buffer) => this.#forward(link, link.down, chunk));
    server.on('end', () => this.#forward(link, link.down, null));
  }

  #forward(link: Link, pipe: Pipe, chunk: Buffer | null): void {
    if (link.broken) return;
    switch (this.#mode) {
      case 'pass':
      case 'refuse':
        pipe.send(chunk);
        return;
      case 'hold':
        pipe.held.push(chunk);
        return;
      default:
        return; // blackhole, half-open: swallowed
    }
  }

  #drop(link: Link, rst: boolean): void {
    if (!this.#links.delete(link)) return;
    link.destroy(rst);
  }
}
