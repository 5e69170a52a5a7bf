/**
 * A thread's read-only view of one shard: lookup and copy-out under the stripe
 * seqlock. Every thread (owner included) reads through this class; only the
 * owner's ShardWriter writes.
 *
 * Everything read here may be mid-change, so every offset and length taken
 * from shared memory is bounds-checked before it is used, and nothing read is
 * trusted until the stripe version is validated. Only validated bytes are
 * decoded, so a decoder never sees a torn value.
 */
import { homeSlot } from '../hash.js';
import {
  E_EXPIRES, E_FLAGS, E_KEY, E_KEY_LENGTH, E_VALUE_LENGTH, ENTRY_HEADER_BYTES,
  H_ARENA_BYTES, H_ARENA_OFFSET, H_ENTRIES, H_INDEX_OFFSET, H_SLOTS, HEADER_BYTES, KEY_LENGTH_MASK, KEY_WIDE, staleWindowMs,
  SLOT_WORDS, STRIPE_MASK,
} from './layout.js';
import { STRIPE_STUCK, readBegin, readValid } from './stripe-lock.js';
import { type FrequencySketch, sketchFor } from './frequency-sketch.js';

export const NOT_FOUND = -1;
/**
 * The `now` that makes `read` and `has` take the clock themselves, and only
 * for an entry that expires: Date.now() measured ~45 ns here, as much as the
 * rest of a probe, and most entries have no TTL.
 */
export const READ_CLOCK = -1;

/** See hash.ts: a module-local const, so V8 inlines it however String is subclassed. */
const charCodeAt = String.prototype.charCodeAt;

export class ShardView {
  readonly sab: SharedArrayBuffer;
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  readonly u16: Uint16Array;
  readonly u8: Buffer;
  readonly slots: number;
  /** Int32 index of slot 0. */
  readonly slotBase: number;
  readonly arenaStart: number;
  readonly arenaEnd: number;
  /**
   * The shard's frequency sketch (only with maxEntries): readers count every
   * `get` of one of its keys here, hit or miss, for the owner's admission.
   */
  readonly sketch: FrequencySketch | undefined;

  // Results of the last successful `read`/`locate`, kept in fields so the hot
  // path allocates nothing.
  foundSlot = 0;
  foundSeq = 0;
  foundExpires = 0;
  foundFreshUntil = 0;
  foundLength = 0;
  foundFlags = 0;
  /** The (even) version of the found key's stripe the read was validated at. */
  foundVersion = 0;
  /** Entry offset that `probe` matched, already bounds-checked by `keyAt`, and where its value starts. */
  probedOffset = 0;
  probedValueStart = 0;
  /** The matched entry's stale window, in ms (see layout.ts). */
  probedStaleMs = 0;

  constructor(sab: SharedArrayBuffer) {
    this.sab = sab;
    this.i32 = new Int32Array(sab);
    this.f64 = new Float64Array(sab);
    this.u16 = new Uint16Array(sab);
    this.u8 = Buffer.from(sab);
    this.slots = this.i32[H_SLOTS]!;
    this.slotBase = this.i32[H_INDEX_OFFSET]! >> 2;
    this.arenaStart = this.i32[H_ARENA_OFFSET]!;
    this.arenaEnd = this.arenaStart + this.i32[H_ARENA_BYTES]!;
    this.sketch = sketchFor(sab, this.i32);
  }

  get entries(): number {
    return Atomics.load(this.i32, H_ENTRIES);
  }

