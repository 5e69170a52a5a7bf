// The fast path for values of shared shapes (src/shape-encoder.ts): it must
// write exactly the bytes msgpackr writes for the same value and registry, so
// that no reader can tell which path encoded a value, and leave everything it
// does not handle to msgpackr.
import { describe, expect, it } from 'vitest';
import { ShardCodec } from '../../dist/src/codec.js';
import { StructureRegistry, createStructureRegistry } from '../../dist/src/memory/structures.js';
import { NOT_ENCODED, ShapeEncoder } from '../../dist/src/shape-encoder.js';
import { prng } from '../support/prng.js';

const NUMBERS = [
  0, 1, 31, 32, 63, 64, 127, 128, 255, 256, 65535, 65536, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53,
  -1, -31, -32, -33, -127, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, 0.5, -1.25, 1e300, NaN, Infinity, -Infinity,
];
const KEYS = ['id', 'name', 'tags', 'score', 'active', 'nested', '7', '0', 'a key with spaces', 'x'.repeat(40)];

/** A value of the kinds the shape encoder writes itself: numbers, ASCII strings, booleans, null, arrays, plain objects. */
function plainValue(random: () => number, depth: number): unknown {
  const pick = Math.floor(random() * (depth > 3 ? 5 : 8));
  switch (pick) {
    case 0: return NUMBERS[Math.floor(random() * NUMBERS.length)];
    case 1: return String.fromCharCode(...Array.from({ length: Math.floor(random() * 300) }, () => 32 + Math.floor(random() * 95)));
    case 2: return random() < 0.5;
    case 3: return null;
    case 4: return Math.floor(random() * 1e6) - 5e5;
    case 5: return Array.from({ length: Math.floor(random() * 20) }, () => plainValue(random, depth + 1));
    default: {
      const object: Record<string, unknown> = {};
      const count = Math.floor(random() * 6);
      for (let i = 0; i < count; i++) object[KEYS[Math.floor(random() * KEYS.length)]!] = plainValue(random, depth + 1);
      return object;
    }
  }
}

describe('shape encoder', () => {
  it('writes the bytes msgpackr writes, for thousands of values of shared shapes', () => {
    const registry = createStructureRegistry();
    const codec = new ShardCodec(registry);
    const shapes = new ShapeEncoder(new StructureRegistry(registry));
    const random = prng(42);
    let fast = 0;
    for (let i = 0; i < 3000; i++) {
      const value = plainValue(random, 0);
      // The first encode goes to msgpackr whenever the value has a shape not shared yet (and saves it).
      const first = Buffer.from(codec.encode(value));
      const length = shapes.encode(value);
      if (length === NOT_ENCODED) continue;
      fast++;
      expect(Buffer.from(shapes.bytes(length)).toString('hex')).toBe(first.toString('hex'));
      const again = Buffer.from(codec.encode(value));
      expect(again.equals(first)).toBe(true);
      expect(codec.decodeRange(again, 0, again.length)).toEqual(value);
    }
    // Strings over 255 characters and nesting make some values msgpackr's; most must be the fast path's.
    expect(fast).toBeGreaterThan(2000);
  });

  it('writes -0 as msgpackr does (as 0)', () => {
    const registry = createStructureRegistry();
    const codec = new ShardCodec(registry);
    const shapes = new ShapeEncoder(new StructureRegistry(registry));
    const first = Buffer.from(codec.encode({ zero: -0 }));
    expect(Buffer.from(shapes.bytes(shapes.encode({ zero: -0 }))).equals(first)).toBe(true);
  });

  it('leaves to msgpackr what it does not write itself, and those values still round-trip', () => {
    const registry = createStructureRegistry();
    const codec = new ShardCodec(registry);
    const shapes = new ShapeEncoder(new StructureRegistry(registry));
    const inherited = Object.create({ inherited: 1 }) as Record<string, unknown>;
    inherited.own = 2;
    const values: unknown[] = [
      'café', 'x'.repeat(256), new Date(5), new Map([['a', 1]]), new Set([1]), Buffer.from('ab'), [1, undefined], [1, , 3],
      { a: 1n }, { a: undefined }, { when: new Date(7) }, Object.create(null), inherited, { a: 'ünï' }, 10n,
    ];
    for (const value of values) {
      codec.encode(value);
      expect(shapes.encode(value)).toBe(NOT_ENCODED);
      const bytes = Buffer.from(codec.encode(value));
      const decoded = codec.decodeRange(bytes, 0, bytes.length);
      if (value === inherited) expect(decoded).toEqual({ own: 2 });
      else expect(decoded).toEqual(value);
    }
  });

  it('refuses a value whose getter throws with ERR_UNSERIALIZABLE, on the fast path too', () => {
    const codec = new ShardCodec(createStructureRegistry());
    codec.encode({ a: 1, b: 2 }); // the shape is shared: the next value of it takes the fast path
    const value = { a: 1, get b(): number { throw new Error('no b'); } };
    expect(() => codec.encode(value)).toThrow(expect.objectContaining({ code: 'ERR_UNSERIALIZABLE' }));
    const fine = Buffer.from(codec.encode({ a: 3, b: 4 }));
    expect(codec.decodeRange(fine, 0, fine.length)).toEqual({ a: 3, b: 4 });
  });

  it('learns shapes other codecs on the registry shared, and encodes them as those ids', () => {
    const registry = createStructureRegistry();
    const other = new ShardCodec(registry);
    const reader = new ShardCodec(registry);
    for (let i = 0; i < 100; i++) other.encode({ [`k${i}`]: i, list: [i] });
    const shapes = new ShapeEncoder(new StructureRegistry(registry));
    for (let i = 0; i < 100; i++) {
      const value = { [`k${i}`]: i, list: [i] };
      const length = shapes.encode(value);
      expect(length).not.toBe(NOT_ENCODED);
      const bytes = Buffer.from(shapes.bytes(length));
      // Ids past 32 take two bytes: 100 shapes exercise both forms.
      const numberBytes = i < 64 ? 1 : 2;
      expect(bytes.length).toBe((i < 32 ? 1 : 2) + numberBytes + 1 + numberBytes);
      expect(reader.decodeRange(bytes, 0, bytes.length)).toEqual(value);
    }
  });
});
