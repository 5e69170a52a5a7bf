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
 * immutable: plain objects and arrays are deep-frozen (freeze.ts); values
 * holding Buffers, typed arrays, Maps, Sets or Dates (which freezing does not
 * protect) are not near-cached and are decoded afresh on every `get`.
 */
import { CountMinSketch } from './memory/count-min-sketch.js';
import { HEADER_BYTES, STRIPE_MASK, sketchBytesFor } from './memory/layout.js';
import type { ShardView } from './memory/shard-view.js';
import { xorshift32 } from './random.js';

/**
 * A Map from key to a small integer id, and per id the value and two
 * records: an 8-byte hot one with all a hit checks (HOT_INTS below), and a
 * cold one that only a miss, a moved stripe version, an expiring value or a
 * sampled hit reads. A hit touches the Map, the hot record and the values
 * array. The hot records of 100k ids take 800 KB, where one 32-byte record
 * of everything took 3.2 MB: over 100k keys a hit measured ~95 ns with it,
 * ~88 ns with records that fit the caches. Entry objects holding the value
 * and the checks (one object per key) measured slower still, ~104 ns: they
 * lie scattered among the values on the heap, where the arrays are dense.
 *
 * Eviction is CLOCK over the ids: a hit sets the id's referenced bit, and
 * when every id is in use the hand clears set bits until it finds a clear one:
 * that id is the victim. A hit then costs one Map lookup and a store to a word
 * this thread owns; lru-cache's get (a Map lookup plus relinking its recency
 * list) measured slower here, and its order is not worth more than CLOCK's
 * for a cache in front of a cache. New entries start unreferenced, so keys
 * read once leave first.
 *
 * Admission, once every id is in use, is TinyLFU's: a key that missed takes
 * the victim's id only if a frequency sketch says it was read more often
 * lately than the victim was; else the victim stays, and stays the hand's
 * next victim. Under a skewed load the keys just outside the near cache are
 * read barely less often than the coldest ones inside, and CLOCK alone kept
 * trading them: with 100k keys under Zipf 0.99 and room for 38k, 29k of every
 * million reads were inserts (each a decode kept, a Map insert and delete, a
 * value promoted to the old generation, then dropped), and that churn cost
 * more than the misses themselves. With the sketch, ~700 were, and misses
 * fell from 9.9% to 7.3% of reads.
 *
 * The sketch counts about one access in SAMPLE_GAP, hits and misses alike
 * (the same sampling on both sides keeps the comparison fair), so a hit pays
 * for a sketch update only one time in eight, and only once the near cache is
 * full (before, nothing asks the sketch). The gaps between counted accesses
 * are random, not a fixed eight: a loop over eight hot keys would otherwise
 * have one of them counted every time and the other seven never. It ages
 * (halves) after AGE_AFTER sampled accesses per id.
 */
// Hot record words (Int32 index id * HOT_INTS + …).
const HOT_INTS = 2;
/** The stripe version the value was last found current at. */
const H_VERSION = 0;
/** The key's stripe (low 12 bits), its shard (SHARD_SHIFT, 8 bits) and the flags below. */
const H_PLACE = 1;
const SHARD_SHIFT = 12;
const SHARD_BITS = 0xff;
/** The value expires: its time (the cold record) is checked. */
const EXPIRES = 1 << 20;
/** CLOCK's referenced bit. */
const REFERENCED = 1 << 21;
// Cold record words (Int32 index id * COLD_INTS + …); the expiry time is expiresAt[id].
const COLD_INTS = 4;
const C_SLOT = 0;
const C_SEQ = 1;
/** The key's hashKey: its sketch counters when it is a victim. */
const C_HASH = 2;
/**
 * About one access in SAMPLE_GAP (random gaps of 1 to 2 * SAMPLE_GAP - 1) is
 * sampled: counted in the sketch, and a hit so sampled also marks the key
 * used in the shard, for the owner's CLOCK.
 */
const SAMPLE_GAP = 8;
/** Sampled accesses per id after which the sketch halves (Caffeine ages at ten per entry). */
const AGE_AFTER = 10;
/** Int32 index of stripe 0's version in a shard (layout.ts). */
const STRIPE_BASE = HEADER_BYTES >> 2;

