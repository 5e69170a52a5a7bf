/**
 * The benchmark runner: `npm run bench [-- options]`.
 *
 * Parses the command line, runs the chosen scenarios one after another with
 * progress on stderr, prints a table per scenario and the targets table on
 * stdout, writes the raw results to bench/results/bench-<time>.json (and
 * latest.json) and the charts to bench/results/*.svg. A full default run also
 * copies the charts to docs/ for the README.
 *
 * Exit code 1 when a scenario failed; with --quick also when a scenario did
 * not run or produced a figure that is not a finite positive number. Speeds
 * are never asserted.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runEviction } from './eviction.js';
import { runMemory } from './memory.js';
import { sink, type BenchConfig, type ScenarioContext } from './measure.js';
import { runOps } from './ops.js';
import { runCapacity } from './capacity.js';
import { runRedisTier } from './redis-tier.js';
import {
  formatScenario, formatTargets, newScenario, nonPositiveFigures, writeResults,
  type ScenarioResult, type SuiteResults,
} from './report.js';
import { drawThreadsChart, runScaling } from './scaling.js';
import { drawShardsChart, runShardSweep } from './shard-sweep.js';
import { evaluateTargets } from './targets.js';
import { VALUE_KINDS, parseValueKinds } from './values.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RESULTS_DIR = path.join(ROOT, 'bench', 'results');
const DOCS_DIR = path.join(ROOT, 'docs');
/** Charts the README embeds: bench/results/<name>.svg → docs/<name>.svg. */
const DOCS_CHARTS = ['bench-threads', 'bench-shards'];

interface Scenario {
  name: string;
  about: string;
  run(ctx: ScenarioContext): Promise<ScenarioResult>;
}

const SCENARIOS: Scenario[] = [
  { name: 'ops', about: 'get hit/miss, set, 90/10 mixed on one thread vs lru-cache and Map', run: runOps },
  { name: 'scaling', about: '1..N piscina threads sharing one cache vs an lru-cache per thread', run: (ctx) => runScaling(ctx, RESULTS_DIR) },
  { name: 'shards', about: 'one thread at shard counts 1, 2, 4, … 4 × cores', run: (ctx) => runShardSweep(ctx, RESULTS_DIR) },
  { name: 'capacity', about: 'entries a 64 MiB budget holds, per value kind, vs lru-cache heap per entry', run: runCapacity },
  { name: 'memory', about: 'millions of ~100 B objects: heap, RSS, GC, event-loop delay (child processes)', run: runMemory },
  { name: 'eviction', about: 'hit ratio on the ARC traces (maxEntries: W-TinyLFU; default: CLOCK) vs lru-cache and ARC; cost of counting reads', run: runEviction },
  { name: 'redis', about: 'the Redis tier (needs --redis URL; a stub for now)', run: runRedisTier },
];

const cores = os.availableParallelism();

const USAGE = `Usage: npm run bench [-- options]

  --quick               small key counts and short timings (< 1 min); asserts every
                        scenario ran and produced finite positive numbers (what CI runs)
  --scenario LIST       comma-separated, from: ${SCENARIOS.map((s) => s.name).join(', ')} (default: all)
  --threads LIST        thread counts for "scaling" (default: 1,2,4)
  --shards LIST         shard counts for "shards" (default: 1,2,4,…,${4 * cores}); also makes
                        "scaling" run at each of these shard counts
  --runs N              repetitions of every measurement; tables show medians (default: 3, quick: 1)
  --time MS             tinybench time budget per task and repetition (default: 1000, quick: 100)
  --keys N              keys in ops/scaling/shards (default: 100000, quick: 20000)
  --values LIST         value kinds for "ops", from: ${VALUE_KINDS.join(', ')} (default: all)
  --memory-entries N    objects in "memory" (default: 2000000, quick: 200000)
  --redis URL           Redis for the "redis" scenario (loopback only)
  --charts-from FILE    measure nothing: redraw the charts from a results JSON
                        (to docs/ too when that file is from a full default run)
  --help

Scenarios:
${SCENARIOS.map((s) => `  ${s.name.padEnd(9)} ${s.about}`).join('\n')}
`;

