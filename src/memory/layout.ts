/**
 * The layout of one shard: a single SharedArrayBuffer that every thread maps.
 *
 *   byte 0                 HEADER (256 B)   control words (Int32) and counters (Float64)
 *   HEADER_BYTES           STRIPES          one Int32 seqlock version per stripe
 *   sketchOffset           SKETCH           only with maxEntries: the frequency sketch,
 *                                           64-byte blocks of 4-bit counters (frequency-sketch.ts)
 *   indexOffset            INDEX            `slots` slots of 4 Int32 words:
 *                                             [0] hash (0 = empty)  [1] entry byte offset
 *                                             [2] entry seq          [3] referenced (CLOCK bit)
 *   arenaOffset            ARENA            a ring of 8-byte aligned entries, FreeCache style:
 *
 *      entry:  [0] u32 size  [4] i32 hash (0 = padding)  [8] i32 seq
 *              [12] u32 key length in code units, | KEY_WIDE if stored as UTF-16,
 *                   | the stale window in whole seconds << STALE_SHIFT (see below)
 *              [16] u32 value length  [20] u32 flags  [24] f64 expiresAt (ms, 0 = never)
 *              [32] the key, then the value bytes (shard format), padded to 8
 *
 * expiresAt is when the entry stops existing. An entry written with a stale
 * window (stale-while-revalidate) is fresh until expiresAt minus its window:
 * `get` and `has` treat it as expired from then on, while `fetch` may still
 * serve it during the window, as it refreshes it.
 *
 * A key whose code units are all below 256 (any ASCII or Latin-1 key, which
 * most keys are) is stored one byte per code unit, half the bytes of UTF-16;
 * any other key as UTF-16 code units, so every string round-trips.
 *
 * Only the shard's owner writes the index, the arena and the header. Readers on
 * any thread read them optimistically under the stripe's seqlock version (see
 * stripe-lock.ts) and copy the value bytes out before decoding. An entry in the
 * arena is never written in place once an index slot points at it: a new value
 * is appended and the slot repointed, so a reader that validated its stripe
 * version read bytes that were whole.
 *
 * `seq` is a per-shard counter stamped on every entry the owner writes; a slot's
 * seq identifies exactly one write, which is what the per-thread near cache
 * checks to know its decoded copy is still current.
 */

export const HEADER_BYTES = 256;
export const STRIPES = 4096;
export const STRIPE_MASK = STRIPES - 1;
export const SLOT_WORDS = 4;
export const SLOT_BYTES = SLOT_WORDS * 4;
export const ENTRY_HEADER_BYTES = 32;

// Header Int32 words. Owner-written unless noted.
export const H_ARENA_HEAD = 0; // arena-relative byte position of the next append
export const H_ARENA_TAIL = 1; // arena-relative byte position of the oldest entry
export const H_ARENA_USED = 2; // bytes between tail and head, live, dead and padding
export const H_SEQ = 3; // last seq handed out
export const H_ENTRIES = 4; // live slots in the index
export const H_SLOTS = 5;
export const H_INDEX_OFFSET = 6;
export const H_ARENA_OFFSET = 7;
export const H_ARENA_BYTES = 8;
/** The shard's entry bound (options.maxEntries, split per shard and clamped); 0 = bounded by bytes only. */
export const H_MAX_ENTRIES = 9;
/** Byte offset of the frequency sketch; 0 = none (no maxEntries). */
export const H_SKETCH_OFFSET = 10;
export const H_TTL_ENTRIES = 11; // entries written with a TTL, so the owner knows to sweep
export const H_SWEEP_CURSOR = 12; // next slot the expiry sweep looks at
// Written by readers, not the owner (Atomics.add, a batch at a time): reads counted
// into the sketch so far, wrapping. The owner ages the sketch and sizes the
// admission window by it (eviction-policy.ts).
export const H_ACCESSES = 13;
export const H_DIRTY = 14; // entries still waiting to be written to Redis
export const H_STALLED = 15; // 1 while the owner cannot make room because everything left is dirty
export const H_WRITE_GENERATION = 16; // bumped by every set, delete and clear the owner applies
export const H_LOG_RECORDS = 17; // records appended to the change log so far (wrapping)
// Written by the Redis flusher, not the owner: every change-log record up to this number is flushed or failed.
export const H_LOG_PROCESSED = 18;
// Words 19 to 55 are unused, but for the Float64 counters (words 32 to 41).
// Producers read SLEEPING on every write; the owner writes the words above on
// every apply. Sharing a cache line, each write would cost producers a miss.
export const H_DOORBELL = 56; // producers bump and notify it to wake a sleeping owner
export const H_SLEEPING = 57; // 1 while the owner waits on the doorbell

