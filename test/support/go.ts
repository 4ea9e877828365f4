/**
 * Go programs for interop tests: etcd's own client recipes, run next to wirelock's against the same etcd.
 *
 *   const go = await startGoElection({ endpoints: etcd.endpoints, name: 'e' });   // test/go/election
 *   go.send('campaign a');
 *   await go.next(/^leader /);                                                    // it leads
 *   await go.stop();
 *
 * `startGoRWMutex({ endpoints, name })` runs test/go/rwmutex (recipe.RWMutex) the same way.
 *
 * The programs build in GOPATH mode against Debian's etcd 3.4 sources (golang-etcd-server-dev), so no
 * module download and no network: missing Go or sources is an Error saying what to install, and the
 * test fails. The build cache lives in the OS temp dir and outlives the process, so only the first run
 * on a machine pays for compiling grpc and clientv3; each process still builds each program once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { goBuild } from '../../bench/lib/go-build.js';

const builds = new Map<string, Promise<string>>();

/**
 * Builds `test/go/<dir>` once per process and resolves with the binary's path (in a temp dir removed
 * at exit). A failed build stays failed for the process: the next test gets the same error at once.
 */
export function buildGoProgram(dir: string): Promise<string> {
  let build = builds.get(dir);
  if (!build) {
    build = compile(dir);
    builds.set(dir, build);
  }
  return build;
}

function compile(dir: string): Promise<string> {
  return goBuild(fileURLToPath(new URL(`../go/${dir}`, import.meta.url)), `test/go/${dir}`);
}

/** How to start a Go program: which etcd, which name, which session TTL. */
export interface GoProgramOptions {
  /** etcd client URLs (`http://127.0.0.1:P`) or `host:port`s. */
  endpoints: string[];
  /** The election's or lock's name: the key prefix, without the trailing `/`. */
  name: string;
  /** Session TTL in seconds. Default 5 (the program's default). */
  ttl?: number;
}

export interface NextOptions {
  /** Default 10000. */
  timeoutMs?: number;
}

type Match = RegExp | ((line: string) => boolean);

/** The first line every program prints, once its session exists. */
const READY = /^ready [0-9a-f]+$/;

/** The flags every program takes. */
function programArgs(opts: GoProgramOptions): string[] {
  return ['-endpoints', opts.endpoints.join(','), '-name', opts.name, '-ttl', String(opts.ttl ?? 5)];
}

/** Candidates still running, killed if the test process exits without stopping them. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/**
 * A running Go program behind a line protocol (documented in its main.go): commands on stdin, replies
 * and events both as stdout lines, which `next` takes in order.
 */
export class GoProgram {
  /** What the program is, for error messages (`go election "e"`). */
  readonly label: string;
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  readonly #lines: string[] = [];
  /** Lines no `next` has taken yet. */
  readonly #unread: string[] = [];
  readonly #waiters: Array<{ match: Match; resolve(line: string): void }> = [];
  #stderr = '';
  #exit: string | null = null;

  protected constructor(child: ChildProcess, label: string) {
    this.#child = child;
    this.label = label;
    child.stderr!.on('data', (chunk: Buffer) => {
      if (this.#stderr.length < 64 * 1024) this.#stderr += chunk.toString();
    });
    createInterface({ input: child.stdout! }).on('line', (line) => this.#take(line));
    // A write after the program died is reported by `send` and the waits, not as an unhandled EPIPE.
    child.stdin!.on('error', () => {});
    this.#exited = new Promise((resolve) => {
      child.once('error', (err) => {
        this.#exit = `failed to start (${err.message})`;
        resolve();
      });
      // 'close', not 'exit': by then every stdout line has been read, so none is missed.
      child.once('close', (code, signal) => {
        this.#exit = `exited (${code ?? signal})`;
        resolve();
      });
    });
    live.add(child);
    void this.#exited.then(() => live.delete(child));
  }

