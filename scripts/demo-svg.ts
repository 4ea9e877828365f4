/**
 * demo-out/timeline.svg, drawn by hand: one panel per backend showing who held the lock when (one lane
 * per worker), the fences climbing, the server kills, failovers and slot migrations, a zoom on the
 * frozen holder whose lease ran out and whose late write the store refused, and one on each failover
 * and migration (a hold whose holder was told of a loss is outlined in red). Hover a hold for its worker, fence and duration.
 * Then one panel per election scene: each service's terms and its wait in the queue, the killed
 * leader's lease running out, and below, who each process saw leading.
 */
import { termLabel, type Candidacy, type TermRecord, type View } from './demo-election.js';
import { OBSERVER } from './demo-election-processes.js';
import type { DemoEvent, HoldRecord } from './demo-scenario.js';

export interface Panel {
  title: string;
  holds: HoldRecord[];
  events: DemoEvent[];
  durationMs: number;
  workers: number;
}

export interface ElectionPanel {
  title: string;
  services: string[];
  terms: TermRecord[];
  candidacies: Candidacy[];
  views: View[];
  events: DemoEvent[];
  durationMs: number;
}

const W = 1200;
const LEFT = 64;
const RIGHT = 24;
const PLOT = W - LEFT - RIGHT;
const LANE = 13;
const FONT = 'font-family="ui-monospace,Menlo,Consolas,monospace"';
const COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#9c755f', '#e15759'];
const EVENT_COLOR: Record<DemoEvent['kind'], string> = {
  kill: '#d62728',
  restart: '#2ca02c',
  pause: '#7f3fbf',
  takeover: '#1f77b4',
  resume: '#7f3fbf',
  refused: '#d62728',
  resign: '#555555',
  failover: '#d62728',
  switched: '#2ca02c',
  migrate: '#e07b00',
  moved: '#2ca02c',
};
/** Faults drawn on the whole run's panel (the pause has its zoom). */
const COARSE: ReadonlySet<DemoEvent['kind']> = new Set(['kill', 'restart', 'failover', 'switched', 'migrate', 'moved']);

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const n = (x: number): string => (Math.round(x * 10) / 10).toString();
/** Rough width of monospace text at 11px. */
const textWidth = (s: string, size = 11): number => s.length * size * 0.6;

interface Scale {
  from: number;
  to: number;
  x(t: number): number;
}

function scale(from: number, to: number): Scale {
  const span = Math.max(1, to - from);
  return { from, to, x: (t) => LEFT + ((Math.min(Math.max(t, from), to) - from) / span) * PLOT };
}

/** Places labels in the first row where they do not collide; returns one row index per label. */
function rows(items: Array<{ x: number; text: string }>, maxRows: number): number[] {
  const ends: number[] = [];
  return items.map(({ x, text }) => {
    const w = textWidth(text) + 8;
    const start = x + w > W - RIGHT ? x - w : x;
    let row = ends.findIndex((end) => end <= start);
    if (row === -1) row = ends.length < maxRows ? ends.length : maxRows - 1;
    ends[row] = start + w;
    return row;
  });
}

function axis(s: Scale, y: number, unit: 's' | 'ms', origin = 0): string {
  const span = s.to - s.from;
  const step = [50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000].find((st) => span / st <= 12) ?? 50_000;
  const out = [`<line x1="${LEFT}" y1="${y}" x2="${W - RIGHT}" y2="${y}" stroke="#999"/>`];
  for (let t = origin + Math.ceil((s.from - origin) / step) * step; t <= s.to; t += step) {
    const x = n(s.x(t));
    const label = unit === 's' ? `${+(t / 1000).toFixed(1)} s` : `${t - origin >= 0 ? '+' : ''}${Math.round(t - origin)} ms`;
    out.push(`<line x1="${x}" y1="${y}" x2="${x}" y2="${y + 4}" stroke="#999"/>`);
    out.push(`<text x="${x}" y="${y + 15}" text-anchor="middle" font-size="10" fill="#555">${esc(label)}</text>`);
  }
  return out.join('\n');
}

