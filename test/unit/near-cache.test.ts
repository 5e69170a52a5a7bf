// The per-thread near cache (src/near-cache.ts). Its values are shared by
// every `get` on a thread, so freezeIfShareable must make them immutable, or
// refuse them (and then leave them untouched).
import { describe, expect, it } from 'vitest';
import { createNearCache, freezeIfShareable } from '../../dist/src/near-cache.js';

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

describe('createNearCache', () => {
  it('is off at 0 and an LRU bounded to its size otherwise', () => {
    expect(createNearCache(0)).toBeUndefined();
    const near = createNearCache(3)!;
    const entry = (n: number) => ({ value: n, view: undefined as never, slot: n, seq: n, expires: 0 });
    near.set('a', entry(1));
    near.set('b', entry(2));
    near.set('c', entry(3));
    near.get('a'); // most recently used now
    near.set('d', entry(4));
    expect(near.size).toBe(3);
    expect(near.has('b')).toBe(false);
    expect([...near.keys()].sort()).toEqual(['a', 'c', 'd']);
  });
});
