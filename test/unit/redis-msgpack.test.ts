// The Redis boundary format (src/redis/msgpack/): JSON-like values
// in core msgpack types only, byte for byte what another encoder writes; the
// JS-only types round-trip through self-contained extensions that another
// decoder skips cleanly; anything malformed throws.
import { ExtData, decode as decodeOther, encode as encodeOther } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { decodeStandard } from '../../dist/src/redis/msgpack/decode.js';
import { encodeStandard } from '../../dist/src/redis/msgpack/encode.js';
import { prng } from '../support/prng.js';

const jsonLike: unknown[] = [
  0, 1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER,
  -1, -32, -33, -128, -129, -32_768, -32_769, -(2 ** 31), -(2 ** 31) - 1, Number.MIN_SAFE_INTEGER,
  0.5, -1.25, 1e300, Math.PI, true, false, null,
  '', 'a', 'x'.repeat(31), 'x'.repeat(32), 'x'.repeat(255), 'x'.repeat(256), 'x'.repeat(70_000), 'héllo 🙂',
  [], [1, [2, [3]]], Array.from({ length: 20 }, (_, i) => i), Array.from({ length: 70_000 }, (_, i) => i % 7),
  {}, { a: 1, b: { c: [null, 'd'] } }, Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i])),
];

describe('standard msgpack (the Redis boundary format)', () => {
  it('writes JSON-like values byte for byte as another encoder does, and reads that encoder\'s bytes', () => {
    for (const value of jsonLike) {
      const ours = encodeStandard(value);
      expect(ours.equals(Buffer.from(encodeOther(value))), JSON.stringify(value)?.slice(0, 40)).toBe(true);
      expect(decodeStandard(Buffer.from(encodeOther(value)))).toEqual(value);
      expect(decodeOther(ours)).toEqual(value);
    }
  });

  it('round-trips the JS-only types, which another decoder sees as opaque extensions without losing its place', () => {
    const values: unknown[] = [
      undefined, -0, NaN, Infinity, 2 ** 60, 10n, -(2n ** 64n), 2n ** 200n, 0n, -1n, 127n, 128n, -128n, -129n,
      new Map<unknown, unknown>([['a', 1], [2, 'b'], [null, [new Map([[1, 2]])]]]), new Set([1, 'two', null]),
      new Date(0), new Date(1_700_000_000_123), new Date(-1_500), new Date(2 ** 35 * 1000 + 7), new Date(8.64e15),
      Buffer.from([1, 2, 3]), new Float64Array([1.5, -2]), new Int16Array([-1, 300]), new BigInt64Array([-5n]),
      new Uint8ClampedArray([255]), new Float32Array([0.5]), new Uint32Array([2 ** 32 - 1]),
      /a+b/gi, { when: new Date(5), tags: new Set(['x']), big: 1n, nested: { m: new Map([['k', undefined]]) } },
    ];
    for (const value of values) {
      const bytes = encodeStandard(value);
      expect(decodeStandard(bytes)).toEqual(value);
      // Another decoder reads the value around the extension intact.
      const wrapped = decodeOther(encodeStandard({ before: 1, value, after: 2 }), { useBigInt64: true }) as Record<string, unknown>;
      expect([wrapped.before, wrapped.after]).toEqual([1, 2]);
    }
    const error = decodeStandard(encodeStandard(new TypeError('bad'))) as Error;
    expect([error.name, error.message]).toEqual(['TypeError', 'bad']);
    expect(Object.is(decodeStandard(encodeStandard(-0)), -0)).toBe(true);
    expect(decodeOther(encodeStandard(new Map([['a', 1]])))).toBeInstanceOf(ExtData);
  });

  it('round-trips random nested values', () => {
    const random = prng(7);
    const make = (depth: number): unknown => {
      const r = random();
      if (depth > 3 || r < 0.3) return [Math.floor(random() * 1e6) - 5e5, random() * 100, `s${random()}`, null, true][Math.floor(random() * 5)];
      if (r < 0.5) return Array.from({ length: Math.floor(random() * 5) }, () => make(depth + 1));
      if (r < 0.7) return new Map([[`k${depth}`, make(depth + 1)], [depth, make(depth + 1)]]);
      return Object.fromEntries(Array.from({ length: Math.floor(random() * 5) }, (_, i) => [`f${i}`, make(depth + 1)]));
    };
    for (let i = 0; i < 500; i++) {
      const value = make(0);
      expect(decodeStandard(encodeStandard(value))).toEqual(value);
    }
  });

  it('decodes a map as a plain object whose "__proto__" key is an own property, never the prototype', () => {
    const bytes = Buffer.from([0x81, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa1, 0x78, 0x01]);
    const value = decodeStandard(bytes) as Record<string, unknown>;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.keys(value)).toEqual(['__proto__']);
    expect(value.x).toBeUndefined();
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('throws on malformed bytes rather than guessing', () => {
    const bad: [string, number[]][] = [
      ['0xc1', [0xc1]],
      ['empty', []],
      ['truncated array', [0x92, 0x01]],
      ['truncated string', [0xa5, 0x61]],
      ['trailing bytes', [0x01, 0x02]],
      ['claims 4 GiB', [0xdb, 0xff, 0xff, 0xff, 0xff, 0x61]],
      ['claims 4G elements', [0xdd, 0xff, 0xff, 0xff, 0xff]],
      ['invalid UTF-8', [0xa2, 0xc3, 0x28]],
      ['unknown extension', [0xd4, 0x7f, 0x00]],
      ['msgpackr record', [0xd4, 0x72, 0x40, 0x91, 0xa1, 0x79, 0x02]],
      ['map key that is an array', [0x81, 0x90, 0x01]],
      ['nested 100k deep', Array(100_000).fill(0x91)],
    ];
    for (const [what, bytes] of bad) expect(() => decodeStandard(Uint8Array.from(bytes)), what).toThrow();
  });

  it('refuses functions and symbols', () => {
    expect(() => encodeStandard(() => 1)).toThrow(TypeError);
    expect(() => encodeStandard({ s: Symbol('x') })).toThrow(TypeError);
  });
});
