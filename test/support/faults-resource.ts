/**
 * The protected resource of the fault suite: a value that only a current lock holder may change,
 * guarded by the lock's fence the way docs/safety.md tells users to guard theirs.
 *
 * Rule: the resource remembers the highest fence it has seen. `begin(fence)` (a holder's first access,
 * a read) is accepted only with a fence GREATER than that, and records it; `write(fence, value)` only
 * with a fence not lower than it. So once a newer holder has begun, every access of an older one is
 * refused, however late it arrives (a paused process, a packet stuck in the network).
 *
 * The check and the update are one atomic step on the server: a Lua script on Redis, a Txn on etcd.
 */
import { CompareResult, CompareTarget, type EtcdClient, type RedisClient } from '../../src/index.js';
import { Script } from '../../src/resp/script.js';

export interface Access {
  ok: boolean;
  /** The highest fence the resource had seen before this access. */
  last: bigint;
  /** The value (begin only). */
  value: number;
}

export interface FencedResource {
  begin(fence: bigint): Promise<Access>;
  write(fence: bigint, value: number): Promise<Access>;
  /** The stored fence and value, for the test's final check. */
  state(): Promise<{ fence: bigint; value: number }>;
  reset(): Promise<void>;
}

/**
 * KEYS[1] the resource (a hash: fence, value); ARGV[1] 'begin' | 'write', ARGV[2] fence, ARGV[3] value.
 * Fences are compared as Lua numbers (exact below 2^53) but handed back as the stored text: Lua's
 * tostring keeps 14 digits, and a Redis fence (server µs) has 16.
 */
const ACCESS = new Script(
  `local lastText = redis.call('HGET', KEYS[1], 'fence') or '0'
local last = tonumber(lastText)
local fence = tonumber(ARGV[2])
local value = redis.call('HGET', KEYS[1], 'value') or '0'
if ARGV[1] == 'begin' then
  if fence <= last then return {0, lastText, value} end
  redis.call('HSET', KEYS[1], 'fence', ARGV[2])
  return {1, lastText, value}
end
if fence < last then return {0, lastText, value} end
redis.call('HSET', KEYS[1], 'fence', ARGV[2], 'value', ARGV[3])
return {1, lastText, ARGV[3]}`,
  1,
);

export class RedisResource implements FencedResource {
  readonly #client: RedisClient;
  readonly #key: string;

  constructor(client: RedisClient, key: string) {
    this.#client = client;
    this.#key = key;
  }

  begin(fence: bigint): Promise<Access> {
    return this.#access('begin', fence, 0);
  }

  write(fence: bigint, value: number): Promise<Access> {
    return this.#access('write', fence, value);
  }

  async state(): Promise<{ fence: bigint; value: number }> {
    const [fence, value] = (await this.#client.send(['HMGET', this.#key, 'fence', 'value'])) as Array<string | null>;
    return { fence: BigInt(fence ?? '0'), value: Number(value ?? '0') };
  }

  async reset(): Promise<void> {
    await this.#client.send(['DEL', this.#key]);
  }

  async #access(op: string, fence: bigint, value: number): Promise<Access> {
    const [ok, last, v] = (await this.#client.evalScript(ACCESS, [this.#key], [op, fence.toString(), value])) as [number, string, string];
    return { ok: ok === 1, last: BigInt(last), value: Number(v) };
  }
}

/** Fixed-width decimal: etcd compares values as bytes, so equal widths make byte order numeric order. */
const pad = (n: bigint): string => n.toString().padStart(20, '0');

export class EtcdResource implements FencedResource {
  readonly #client: EtcdClient;
  readonly #fenceKey: string;
  readonly #valueKey: string;

  constructor(client: EtcdClient, name: string) {
    this.#client = client;
    this.#fenceKey = `${name}/fence`;
    this.#valueKey = `${name}/value`;
  }

  async begin(fence: bigint): Promise<Access> {
    // Accepted iff last < fence (a compare on a missing key fails: reset() creates both keys).
    const res = await this.#client.txn({
      compare: [{ key: this.#fenceKey, target: CompareTarget.VALUE, result: CompareResult.LESS, value: pad(fence) }],
      success: [{ request_range: { key: this.#fenceKey } }, { request_put: { key: this.#fenceKey, value: pad(fence) } }, { request_range: { key: this.#valueKey } }],
      failure: [{ request_range: { key: this.#fenceKey } }, { request_range: { key: this.#valueKey } }],
    });
    return this.#answer(res.succeeded, res.responses);
  }

  async write(fence: bigint, value: number): Promise<Access> {
    // Accepted iff last <= fence: with fixed widths, last < pad(fence) + "\0" says exactly that.
    const res = await this.#client.txn({
      compare: [{ key: this.#fenceKey, target: CompareTarget.VALUE, result: CompareResult.LESS, value: `${pad(fence)}\0` }],
      success: [{ request_range: { key: this.#fenceKey } }, { request_put: { key: this.#fenceKey, value: pad(fence) } }, { request_put: { key: this.#valueKey, value: String(value) } }],
      failure: [{ request_range: { key: this.#fenceKey } }, { request_range: { key: this.#valueKey } }],
    });
    const answer = this.#answer(res.succeeded, res.responses);
    return res.succeeded ? { ...answer, value } : answer;
  }

  async state(): Promise<{ fence: bigint; value: number }> {
    const [f, v] = await Promise.all([this.#client.range({ key: this.#fenceKey }), this.#client.range({ key: this.#valueKey })]);
    return { fence: BigInt(f.kvs[0]?.value.toString() || '0'), value: Number(v.kvs[0]?.value.toString() || '0') };
  }

  async reset(): Promise<void> {
    await this.#client.put({ key: this.#fenceKey, value: pad(0n) });
    await this.#client.put({ key: this.#valueKey, value: '0' });
  }

  #answer(ok: boolean, responses: Array<{ response_range: { kvs: Array<{ value: Buffer }> } | null }>): Access {
    const last = responses[0]?.response_range?.kvs[0]?.value.toString() || '0';
    const value = responses[ok ? 2 : 1]?.response_range?.kvs[0]?.value.toString() || '0';
    return { ok, last: BigInt(last), value: Number(value) };
  }
}
