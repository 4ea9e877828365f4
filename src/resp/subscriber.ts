/**
 * Pub/sub on its own connection (a subscribed RESP2 connection accepts nothing but (UN)SUBSCRIBE and PING),
 * with reference-counted channels: the first listener SUBSCRIBEs, the last one to leave UNSUBSCRIBEs.
 *
 * One channel per SUBSCRIBE command keeps the replies one-to-one with the FIFO of commands.
 * After a reconnect every channel is subscribed again and every listener is called with `null`:
 * messages may have been missed while the connection was down, so waiters should look again.
 *
 * The server must never keep a channel that no one listens to (every PUBLISH on it would still be
 * sent to us). When the last listener of a channel leaves:
 * - a SUBSCRIBE of it still waiting to be written (the connection is down, or it is queued for this
 *   tick's flush) is aborted, and a command aborted before it is written is never written;
 * - one that may already be on the wire is followed by an UNSUBSCRIBE on the same connection, which
 *   the server applies after it. That connection is the live one, or, while a reconnect re-SUBSCRIBEs
 *   before the connection is handed out, the one being set up.
 */
import { ReconnectingConnection } from './reconnecting.js';
import type { ResolvedRedisOptions } from './options.js';
import type { RespConnection } from './connection.js';
import { respChannels } from '../diagnostics.js';
import { noop, raceAbort } from '../abort.js';
import type { SentinelWatch } from './sentinel.js';
import { RespError } from '../errors.js';

/** What a sharded (Redis Cluster) subscriber tells its owner. */
export interface ShardedHooks {
  /** The node dropped `channel` (its slot moved): subscribe its listeners again on the slot's new node. */
  onDropped(channel: string): void;
}

/**
 * Called with each message published on a subscribed channel (a Buffer when `returnBuffers` is set),
 * and with `null` after a reconnect, when messages may have been missed.
 */
export type MessageListener = (message: string | Buffer | null) => void;

/** Pub/sub on a connection of its own, with one SUBSCRIBE per channel however many listeners it has. */
export class Subscriber {
  readonly #link: ReconnectingConnection;
  readonly #listeners = new Map<string, Set<MessageListener>>();
  /**
   * SUBSCRIBE in flight per channel, so concurrent first subscribers wait for the same confirmation;
   * `cancel` takes it back if they all leave before it is confirmed.
   */
  readonly #subscribing = new Map<string, { confirmed: Promise<unknown>; cancel: AbortController }>();
  /** The connection a reconnect is re-SUBSCRIBing on, before it becomes the link's current one. */
  #handshake: RespConnection | undefined;
  #started: Promise<void> | undefined;
  readonly #timeoutMs: number;
  /** SUBSCRIBE / UNSUBSCRIBE, or for sharded pub/sub SSUBSCRIBE / SUNSUBSCRIBE. */
  readonly #subscribeCmd: string;
  readonly #unsubscribeCmd: string;
  readonly #sharded: ShardedHooks | undefined;

  /**
   * @param sharded Redis Cluster: subscribe with SSUBSCRIBE (the channel lives in a slot, on this node),
   *   and hear of each channel the server drops because its slot moved.
   */
  constructor(opts: ResolvedRedisOptions, sentinel?: SentinelWatch, sharded?: ShardedHooks) {
    this.#timeoutMs = opts.commandTimeoutMs;
    this.#sharded = sharded;
    [this.#subscribeCmd, this.#unsubscribeCmd] = sharded ? ['SSUBSCRIBE', 'SUNSUBSCRIBE'] : ['SUBSCRIBE', 'UNSUBSCRIBE'];
    this.#link = new ReconnectingConnection(opts, {
      sentinel,
      onPush: (channel, message) => this.#deliver(channel, message),
      onDropped: sharded ? (channel) => this.#dropped(channel) : undefined,
      onConnect: (conn, reconnected) => (reconnected ? this.#resubscribe(conn) : Promise.resolve()),
      // The client's command connection asked already, at connect(): a waiter's first SUBSCRIBE need not wait for a PING.
      askForPassword: false,
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
      // Shared by every first-time subscriber of this channel, so no one caller's signal may cancel it:
      // it is cancelled when the last of them leaves (#remove).
      const cancel = new AbortController();
      const confirmed = this.#link.send([this.#subscribeCmd, channel], { timeoutMs: this.#timeoutMs, signal: cancel.signal });
      const pending = { confirmed, cancel };
      this.#subscribing.set(channel, pending);
      const settled = (): void => {
        if (this.#subscribing.get(channel) === pending) this.#subscribing.delete(channel);
      };
      confirmed.then(settled, settled);
    }
    set.add(listener);
    try {
      await raceAbort(this.#subscribing.get(channel)?.confirmed ?? Promise.resolve(), signal);
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

  /** How many channels have at least one listener. */
  get channelCount(): number {
    return this.#listeners.size;
  }

  /** Drops every listener and closes the connection. */
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
    const pending = this.#subscribing.get(channel);
    if (pending) {
      this.#subscribing.delete(channel);
      pending.cancel.abort();
    }
    // Fire and forget. With no connection at all, there is nothing to undo: the SUBSCRIBE was never
    // written, and a reconnect re-subscribes only the channels that still have listeners.
    const conn = this.#link.current ?? this.#handshake;
    conn?.send([this.#unsubscribeCmd, channel], { timeoutMs: this.#timeoutMs }).catch(noop);
  }

  /** Sharded: the server no longer has `channel` here. Its listeners are told; they subscribe again where it went. */
  #dropped(channel: string): void {
    if (!this.#listeners.has(channel)) return; // one we were leaving anyway
    this.#sharded!.onDropped(channel);
  }

  #deliver(channel: string, message: string | Buffer): void {
    if (respChannels.message.hasSubscribers) respChannels.message.publish({ address: this.#link.address, channel, message });
    const set = this.#listeners.get(channel);
    if (set) for (const listener of [...set]) call(listener, message);
  }

  async #resubscribe(conn: RespConnection): Promise<void> {
    this.#handshake = conn; // a listener that leaves from now on is unsubscribed on this connection
    conn.onClose(() => {
      if (this.#handshake === conn) this.#handshake = undefined; // not kept once it is gone
    });
    const channels = [...this.#listeners.keys()];
    const results = await Promise.allSettled(channels.map((ch) => conn.send([this.#subscribeCmd, ch])));
    for (let i = 0; i < results.length; i++) {
      const r = results[i]!;
      if (r.status === 'fulfilled') continue;
      // Sharded: a slot that moved while we were away is answered with MOVED; the channel goes where its slot went.
      if (this.#sharded && r.reason instanceof RespError && (r.reason.prefix === 'MOVED' || r.reason.prefix === 'ASK')) {
        const channel = channels[i]!;
        queueMicrotask(() => this.#dropped(channel));
        continue;
      }
      throw r.reason;
    }
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
export function call(listener: MessageListener, message: string | Buffer | null): void {
  try {
    listener(message);
  } catch (err) {
    queueMicrotask(() => {
      throw err;
    });
  }
}