export class NearCache {
  private readonly ids = new Map<string, number>();
  /** Each shard's Int32 words: the stripe versions the check loads. */
  private readonly shardWords: readonly Int32Array[];
  private readonly views: readonly ShardView[];
  /** Per shard, the stripes this thread has queued writes to (overlay.ts): their keys are not served. */
  private readonly queuedStripes: readonly Uint8Array[];
  private readonly capacity: number;
  private readonly keys: (string | undefined)[];
  private readonly values: unknown[];
  private readonly hot: Int32Array;
  private readonly cold: Int32Array;
  private readonly expiresAt: Float64Array;
  /**
   * The doorkeeper, while ids are left: one bit per hash bucket, set when a
   * key missed the near cache for the first time; only a key that misses
   * again while its bit is set is cached. Bits are cleared once `capacity` of
   * them have been set, so "again" means "within about as many distinct
   * misses as the near cache holds". A key read once (a Zipf tail, a scan)
   * then costs a decode that dies young instead of an insert that evicts a
   * hot value and survives into the old generation: with 2 million keys at
   * 100k gets/s, inserting every miss made the collector's time 10x
   * lru-cache's.
   */
  private readonly seen: Int32Array;
  private readonly seenMask: number;
  private seenCount = 0;
  /** Ids handed out so far; once all are, a new key takes the victim's. */
  private used = 0;
  /** Ids whose entry was dropped (see `drop`): still their key's, holding no value. */
  private dead = 0;
  private hand = 0;
  /** Accesses left until the next sampled one. */
  private untilSample = SAMPLE_GAP;
  /** xorshift32 state for the gaps, any non-zero start. */
  private draw = 0x9e3779b9;
  private readonly sketch: CountMinSketch;
  /** Accesses counted in the sketch since it last aged. */
  private sampled = 0;

  constructor(max: number, views: readonly ShardView[], queuedStripes: readonly Uint8Array[]) {
    this.views = views;
    this.queuedStripes = queuedStripes;
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
    this.hot = new Int32Array(max * HOT_INTS);
    this.cold = new Int32Array(max * COLD_INTS);
    this.expiresAt = new Float64Array(max);
    this.sketch = new CountMinSketch(new Int32Array(sketchBytesFor(max) >> 2));
  }

  /** The cached value if it is still the key's current one, else undefined. */
  get(key: string): unknown {
    const id = this.ids.get(key);
    if (id === undefined) return undefined;
    const hot = this.hot;
    const h = id * HOT_INTS;
    const place = hot[h + H_PLACE]!;
    const shard = (place >>> SHARD_SHIFT) & SHARD_BITS;
    const stripe = place & STRIPE_MASK;
    // A plain load, not Atomics.load (measured ~30 ns here, a fifth of the
    // hit): an aligned Int32 read of shared memory cannot tear, and it is
    // ordered after whatever made this thread expect a newer value (a message,
    // a settled() seen through Atomics), so it misses no write it must see. A
    // write racing with it may be seen or not, as for any read.
    const version = this.shardWords[shard]![STRIPE_BASE + stripe]!;
    // This thread's queued write of the key, if any, must win: readShared finds it.
    if (this.queuedStripes[shard]![stripe] !== 0) return undefined;
    if (version !== hot[h + H_VERSION]) {
      const c = id * COLD_INTS;
      if (!this.views[shard]!.holds(this.cold[c + C_SLOT]!, this.cold[c + C_SEQ]!)) return this.drop(id);
      // Still current at a later version: remember it, so the next check is the fast one.
      if ((version & 1) === 0) hot[h + H_VERSION] = version;
    }
    if ((place & EXPIRES) !== 0 && this.expiresAt[id]! <= Date.now()) return this.drop(id);
    if ((place & REFERENCED) === 0) hot[h + H_PLACE] = place | REFERENCED;
    if (--this.untilSample === 0) this.sampleHit(id, shard);
    // undefined if the entry was dropped: the checks above ran on what it held, and harmlessly.
    return this.values[id];
  }

  /**
   * A sampled hit: counted here once the near cache is full, and the key
   * marked used for the owner's CLOCK (and counted in the shard's sketch with
   * maxEntries). Not on every hit: the slot is likely a cache miss, and a hot
   * key is hit often enough.
   */
  private sampleHit(id: number, shard: number): void {
    this.nextSample();
    const c = id * COLD_INTS;
    if (this.isFull()) this.count(this.cold[c + C_HASH]!);
    this.views[shard]!.touchSampled(this.cold[c + C_SLOT]!, SAMPLE_GAP);
  }

  /** Draws the gap to the next sampled access. */
  private nextSample(): void {
    const x = (this.draw = xorshift32(this.draw));
    this.untilSample = 1 + ((x >>> 0) % (2 * SAMPLE_GAP - 1));
  }

  private isFull(): boolean {
    return this.used === this.capacity;
  }

