/** Small statistics helpers for the benchmarks: medians of rounds, quantiles, per-round ratios. */

export function sorted(xs: number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

/** Nearest-rank quantile of an unsorted array; NaN when empty. */
export function q(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = sorted(xs);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
}

export const median = (xs: number[]): number => q(xs, 0.5);

/** Per-round ratios a[i] / b[i] (rounds alternate, so round i of each ran under the same conditions). */
export function ratios(a: number[], b: number[]): number[] {
  return a.map((v, i) => v / b[i]!);
}

export function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return '-';
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `--name N` from the command line, or `fallback`. */
export function numberArg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(process.argv[i + 1]);
}