// Header Float64 counters (index into a Float64Array over the same buffer).
export const F_SETS = 16;
export const F_DELETES = 17;
export const F_EVICTIONS = 18;
export const F_EXPIRATIONS = 19;
/** Evictions that were admission refusing a new entry (counted in F_EVICTIONS too). */
export const F_REJECTIONS = 20;

// Entry fields, as byte offsets from the entry's start.
export const E_SIZE = 0;
export const E_HASH = 4;
export const E_SEQ = 8;
export const E_KEY_LENGTH = 12;
export const E_VALUE_LENGTH = 16;
export const E_FLAGS = 20;
export const E_EXPIRES = 24;
export const E_KEY = 32;

/** In the key length word: the key is stored as UTF-16 code units, not one byte each. */
export const KEY_WIDE = 1 << 16;
/** The code-unit count in a key length word. */
export const KEY_LENGTH_MASK = KEY_WIDE - 1;
/** In the key length word, above KEY_WIDE: the entry's stale window, in whole seconds. */
export const STALE_SHIFT = 17;
/** Longest stale window, in seconds (15 bits: about 9 hours). */
export const MAX_STALE_SECONDS = (1 << 15) - 1;

/** The stale window, in ms, of an entry with key length word `word`. */
export function staleWindowMs(word: number): number {
  return (word >>> STALE_SHIFT) * 1000;
}

/**
 * Entry flag: written locally, not yet acknowledged by Redis; never evicted.
 * The other 31 bits of the flags word hold the number of the change-log record
 * of the write (see shard-writer.ts, "dirty until every record is flushed").
 */
export const FLAG_DIRTY = 1;
/** Record numbers are compared modulo 2^30 (they wrap; the pending window is far smaller). */
export const RECORD_NUMBER_MASK = 0x3fffffff;

/** Longest key, in UTF-16 code units (it must stay below KEY_WIDE). */
export const MAX_KEY_LENGTH = 4096;

/** Smallest budget for one shard; below this the index and arena are too small to be useful. */
export const MIN_SHARD_BYTES = 256 * 1024;

/**
 * One index slot per 80 bytes of budget: 20% of the budget for the index. A
 * small entry (a short key and a ~100-byte object in shared structures, ~30
 * bytes) takes ~80 bytes of arena, so arena and index fill together; larger
 * entries leave the index emptier, and tiny ones are bounded by the index,
 * which the owner keeps under MAX_LOAD by evicting.
 */
export const BYTES_PER_SLOT = 80;
export const MAX_LOAD = 0.85;

export function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Bytes of an entry whose key takes `keyBytes` (its length, or twice that if wide) and its value `valueLength`. */
export function entryBytes(keyBytes: number, valueLength: number): number {
  return align8(ENTRY_HEADER_BYTES + keyBytes + valueLength);
}

/** Whether code units [index, index + length) of `units` all fit in one byte each. */
export function fitsOneByte(units: Uint16Array, index: number, length: number): boolean {
  for (let i = index; i < index + length; i++) if (units[i]! > 0xff) return false;
  return true;
}