  /**
   * Builds test/go/<dir> if this process has not yet, starts it with `args` through `make`, and
   * resolves with it and its `ready <lease hex>` line (the program is killed if none comes).
   */
  protected static async launch<P extends GoProgram>(dir: string, args: string[], make: (child: ChildProcess) => P): Promise<[P, string]> {
    const binary = await buildGoProgram(dir);
    const program = make(spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] }));
    try {
      return [program, await program.next(READY)];
    } catch (err) {
      program.kill('SIGKILL');
      throw err;
    }
  }

  /** Writes one command line. Throws if the program has exited. */
  send(cmd: string): void {
    if (this.#exit !== null) throw this.#error(`cannot send ${JSON.stringify(cmd)}: it ${this.#exit}`);
    this.#child.stdin!.write(`${cmd}\n`);
  }

  /**
   * Takes the oldest line not taken yet that matches (any line when `match` is omitted); lines that do
   * not match stay for later calls. Rejects, with the program's stderr, after the timeout or once the
   * program has exited without printing such a line.
   */
  next(match: Match = () => true, opts: NextOptions = {}): Promise<string> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const found = this.#unread.findIndex((line) => matches(match, line));
    if (found >= 0) return Promise.resolve(this.#unread.splice(found, 1)[0]!);
    if (this.#exit !== null) return Promise.reject(this.#error(`no line matching ${describe(match)} before it ${this.#exit}`));
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (result: string | Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        if (typeof result === 'string') resolve(result);
        else reject(result);
      };
      const waiter = { match, resolve: settle };
      const timer = setTimeout(() => settle(this.#error(`no line matching ${describe(match)} within ${timeoutMs} ms`)), timeoutMs);
      void this.#exited.then(() => settle(this.#error(`no line matching ${describe(match)} before it ${this.#exit}`)));
      this.#waiters.push(waiter);
    });
  }

  /** Every stdout line so far, taken or not. */
  lines(): string[] {
    return [...this.#lines];
  }

  /** Sends `signal` (default SIGKILL: the lease is left to expire), e.g. SIGSTOP to freeze keep-alives. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.#exit === null) this.#child.kill(signal);
  }

  /**
   * Sends `close` (the session's lease is revoked) and waits for the exit; SIGKILLs it after graceMs.
   * Idempotent.
   */
  async stop(graceMs = 5000): Promise<void> {
    if (this.#exit !== null) return;
    this.#child.kill('SIGCONT'); // a paused program reads no commands
    this.send('close');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), graceMs);
    await this.#exited;
    clearTimeout(timer);
  }

  #take(line: string): void {
    this.#lines.push(line);
    const waiter = this.#waiters.find((w) => matches(w.match, line));
    if (waiter) waiter.resolve(line);
    else this.#unread.push(line);
  }

  #error(message: string): Error {
    const stdout = this.#lines.slice(-20).join('\n') || '(none)';
    const stderr = this.#stderr.slice(-4000) || '(none)';
    return new Error(`${this.label}: ${message}\nstdout so far:\n${stdout}\nstderr so far:\n${stderr}`);
  }
}

/** A running `test/go/election`: etcd's concurrency.Election behind the line protocol of test/go/election/main.go. */
export class GoElection extends GoProgram {
  readonly name: string;
  #lease = '';

  private constructor(child: ChildProcess, name: string) {
    super(child, `go election ${JSON.stringify(name)}`);
    this.name = name;
  }

  /** Builds the program if this process has not yet, starts it, and resolves once its session exists. */
  static async start(opts: GoProgramOptions): Promise<GoElection> {
    const [candidate, ready] = await GoProgram.launch('election', programArgs(opts), (child) => new GoElection(child, opts.name));
    candidate.#lease = ready.slice('ready '.length);
    return candidate;
  }

  /** The session's lease in hex, as it ends the candidate's key (`<name>/<lease>`). */
  get lease(): string {
    return this.#lease;
  }
}

/**
 * A running `test/go/rwmutex`: etcd's contrib/recipes RWMutex behind the line protocol of
 * test/go/rwmutex/main.go (`rlock` / `lock` answer `rlocked|locked <key> <createRevision>` once held).
 */
export class GoRWMutex extends GoProgram {
  /** The lock's name: its keys are `<name>/read/<ns>` and `<name>/write/<ns>`. */
  readonly name: string;

  private constructor(child: ChildProcess, name: string) {
    super(child, `go rwmutex ${JSON.stringify(name)}`);
    this.name = name;
  }

  /** Builds the program if this process has not yet, starts it, and resolves once its session exists. */
  static async start(opts: GoProgramOptions): Promise<GoRWMutex> {
    const [rw] = await GoProgram.launch('rwmutex', programArgs(opts), (child) => new GoRWMutex(child, opts.name));
    return rw;
  }
}

export function startGoRWMutex(opts: GoProgramOptions): Promise<GoRWMutex> {
  return GoRWMutex.start(opts);
}

export function startGoElection(opts: GoProgramOptions): Promise<GoElection> {
  return GoElection.start(opts);
}

function matches(match: Match, line: string): boolean {
  return typeof match === 'function' ? match(line) : match.test(line);
}

function describe(match: Match): string {
  return match instanceof RegExp ? String(match) : `(${String(match)})`;
}