  /**
   * Finds `key` and copies its value bytes into `scratch.buffer`. Returns the
   * value length, or NOT_FOUND (absent or expired at `now`, READ_CLOCK for the
   * current time; 0 ignores expiry). Sets found* fields
   * (foundExpires: when the entry goes; foundFreshUntil: when it stops being
   * fresh, earlier with a stale window). With `stale`, an entry
   * past its freshness but inside its stale window is found too.
   */
  read(key: string, hash: number, now: number, scratch: Scratch, stale = false): number {
    const i32 = this.i32;
    const stripe = (HEADER_BYTES >> 2) + (hash & STRIPE_MASK);
    for (;;) {
      const version = readBegin(i32, stripe);
      if (version === STRIPE_STUCK) return NOT_FOUND;
      const slot = this.probe(key, hash);
      if (slot === NOT_FOUND) {
        if (readValid(i32, stripe, version)) return NOT_FOUND;
        continue;
      }
      const offset = this.probedOffset;
      const seq = i32[this.slotBase + slot * SLOT_WORDS + 2]!;
      const length = i32[(offset + E_VALUE_LENGTH) >> 2]!;
      const expires = this.f64[(offset + E_EXPIRES) >> 3]!;
      const flags = i32[(offset + E_FLAGS) >> 2]!;
      const start = this.probedValueStart;
      const fresh = expires - this.probedStaleMs;
      if (expires !== 0 && (stale ? expires : fresh) <= (now === READ_CLOCK ? Date.now() : now)) {
        if (readValid(i32, stripe, version)) return NOT_FOUND;
        continue;
      }
      if (length < 0 || start + length > this.arenaEnd) {
        if (readValid(i32, stripe, version)) throw new Error('shardcache: corrupt entry length');
        continue;
      }
      scratch.copyFrom(this, start, length);
      if (!readValid(i32, stripe, version)) continue;
      this.foundVersion = version;
      this.foundSlot = slot;
      this.foundSeq = seq;
      this.foundExpires = expires;
      this.foundFreshUntil = expires === 0 ? 0 : fresh;
      this.foundLength = length;
      this.foundFlags = flags;
      return length;
    }
  }

  /** Like `read` without copying: whether a live entry exists. */
  has(key: string, hash: number, now: number): boolean {
    const i32 = this.i32;
    const stripe = (HEADER_BYTES >> 2) + (hash & STRIPE_MASK);
    for (;;) {
      const version = readBegin(i32, stripe);
      if (version === STRIPE_STUCK) return false;
      const slot = this.probe(key, hash);
      const expires = slot === NOT_FOUND ? 0 : this.f64[(this.probedOffset + E_EXPIRES) >> 3]!;
      const fresh = expires - this.probedStaleMs;
      if (!readValid(i32, stripe, version)) continue;
      return slot !== NOT_FOUND && (expires === 0 || fresh > (now === READ_CLOCK ? Date.now() : now));
    }
  }

  /** Whether `slot` still holds the write stamped `seq` (the near cache's check). */
  holds(slot: number, seq: number): boolean {
    return Atomics.load(this.i32, this.slotBase + slot * SLOT_WORDS + 2) === seq;
  }

  /** Marks a slot recently used, for CLOCK eviction. A racy store is fine: it is only a hint. */
  touch(slot: number): void {
    // Read before writing: a store would dirty the line for every other reader.
    const w = this.slotBase + slot * SLOT_WORDS + 3;
    if (this.i32[w] === 0) this.i32[w] = 1;
  }

  /**
   * A near-cache hit reported one time in `reads`: marks the slot and, with
   * a sketch, counts the read there. The slot's hash word is the key's own:
   * the near cache checked that the slot still holds its write.
   */
  touchSampled(slot: number, reads: number): void {
    const w = this.slotBase + slot * SLOT_WORDS;
    if (this.i32[w + 3] === 0) this.i32[w + 3] = 1;
    this.sketch?.incrementSampled(this.i32[w]!, reads);
  }

