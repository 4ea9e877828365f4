/**
 * The election scene's processes (demo-election-worker.ts): three services and the observer, forked
 * once (alongside the lock workers, since each takes a moment to start) and kept for every scene; a
 * killed one is forked again under the same name, as its supervisor would restart it.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { FromElector, ToElector } from './demo-protocol.js';
import { metricsHub } from './demo-metrics.js';

export const SERVICES = ['svc-a', 'svc-b', 'svc-c'];
export const OBSERVER = 'observer';

/** The processes by name; messages from a killed incarnation are dropped once it is replaced. */
export class Electors {
  readonly names = [...SERVICES, OBSERVER];
  readonly #script: string;
  readonly #procs = new Map<string, ChildProcess>();
  readonly #exited: Array<Promise<void>> = [];
  readonly #killed = new WeakSet<ChildProcess>();
  #onMessage: (name: string, msg: FromElector) => void = () => {};
  #closing = false;
  /** Set when a process died without being killed: waits fail at once rather than time out. */
  crashed: string | undefined;

  constructor(script: string) {
    this.#script = script;
    for (const name of this.names) this.spawn(name);
  }

  /** Forks the process `name` (again, after a kill): it answers under the same name. */
  spawn(name: string): void {
    const child = fork(this.#script, [name, name === OBSERVER ? 'observer' : 'service'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.#procs.set(name, child);
    metricsHub.track(child, name);
    child.on('message', (m: FromElector) => {
      if (this.#procs.get(name) === child) this.#onMessage(name, m);
    });
    this.#exited.push(
      new Promise((resolve) =>
        child.once('exit', (code, signal) => {
          if (!this.#closing && !this.#killed.has(child)) {
            this.crashed = `${name} exited with ${code ?? signal}`;
            this.#onMessage(name, { type: 'error', message: this.crashed });
          }
          resolve();
        }),
      ),
    );
  }

  process(name: string): ChildProcess {
    return this.#procs.get(name)!;
  }

  kill(name: string): void {
    const child = this.process(name);
    this.#killed.add(child);
    child.kill('SIGKILL');
  }

  listen(fn: (name: string, msg: FromElector) => void): void {
    this.#onMessage = fn;
  }

  send(name: string, msg: ToElector): void {
    this.process(name).send(msg);
  }

  async close(): Promise<void> {
    this.#closing = true;
    for (const c of this.#procs.values()) {
      if (c.connected) c.send({ type: 'exit' } satisfies ToElector);
    }
    const killer = setTimeout(() => this.#procs.forEach((c) => c.kill('SIGTERM')), 5000);
    await Promise.all(this.#exited);
    clearTimeout(killer);
  }
}
