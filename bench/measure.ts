/**
 * The measuring method every scenario shares (see bench/README.md, "Method").
 *
 * One tinybench task iteration runs a whole batch of operations (1000 by
 * default), because a single cache operation (0.2–2 µs) is close to the cost
 * and the resolution of the clock. Per-operation figures are the iteration's
 * figures divided by the batch: ops/s = batch / mean iteration time; p50/p99
 * are percentiles of the per-batch mean, so they show the spread of batches
 * (GC pauses, a busy neighbour), not the tail of single operations.
 */
import { runInNewContext } from 'node:vm';
import v8 from 'node:v8';
import { Bench } from 'tinybench';
import type { ValueKind } from './values.js';

/** Operations per timed iteration. */
export const BATCH = 1000;

/** Everything the CLI decided; scenarios read it and nothing else. */
export interface BenchConfig {
  quick: boolean;
  /** Repetitions of each measurement; tables show medians. */
  runs: number;
  /** tinybench time budget per task and repetition, ms. */
  timeMs: number;
  warmupMs: number;
  keyCount: number;
  valueKinds: ValueKind[];
  /** Thread counts for the scaling scenario. */
  threads: number[];
  /** Shard counts for the shard sweep. */
  shards: number[];
  /** Shard counts for the scaling scenario (given with --shards), or the default only. */
  scalingShards: number[] | undefined;
  /** Entries in the memory scenario. */
  memoryEntries: number;
  /** Duration of the memory scenario's mixed load, ms. */
  memoryLoadMs: number;
  redisUrl: string | undefined;
}

export interface ScenarioContext {
  config: BenchConfig;
  /** Reports how far the scenario is: `done` of `total` steps, and what runs now. */
  progress(done: number, total: number, label: string): void;
  /** A line worth keeping in the output (shown above the table). */
  note(message: string): void;
}

export interface BatchFigures {
  opsPerSec: number;
  /** Median per-operation latency, ns (median batch time / batch). */
  p50Ns: number;
  /** 99th percentile per-operation latency, ns (p99 batch time / batch). */
  p99Ns: number;
  /** Timed iterations (batches) behind the figures. */
  samples: number;
}

export interface MeasureOptions {
  timeMs: number;
  warmupMs: number;
  batch?: number;
}

/**
 * Times `fn` (one batch of operations per call) with tinybench and returns
 * per-operation figures. `fn` may return a promise (e.g. a batch of sets
 * followed by `await cache.settled()`); its wait is part of the time.
 */
export async function measureBatch(name: string, fn: () => unknown, options: MeasureOptions): Promise<BatchFigures> {
  const batch = options.batch ?? BATCH;
  collectGarbage();
  const bench = new Bench({
    name,
    time: options.timeMs,
    warmupTime: options.warmupMs,
    iterations: 16,
    warmupIterations: 4,
    throws: true,
  });
  bench.add(name, fn);
  await bench.run();
  const result = bench.tasks[0]!.result;
  if (result.state !== 'completed') {
    const cause = result.state === 'errored' ? result.error : undefined;
    throw new Error(`task ${name} ended in state ${result.state}`, { cause });
  }
  const latency = result.latency; // ms per batch
  return {
    opsPerSec: (batch * 1000) / latency.mean,
    p50Ns: (latency.p50 * 1e6) / batch,
    p99Ns: (latency.p99 * 1e6) / batch,
    samples: latency.samplesCount,
  };
}

let gc: (() => void) | undefined;

/**
 * A full GC between measurements, so one task's garbage is not collected on
 * the next task's clock. Works without `--expose-gc` on the command line.
 */
export function collectGarbage(): void {
  if (gc === undefined) {
    v8.setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Consumes values so the JIT cannot drop the work that produced them. */
export let sink = 0;
export function consume(n: number): void {
  sink = (sink + n) | 0;
}
