/**
 * The demo's election scene: three services campaign for one election, each observing it, and a
 * separate observer process watches too. The leader does its leader work (a heartbeat with its term,
 * written to a fenced store) until it is killed with SIGKILL; its supervisor starts it again, and it
 * campaigns anew, at the back of the queue. Nobody can tell a dead leader from a slow one, so the next
 * candidate leads only once the dead leader's lease has run out; every observer sees the change.
 * At the end the queued candidates stop, the last leader resigns and the observer sees nobody lead.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { OBSERVER, SERVICES, type Electors } from './demo-election-processes.js';
import type { ElectionConfig, FromElector, Seen } from './demo-protocol.js';
import { FencedCounter, fmt, type DemoEvent } from './demo-scenario.js';

/** One term, as its leader reported it: stamps in ms since the scene started. */
export interface TermRecord {
  service: string;
  fence: bigint;
  /** campaign() resolved: it leads. */
  start: number;
  /** When it stopped leading: killed, resigned or lost (undefined while it leads). */
  end: number | undefined;
  /** The validUntil its last heartbeat carried: the end of what its lease guaranteed. */
  validUntil: number;
  how: 'leading' | 'killed' | 'resigned' | 'lost';
  /** When each of its heartbeats was accepted by the fenced store. */
  beats: number[];
}

/** What one process saw (a restarted service is a new view, in the same lane). */
export interface View {
  who: string;
  /** Its lane: the observer, or the service's name. */
  lane: string;
  /** From when it was started, until it was killed or stopped. */
  from: number;
  to: number | undefined;
  killed: boolean;
  seen: Array<{ t: number; seen: Seen }>;
}

/** A service's wait in the queue: from campaign() until it led, or its process was killed or stopped. */
export interface Candidacy {
  service: string;
  from: number;
  to: number | undefined;
}

export interface Failover {
  victim: string;
  fence: bigint;
  killAt: number;
  /** The dead leader's validUntil: nobody may lead before it. */
  validUntil: number;
  /** The next leader; when the observer saw it, and when the last of those watching at the kill did. */
  next: { service: string; fence: bigint; start: number; observed: number; allObserved: number };
}

export interface ElectionResult {
  config: ElectionConfig;
  terms: TermRecord[];
  candidacies: Candidacy[];
  views: View[];
  failovers: Failover[];
  /** The last leader's resignation, and when the observer saw that nobody leads. */
  resigned: { service: string; at: number; observed: number } | undefined;
  events: DemoEvent[];
  errors: string[];
  store: FencedCounter;
  durationMs: number;
}

export interface ElectionPlan {
  kills: number;
  /** How long each leader leads before the next kill (and the last one before the scene ends). */
  leadMs: number;
}

/** A term for labels: Redis fences start from the server's clock (redis.md, "Fences"), so only their tail. */
export const termLabel = (fence: bigint): string => (fence >= 10n ** 8n ? `…${String(fence).slice(-5)}` : String(fence));

export function runElection(electors: Electors, config: ElectionConfig, storeFile: string, plan: ElectionPlan): Promise<ElectionResult> {
  return new ElectionRun(electors, config, storeFile).run(plan);
}

/** One scene: what the processes report, and the script that kills and stops them. */
class ElectionRun {
  readonly #electors: Electors;
  readonly #config: ElectionConfig;
  readonly #store: FencedCounter;
  readonly #terms: TermRecord[] = [];
  readonly #candidacies: Candidacy[] = [];
  readonly #views: View[] = [];
  /** Each process's view now (a restarted process has a new one). */
  readonly #current = new Map<string, View>();
  readonly #events: DemoEvent[] = [];
  readonly #errors: string[] = [];
  readonly #failovers: Failover[] = [];
  readonly #ready = new Set<string>();
  readonly #stopped = new Set<string>();
  readonly #restarts = new Map<string, number>();
  #resigned: ElectionResult['resigned'];
  #t0 = process.hrtime.bigint();
  #watchers: Array<() => void> = [];

  constructor(electors: Electors, config: ElectionConfig, storeFile: string) {
    this.#electors = electors;
    this.#config = config;
    this.#store = new FencedCounter(storeFile);
  }

