// Keys with chosen hashes, for tests that need hash collisions or the raw hash 0.
//
// shardcache hashes a key with FNV-1a over its UTF-16 code units and finishes
// with murmur3's fmix32 (src/hash.ts). Both steps are invertible, so instead of
// searching 2^32 keys for a wanted hash we search ~2^16 prefixes: the last code
// unit of the key can then be solved for exactly. This file re-implements the
// hash independently of the library on purpose; `rawHash` is checked against
// the library's `hashKey` in test/unit/hash.test.ts.

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** Inverse of an odd number modulo 2^32 (Newton's iteration doubles the correct bits each step). */
function inverseOdd(a: number): number {
  let x = a;
  for (let i = 0; i < 5; i++) x = Math.imul(x, 2 - Math.imul(a, x));
  return x;
}

const FNV_PRIME_INVERSE = inverseOdd(FNV_PRIME);
const M1_INVERSE = inverseOdd(0x85ebca6b);
const M2_INVERSE = inverseOdd(0xc2b2ae35);

export function fnv1a(key: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), FNV_PRIME);
  return h;
}

export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h;
}

export function fmix32Inverse(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, M2_INVERSE);
  h ^= (h >>> 13) ^ (h >>> 26);
  h = Math.imul(h, M1_INVERSE);
  h ^= h >>> 16;
  return h;
}

/** The hash before the library maps 0 to 1. */
export function rawHash(key: string): number {
  return fmix32(fnv1a(key));
}

/**
 * A key whose raw hash is `target` (any 32-bit value), distinct for each `tag`.
 * The key is `${tag}${n}` plus one solved code unit, which may be a lone surrogate.
 */
export function keyWithRawHash(target: number, tag: string): string {
  // fnv(prefix + c) = (fnv(prefix) ^ c) * P, so we need fnv(prefix) ^ c = want.
  const want = Math.imul(fmix32Inverse(target | 0), FNV_PRIME_INVERSE) >>> 0;
  for (let n = 0; n < 50_000_000; n++) {
    const prefix = `${tag}${n}`;
    const state = fnv1a(prefix) >>> 0;
    if ((state >>> 16) === (want >>> 16)) {
      const key = prefix + String.fromCharCode((state ^ want) & 0xffff);
      if (rawHash(key) !== (target | 0)) throw new Error('keyWithRawHash: inversion is wrong');
      return key;
    }
  }
  throw new Error(`no key found for hash ${target}`);
}

/** `count` distinct keys that all have the same (library) hash `hash`, which must not be 0. */
export function collidingKeys(hash: number, count: number, tag = 'collide'): string[] {
  return Array.from({ length: count }, (_, i) => keyWithRawHash(hash, `${tag}${i}:`));
}
