/**
 * Scenario "eviction": hit ratio of the shard's eviction on the two ARC-paper
 * traces shipped in bench/traces/, per trace and cache size, against lru-cache
 * (exact LRU) and ARC (simulated by bench/arc.ts), all on the same requests in
 * the same run; and what the frequency counting costs `get` and `set`.
 *
 * Subjects:
 * - "shardcache maxEntries": a shard with maxEntries = the size, so W-TinyLFU
 *   decides (src/memory/eviction-policy.ts). The arena has room to spare, so
 *   the entry bound binds first.
 * - "shardcache maxBytes": no maxEntries, the arena sized so that exactly the
 *   size fits: CLOCK over the ring arena, the default configuration.
 * - "shardcache API": the maxEntries configuration through the public
 *   `ShardCache` (one shard, its owner on its own thread, readers' counts
 *   reaching it through shared memory), for the sizes where that takes seconds.
 *
 * The first two drive a ShardWriter directly on this thread (no owner thread,
 * no timing): per request a `get` (counted into the sketch, hit or miss, as
 * ShardCache.get counts it), and on a miss a `set`. Keys are `p:<block>` (at
 * most 11 one-byte code units) with a 9-byte value: at most 56-byte entries.
 * The API replay does the same with `get` and `set`, awaiting `settled()`
 * every SETTLE_EVERY requests, so the owner runs a little behind, as it does
 * in a service.
 *
 * Cost: get (hit from shared memory, hit from the near cache, miss) and set
 * (of new keys into a full cache, so every set evicts), with and without
 * maxEntries, on the same keys, interleaved per run; the notes give the
 * medians of per-run ratios.
 *
 * Traces and ARC: Megiddo & Modha, "ARC: A Self-Tuning, Low Overhead
 * Replacement Cache", USENIX FAST '03. TinyLFU: Einziger, Friedman, Manes,
 * "TinyLFU: A Highly Efficient Cache Admission Policy", ACM ToS 2017.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decompress } from 'fzstd';
import { LRUCache } from 'lru-cache';
import { encode } from '../src/codec.js';
import { hashKey } from '../src/hash.js';
import { BYTES_PER_SLOT, HEADER_BYTES, MIN_SHARD_BYTES, SLOT_BYTES, STRIPES, createShardBuffer, entryBytes, shardGeometry } from '../src/memory/layout.js';
import { NOT_FOUND, Scratch } from '../src/memory/shard-view.js';
import { ShardWriter } from '../src/memory/shard-writer.js';
import { OP_SET, RingConsumer, RingProducer, createRing, recordBytes } from '../src/memory/write-queue.js';
import { ShardCache } from '../src/shard-cache.js';
import { ArcSimulator } from './arc.js';
import { makeKeys, makeMissKeys, indices, KeyCursor } from './keys.js';
import { BATCH, consume, measureBatch, median, type ScenarioContext } from './measure.js';
import { addRow, finishScenario, newScenario, type ScenarioResult } from './report.js';
import { valuePool } from './values.js';

/** The traces ship in the repository; this file runs as dist/bench/eviction.js. */
const TRACES_DIR = new URL('../../bench/traces/', import.meta.url);

/**
 * Cache sizes, the hit ratios the traces' README gives for LRU and ARC, and
 * whether the public-API replay runs at that size (it takes a few seconds per
 * million requests). P3 at 262 144 is informational: no goal there.
 */
const CASES: { trace: string; capacity: number; lru: number; arc: number; api: boolean }[] = [
  { trace: 'OLTP', capacity: 1_000, lru: 32.83, arc: 38.95, api: true },
  { trace: 'OLTP', capacity: 5_000, lru: 53.65, arc: 55.25, api: true },
  { trace: 'OLTP', capacity: 15_000, lru: 64.63, arc: 65.40, api: true },
  { trace: 'P3', capacity: 16_384, lru: 2.07, arc: 7.0, api: true },
  { trace: 'P3', capacity: 65_536, lru: 12.72, arc: 26.89, api: true },
  { trace: 'P3', capacity: 262_144, lru: 65.12, arc: 67.57, api: false },
];

