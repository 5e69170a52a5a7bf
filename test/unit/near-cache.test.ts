// The per-thread near cache (src/near-cache.ts). Its values are shared by
// every `get` on a thread, so freezeIfShareable must make them immutable, or
// refuse them (and then leave them untouched).
import { describe, expect, it } from 'vitest';
import { freezeIfShareable } from '../../dist/src/freeze.js';
import { createNearCache } from '../../dist/src/near-cache.js';
import { HEADER_BYTES, SLOT_WORDS, STRIPES, createShardBuffer } from '../../dist/src/memory/layout.js';
import { ShardView } from '../../dist/src/memory/shard-view.js';

function isDeepFrozen(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return true;
  if (!Object.isFrozen(value)) return false;
  return Object.values(value).every(isDeepFrozen);
}

function nested(depth: number): Record<string, unknown> {
  let value: Record<string, unknown> = { leaf: true };
  for (let i = 0; i < depth; i++) value = { child: value };
  return value;
}

describe('freezeIfShareable', () => {
  it.each<[string, unknown]>([
    ['null', null],
    ['a number', 1],
    ['a string', 's'],
    ['a bigint', 1n],
    ['a boolean', false],
  ])('accepts %s (immutable already)', (_name, value) => {
    expect(freezeIfShareable(value)).toBe(true);
  });

  it('deep-freezes plain objects and arrays, all the way down', () => {
    const value = { a: 1, list: [{ b: 2 }, [3, { c: [4] }]], inner: { deeper: { x: 'y' } } };
    expect(freezeIfShareable(value)).toBe(true);
    expect(isDeepFrozen(value)).toBe(true);
    expect(() => {
      'use strict';
      (value.inner.deeper as { x: string }).x = 'changed';
    }).toThrow(TypeError);
    expect(() => (value.list as unknown[]).push(5)).toThrow(TypeError);
    expect(value.inner.deeper.x).toBe('y');
  });

  it('accepts objects with a null prototype', () => {
    const value = Object.assign(Object.create(null) as Record<string, unknown>, { a: { b: 1 } });
    expect(freezeIfShareable(value)).toBe(true);
    expect(isDeepFrozen(value)).toBe(true);
  });

  it.each<[string, () => unknown]>([
    ['a Buffer', () => Buffer.from('x')],
    ['a Uint8Array', () => new Uint8Array(2)],
    ['a Map', () => new Map([['a', 1]])],
    ['a Set', () => new Set([1])],
    ['a Date', () => new Date(0)],
    ['a class instance', () => new (class Point { x = 1; })()],
    ['an array subclass', () => new (class List extends Array {})()],
  ])('refuses %s, which freezing cannot protect', (_name, make) => {
    const value = make();
    expect(freezeIfShareable(value)).toBe(false);
    expect(Object.isFrozen(value)).toBe(false);
  });

  it('refuses a plain object that holds a Map, Buffer or Date anywhere, and freezes none of it', () => {
    for (const bad of [new Map(), Buffer.from('x'), new Date(0), new Set()]) {
      const sibling = { untouched: true };
      const value = { first: sibling, list: [1, { deep: [bad] }], last: { also: 'untouched' } };
      expect(freezeIfShareable(value)).toBe(false);
      // "Check everything before freezing anything": a refused value is handed back intact.
      expect(Object.isFrozen(value)).toBe(false);
      expect(Object.isFrozen(sibling)).toBe(false);
      expect(Object.isFrozen(value.list)).toBe(false);
      expect(Object.isFrozen(value.last)).toBe(false);
    }
  });

  it('accepts nesting up to its depth limit and refuses deeper values untouched', () => {
    const ok = nested(32);
    expect(freezeIfShareable(ok)).toBe(true);
    expect(isDeepFrozen(ok)).toBe(true);

    const tooDeep = nested(40);
    expect(freezeIfShareable(tooDeep)).toBe(false);
    expect(Object.isFrozen(tooDeep)).toBe(false);
  });
});

