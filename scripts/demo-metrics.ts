/**
 * `npm run demo -- --metrics PORT`: the demo's processes, scraped while it runs. Every worker and
 * elector process runs `wirelock/metrics` on its own locks; the demo serves them all on
 * http://127.0.0.1:PORT/metrics (PORT 0: a free one), each series labelled with the process it came
 * from (`process="w3"`, `process="svc-a"`), as a Prometheus server scraping each process would label
 * them by instance. A scrape asks every live process over its IPC channel for its exposition text
 * and merges the families, so each `# HELP`/`# TYPE` appears once.
 *
 * Child side: `answerMetricsOverIpc()` (does nothing unless the demo asked for metrics).
 * Parent side: `metricsHub` tracks the forked processes and serves the merged text.
 */
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { metrics } from '../src/metrics.js';

const ENV = 'WIRELOCK_DEMO_METRICS';

interface MetricsAsk {
  type: 'metrics?';
  id: number;
}
interface MetricsAnswer {
  type: 'metrics';
  id: number;
  text: string;
}

/** In a worker or elector: collect, and answer the parent's asks. */
export function answerMetricsOverIpc(): void {
  if (process.env[ENV] !== '1' || !process.send) return;
  const m = metrics();
  process.on('message', (msg: { type?: string; id?: number }) => {
    if (msg?.type !== 'metrics?') return;
    const answer: MetricsAnswer = { type: 'metrics', id: (msg as MetricsAsk).id, text: m.prometheus() };
    process.send!(answer);
  });
}

/**
 * Merges exposition texts: the families in order of first appearance, each with its HELP and TYPE
 * once and every process's samples, a `process` label added to each sample.
 */
export function mergeExpositions(parts: Array<{ process: string; text: string }>): string {
  const families = new Map<string, { head: string[]; samples: string[] }>();
  for (const { process: name, text } of parts) {
    let current: { head: string[]; samples: string[] } | undefined;
    const label = `process="${name.replace(/["\\\n]/g, '_')}"`;
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const meta = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (meta) {
        const family = meta[2]!;
        current = families.get(family);
        if (!current) families.set(family, (current = { head: [], samples: [] }));
        if (current.head.length < 2) current.head.push(line);
        continue;
      }
      if (line.startsWith('#') || !current) continue;
      // name{a="b"} 1  ->  name{process="w1",a="b"} 1 ;  name 1  ->  name{process="w1"} 1
      const brace = line.indexOf('{');
      const space = line.indexOf(' ');
      current.samples.push(
        brace !== -1 && brace < space ? `${line.slice(0, brace + 1)}${label},${line.slice(brace + 1)}` : `${line.slice(0, space)}{${label}}${line.slice(space)}`,
      );
    }
  }
  const out: string[] = [];
  for (const f of families.values()) out.push(...f.head, ...f.samples);
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}

class MetricsHub {
  readonly #children = new Map<ChildProcess, string>();
  #server: http.Server | undefined;
  #nextId = 1;

  /** Asks the demo's children to collect: call before forking them. */
  enable(): void {
    process.env[ENV] = '1';
  }

  /** A forked process to scrape while it lives, under `name`. */
  track(child: ChildProcess, name: string): void {
    if (process.env[ENV] !== '1') return;
    this.#children.set(child, name);
    child.once('exit', () => this.#children.delete(child));
  }

  /** Serves /metrics on 127.0.0.1:port; resolves with its URL. */
  async listen(port: number): Promise<string> {
    const server = http.createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end('not found; try /metrics\n');
        return;
      }
      this.#collect().then(
        (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
        (err: unknown) => res.writeHead(500).end(`${String(err)}\n`),
      );
    });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    server.unref(); // the demo ends when its scenes do, scraped or not
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
  }

  /** Every live process's text; one that does not answer within 1 s (frozen by a scene) is left out of this scrape. */
  async #collect(): Promise<string> {
    const asks = [...this.#children].filter(([child]) => child.connected).map(([child, name]) =>
      new Promise<{ process: string; text: string } | undefined>((resolve) => {
        const id = this.#nextId++;
        const done = (value: { process: string; text: string } | undefined): void => {
          clearTimeout(timer);
          child.off('message', onMessage);
          child.off('exit', onExit);
          resolve(value);
        };
        const onMessage = (msg: MetricsAnswer): void => {
          if (msg?.type === 'metrics' && msg.id === id) done({ process: name, text: msg.text });
        };
        const onExit = (): void => done(undefined);
        const timer = setTimeout(() => done(undefined), 1000);
        child.on('message', onMessage);
        child.once('exit', onExit);
        child.send({ type: 'metrics?', id } satisfies MetricsAsk, (err) => {
          if (err) done(undefined); // the channel closed under us: the process is going
        });
      }),
    );
    const parts = (await Promise.all(asks)).filter((p) => p !== undefined);
    return mergeExpositions(parts);
  }

  close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }
}

export const metricsHub = new MetricsHub();
