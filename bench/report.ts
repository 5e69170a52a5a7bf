/**
 * Results: the shape every scenario returns, medians and ratios, the text
 * tables, and the raw JSON file under bench/results/.
 *
 * A row is one subject (shardcache, lru-cache, Map, …) in one comparison
 * (its `group`). Each row keeps every repetition's figures; repetition i of
 * every row in a group was measured in the same pass, close in time, so a
 * ratio is taken per repetition and the table shows the median of those.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { median } from './measure.js';

export type Metrics = Record<string, number>;

export interface Row {
  /** The comparison this row belongs to; rows with the same group are compared. */
  group: string;
  subject: string;
  params: Record<string, string | number>;
  /** One entry per repetition, aligned across the rows of a group. */
  runs: Metrics[];
  median: Metrics;
  /** Per metric: median over repetitions of (this row / the group's baseline row). */
  vsBaseline: Metrics;
}

export type Format = 'ops' | 'ns' | 'bytes' | 'ms' | 's' | 'ratio' | 'count' | 'pct';

export interface Column {
  header: string;
  metric: string;
  format: Format;
  /** Show the ratio to the baseline for `metric` instead of the value. */
  ratio?: boolean;
}

export interface ScenarioResult {
  name: string;
  title: string;
  status: 'ok' | 'skipped';
  /** Why it was skipped, or what to know when reading it. */
  notes: string[];
  /** The subject each group is measured against (e.g. lru-cache). */
  baseline: string | undefined;
  /** Params shown as columns, in order. */
  paramColumns: string[];
  columns: Column[];
  rows: Row[];
  /** Files this scenario wrote (charts). */
  files: string[];
  /** Metrics that may legitimately be 0 (e.g. no GC in a short window). */
  zeroOk: string[];
  /** What the scenario ran with (keys, cores, …), for charts redrawn from the JSON. */
  settings: Record<string, number | string>;
}

export interface TargetResult {
  name: string;
  /** What is compared, e.g. "shardcache get / lru-cache get". */
  measure: string;
  target: number;
  /** Whether `actual` must be at least (`>=`) or at most (`<=`) the target. */
  direction: '>=' | '<=';
  actual: number;
  pass: boolean;
}

export interface SuiteResults {
  meta: Record<string, unknown>;
  scenarios: ScenarioResult[];
  targets: TargetResult[];
  failures: string[];
}

/** Adds a row; medians and ratios are filled in by `finishScenario`. */
export function addRow(result: ScenarioResult, group: string, subject: string, params: Record<string, string | number> = {}): Row {
  const row: Row = { group, subject, params, runs: [], median: {}, vsBaseline: {} };
  result.rows.push(row);
  return row;
}

export function newScenario(name: string, title: string, baseline: string | undefined, columns: Column[], paramColumns: string[] = []): ScenarioResult {
  return { name, title, status: 'ok', notes: [], baseline, paramColumns, columns, rows: [], files: [], zeroOk: [], settings: {} };
}

/** Computes every row's medians and its per-repetition ratios to the group's baseline. */
export function finishScenario(result: ScenarioResult): ScenarioResult {
  for (const row of result.rows) {
    const metrics = new Set(row.runs.flatMap((run) => Object.keys(run)));
    for (const metric of metrics) {
      row.median[metric] = median(row.runs.map((run) => run[metric]).filter((v): v is number => v !== undefined));
    }
  }
  if (result.baseline === undefined) return result;
  for (const row of result.rows) {
    const base = result.rows.find((r) => r.group === row.group && r.subject === result.baseline);
    if (base === undefined) continue;
    for (const metric of Object.keys(row.median)) {
      const ratios: number[] = [];
      for (let i = 0; i < row.runs.length; i++) {
        const a = row.runs[i]?.[metric];
        const b = base.runs[i]?.[metric];
        if (a !== undefined && b !== undefined && b !== 0) ratios.push(a / b);
      }
      if (ratios.length > 0) row.vsBaseline[metric] = median(ratios);
    }
  }
  return result;
}

// ---- text ------------------------------------------------------------------

