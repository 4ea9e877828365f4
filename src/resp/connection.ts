/**
 * One RESP connection: it owns the socket and the FIFO of commands waiting for their replies.
 *
 * Redis answers commands in the order it receives them, so the parser's n-th reply belongs to the
 * n-th command written. Everything here protects that invariant:
 * - writes are batched and flushed once per tick (concurrent commands pipeline for free);
 * - a command aborted before its flush is never written; after its flush it only stops waiting,
 *   and its reply is read and discarded when it comes;
 * - a command that times out after being written destroys the connection: its reply may still come,
 *   and every later reply would be handed to the wrong command;
 * - when the socket closes, every pending command rejects with ConnectionError and is never replayed
 *   (it may or may not have been applied: only the caller can decide what that means).
 */
import net from 'node:net';
import tls from 'node:tls';
import RedisParser from 'redis-parser';
import { encodeCommand, type RespArg } from './encoder.js';
import { ConnectionError, ProtocolError, RespError, TimeoutError } from '../errors.js';
import { respChannels, redactCommand } from '../diagnostics.js';
import { MAX_TIMER_MS, noop, onAbort } from '../abort.js';
import { DEFAULT_MAX_REPLY_BYTES } from './options.js';

/**
 * A reply. An error reply to the command itself rejects with RespError; an error nested inside an
 * array (one command of a MULTI/EXEC block, or an error a script put in a table) is a RespError
 * element, so the array still says what the other commands did.
 */
export type RespValue = string | number | bigint | Buffer | null | RespError | RespValue[];

/** Per-command options for {@link RedisClient.send} and {@link RedisClient.evalScript}. */
export interface CommandOptions {
  /**
   * Stops waiting for the reply when it aborts: the promise rejects with `signal.reason`. A command not
   * yet written is never sent; one already written may still run on the server (its reply is discarded).
   */
  signal?: AbortSignal;
  /** Milliseconds to wait for the reply; the connection's default when omitted. */
  timeoutMs?: number;
}

/** What RespConnection.open needs: resolved values, no defaults. */
export interface ConnectionOptions {
  host: string;
  port: number;
  tls?: tls.ConnectionOptions | undefined;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  /** Return bulk strings as Buffers instead of UTF-8 strings. */
  returnBuffers?: boolean | undefined;
  /** The most bytes one reply may take; more is a ProtocolError. Default: DEFAULT_MAX_REPLY_BYTES (512 MiB). */
  maxReplyBytes?: number | undefined;
  /** Pub/sub pushes (`message` and sharded `smessage` arrays) are handed here instead of to the FIFO. Subscriber connections only. */
  onPush?: ((channel: string, message: string | Buffer) => void) | undefined;
  /**
   * Sharded pub/sub: the server dropped our subscription to `channel` on its own (its slot moved to
   * another node, Redis 7), with a `sunsubscribe` that answers no SUNSUBSCRIBE of ours.
   */
  onDropped?: ((channel: string) => void) | undefined;
}

interface Pending {
  readonly name: string;
  readonly args: ReadonlyArray<RespArg>;
  readonly bytes: Buffer;
  readonly resolve: (value: RespValue) => void;
  readonly reject: (error: unknown) => void;
  /** true once the caller has been answered (reply, error, abort or timeout); a late reply is discarded. */
  done: boolean;
  written: boolean;
  sentAt: number;
  timer: NodeJS.Timeout | undefined;
  offAbort: () => void;
}

let nextConnectionId = 1;

/**
 * What redis-parser keeps between chunks. Its typings mark these private; they are read (never written)
 * to bound the size of a reply, which the parser itself does not do.
 */
interface ParserState {
  buffer: Buffer | null;
  offset: number;
  /** While a long bulk string arrives in pieces: where it ends, counted from the start of `buffer`. */
  bigStrSize: number;
}

