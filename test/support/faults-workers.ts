/**
 * The parent's side of the fault suite's worker processes (test/faults/worker.ts).
 *
 * A worker is a separate Node process that holds a lock client of its own. The parent sends it one
 * JSON command per line on stdin and reads JSON events from its stdout. Every worker runs in a process
 * group of its own, so that SIGSTOP, SIGCONT and SIGKILL reach it even when it runs under a wrapper
 * (`faketime` forks: the wrapper's pid is not Node's), and so that nothing it started outlives it.
 *
 * Every wait here has a deadline, and `stopAll()` (call it in after()) kills whatever is left, paused
 * or not. The process 'exit' hook kills leftovers too, if a test run ends abruptly.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const WORKER = path.join(root, 'test', 'faults', 'worker.ts');

/** `unlocked`: a stand-in that grants every acquire at once (fences from a counter): a broken lock, to show the checks fail. */
export type Backend = 'redis' | 'redlock' | 'etcd' | 'unlocked';

export interface WorkerConfig {
  id: string;
  backend: Backend;
  /** Redis URLs (one for redis, N for redlock) or etcd endpoints. */
  urls: string[];
  /**
   * Where the fenced resource and the plain counter live: a Redis URL, or etcd endpoints (with the
   * resource client's own callTimeoutMs, if the default is too long for the scenario).
   */
  resource: { kind: 'redis'; url: string } | { kind: 'etcd'; endpoints: string[]; callTimeoutMs?: number };
  /** RedisClient / EtcdClient options (commandTimeoutMs, callTimeoutMs, …). */
  clientOptions?: Record<string, unknown>;
  /** Locker options (prefix, nodeTimeoutMs, …). */
  lockerOptions?: Record<string, unknown>;
  /**
   * Run a semaphore that admits this many holders per key (RedisSemaphore on `redis`, EtcdSemaphore
   * on `etcd`; other backends refuse it) instead of the backend's mutex. Unset: the mutex.
   */
  limit?: number;
  /**
   * Run a read-write lock (RedisRWLock on `redis`, EtcdRWLock on `etcd`; other backends, and `limit`
   * with it, refuse it) instead of the backend's mutex: `acquire` and the permit loop take its write
   * side unless told to read (`mode: 'read'`; the loop's `writes` share).
   */
  rw?: boolean;
}

/** Runs the worker under Debian's `faketime`, its offset read from `file` (rewrite it to jump the clock). */
export interface FaketimeOptions {
  file: string;
  /** false (the realistic case): only the wall clock is faked; CLOCK_MONOTONIC runs true. */
  fakeMonotonic: boolean;
}

export type WorkerEvent = { type: string; [field: string]: unknown };

const live = new Set<FaultWorker>();
let hookInstalled = false;

