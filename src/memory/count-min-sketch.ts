/**
 * A count-min sketch of 4-bit counters, laid out as Caffeine lays out its
 * own: the table is split into 64-byte blocks (16 Int32 words of 8 counters
 * each), a key picks one block, and in it one counter in each of four 4-word
 * rows. One key's four counters then share a cache line, so a read costs at
 * most one cache miss. A key's estimate is the least of its four counters
 * (each may be inflated by other keys sharing it, never deflated, but for
 * lost updates where several threads add at once). Counters saturate at 15:
 * admission only compares frequencies, and small counters lose little.
 *
 * The table may be shared memory (a shard's sketch, frequency-sketch.ts) or a
 * thread's own (the near cache's): plain loads and stores either way. An
 * aligned Int32 store never tears, so a counter never holds anything but some
 * 4-bit count, whatever races with it.
 */

/** Int32 words per block: one 64-byte cache line. */
const BLOCK_WORDS = 16;

export class CountMinSketch {
  private readonly table: Int32Array;
  private readonly blockMask: number;

  /** `table`'s length must be a power of two, at least one block. */
  constructor(table: Int32Array) {
    this.table = table;
    this.blockMask = (table.length / BLOCK_WORDS) - 1;
  }

  /**
   * Counts `times` occurrences of the key with hash `hash` (more than one for
   * a reader that reports one access in `times`), saturating at 15.
   */
  add(hash: number, times = 1): void {
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
    // Conservative update: each counter rises to the key's estimate plus
    // `times`, if below it (for one occurrence, only the counters at the
    // estimate grow). The others already count more than this key, so growing
    // them would only inflate other keys' estimates; it also means fewer
    // stores to a line other readers share.
    const target = min + times > 15 ? 15 : min + times;
    if (c0 < target) t[i0] = t[i0]! + ((target - c0) << s0);
    if (c1 < target) t[i1] = t[i1]! + ((target - c1) << s1);
    if (c2 < target) t[i2] = t[i2]! + ((target - c2) << s2);
    if (c3 < target) t[i3] = t[i3]! + ((target - c3) << s3);
  }

  /** The key's estimated count since the last `halve`, from 0 to 15. */
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

  /** Halves every counter (ageing: the sketch then follows a changing workload). */
  halve(): void {
    const t = this.table;
    // Shifting the whole word moves each counter's low bit into its
    // neighbour's top bit; the mask clears those.
    for (let i = 0; i < t.length; i++) t[i] = (t[i]! >>> 1) & 0x77777777;
  }

  clear(): void {
    this.table.fill(0);
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