export function formatValue(value: number | undefined, format: Format): string {
  if (value === undefined || Number.isNaN(value)) return '–';
  switch (format) {
    case 'ops':
      return value >= 1e6 ? `${(value / 1e6).toFixed(2)} M` : value >= 1e3 ? `${(value / 1e3).toFixed(1)} k` : value.toFixed(0);
    case 'ns':
      return value >= 1e6 ? `${(value / 1e6).toFixed(2)} ms` : value >= 1e3 ? `${(value / 1e3).toFixed(2)} µs` : `${value.toFixed(0)} ns`;
    case 'bytes':
      return value >= 1024 ** 3 ? `${(value / 1024 ** 3).toFixed(2)} GiB` : `${(value / 1024 ** 2).toFixed(1)} MiB`;
    case 'ms':
      return value >= 100 ? `${value.toFixed(0)} ms` : `${value.toFixed(2)} ms`;
    case 's':
      return `${value.toFixed(1)} s`;
    case 'ratio':
      return `${value.toFixed(2)}×`;
    case 'count':
      return value.toFixed(0);
    case 'pct':
      return `${value.toFixed(2)} %`;
  }
}

/** A plain text table; numbers right-aligned, text left-aligned. */
export function textTable(headers: string[], body: string[][], numeric: boolean[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] ?? '').length)));
  const pad = (cell: string, i: number) => (numeric[i] ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!));
  const line = (cells: string[]) => `  ${cells.map(pad).join('  ')}`.trimEnd();
  return [line(headers), line(widths.map((w) => '─'.repeat(w))), ...body.map(line)].join('\n');
}

export function formatScenario(result: ScenarioResult, runs: number): string {
  const heading = `▌ ${result.title}`;
  if (result.status === 'skipped') return [heading, ...result.notes.map((n) => `  ${n}`)].join('\n');
  const headers = ['case', 'subject', ...result.paramColumns, ...result.columns.map((c) => c.header)];
  const numeric = headers.map((_, i) => i >= 2);
  const body: string[][] = [];
  let lastGroup = '';
  for (const row of result.rows) {
    body.push([
      row.group === lastGroup ? '' : row.group,
      row.subject,
      ...result.paramColumns.map((p) => String(row.params[p] ?? '')),
      ...result.columns.map((c) => {
        if (!c.ratio) return formatValue(row.median[c.metric], c.format);
        return row.subject === result.baseline ? '1.00×' : formatValue(row.vsBaseline[c.metric], 'ratio');
      }),
    ]);
    lastGroup = row.group;
  }
  const lines = [heading, ...result.notes.map((n) => `  ${n}`), textTable(headers, body, numeric)];
  lines.push(`  (medians of ${runs} run${runs === 1 ? '' : 's'}; ratios are medians of per-run ratios)`);
  if (result.files.length > 0) lines.push(...result.files.map((f) => `  chart: ${f}`));
  return lines.join('\n');
}

export function formatTargets(targets: TargetResult[], quick: boolean): string {
  const headers = ['target', 'measure', 'goal', 'actual', 'result'];
  const body = targets.map((t) => [
    t.name,
    t.measure,
    `${t.direction} ${t.target.toFixed(2)}×`,
    Number.isFinite(t.actual) ? `${t.actual.toFixed(2)}×` : '–',
    t.pass ? 'PASS' : 'MISS',
  ]);
  const lines = ['▌ targets (from the issue)', textTable(headers, body, [false, false, true, true, false])];
  if (quick) lines.push('  (--quick: small key counts and short timings; indicative only, never asserted)');
  return lines.join('\n');
}

// ---- JSON ------------------------------------------------------------------

/** Writes the raw results; returns the file's path. */
export function writeResults(dir: string, results: SuiteResults, stamp: string): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `bench-${stamp}.json`);
  const text = `${JSON.stringify(results, null, 2)}\n`;
  writeFileSync(file, text);
  writeFileSync(path.join(dir, 'latest.json'), text);
  return file;
}

/** Every number in every row that should be a finite positive figure, with where it is. */
export function nonPositiveFigures(result: ScenarioResult): string[] {
  const problems: string[] = [];
  for (const row of result.rows) {
    if (row.runs.length === 0) problems.push(`${result.name}: ${row.group} / ${row.subject}: no runs`);
    for (const [metric, value] of Object.entries(row.median)) {
      const ok = Number.isFinite(value) && (value > 0 || (value === 0 && result.zeroOk.includes(metric)));
      if (!ok) problems.push(`${result.name}: ${row.group} / ${row.subject}: ${metric} = ${value}`);
    }
  }
  if (result.status === 'ok' && result.rows.length === 0) problems.push(`${result.name}: produced no rows`);
  return problems;
}
