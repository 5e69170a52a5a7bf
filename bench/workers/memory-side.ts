/**
 * One side of the memory scenario, run in a fresh child process so the two
 * sides never share a heap, a GC history or a page cache of the other:
 *
 *   node --expose-gc memory-side.js <shardcache|lru-cache> <entries> <loadMs> <opsPerSec>
 *
 * 1. Fill: `entries` distinct ~100-byte objects under `user:<id>` keys. Keys
 *    are made on the fly, never kept in an array, so the heap holds what the
 *    cache holds and nothing the harness needs.
 * 2. Weigh: main-thread heap used and RSS after full GCs; the time of one
 *    forced full GC.
 * 3. Load: a steady mixed load (90% get on Zipf keys, 10% set of fresh
 *    objects) offered at a fixed rate for `loadMs`, in 1 ms ticks, while
 *    `monitorEventLoopDelay` records how late the event loop runs. A fixed
 *    rate, not "as fast as possible", so both sides do the same work per tick
 *    and the delay shows pauses (GC), not how long a busy loop was made to be.
 * 4. Weigh again, then report to the parent over IPC.
 *
 * GC pauses are every 'gc' PerformanceEntry's duration, summed per phase.
 */
import { PerformanceObserver, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { LRUCache } from 'lru-cache';
import { ShardCache } from '../../src/shard-cache.js';
import { CHOICE_MASK, zipfIndices } from '../keys.js';
import { makeObject } from '../values.js';

export type MemorySide = 'shardcache' | 'lru-cache';

export interface MemoryReport {
  side: MemorySide;
  entries: number;
  /** Entries the cache held after the fill (must equal `entries`). */
  held: number;
  fillSec: number;
  heapUsedBytes: number;
  rssBytes: number;
  /** After the load (near cache and write queues in use). */
  heapUsedAfterLoadBytes: number;
  rssAfterLoadBytes: number;
  /** Off-heap memory the cache reserved (SharedArrayBuffers), for shardcache. */
  sharedBytes: number;
  forcedFullGcMs: number;
  gcFillMs: number;
  gcLoadMs: number;
  gcLoadMaxPauseMs: number;
  eldP50Ms: number;
  eldP99Ms: number;
  eldMaxMs: number;
  loadOps: number;
  offeredOpsPerSec: number;
}

const FIRST_ID = 1_000_000;
const FILL_CHUNK = 10_000;
/** Shard budget: ~170 B of arena per entry (32 B header, 16 B key, ~100 B value) plus the index's 25 %. */
const BYTES_PER_ENTRY = 320;
/** Ticks that could not keep up give up their backlog beyond this, instead of spiralling. */
const MAX_OPS_PER_TICK = 20_000;

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('memory-side: run with --expose-gc');

const [side, entriesArg, loadMsArg, rateArg] = process.argv.slice(2);
if (side !== 'shardcache' && side !== 'lru-cache') throw new Error(`memory-side: unknown side ${side}`);
const entries = Number(entriesArg);
const loadMs = Number(loadMsArg);
const rate = Number(rateArg);

interface GcEntry {
  start: number;
  duration: number;
}
const gcEntries: GcEntry[] = [];
const observer = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcEntries.push({ start: e.startTime, duration: e.duration });
});
observer.observe({ entryTypes: ['gc'] });

interface Subject {
  get(key: string): unknown;
  set(key: string, value: unknown): void;
  settled(): Promise<void>;
  size(): number;
  sharedBytes(): number;
  close(): Promise<void>;
}

async function open(): Promise<Subject> {
  if (side === 'shardcache') {
    const cache = await ShardCache.create({ maxBytes: Math.max(64 * 1024 * 1024, entries * BYTES_PER_ENTRY) });
    return {
      get: (key) => cache.get(key),
      set: (key, value) => void cache.set(key, value),
      settled: () => cache.settled(),
      size: () => cache.size,
      sharedBytes: () => cache.stats().bytesUsed,
      close: () => cache.close(),
    };
  }
  const cache = new LRUCache<string, NonNullable<unknown>>({ max: entries });
  return {
    get: (key) => cache.get(key),
    set: (key, value) => void cache.set(key, value as NonNullable<unknown>),
    settled: async () => {},
    size: () => cache.size,
    sharedBytes: () => 0,
    close: async () => cache.clear(),
  };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function gcBetween(from: number, to: number): { total: number; max: number } {
  let total = 0;
  let max = 0;
  for (const e of gcEntries) {
    if (e.start >= from && e.start < to) {
      total += e.duration;
      if (e.duration > max) max = e.duration;
    }
  }
  return { total, max };
}

function weigh(): { heap: number; rss: number } {
  gc!();
  gc!();
  const usage = process.memoryUsage();
  return { heap: usage.heapUsed, rss: usage.rss };
}

async function main(): Promise<MemoryReport> {
  const zipf = zipfIndices(entries);
  const cache = await open();

  const fillStart = performance.now();
  for (let i = 0; i < entries; i += FILL_CHUNK) {
    const end = Math.min(entries, i + FILL_CHUNK);
    for (let j = i; j < end; j++) cache.set(`user:${FIRST_ID + j}`, makeObject(j));
    await tick();
  }
  await cache.settled();
  const fillEnd = performance.now();
  const held = cache.size();

  const filled = weigh();
  const gcStart = performance.now();
  gc!();
  const forcedFullGcMs = performance.now() - gcStart;

  // Let the observer deliver the fill's entries before the load starts.
  await sleep(20);
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  const loadStart = performance.now();
  histogram.enable();
  let done = 0;
  let ops = 0;
  let cursor = 0;
  let fresh = entries;
  let sink = 0;
  while (performance.now() - loadStart < loadMs) {
    const due = Math.floor(((performance.now() - loadStart) * rate) / 1000);
    const n = Math.min(due - done, MAX_OPS_PER_TICK);
    for (let i = 0; i < n; i++) {
      const id = zipf[cursor++ & CHOICE_MASK]!;
      const key = `user:${FIRST_ID + id}`;
      if (i % 10 === 9) cache.set(key, makeObject(fresh++));
      else if (cache.get(key) !== undefined) sink++;
    }
    ops += n;
    done = due; // a backlog beyond MAX_OPS_PER_TICK is dropped, not carried
    await sleep(1);
  }
  histogram.disable();
  const loadEnd = performance.now();
  await cache.settled();
  await sleep(20);
  const loaded = weigh();
  const sharedBytes = cache.sharedBytes();
  await cache.close();
  observer.disconnect();

  const fillGc = gcBetween(fillStart, fillEnd);
  const loadGc = gcBetween(loadStart, loadEnd);
  if (sink === 0) throw new Error('memory-side: the load found nothing in the cache');
  return {
    side: side as MemorySide,
    entries,
    held,
    fillSec: (fillEnd - fillStart) / 1000,
    heapUsedBytes: filled.heap,
    rssBytes: filled.rss,
    heapUsedAfterLoadBytes: loaded.heap,
    rssAfterLoadBytes: loaded.rss,
    sharedBytes,
    forcedFullGcMs,
    gcFillMs: fillGc.total,
    gcLoadMs: loadGc.total,
    gcLoadMaxPauseMs: loadGc.max,
    eldP50Ms: histogram.percentile(50) / 1e6,
    eldP99Ms: histogram.percentile(99) / 1e6,
    eldMaxMs: histogram.max / 1e6,
    loadOps: ops,
    offeredOpsPerSec: rate,
  };
}

main().then(
  (report) => {
    process.send!(report, () => process.exit(0));
  },
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