  async run(plan: ElectionPlan): Promise<ElectionResult> {
    this.#electors.listen((name, m) => this.#onMessage(name, m));
    for (const name of this.#electors.names) this.#start(name, name);
    await this.#until(() => this.#electors.names.every((n) => this.#ready.has(n)), 30_000, 'the election processes to connect');
    this.#t0 = process.hrtime.bigint();
    // What they saw while connecting is the state the scene begins with.
    for (const view of this.#views) {
      view.from = 0;
      for (const s of view.seen) s.t = 0;
    }
    let failed: unknown;
    try {
      await this.#script(plan);
    } catch (err) {
      failed = err;
    }
    // Also after a failure: a leader left running would hold the next scene's processes up.
    try {
      await this.#stopAll();
    } catch (err) {
      failed ??= err;
    }
    this.#electors.listen(() => {});
    if (failed) throw failed;
    return {
      config: this.#config,
      terms: this.#terms,
      candidacies: this.#candidacies,
      views: this.#views,
      failovers: this.#failovers,
      resigned: this.#resigned,
      events: this.#events,
      errors: this.#errors,
      store: this.#store,
      durationMs: this.#now(),
    };
  }

  async #script(plan: ElectionPlan): Promise<void> {
    const [first, ...others] = SERVICES;
    // svc-a first, so the story reads in order; the others queue behind it.
    this.#electors.send(first!, { type: 'campaign' });
    await this.#until(() => this.#leading() !== undefined, 10_000, `${first} to lead`);
    this.#mark('takeover', `${first} leads`, `${first} leads in term ${this.#leader().fence}; ${others.join(' and ')} campaign and queue behind it`);
    for (const name of others) {
      await sleep(100);
      this.#electors.send(name, { type: 'campaign' });
    }
    for (let k = 0; k < plan.kills; k++) {
      await sleep(Math.max(0, this.#leader().start + plan.leadMs - this.#now()));
      await this.#killLeader();
    }
    await sleep(Math.max(0, this.#leader().start + plan.leadMs - this.#now()));
  }

  #onMessage(name: string, m: FromElector): void {
    switch (m.type) {
      case 'ready':
        this.#ready.add(name);
        break;
      case 'observed':
        this.#current.get(name)?.seen.push({ t: this.#ms(m.at), seen: m.seen });
        break;
      case 'campaigning':
        this.#candidacies.push({ service: name, from: this.#ms(m.at), to: undefined });
        break;
      case 'leading':
        this.#endCandidacy(name, this.#ms(m.at));
        this.#terms.push({
          service: name, fence: BigInt(m.fence), start: this.#ms(m.at),
          end: undefined, validUntil: this.#ms(m.validUntil), how: 'leading', beats: [],
        });
        break;
      case 'beat': {
        const term = this.#termOf(name, m.fence);
        if (!term) break;
        term.validUntil = this.#ms(m.validUntil);
        if (this.#store.write(SERVICES.indexOf(name), term.fence, this.#store.value + 1)) term.beats.push(this.#ms(m.at));
        break;
      }
      case 'lost':
      case 'resigned': {
        const term = this.#termOf(name, m.fence);
        if (term) Object.assign(term, { end: this.#ms(m.at), how: m.type });
        if (m.type === 'lost') this.#errors.push(`${this.#stamp()} ${name} lost its leadership (${m.reason})`);
        break;
      }
      case 'error':
        this.#errors.push(`${this.#stamp()} ${name} ${m.message}`);
        break;
      case 'stopped':
        this.#stopped.add(name);
        break;
    }
    this.#watchers.forEach((check) => check());
  }

  /** SIGKILLs the leader in the tick its heartbeat arrives, and waits until everyone sees the next leader. */
  async #killLeader(): Promise<void> {
    const term = this.#leader();
    const child = this.#electors.process(term.service);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.off('message', onBeat);
        reject(new Error(`${term.service} led but sent no heartbeat for 5 s`));
      }, 5000);
      // Runs after the scene's own listener (registered at fork), so term.validUntil is this beat's.
      const onBeat = (m: FromElector): void => {
        if (m.type !== 'beat') return;
        this.#electors.kill(term.service);
        clearTimeout(timer);
        child.off('message', onBeat);
        resolve();
      };
      child.on('message', onBeat);
    });
    const killAt = this.#now();
    Object.assign(term, { end: killAt, how: 'killed' });
    Object.assign(this.#current.get(term.service)!, { to: killAt, killed: true });
    this.#endCandidacy(term.service, killAt);
    this.#mark('kill', `${term.service} killed`, `leader ${term.service} killed (SIGKILL) in term ${term.fence}; its lease has ${fmt(term.validUntil - killAt)} left to run`);
    const restarted = this.#restart(term.service);
    const observer = this.#current.get(OBSERVER);
    const timeout = this.#config.ttlMs * 3 + 5000;
    await this.#until(() => sawAfter(observer, term.fence) < Infinity && this.#terms.some((t) => t.fence > term.fence), timeout, 'the next leader');
    const next = this.#terms.filter((t) => t.fence > term.fence).sort((a, b) => (a.fence < b.fence ? -1 : 1))[0]!;
    // Everyone who was watching when the leader died: the observer and the live services.
    const witnesses = this.#views.filter((v) => v.to === undefined && v.from < killAt);
    await this.#until(() => witnesses.every((v) => sawAfter(v, term.fence) < Infinity), 5000, 'every observer to see the next leader');
    const observed = sawAfter(observer, term.fence);
    const allObserved = Math.max(...witnesses.map((v) => sawAfter(v, term.fence)));
    this.#mark(
      'takeover',
      `${next.service} leads, +${fmt(observed - killAt)}`,
      `${next.service} leads in term ${next.fence}, ${fmt(next.start - term.validUntil)} after the dead leader's lease ended; the observer saw it ${fmt(observed - killAt)} after the kill`,
    );
    this.#failovers.push({
      victim: term.service, fence: term.fence, killAt, validUntil: term.validUntil,
      next: { service: next.service, fence: next.fence, start: next.start, observed, allObserved },
    });
    await restarted;
  }

  /** Its supervisor starts a killed service again; once connected, it campaigns anew. */
  async #restart(name: string): Promise<void> {
    const n = (this.#restarts.get(name) ?? 0) + 1;
    this.#restarts.set(name, n);
    this.#electors.spawn(name);
    this.#start(name, `${name} (restart ${n})`);
    await this.#until(() => this.#ready.has(name), 30_000, `${name} to restart`);
    this.#electors.send(name, { type: 'campaign' });
    this.#mark('restart', `${name} restarted`, `${name} restarted by its supervisor; it campaigns again, at the back of the queue`);
  }

  /** The queued candidates stop first, so the leader's resignation hands over to nobody. */
  async #stopAll(): Promise<void> {
    const leader = this.#leading();
    await this.#stop(SERVICES.filter((s) => s !== leader?.service));
    if (leader) {
      await this.#stop([leader.service]);
      const observer = this.#current.get(OBSERVER)!;
      const last = (): View['seen'][number] | undefined => observer.seen[observer.seen.length - 1];
      await this.#until(() => last()?.seen === null, 5000, 'the observer to see that nobody leads');
      const observed = last()!.t;
      this.#resigned = { service: leader.service, at: leader.end!, observed };
      this.#mark('resign', `${leader.service} resigns`, `${leader.service} resigned (term ${leader.fence}); the observer saw that nobody leads ${fmt(observed - leader.end!)} later`);
    }
    await this.#stop([OBSERVER]);
  }

  async #stop(names: string[]): Promise<void> {
    for (const name of names) this.#electors.send(name, { type: 'stop' });
    await this.#until(() => names.every((n) => this.#stopped.has(n)), 10_000, `${names.join(', ')} to stop`);
    for (const name of names) {
      this.#current.get(name)!.to = this.#now();
      this.#endCandidacy(name, this.#now());
    }
  }

  #start(name: string, who: string): void {
    const view: View = { who, lane: name, from: this.#now(), to: undefined, killed: false, seen: [] };
    this.#views.push(view);
    this.#current.set(name, view);
    this.#ready.delete(name);
    this.#stopped.delete(name);
    this.#electors.send(name, { type: 'start', config: this.#config });
  }

  /** Resolves when `test` holds after some message arrives (or at once); a crashed process fails it. */
  #until(test: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      if (test()) return resolve();
      const timer = setTimeout(() => done(new Error(`the election scene waited ${timeoutMs} ms for ${what}`)), timeoutMs);
      const check = (): void => {
        if (this.#electors.crashed) done(new Error(`${this.#electors.crashed} while the scene waited for ${what}`));
        else if (test()) done();
      };
      const done = (err?: Error): void => {
        clearTimeout(timer);
        this.#watchers = this.#watchers.filter((c) => c !== check);
        if (err) reject(err);
        else resolve();
      };
      this.#watchers.push(check);
    });
  }

  #mark(kind: DemoEvent['kind'], short: string, label: string): void {
    this.#events.push({ t: this.#now(), kind, short, label });
    console.log(`  ${(this.#now() / 1000).toFixed(1).padStart(5)} s  ${label}`);
  }

  #leading(): TermRecord | undefined {
    return this.#terms.filter((t) => t.how === 'leading').sort((a, b) => (a.fence < b.fence ? 1 : -1))[0];
  }

  #leader(): TermRecord {
    const term = this.#leading();
    if (!term) throw new Error(`nobody leads the election on ${this.#config.backend}, yet nobody resigned or was killed`);
    return term;
  }

  #termOf(service: string, fence: string): TermRecord | undefined {
    return this.#terms.find((t) => t.service === service && t.fence === BigInt(fence));
  }

  #endCandidacy(service: string, t: number): void {
    for (const c of this.#candidacies) {
      if (c.service === service && c.to === undefined) c.to = t;
    }
  }

  /** ms since the scene started, from a process.hrtime.bigint() stamp. */
  #ms(stamp: string | bigint): number {
    return Number(BigInt(stamp) - this.#t0) / 1e6;
  }

  #now(): number {
    return this.#ms(process.hrtime.bigint());
  }

  #stamp(): string {
    return `${(this.#now() / 1000).toFixed(2)} s`;
  }
}

/** The first time `view` saw a leader with a term above `fence` (Infinity: not yet). */
function sawAfter(view: View | undefined, fence: bigint): number {
  return view?.seen.find((s) => s.seen !== null && BigInt(s.seen.fence) > fence)?.t ?? Infinity;
}
