/**
 * Key hashing and routing.
 *
 * Keys are hashed over their UTF-16 code units, not their UTF-8 bytes: UTF-8
 * cannot represent lone surrogates, so '\uD800' and '\uDFFF' would collide.
 * One 32-bit hash serves three purposes, each from different bits so they stay
 * independent: the high bits pick the shard, a second mix picks the home slot in
 * the shard's index, the low bits pick the stripe of the seqlock.
 */

/**
 * String.prototype.charCodeAt, called as `charCodeAt.call(key, i)`. Once any
 * module has evaluated `class … extends String` (ioredis does, for RESP3
 * verbatim strings), V8 20 no longer inlines `key.charCodeAt(i)` in code it
 * optimized, and this loop measured 3x slower (108 against 34 ns for an
 * 11-character key); the captured builtin is inlined either way. It must be a
 * const of the module that calls it: an imported binding is not folded and
 * measured slower still. shard-view.ts and write-queue.ts keep their own.
 */
const charCodeAt = String.prototype.charCodeAt;

/** FNV-1a over code units, finished with murmur3's fmix32 for avalanche. Never 0: 0 marks an empty slot. */
export function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h = Math.imul(h ^ charCodeAt.call(key, i), 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h === 0 ? 1 : h;
}

/** Shard for a hash: multiply-shift on the high bits, no modulo bias. */
export function shardOf(hash: number, shards: number): number {
  return Math.floor(((hash >>> 0) * shards) / 4294967296);
}

/** Home slot of a hash in an index of `slots` slots (any count, not only powers of two). */
export function homeSlot(hash: number, slots: number): number {
  return Math.floor(((Math.imul(hash, 0x9e3779b1) >>> 0) * slots) / 4294967296);
}
