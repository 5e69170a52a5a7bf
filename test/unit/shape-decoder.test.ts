// The fast decoder for values of shared shapes (src/shape-decoder.ts): from
// any bytes it takes on, it must build exactly what msgpackr builds (same
// values, types, key order), and it must give up, without throwing or
// returning a part, on anything else, which then goes to msgpackr.
import { describe, expect, it } from 'vitest';
import { ShardCodec } from '../../dist/src/codec.js';
import { StructureRegistry, createStructureRegistry } from '../../dist/src/memory/structures.js';
import { NOT_DECODED, ShapeDecoder } from '../../dist/src/shape-decoder.js';
import { prng } from '../support/prng.js';

const EDGE_NUMBERS = [0, 63, 64, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), 0.1, -2.5, NaN, -Infinity, 2 ** 60];
const FIELD_NAMES = ['user', 'id', 'n', 'list', 'meta', 'on', '3', 'é', 'with "quotes"', 'line\u2028break', 'tail'];

/**
 * Mostly what the shape decoder takes on (numbers, ASCII strings, booleans,
 * null, arrays, plain objects), with one value in ten of a kind it leaves to
 * msgpackr: a non-ASCII or long string, a Date, a Map, undefined, a bigint.
 */
function mixedValue(random: () => number, depth: number): unknown {
  const roll = random();
  if (roll < 0.1) {
    const odd = [() => 'naïve', () => 'z'.repeat(300), () => new Date(1_700_000_000_000), () => new Map([[1, 2]]), () => undefined, () => 12n];
    return odd[Math.floor(random() * odd.length)]!();
  }
  const kind = Math.floor(random() * (depth >= 3 ? 4 : 6));
  switch (kind) {
    case 0: return random() < 0.5 ? EDGE_NUMBERS[Math.floor(random() * EDGE_NUMBERS.length)] : Math.round((random() - 0.5) * 1e7) / (random() < 0.5 ? 1 : 100);
    case 1: return Array.from({ length: Math.floor(random() * 70) }, () => String.fromCharCode(32 + Math.floor(random() * 95))).join('');
    case 2: return random() < 0.3 ? null : random() < 0.5;
    case 3: return '';
    case 4: return Array.from({ length: Math.floor(random() * (random() < 0.1 ? 40 : 6)) }, () => mixedValue(random, depth + 1));
    default: {
      const object: Record<string, unknown> = {};
      for (let i = Math.floor(random() * 5); i > 0; i--) object[FIELD_NAMES[Math.floor(random() * FIELD_NAMES.length)]!] = mixedValue(random, depth + 1);
      return object;
    }
  }
}

/** msgpackr's own decode of the codec's bytes (what decodeRange did before the shape decoder). */
function msgpackrDecode(codec: ShardCodec, bytes: Uint8Array): unknown {
  return (codec as unknown as { unpack(bytes: Uint8Array, start: number, end: number): unknown }).unpack(bytes, 0, bytes.length);
}

function isDeepFrozen(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return true;
  return Object.isFrozen(value) && Object.values(value).every(isDeepFrozen);
}

function setup() {
  const sab = createStructureRegistry();
  return { codec: new ShardCodec(sab), decoder: new ShapeDecoder(new StructureRegistry(sab)) };
}

