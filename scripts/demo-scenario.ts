/**
 * The demo's moving parts: the worker pool, the fenced counter the workers protect, and a scenario
 * run (workers contending while a script of faults plays: kill a server, freeze a holder).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { FromWorker, HoldReport, ScenarioConfig, ToWorker } from './demo-protocol.js';
import { metricsHub } from './demo-metrics.js';

export interface DemoEvent {
  /** ms since the scenario started. */
  t: number;
  /**
   * A fault that has a beginning and an end is marked twice: 'kill' then 'restart', 'failover' (asked
   * for) then 'switched' (the new master serves), 'migrate' (a slot's move begins) then 'moved' (every
   * node agrees on its new owner).
   */
  kind: 'kill' | 'restart' | 'pause' | 'takeover' | 'resume' | 'refused' | 'resign' | 'failover' | 'switched' | 'migrate' | 'moved';
  label: string;
  /** A few words for the timeline. */
  short: string;
  worker?: number;
}

/** A hold as the parent keeps it: stamps in ms since the scenario started. */
export interface HoldRecord {
  worker: number;
  fence: bigint;
  requested: number;
  enter: number;
  /** When the holder was done (after its write). */
  exit: number;
  /** When its lease was last guaranteed until: a frozen holder's exit comes long after this. */
  validUntil: number;
  write: 'ok' | 'refused';
  lost?: string;
}

/**
 * The protected resource: a counter (kept in a file) that remembers the highest fence it has seen,
 * on reads and writes alike, and refuses anything with a lower one. Checking reads too matters: a
 * stale holder's write must lose even when the new holder has read but not yet written.
 */
export class FencedCounter {
  value = 0;
  highest = -1n;
  /** Who used the highest fence first. */
  highestBy = -1;
  accepted = 0;
  refused: Array<{ worker: number; fence: bigint; highest: bigint; op: 'read' | 'write' }> = [];
  readonly #file: string;

  constructor(file: string) {
    this.#file = file;
    this.#save();
  }

  read(worker: number, fence: bigint): boolean {
    if (fence < this.highest) return this.#refuse(worker, fence, 'read');
    if (fence > this.highest) this.highestBy = worker;
    this.highest = fence;
    return true;
  }

  write(worker: number, fence: bigint, value: number): boolean {
    if (fence < this.highest) return this.#refuse(worker, fence, 'write');
    if (fence > this.highest) this.highestBy = worker;
    this.highest = fence;
    this.value = value;
    this.accepted++;
    this.#save();
    return true;
  }

  #refuse(worker: number, fence: bigint, op: 'read' | 'write'): false {
    this.refused.push({ worker, fence, highest: this.highest, op });
    return false;
  }

  #save(): void {
    writeFileSync(this.#file, `${JSON.stringify({ value: this.value, fence: String(this.highest) })}\n`);
  }
}

/** Worker processes, forked once and reused for every backend (each costs a second of start-up). */
export class WorkerPool {
  readonly children: ChildProcess[];
  #onMessage: (worker: number, msg: FromWorker) => void = () => {};
  readonly #exited: Array<Promise<void>>;