function parseList(name: string, text: string): number[] {
  const values = text.split(',').map((s) => Number(s.trim()));
  if (values.length === 0 || values.some((v) => !Number.isInteger(v) || v < 1 || v > 256)) {
    throw new UsageError(`--${name} must be a comma-separated list of integers from 1 to 256 (got ${JSON.stringify(text)})`);
  }
  return [...new Set(values)].sort((a, b) => a - b);
}

function parseCount(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new UsageError(`--${name} must be an integer of at least ${min} (got ${JSON.stringify(text)})`);
  return value;
}

class UsageError extends Error {}

interface Cli {
  /** --charts-from: redraw charts from this results file instead of measuring. */
  chartsFrom: string | undefined;
  config: BenchConfig;
  scenarios: Scenario[];
  /** Nothing narrowed or shortened: this run may refresh the charts in docs/. */
  isDefaultFullRun: boolean;
  args: string[];
}

function parseCli(argv: string[]): Cli {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: 'boolean', default: false },
      scenario: { type: 'string' },
      threads: { type: 'string' },
      shards: { type: 'string' },
      runs: { type: 'string' },
      time: { type: 'string' },
      keys: { type: 'string' },
      values: { type: 'string' },
      'memory-entries': { type: 'string' },
      redis: { type: 'string' },
      'charts-from': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const quick = values.quick;
  let scenarios = SCENARIOS;
  if (values.scenario !== undefined) {
    const names = values.scenario.split(',').map((s) => s.trim()).filter(Boolean);
    for (const name of names) {
      if (!SCENARIOS.some((s) => s.name === name)) throw new UsageError(`--scenario: unknown scenario ${JSON.stringify(name)} (expected ${SCENARIOS.map((s) => s.name).join(', ')})`);
    }
    scenarios = SCENARIOS.filter((s) => names.includes(s.name));
  }
  const defaultShards: number[] = [];
  for (let s = 1; s <= 4 * cores; s *= 2) defaultShards.push(s);
  const shards = values.shards === undefined ? defaultShards : parseList('shards', values.shards);
  const redisUrl = values.redis;
  if (redisUrl !== undefined && !/^rediss?:\/\//.test(redisUrl)) throw new UsageError(`--redis must be a redis:// URL (got ${JSON.stringify(redisUrl)})`);

  const config: BenchConfig = {
    quick,
    runs: parseCount('runs', values.runs, quick ? 1 : 3, 1),
    timeMs: parseCount('time', values.time, quick ? 100 : 1000, 10),
    warmupMs: quick ? 30 : 250,
    keyCount: parseCount('keys', values.keys, quick ? 20_000 : 100_000, 1000),
    valueKinds: values.values === undefined ? [...VALUE_KINDS] : parseValueKinds(values.values),
    threads: values.threads === undefined ? [1, 2, 4] : parseList('threads', values.threads),
    shards,
    scalingShards: values.shards === undefined ? undefined : shards,
    memoryEntries: parseCount('memory-entries', values['memory-entries'], quick ? 200_000 : 2_000_000, 1000),
    memoryLoadMs: quick ? 1500 : 10_000,
    redisUrl,
  };
  if (config.valueKinds.length === 0) throw new UsageError('--values: give at least one value kind');
  const narrowed = ['scenario', 'threads', 'shards', 'runs', 'time', 'keys', 'values', 'memory-entries'].some((k) => values[k as keyof typeof values] !== undefined);
  return { chartsFrom: values['charts-from'], config, scenarios, isDefaultFullRun: !quick && !narrowed, args: argv };
}

// ---- progress --------------------------------------------------------------