function lanes(p: Panel, s: Scale, top: number, opts: { hatchLate: boolean }): string {
  const out: string[] = [];
  for (let w = 0; w < p.workers; w++) {
    const y = top + w * LANE;
    out.push(`<rect x="${LEFT}" y="${y}" width="${PLOT}" height="${LANE}" fill="${w % 2 ? '#fafafa' : '#f2f2f2'}"/>`);
    out.push(`<text x="${LEFT - 8}" y="${y + 10}" text-anchor="end" font-size="10" fill="#333">w${w}</text>`);
  }
  for (const h of p.holds) {
    if (h.exit < s.from || h.enter > s.to) continue;
    const y = top + h.worker * LANE + 2;
    const x = s.x(h.enter);
    const guaranteedEnd = Math.min(h.exit, h.validUntil);
    const width = Math.max(1, s.x(guaranteedEnd) - x);
    const tip = `w${h.worker} fence ${h.fence}: held ${(guaranteedEnd - h.enter).toFixed(2)} ms from ${(h.enter / 1000).toFixed(3)} s` +
      (h.exit > h.validUntil ? `, then ${(h.exit - h.validUntil).toFixed(0)} ms past its lease (frozen); write ${h.write}` : '') +
      (h.lost ? `; its holder was told the lock was lost ('${h.lost}')` : '');
    // A hold whose holder was told of a loss (a failover's new master lacked it) is outlined in red.
    const lost = h.lost ? ' stroke="#d62728" stroke-width="1.5"' : '';
    out.push(`<rect x="${n(x)}" y="${y}" width="${n(width)}" height="${LANE - 4}" fill="${COLORS[h.worker % COLORS.length]}"${lost}><title>${esc(tip)}</title></rect>`);
    if (opts.hatchLate && h.exit > h.validUntil) {
      const lx = s.x(h.validUntil);
      out.push(`<rect x="${n(lx)}" y="${y}" width="${n(Math.max(1, s.x(h.exit) - lx))}" height="${LANE - 4}" fill="url(#late)" stroke="#d62728" stroke-width="0.6"><title>${esc(tip)}</title></rect>`);
      const ex = s.x(h.exit);
      out.push(`<path d="M${n(ex - 4)},${y - 1} l8,${LANE - 2} m0,-${LANE - 2} l-8,${LANE - 2}" stroke="#d62728" stroke-width="2"/>`);
    }
  }
  return out.join('\n');
}

function eventLines(events: DemoEvent[], s: Scale, top: number, height: number, labelTop: number, maxRows: number): string {
  const shown = events.filter((e) => e.t >= s.from && e.t <= s.to);
  const labels = shown.map((e) => ({ x: s.x(e.t), text: e.short }));
  const placed = rows(labels, maxRows);
  return shown
    .map((e, i) => {
      const x = s.x(e.t);
      const { text } = labels[i]!;
      const ly = labelTop + placed[i]! * 13;
      const anchor = x + textWidth(text) + 8 > W - RIGHT ? 'end' : 'start';
      const tx = anchor === 'end' ? x - 3 : x + 3;
      return [
        `<line x1="${n(x)}" y1="${ly + 2}" x2="${n(x)}" y2="${top + height}" stroke="${EVENT_COLOR[e.kind]}" stroke-width="1.2" stroke-dasharray="4 3"><title>${esc(e.label)}</title></line>`,
        `<text x="${n(tx)}" y="${ly}" text-anchor="${anchor}" font-size="11" fill="${EVENT_COLOR[e.kind]}">${esc(text)}<title>${esc(e.label)}</title></text>`,
      ].join('\n');
    })
    .join('\n');
}

/** Fence against time, as a step line: it only ever climbs. */
function fenceStrip(holds: HoldRecord[], s: Scale, top: number, height: number): string {
  const sorted = holds.filter((h) => h.enter >= s.from && h.enter <= s.to).sort((a, b) => a.enter - b.enter);
  if (sorted.length === 0) return '';
  const lo = sorted.reduce((m, h) => (h.fence < m ? h.fence : m), sorted[0]!.fence);
  const hi = sorted.reduce((m, h) => (h.fence > m ? h.fence : m), sorted[0]!.fence);
  const span = Number(hi - lo) || 1;
  const y = (f: bigint): number => top + height - (Number(f - lo) / span) * height;
  let d = `M${n(s.x(sorted[0]!.enter))},${n(y(sorted[0]!.fence))}`;
  for (const h of sorted.slice(1)) d += ` H${n(s.x(h.enter))} V${n(y(h.fence))}`;
  return [
    `<rect x="${LEFT}" y="${top}" width="${PLOT}" height="${height}" fill="#fbfbfb" stroke="#eee"/>`,
    `<text x="${LEFT - 8}" y="${top + height / 2 + 4}" text-anchor="end" font-size="10" fill="#333">fence</text>`,
    `<path d="${d}" fill="none" stroke="#333" stroke-width="1.2"/>`,
    `<text x="${LEFT + 4}" y="${top + height - 3}" font-size="10" fill="#555">${lo}</text>`,
    `<text x="${W - RIGHT - 4}" y="${top + 10}" text-anchor="end" font-size="10" fill="#555">${hi}</text>`,
  ].join('\n');
}