export class FaultWorker {
  readonly config: WorkerConfig;
  readonly child: ChildProcess;
  /** Every event so far, in order. */
  readonly events: WorkerEvent[] = [];
  #unread: WorkerEvent[] = [];
  #waiters = new Set<() => void>();
  #listeners = new Set<(event: WorkerEvent) => void>();
  #stderr = '';
  #spawnError: Error | undefined;
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(config: WorkerConfig, faketime?: FaketimeOptions) {
    this.config = config;
    const node = [process.execPath, '--import', 'tsx', WORKER, JSON.stringify(config)];
    const [cmd, ...args] = faketime
      ? [
          'faketime', '-m', ...(faketime.fakeMonotonic ? [] : ['--exclude-monotonic']), '-f', '+0',
          // The wrapper fixes FAKETIME; without it libfaketime reads the offset from the file instead,
          // at most once a second, so the test can make the clock jump while the worker runs.
          'env', '-u', 'FAKETIME', `FAKETIME_TIMESTAMP_FILE=${faketime.file}`, 'FAKETIME_CACHE_DURATION=1',
          ...node,
        ]
      : node;
    this.child = spawn(cmd!, args, { cwd: root, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let buffered = '';
    this.child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (!line.startsWith('{')) continue;
        const event = JSON.parse(line) as WorkerEvent;
        // When the parent read it: comparable with the parent's own stamps even if the worker's clock is faked.
        event.receivedAt = process.hrtime.bigint().toString();
        this.events.push(event);
        this.#unread.push(event);
        for (const wake of [...this.#waiters]) wake();
        for (const listener of [...this.#listeners]) listener(event);
      }
    });
    this.child.stderr!.on('data', (chunk: Buffer) => {
      if (this.#stderr.length < 64 * 1024) this.#stderr += chunk.toString();
    });
    this.child.stdin!.on('error', () => {}); // a killed worker: writes to it fail, and that is fine
    this.exited = new Promise((resolve) => {
      const ended = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (this.#exit) return;
        this.#exit = { code, signal };
        live.delete(this);
        for (const wake of [...this.#waiters]) wake();
        resolve(this.#exit);
      };
      this.child.once('exit', ended);
      // Not started at all (a missing binary: `faketime` comes from Debian's faketime package).
      this.child.once('error', (err) => {
        this.#spawnError = err;
        ended(null, null);
      });
    });
  }

  /** Starts a worker and waits (at most `timeoutMs`) until it has connected and says it is ready. */
  static async start(config: WorkerConfig, opts: { faketime?: FaketimeOptions; timeoutMs?: number } = {}): Promise<FaultWorker> {
    installHook();
    const worker = new FaultWorker(config, opts.faketime);
    live.add(worker);
    try {
      await worker.next('ready', opts.timeoutMs ?? 20_000);
    } catch (err) {
      worker.kill();
      throw err;
    }
    return worker;
  }

  get id(): string {
    return this.config.id;
  }

  /** What the worker wrote to stderr (for failure messages). */
  get stderr(): string {
    return this.#stderr;
  }

  send(command: Record<string, unknown>): void {
    this.child.stdin!.write(`${JSON.stringify(command)}\n`);
  }

  /** Sends a command and waits for the event it answers with. */
  request(command: Record<string, unknown>, answer: string | string[], timeoutMs: number): Promise<WorkerEvent> {
    this.send(command);
    return this.next(answer, timeoutMs);
  }

  /**
   * The next unread event of one of these types (earlier unread events of other types stay unread).
   * Rejects after `timeoutMs`, or when the worker exits first, with its stderr in the message.
   */
  next(types: string | string[], timeoutMs: number): Promise<WorkerEvent> {
    const wanted = typeof types === 'string' ? [types] : types;
    return new Promise((resolve, reject) => {
      const look = (): boolean => {
        const i = this.#unread.findIndex((e) => wanted.includes(e.type));
        if (i !== -1) {
          done();
          resolve(this.#unread.splice(i, 1)[0]!);
          return true;
        }
        const failure = this.#unread.find((e) => e.type === 'fatal');
        if (failure || this.#exit) {
          done();
          const why = this.#spawnError
            ? `could not be started (${this.#spawnError.message}; faketime needs \`apt-get install -y faketime\`)`
            : failure ? `failed: ${String(failure.message)}` : `exited (${this.#exit!.code ?? this.#exit!.signal})`;
          reject(new Error(`worker ${this.id} ${why} before "${wanted.join('|')}"\n${this.#stderr.slice(-2000)}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`worker ${this.id}: no "${wanted.join('|')}" within ${timeoutMs} ms\n${this.#stderr.slice(-2000)}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      const check = (): void => void look();
      if (!look()) this.#waiters.add(check);
    });
  }

  /**
   * Calls `listener` with each event from now on, the moment it is read (for a fault that must hit
   * a worker in a given state). Returns the function that stops it.
   */
  onEvent(listener: (event: WorkerEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves once the worker has exited and every line it wrote has been read (within `timeoutMs`). */
  async drained(timeoutMs = 10_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`worker ${this.id}: not exited and drained within ${timeoutMs} ms`)), timeoutMs);
    });
    const out = this.child.stdout!;
    try {
      await Promise.race([this.exited, late]);
      if (!out.closed) await Promise.race([new Promise((resolve) => out.once('close', resolve)), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Every event of this type so far. */
  all(type: string): WorkerEvent[] {
    return this.events.filter((e) => e.type === type);
  }

  /** Signals the worker's whole process group. */
  signal(sig: NodeJS.Signals): void {
    if (this.#exit) return;
    try {
      process.kill(-this.child.pid!, sig);
    } catch {
      // already gone
    }
  }

  /** SIGSTOP. Returns the CLOCK_MONOTONIC time (ns) at which it was sent. */
  pause(): bigint {
    this.signal('SIGSTOP');
    return process.hrtime.bigint();
  }

  /** SIGCONT. Returns the CLOCK_MONOTONIC time (ns) just before it was sent (the worker may run at once). */
  resume(): bigint {
    const at = process.hrtime.bigint();
    this.signal('SIGCONT');
    return at;
  }

  /** kill -9. Returns the CLOCK_MONOTONIC time (ns) just before the signal. */
  kill(): bigint {
    const at = process.hrtime.bigint();
    this.signal('SIGKILL');
    return at;
  }

  /** Asks the worker to release what it holds and exit; kills it if it has not within `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.#exit) return;
    this.signal('SIGCONT');
    this.send({ op: 'exit' });
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Stops every worker still running (paused ones too). For after() hooks. */
export async function stopAllWorkers(): Promise<void> {
  await Promise.all([...live].map((w) => w.stop(3000)));
}

function installHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  process.on('exit', () => {
    for (const w of live) w.signal('SIGKILL');
  });
}

/** A bigint field of an event (bigints travel as decimal strings). */
export function big(event: WorkerEvent, field: string): bigint {
  const v = event[field];
  if (typeof v !== 'string' && typeof v !== 'number') throw new Error(`event ${event.type} has no ${field}: ${JSON.stringify(event)}`);
  return BigInt(v);
}

/** Milliseconds between two CLOCK_MONOTONIC stamps (ns). */
export function ms(from: bigint, to: bigint): number {
  return Number(to - from) / 1e6;
}

export const sleep = (msDelay: number): Promise<void> => new Promise((r) => setTimeout(r, msDelay));
