/**
 * Lease keep-alives: one bidirectional LeaseKeepAlive stream per client carries the renewals of all
 * its leases. Each answer names its lease, so answers are matched to requests per lease ID, oldest
 * first.
 *
 * The stream does no timing of its own: a Session decides when to renew and reads the answer
 * (its TTL, or 0 when the lease is gone). A renewal that gets no answer in time rejects with
 * TimeoutError and takes the stream down with it, so the next renewal opens a fresh stream on the
 * next endpoint: a paused or partitioned member must not hold every lease hostage.
 */
import { etcdChannels } from '../diagnostics.js';
import { onAbort } from '../abort.js';
import { TimeoutError } from '../errors.js';
import { codec, method } from './codec.js';
import { Status, isInvalidToken, isUnavailable, streamBroke } from './status.js';
import type { RpcDuplex } from './endpoints.js';
import type { Endpoint, Transport } from './transport.js';
import type { LeaseKeepAliveRequest, LeaseKeepAliveResponse } from './types.js';

interface Waiter {
  resolve(res: LeaseKeepAliveResponse): void;
  reject(err: unknown): void;
}

/** The client's one LeaseKeepAlive stream, shared by the renewals of all its leases; a renewal opens it when none is open. */
export class KeepAliveStream {
  readonly #transport: Transport;
  readonly #method = method<LeaseKeepAliveRequest, LeaseKeepAliveResponse>('Lease', 'LeaseKeepAlive');
  readonly #check = codec<LeaseKeepAliveRequest>('etcdserverpb.LeaseKeepAliveRequest');
  /** Renewals sent and not yet answered, per lease ID, oldest first. */
  readonly #waiting = new Map<bigint, Waiter[]>();
  #call: RpcDuplex<LeaseKeepAliveRequest, LeaseKeepAliveResponse> | undefined;
  #endpoint: Endpoint | undefined;
  #token: string | undefined;

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  /**
   * Renews lease `id` once. Resolves with etcd's answer (TTL 0: the lease is gone); rejects with
   * TimeoutError after `timeoutMs`, or with the stream's error if it breaks first.
   */
  keepAlive(id: bigint, timeoutMs: number, signal?: AbortSignal): Promise<LeaseKeepAliveResponse> {
    try {
      this.#check.encode({ ID: id });
    } catch (err) {
      return Promise.reject(err);
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#transport.closed) return Promise.reject(this.#transport.closeSignal.reason);
    const call = this.#call ?? this.#open();
    const endpoint = this.#endpoint!;
    const key = BigInt(id);
    return new Promise<LeaseKeepAliveResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        done();
        reject(new TimeoutError(`LeaseKeepAlive to ${endpoint.url} got no answer within ${timeoutMs} ms`, timeoutMs));
        this.#onBreak(call, { code: Status.UNAVAILABLE, details: `no keep-alive answer within ${timeoutMs} ms` });
      }, timeoutMs);
      const off = onAbort(signal, (reason) => {
        done();
        reject(reason);
      });
      const waiter: Waiter = {
        resolve: (res) => {
          clearTimeout(timer);
          off();
          resolve(res);
        },
        reject: (err) => {
          clearTimeout(timer);
          off();
          reject(err);
        },
      };
      const done = (): void => {
        clearTimeout(timer);
        off();
        const queue = this.#waiting.get(key);
        const i = queue?.indexOf(waiter) ?? -1;
        if (i >= 0) queue!.splice(i, 1);
      };
      let queue = this.#waiting.get(key);
      if (!queue) this.#waiting.set(key, (queue = []));
      queue.push(waiter);
      const message = { ID: key };
      if (etcdChannels.streamSend.hasSubscribers) {
        etcdChannels.streamSend.publish({ stream: this.#method.name, endpoint: endpoint.url, message });
      }
      call.write(message);
    });
  }

  /** Ends the stream; renewals waiting for an answer reject (with ClosedError when the client closes). */
  close(): void {
    const call = this.#call;
    if (!call) return;
    this.#call = undefined;
    call.cancel();
    this.#rejectAll(this.#transport.closeSignal.reason ?? new Error('keep-alive stream closed'));
  }

  #open(): RpcDuplex<LeaseKeepAliveRequest, LeaseKeepAliveResponse> {
    const { call, endpoint } = this.#transport.openStream(this.#method);
    this.#call = call;
    this.#endpoint = endpoint;
    this.#token = this.#transport.token;
    call.on('data', (res: LeaseKeepAliveResponse) => {
      if (etcdChannels.streamReceive.hasSubscribers) {
        etcdChannels.streamReceive.publish({ stream: this.#method.name, endpoint: endpoint.url, message: res });
      }
      const queue = this.#waiting.get(res.ID);
      const waiter = queue?.shift();
      if (queue?.length === 0) this.#waiting.delete(res.ID);
      waiter?.resolve(res);
    });
    call.on('error', (err: { code: number; details: string }) => this.#onBreak(call, err));
    call.on('end', () => this.#onBreak(call, undefined));
    return call;
  }

  #onBreak(call: RpcDuplex<LeaseKeepAliveRequest, LeaseKeepAliveResponse>, failure: { code: number; details: string } | undefined): void {
    if (call !== this.#call) return;
    this.#call = undefined;
    call.cancel();
    const endpoint = this.#endpoint!;
    const error = streamBroke(this.#method.name, endpoint.url, failure);
    if (isUnavailable(error)) this.#transport.failover(endpoint);
    // The next renewal opens a new stream; with a fresh token if this one had expired.
    if (isInvalidToken(error)) this.#transport.reauthenticate(this.#token).catch(() => {});
    this.#rejectAll(error);
  }

  #rejectAll(error: unknown): void {
    const all = [...this.#waiting.values()].flat();
    this.#waiting.clear();
    for (const w of all) w.reject(error);
  }
}
