/**
 * The frequency sketch: how often each key was read lately, approximately, in
 * shared memory, so that readers on any thread feed it without a message and
 * the owner consults it to decide admission (eviction-policy.ts).
 *
 * A count-min sketch of 4-bit counters (TinyLFU: Einziger, Friedman, Manes,
 * "TinyLFU: A Highly Efficient Cache Admission Policy", ACM ToS 2017), laid
 * out as Caffeine lays out its own: the region is split into 64-byte blocks
 * (16 Int32 words of 8 counters each), a key picks one block, and in it one
 * counter in each of four 4-word rows. One key's four counters then share a
 * cache line, so a read costs at most one extra cache miss. A key's estimate
 * is the least of its four counters (each may be inflated by other keys
 * sharing it, never deflated, but for lost updates).
 *
 * Ageing ("reset" in the paper): after about ten reads per entry the owner
 * halves every counter, so the sketch follows a changing workload and a key
 * popular long ago does not keep its place forever. Counters saturate at 15:
 * admission only compares frequencies, and the paper shows small counters
 * lose little. No doorkeeper: it saves memory, which here is 8 bytes per entry
 * out of the shard's budget, but costs a second probe on every read.
 *
 * Concurrency: readers increment with plain loads and stores, not atomics. Two
 * threads incrementing counters in one word at once can lose one of the
 * increments, and a reader's store can undo the owner's halving of one word;
 * both only blur an estimate, which admission tolerates (Caffeine's and
 * ristretto's sketches accept the same). An aligned Int32 store never tears,
 * so a counter never holds anything but some 4-bit count.
 *
 * Reads are counted too (H_ACCESSES), to know when to age the sketch: each
 * thread adds its count in batches, so the shared word costs one atomic add
 * per ACCESS_BATCH reads instead of a contended store per read.
 */
import { H_ACCESSES, H_MAX_ENTRIES, H_SKETCH_OFFSET, sketchBytesFor } from './layout.js';

/** Reads a thread counts locally before adding them to H_ACCESSES. */
const ACCESS_BATCH = 64;
/** Int32 words per block: one 64-byte cache line. */
const BLOCK_WORDS = 16;

export class FrequencySketch {
  private readonly header: Int32Array;
  private readonly table: Int32Array;
  private readonly blockMask: number;
  /** This thread's reads not yet added to H_ACCESSES. */
  private unpublished = 0;

  /** The sketch of the shard in `sab`; `sketchFor` says whether there is one. */
  constructor(sab: SharedArrayBuffer, header: Int32Array, bytes: number) {
    this.header = header;
    this.table = new Int32Array(sab, header[H_SKETCH_OFFSET]!, bytes >> 2);
    this.blockMask = (bytes >> 6) - 1;
  }

  /** Counts one read of the key with hash `hash` (a hit or a miss). */
  increment(hash: number): void {
    this.bump(hash);
    if (++this.unpublished >= ACCESS_BATCH) this.publish();
  }

  /**
   * Counts `reads` reads of the key but bumps its counters once: for a near
   * cache that reports one hit in `reads`, so the ageing clock still runs at
   * the rate of reads.
   */
  incrementSampled(hash: number, reads: number): void {
    this.bump(hash);
    this.unpublished += reads;
    if (this.unpublished >= ACCESS_BATCH) this.publish();
  }

  /** The key's estimated reads since the last ageing, from 0 to 15. */
  frequency(hash: number): number {
    const t = this.table;
    const h = spread(hash);
    const base = (h & this.blockMask) * BLOCK_WORDS;
    const g = choose(hash);
    let min = (t[base + (g & 3)]! >>> ((g >>> 2) & 7) * 4) & 15;
    let c = (t[base + 4 + ((g >>> 8) & 3)]! >>> ((g >>> 10) & 7) * 4) & 15;
    if (c < min) min = c;
    c = (t[base + 8 + ((g >>> 16) & 3)]! >>> ((g >>> 18) & 7) * 4) & 15;
    if (c < min) min = c;
    c = (t[base + 12 + ((g >>> 24) & 3)]! >>> ((g >>> 26) & 7) * 4) & 15;
    return c < min ? c : min;
  }

  /** Halves every counter (the owner's ageing step). */
  halve(): void {
    const t = this.table;
    // Shifting the whole word moves each counter's low bit into its
    // neighbour's top bit; the mask clears those.
    for (let i = 0; i < t.length; i++) t[i] = (t[i]! >>> 1) & 0x77777777;
  }

  clear(): void {
    this.table.fill(0);
  }

  /** Adds this thread's counted reads to the shard's total. */
  publish(): void {
    if (this.unpublished === 0) return;
    Atomics.add(this.header, H_ACCESSES, this.unpublished);
    this.unpublished = 0;
  }

  private bump(hash: number): void {
    const t = this.table;
    const h = spread(hash);
    const base = (h & this.blockMask) * BLOCK_WORDS;
    const g = choose(hash);
    // One counter per row: the row's word (2 bits of g), the counter in it (3 bits).
    const i0 = base + (g & 3), s0 = ((g >>> 2) & 7) * 4;
    const i1 = base + 4 + ((g >>> 8) & 3), s1 = ((g >>> 10) & 7) * 4;
    const i2 = base + 8 + ((g >>> 16) & 3), s2 = ((g >>> 18) & 7) * 4;
    const i3 = base + 12 + ((g >>> 24) & 3), s3 = ((g >>> 26) & 7) * 4;
    const c0 = (t[i0]! >>> s0) & 15, c1 = (t[i1]! >>> s1) & 15, c2 = (t[i2]! >>> s2) & 15, c3 = (t[i3]! >>> s3) & 15;
    let min = c0 < c1 ? c0 : c1;
    if (c2 < min) min = c2;
    if (c3 < min) min = c3;
    if (min === 15) return;
    // Conservative update: only the counters at the key's estimate grow. The
    // others already count more than this key, so growing them would only
    // inflate other keys' estimates; it also means fewer stores to a line
    // other readers share.
    if (c0 === min) t[i0] = t[i0]! + (1 << s0);
    if (c1 === min) t[i1] = t[i1]! + (1 << s1);
    if (c2 === min) t[i2] = t[i2]! + (1 << s2);
    if (c3 === min) t[i3] = t[i3]! + (1 << s3);
  }
}

/**
 * The block of a key: its hash mixed again, so that the block does not follow
 * the bits that already chose the shard (every key of a shard shares those)
 * or the home slot.
 */
function spread(hash: number): number {
  let h = Math.imul(hash ^ (hash >>> 15), 0x2c1b3c6d);
  h ^= h >>> 12;
  h = Math.imul(h, 0x297a2d39);
  return h ^ (h >>> 15);
}

/** The counters within the block: four bytes of another mix, one per row. */
function choose(hash: number): number {
  const h = Math.imul(hash ^ (hash >>> 16), 0x7feb352d);
  return h ^ (h >>> 13);
}

/** The sketch of a shard, or undefined when it has none (no maxEntries). */
export function sketchFor(sab: SharedArrayBuffer, header: Int32Array): FrequencySketch | undefined {
  const maxEntries = header[H_MAX_ENTRIES]!;
  return maxEntries > 0 && header[H_SKETCH_OFFSET]! > 0 ? new FrequencySketch(sab, header, sketchBytesFor(maxEntries)) : undefined;
}
