/**
 * Keys and key choice for every scenario.
 *
 * Keys look like `user:123456`. Which key an operation touches is decided
 * before any timing starts: an index array (uniform or Zipf) is precomputed
 * from a seeded PRNG, and a timed loop only walks it with a cursor, so the
 * cost of the random number generator never lands in a measurement. The same
 * seed gives the same keys and the same access sequence in every thread and
 * every run.
 */

/** Length of a precomputed index array: 2^20 choices, walked cyclically. */
export const CHOICES = 1 << 20;
export const CHOICE_MASK = CHOICES - 1;

/** Zipf exponent of the skewed distribution (YCSB's default, close to web-cache traces). */
export const ZIPF_S = 0.99;

/** First numeric id; keeps every id six digits for up to 900k keys. */
const FIRST_ID = 100_000;

export type Distribution = 'uniform' | 'zipf';

/** `count` distinct keys, `user:<id>` with ids from `FIRST_ID + offset`. */
export function makeKeys(count: number, offset = 0): string[] {
  const keys = new Array<string>(count);
  for (let i = 0; i < count; i++) keys[i] = `user:${FIRST_ID + offset + i}`;
  return keys;
}

/** Keys guaranteed absent from `makeKeys(count)`: the next `count` ids. */
export function makeMissKeys(count: number): string[] {
  return makeKeys(count, count);
}

/** mulberry32: small, fast, seedable; good enough to pick keys. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uniform choice of `CHOICES` indices in [0, keyCount). */
export function uniformIndices(keyCount: number, seed = 1): Uint32Array {
  const random = prng(seed);
  const out = new Uint32Array(CHOICES);
  for (let i = 0; i < CHOICES; i++) out[i] = Math.floor(random() * keyCount);
  return out;
}

/**
 * Zipf(s) choice of `CHOICES` indices in [0, keyCount): rank r is drawn with
 * probability proportional to 1/r^s by inverse CDF (binary search), then mapped
 * through a seeded permutation so the hot keys are spread over the key space
 * (and over the shards) instead of being the first ids.
 */
export function zipfIndices(keyCount: number, seed = 2, s = ZIPF_S): Uint32Array {
  const cdf = new Float64Array(keyCount);
  let total = 0;
  for (let r = 0; r < keyCount; r++) {
    total += 1 / Math.pow(r + 1, s);
    cdf[r] = total;
  }
  for (let r = 0; r < keyCount; r++) cdf[r]! /= total;

  const random = prng(seed);
  const permutation = new Uint32Array(keyCount);
  for (let i = 0; i < keyCount; i++) permutation[i] = i;
  for (let i = keyCount - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = permutation[i]!;
    permutation[i] = permutation[j]!;
    permutation[j] = t;
  }

  const out = new Uint32Array(CHOICES);
  for (let i = 0; i < CHOICES; i++) {
    const u = random();
    let lo = 0;
    let hi = keyCount - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    out[i] = permutation[lo]!;
  }
  return out;
}

export function indices(distribution: Distribution, keyCount: number): Uint32Array {
  return distribution === 'zipf' ? zipfIndices(keyCount) : uniformIndices(keyCount);
}

/**
 * A cursor over a precomputed index array. Each timed task owns one, so two
 * tasks never share (or reset) each other's position.
 */
export class KeyCursor {
  private position = 0;
  constructor(
    private readonly keys: readonly string[],
    private readonly choice: Uint32Array,
  ) {}

  next(): string {
    const key = this.keys[this.choice[this.position & CHOICE_MASK]!]!;
    this.position++;
    return key;
  }

  /** The key index of the next choice, advancing the cursor. */
  nextIndex(): number {
    return this.choice[this.position++ & CHOICE_MASK]!;
  }
}
