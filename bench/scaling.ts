/**
 * Scenario "scaling": 1..N threads of a real piscina pool reading ONE
 * shardcache (each thread attaches with `ShardCache.attach(handle)`), against
 * the same threads each holding its own lru-cache copy of the data.
 *
 * - uniform keys, shardcache with `nearCache: 0`: every read goes to shared
 *   memory, so this is the path whose scaling the striped seqlocks decide.
 * - Zipf keys, shardcache with its default near cache: each thread serves hot
 *   keys from its own decoded copies.
 *
 * Throughput is the sum over threads (their timed windows start together at a
 * barrier and have the same budget). "× 1 thread" compares with the same
 * subject on one thread in the same run. Memory is what the N threads hold for
 * their cache: for lru-cache the N copies' heap growth; for shardcache the
 * shared bytes (once) plus each thread's heap growth (near cache, queues).
 */
import os from 'node:os';
import { Piscina } from 'piscina';
import { ShardCache } from '../src/shard-cache.js';
import type { Distribution } from './keys.js';
import { makeKeys } from './keys.js';
import { median, type ScenarioContext } from './measure.js';
import { addRow, finishScenario, newScenario, type Row, type ScenarioResult } from './report.js';
import { makeValue, VALUE_LABEL, type ValueKind } from './values.js';
import { drawLineChart, type ChartPoint } from './chart.js';
import type { ScalingReply, ScalingSubject, ScalingTask } from './workers/scaling-worker.js';

const WORKER_URL = new URL('./workers/scaling-worker.js', import.meta.url);
/** The library's default budget: the index is sized to it, so it is what the shared memory figure counts. */
const CACHE_BYTES = 64 * 1024 * 1024;
/** The value kind of this scenario: the ~100-byte object, the typical cached record. */
const VALUE_KIND: ValueKind = 'object';

interface Variant {
  distribution: Distribution;
  subject: ScalingSubject;
  /** For shardcache. */
  nearCache?: number;
  label: string;
}

const VARIANTS: Variant[] = [
  { distribution: 'uniform', subject: 'shardcache', nearCache: 0, label: 'shardcache (nearCache 0)' },
  { distribution: 'uniform', subject: 'lru-cache', label: 'lru-cache' },
  { distribution: 'zipf', subject: 'shardcache', label: 'shardcache (near cache)' },
  { distribution: 'zipf', subject: 'lru-cache', label: 'lru-cache' },
];

export function scalingGroup(distribution: Distribution, threads: number): string {
  return `${distribution === 'zipf' ? 'Zipf' : 'uniform'} · ${threads} thread${threads === 1 ? '' : 's'}`;
}