/** Fence numbers under the zoom's lanes, wherever there is room: the frozen holder's first. */
function fenceLabels(holds: HoldRecord[], s: Scale, y: number): string {
  const out: string[] = [`<text x="${LEFT - 8}" y="${y}" text-anchor="end" font-size="10" fill="#333">fence</text>`];
  const taken: Array<[number, number]> = [[-Infinity, LEFT - 2]];
  const visible = holds.filter((h) => h.enter >= s.from && h.enter <= s.to).sort((a, b) => a.enter - b.enter);
  const stale = (h: HoldRecord): boolean => h.exit > h.validUntil;
  for (const h of [...visible.filter(stale), ...visible.filter((x) => !stale(x))]) {
    const text = String(h.fence);
    const x = s.x(h.enter);
    const half = textWidth(text, 10) / 2 + 2;
    if (taken.some(([a, b]) => x + half > a && x - half < b)) continue;
    taken.push([x - half, x + half]);
    const color = stale(h) ? '#d62728' : COLORS[h.worker % COLORS.length];
    out.push(`<text x="${n(x)}" y="${y}" text-anchor="middle" font-size="10" fill="${color}"${stale(h) ? ' font-weight="bold"' : ''}>${text}</text>`);
  }
  return out.join('\n');
}

/** A zoom on [from, to] below a panel's whole run; `marks` are drawn on it too (by default its non-fault events). Returns the new y. */
function zoomOn(p: Panel, out: string[], y: number, from: number, to: number, origin: number, color: string, caption: string, marks?: DemoEvent[]): number {
  const zoom = scale(from, to);
  out.push(`<text x="${LEFT}" y="${y + 4}" font-size="12" font-weight="bold" fill="${color}">${esc(caption)}</text>`);
  y += 10;
  const steps = marks ?? p.events.filter((e) => e.t >= from && e.t <= to && !COARSE.has(e.kind));
  const zLabelTop = y + 12;
  y += 4 * 13 + 6;
  const lanesHeight = p.workers * LANE;
  out.push(lanes(p, zoom, y, { hatchLate: true }));
  out.push(eventLines(steps, zoom, y, lanesHeight, zLabelTop, 4));
  y += lanesHeight + 14;
  out.push(fenceLabels(p.holds, zoom, y));
  y += 8;
  out.push(axis(zoom, y, 'ms', origin));
  return y + 24;
}

function panel(p: Panel, top: number): { svg: string; height: number } {
  const out: string[] = [`<g ${FONT}>`];
  let y = top;
  out.push(`<text x="${LEFT - 50}" y="${y + 14}" font-size="15" font-weight="bold" fill="#111">${esc(p.title)}</text>`);
  y += 22;
  // The whole run: the frozen spell is shaded as one band here; the zoom below shows its steps.
  const full = scale(0, p.durationMs);
  const pause = p.events.find((e) => e.kind === 'pause');
  const refused = p.events.find((e) => e.kind === 'refused');
  const coarse = p.events.filter((e) => COARSE.has(e.kind));
  if (pause && refused) coarse.push({ t: pause.t, kind: 'pause', label: pause.label, short: `w${pause.worker} frozen past its lease (zoom below)` });
  const labelTop = y + 10;
  y += 30;
  const lanesTop = y;
  const lanesHeight = p.workers * LANE;
  if (pause && refused) {
    out.push(`<rect x="${n(full.x(pause.t))}" y="${lanesTop}" width="${n(Math.max(2, full.x(refused.t) - full.x(pause.t)))}" height="${lanesHeight}" fill="#7f3fbf" opacity="0.10"/>`);
  }
  out.push(lanes(p, full, lanesTop, { hatchLate: true }));
  out.push(eventLines(coarse, full, lanesTop, lanesHeight, labelTop, 2));
  y += lanesHeight + 6;
  out.push(fenceStrip(p.holds, full, y, 30));
  y += 36;
  out.push(axis(full, y, 's'));
  y += 30;

  if (pause && refused) {
    const from = pause.t - 150;
    const to = refused.t + 150;
    y = zoomOn(p, out, y, from, to, pause.t, '#7f3fbf', `zoom on ${fmtSpan(to - from)}: w${pause.worker} frozen while holding the lock, its lease runs out, its late write is refused`);
  }
  // A failover or a slot migration: from the moment it was asked for to a little after it was done.
  const ends: Partial<Record<DemoEvent['kind'], DemoEvent['kind']>> = { failover: 'switched', migrate: 'moved' };
  for (const b of p.events.filter((e) => ends[e.kind] !== undefined)) {
    const e = p.events.find((x) => x.kind === ends[b.kind] && x.t >= b.t);
    if (!e) continue;
    const from = b.t - 100;
    const to = e.t + 250;
    y = zoomOn(p, out, y, from, to, b.t, EVENT_COLOR[b.kind], `zoom on ${fmtSpan(to - from)}: ${b.short} -> ${e.short}`, [b, e]);
  }
  out.push('</g>');
  return { svg: out.join('\n'), height: y - top + 16 };
}

