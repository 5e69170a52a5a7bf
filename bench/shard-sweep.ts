/**
 * Scenario "shards": the same single-thread workload at shard counts 1, 2, 4,
 * … 4 × cores, against lru-cache measured in the same run.
 *
 * Each shard is owned by one worker thread, so the shard count is also the
 * number of owner threads. Reads never involve the owners (they read shared
 * memory on the calling thread); writes are applied by the owners, so what the
 * shard count changes is write throughput, and how many threads compete for
 * the cores with the caller. See bench/README.md, "Reading the shard sweep".
 * The caches use `nearCache: 0`, so every get reads the shard.
 */
import os from 'node:os';
import { LRUCache } from 'lru-cache';
import { ShardCache } from '../src/shard-cache.js';
import { drawLineChart, type ChartPoint } from './chart.js';
import { KeyCursor, indices, makeKeys } from './keys.js';
import { BATCH, consume, measureBatch, type ScenarioContext } from './measure.js';
import { addRow, finishScenario, newScenario, type Row, type ScenarioResult } from './report.js';
import { POOL_SIZE, VALUE_LABEL, valuePool } from './values.js';

const POOL_MASK = POOL_SIZE - 1;
const CACHE_BYTES = 128 * 1024 * 1024;

export const SWEEP_GROUPS = {
  get: 'get hit · shared memory · uniform',
  set: 'set · until settled · uniform',
  mixed: 'mixed 90/10 · uniform',
} as const;
type Op = keyof typeof SWEEP_GROUPS;
const OPS: Op[] = ['get', 'set', 'mixed'];

export async function runShardSweep(ctx: ScenarioContext, resultsDir: string): Promise<ScenarioResult> {
  const { config } = ctx;
  const shardCounts = [...config.shards].sort((a, b) => a - b);
  const result = newScenario(
    'shards',
    'shards — one thread, shardcache at each shard count (nearCache 0)',
    'lru-cache',
    [
      { header: 'ops/s', metric: 'opsPerSec', format: 'ops' },
      { header: 'p50/op', metric: 'p50Ns', format: 'ns' },
      { header: 'p99/op', metric: 'p99Ns', format: 'ns' },
      { header: '× lru-cache', metric: 'opsPerSec', format: 'ratio', ratio: true },
    ],
    ['shards'],
  );
  result.settings = { keys: config.keyCount, cores: os.availableParallelism(), value: 'object' };
  result.notes.push(`${config.keyCount} keys of ${VALUE_LABEL.object}; ${os.availableParallelism()} cores; one owner thread per shard`);

  const keys = makeKeys(config.keyCount);
  const uniform = indices('uniform', config.keyCount);
  const pool = valuePool('object') as NonNullable<unknown>[];

  const lru = new LRUCache<string, NonNullable<unknown>>({ max: config.keyCount });
  for (let i = 0; i < keys.length; i++) lru.set(keys[i]!, pool[i & POOL_MASK]!);

  const total = config.runs * OPS.length * (shardCounts.length + 1);
  let done = 0;
  ctx.progress(done, total, `creating caches with ${shardCounts.join(', ')} shards`);
  const caches: ShardCache[] = [];
  const rows = new Map<string, Row>();
  try {
    for (const shards of shardCounts) {
      const cache = await ShardCache.create({ shards, maxBytes: CACHE_BYTES, nearCache: 0 });
      caches.push(cache);
      for (let i = 0; i < keys.length; i++) cache.set(keys[i]!, pool[i & POOL_MASK]);
      await cache.settled();
    }
    for (const op of OPS) {
      rows.set(`${op}:lru`, addRow(result, SWEEP_GROUPS[op], 'lru-cache'));
      for (const shards of shardCounts) rows.set(`${op}:${shards}`, addRow(result, SWEEP_GROUPS[op], 'shardcache', { shards }));
    }

    for (let run = 0; run < config.runs; run++) {
      for (const op of OPS) {
        const subjects: { id: string; label: string; fn: () => unknown; after?: () => Promise<void> }[] = [
          { id: `${op}:lru`, label: 'lru-cache', fn: lruTask(op, lru, keys, uniform, pool) },
          ...caches.map((cache, i) => ({
            id: `${op}:${shardCounts[i]}`,
            label: `shardcache, ${shardCounts[i]} shards`,
            fn: shardTask(op, cache, keys, uniform, pool),
            after: () => cache.settled(),
          })),
        ];
        for (const s of subjects) {
          ctx.progress(done, total, `${SWEEP_GROUPS[op]} · ${s.label} · run ${run + 1}/${config.runs}`);
          const figures = await measureBatch(s.label, s.fn, { timeMs: config.timeMs, warmupMs: config.warmupMs });
          if (s.after) await s.after();
          rows.get(s.id)!.runs.push({ opsPerSec: figures.opsPerSec, p50Ns: figures.p50Ns, p99Ns: figures.p99Ns });
          done++;
        }
      }
    }
  } finally {
    for (const cache of caches) await cache.close();
  }
  ctx.progress(total, total, 'done');
  finishScenario(result);

  result.files.push(...(await drawShardsChart(result, resultsDir)));
  return result;
}

