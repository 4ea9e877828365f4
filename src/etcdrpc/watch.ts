/**
 * Watches: one bidirectional Watch stream per client carries all of them.
 *
 * Each watch gets an ID chosen here (WatchCreateRequest.watch_id, etcd 3.4+). etcd answers creates
 * in the order it received them, so "created" answers are matched to a FIFO of pending creates
 * (a create refused by auth comes back with watch_id -1, so the ID alone would not do).
 *
 * After the stream breaks (member down, leader lost: the stream carries `hasleader`), it is opened
 * again on the next endpoint and every watch is created again from the revision after the last one
 * it delivered, so no event is lost or repeated. A watch whose next revision has been compacted away
 * ends with WatchCompactedError: the caller must re-read, not assume nothing happened.
 *
 * A member that stops answering (paused, partitioned) leaves a stream open and silent; a progress
 * request every 3 s notices (within two rounds), and the stream moves to another endpoint.
 *
 * One stream at a time: #open() does nothing while a stream is open, a reopen is scheduled, or an
 * authentication it waits for is in flight. The transport has no token while it authenticates
 * (for us or for any call), and a stream opened then carries none: etcd would refuse every create
 * on it for good ("user name is empty"). So a stream is opened only once a token is there.
 */
import { etcdChannels } from '../diagnostics.js';
import { backoffMs } from '../abort.js';
import { EtcdError, WatchCompactedError, invalidType } from '../errors.js';
import { codec, method } from './codec.js';
import { Status, isInvalidToken, isUnavailable, streamBroke } from './status.js';
import type { RpcDuplex } from './endpoints.js';
import type { Endpoint, Transport } from './transport.js';
import type { Bytes, Event, Int64, ResponseHeader, WatchCreateRequest, WatchFilter, WatchRequest, WatchResponse } from './types.js';

/** Options of {@link EtcdClient.watch}: which keys, from which revision, and what each event carries. */
export interface WatchOptions {
  /**
   * Watch [key, range_end) instead of the key alone.
   * @defaultValue none: only `key` itself
   */
  range_end?: Bytes;
  /**
   * First revision to report. Starting at or below the current revision makes etcd deliver from a
   * 100 ms loop: to wait for a change after a read at revision R, start at R + 1.
   * @defaultValue `0`: the revision after the one current when the watch is created
   */
  start_revision?: Int64;
  /**
   * Give each event its `prev_kv`: the key as it was before the change.
   * @defaultValue `false`
   */
  prev_kv?: boolean;
  /**
   * Kinds of event etcd is to leave out, values of {@link WatchFilter}.
   * @defaultValue `[]`: every event is delivered
   */
  filters?: Array<(typeof WatchFilter)[keyof typeof WatchFilter]>;
  /**
   * Ask etcd for periodic event-less answers while the watch is idle (at an interval set on the
   * server). No handler is called for them; they move forward the revision a re-created watch
   * starts from.
   * @defaultValue `false`
   */
  progress_notify?: boolean;
}

/** The callbacks of a watch. A handler that throws does not stop the watch: its error is rethrown as uncaught. */
export interface WatchHandlers {
  /** Events in revision order. `header.revision` is the store's revision when they were sent. */
  onEvents(events: Event[], header: ResponseHeader): void;
  /**
   * The watch ended on its own: WatchCompactedError, a refused create (permission), the client
   * closing. Never called after cancel().
   */
  onError(error: Error): void;
  /** The watch is in place on the server (again, after a stream break). */
  onCreated?(header: ResponseHeader): void;
}

interface WatchState {
  readonly id: number;
  readonly request: WatchCreateRequest;
  readonly handlers: WatchHandlers;
  /** Where a re-created watch starts: the revision after the last one delivered (0: not known yet). */
  nextRev: bigint;
  created: boolean;
  canceled: boolean;
}

/** A watch in place. cancel() is synchronous for the caller: no event is delivered after it. */
export class Watcher {
  readonly #stream: WatchStream;
  readonly #state: WatchState;
  /** @internal Made by {@link WatchStream.watch} (and EtcdClient.watch), never by hand. */
  constructor(stream: WatchStream, state: WatchState) {
    this.#stream = stream;
    this.#state = state;
  }
  /** The watch's ID on the Watch stream (its `watch_id`), unique within the client. */
  get id(): number {
    return this.#state.id;
  }
  /** Stops the watch: no handler is called once this returns. Calling it again does nothing. */
  cancel(): void {
    this.#stream.cancel(this.#state);
  }
}

const PROBE_MS = 3_000;

/** Runs a caller's handler; if it throws, the error surfaces as uncaught, and the stream carries on. */
function deliver(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    process.nextTick(() => {
      throw err;
    });
  }
}

/**
 * A cancel_reason as an EtcdError. etcd writes some reasons as a whole Go status string
 * ("rpc error: code = PermissionDenied desc = etcdserver: permission denied"): keep etcd's message.
 */