describe('NearCache', () => {
  // A real shard's view; the test plays the reader (found* fields) and the
  // owner (stripe versions, slot seqs) by hand. Key number n has hash n, so
  // it lives in stripe n and slot n.
  function setup(max: number) {
    const view = new ShardView(createShardBuffer(256 * 1024));
    const queued = new Uint8Array(STRIPES); // the overlay's marks, set by hand here
    const near = createNearCache(max, [view], [queued])!;
    const stripeOf = (n: number) => (HEADER_BYTES >> 2) + n;
    // What the owner does when it writes key n again: a new seq in its slot, its stripe's version bumped.
    const rewrite = (n: number) => {
      view.i32[view.slotBase + n * SLOT_WORDS + 2] = 900 + n;
      Atomics.add(view.i32, stripeOf(n), 2);
    };
    const put = (key: string, value: unknown, n: number, expires = 0) => {
      view.foundSlot = n;
      view.foundSeq = 100 + n;
      view.foundVersion = Atomics.load(view.i32, stripeOf(n));
      view.foundExpires = expires;
      view.foundFreshUntil = expires;
      view.i32[view.slotBase + n * SLOT_WORDS + 2] = 100 + n; // the slot holds that write
      near.set(key, n, value, 0, view); // hash n: stripe n
    };
    return { view, near, put, stripeOf, rewrite, queued };
  }

  it('is off at 0 and an LRU bounded to its size otherwise', () => {
    expect(createNearCache(0, [], [])).toBeUndefined();
    const { near, put } = setup(3);
    put('a', 1, 1);
    put('b', 2, 2);
    put('c', 3, 3);
    expect(near.get('a')).toBe(1); // most recently used now
    put('d', 4, 4);
    expect(near.size).toBe(3);
    expect(near.get('b')).toBeUndefined();
    expect([near.get('a'), near.get('c'), near.get('d')]).toEqual([1, 3, 4]);
  });

  it('serves a value while its stripe is unchanged, or while its slot still holds its write', () => {
    const { view, near, put, stripeOf } = setup(10);
    put('k', 'v', 5);
    expect(near.get('k')).toBe('v');
    Atomics.add(view.i32, stripeOf(5), 2); // another key of the stripe changed
    expect(near.get('k')).toBe('v');
    Atomics.add(view.i32, stripeOf(5), 2);
    view.i32[view.slotBase + 5 * SLOT_WORDS + 2] = 999; // k itself was written again
    expect(near.get('k')).toBeUndefined();
    expect(near.size).toBe(0);
  });

  it('checks a key against its own shard, whatever the other shards do', () => {
    const views = [0, 1, 2].map(() => new ShardView(createShardBuffer(256 * 1024)));
    const queued = views.map(() => new Uint8Array(STRIPES));
    const near = createNearCache(4, views, queued)!;
    const stripe = (HEADER_BYTES >> 2) + 7;
    const view = views[2]!;
    view.foundSlot = 7;
    view.foundSeq = 107;
    view.foundVersion = Atomics.load(view.i32, stripe);
    view.foundFreshUntil = 0;
    view.i32[view.slotBase + 7 * SLOT_WORDS + 2] = 107;
    near.set('k', 7, 'v', 2, view); // shard 2, stripe 7
    // The same stripe and slot of the other shards change: nothing of k's.
    for (const other of [views[0]!, views[1]!]) {
      Atomics.add(other.i32, stripe, 2);
      other.i32[other.slotBase + 7 * SLOT_WORDS + 2] = 999;
    }
    queued[0]![7] = 1;
    expect(near.get('k')).toBe('v');
    queued[2]![7] = 1;
    expect(near.get('k')).toBeUndefined();
    queued[2]![7] = 0;
    Atomics.add(view.i32, stripe, 2);
    view.i32[view.slotBase + 7 * SLOT_WORDS + 2] = 999;
    expect(near.get('k')).toBeUndefined();
  });

  it('serves no key of a stripe this thread has queued writes to', () => {
    const { near, put, queued } = setup(10);
    put('k', 'v', 5);
    put('neighbour', 'n', 6);
    queued[5] = 1;
    expect(near.get('k')).toBeUndefined();
    expect(near.get('neighbour')).toBe('n');
    queued[5] = 0;
    expect(near.get('k')).toBe('v');
  });

  it('drops an expired value', () => {
    const { near, put } = setup(10);
    put('old', 'x', 1, Date.now() - 1);
    put('new', 'y', 2, Date.now() + 60_000);
    expect(near.get('old')).toBeUndefined();
    expect(near.get('new')).toBe('y');
  });

  it('reuses the ids of evicted entries without mixing values up', () => {
    const { near, put } = setup(8);
    for (let round = 0; round < 50; round++) {
      for (let n = 0; n < 12; n++) put(`k${round}:${n}`, `${round}:${n}`, n);
      for (let n = 4; n < 12; n++) expect(near.get(`k${round}:${n}`)).toBe(`${round}:${n}`);
      expect(near.size).toBe(8);
    }
    near.clear();
    expect(near.size).toBe(0);
  });
  it('admits a key that missed on its second miss, and forgets first misses after as many as it holds', () => {
    const { near } = setup(4);
    expect(near.admit('x', 0x1234)).toBe(false);
    expect(near.admit('x', 0x1234)).toBe(true);
    expect(near.admit('x', 0x1234)).toBe(true);
    // Three more first misses: the fourth since the last reset clears every mark.
    for (const hash of [1, 2, 3]) expect(near.admit(`k${hash}`, hash)).toBe(false);
    expect(near.admit('x', 0x1234)).toBe(false);
    expect(near.admit('x', 0x1234)).toBe(true);
    near.clear();
    expect(near.admit('x', 0x1234)).toBe(false);
  });

  it('keeps the id of a dropped entry for its key, and gives it to a new key when the hand comes by', () => {
    const { near, put, rewrite } = setup(4);
    ['a', 'b', 'c', 'd'].forEach((key, i) => put(key, key, i + 1));
    const ids = (near as unknown as { ids: Map<string, number> }).ids;
    rewrite(2); // b written again: its cached value is dropped on the next read
    expect(near.get('b')).toBeUndefined();
    expect(near.size).toBe(3);
    expect(ids.has('b')).toBe(true); // no Map delete and insert for a key that comes back
    // Its own id again: admitted at once, evicting no one.
    expect(near.admit('b', 2)).toBe(true);
    put('b', 'b again', 2);
    expect([near.get('a'), near.get('b'), near.get('c'), near.get('d')]).toEqual(['a', 'b again', 'c', 'd']);
    // Dropped entries are the hand's first victims, whatever their reads.
    rewrite(3);
    expect(near.get('c')).toBeUndefined();
    expect(near.admit('e', 5)).toBe(true);
    put('e', 'e', 5);
    expect(ids.has('c')).toBe(false);
    expect(near.size).toBe(4);
    expect([near.get('a'), near.get('b'), near.get('d'), near.get('e')]).toEqual(['a', 'b again', 'd', 'e']);
  });

  it('once full, admits a key that missed only if it was read more often lately than the victim', () => {
    const { near, put } = setup(4);
    const keys = ['a', 'b', 'c', 'd'];
    keys.forEach((key, i) => put(key, key, i + 1));
    for (let round = 0; round < 400; round++) for (const key of keys) expect(near.get(key)).toBe(key);
    // Missed a few times (a second miss is all the doorkeeper asks while ids
    // are free), against keys read 400 times each: refused, and nothing is
    // evicted for it.
    for (let miss = 0; miss < 3; miss++) expect(near.admit('e', 5)).toBe(false);
    expect(near.size).toBe(4);
    for (const key of keys) expect(near.get(key)).toBe(key);
    // Missed again and again while the others go unread: the sketch ages them and lets it in.
    let admitted = false;
    for (let miss = 0; miss < 2000 && !admitted; miss++) admitted = near.admit('e', 5);
    expect(admitted).toBe(true);
    put('e', 'e', 5);
    expect(near.size).toBe(4);
    expect(near.get('e')).toBe('e');
    expect(keys.filter((key) => near.get(key) === key)).toHaveLength(3);
  });

  it('samples accesses at random, so keys read in a fixed rotation are counted alike', () => {
    const { near, put } = setup(8);
    const keys = Array.from({ length: 8 }, (_, i) => `k${i}`);
    keys.forEach((key, i) => put(key, key, i + 1));
    for (let round = 0; round < 60; round++) for (const key of keys) near.get(key);
    // Full, so hits are counted: ~60 of the 480 (fewer than make the sketch
    // age), every key about 7 times. Every eighth access instead would count
    // one key each time and the other seven never.
    const sketch = (near as unknown as { sketch: { frequency(hash: number): number } }).sketch;
    for (let i = 1; i <= 8; i++) expect(sketch.frequency(i)).toBeGreaterThanOrEqual(2);
  });
});