const VALUE = encode('xxxxxxxx');
/** Requests between `await settled()` in the public-API replay. */
const SETTLE_EVERY = 4096;

/** Expands a trace into its page numbers (each line: start count ignored request). */
function loadTrace(name: string, limit: number): Uint32Array {
  const file = fileURLToPath(new URL(`${name}.lis.zst`, TRACES_DIR));
  const text = Buffer.from(decompress(readFileSync(file))).toString('latin1');
  const pages: number[] = [];
  for (const line of text.split('\n')) {
    const [start, count] = line.trim().split(/\s+/).map(Number);
    if (start === undefined || count === undefined || !Number.isFinite(start) || !Number.isFinite(count)) continue;
    for (let i = 0; i < count && pages.length < limit; i++) pages.push(start + i);
    if (pages.length >= limit) break;
  }
  return Uint32Array.from(pages);
}

/** Smallest shard whose arena holds `capacity` 56-byte entries (no maxEntries). */
function shardBytesFor(capacity: number): number {
  const need = capacity * entryBytes(11, VALUE.length);
  let total = Math.ceil((need + HEADER_BYTES + STRIPES * 4) / (1 - SLOT_BYTES / BYTES_PER_SLOT) / 8) * 8;
  while (shardGeometry(total).arenaBytes < need) total += 64;
  return total;
}

/** A shard with maxEntries = `capacity` whose arena has room for twice as many entries: the entry bound binds. */
function boundedShardBytesFor(capacity: number): number {
  const need = 2 * capacity * entryBytes(11, VALUE.length);
  let total = Math.max(MIN_SHARD_BYTES, shardBytesFor(2 * capacity));
  while (shardGeometry(total, capacity).arenaBytes < need) total += 4096;
  return total;
}

function replayShard(pages: Uint32Array, sab: SharedArrayBuffer): number {
  const writer = new ShardWriter(sab);
  const ringSab = createRing(1 << 16);
  const producer = new RingProducer(ringSab);
  const consumer = new RingConsumer(ringSab);
  const scratch = new Scratch();
  const sketch = writer.sketch;
  let hits = 0;
  for (let r = 0; r < pages.length; r++) {
    const key = `p:${pages[r]}`;
    const hash = hashKey(key);
    const found = writer.read(key, hash, 0, scratch) !== NOT_FOUND;
    // What ShardCache.get does: count the read, hit or miss, and mark a hit's slot.
    sketch?.increment(hash);
    if (found) {
      writer.touch(writer.foundSlot);
      hits++;
      continue;
    }
    const size = recordBytes(key.length, VALUE.length);
    const at = producer.tryReserve(size);
    producer.writeRecord(at, OP_SET, hash, key, VALUE, 0, 0);
    producer.publish();
    const offset = consumer.next();
    writer.apply(consumer, offset);
    consumer.done(offset);
  }
  return (100 * hits) / pages.length;
}

/** The same requests through the public API: one shard, its owner on its thread. */
async function replayApi(pages: Uint32Array, capacity: number, nearCache: boolean): Promise<number> {
  const options = { shards: 1, maxEntries: capacity, maxBytes: boundedShardBytesFor(capacity) };
  // Without a near cache every read reaches the sketch; with the default one, hits it serves count one in eight.
  const cache = await ShardCache.create(nearCache ? options : { ...options, nearCache: 0 });
  try {
    let hits = 0;
    for (let r = 0; r < pages.length; r++) {
      const key = `p:${pages[r]}`;
      if (cache.get(key) !== undefined) hits++;
      else cache.set(key, 'xxxxxxxx');
      if (r % SETTLE_EVERY === SETTLE_EVERY - 1) await cache.settled();
    }
    return (100 * hits) / pages.length;
  } finally {
    await cache.close();
  }
}