  /**
   * Linear probe from the key's home slot. Plain loads: callers validate the
   * stripe version afterwards. Returns the slot index or NOT_FOUND.
   */
  probe(key: string, hash: number): number {
    const i32 = this.i32;
    const n = this.slots;
    let i = homeSlot(hash, n);
    for (let probes = 0; probes < n; probes++) {
      const w = this.slotBase + i * SLOT_WORDS;
      const h = i32[w]!;
      if (h === 0) return NOT_FOUND;
      if (h === hash) {
        const offset = i32[w + 1]!;
        if (this.keyAt(offset, key)) {
          this.probedOffset = offset;
          return i;
        }
      }
      if (++i === n) i = 0;
    }
    return NOT_FOUND;
  }

  /**
   * Whether the entry at byte `offset` has exactly `key`; if so, sets
   * probedValueStart. Bounds-checked: offset may be stale.
   */
  keyAt(offset: number, key: string): boolean {
    if (offset < this.arenaStart || offset + ENTRY_HEADER_BYTES > this.arenaEnd || (offset & 7) !== 0) return false;
    const length = key.length;
    const word = this.i32[(offset + E_KEY_LENGTH) >> 2]!;
    if ((word & KEY_LENGTH_MASK) !== length) return false;
    this.probedStaleMs = staleWindowMs(word);
    if ((word & KEY_WIDE) !== 0) {
      if (offset + E_KEY + length * 2 > this.arenaEnd) return false;
      const u16 = this.u16;
      const k = (offset + E_KEY) >> 1;
      for (let j = 0; j < length; j++) {
        if (u16[k + j] !== charCodeAt.call(key, j)) return false;
      }
      this.probedValueStart = offset + E_KEY + length * 2;
      return true;
    }
    if (offset + E_KEY + length > this.arenaEnd) return false;
    const u8 = this.u8;
    const k = offset + E_KEY;
    for (let j = 0; j < length; j++) {
      if (u8[k + j] !== charCodeAt.call(key, j)) return false;
    }
    this.probedValueStart = k + length;
    return true;
  }
}

/**
 * A per-thread, growable buffer that values are copied into before decoding;
 * after `read`, `buffer` holds the value's bytes from index 0.
 *
 * A value is copied as whole Int32 words, from the word holding its first byte:
 * in JS a loop costs about the same per element whatever the element's width,
 * so words are four times cheaper than bytes (50 bytes: 31 against 83 ns), and
 * a native copy costs ~70 ns even for a few bytes. Values start anywhere (keys
 * are any length), so the words land in one backing store, and `buffer` is the
 * one of four fixed views on it that starts at the value's first byte. They are
 * made once, because msgpackr caches a DataView on the Buffer it decodes, and a
 * new view per read measured slower than the copy.
 */
export class Scratch {
  buffer!: Buffer;
  private words!: Int32Array;
  private readonly views: Buffer[] = [];

  constructor() {
    this.allocate(64 * 1024);
  }

  /** Copies bytes [start, start + length) of the shard (bounds already checked) and returns them from index 0. */
  copyFrom(view: ShardView, start: number, length: number): Buffer {
    if (length + 4 > this.words.length * 4) this.allocate(Math.max((length + 7) & ~7, this.words.length * 8));
    const buffer = this.views[start & 3]!;
    if (length > WORD_COPY_MAX) {
      view.u8.copy(buffer, 0, start, start + length);
    } else {
      // The last word read ends at most 3 bytes past the value, never past the
      // shard: the SAB's length is a multiple of 4, and the arena ends with it.
      const from = view.i32;
      const to = this.words;
      const first = start >> 2;
      const count = ((start & 3) + length + 3) >> 2;
      for (let j = 0; j < count; j++) to[j] = from[first + j]!;
    }
    this.buffer = buffer;
    return buffer;
  }

  private allocate(bytes: number): void {
    const store = new ArrayBuffer(bytes + 4);
    this.words = new Int32Array(store);
    for (let k = 0; k < 4; k++) this.views[k] = Buffer.from(store, k, bytes);
    this.buffer = this.views[0]!;
  }
}

/** Up to this many bytes, a word loop copies faster than Buffer.copy (measured crossover ~120 B). */
const WORD_COPY_MAX = 128;
