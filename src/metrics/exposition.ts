/**
 * Metric families in memory, and the Prometheus text exposition format 0.0.4 they are written in.
 * No I/O and no channels here: src/metrics.ts feeds the families; this file only counts and prints.
 *
 * The format (https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format):
 *   # HELP name text            text escapes \ and newline
 *   # TYPE name counter|gauge|histogram
 *   name{label="value",…} 42    label values escape \, " and newline
 *   histograms: name_bucket{…,le="0.1"} (cumulative, ending with le="+Inf"), name_sum, name_count,
 *   one series' lines together (parsers group a histogram's lines by consecutive label sets).
 */

/** One series' label values, by label name (e.g. `{ backend: 'redis', primitive: 'lock' }`). */
export type Labels = Readonly<Record<string, string>>;

/** One series of a counter or gauge. */
export interface SampleSnapshot {
  /** The series' label values. */
  labels: Labels;
  /** The counter's total, or the gauge's current value. */
  value: number;
}

/** One series of a histogram. */
export interface HistogramSampleSnapshot {
  /** The series' label values (without `le`). */
  labels: Labels;
  /** Cumulative: `count` observations were <= `le`. The last bucket's `le` is Infinity (`+Inf`). */
  buckets: Array<{
    /** The bucket's upper bound, in seconds. */
    le: number;
    /** How many observations were <= `le`. */
    count: number;
  }>;
  /** Sum of all observations, in seconds. */
  sum: number;
  /** How many observations there were (the `+Inf` bucket's count). */
  count: number;
}

/** One metric family: its type, help text, label names, and one sample per label set seen so far. */
export type FamilySnapshot =
  | {
      /** The Prometheus metric type. */
      type: 'counter' | 'gauge';
      /** The family's HELP text. */
      help: string;
      /** The names of its labels, in the order the series' values are given. */
      labelNames: readonly string[];
      /** One entry per series (label set) seen so far. */
      samples: SampleSnapshot[];
    }
  | {
      /** The Prometheus metric type. */
      type: 'histogram';
      /** The family's HELP text. */
      help: string;
      /** The names of its labels (without `le`), in the order the series' values are given. */
      labelNames: readonly string[];
      /** One entry per series (label set) seen so far. */
      samples: HistogramSampleSnapshot[];
    };

/** A label value as the text format wants it between double quotes. */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** HELP text: backslash and newline are escaped (a double quote is not, per the format). */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

/** A sample value or `le`: Go's ParseFloat forms, with the infinities spelled as Prometheus does. */
export function formatNumber(n: number): string {
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  if (Number.isNaN(n)) return 'NaN';
  return String(n);
}

function labelText(labels: Labels, extra?: [string, string]): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** Every family, in the order given, as one exposition. Families with no samples keep their HELP and TYPE. */
export function exposition(families: Readonly<Record<string, FamilySnapshot>>): string {
  const out: string[] = [];
  for (const [name, f] of Object.entries(families)) {
    out.push(`# HELP ${name} ${escapeHelp(f.help)}`, `# TYPE ${name} ${f.type}`);
    if (f.type === 'histogram') {
      for (const s of f.samples) {
        for (const b of s.buckets) out.push(`${name}_bucket${labelText(s.labels, ['le', formatNumber(b.le)])} ${b.count}`);
        out.push(`${name}_sum${labelText(s.labels)} ${formatNumber(s.sum)}`, `${name}_count${labelText(s.labels)} ${s.count}`);
      }
    } else {
      for (const s of f.samples) out.push(`${name}${labelText(s.labels)} ${formatNumber(s.value)}`);
    }
  }
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}

/** The series of one family, by label values (in the family's label order). */
abstract class Family<S> {
  readonly help: string;
  readonly labelNames: readonly string[];
  readonly #series = new Map<string, { labels: Labels; state: S }>();

  constructor(help: string, labelNames: readonly string[]) {
    this.help = help;
    this.labelNames = labelNames;
  }

  protected abstract fresh(): S;

  /** The series for these label values (created at its zero on first use). */
  protected series(values: readonly string[]): S {
    const id = values.join('\u0000');
    let entry = this.#series.get(id);
    if (!entry) {
      const labels: Record<string, string> = {};
      for (let i = 0; i < this.labelNames.length; i++) labels[this.labelNames[i]!] = values[i]!;
      entry = { labels, state: this.fresh() };
      this.#series.set(id, entry);
    }
    return entry.state;
  }

  protected entries(): Array<{ labels: Labels; state: S }> {
    return [...this.#series.values()];
  }
}

/** A counter (only goes up) or a gauge (up and down). */
export class Scalar extends Family<{ value: number }> {
  /** Whether it is a counter or a gauge. */
  readonly type: 'counter' | 'gauge';

  constructor(type: 'counter' | 'gauge', help: string, labelNames: readonly string[]) {
    super(help, labelNames);
    this.type = type;
  }

  protected fresh(): { value: number } {
    return { value: 0 };
  }

  /** Adds `by` (negative for a gauge going down) to the series with these label values. */
  add(values: readonly string[], by = 1): void {
    this.series(values).value += by;
  }

  /** A copy of every series as it is now. */
  snapshot(): FamilySnapshot {
    const samples = this.entries().map((e) => ({ labels: { ...e.labels }, value: e.state.value }));
    return { type: this.type, help: this.help, labelNames: this.labelNames, samples };
  }
}

/** A histogram with fixed upper bounds (seconds); the +Inf bucket is implied. */
export class Histogram extends Family<{ counts: number[]; sum: number; count: number }> {
  readonly #bounds: readonly number[];

  constructor(help: string, labelNames: readonly string[], bounds: readonly number[]) {
    super(help, labelNames);
    this.#bounds = bounds;
  }

  protected fresh(): { counts: number[]; sum: number; count: number } {
    return { counts: new Array<number>(this.#bounds.length).fill(0), sum: 0, count: 0 };
  }

  /** Records one observation of `seconds` in the series with these label values. */
  observe(values: readonly string[], seconds: number): void {
    const s = this.series(values);
    // Counted in its own bucket only; the snapshot makes them cumulative.
    const i = this.#bounds.findIndex((le) => seconds <= le);
    if (i !== -1) s.counts[i]!++;
    s.sum += seconds;
    s.count++;
  }

  /** A copy of every series as it is now, with cumulative buckets. */
  snapshot(): FamilySnapshot {
    const samples = this.entries().map(({ labels, state }) => {
      const buckets: Array<{ le: number; count: number }> = [];
      let below = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        below += state.counts[i]!;
        buckets.push({ le: this.#bounds[i]!, count: below });
      }
      buckets.push({ le: Infinity, count: state.count });
      return { labels: { ...labels }, buckets, sum: state.sum, count: state.count };
    });
    return { type: 'histogram', help: this.help, labelNames: this.labelNames, samples };
  }
}

/** Upper bounds for histograms: strictly increasing, finite, > 0. */
export function checkBuckets(buckets: unknown): number[] {
  if (!Array.isArray(buckets) || buckets.length === 0) throw new TypeError('buckets must be a non-empty array of seconds');
  for (let i = 0; i < buckets.length; i++) {
    const b: unknown = buckets[i];
    if (typeof b !== 'number' || !Number.isFinite(b) || b <= 0) throw new RangeError(`buckets[${i}] must be a finite number of seconds > 0`);
    if (i > 0 && b <= (buckets[i - 1] as number)) throw new RangeError('buckets must be strictly increasing');
  }
  return [...(buckets as number[])];
}
