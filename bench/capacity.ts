/**
 * Scenario "capacity": how many entries of each value kind a 64 MiB cache
 * holds (8 MiB with --quick), filled past its budget with distinct keys, and
 * the bytes each takes; against the memory (heap and Buffer bytes) lru-cache
 * takes per entry for the same values, measured in the same run (around forced GCs when the process
 * runs with --expose-gc, as `npm run bench` starts it).
 */
import { LRUCache } from 'lru-cache';
import { ShardCache } from '../src/shard-cache.js';
import { consume, type ScenarioContext } from './measure.js';
import { addRow, finishScenario, newScenario, type ScenarioResult } from './report.js';
import { POOL_SIZE, VALUE_LABEL, valuePool } from './values.js';

export const CAPACITY_GROUP = 'entries a cache of the budget holds';
/**
 * The object the performance issue measured (165 B an entry before shared
 * structures and one-byte keys): `{ id, name, tags[3], score, active }` under
 * keys like `user:1xxxxx`.
 */
export const ISSUE_OBJECT = '{ id, name, tags[3], score, active }';
const issueObject = (i: number) => ({ id: i, name: `user ${i}`, tags: ['a', 'b', String(i % 7)], score: i / 3, active: i % 2 === 0 });
const CAPACITY_BYTES = 64 * 1024 * 1024;
/** --quick fills a smaller cache: the bytes per entry are what it checks, in seconds. */
const QUICK_CAPACITY_BYTES = 8 * 1024 * 1024;
/** Values lru-cache holds for its per-entry heap figure. */
const LRU_ENTRIES = 100_000;

export async function runCapacity(ctx: ScenarioContext): Promise<ScenarioResult> {
  const { config } = ctx;
  const bytes = config.quick ? QUICK_CAPACITY_BYTES : CAPACITY_BYTES;
  const result = newScenario(
    'capacity',
    `capacity — entries a ${bytes / (1024 * 1024)} MiB budget holds`,
    'lru-cache',
    [
      { header: 'entries', metric: 'entries', format: 'count' },
      { header: 'bytes/entry', metric: 'bytesPerEntry', format: 'count' },
      { header: '× lru-cache', metric: 'entries', format: 'ratio', ratio: true },
    ],
    ['value'],
  );
  result.notes.push(`shardcache: maxBytes ${bytes} (index and values), filled with distinct keys until it holds no more; lru-cache: heap used per entry over ${LRU_ENTRIES} entries, and what the same budget would hold at that rate`);
  const kinds: [string, unknown[]][] = [
    [ISSUE_OBJECT, Array.from({ length: POOL_SIZE }, (_, i) => issueObject(100_000 + i))],
    ...config.valueKinds.map((kind): [string, unknown[]] => [VALUE_LABEL[kind], valuePool(kind)]),
  ];
  let done = 0;
  for (const [label, pool] of kinds) {
    ctx.progress(done++, kinds.length, `${label}: filling`);
    // lru-cache first: the shards' memory, freed after the fill only when a GC gets to it, would skew its figure.
    const lruBytesPerEntry = lruHeapPerEntry(pool);
    const entries = await fill(pool, bytes);
    addRow(result, CAPACITY_GROUP, 'shardcache', { value: label }).runs.push({ entries, bytesPerEntry: Math.round(bytes / entries) });
    addRow(result, CAPACITY_GROUP, 'lru-cache', { value: label }).runs.push({ entries: Math.floor(bytes / lruBytesPerEntry), bytesPerEntry: lruBytesPerEntry });
  }
  ctx.progress(done, done, 'done');
  return finishScenario(result);
}

/** Writes distinct keys in rounds until a round adds nothing; returns what the cache holds. */
async function fill(pool: unknown[], bytes: number): Promise<number> {
  const cache = await ShardCache.create({ maxBytes: bytes, nearCache: 0 });
  let entries = 0;
  try {
    for (let round = 0, last = -1; entries > last; round++) {
      last = entries;
      for (let j = 0; j < 50_000; j++) cache.set(`user:${round}${100_000 + j}`, pool[j % POOL_SIZE]);
      await cache.settled();
      entries = cache.size;
    }
  } finally {
    await cache.close();
  }
  return entries;
}

function lruHeapPerEntry(pool: unknown[]): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  // Buffers' bytes live outside the heap: count them too.
  const used = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
  const before = used();
  const lru = new LRUCache<string, NonNullable<unknown>>({ max: LRU_ENTRIES });
  // Each entry its own value, as a cache holds them.
  // (A structured clone of a Buffer would copy the whole pool slab it sits in.)
  const copy = (v: unknown) => (Buffer.isBuffer(v) ? Buffer.from(v) : structuredClone(v)) as NonNullable<unknown>;
  for (let j = 0; j < LRU_ENTRIES; j++) lru.set(`key:0:${j}`, copy(pool[j % POOL_SIZE]));
  gc?.();
  const perEntry = Math.max(1, Math.round((used() - before) / LRU_ENTRIES));
  consume(lru.size);
  return perEntry;
}