/** One status line on a terminal (rewritten in place); one line per step otherwise (CI logs). */
function makeProgress(index: number, count: number, name: string, startedAt: number): ScenarioContext['progress'] {
  const tty = process.stderr.isTTY === true;
  let lastLine = '';
  return (done, total, label) => {
    const pct = total > 0 ? Math.floor((100 * done) / total) : 100;
    const elapsed = ((performance.now() - startedAt) / 1000).toFixed(0);
    const line = `[${index}/${count} ${name}] ${done}/${total} ${String(pct).padStart(3)}% ${elapsed}s · ${label}`;
    if (line === lastLine) return;
    lastLine = line;
    if (tty) {
      const width = process.stderr.columns ?? 120;
      process.stderr.write(`\r\x1b[K${line.length > width - 1 ? `${line.slice(0, width - 2)}…` : line}`);
      if (done === total) process.stderr.write('\n');
    } else {
      process.stderr.write(`${line}\n`);
    }
  };
}

// ---- charts ----------------------------------------------------------------

/** Copies the README's charts from bench/results/ to docs/. */
function copyDocsCharts(charts: string[]): void {
  mkdirSync(DOCS_DIR, { recursive: true });
  for (const name of DOCS_CHARTS) {
    const from = charts.find((f) => path.basename(f) === `${name}.svg`);
    if (from === undefined) continue;
    const to = path.join(DOCS_DIR, `${name}.svg`);
    copyFileSync(from, to);
    process.stdout.write(`docs chart: ${path.relative(process.cwd(), to)}\n`);
  }
}

/** --charts-from: the charts of a saved run, without measuring anything. */
async function redrawCharts(file: string): Promise<number> {
  const suite = JSON.parse(readFileSync(file, 'utf8')) as SuiteResults;
  const meta = suite.meta as { defaultFullRun?: boolean; command?: string; machine?: { cores?: number }; config?: { keyCount?: number } };
  const charts: string[] = [];
  for (const result of suite.scenarios) {
    if (result.status !== 'ok') continue;
    // Files written before `settings` existed: take them from the run's meta.
    result.settings ??= {};
    result.settings.keys ??= meta.config?.keyCount ?? '?';
    result.settings.cores ??= meta.machine?.cores ?? '?';
    if (result.name === 'scaling') charts.push(...(await drawThreadsChart(result, RESULTS_DIR)));
    if (result.name === 'shards') charts.push(...(await drawShardsChart(result, RESULTS_DIR)));
  }
  for (const chart of charts) process.stdout.write(`chart: ${path.relative(process.cwd(), chart)}\n`);
  if (charts.length === 0) {
    process.stderr.write(`${file}: no scaling or shards results to draw\n`);
    return 1;
  }
  // `npm run bench` with no arguments is a full default run (files older than `defaultFullRun`).
  if (meta.defaultFullRun ?? meta.command === 'npm run bench') copyDocsCharts(charts);
  else process.stdout.write('(not a full default run: docs/ left as it is)\n');
  return 0;
}

// ---- main ------------------------------------------------------------------

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

function stampOf(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
}

