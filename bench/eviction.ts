/**
 * Scenario "eviction": hit ratio of shardcache's eviction (CLOCK over the ring
 * arena, src/memory/shard-writer.ts) on the two ARC-paper traces shipped in
 * bench/traces/, against lru-cache (exact LRU) replayed in the same run, with
 * the ARC figures of bench/traces/README.md for reference.
 *
 * Eviction is a property of one shard, so the replay drives a ShardWriter
 * directly on this thread (no owner thread, no timing): per request a `get`,
 * and on a miss a `set`. The shard is sized so that exactly `capacity` entries
 * fit: keys `p:<block>` (at most 11 one-byte code units) with a 9-byte value make
 * every entry at most 56 bytes, and the index then has room for more than `capacity`.
 *
 * Trace: Megiddo & Modha, "ARC: A Self-Tuning, Low Overhead Replacement
 * Cache", USENIX FAST '03.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { decompress } from 'fzstd';
import { LRUCache } from 'lru-cache';
import { encode } from '../src/codec.js';
import { hashKey } from '../src/hash.js';
import { BYTES_PER_SLOT, HEADER_BYTES, SLOT_BYTES, STRIPES, createShardBuffer, entryBytes, shardGeometry } from '../src/memory/layout.js';
import { NOT_FOUND, Scratch } from '../src/memory/shard-view.js';
import { ShardWriter } from '../src/memory/shard-writer.js';
import { OP_SET, RingConsumer, RingProducer, createRing, recordBytes } from '../src/memory/write-queue.js';
import type { ScenarioContext } from './measure.js';
import { addRow, finishScenario, newScenario, type ScenarioResult } from './report.js';

/** The traces ship in the repository; this file runs as dist/bench/eviction.js. */
const TRACES_DIR = new URL('../../bench/traces/', import.meta.url);

/** Cache sizes and the hit ratios the traces' README gives for LRU and ARC. */
const CASES: { trace: string; capacity: number; lru: number; arc: number }[] = [
  { trace: 'OLTP', capacity: 1_000, lru: 32.83, arc: 38.95 },
  { trace: 'OLTP', capacity: 5_000, lru: 53.65, arc: 55.25 },
  { trace: 'OLTP', capacity: 15_000, lru: 64.63, arc: 65.40 },
  { trace: 'P3', capacity: 16_384, lru: 2.07, arc: 7.0 },
  { trace: 'P3', capacity: 262_144, lru: 65.12, arc: 67.57 },
];

const VALUE = encode('xxxxxxxx');

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

/** Smallest shard whose arena holds `capacity` 64-byte entries. */
function shardBytesFor(capacity: number): number {
  const need = capacity * entryBytes(11, VALUE.length);
  let total = Math.ceil((need + HEADER_BYTES + STRIPES * 4) / (1 - SLOT_BYTES / BYTES_PER_SLOT) / 8) * 8;
  while (shardGeometry(total).arenaBytes < need) total += 64;
  return total;
}

function replayShard(pages: Uint32Array, capacity: number): number {
  const writer = new ShardWriter(createShardBuffer(shardBytesFor(capacity)));
  const ringSab = createRing(1 << 16);
  const producer = new RingProducer(ringSab);
  const consumer = new RingConsumer(ringSab);
  const scratch = new Scratch();
  let hits = 0;
  for (let r = 0; r < pages.length; r++) {
    const key = `p:${pages[r]}`;
    const hash = hashKey(key);
    if (writer.read(key, hash, 0, scratch) !== NOT_FOUND) {
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

export async function runEviction(ctx: ScenarioContext): Promise<ScenarioResult> {
  const result = newScenario(
    'eviction',
    'eviction — hit ratio on the ARC traces (%), shard CLOCK vs lru-cache replayed in the same run',
    'lru-cache',
    [
      { header: 'hit ratio', metric: 'hitPct', format: 'pct' },
      { header: '× lru-cache', metric: 'hitPct', format: 'ratio', ratio: true },
    ],
    ['trace', 'capacity'],
  );
  result.notes.push('ARC reference figures (from bench/traces/README.md) are printed in the notes; exact LRU is lru-cache itself');
  // --quick replays a prefix of each trace: the figures then differ from the README's.
  const limit = ctx.config.quick ? 100_000 : Infinity;
  const cases = ctx.config.quick ? CASES.filter((c) => c.capacity <= 5_000) : CASES;
  const traces = new Map<string, Uint32Array>();
  let done = 0;
  for (const c of cases) {
    ctx.progress(done++, cases.length, `${c.trace} at ${c.capacity} entries`);
    let pages = traces.get(c.trace);
    if (!pages) traces.set(c.trace, (pages = loadTrace(c.trace, limit)));
    const group = `${c.trace} ${c.capacity}`;
    const params = { trace: c.trace, capacity: c.capacity };
    addRow(result, group, 'shardcache', params).runs.push({ hitPct: replayShard(pages, c.capacity) });
    addRow(result, group, 'lru-cache', params).runs.push({ hitPct: replayLru(pages, c.capacity) });
    if (!ctx.config.quick) result.notes.push(`${group}: published LRU ${c.lru}%, ARC ${c.arc}%`);
  }
  ctx.progress(cases.length, cases.length, 'done');
  return finishScenario(result);
}
