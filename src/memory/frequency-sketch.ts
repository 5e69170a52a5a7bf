/**
 * The frequency sketch: how often each key was read lately, approximately, in
 * shared memory, so that readers on any thread feed it without a message and
 * the owner consults it to decide admission (eviction-policy.ts).
 *
 * It is a count-min sketch (count-min-sketch.ts) in the shard's memory,
 * TinyLFU's (Einziger, Friedman, Manes, "TinyLFU: A Highly Efficient Cache
 * Admission Policy", ACM ToS 2017).
 *
 * Ageing ("reset" in the paper): after about ten reads per entry the owner
 * halves every counter, so the sketch follows a changing workload and a key
 * popular long ago does not keep its place forever. No doorkeeper: it saves
 * memory, which here is 8 bytes per entry out of the shard's budget, but costs
 * a second probe on every read.
 *
 * Concurrency: readers increment with plain loads and stores, not atomics. Two
 * threads incrementing counters in one word at once can lose one of the
 * increments, and a reader's store can undo the owner's halving of one word;
 * both only blur an estimate, which admission tolerates (Caffeine's and
 * ristretto's sketches accept the same).
 *
 * Reads are counted too (H_ACCESSES), to know when to age the sketch: each
 * thread adds its count in batches, so the shared word costs one atomic add
 * per ACCESS_BATCH reads instead of a contended store per read.
 */
import { CountMinSketch } from './count-min-sketch.js';
import { H_ACCESSES, H_MAX_ENTRIES, H_SKETCH_OFFSET, sketchBytesFor } from './layout.js';

/** Reads a thread counts locally before adding them to H_ACCESSES. */
const ACCESS_BATCH = 64;

export class FrequencySketch extends CountMinSketch {
  private readonly header: Int32Array;
  /** This thread's reads not yet added to H_ACCESSES. */
  private unpublished = 0;

  /** The sketch of the shard in `sab`; `sketchFor` says whether there is one. */
  constructor(sab: SharedArrayBuffer, header: Int32Array, bytes: number) {
    super(new Int32Array(sab, header[H_SKETCH_OFFSET]!, bytes >> 2));
    this.header = header;
  }

  /** Counts one read of the key with hash `hash` (a hit or a miss). */
  increment(hash: number): void {
    this.add(hash);
    if (++this.unpublished >= ACCESS_BATCH) this.publish();
  }

  /**
   * Counts `reads` reads of the key at once: for a near cache that reports
   * about one hit in `reads`, so its hot keys are not undercounted against
   * keys read from the shard, and the ageing clock runs at the rate of reads.
   */
  incrementSampled(hash: number, reads: number): void {
    this.add(hash, reads);
    this.unpublished += reads;
    if (this.unpublished >= ACCESS_BATCH) this.publish();
  }

  /** Adds this thread's counted reads to the shard's total. */
  publish(): void {
    if (this.unpublished === 0) return;
    Atomics.add(this.header, H_ACCESSES, this.unpublished);
    this.unpublished = 0;
  }
}

/** The sketch of a shard, or undefined when it has none (no maxEntries). */
export function sketchFor(sab: SharedArrayBuffer, header: Int32Array): FrequencySketch | undefined {
  const maxEntries = header[H_MAX_ENTRIES]!;
  return maxEntries > 0 && header[H_SKETCH_OFFSET]! > 0 ? new FrequencySketch(sab, header, sketchBytesFor(maxEntries)) : undefined;
}