  constructor(script: string, size: number) {
    this.children = Array.from({ length: size }, (_, i) => fork(script, [String(i)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    this.#exited = this.children.map(
      (c, i) =>
        new Promise<void>((resolve, reject) =>
          c.once('exit', (code, signal) => (code === 0 || signal === 'SIGTERM' ? resolve() : reject(new Error(`worker ${i} exited with ${code ?? signal}`)))),
        ),
    );
    // Until someone waits on them: an early crash must not be an unhandled rejection.
    this.#exited.forEach((p) => p.catch(() => {}));
    this.children.forEach((c, i) => c.on('message', (m: FromWorker) => this.#onMessage(i, m)));
    this.children.forEach((c, i) => metricsHub.track(c, `w${i}`));
  }

  listen(fn: (worker: number, msg: FromWorker) => void): void {
    this.#onMessage = fn;
  }

  send(worker: number, msg: ToWorker): void {
    this.children[worker]!.send(msg);
  }

  broadcast(msg: ToWorker): void {
    this.children.forEach((c) => c.send(msg));
  }

  /** Resolves once every worker sent `type`; rejects when one dies first, or after timeoutMs. */
  all(type: FromWorker['type'], timeoutMs = 30_000): Promise<void> {
    const seen = new Set<number>();
    return new Promise((resolve, reject) => {
      const prev = this.#onMessage;
      const timer = setTimeout(() => fail(new Error(`workers ${this.children.map((_, w) => w).filter((w) => !seen.has(w)).join(', ')} did not say "${type}" within ${timeoutMs} ms`)), timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        this.#onMessage = prev;
        reject(err);
      };
      this.#onMessage = (w, m) => {
        prev(w, m);
        if (m.type === type && (seen.add(w), seen.size === this.children.length)) {
          clearTimeout(timer);
          this.#onMessage = prev;
          resolve();
        }
      };
      Promise.race(this.#exited).then(() => fail(new Error('a worker exited early')), fail);
    });
  }

  async close(): Promise<void> {
    for (const c of this.children) {
      if (c.connected) c.send({ type: 'exit' } satisfies ToWorker);
    }
    const killer = setTimeout(() => this.children.forEach((c) => c.kill('SIGTERM')), 5000);
    await Promise.allSettled(this.#exited);
    clearTimeout(killer);
  }
}

export interface RunResult {
  holds: HoldRecord[];
  events: DemoEvent[];
  errors: string[];
  counter: FencedCounter;
  durationMs: number;
}

/** What a scenario's script can do while the workers run. */
export interface ScenarioControl {
  /** ms since the scenario started. */
  now(): number;
  wait(ms: number): Promise<void>;
  /** Records an event (for the timeline and summary) and prints it. */
  mark(kind: DemoEvent['kind'], short: string, label: string, worker?: number): void;
  /** Freeze a holder past its TTL, and show its late write being refused. */
  pauseHolder(worker: number, ttlMs: number): Promise<void>;
}

export async function runScenario(
  pool: WorkerPool,
  config: ScenarioConfig,
  counterFile: string,
  plannedMs: number,
  script: (ctl: ScenarioControl) => Promise<void>,
): Promise<RunResult> {
  const counter = new FencedCounter(counterFile);
  const holds: HoldRecord[] = [];
  const events: DemoEvent[] = [];
  const errors: string[] = [];
  let t0 = process.hrtime.bigint();
  const ms = (stamp: string | bigint): number => Number(BigInt(stamp) - t0) / 1e6;
  const now = (): number => ms(process.hrtime.bigint());
  let watchers: Array<() => void> = [];
  let running = false;
  const progress = new Progress(plannedMs);

  pool.listen((w, m) => {
    switch (m.type) {
      case 'read': {
        const ok = counter.read(w, BigInt(m.fence));
        pool.send(w, { type: 'reply', id: m.id, ok, value: counter.value, highest: String(counter.highest) });
        break;
      }
      case 'write': {
        const ok = counter.write(w, BigInt(m.fence), m.value);
        pool.send(w, { type: 'reply', id: m.id, ok, value: counter.value, highest: String(counter.highest) });
        break;
      }
      case 'hold':
        holds.push(toRecord(m.hold, ms));
        break;
      case 'error':
        errors.push(`${(now() / 1000).toFixed(2)} s w${w} ${m.message}`);
        break;
      default:
        break;
    }
    watchers.forEach((check) => check());
    if (running) progress.update(now(), holds.length, counter.highest);
  });
  /** Resolves when `test` holds after some message arrives (or at once). */
  const until = (test: () => boolean, timeoutMs: number, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      if (test()) return resolve();
      const timer = setTimeout(() => done(new Error(`the demo waited ${timeoutMs} ms for ${what}`)), timeoutMs);
      const check = (): void => void (test() && done());
      const done = (err?: Error): void => {
        clearTimeout(timer);
        watchers = watchers.filter((c) => c !== check);
        err ? reject(err) : resolve();
      };
      watchers.push(check);
    });

  pool.broadcast({ type: 'start', config });
  await pool.all('ready');
  t0 = process.hrtime.bigint();
  running = true;
  pool.broadcast({ type: 'go' });
  const ticker = setInterval(() => progress.update(now(), holds.length, counter.highest), 200);

  const ctl: ScenarioControl = {
    now,
    wait: (delay) => new Promise((r) => setTimeout(r, delay)),
    mark(kind, short, label, worker) {
      events.push({ t: now(), kind, short, label, ...(worker !== undefined && { worker }) });
      progress.say(`${(now() / 1000).toFixed(1).padStart(5)} s  ${label}`);
    },
    async pauseHolder(worker, ttlMs) {
      let fence = -1n;
      const victim = pool.children[worker]!;
      const inSection = new Promise<void>((resolve) => {
        const onMsg = (m: FromWorker): void => {
          if (m.type !== 'in-section') return;
          // Freeze it right here, in the same tick: it is between its ownership check and its write.
          victim.kill('SIGSTOP');
          fence = BigInt(m.fence);
          victim.off('message', onMsg);
          resolve();
        };
        victim.on('message', onMsg);
      });
      pool.send(worker, { type: 'victim' });
      await inSection;
      const pausedAt = now();
      try {
        ctl.mark('pause', `w${worker} frozen (fence ${fence})`, `w${worker} frozen (SIGSTOP) while holding the lock with fence ${fence}, just before its write`, worker);
        // Keep it frozen past its TTL, until another worker has taken the lock over and read the counter.
        await until(() => counter.highest > fence, ttlMs * 4 + 10_000, 'another worker to take the lock over');
        ctl.mark('takeover', `lease over: w${counter.highestBy} takes it (fence ${counter.highest})`, `its lease ran out: w${counter.highestBy} took the lock with fence ${counter.highest}, ${fmt(now() - pausedAt)} into the pause`, counter.highestBy);
        await ctl.wait(Math.max(0, pausedAt + ttlMs + 500 - now()));
      } finally {
        victim.kill('SIGCONT'); // also when something above failed: a stopped worker would hang the shutdown
      }
      ctl.mark('resume', `w${worker} resumes`, `w${worker} resumed after ${fmt(now() - pausedAt)} and sends its write with fence ${fence}`, worker);
      await until(() => holds.some((x) => x.worker === worker && x.fence === fence), 10_000, 'the frozen worker to finish its hold');
      const mine = holds.find((x) => x.worker === worker && x.fence === fence)!;
      const refusal = counter.refused.find((r) => r.worker === worker && r.fence === fence);
      ctl.mark(
        'refused',
        mine.write === 'refused' ? `late write refused (${fence} < ${refusal?.highest ?? '?'})` : 'late write ACCEPTED',
        mine.write === 'refused'
          ? `the store REFUSED w${worker}'s late write: fence ${fence} < ${refusal?.highest ?? '?'} already seen`
          : `the store ACCEPTED w${worker}'s late write with fence ${fence}: the fence did not protect it`,
        worker,
      );
    },
  };
  try {
    await script(ctl);
  } finally {
    pool.broadcast({ type: 'stop' });
    await pool.all('stopped');
    clearInterval(ticker);
    running = false;
    progress.done(now(), holds.length, counter.highest);
    pool.listen(() => {});
  }
  return { holds, events, errors, counter, durationMs: now() };
}

function toRecord(h: HoldReport, ms: (stamp: string) => number): HoldRecord {
  return {
    worker: h.worker,
    fence: BigInt(h.fence),
    requested: ms(h.requested),
    enter: ms(h.enter),
    exit: ms(h.exit),
    validUntil: ms(h.validUntil),
    write: h.write,
    ...(h.lost !== undefined && { lost: h.lost }),
  };
}

export function fmt(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
}

/** A one-line progress bar on a terminal (redrawn at most every 100 ms); elsewhere (CI logs) only the events and a final line. */
class Progress {
  readonly #planned: number;
  readonly #tty = process.stdout.isTTY === true;
  #line = '';
  #drawnAt = -Infinity;

  constructor(plannedMs: number) {
    this.#planned = plannedMs;
  }

  #render(t: number, holds: number, fence: bigint, full = false): string {
    const width = 32;
    const filled = full ? width : Math.min(width, Math.round((t / this.#planned) * width));
    return `  [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(t / 1000).toFixed(1).padStart(5)} s  ${String(holds).padStart(5)} holds  fence ${fence < 0n ? '-' : fence}`;
  }

  update(t: number, holds: number, fence: bigint): void {
    if (!this.#tty || performance.now() - this.#drawnAt < 100) return;
    this.#drawnAt = performance.now();
    this.#line = this.#render(t, holds, fence);
    process.stdout.write(`\r${this.#line}\x1b[K`);
  }

  /** Prints a line above the bar. */
  say(text: string): void {
    if (this.#tty) process.stdout.write(`\r\x1b[K  ${text}\n${this.#line}`);
    else process.stdout.write(`  ${text}\n`);
  }

  done(t: number, holds: number, fence: bigint): void {
    const line = this.#render(t, holds, fence, true);
    process.stdout.write(this.#tty ? `\r${line}\x1b[K\n` : `${line}\n`);
  }
}