function replayLru(pages: Uint32Array, capacity: number): number {
  const lru = new LRUCache<string, number>({ max: capacity });
  let hits = 0;
  for (let r = 0; r < pages.length; r++) {
    const key = `p:${pages[r]}`;
    if (lru.get(key) !== undefined) hits++;
    else lru.set(key, 1);
  }
  return (100 * hits) / pages.length;
}

function replayArc(pages: Uint32Array, capacity: number): number {
  const arc = new ArcSimulator(capacity);
  let hits = 0;
  for (let r = 0; r < pages.length; r++) if (arc.request(pages[r]!)) hits++;
  return (100 * hits) / pages.length;
}

export async function runEviction(ctx: ScenarioContext): Promise<ScenarioResult> {
  const result = newScenario(
    'eviction',
    'eviction — hit ratio on the ARC traces (%), and the cost of counting reads; lru-cache, ARC replayed in the same run',
    'lru-cache',
    [
      { header: 'hit ratio', metric: 'hitPct', format: 'pct' },
      { header: '× lru-cache', metric: 'hitPct', format: 'ratio', ratio: true },
      { header: 'per op', metric: 'nsPerOp', format: 'ns' },
    ],
    ['trace', 'capacity'],
  );
  result.notes.push('"maxEntries": W-TinyLFU (a shard with maxEntries = capacity); "maxBytes": CLOCK (the default, bytes only); "API": maxEntries through ShardCache (1 shard, owner thread, nearCache 0; "near": the default near cache)');
  // --quick replays a prefix of each trace: the figures then differ from the README's.
  const limit = ctx.config.quick ? 100_000 : Infinity;
  const cases = ctx.config.quick ? CASES.filter((c) => c.capacity <= 5_000) : CASES;
  const traces = new Map<string, Uint32Array>();
  const steps = cases.length + 1;
  let done = 0;
  for (const c of cases) {
    ctx.progress(done++, steps, `${c.trace} at ${c.capacity} entries`);
    let pages = traces.get(c.trace);
    if (!pages) traces.set(c.trace, (pages = loadTrace(c.trace, limit)));
    const group = `${c.trace} ${c.capacity}`;
    const params = { trace: c.trace, capacity: c.capacity };
    addRow(result, group, 'shardcache maxEntries', params).runs.push({ hitPct: replayShard(pages, createShardBuffer(boundedShardBytesFor(c.capacity), c.capacity)) });
    if (c.api && (!ctx.config.quick || c.capacity === 1_000)) {
      addRow(result, group, 'shardcache API', params).runs.push({ hitPct: await replayApi(pages, c.capacity, false) });
      if (c.trace === 'OLTP') addRow(result, group, 'shardcache API near', params).runs.push({ hitPct: await replayApi(pages, c.capacity, true) });
    }
    addRow(result, group, 'shardcache maxBytes', params).runs.push({ hitPct: replayShard(pages, createShardBuffer(shardBytesFor(c.capacity))) });
    addRow(result, group, 'ARC', params).runs.push({ hitPct: replayArc(pages, c.capacity) });
    addRow(result, group, 'lru-cache', params).runs.push({ hitPct: replayLru(pages, c.capacity) });
    if (!ctx.config.quick) result.notes.push(`${group}: published LRU ${c.lru}%, ARC ${c.arc}%`);
  }
  ctx.progress(done++, steps, 'cost of counting reads');
  await measureCost(ctx, result);
  ctx.progress(steps, steps, 'done');
  return finishScenario(result);
}

/**
 * What counting reads into the sketch (and admission on the owner) costs:
 * the same operations on two caches that differ only in maxEntries.
 */
