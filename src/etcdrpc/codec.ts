/**
 * Protobuf encoding and decoding of etcd messages, from the hand-written protos in `protos/`.
 * Pure functions over bytes: no sockets here.
 *
 * protobufjs does the varints; this module fixes what it gets wrong for us at the boundary:
 * - 64-bit integers: protobufjs decodes them as long.js objects and, given a bigint to encode,
 *   silently writes 0. Here requests take bigint (or a safe-integer number) and responses give bigint.
 * - bytes: protobufjs treats a string as base64. Here a string is UTF-8, like etcd's own clients.
 * The protos are loaded with `keepCase` so the field names stay the wire's snake_case ones
 * (without it, protobufjs renames them and silently drops fields written in snake_case).
 *
 * The conversion walks only the fields that need it, following a plan computed once per message type.
 */
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { invalidType, outOfRange } from '../errors.js';

const PROTO_DIR = fileURLToPath(new URL('../../protos/', import.meta.url));

let root: protobuf.Root | undefined;

/** The protos, parsed once on first use. */
export function protoRoot(): protobuf.Root {
  if (!root) {
    const r = new protobuf.Root();
    r.loadSync([PROTO_DIR + 'kv.proto', PROTO_DIR + 'rpc.proto'], { keepCase: true });
    r.resolveAll();
    root = r;
  }
  return root;
}

const enum Kind {
  Int64,
  Uint64,
  Bytes,
  Message,
}

interface FieldPlan {
  name: string;
  kind: Kind;
  repeated: boolean;
  plan?: Plan;
}

/** The fields of one message type that need converting (64-bit integers, bytes, sub-messages). */
interface Plan {
  type: protobuf.Type;
  fields: FieldPlan[];
  /** Fields to convert after decoding (bytes are already Buffers there). */
  decodeFields: FieldPlan[];
}

const plans = new Map<protobuf.Type, Plan>();
const EMPTY = Buffer.alloc(0);

function planFor(type: protobuf.Type): Plan {
  let plan = plans.get(type);
  if (plan) return plan;
  // Registered before its fields are filled in: RequestOp and TxnRequest refer to each other.
  plan = { type, fields: [], decodeFields: [] };
  plans.set(type, plan);
  const proto = type.ctor.prototype as Record<string, unknown>;
  // protobufjs's toJSON converts 64-bit fields as if they were long.js objects (and throws on a bigint):
  // a decoded message serializes as its own fields instead (bigints left to the caller's replacer).
  proto.toJSON = function toJSON(this: object) {
    return { ...this };
  };
  for (const field of type.fieldsArray) {
    field.resolve();
    // What a field that was not on the wire reads as (decoded messages keep defaults on the prototype):
    // 0n and an empty Buffer, not protobufjs's Long and [], and nothing at all for an unsent oneof member.
    if (field.partOf) proto[field.name] = field.resolvedType instanceof protobuf.Type ? null : undefined;
    else if (!field.repeated && /^(u?int64|s?fixed64|sint64)$/.test(field.type)) proto[field.name] = 0n;
    else if (!field.repeated && field.type === 'bytes') proto[field.name] = EMPTY;
    const base = { name: field.name, repeated: field.repeated };
    let f: FieldPlan | undefined;
    if (field.resolvedType instanceof protobuf.Type) {
      f = { ...base, kind: Kind.Message, plan: planFor(field.resolvedType) };
    } else if (field.type === 'int64' || field.type === 'sint64' || field.type === 'sfixed64') {
      f = { ...base, kind: Kind.Int64 };
    } else if (field.type === 'uint64' || field.type === 'fixed64') {
      f = { ...base, kind: Kind.Uint64 };
    } else if (field.type === 'bytes') {
      f = { ...base, kind: Kind.Bytes };
    }
    if (!f) continue;
    plan.fields.push(f);
    if (f.kind !== Kind.Bytes) plan.decodeFields.push(f);
  }
  return plan;
}

const MIN_INT64 = -(2n ** 63n);
const MAX_UINT64 = 2n ** 64n - 1n;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** A 64-bit integer as protobufjs's writer takes it: a number when exact, else its two 32-bit halves. */
function longToWire(value: unknown, name: string): number | { low: number; high: number } {
  if (typeof value === 'bigint') {
    if (value >= -MAX_SAFE && value <= MAX_SAFE) return Number(value);
    if (value < MIN_INT64 || value > MAX_UINT64) throw outOfRange(`${name} does not fit in 64 bits: ${value}`);
    return { low: Number(BigInt.asIntN(32, value)), high: Number(BigInt.asIntN(32, value >> 32n)) };
  }
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
  throw invalidType(`${name} must be a bigint (or a safe integer), got ${typeof value === 'number' ? value : typeof value}`);
}

/** protobufjs's decoded 64-bit value (a long.js object, or a number without long.js) as a bigint. */
function longFromWire(value: { low: number; high: number } | number, unsigned: boolean): bigint {
  if (typeof value === 'number') return BigInt(value);
  const { low, high } = value;
  if (high === 0) return BigInt(low >>> 0);
  const both = (BigInt(high) << 32n) | BigInt(low >>> 0);
  return unsigned ? BigInt.asUintN(64, both) : BigInt.asIntN(64, both);
}

