/**
 * Turns bench results into the stdout table, bench/results/latest.json, and docs/bench.md with an SVG
 * chart drawn here (no external service).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fmt } from './stats.js';

export interface Cell {
  /** Median over rounds. */
  value: number;
  rounds?: number[];
  digits?: number;
}

export interface Row {
  library: string;
  ours: boolean;
  cells: Record<string, Cell>;
  /** Headline ratio: wirelock / the best anchor (or anchor / wirelock for "lower is better"), per-round median. */
  ratio?: { value: number; versus: string; rounds: number[] };
}

export interface Section {
  id: string;
  title: string;
  /** Column names in order; the first is the headline metric. */
  columns: string[];
  higherIsBetter: boolean;
  rows: Row[];
  target?: string;
  notes?: string[];
}

export function markdownTable(s: Section): string {
  const head = `| library | ${s.columns.join(' | ')} | ratio |`;
  const sep = `|---|${s.columns.map(() => '---:').join('|')}|---:|`;
  const lines = s.rows.map((r) => {
    const cells = s.columns.map((c) => {
      const cell = r.cells[c];
      return cell ? fmt(cell.value, cell.digits ?? 0) : '-';
    });
    const ratio = r.ratio ? `**${fmt(r.ratio.value, 2)}×** vs ${r.ratio.versus}` : '';
    return `| ${r.ours ? `**${r.library}**` : r.library} | ${cells.join(' | ')} | ${ratio} |`;
  });
  return [head, sep, ...lines].join('\n');
}

/** A horizontal bar per section: wirelock's headline ratio against its best anchor, with a 1× line. */
export function svgChart(sections: Section[]): string {
  const rows = sections.flatMap((s) => s.rows.filter((r) => r.ratio).map((r) => ({ label: `${s.id}. ${r.library}`, ratio: r.ratio!.value, target: s })));
  const width = 760;
  const left = 300;
  const barH = 22;
  const gap = 10;
  const top = 40;
  const height = top + rows.length * (barH + gap) + 40;
  const max = Math.max(2, ...rows.map((r) => r.ratio)) * 1.1;
  const x = (v: number): number => left + (v / max) * (width - left - 60);
  const esc = (t: string): string => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const bars = rows
    .map((r, i) => {
      const y = top + i * (barH + gap);
      const color = r.ratio >= 1 ? '#2e7d32' : '#c62828';
      return [
        `<text x="${left - 8}" y="${y + barH * 0.7}" text-anchor="end" font-size="12">${esc(r.label)}</text>`,
        `<rect x="${left}" y="${y}" width="${Math.max(1, x(r.ratio) - left)}" height="${barH}" fill="${color}"/>`,
        `<text x="${x(r.ratio) + 6}" y="${y + barH * 0.7}" font-size="12">${r.ratio.toFixed(2)}×</text>`,
      ].join('');
    })
    .join('\n');
  const one = x(1);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${width / 2}" y="22" text-anchor="middle" font-size="15">wirelock vs the best other library, per scenario (median of per-round ratios; &gt; 1 = wirelock better)</text>
${bars}
<line x1="${one}" y1="${top - 6}" x2="${one}" y2="${height - 30}" stroke="#333" stroke-dasharray="4 3"/>
<text x="${one}" y="${height - 14}" text-anchor="middle" font-size="12">1×</text>
</svg>
`;
}

export function writeOutputs(
  root: string,
  sections: Section[],
  meta: { quick: boolean; rounds: number; started: string; durationS: number; machine: string; method: string[]; profile?: string[] },
): void {
  mkdirSync(path.join(root, 'bench/results'), { recursive: true });
  writeFileSync(path.join(root, 'bench/results/latest.json'), JSON.stringify({ meta, sections }, null, 2));
  if (meta.quick) return; // docs/bench.md records full runs only
  mkdirSync(path.join(root, 'docs'), { recursive: true });
  writeFileSync(path.join(root, 'docs/bench.svg'), svgChart(sections));
  const md = [
    '# Benchmarks',
    '',
    `Written by \`npm run bench\` on ${meta.started} (${meta.machine}; ${meta.rounds} rounds, ${Math.round(meta.durationS)} s).`,
    'Every figure is the median over rounds, and every ratio is the median of the per-round ratios. The',
    'machine is shared and noisy, so compare ratios rather than absolute numbers.',
    '',
    '![wirelock vs the best other library](bench.svg)',
    '',
    '## Method',
    '',
    ...meta.method.map((m) => `- ${m}`),
    '',
    ...sections.flatMap((s) => [
      `## ${s.id}. ${s.title}`,
      '',
      ...(s.target ? [`Target: ${s.target}`, ''] : []),
      markdownTable(s),
      '',
      ...(s.notes ?? []).map((n) => `- ${n}`),
      ...(s.notes?.length ? [''] : []),
    ]),
    ...(meta.profile?.length ? ['## Where the time goes', '', ...meta.profile, ''] : []),
  ].join('\n');
  writeFileSync(path.join(root, 'docs/bench.md'), md);
}