const ELECTION_LANE = 18;
const VIEW_LANE = 11;

/**
 * An election scene: a lane per service (the wait in the queue as a thin line, each term as a bar with
 * its heartbeats as ticks, a killed leader's cross and the rest of its lease hatched), then a lane per
 * observing process: whom it saw leading, from each observation to the next.
 */
function electionPanel(p: ElectionPanel, top: number): { svg: string; height: number } {
  const s = scale(0, p.durationMs);
  const color = (service: string): string => COLORS[Math.max(0, p.services.indexOf(service)) % COLORS.length]!;
  const out: string[] = [`<g ${FONT}>`];
  let y = top;
  out.push(`<text x="${LEFT - 50}" y="${y + 14}" font-size="15" font-weight="bold" fill="#111">${esc(p.title)}</text>`);
  y += 30;
  out.push(`<text x="${LEFT - 50}" y="${y}" font-size="11" fill="#444">${esc('A bar is a term (its number on it; ticks: heartbeats); a thin line: waiting in the queue; the cross: SIGKILL; hatched: the dead leader\'s lease.')}</text>`);
  const labelTop = y + 18;
  y += 44;
  const lanesTop = y;
  p.services.forEach((name, i) => {
    const ly = y + i * ELECTION_LANE;
    out.push(`<rect x="${LEFT}" y="${ly}" width="${PLOT}" height="${ELECTION_LANE}" fill="${i % 2 ? '#fafafa' : '#f2f2f2'}"/>`);
    out.push(`<text x="${LEFT - 8}" y="${ly + 12}" text-anchor="end" font-size="10" fill="#333">${esc(name)}</text>`);
  });
  const laneY = (service: string): number => y + Math.max(0, p.services.indexOf(service)) * ELECTION_LANE;
  for (const c of p.candidacies) {
    const x1 = s.x(c.from);
    const x2 = s.x(c.to ?? p.durationMs);
    const my = laneY(c.service) + ELECTION_LANE / 2;
    out.push(`<line x1="${n(x1)}" y1="${my}" x2="${n(Math.max(x1 + 1, x2))}" y2="${my}" stroke="${color(c.service)}" stroke-width="1.5" opacity="0.7"><title>${esc(`${c.service} campaigns from ${(c.from / 1000).toFixed(2)} s`)}</title></line>`);
  }
  for (const t of p.terms) {
    const ly = laneY(t.service) + 2;
    const h = ELECTION_LANE - 4;
    const stop = t.end ?? p.durationMs;
    const x = s.x(t.start);
    const width = Math.max(1, s.x(stop) - x);
    const tip = `${t.service} led term ${t.fence} from ${(t.start / 1000).toFixed(3)} s to ${(stop / 1000).toFixed(3)} s (${t.how}); ${t.beats.length} heartbeats` +
      (t.how === 'killed' ? `; its lease ran on to ${(t.validUntil / 1000).toFixed(3)} s` : '');
    out.push(`<rect x="${n(x)}" y="${ly}" width="${n(width)}" height="${h}" fill="${color(t.service)}"><title>${esc(tip)}</title></rect>`);
    let lastTick = -Infinity;
    for (const b of t.beats) {
      const bx = s.x(b);
      if (bx - lastTick < 4) continue;
      lastTick = bx;
      out.push(`<line x1="${n(bx)}" y1="${ly + h - 4}" x2="${n(bx)}" y2="${ly + h}" stroke="#fff" stroke-width="1"/>`);
    }
    const label = `term ${termLabel(t.fence)}`;
    if (textWidth(label, 10) + 6 < width) out.push(`<text x="${n(x + 3)}" y="${ly + 10}" font-size="10" fill="#fff">${esc(label)}<title>${esc(tip)}</title></text>`);
    if (t.how === 'killed') {
      const lx = s.x(stop);
      out.push(`<rect x="${n(lx)}" y="${ly}" width="${n(Math.max(1, s.x(t.validUntil) - lx))}" height="${h}" fill="url(#dead)" stroke="#888" stroke-width="0.6"><title>${esc(`${t.service}'s lease after its SIGKILL: nobody may lead until ${(t.validUntil / 1000).toFixed(3)} s`)}</title></rect>`);
      out.push(`<path d="M${n(lx - 5)},${ly - 1} l10,${h + 2} m0,-${h + 2} l-10,${h + 2}" stroke="#d62728" stroke-width="2"/>`);
    }
  }
  y += p.services.length * ELECTION_LANE + 10;
  out.push(`<text x="${LEFT}" y="${y + 8}" font-size="11" font-weight="bold" fill="#333">who each process saw leading</text>`);
  y += 14;
  const viewLanes = [...new Set(p.views.map((v) => v.lane))].sort((a, b) => (a === OBSERVER ? -1 : b === OBSERVER ? 1 : a.localeCompare(b)));
  viewLanes.forEach((lane, i) => {
    const ly = y + i * VIEW_LANE;
    out.push(`<rect x="${LEFT}" y="${ly}" width="${PLOT}" height="${VIEW_LANE}" fill="${i % 2 ? '#fafafa' : '#f2f2f2'}"/>`);
    out.push(`<text x="${LEFT - 8}" y="${ly + 9}" text-anchor="end" font-size="9" fill="#333">${esc(lane)}</text>`);
  });
  for (const v of p.views) {
    const ly = y + viewLanes.indexOf(v.lane) * VIEW_LANE + 1;
    v.seen.forEach((o, i) => {
      const from = o.t;
      const to = v.seen[i + 1]?.t ?? v.to ?? p.durationMs;
      const x = s.x(from);
      const width = Math.max(1, s.x(to) - x);
      const who = o.seen ? `${o.seen.value} (term ${o.seen.fence})` : 'no leader';
      const tip = `${v.who} saw ${who} from ${(from / 1000).toFixed(3)} s`;
      const fill = o.seen ? color(o.seen.value) : '#dddddd';
      out.push(`<rect x="${n(x)}" y="${ly}" width="${n(width)}" height="${VIEW_LANE - 2}" fill="${fill}" opacity="${o.seen ? 0.6 : 1}"><title>${esc(tip)}</title></rect>`);
      const label = o.seen ? o.seen.value : 'no leader';
      if (textWidth(label, 8) + 4 < width) out.push(`<text x="${n(x + 2)}" y="${ly + 7.5}" font-size="8" fill="#222">${esc(label)}</text>`);
    });
    if (v.killed) out.push(`<path d="M${n(s.x(v.to!) - 3)},${ly} l6,${VIEW_LANE - 2} m0,-${VIEW_LANE - 2} l-6,${VIEW_LANE - 2}" stroke="#d62728" stroke-width="1.5"/>`);
  }
  y += viewLanes.length * VIEW_LANE;
  out.push(eventLines(p.events, s, lanesTop, y - lanesTop, labelTop, 2));
  y += 6;
  out.push(axis(s, y, 's'));
  y += 24;
  out.push('</g>');
  return { svg: out.join('\n'), height: y - top + 16 };
}

function fmtSpan(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

export function timelineSvg(panels: Panel[], subtitle: string, elections: ElectionPanel[] = []): string {
  const parts: string[] = [];
  let y = 16;
  const head = [
    `<text x="${LEFT - 50}" y="${y + 16}" font-size="18" font-weight="bold" fill="#111" ${FONT}>wirelock demo: who held the lock when${elections.length ? ', and who led' : ''}</text>`,
    `<text x="${LEFT - 50}" y="${y + 36}" font-size="11" fill="#444" ${FONT}>${esc(subtitle)}</text>`,
    `<text x="${LEFT - 50}" y="${y + 52}" font-size="11" fill="#444" ${FONT}>${esc('One lane per worker process; each bar is one hold (hover for its fence). Hatched red: a hold past its lease; the cross is its refused write.')}</text>`,
  ];
  y += 70;
  for (const p of panels) {
    const { svg, height } = panel(p, y);
    parts.push(svg);
    y += height;
  }
  for (const p of elections) {
    const { svg, height } = electionPanel(p, y);
    parts.push(svg);
    y += height;
  }
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}">`,
    `<defs><pattern id="late" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fde0e0"/><line x1="0" y1="0" x2="0" y2="6" stroke="#d62728" stroke-width="2"/></pattern>` +
      `<pattern id="dead" width="5" height="5" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="5" height="5" fill="#f4f4f4"/><line x1="0" y1="0" x2="0" y2="5" stroke="#888" stroke-width="1.6"/></pattern></defs>`,
    `<rect width="${W}" height="${y}" fill="#fff"/>`,
    ...head,
    ...parts,
    `</svg>`,
    '',
  ].join('\n');
}