async function measureCost(ctx: ScenarioContext, result: ScenarioResult): Promise<void> {
  const { config } = ctx;
  const n = config.keyCount;
  const keys = makeKeys(n);
  const missKeys = makeMissKeys(n);
  const uniform = indices('uniform', n);
  const zipf = indices('zipf', n);
  const pool = valuePool('object');
  const mask = pool.length - 1;
  const maxBytes = 64 * 1024 * 1024;
  const timing = { timeMs: config.timeMs, warmupMs: config.warmupMs };
  const ratios = new Map<string, number[]>();

  /** Times `task` on a cache without and one with maxEntries, alternating, config.runs times. */
  async function compare(label: string, options: { nearCache: number; maxEntries: number; maxBytes: number; fill: number }, task: (cache: ShardCache) => () => unknown): Promise<void> {
    const plain = await ShardCache.create({ maxBytes: options.maxBytes, nearCache: options.nearCache });
    const bounded = await ShardCache.create({ maxBytes: options.maxBytes, nearCache: options.nearCache, maxEntries: options.maxEntries });
    try {
      for (const cache of [plain, bounded]) {
        for (let i = 0; i < options.fill; i++) cache.set(keys[i % n]!, pool[i & mask]);
        await cache.settled();
      }
      const group = `cost: ${label}`;
      const rows = [addRow(result, group, 'shardcache maxBytes'), addRow(result, group, 'shardcache maxEntries')];
      const fns = [task(plain), task(bounded)];
      const perRun: number[] = [];
      for (let run = 0; run < config.runs; run++) {
        const ns: number[] = [];
        for (let k = 0; k < 2; k++) {
          const figures = await measureBatch(`${group} ${rows[k]!.subject}`, fns[k]!, timing);
          ns.push(1e9 / figures.opsPerSec);
          rows[k]!.runs.push({ nsPerOp: ns[k]! });
        }
        perRun.push(ns[1]! / ns[0]!);
      }
      ratios.set(label, perRun);
    } finally {
      await plain.close();
      await bounded.close();
    }
  }

  // Hits and misses from shared memory: every get counts into the sketch. The
  // bound leaves room for every key (shards split it, not always evenly).
  const roomy = { nearCache: 0, maxEntries: 2 * n, maxBytes, fill: n };
  await compare('get hit · shared memory (nearCache 0) · uniform', roomy, (cache) => {
    const cursor = new KeyCursor(keys, uniform);
    return () => {
      let hits = 0;
      for (let i = 0; i < BATCH; i++) if (cache.get(cursor.next()) !== undefined) hits++;
      consume(hits);
    };
  });
  await compare('get miss · uniform', roomy, (cache) => {
    const cursor = new KeyCursor(missKeys, uniform);
    return () => {
      let hits = 0;
      for (let i = 0; i < BATCH; i++) if (cache.get(cursor.next()) !== undefined) hits++;
      consume(hits);
    };
  });
  // Near-cache hits count one in eight.
  await compare('get hit · near cache warm · Zipf', { ...roomy, nearCache: n }, (cache) => {
    const cursor = new KeyCursor(keys, zipf);
    return () => {
      let hits = 0;
      for (let i = 0; i < BATCH; i++) if (cache.get(cursor.next()) !== undefined) hits++;
      consume(hits);
    };
  });
  // Sets of keys never seen into a full cache, until settled: every set evicts
  // (by CLOCK over the arena, or by admission against the bound).
  const full = { nearCache: 0, maxEntries: n / 2, maxBytes: 8 * 1024 * 1024, fill: n };
  let fresh = 0;
  await compare('set new keys · full cache, until settled', full, (cache) => async () => {
    for (let i = 0; i < BATCH; i++) cache.set(`new:${fresh++}`, pool[i & mask]);
    await cache.settled();
  });
  for (const [label, perRun] of ratios) {
    result.notes.push(`cost, ${label}: maxEntries / maxBytes only = ${median(perRun).toFixed(2)}× (median of ${perRun.length} per-run ratios)`);
  }
}