  private count(hash: number): void {
    this.sketch.add(hash);
    if (++this.sampled >= AGE_AFTER * this.capacity) {
      this.sketch.halve();
      this.sampled = 0;
    }
  }

  /**
   * Whether `key`, which missed, should be cached now: at once if its entry
   * was only dropped (its id is still its own, so caching it evicts nothing);
   * while ids are left, if it missed twice (see `seen`); after that, if it
   * beats the victim, or the victim was dropped (see the class comment).
   * `hash` is the key's hashKey. Counts the miss if sampled.
   */
  admit(key: string, hash: number): boolean {
    if (this.ids.has(key)) return true;
    if (!this.isFull()) return this.secondMiss(hash);
    if (--this.untilSample === 0) {
      this.nextSample();
      this.count(hash);
    }
    const victim = this.victim();
    if (this.values[victim] === undefined) return true;
    return this.sketch.frequency(hash) > this.sketch.frequency(this.cold[victim * COLD_INTS + C_HASH]!);
  }

  private secondMiss(hash: number): boolean {
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

  /** Caches `value` of the key with hash `hash`, read from `view` (its found* fields describe the read). */
  set(key: string, hash: number, value: unknown, shard: number, view: ShardView): void {
    let id = this.ids.get(key);
    // A new key starts unreferenced; a key cached again keeps its bit.
    let referenced = 0;
    if (id === undefined) {
      id = this.used < this.capacity ? this.used++ : this.evict();
      this.ids.set(key, id);
      this.keys[id] = key;
    } else {
      referenced = this.hot[id * HOT_INTS + H_PLACE]! & REFERENCED;
      if (this.values[id] === undefined) this.dead--;
    }
    this.values[id] = value;
    // Served only while fresh: a stale value is fetch's to serve, never get's.
    const expires = view.foundFreshUntil;
    const h = id * HOT_INTS;
    this.hot[h + H_VERSION] = view.foundVersion;
    this.hot[h + H_PLACE] = (hash & STRIPE_MASK) | (shard << SHARD_SHIFT) | (expires !== 0 ? EXPIRES : 0) | referenced;
    this.expiresAt[id] = expires;
    const c = id * COLD_INTS;
    this.cold[c + C_SLOT] = view.foundSlot;
    this.cold[c + C_SEQ] = view.foundSeq;
    this.cold[c + C_HASH] = hash;
  }

  clear(): void {
    this.ids.clear();
    this.seen.fill(0);
    this.seenCount = 0;
    this.keys.fill(undefined);
    this.values.fill(undefined);
    this.used = 0;
    this.dead = 0;
    this.hand = 0;
    this.sketch.clear();
    this.sampled = 0;
  }

  /** Keys with a value cached. */
  get size(): number {
    return this.ids.size - this.dead;
  }

  /**
   * Drops the value of `id`, whose key keeps the id: the value is read again
   * (and cached again) without a Map delete and insert. V8's Map leaves a
   * deleted entry in its bucket's chain until the table is rebuilt, so a hot
   * key that a steady trickle of writes kept dropping and inserting made its
   * bucket's chain ever longer: a `set` of it, which walks the chain, measured
   * 1 to 11 µs. The id goes when the CLOCK hand reaches it.
   */
  private drop(id: number): undefined {
    if (this.values[id] !== undefined) {
      this.values[id] = undefined;
      this.dead++;
    }
    return undefined;
  }

  /**
   * The id the CLOCK hand points at once it has passed (and cleared) the
   * referenced ones, or a dropped one; the hand stays on it, so a victim that
   * wins admission is asked again next time. Every id is handed out.
   */
  private victim(): number {
    const hot = this.hot;
    for (;;) {
      const id = this.hand;
      const w = id * HOT_INTS + H_PLACE;
      if ((hot[w]! & REFERENCED) === 0 || this.values[id] === undefined) return id;
      hot[w] = hot[w]! & ~REFERENCED;
      this.hand = this.after(id);
    }
  }

  private after(id: number): number {
    return id + 1 === this.capacity ? 0 : id + 1;
  }

  /** Frees the victim's id and moves the hand past it. */
  private evict(): number {
    const id = this.victim();
    this.hand = this.after(id);
    this.ids.delete(this.keys[id]!);
    if (this.values[id] === undefined) this.dead--;
    else this.values[id] = undefined;
    return id;
  }
}

export function createNearCache(max: number, views: readonly ShardView[], queuedStripes: readonly Uint8Array[]): NearCache | undefined {
  return max > 0 ? new NearCache(max, views, queuedStripes) : undefined;
}
