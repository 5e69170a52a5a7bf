/**
 * The per-thread near cache: decoded values of hot keys, so a hit costs a
 * Map lookup plus one atomic load instead of a probe, a copy and a decode.
 *
 * An entry remembers where its value came from (shard, slot), the write's seq,
 * and the version of the key's stripe it was validated at. The fast check is
 * that stripe version: the owner bumps it for every change to any key of the
 * stripe, so an unchanged version proves the entry current, and the 16 KiB of
 * versions stay in the reader's cache (the slot itself is a likely cache miss).
 * If the version moved (another key of the stripe changed), the slot's seq
 * decides: the entry is served only while that slot still holds that seq. Any
 * later write, delete, eviction or move of the key changes or clears the slot,
 * so a stale decoded value is never returned. Expiry is checked against the
 * stored time.
 *
 * A cached value is shared by every `get` on this thread, so it must be
 * immutable: plain objects and arrays are deep-frozen; values holding Buffers,
 * typed arrays, Maps, Sets or Dates (which freezing does not protect) are not
 * near-cached and are decoded afresh on every `get`.
 */
import type { ShardView } from './memory/shard-view.js';

/**
 * A Map from key to a small integer id, and what the check needs in one
 * 32-byte record per id (RECORD_INTS below), so a hit touches the Map entry,
 * that record and the value: the record is one cache line at most, where
 * separate arrays per field cost a line each.
 *
 * Eviction is CLOCK over the ids: a hit sets the id's referenced bit, and
 * when every id is in use the hand clears set bits until it finds a clear one
 * and reuses that id. A hit then costs one Map lookup and a store to a word
 * this thread owns; lru-cache's get (a Map lookup plus relinking its recency
 * list) measured slower here, and its order is not worth more than CLOCK's
 * for a cache in front of a cache. New entries start unreferenced, so keys
 * read once leave first.
 */
// Record words (Int32 index id * RECORD_INTS + …); expiresAt is the Float64 at id * 4 + R_EXPIRES_F64.
const RECORD_INTS = 8;
const R_SHARD = 0;
const R_SLOT = 1;
const R_SEQ = 2;
const R_STRIPE = 3;
const R_VERSION = 4;
const R_REFERENCED = 5;
const R_EXPIRES_F64 = 3; // Int32 words 6 and 7
/** Every SAMPLE_MASK + 1'th hit also marks the key used in the shard, for the owner's CLOCK. */
const SAMPLE_MASK = 7;

export class NearCache {
  private readonly ids = new Map<string, number>();
  /** Each shard's Int32 words: the stripe versions the check loads. */
  private readonly shardWords: readonly Int32Array[];
  private readonly views: readonly ShardView[];
  private readonly capacity: number;
  private readonly keys: (string | undefined)[];
  private readonly values: unknown[];
  private readonly records: Int32Array;
  private readonly recordsF64: Float64Array;
  /**
   * The doorkeeper: one bit per hash bucket, set when a key missed the near
   * cache for the first time; only a key that misses again while its bit is
   * set is cached. Bits are cleared once `capacity` of them have been set, so
   * "again" means "within about as many distinct misses as the near cache
   * holds". A key read once (a Zipf tail, a scan) then costs a decode that dies
   * young instead of an insert that evicts a hot value and survives into the
   * old generation: with 2 million keys at 100k gets/s, inserting every miss
   * made the collector's time 10x lru-cache's.
   */
  private readonly seen: Int32Array;
  private readonly seenMask: number;
  private seenCount = 0;
  /** Ids given back by `drop`, reused before the hand evicts. */
  private readonly free: number[] = [];
  private used = 0;
  private hand = 0;
  private hits = 0;

  constructor(max: number, views: readonly ShardView[]) {
    this.views = views;
    this.shardWords = views.map((view) => view.i32);
    this.capacity = max;
    this.keys = new Array<string | undefined>(max).fill(undefined);
    this.values = new Array<unknown>(max).fill(undefined);
    // Eight bits per entry (a power of two): at most one in eight set, so a
    // first miss passes for a second one about 12% of the time at worst.
    let bits = 32;
    while (bits < max * 8) bits *= 2;
    this.seen = new Int32Array(bits >>> 5);
    this.seenMask = bits - 1;
    const buffer = new ArrayBuffer(max * RECORD_INTS * 4);
    this.records = new Int32Array(buffer);
    this.recordsF64 = new Float64Array(buffer);
  }