describe('shape decoder', () => {
  it('builds what msgpackr builds from the same bytes, mutable or deep-frozen', () => {
    const { codec, decoder } = setup();
    const random = prng(7);
    let taken = 0;
    for (let i = 0; i < 4000; i++) {
      const bytes = Buffer.from(codec.encode(mixedValue(random, 0)));
      const expected = msgpackrDecode(codec, bytes);
      const value = decoder.decode(bytes, 0, bytes.length, false);
      if (value === NOT_DECODED) continue;
      taken++;
      // toStrictEqual: same classes, same keys (also an own "__proto__" or undefined), same -0/NaN.
      expect(value).toStrictEqual(expected);
      if (value !== null && typeof value === 'object') expect(Object.keys(value)).toEqual(Object.keys(expected as object));
      const frozen = decoder.decode(bytes, 0, bytes.length, true);
      expect(frozen).toStrictEqual(expected);
      expect(isDeepFrozen(frozen)).toBe(true);
      if (value !== null && typeof value === 'object') expect(Object.isFrozen(value)).toBe(false);
    }
    // One value in ten holds something msgpackr's alone, often nested: most must still be taken on.
    expect(taken).toBeGreaterThan(2000);
  });

  it('decodes at an offset into a larger buffer', () => {
    const { codec, decoder } = setup();
    codec.encode({ a: 1, b: 'x' });
    const bytes = Buffer.from(codec.encode({ a: 2, b: 'hello' }));
    const padded = Buffer.concat([Buffer.from([0xc1, 0xc1, 0xc1]), bytes, Buffer.from([0xc1])]);
    expect(decoder.decode(padded, 3, 3 + bytes.length, false)).toStrictEqual({ a: 2, b: 'hello' });
  });

  it('gives up on types it leaves to msgpackr, and the codec still decodes them', () => {
    const { codec, decoder } = setup();
    codec.encode({ v: 0 }); // a shared shape, so values below are records of it
    const values: unknown[] = [
      { v: 'ünï' }, { v: 'y'.repeat(256) }, { v: new Date(3) }, { v: new Map([['k', 1]]) }, { v: new Set([1]) },
      { v: Buffer.from('ab') }, { v: [1, undefined] }, { v: 2n ** 70n }, { v: new Uint16Array([1]) }, new Map(), 'naïve',
    ];
    for (const value of values) {
      const bytes = Buffer.from(codec.encode(value));
      expect(decoder.decode(bytes, 0, bytes.length, false)).toBe(NOT_DECODED);
      expect(codec.decodeRange(bytes, 0, bytes.length)).toStrictEqual(msgpackrDecode(codec, bytes));
    }
    // float32 and uint64 are never written for a number, but msgpack allows them.
    for (const bytes of [Buffer.from([0xca, 0x3f, 0x80, 0, 0]), Buffer.from([0xcf, 0, 0, 0, 0, 0, 0, 0, 1])]) {
      expect(decoder.decode(bytes, 0, bytes.length, false)).toBe(NOT_DECODED);
    }
  });

  it('gives up on bytes that end early or go on past the value, and never throws', () => {
    const { codec, decoder } = setup();
    const value = { id: 300, name: 'a name', tags: ['x', 'y'], score: 1.5, on: true, inner: { n: -7 } };
    codec.encode(value);
    const bytes = Buffer.from(codec.encode(value));
    expect(decoder.decode(bytes, 0, bytes.length, false)).toStrictEqual(value);
    for (let end = 0; end < bytes.length; end++) expect(decoder.decode(bytes, 0, end, false)).toBe(NOT_DECODED);
    const longer = Buffer.concat([bytes, Buffer.from([0x01])]);
    expect(decoder.decode(longer, 0, longer.length, false)).toBe(NOT_DECODED);
    // An array count larger than the bytes left is refused before anything is allocated for it.
    expect(decoder.decode(Buffer.from([0xdc, 0xff, 0xff, 0x01]), 0, 4, false)).toBe(NOT_DECODED);
    // Arrays nested deeper than the shape encoder ever writes: left to msgpackr, with the stack bounded.
    const deep = Buffer.concat([Buffer.alloc(100_000, 0x91), Buffer.from([0x01])]);
    expect(decoder.decode(deep, 0, deep.length, false)).toBe(NOT_DECODED);
    const shallow = Buffer.concat([Buffer.alloc(40, 0x91), Buffer.from([0x01])]);
    let expected: unknown = 1;
    for (let i = 0; i < 40; i++) expected = [expected];
    expect(decoder.decode(shallow, 0, shallow.length, false)).toStrictEqual(expected);
  });

  it('finds shapes other codecs shared later, ids of one and of two bytes, and gives up on an id no one saved', () => {
    const sab = createStructureRegistry();
    const writer = new ShardCodec(sab);
    const decoder = new ShapeDecoder(new StructureRegistry(sab));
    writer.encode({ first: 1 });
    const early = Buffer.from(writer.encode({ first: 2 }));
    expect(decoder.decode(early, 0, early.length, false)).toStrictEqual({ first: 2 });
    // Record 0x40 + 20 (a one-byte id) holding 1: no shape saved under that id yet.
    expect(decoder.decode(Buffer.from([0x40 + 20, 0x01]), 0, 2, false)).toBe(NOT_DECODED);
    for (let i = 0; i < 100; i++) writer.encode({ [`k${i}`]: i });
    for (let i = 0; i < 100; i++) {
      const bytes = Buffer.from(writer.encode({ [`k${i}`]: -1 - i }));
      expect(decoder.decode(bytes, 0, bytes.length, true)).toStrictEqual({ [`k${i}`]: -1 - i });
    }
    // Shape 20 exists now ({ k19 }, after { first }): the id refused above is asked for again, not remembered as unknown.
    expect(decoder.decode(Buffer.from([0x40 + 20, 0x01]), 0, 2, false)).toStrictEqual({ k19: 1 });
  });
});