async function main(): Promise<number> {
  let cli: Cli;
  try {
    cli = parseCli(process.argv.slice(2));
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
      return 2;
    }
    throw error;
  }
  if (cli.chartsFrom !== undefined) return redrawCharts(cli.chartsFrom);
  const { config, scenarios } = cli;
  const started = new Date();
  const suiteStart = performance.now();
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  // The machine is shared: the load average says how busy it was (1.0 = one core's worth).
  const loadAtStart = os.loadavg();
  process.stdout.write(
    `shardcache bench · ${config.quick ? 'quick' : 'full'} · ${scenarios.map((s) => s.name).join(', ')}\n` +
      `${cpu}, ${cores} cores, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB, load ${loadAtStart[0]!.toFixed(2)} · Node ${process.versions.node} · ` +
      `lru-cache ${packageVersion('lru-cache')} · msgpackr ${packageVersion('msgpackr')} · tinybench ${packageVersion('tinybench')}\n` +
      `${config.runs} run(s) × ${config.timeMs} ms per task, batches of 1000 operations\n\n`,
  );

  const results: ScenarioResult[] = [];
  const failures: string[] = [];
  for (const [i, scenario] of scenarios.entries()) {
    const ctx: ScenarioContext = {
      config,
      progress: makeProgress(i + 1, scenarios.length, scenario.name, performance.now()),
      note: (message) => process.stderr.write(`  ${message}\n`),
    };
    const scenarioStart = performance.now();
    let result: ScenarioResult;
    try {
      result = await scenario.run(ctx);
    } catch (error) {
      process.stderr.write('\n');
      const message = `${scenario.name}: failed: ${(error as Error)?.stack ?? String(error)}`;
      failures.push(message);
      process.stderr.write(`${message}\n`);
      result = newScenario(scenario.name, scenario.name, undefined, []);
      result.status = 'skipped';
      result.notes.push(`FAILED: ${(error as Error)?.message ?? String(error)}`);
    }
    const seconds = ((performance.now() - scenarioStart) / 1000).toFixed(1);
    results.push(result);
    process.stdout.write(`${formatScenario(result, config.runs)}\n  (${seconds} s)\n\n`);
  }

  if (config.quick) {
    for (const scenario of scenarios) {
      const result = results.find((r) => r.name === scenario.name);
      if (result === undefined) failures.push(`${scenario.name}: did not run`);
      else if (result.status === 'ok') failures.push(...nonPositiveFigures(result));
      else if (scenario.name !== 'redis' && !failures.some((f) => f.startsWith(`${scenario.name}:`))) failures.push(`${scenario.name}: skipped`);
    }
  }

  const targets = evaluateTargets(results);
  if (targets.length > 0) process.stdout.write(`${formatTargets(targets, config.quick)}\n\n`);

  const suite: SuiteResults = {
    meta: {
      startedAt: started.toISOString(),
      durationSec: (performance.now() - suiteStart) / 1000,
      mode: config.quick ? 'quick' : 'full',
      command: `npm run bench${cli.args.length > 0 ? ` -- ${cli.args.join(' ')}` : ''}`,
      defaultFullRun: cli.isDefaultFullRun,
      config,
      machine: { cpu, cores, totalMemBytes: os.totalmem(), platform: `${os.platform()} ${os.release()}`, arch: os.arch() },
      loadAverage: { atStart: loadAtStart, atEnd: os.loadavg() },
      versions: {
        node: process.versions.node,
        v8: process.versions.v8,
        'lru-cache': packageVersion('lru-cache'),
        msgpackr: packageVersion('msgpackr'),
        tinybench: packageVersion('tinybench'),
        piscina: packageVersion('piscina'),
      },
      commit: gitCommit(),
      sink,
    },
    scenarios: results,
    targets,
    failures,
  };
  const file = writeResults(RESULTS_DIR, suite, stampOf(started));
  process.stdout.write(`raw results: ${path.relative(process.cwd(), file)}\n`);

  const charts = results.flatMap((r) => r.files);
  if (cli.isDefaultFullRun && failures.length === 0) copyDocsCharts(charts);

  if (failures.length > 0) {
    process.stderr.write(`\n${failures.length} problem(s):\n${failures.map((f) => `  - ${f.split('\n')[0]}`).join('\n')}\n`);
    return 1;
  }
  process.stdout.write(`done in ${((performance.now() - suiteStart) / 1000).toFixed(0)} s (load average ${os.loadavg()[0]!.toFixed(2)} at the end)\n`);
  return 0;
}

// shardcache's owner threads are unref()'d, and `await cache.close()` waits
// for them to exit: with nothing else holding the event loop, Node would end
// the process (exit code 0) in the middle of that await. Hold it until done.
const keepAlive = setInterval(() => {}, 1 << 30);

main().then(
  (code) => {
    clearInterval(keepAlive);
    process.exit(code);
  },
  (error: unknown) => {
    process.stderr.write(`${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(1);
  },
);