export interface ShardGeometry {
  readonly totalBytes: number;
  readonly slots: number;
  /** The entry bound the shard enforces; 0 = none beyond the index's load (see MAX_LOAD). */
  readonly maxEntries: number;
  /** 0 without maxEntries. */
  readonly sketchOffset: number;
  readonly sketchBytes: number;
  readonly indexOffset: number;
  readonly arenaOffset: number;
  readonly arenaBytes: number;
}

/**
 * Bytes of the frequency sketch for a shard holding up to `maxEntries`: 8 bytes
 * (sixteen 4-bit counters) per entry, rounded up to a power of two, as
 * Caffeine sizes its sketch; at least one 64-byte block.
 */
export function sketchBytesFor(maxEntries: number): number {
  let bytes = 64;
  while (bytes < maxEntries * 8) bytes *= 2;
  return bytes;
}

/** Slots whose load bound (MAX_LOAD) is at least `entries`. */
function slotsFor(entries: number): number {
  let slots = Math.ceil(entries / MAX_LOAD);
  while (Math.floor(slots * MAX_LOAD) < entries) slots++;
  return slots;
}

/**
 * The index and the sketch together may take at most this share of a shard
 * with maxEntries: a bound the bytes could never reach would only shrink the
 * arena, so a larger maxEntries is clamped to what this leaves room for.
 */
const MAX_BOUND_SHARE = 0.5;

/**
 * The entry bound a shard of `totalBytes` can honour for a requested
 * `maxEntries` (0 = none): the request, or less where the index and sketch
 * it needs would take more than half the shard.
 */
export function shardEntryBound(totalBytes: number, maxEntries: number): number {
  if (maxEntries <= 0) return 0;
  const fits = (m: number) => Math.max(64, Math.floor(totalBytes / BYTES_PER_SLOT), slotsFor(m)) * SLOT_BYTES + sketchBytesFor(m) <= totalBytes * MAX_BOUND_SHARE;
  if (fits(maxEntries)) return maxEntries;
  let lo = 1, hi = maxEntries; // fits(lo) holds for any shard of at least MIN_SHARD_BYTES
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** `maxEntries` is this shard's share of options.maxEntries (0 = none). */
export function shardGeometry(shardBytes: number, maxEntries = 0): ShardGeometry {
  const totalBytes = Math.floor(shardBytes / 8) * 8;
  const bound = shardEntryBound(totalBytes, maxEntries);
  // With a bound, the index grows to hold it when the byte-derived one would not.
  const slots = Math.max(64, Math.floor(totalBytes / BYTES_PER_SLOT), bound > 0 ? slotsFor(bound) : 0);
  const sketchOffset = bound > 0 ? HEADER_BYTES + STRIPES * 4 : 0;
  const sketchBytes = bound > 0 ? sketchBytesFor(bound) : 0;
  const indexOffset = HEADER_BYTES + STRIPES * 4 + sketchBytes;
  const arenaOffset = indexOffset + slots * SLOT_BYTES;
  const arenaBytes = totalBytes - arenaOffset;
  return { totalBytes, slots, maxEntries: bound, sketchOffset, sketchBytes, indexOffset, arenaOffset, arenaBytes };
}

/** Largest value a shard of this geometry accepts: an entry may use at most a quarter of the arena. */
export function largestValueFor(geometry: ShardGeometry): number {
  return Math.floor(geometry.arenaBytes / 4) - ENTRY_HEADER_BYTES - MAX_KEY_LENGTH * 2;
}

export function createShardBuffer(shardBytes: number, maxEntries = 0): SharedArrayBuffer {
  const g = shardGeometry(shardBytes, maxEntries);
  const sab = new SharedArrayBuffer(g.totalBytes);
  const i32 = new Int32Array(sab);
  i32[H_SLOTS] = g.slots;
  i32[H_INDEX_OFFSET] = g.indexOffset;
  i32[H_ARENA_OFFSET] = g.arenaOffset;
  i32[H_ARENA_BYTES] = g.arenaBytes;
  i32[H_MAX_ENTRIES] = g.maxEntries;
  i32[H_SKETCH_OFFSET] = g.sketchOffset;
  return sab;
}