export async function runScaling(ctx: ScenarioContext, resultsDir: string): Promise<ScenarioResult> {
  const { config } = ctx;
  const threadCounts = [...config.threads].sort((a, b) => a - b);
  const shardCounts = config.scalingShards ?? [os.availableParallelism()];
  const oneThread = threadCounts[0]!;
  const result = newScenario(
    'scaling',
    'scaling — N threads of a piscina pool: one shared shardcache vs an lru-cache per thread',
    'lru-cache',
    [
      { header: 'ops/s (all)', metric: 'opsPerSec', format: 'ops' },
      { header: 'p50/op', metric: 'p50Ns', format: 'ns' },
      { header: 'p99/op', metric: 'p99Ns', format: 'ns' },
      { header: `× ${oneThread} thread${oneThread === 1 ? '' : 's'}`, metric: 'speedup', format: 'ratio' },
      { header: '× lru-cache', metric: 'opsPerSec', format: 'ratio', ratio: true },
      { header: 'memory', metric: 'memoryBytes', format: 'bytes' },
    ],
    ['shards'],
  );
  result.settings = { keys: config.keyCount, cores: os.availableParallelism(), value: VALUE_KIND };
  result.notes.push(
    `${config.keyCount} keys of ${VALUE_LABEL[VALUE_KIND]}; ${os.availableParallelism()} cores; p50/p99 are medians over threads`,
    'memory: lru-cache = heap of the N copies; shardcache = shared bytes once + each thread\'s heap (near cache)',
  );

  // One cache per (shard count, near-cache setting), filled once, shared by every round.
  const caches = new Map<string, ShardCache>();
  const cacheFor = async (shards: number, nearCache: number | undefined): Promise<ShardCache> => {
    const id = `${shards}:${nearCache ?? 'default'}`;
    let cache = caches.get(id);
    if (cache === undefined) {
      cache = await ShardCache.create({ shards, maxBytes: CACHE_BYTES, ...(nearCache === undefined ? {} : { nearCache }) });
      const keys = makeKeys(config.keyCount);
      for (let i = 0; i < keys.length; i++) cache.set(keys[i]!, makeValue(VALUE_KIND, i));
      await cache.settled();
      caches.set(id, cache);
    }
    return cache;
  };

  // Rows in display order; the lru-cache rows do not depend on the shard count.
  const rows = new Map<string, Row>();
  const rowId = (v: Variant, threads: number, shards: number) => `${v.distribution}:${v.label}:${threads}:${v.subject === 'lru-cache' ? '-' : shards}`;
  for (const v of VARIANTS) {
    for (const threads of threadCounts) {
      for (const shards of v.subject === 'lru-cache' ? [0] : shardCounts) {
        const id = rowId(v, threads, shards);
        if (rows.has(id)) continue;
        const params: Record<string, string | number> = { threads, distribution: v.distribution };
        if (v.subject === 'shardcache') params.shards = shards;
        rows.set(id, addRow(result, scalingGroup(v.distribution, threads), v.subject === 'lru-cache' ? 'lru-cache' : v.label, params));
      }
    }
  }
  // Rows sorted by group so each group's rows print together.
  result.rows.sort((a, b) => groupOrder(a) - groupOrder(b));

  const pools = new Map<number, Piscina<ScalingTask, ScalingReply | null>>();
  for (const threads of threadCounts) {
    pools.set(threads, new Piscina({ filename: WORKER_URL.href, minThreads: threads, maxThreads: threads, idleTimeout: 600_000, concurrentTasksPerWorker: 1 }));
  }

  const rounds: { v: Variant; shards: number }[] = [];
  for (const v of VARIANTS) for (const shards of v.subject === 'lru-cache' ? [0] : shardCounts) rounds.push({ v, shards });
  const total = config.runs * threadCounts.length * rounds.length;
  let done = 0;
  try {
    for (let run = 0; run < config.runs; run++) {
      for (const { v, shards } of rounds) {
        const cache = v.subject === 'shardcache' ? await cacheFor(shards, v.nearCache) : undefined;
        const perThreads = new Map<number, number>();
        for (const threads of threadCounts) {
          const where = v.subject === 'shardcache' ? `, ${shards} shards` : '';
          ctx.progress(done, total, `${v.label}${where} · ${v.distribution} · ${threads} thread(s) · run ${run + 1}/${config.runs}`);
          const replies = await round(pools.get(threads)!, threads, {
            op: 'read',
            subject: v.subject,
            handle: cache?.handle,
            keyCount: config.keyCount,
            valueKind: VALUE_KIND,
            distribution: v.distribution,
            timeMs: config.timeMs,
            warmupMs: config.warmupMs,
          });
          const opsPerSec = replies.reduce((sum, r) => sum + r.opsPerSec, 0);
          perThreads.set(threads, opsPerSec);
          const heap = replies.reduce((sum, r) => sum + r.heapBytes, 0);
          const memoryBytes = cache ? cache.stats().bytesUsed + heap : heap;
          rows.get(rowId(v, threads, shards))!.runs.push({
            opsPerSec,
            p50Ns: median(replies.map((r) => r.p50Ns)),
            p99Ns: median(replies.map((r) => r.p99Ns)),
            speedup: opsPerSec / perThreads.get(oneThread)!,
            memoryBytes,
          });
          done++;
        }
      }
    }
  } finally {
    await Promise.all(
      [...pools].map(async ([threads, pool]) => {
        await round(pool, threads, { op: 'detach', subject: 'shardcache', keyCount: 0, valueKind: VALUE_KIND, distribution: 'uniform', timeMs: 0, warmupMs: 0 }).catch(() => undefined);
        await pool.destroy();
      }),
    );
    for (const cache of caches.values()) await cache.close();
  }
  ctx.progress(total, total, 'done');
  finishScenario(result);

  result.files.push(...(await drawThreadsChart(result, resultsDir)));
  return result;
}

/** Throughput vs threads, from the scenario's rows (also used to redraw from a saved JSON). */
export async function drawThreadsChart(result: ScenarioResult, dir: string): Promise<string[]> {
  const shardCounts = new Set(result.rows.map((r) => r.params.shards).filter((s) => s !== undefined));
  const points: ChartPoint[] = result.rows.map((row) => ({
    x: Number(row.params.threads),
    y: row.median.opsPerSec!,
    series: row.params.distribution === 'zipf' ? 'Zipf (near cache on)' : 'uniform (nearCache 0)',
    library: row.subject === 'lru-cache' ? 'lru-cache (a copy per thread)' : `shardcache${shardCounts.size > 1 ? `, ${row.params.shards} shards` : ' (one, shared)'}`,
  }));
  return drawLineChart(dir, 'bench-threads', {
    title: `Reads from N threads (${result.settings.keys} keys, ${result.settings.cores} cores)`,
    subtitle: 'all threads together; shardcache near cache on for Zipf, off for uniform; log scale',
    xTitle: 'threads',
    yTitle: 'gets per second (log)',
    points,
    logY: true,
  });
}

function groupOrder(row: Row): number {
  return (row.params.distribution === 'zipf' ? 1000 : 0) + Number(row.params.threads);
}

/** Runs one task on each of `threads` pool threads at once and returns their replies. */
async function round(
  pool: Piscina<ScalingTask, ScalingReply | null>,
  threads: number,
  task: Omit<ScalingTask, 'barrier' | 'threads'>,
): Promise<ScalingReply[]> {
  const barrier = new SharedArrayBuffer(4);
  const replies = await Promise.all(Array.from({ length: threads }, () => pool.run({ ...task, barrier, threads })));
  const out = replies.filter((r): r is ScalingReply => r !== null);
  if (task.op === 'read' && new Set(out.map((r) => r.threadId)).size !== threads) {
    throw new Error(`scaling: ${threads} tasks ran on ${new Set(out.map((r) => r.threadId)).size} distinct threads`);
  }
  return out;
}