function bytesToWire(value: unknown, name: string): Uint8Array {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof Uint8Array) return value;
  throw invalidType(`${name} must be a string or bytes, got ${typeof value}`);
}

function convertOne(f: FieldPlan, value: unknown): unknown {
  switch (f.kind) {
    case Kind.Int64:
    case Kind.Uint64:
      return longToWire(value, f.name);
    case Kind.Bytes:
      return bytesToWire(value, f.name);
    case Kind.Message:
      if (typeof value !== 'object') throw invalidType(`${f.name} must be an object`);
      return toWire(value as Record<string, unknown>, f.plan!);
  }
}

/** A shallow copy of `msg` with every field protobufjs would mis-encode converted. */
function toWire(msg: Record<string, unknown>, plan: Plan): Record<string, unknown> {
  if (msg === null || typeof msg !== 'object') throw invalidType(`${plan.type.name} must be an object`);
  let out: Record<string, unknown> | undefined;
  for (const f of plan.fields) {
    // Own fields only: a decoded message keeps its defaults on the prototype, and they are not sent.
    if (!Object.hasOwn(msg, f.name)) continue;
    const value = msg[f.name];
    if (value === undefined || value === null) continue;
    out ??= { ...msg };
    if (f.repeated) {
      if (!Array.isArray(value)) throw invalidType(`${f.name} must be an array`);
      out[f.name] = value.map((v) => convertOne(f, v));
    } else {
      out[f.name] = convertOne(f, value);
    }
  }
  return out ?? msg;
}

/** In place: every 64-bit integer of a freshly decoded message (and its sub-messages) becomes a bigint. */
function fromWire(msg: Record<string, unknown>, plan: Plan): void {
  for (const f of plan.decodeFields) {
    if (!Object.hasOwn(msg, f.name)) continue; // not on the wire: the prototype's default is right
    const value = msg[f.name];
    if (value === null || value === undefined) continue;
    if (f.kind === Kind.Message) {
      if (f.repeated) for (const m of value as Array<Record<string, unknown>>) fromWire(m, f.plan!);
      else fromWire(value as Record<string, unknown>, f.plan!);
    } else if (f.repeated) {
      msg[f.name] = (value as Array<{ low: number; high: number }>).map((v) => longFromWire(v, f.kind === Kind.Uint64));
    } else {
      msg[f.name] = longFromWire(value as { low: number; high: number }, f.kind === Kind.Uint64);
    }
  }
}

/** Encoder and decoder of one message type. */
export interface Codec<Req, Res> {
  /** The message type's full name, e.g. "etcdserverpb.RangeRequest". */
  readonly name: string;
  /** The message's protobuf bytes; throws TypeError for a field of the wrong type, RangeError for an integer that does not fit in 64 bits. */
  encode(message: Req): Buffer;
  /** The message in `bytes`, with 64-bit integers as bigint and bytes as Buffers. */
  decode(bytes: Uint8Array): Res;
}

const codecs = new Map<string, Codec<unknown, unknown>>();

/**
 * The codec of one message type, e.g. `codec('etcdserverpb.RangeRequest')`. Encoding checks the
 * types of the fields it converts (TypeError/RangeError for a bad key or a non-integer revision);
 * decoding a malformed buffer throws protobufjs's error.
 */
export function codec<Req, Res = Req>(typeName: string): Codec<Req, Res> {
  let c = codecs.get(typeName);
  if (!c) {
    const type = protoRoot().lookupType(typeName);
    const plan = planFor(type);
    c = {
      name: typeName,
      encode: (message) => {
        const bytes = type.encode(toWire(message as Record<string, unknown>, plan)).finish();
        return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      },
      decode: (bytes) => {
        const message = type.decode(bytes) as unknown as Record<string, unknown>;
        fromWire(message, plan);
        return message;
      },
    };
    codecs.set(typeName, c);
  }
  return c as Codec<Req, Res>;
}

/** What a call needs to know about one RPC method: its path, its name and its codecs. */
export interface MethodInfo<Req, Res> {
  /** The HTTP/2 path, e.g. "/etcdserverpb.KV/Range". */
  path: string;
  /** "KV.Range": for diagnostics and error messages. */
  name: string;
  /** Codec of the request message. */
  request: Codec<Req, Req>;
  /** Codec of the response message. */
  response: Codec<Res, Res>;
}

/** A method of one of the protos' services, with the codecs of its request and response. */
export function method<Req, Res>(service: string, name: string): MethodInfo<Req, Res> {
  const svc = protoRoot().lookupService(`etcdserverpb.${service}`);
  const m = svc.methods[name];
  if (!m) throw new Error(`etcdserverpb.${service} has no method ${name}`);
  m.resolve();
  return {
    path: `/etcdserverpb.${service}/${name}`,
    name: `${service}.${name}`,
    request: codec<Req>(m.resolvedRequestType!.fullName.slice(1)),
    response: codec<Res>(m.resolvedResponseType!.fullName.slice(1)),
  };
}

/** The end of the range that holds every key starting with `prefix` (etcd's "prefix end"). */
export function prefixEnd(prefix: Uint8Array): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  // Every byte is 0xff (or the prefix is empty): "every key from here on".
  return Buffer.from([0]);
}
