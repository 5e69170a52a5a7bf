// Key hashing and routing (src/hash.ts): one 32-bit hash per key, never 0,
// spread evenly over shards, over home slots and over lock stripes.
import { describe, expect, it } from 'vitest';
import { hashKey, homeSlot, shardOf } from '../../dist/src/hash.js';
import { STRIPE_MASK } from '../../dist/src/memory/layout.js';
import { keyWithRawHash, rawHash } from '../support/keys.js';
import { prng } from '../support/prng.js';

function sequentialKeys(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `user:${i}`);
}

function randomKeys(n: number, seed: number): string[] {
  const random = prng(seed);
  return Array.from({ length: n }, () => {
    const length = 1 + Math.floor(random() * 24);
    let key = '';
    for (let j = 0; j < length; j++) key += String.fromCharCode(Math.floor(random() * 0x10000));
    return key;
  });
}

/** Largest relative deviation of any bucket from the mean. */
function worstDeviation(counts: number[], total: number): number {
  const mean = total / counts.length;
  return Math.max(...counts.map((c) => Math.abs(c - mean) / mean));
}

describe('hashKey', () => {
  it('is a deterministic 32-bit integer that matches an independent implementation', () => {
    for (const key of ['', 'a', 'user:1', '\u{1F600}', '\uD800', 'x'.repeat(4096)]) {
      const h = hashKey(key);
      expect(Number.isInteger(h)).toBe(true);
      expect(h | 0).toBe(h);
      expect(hashKey(key)).toBe(h);
      // test/support/keys.ts re-implements the hash to build colliding keys; it must agree.
      expect(h).toBe(rawHash(key) === 0 ? 1 : rawHash(key));
    }
  });

  it('is never 0, even for a key whose raw hash is 0 (0 marks an empty slot)', () => {
    const zeroKey = keyWithRawHash(0, 'zero');
    expect(rawHash(zeroKey)).toBe(0);
    expect(hashKey(zeroKey)).not.toBe(0);
    for (const key of [...sequentialKeys(20_000), ...randomKeys(20_000, 1)]) {
      if (hashKey(key) === 0) throw new Error(`hashKey(${JSON.stringify(key)}) is 0`);
    }
  });

  it('tells lone surrogates apart (UTF-8 would turn them all into U+FFFD)', () => {
    expect(hashKey('\uD800')).not.toBe(hashKey('\uDFFF'));
    expect(hashKey('\uD800')).not.toBe(hashKey('\uFFFD'));
    expect(hashKey('a\uD800')).not.toBe(hashKey('a\uFFFD'));
    expect(hashKey('\uD83D\uDE00')).not.toBe(hashKey('\uDE00\uD83D'));
    const hashes = new Set<number>();
    for (let unit = 0xd800; unit <= 0xdfff; unit++) hashes.add(hashKey(String.fromCharCode(unit)));
    expect(hashes.size).toBe(0x800);
  });

  it('uses every code unit, including the high byte and position', () => {
    expect(hashKey('\u0100')).not.toBe(hashKey('\u0000'));
    expect(hashKey('ab')).not.toBe(hashKey('ba'));
    expect(hashKey('a')).not.toBe(hashKey('a\u0000'));
    expect(hashKey('')).not.toBe(hashKey('\u0000'));
  });
});

describe('shardOf', () => {
  it('always returns a shard in range, including at the extremes of the hash', () => {
    for (const shards of [1, 2, 3, 7, 16, 255, 256]) {
      for (const h of [1, -1, 0x7fffffff, -0x80000000, 0x12345678]) {
        const s = shardOf(h, shards);
        expect(Number.isInteger(s)).toBe(true);
        expect(s).toBeGreaterThanOrEqual(0);
        expect(s).toBeLessThan(shards);
      }
      expect(shardOf(-1, shards)).toBe(shards - 1);
      expect(shardOf(1, shards)).toBe(0);
    }
  });

  it.each([2, 3, 7, 16])('spreads keys evenly over %i shards', (shards) => {
    for (const keys of [sequentialKeys(100_000), randomKeys(100_000, shards)]) {
      const counts = new Array<number>(shards).fill(0);
      for (const key of keys) counts[shardOf(hashKey(key), shards)]!++;
      // 100k keys: one standard deviation is under 1% of the mean for 16 shards.
      expect(worstDeviation(counts, keys.length)).toBeLessThan(0.05);
    }
  });

  it('spreads keys over 256 shards with no empty or crowded shard', () => {
    const keys = sequentialKeys(256_000);
    const counts = new Array<number>(256).fill(0);
    for (const key of keys) counts[shardOf(hashKey(key), 256)]!++;
    // Mean 1000, standard deviation ~31: 15% is almost 5 standard deviations.
    expect(worstDeviation(counts, keys.length)).toBeLessThan(0.15);
  });
});

describe('homeSlot and stripes', () => {
  it('returns a slot in range for index sizes that are not powers of two', () => {
    for (const slots of [64, 100, 1000, 4093, 65_536]) {
      for (const h of [1, -1, 0x7fffffff, -0x80000000, 0x12345678]) {
        const slot = homeSlot(h, slots);
        expect(slot).toBeGreaterThanOrEqual(0);
        expect(slot).toBeLessThan(slots);
      }
    }
  });

  it('spreads the keys of one shard evenly over home slots and stripes (independent bits)', () => {
    // Keys routed to one shard share their high hash bits; the slot and the
    // stripe must not depend on those bits, or half the index would stay empty.
    const keys = sequentialKeys(200_000).filter((key) => shardOf(hashKey(key), 2) === 1);
    expect(keys.length).toBeGreaterThan(95_000);

    const slotBuckets = new Array<number>(64).fill(0);
    const slots = 6400;
    for (const key of keys) slotBuckets[Math.floor(homeSlot(hashKey(key), slots) / 100)]!++;
    expect(worstDeviation(slotBuckets, keys.length)).toBeLessThan(0.1);

    const stripeBuckets = new Array<number>(64).fill(0);
    for (const key of keys) stripeBuckets[(hashKey(key) & STRIPE_MASK) >> 6]!++;
    expect(worstDeviation(stripeBuckets, keys.length)).toBeLessThan(0.1);
  });
});

describe('hashKey with String subclassed (as ioredis does)', () => {
  it('gives the same hashes once a String subclass exists and the prototype is restored, from code optimized before and after', async () => {
    const keys = randomKeys(2000, 7).concat(sequentialKeys(2000));
    const before = keys.map(hashKey);
    // Warm hashKey up (optimized), then subclass String, then restore.
    for (let round = 0; round < 50; round++) for (const key of keys) hashKey(key);
    class Verbatim extends String {}
    expect(new Verbatim('x').length).toBe(1);
    const { restoreStringPrototype } = await import('../../dist/src/string-prototype.js');
    restoreStringPrototype();
    restoreStringPrototype();
    expect(keys.map(hashKey)).toEqual(before);
    expect('\uD800abc'.charCodeAt(0)).toBe(0xd800);
  });
});
