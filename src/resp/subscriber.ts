/**
 * Pub/sub on its own connection (a subscribed RESP2 connection accepts nothing but (UN)SUBSCRIBE and PING),
 * with reference-counted channels: the first listener SUBSCRIBEs, the last one to leave UNSUBSCRIBEs.
 *
 * One channel per SUBSCRIBE command keeps the replies one-to-one with the FIFO of commands.
 * After a reconnect every channel is subscribed again and every listener is called with `null`:
 * messages may have been missed while the connection was down, so waiters should look again.
 */
import { ReconnectingConnection } from './reconnecting.js';
import type { ResolvedRedisOptions } from './options.js';
import type { RespConnection } from './connection.js';
import { respChannels } from '../diagnostics.js';
import { raceAbort } from '../abort.js';

export type MessageListener = (message: string | Buffer | null) => void;

export class Subscriber {
  readonly #link: ReconnectingConnection;
  readonly #listeners = new Map<string, Set<MessageListener>>();
  /** SUBSCRIBE in flight per channel, so concurrent first subscribers wait for the same confirmation. */
  readonly #subscribing = new Map<string, Promise<unknown>>();
  #started: Promise<void> | undefined;
  readonly #timeoutMs: number;

  constructor(opts: ResolvedRedisOptions) {
    this.#timeoutMs = opts.commandTimeoutMs;
    this.#link = new ReconnectingConnection(opts, {
      onPush: (channel, message) => this.#deliver(channel, message),
      onConnect: (conn, reconnected) => (reconnected ? this.#resubscribe(conn) : Promise.resolve()),
    });
  }

  /**
   * Calls `listener` for every message on `channel` until the returned function is called.
   * Resolves once the server has confirmed the subscription, so a message published after that is seen.
   */
  async subscribe(channel: string, listener: MessageListener, signal?: AbortSignal): Promise<() => void> {
    this.#started ??= this.#link.start().catch((err: unknown) => {
      this.#started = undefined; // a later subscribe tries to connect again
      throw err;
    });
    await raceAbort(this.#started, signal);
    let set = this.#listeners.get(channel);
    if (!set) {
      set = new Set();
      this.#listeners.set(channel, set);
      // Shared by every first-time subscriber of this channel, so no one caller's signal may cancel it.
      const confirmed = this.#link.send(['SUBSCRIBE', channel], { timeoutMs: this.#timeoutMs });
      this.#subscribing.set(channel, confirmed);
      confirmed.then(
        () => this.#subscribing.get(channel) === confirmed && this.#subscribing.delete(channel),
        () => this.#subscribing.get(channel) === confirmed && this.#subscribing.delete(channel),
      );
    }
    set.add(listener);
    try {
      await raceAbort(this.#subscribing.get(channel) ?? Promise.resolve(), signal);
    } catch (err) {
      this.#remove(channel, listener);
      throw err;
    }
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.#remove(channel, listener);
    };
  }

  get channelCount(): number {
    return this.#listeners.size;
  }

  close(): Promise<void> {
    this.#listeners.clear();
    return this.#link.close();
  }

  #remove(channel: string, listener: MessageListener): void {
    const set = this.#listeners.get(channel);
    if (!set) return;
    set.delete(listener);
    if (set.size > 0) return;
    this.#listeners.delete(channel);
    // Fire and forget: if the connection is down, the channel is simply not re-subscribed on reconnect.
    this.#link.current?.send(['UNSUBSCRIBE', channel], { timeoutMs: this.#timeoutMs }).catch(() => {});
  }

  #deliver(channel: string, message: string | Buffer): void {
    if (respChannels.message.hasSubscribers) respChannels.message.publish({ address: this.#link.address, channel, message });
    const set = this.#listeners.get(channel);
    if (set) for (const listener of [...set]) call(listener, message);
  }

  async #resubscribe(conn: RespConnection): Promise<void> {
    await Promise.all([...this.#listeners.keys()].map((ch) => conn.send(['SUBSCRIBE', ch])));
    // Wake everyone after the handshake has installed the connection: a release may have been missed.
    queueMicrotask(() => {
      for (const set of this.#listeners.values()) for (const listener of [...set]) call(listener, null);
    });
  }
}

/**
 * A listener that throws must not take the connection down with it (nor the other listeners): its
 * error is rethrown on its own, as an uncaught exception, the way an EventEmitter listener's would be.
 */
function call(listener: MessageListener, message: string | Buffer | null): void {
  try {
    listener(message);
  } catch (err) {
    queueMicrotask(() => {
      throw err;
    });
  }
}
