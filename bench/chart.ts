/**
 * Charts: a Vega-Lite line chart per scenario, compiled to Vega and rendered
 * to SVG headlessly (renderer 'none' needs no canvas or browser).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export interface ChartPoint {
  x: number;
  y: number;
  /** Colour: what is measured (an operation, a workload). */
  series: string;
  /** Line style: which library (shardcache solid, the baseline dashed). */
  library: string;
}

export interface LineChart {
  title: string;
  subtitle?: string;
  xTitle: string;
  yTitle: string;
  points: ChartPoint[];
  /** Log scale on y, when the lines differ by orders of magnitude. */
  logY?: boolean;
}

/** Renders `chart` to `<dir>/<name>.svg`; returns the paths written. */
export async function drawLineChart(dir: string, name: string, chart: LineChart): Promise<string[]> {
  const xs = [...new Set(chart.points.map((p) => p.x))].sort((a, b) => a - b);
  const libraries = [...new Set(chart.points.map((p) => p.library))];
  const values = chart.points.map((p) => ({ ...p, line: `${p.series} / ${p.library}` }));
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: chart.title, ...(chart.subtitle ? { subtitle: chart.subtitle } : {}) },
    width: 480,
    height: 300,
    background: 'white',
    padding: 12,
    data: { values },
    mark: { type: 'line', point: true, strokeWidth: 2 },
    encoding: {
      // Ordinal: the measured counts (1, 2, 4, 8…) evenly spaced and labelled exactly.
      x: { field: 'x', type: 'ordinal', title: chart.xTitle, sort: xs, axis: { labelAngle: 0 } },
      y: {
        field: 'y',
        type: 'quantitative',
        title: chart.yTitle,
        axis: { format: '~s' },
        scale: chart.logY ? { type: 'log' } : { zero: true },
      },
      color: { field: 'series', type: 'nominal', title: 'measured', legend: { orient: 'right', labelLimit: 260, symbolType: 'circle' } },
      strokeDash: {
        field: 'library',
        type: 'nominal',
        title: 'library',
        sort: libraries,
        legend: { orient: 'right', labelLimit: 260, symbolType: 'stroke', symbolStrokeWidth: 2, symbolSize: 400 },
      },
      detail: { field: 'line', type: 'nominal' },
    },
    config: { font: 'sans-serif' },
  };
  const compiled = compile(spec).spec;
  // The lines' colour comes from `series`, so the dash legend's symbols get no
  // stroke of their own and would be invisible: give them one.
  for (const legend of compiled.legends ?? []) {
    if (legend.strokeDash !== undefined) legend.encode = { ...legend.encode, symbols: { update: { stroke: { value: '#444' } } } };
  }
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.svg`);
  writeFileSync(file, svg);
  return [file];
}