/** Throughput vs shard count, from the scenario's rows (also used to redraw from a saved JSON). */
export async function drawShardsChart(result: ScenarioResult, dir: string): Promise<string[]> {
  const shardCounts = [...new Set(result.rows.map((r) => r.params.shards).filter((s) => s !== undefined))];
  const points: ChartPoint[] = [];
  for (const op of OPS) {
    const rows = result.rows.filter((r) => r.group === SWEEP_GROUPS[op]);
    const base = rows.find((r) => r.subject === 'lru-cache');
    for (const row of rows) {
      if (row.subject === 'lru-cache') continue;
      points.push({ x: Number(row.params.shards), y: row.median.opsPerSec!, series: op, library: 'shardcache' });
    }
    if (base) for (const shards of shardCounts) points.push({ x: Number(shards), y: base.median.opsPerSec!, series: op, library: 'lru-cache (same run, no shards)' });
  }
  return drawLineChart(dir, 'bench-shards', {
    title: `One thread vs shard count (${result.settings.keys} keys, ${result.settings.cores} cores)`,
    subtitle: 'one owner thread per shard; log scale',
    xTitle: 'shards',
    yTitle: 'operations per second (log)',
    points,
    logY: true,
  });
}

/** Each call makes a fresh cursor, so every subject walks the same sequence from the start. */
function shardTask(op: Op, cache: ShardCache, keys: string[], choice: Uint32Array, pool: unknown[]): () => unknown {
  const cursor = new KeyCursor(keys, choice);
  /** Batches so far: sets store pool[(k + round) % POOL_SIZE], a value that differs from the stored one. */
  let round = 0;
  switch (op) {
    case 'get':
      return () => {
        let n = 0;
        for (let i = 0; i < BATCH; i++) if (cache.get(cursor.next()) !== undefined) n++;
        consume(n);
      };
    case 'set':
      return async () => {
        round++;
        for (let i = 0; i < BATCH; i++) {
          const k = cursor.nextIndex();
          cache.set(keys[k]!, pool[(k + round) & POOL_MASK]);
        }
        await cache.settled();
      };
    case 'mixed':
      return () => {
        round++;
        let n = 0;
        for (let i = 0; i < BATCH; i++) {
          const k = cursor.nextIndex();
          if (i % 10 === 9) cache.set(keys[k]!, pool[(k + round) & POOL_MASK]);
          else if (cache.get(keys[k]!) !== undefined) n++;
        }
        consume(n);
      };
  }
}

function lruTask(op: Op, lru: LRUCache<string, NonNullable<unknown>>, keys: string[], choice: Uint32Array, pool: NonNullable<unknown>[]): () => unknown {
  const cursor = new KeyCursor(keys, choice);
  let round = 0;
  switch (op) {
    case 'get':
      return () => {
        let n = 0;
        for (let i = 0; i < BATCH; i++) if (lru.get(cursor.next()) !== undefined) n++;
        consume(n);
      };
    case 'set':
      return () => {
        round++;
        for (let i = 0; i < BATCH; i++) {
          const k = cursor.nextIndex();
          lru.set(keys[k]!, pool[(k + round) & POOL_MASK]!);
        }
      };
    case 'mixed':
      return () => {
        round++;
        let n = 0;
        for (let i = 0; i < BATCH; i++) {
          const k = cursor.nextIndex();
          if (i % 10 === 9) lru.set(keys[k]!, pool[(k + round) & POOL_MASK]!);
          else if (lru.get(keys[k]!) !== undefined) n++;
        }
        consume(n);
      };
  }
}