/** One socket to a Redis server and the FIFO of commands waiting for their replies (no reconnecting). */
export class RespConnection {
  /** A number unique in this process, naming the connection in diagnostics_channel messages. */
  readonly id = nextConnectionId++;
  /** SHA1s of the scripts sent in full (EVAL) on this connection: the server has them cached since. */
  readonly scripts = new Set<string>();
  /** host:port of the server. */
  readonly address: string;
  readonly #socket: net.Socket;
  readonly #parser: RedisParser;
  readonly #commandTimeoutMs: number;
  readonly #onPush: ConnectionOptions['onPush'];
  readonly #onDropped: ConnectionOptions['onDropped'];
  readonly #maxReplyBytes: number;
  /** Bytes received since the last complete reply: the reply in progress, so far. */
  #replyBytes = 0;
  /** Written commands waiting for their replies, oldest first (a queue with a moving head). */
  #sent: Pending[] = [];
  #head = 0;
  /** Commands accepted this tick, flushed together by #flush. */
  #unwritten: Pending[] = [];
  #closed = false;
  #closeListeners: Array<(error: Error | undefined) => void> = [];

  private constructor(socket: net.Socket, opts: ConnectionOptions, address: string) {
    this.#socket = socket;
    this.address = address;
    this.#commandTimeoutMs = opts.commandTimeoutMs;
    this.#onPush = opts.onPush;
    this.#onDropped = opts.onDropped;
    this.#maxReplyBytes = opts.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES;
    this.#parser = new RedisParser({
      returnBuffers: opts.returnBuffers ?? false,
      returnReply: (reply: unknown) => {
        this.#replyEnded();
        this.#onReply(reply as RespValue);
      },
      returnError: (err: Error) => {
        this.#replyEnded();
        this.#onErrorReply(err);
      },
      returnFatalError: (err: Error) =>
        this.destroy(new ProtocolError(`${address}: malformed reply from server: ${err.message}`, { cause: err })),
    });
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => this.destroy(new ConnectionError(address, err.message, { cause: err })));
    socket.on('close', () => this.destroy(new ConnectionError(address, 'connection closed by server')));
  }

  /** Opens a TCP (or TLS) connection; rejects with ConnectionError if it fails or takes longer than connectTimeoutMs. */
  static open(opts: ConnectionOptions): Promise<RespConnection> {
    const address = `${opts.host}:${opts.port}`;
    return new Promise((resolve, reject) => {
      const socket = opts.tls
        ? tls.connect({ ...opts.tls, host: opts.host, port: opts.port, servername: opts.tls.servername ?? servername(opts.host) })
        : net.connect({ host: opts.host, port: opts.port });
      const fail = (error: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(error);
      };
      const timer = setTimeout(() => {
        const cause = new TimeoutError(`connect timed out after ${opts.connectTimeoutMs} ms`, opts.connectTimeoutMs);
        fail(new ConnectionError(address, cause.message, { cause }));
      }, Math.min(opts.connectTimeoutMs, MAX_TIMER_MS));
      socket.once('error', (err) => fail(new ConnectionError(address, `connect failed: ${err.message}`, { cause: err })));
      socket.once(opts.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 15_000);
        resolve(new RespConnection(socket, opts, address));
      });
    });
  }

  /** True once the connection has been closed or destroyed; it never opens again. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Commands written or about to be written that have not had their reply yet. */
  get pendingCount(): number {
    return this.#sent.length - this.#head + this.#unwritten.length;
  }

  /** Calls `listener` once when the connection closes, with the error that closed it (none for a clean close). */
  onClose(listener: (error: Error | undefined) => void): void {
    this.#closeListeners.push(listener);
  }

  /**
   * Queues one command for this tick's write and resolves with its reply. Rejects with RespError for an
   * error reply, TimeoutError after `timeoutMs` (destroying the connection if the command was written),
   * ConnectionError if the connection is or becomes closed (ProtocolError if malformed bytes closed it).
   */
  send(args: ReadonlyArray<RespArg>, opts?: CommandOptions): Promise<RespValue> {
    let bytes: Buffer;
    try {
      bytes = encodeCommand(args);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#closed) return Promise.reject(new ConnectionError(this.address, 'connection is closed'));
    const signal = opts?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);

    return new Promise<RespValue>((resolve, reject) => {
      const cmd: Pending = {
        name: String(args[0]).toUpperCase(),
        args,
        bytes,
        resolve,
        reject,
        done: false,
        written: false,
        sentAt: 0,
        timer: undefined,
        offAbort: noop,
      };
      const timeoutMs = opts?.timeoutMs ?? this.#commandTimeoutMs;
      if (timeoutMs <= MAX_TIMER_MS) {
        cmd.timer = setTimeout(() => this.#onTimeout(cmd, timeoutMs), timeoutMs);
      }
      if (signal) cmd.offAbort = onAbort(signal, (reason) => this.#abandon(cmd, reason));
      if (this.#unwritten.push(cmd) === 1) process.nextTick(() => this.#flush());
    });
  }

  /** QUIT, then end the socket. Commands already sent get their replies first (the server answers in order). */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.send(['QUIT'], { timeoutMs: 1000 });
    } catch {
      // The socket is ended below either way.
    }
    this.destroy();
  }

  /** Ends the socket now; every pending command rejects with ConnectionError (cause: `error`). */
  destroy(error?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    const pending = [...this.#sent.slice(this.#head), ...this.#unwritten];
    this.#sent = [];
    this.#head = 0;
    this.#unwritten = [];
    for (const cmd of pending) {
      // Malformed bytes are what these commands ran into: they reject with ProtocolError itself.
      const reason =
        error instanceof ConnectionError || error instanceof ProtocolError
          ? error
          : new ConnectionError(this.address, error ? `connection closed: ${error.message}` : 'connection closed', {
              cause: error,
            });
      this.#reject(cmd, reason);
    }
    if (respChannels.close.hasSubscribers) {
      respChannels.close.publish({ connection: this.id, address: this.address, error });
    }
    for (const listener of this.#closeListeners) listener(error);
    this.#closeListeners = [];
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    this.#replyBytes += chunk.length;
    try {
      this.#parser.execute(chunk);
    } catch (err) {
      // redis-parser throws on some malformed input instead of reporting it: an array length beyond
      // 2^32 (new Array), or nesting deeper than the stack. Thrown from a socket event it would be uncaught.
      this.destroy(new ProtocolError(`${this.address}: malformed reply from server: ${(err as Error).message}`, { cause: err }));
      return;
    }
    if (this.#closed) return;
    // Counted across chunks: a bulk string, a long line or an endless array all grow the reply in progress.
    // A bulk string announcing more than the limit is refused before its bytes arrive.
    const state = this.#parser as unknown as ParserState;
    const announced = state.bigStrSize > 0 ? state.bigStrSize - state.offset - 2 : 0;
    if (this.#replyBytes > this.#maxReplyBytes || announced > this.#maxReplyBytes) {
      this.destroy(
        new ProtocolError(`${this.address}: reply larger than maxReplyBytes (${this.#maxReplyBytes} bytes)`),
      );
    }
  }

  /** A reply is complete: what the parser holds after it belongs to the next one. */
  #replyEnded(): void {
    const state = this.#parser as unknown as ParserState;
    this.#replyBytes = state.buffer ? state.buffer.length - state.offset : 0;
  }

  #flush(): void {
    const batch = this.#unwritten;
    this.#unwritten = [];
    if (this.#closed) return;
    const publish = respChannels.command.hasSubscribers;
    const now = performance.now();
    const chunks: Buffer[] = [];
    for (const cmd of batch) {
      if (cmd.done) continue; // aborted or timed out before it was written: it never reaches the wire
      cmd.written = true;
      cmd.sentAt = now;
      this.#sent.push(cmd);
      chunks.push(cmd.bytes);
      if (publish) {
        respChannels.command.publish({ connection: this.id, address: this.address, args: redactCommand(cmd.args) });
      }
    }
    if (chunks.length === 1) this.#socket.write(chunks[0]!);
    else if (chunks.length > 1) this.#socket.write(Buffer.concat(chunks));
  }

  #shift(): Pending | undefined {
    const cmd = this.#sent[this.#head];
    if (cmd === undefined) return undefined;
    this.#sent[this.#head++] = undefined as unknown as Pending;
    if (this.#head === this.#sent.length) {
      this.#sent = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#sent.length) {
      this.#sent = this.#sent.slice(this.#head);
      this.#head = 0;
    }
    return cmd;
  }

  #onReply(reply: RespValue): void {
    if (this.#onPush && Array.isArray(reply) && reply.length === 3) {
      const kind = String(reply[0]);
      if (kind === 'message' || kind === 'smessage') {
        this.#onPush(String(reply[1]), reply[2] as string | Buffer);
        return;
      }
      // A `sunsubscribe` is the reply to our SUNSUBSCRIBE of that channel when that is the command
      // waiting; otherwise the server sent it unasked: the channel's slot has moved to another node.
      if (kind === 'sunsubscribe' && this.#onDropped) {
        const head = this.#sent[this.#head];
        const channel = String(reply[1]);
        if (!head || head.name !== 'SUNSUBSCRIBE' || String(head.args[1]) !== channel) {
          this.#onDropped(channel);
          return;
        }
      }
    }
    const cmd = this.#shift();
    if (!cmd) {
      this.destroy(new ProtocolError(`${this.address}: reply arrived with no command waiting for it`));
      return;
    }
    if (cmd.done) return; // its caller gave up (abort); the reply is consumed to keep the FIFO aligned
    if (Array.isArray(reply)) typedErrors(reply, cmd.name);
    if (respChannels.reply.hasSubscribers) {
      respChannels.reply.publish({
        connection: this.id,
        address: this.address,
        command: cmd.name,
        reply,
        durationMs: performance.now() - cmd.sentAt,
      });
    }
    this.#resolve(cmd, reply);
  }

  #onErrorReply(err: Error): void {
    const cmd = this.#shift();
    if (!cmd) {
      this.destroy(new ProtocolError(`${this.address}: error reply arrived with no command waiting for it`));
      return;
    }
    if (cmd.done) return;
    this.#reject(cmd, new RespError(err.message, cmd.name));
  }

  #onTimeout(cmd: Pending, timeoutMs: number, opts?: { afterPoll: true }): void {
    if (cmd.done) return;
    // Timers run before the poll phase that reads sockets: when the event loop is late, a reply that
    // arrived in time may be sitting unread. Look once more after the next poll (setImmediate runs
    // right after it) before destroying a healthy connection.
    if (cmd.written && !opts?.afterPoll) {
      setImmediate(() => this.#onTimeout(cmd, timeoutMs, { afterPoll: true }));
      return;
    }
    const error = new TimeoutError(`${this.address}: ${cmd.name} timed out after ${timeoutMs} ms`, timeoutMs);
    const wasWritten = cmd.written;
    this.#reject(cmd, error);
    // A written command's reply may still arrive; the connection can no longer tell whose reply is whose.
    if (wasWritten) this.destroy(error);
  }

  #abandon(cmd: Pending, reason: unknown): void {
    if (cmd.done) return;
    this.#reject(cmd, reason);
  }

  /** Marks a command answered (once): no timer, no abort listener, no second answer. False if it was already. */
  #finish(cmd: Pending): boolean {
    if (cmd.done) return false;
    cmd.done = true;
    if (cmd.timer) clearTimeout(cmd.timer);
    cmd.offAbort();
    return true;
  }

  #resolve(cmd: Pending, value: RespValue): void {
    if (this.#finish(cmd)) cmd.resolve(value ?? null);
  }

  #reject(cmd: Pending, error: unknown): void {
    if (!this.#finish(cmd)) return;
    if (respChannels.error.hasSubscribers) {
      respChannels.error.publish({
        connection: this.id,
        address: this.address,
        command: cmd.name,
        error,
        written: cmd.written,
        durationMs: cmd.written ? performance.now() - cmd.sentAt : 0,
      });
    }
    cmd.reject(error);
  }
}

/** SNI must not be an IP address; TLS verification of an IP uses the certificate's IP SAN instead. */
function servername(host: string): string | undefined {
  return net.isIP(host) ? undefined : host;
}

/** redis-parser puts its own ReplyError objects in arrays for nested error replies; ours are typed. */
function typedErrors(reply: RespValue[], command: string): RespValue[] {
  for (let i = 0; i < reply.length; i++) {
    const item = reply[i] as unknown;
    if (Array.isArray(item)) typedErrors(item as RespValue[], command);
    else if (item instanceof Error && !(item instanceof RespError)) reply[i] = new RespError(item.message, command);
  }
  return reply;
}