  /** The cached value if it is still the key's current one, else undefined. */
  get(key: string): unknown {
    const id = this.ids.get(key);
    if (id === undefined) return undefined;
    const records = this.records;
    const r = id * RECORD_INTS;
    const shard = records[r + R_SHARD]!;
    // A plain load, not Atomics.load (measured ~30 ns here, a fifth of the
    // hit): an aligned Int32 read of shared memory cannot tear, and it is
    // ordered after whatever made this thread expect a newer value (a message,
    // a settled() seen through Atomics), so it misses no write it must see. A
    // write racing with it may be seen or not, as for any read.
    const version = this.shardWords[shard]![records[r + R_STRIPE]!]!;
    if (version !== records[r + R_VERSION]) {
      if (!this.views[shard]!.holds(records[r + R_SLOT]!, records[r + R_SEQ]!)) return this.drop(key, id);
      // Still current at a later version: remember it, so the next check is the fast one.
      if ((version & 1) === 0) records[r + R_VERSION] = version;
    }
    const expires = this.recordsF64[id * 4 + R_EXPIRES_F64]!;
    if (expires !== 0 && expires <= Date.now()) return this.drop(key, id);
    records[r + R_REFERENCED] = 1;
    // Mark the key used for the owner's CLOCK (and count it in the sketch with
    // maxEntries), but only on every 8th hit: the slot is likely a cache miss,
    // and a hot key is hit often enough.
    if ((++this.hits & SAMPLE_MASK) === 0) this.views[shard]!.touchSampled(records[r + R_SLOT]!, SAMPLE_MASK + 1);
    return this.values[id];
  }

  /** Whether a key that missed should be cached now (see `seen`). `hash` is the key's hashKey. */
  admit(hash: number): boolean {
    const bit = hash & this.seenMask;
    const word = bit >>> 5;
    const mask = 1 << (bit & 31);
    if ((this.seen[word]! & mask) !== 0) return true;
    this.seen[word]! |= mask;
    if (++this.seenCount >= this.capacity) {
      this.seen.fill(0);
      this.seenCount = 0;
    }
    return false;
  }

  /** Caches `value`, read from `view` (its found* fields describe the read). */
  set(key: string, value: unknown, shard: number, view: ShardView): void {
    let id = this.ids.get(key);
    const records = this.records;
    if (id === undefined) {
      id = this.free.pop() ?? (this.used < this.capacity ? this.used++ : this.evict());
      this.ids.set(key, id);
      this.keys[id] = key;
      records[id * RECORD_INTS + R_REFERENCED] = 0;
    }
    const r = id * RECORD_INTS;
    this.values[id] = value;
    records[r + R_SHARD] = shard;
    records[r + R_SLOT] = view.foundSlot;
    records[r + R_SEQ] = view.foundSeq;
    records[r + R_STRIPE] = view.foundStripe;
    records[r + R_VERSION] = view.foundVersion;
    // Served only while fresh: a stale value is fetch's to serve, never get's.
    this.recordsF64[id * 4 + R_EXPIRES_F64] = view.foundFreshUntil;
  }

  clear(): void {
    this.ids.clear();
    this.seen.fill(0);
    this.seenCount = 0;
    this.keys.fill(undefined);
    this.values.fill(undefined);
    this.free.length = 0;
    this.used = 0;
    this.hand = 0;
  }

  get size(): number {
    return this.ids.size;
  }

  private drop(key: string, id: number): undefined {
    this.ids.delete(key);
    this.keys[id] = undefined;
    this.values[id] = undefined;
    this.free.push(id);
    return undefined;
  }

  /** Frees the id the CLOCK hand picks (every id is in use: the free list is empty). */
  private evict(): number {
    const records = this.records;
    for (;;) {
      const id = this.hand;
      this.hand = id + 1 === this.capacity ? 0 : id + 1;
      if (records[id * RECORD_INTS + R_REFERENCED] === 1) {
        records[id * RECORD_INTS + R_REFERENCED] = 0;
        continue;
      }
      this.ids.delete(this.keys[id]!);
      this.values[id] = undefined;
      return id;
    }
  }
}

export function createNearCache(max: number, views: readonly ShardView[]): NearCache | undefined {
  return max > 0 ? new NearCache(max, views) : undefined;
}

/** Deep-freezes `value` if every part of it can be made immutable. Returns whether it did. */
export function freezeIfShareable(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return true;
  // Check everything before freezing anything: a value that turns out not to
  // be shareable is returned to the caller untouched.
  if (!isPlain(value, 0)) return false;
  deepFreeze(value);
  return true;
}

const MAX_DEPTH = 32;

function isPlain(value: object, depth: number): boolean {
  if (depth > MAX_DEPTH) return false;
  const proto = Object.getPrototypeOf(value);
  // Arrays by index: for-in over an array makes a string per index, and
  // measured three times the cost of the whole check for a small object.
  if (Array.isArray(value)) {
    if (proto !== Array.prototype) return false;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (item !== null && typeof item === 'object' && !isPlain(item, depth + 1)) return false;
    }
    return true;
  }
  if (proto !== Object.prototype && proto !== null) return false;
  for (const k in value) {
    const item: unknown = (value as Record<string, unknown>)[k];
    if (item !== null && typeof item === 'object' && !isPlain(item, depth + 1)) return false;
  }
  return true;
}

function deepFreeze(value: object): void {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (item !== null && typeof item === 'object') deepFreeze(item);
    }
  } else {
    for (const k in value) {
      const item: unknown = (value as Record<string, unknown>)[k];
      if (item !== null && typeof item === 'object') deepFreeze(item);
    }
  }
  Object.freeze(value);
}