function canceled(reason: string): EtcdError {
  const details = reason.replace(/^rpc error: code = \w+ desc = /, '') || 'etcdserver: watch canceled';
  let code: number = Status.UNKNOWN;
  if (/permission denied/.test(details)) code = Status.PERMISSION_DENIED;
  else if (/invalid auth token/.test(details)) code = Status.UNAUTHENTICATED;
  else if (/user name is empty|duplicate/.test(details)) code = Status.INVALID_ARGUMENT;
  return new EtcdError(code, details, { method: 'Watch.Watch' });
}

/**
 * The client's one Watch stream, shared by all its watches ({@link EtcdClient.watches}). It is opened
 * when the first watch starts; after a break it is opened again on the next endpoint and every
 * watch is created again from where it left off.
 */
export class WatchStream {
  readonly #transport: Transport;
  readonly #method = method<WatchRequest, WatchResponse>('Watch', 'Watch');
  readonly #checkCreate = codec<WatchCreateRequest>('etcdserverpb.WatchCreateRequest');
  readonly #watchers = new Map<number, WatchState>();
  #nextId = 1;
  #call: RpcDuplex<WatchRequest, WatchResponse> | undefined;
  #endpoint: Endpoint | undefined;
  #token: string | undefined;
  /** Sent creates not yet answered, oldest first. */
  #pending: WatchState[] = [];
  #failures = 0;
  #reopenTimer: NodeJS.Timeout | undefined;
  /** Waiting for a token before opening: the stream counts as being opened. */
  #authenticating = false;
  #probeTimer: NodeJS.Timeout | undefined;
  #heard = false;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  /** Starts a watch. Bad arguments throw at once. */
  watch(key: Bytes, opts: WatchOptions, handlers: WatchHandlers): Watcher {
    if (typeof handlers?.onEvents !== 'function' || typeof handlers.onError !== 'function') {
      throw invalidType('watch() needs onEvents and onError handlers');
    }
    const request: WatchCreateRequest = {
      key: typeof key === 'string' ? Buffer.from(key) : key,
      range_end: opts.range_end,
      prev_kv: opts.prev_kv,
      filters: opts.filters,
      progress_notify: opts.progress_notify,
    };
    const start = opts.start_revision ?? 0n;
    this.#checkCreate.encode({ ...request, start_revision: start }); // throws on a bad key or revision
    if (this.#transport.closed) throw this.#transport.closeSignal.reason;
    const state: WatchState = { id: this.#nextId++, request, handlers, nextRev: BigInt(start), created: false, canceled: false };
    this.#watchers.set(state.id, state);
    if (this.#call) this.#sendCreate(state);
    else this.#open();
    return new Watcher(this, state);
  }

  /** @internal Ends the watch with this state; {@link Watcher.cancel} calls it. */
  cancel(state: WatchState): void {
    if (state.canceled) return;
    state.canceled = true;
    this.#watchers.delete(state.id);
    // Not created yet: the cancel goes out when its "created" arrives (the server knows no such ID yet).
    if (this.#call && state.created) this.#write({ cancel_request: { watch_id: state.id } });
  }

  /** Ends the stream; every open watch gets onError (with ClosedError when the client closes). {@link EtcdClient.close} calls it. */
  close(): void {
    clearTimeout(this.#reopenTimer);
    this.#stopProbe();
    const call = this.#call;
    this.#call = undefined;
    call?.cancel();
    const error = this.#transport.closeSignal.reason ?? new Error('watch stream closed');
    const all = [...this.#watchers.values()];
    this.#watchers.clear();
    for (const w of all) {
      w.canceled = true;
      deliver(() => w.handlers.onError(error));
    }
  }

  /** Opens the stream (after getting a token, if the transport has none), unless it is open or being opened. */
  #open(): void {
    if (this.#call || this.#authenticating || this.#reopenTimer || this.#transport.closed || this.#watchers.size === 0) return;
    if (this.#transport.token === undefined) this.#authenticateThenOpen(undefined);
    else this.#start();
  }

  /**
   * Gets a token in place of `stale` (joining an authentication in flight; at once without credentials),
   * then opens the stream. Watches added meanwhile are created on it with the others.
   */
  #authenticateThenOpen(stale: string | undefined): void {
    this.#authenticating = true;
    this.#transport.reauthenticate(stale).then(
      () => {
        this.#authenticating = false;
        this.#start();
      },
      (err: unknown) => {
        this.#authenticating = false;
        this.#failAll(err);
      },
    );
  }

  #start(): void {
    if (this.#call || this.#transport.closed || this.#watchers.size === 0) return;
    const { call, endpoint } = this.#transport.openStream(this.#method);
    this.#call = call;
    this.#endpoint = endpoint;
    this.#token = this.#transport.token;
    this.#pending = [];
    call.on('data', (res: WatchResponse) => this.#onData(call, res));
    call.on('error', (err: { code: number; details: string }) => this.#onBreak(call, err));
    call.on('end', () => this.#onBreak(call, undefined));
    for (const w of this.#watchers.values()) this.#sendCreate(w);
    this.#startProbe(call);
  }

  #write(message: WatchRequest): void {
    if (etcdChannels.streamSend.hasSubscribers) {
      etcdChannels.streamSend.publish({ stream: this.#method.name, endpoint: this.#endpoint?.url, message });
    }
    this.#call!.write(message);
  }

  #sendCreate(w: WatchState): void {
    w.created = false;
    this.#pending.push(w);
    this.#write({ create_request: { ...w.request, watch_id: w.id, start_revision: w.nextRev } });
  }

  #onData(call: RpcDuplex<WatchRequest, WatchResponse>, res: WatchResponse): void {
    if (call !== this.#call) return;
    this.#heard = true;
    this.#failures = 0;
    if (etcdChannels.streamReceive.hasSubscribers) {
      etcdChannels.streamReceive.publish({ stream: this.#method.name, endpoint: this.#endpoint?.url, message: res });
    }
    if (res.created) {
      const w = this.#pending.shift();
      if (!w) return;
      if (res.canceled) {
        const error = canceled(res.cancel_reason);
        if (isInvalidToken(error)) {
          // The token this stream was opened with has expired: get a new one and start over.
          this.#onBreak(call, { code: error.grpcCode, details: error.details });
          return;
        }
        this.#fail(w, error);
        return;
      }
      w.created = true;
      if (w.canceled) {
        this.#write({ cancel_request: { watch_id: w.id } });
        return;
      }
      if (w.nextRev === 0n) w.nextRev = res.header.revision + 1n;
      if (w.handlers.onCreated) deliver(() => w.handlers.onCreated!(res.header));
      return;
    }
    const w = this.#watchers.get(Number(res.watch_id));
    if (!w) return; // canceled here already, or the answer to a progress request
    if (res.canceled) {
      this.#fail(w, res.compact_revision > 0n ? new WatchCompactedError(res.compact_revision) : canceled(res.cancel_reason));
      return;
    }
    const events = res.events;
    if (events.length > 0) {
      w.nextRev = events[events.length - 1]!.kv!.mod_revision + 1n;
      deliver(() => w.handlers.onEvents(events, res.header));
    } else if (w.request.progress_notify && res.header.revision + 1n > w.nextRev) {
      // A progress notification: everything up to header.revision has been delivered.
      w.nextRev = res.header.revision + 1n;
    }
  }

  #fail(w: WatchState, error: Error): void {
    if (w.canceled) return;
    w.canceled = true;
    this.#watchers.delete(w.id);
    deliver(() => w.handlers.onError(error));
  }

  #onBreak(call: RpcDuplex<WatchRequest, WatchResponse>, failure: { code: number; details: string } | undefined): void {
    if (call !== this.#call) return;
    this.#call = undefined;
    this.#stopProbe();
    call.cancel();
    const endpoint = this.#endpoint!;
    const error = streamBroke(this.#method.name, endpoint.url, failure);
    for (const w of this.#watchers.values()) w.created = false;
    this.#pending = [];
    if (this.#transport.closed) return;
    if (isInvalidToken(error)) {
      this.#authenticateThenOpen(this.#token);
      return;
    }
    const code = failure?.code;
    if (failure && !isUnavailable(error) && code !== Status.INTERNAL && code !== Status.CANCELLED && code !== Status.UNKNOWN) {
      this.#failAll(error);
      return;
    }
    this.#transport.failover(endpoint);
    const delay = backoffMs(this.#failures++, { jitterMs: 25 });
    this.#reopenTimer = setTimeout(() => {
      this.#reopenTimer = undefined;
      this.#open();
    }, this.#failures === 1 ? 0 : delay);
    this.#reopenTimer.unref?.();
  }

  #failAll(error: unknown): void {
    for (const w of [...this.#watchers.values()]) this.#fail(w, error instanceof Error ? error : new Error(String(error)));
  }

  /** A silent stream is a dead one: ask for progress, and move on if nothing came back in time. */
  #startProbe(call: RpcDuplex<WatchRequest, WatchResponse>): void {
    this.#heard = true;
    this.#probeTimer = setInterval(() => {
      if (call !== this.#call) return;
      if (!this.#heard) {
        this.#onBreak(call, { code: Status.UNAVAILABLE, details: `no answer on the Watch stream for ${PROBE_MS} ms` });
        return;
      }
      this.#heard = false;
      if (this.#watchers.size > 0) this.#write({ progress_request: {} });
      else this.#heard = true;
    }, PROBE_MS);
    this.#probeTimer.unref?.();
  }

  #stopProbe(): void {
    clearInterval(this.#probeTimer);
    this.#probeTimer = undefined;
  }
}
