// Spending per day and model as a stacked bar chart in plain SVG. Heights use the decimals
// as numbers, which is fine for pixels; every amount shown as text is the server's exact
// decimal string.

import type { DailySpend } from './api';

const SVG = 'http://www.w3.org/2000/svg';
const PALETTE = ['#4f6df5', '#f08a24', '#2bb673', '#d6457a', '#8a63d2', '#1aa3b8'];
const WIDTH = 960;
const HEIGHT = 180;
const LEFT = 56;
const BOTTOM = 24;
const TOP = 8;

/** A colour per model, stable for a given set of model names. */
export function modelColours(models: string[]): Map<string, string> {
  const sorted = [...new Set(models)].sort();
  return new Map(sorted.map((model, i) => [model, PALETTE[i % PALETTE.length]]));
}

/** The `days` dates from `start` (YYYY-MM-DD, UTC), in order. */
export function dateRange(start: string, days: number): string[] {
  const first = Date.parse(`${start}T00:00:00Z`);
  return Array.from({ length: days }, (_, i) =>
    new Date(first + i * 86_400_000).toISOString().slice(0, 10),
  );
}

/** A round axis maximum at or above `value`: 1, 2 or 5 times a power of ten. */
export function niceCeiling(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  const step = [1, 2, 5, 10].find((m) => m * power >= value) ?? 10;
  return step * power;
}

function element<K extends keyof SVGElementTagNameMap>(
  name: K,
  attributes: Record<string, string | number>,
  text?: string,
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

export function spendChart(daily: DailySpend[], start: string, days: number): SVGSVGElement {
  const dates = dateRange(start, days);
  const colours = modelColours(daily.map((d) => d.model));
  const perDay = new Map<string, DailySpend[]>();
  for (const row of daily) perDay.set(row.date, [...(perDay.get(row.date) ?? []), row]);
  const dayTotal = (rows: DailySpend[]) => rows.reduce((sum, r) => sum + Number(r.cost_decimal), 0);
  const top = niceCeiling(Math.max(0, ...[...perDay.values()].map(dayTotal)));
  const plotHeight = HEIGHT - TOP - BOTTOM;
  const slot = (WIDTH - LEFT) / days;
  const y = (amount: number) => TOP + plotHeight - (amount / top) * plotHeight;

  const svg = element('svg', {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: 'img',
    'aria-label': `Spend per day and model, last ${days} days`,
    class: 'chart',
  });
  for (const fraction of [0, 0.5, 1]) {
    const amount = top * fraction;
    svg.append(
      element('line', { x1: LEFT, x2: WIDTH, y1: y(amount), y2: y(amount), class: 'grid' }),
      element('text', { x: LEFT - 6, y: y(amount) + 4, 'text-anchor': 'end', class: 'axis' },
        `$${amount.toFixed(amount < 1 ? 2 : 0)}`),
    );
  }
  dates.forEach((date, i) => {
    const x = LEFT + i * slot;
    let base = 0;
    for (const row of perDay.get(date) ?? []) {
      const amount = Number(row.cost_decimal);
      const bar = element('rect', {
        x: x + slot * 0.15,
        width: slot * 0.7,
        y: y(base + amount),
        height: Math.max(1, y(base) - y(base + amount)),
        fill: colours.get(row.model) ?? PALETTE[0],
        'data-model': row.model,
        'data-date': date,
      });
      bar.append(element('title', {}, `${date} · ${row.model}: $${row.cost_decimal} (${row.requests} tasks)`));
      svg.append(bar);
      base += amount;
    }
    if (i % 5 === 0 || i === days - 1) {
      svg.append(
        element('text', {
          x: x + slot / 2,
          y: HEIGHT - 6,
          'text-anchor': i === days - 1 ? 'end' : 'middle',
          class: 'axis',
        }, date.slice(5)),
      );
    }
  });
  return svg;
}
