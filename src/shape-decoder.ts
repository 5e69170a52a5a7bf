/**
 * The decoder for what the shape encoder writes (shape-encoder.ts): a record
 * of a shape in the cache's shared structures, holding numbers, ASCII
 * strings, booleans, null, arrays and such records again. msgpackr writes the
 * same bytes for such values, so it does not matter which of the two encoded
 * them. It builds exactly what msgpackr's Unpackr (with the codec's options)
 * builds from those bytes, for less: ~250 ns for the ~100 B object of the
 * benchmarks with msgpackr, most of it its general dispatch.
 *
 * A `get` that fills the near cache wants the value deep-frozen (near-cache.ts);
 * built here, each object and array is frozen as it is made, instead of being
 * walked twice afterwards (once to check it is plain, once to freeze it).
 *
 * Anything else (another type byte, a non-ASCII string, a shape this thread
 * cannot find in the registry, bytes that end early or late) makes `decode`
 * answer NOT_DECODED, and the codec hands the bytes to msgpackr. Nothing is
 * kept from a decode given up midway: decoding has no side effects.
 *
 * Objects are built by a function made per shape from its key list
 * (`new Function`, as msgpackr does too): an object literal gets the shape's
 * hidden class at once, where adding the keys one by one measured ~15 ns per
 * key. Where code generation is disallowed, the keys are added one by one.
 */
import type { StructureRegistry } from './memory/structures.js';
import { RECORD_BASE, TWO_BYTE_RECORDS } from './shape-encoder.js';

export const NOT_DECODED: unique symbol = Symbol('shardcache.notDecoded');

/** Strings up to this length are made by a String.fromCharCode call with one argument per byte. */
const MAX_INLINE_STRING = 32;
/** Deeper nesting goes to msgpackr: the shape encoder writes no deeper, and the stack stays bounded. */
const MAX_DEPTH = 64;

const fromCharCode = String.fromCharCode;

/** Builds one object of a shape: reads its values in key order from the decoder. */
type ShapeReader = (decoder: ShapeDecoder) => Record<string, unknown>;
/** Makes the string of `length` bytes at `at`, or undefined if one of them is not ASCII. */
type StringReader = (src: Uint8Array, at: number) => string | undefined;

export class ShapeDecoder {
  private readonly registry: StructureRegistry;
  /** One reader per structure id, made the first time the id is met. */
  private readonly readers: (ShapeReader | undefined)[] = [];
  private readonly frozenReaders: (ShapeReader | undefined)[] = [];
  private src: Uint8Array = new Uint8Array(0);
  private position = 0;
  private end = 0;
  private failed = false;
  private frozen = false;
  private depth = 0;
  /** A float64's big-endian bytes are copied here and read back through `float`. */
  private readonly floatBytes = new Uint8Array(8);
  private readonly float = new DataView(this.floatBytes.buffer);

  constructor(registry: StructureRegistry) {
    this.registry = registry;
  }

  /** The value in src[start, end), deep-frozen if `frozen`, or NOT_DECODED. */
  decode(src: Uint8Array, start: number, end: number, frozen: boolean): unknown {
    this.src = src;
    this.position = start;
    this.end = end;
    this.failed = false;
    this.frozen = frozen;
    this.depth = 0;
    const value = this.read();
    return this.failed || this.position !== end ? NOT_DECODED : value;
  }

  /** The next value. On bytes it does not handle it sets `failed`, and every later read returns at once. */
  read(): unknown {
    if (this.failed || this.position >= this.end) return this.fail();
    const src = this.src;
    const token = src[this.position++]!;
    if (token < RECORD_BASE) return token;
    if (token < TWO_BYTE_RECORDS) return this.record(token - RECORD_BASE);
    if (token < 0x80) return this.record(token - RECORD_BASE + (src[this.position++]! << 5));
    if (token >= 0xe0) return token - 0x100;
    if (token >= 0xa0 && token < 0xc0) return this.string(token & 0x1f);
    if (token >= 0x90 && token < 0xa0) return this.array(token & 0x0f);
    const p = this.position;
    switch (token) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xcc:
        this.position = p + 1;
        return src[p];
      case 0xcd:
        this.position = p + 2;
        return (src[p]! << 8) | src[p + 1]!;
      case 0xce:
        this.position = p + 4;
        return ((src[p]! << 24) >>> 0) + ((src[p + 1]! << 16) | (src[p + 2]! << 8) | src[p + 3]!);
      case 0xd0:
        this.position = p + 1;
        return (src[p]! << 24) >> 24;
      case 0xd1:
        this.position = p + 2;
        return (((src[p]! << 8) | src[p + 1]!) << 16) >> 16;
      case 0xd2:
        this.position = p + 4;
        return (src[p]! << 24) | (src[p + 1]! << 16) | (src[p + 2]! << 8) | src[p + 3]!;
      case 0xcb:
        return this.float64(p);
      case 0xd9:
        this.position = p + 1;
        return this.string(src[p]!);
      case 0xdc:
        this.position = p + 2;
        return this.array((src[p]! << 8) | src[p + 1]!);
      default:
        return this.fail();
    }
  }

  private fail(): undefined {
    this.failed = true;
    return undefined;
  }

  private float64(at: number): number | undefined {
    if (at + 8 > this.end) return this.fail();
    this.position = at + 8;
    const bytes = this.floatBytes;
    const src = this.src;
    for (let i = 0; i < 8; i++) bytes[i] = src[at + i]!;
    return this.float.getFloat64(0);
  }

  private string(length: number): string | undefined {
    const at = this.position;
    // Negated, so that a length read past the bytes (undefined, NaN) fails too.
    if (!(at + length <= this.end)) return this.fail();
    this.position = at + length;
    if (length <= MAX_INLINE_STRING) {
      const text = (stringReaders[length] ??= stringReader(length))(this.src, at);
      return text === undefined ? this.fail() : text;
    }
    const src = this.src;
    let bits = 0;
    for (let i = at; i < at + length; i++) bits |= src[i]!;
    if (bits >= 0x80) return this.fail();
    return Buffer.from(src.buffer, src.byteOffset, src.byteLength).toString('latin1', at, at + length);
  }

  private array(length: number): readonly unknown[] | undefined {
    // Each element takes a byte at least: a longer count is bad bytes, not a reason to allocate.
    if (!(length <= this.end - this.position) || ++this.depth > MAX_DEPTH) return this.fail();
    const array = new Array<unknown>(length);
    for (let i = 0; i < length; i++) array[i] = this.read();
    this.depth--;
    return this.frozen ? Object.freeze(array) : array;
  }

  private record(index: number): Record<string, unknown> | undefined {
    if (++this.depth > MAX_DEPTH) return this.fail();
    const readers = this.frozen ? this.frozenReaders : this.readers;
    let reader = readers[index];
    if (reader === undefined) {
      const made = this.makeReader(index);
      // This thread does not know the id (yet; asked again next time, the
      // registry may have it by then), or it is a shape left to msgpackr.
      if (made === null) return this.fail();
      reader = readers[index] = made;
    }
    const object = reader(this);
    this.depth--;
    return object;
  }

  private makeReader(index: number): ShapeReader | null {
    const keys = this.registry.parsed()[index];
    if (keys === undefined) return null;
    // msgpackr renames a "__proto__" key on decode; shared shapes never have one (codec.ts), but be sure.
    if (keys.includes('__proto__')) return null;
    return shapeReader(keys, this.frozen);
  }
}

/** Readers of strings by length, shared by every decoder of the thread (they hold no state). */
const stringReaders: (StringReader | undefined)[] = [];

function stringReader(length: number): StringReader {
  if (length === 0) return () => '';
  const bytes = Array.from({ length }, (_, i) => `s[a + ${i}]`);
  try {
    return new Function('s', 'a', `const f = String.fromCharCode; return (${bytes.join(' | ')}) >= 0x80 ? undefined : f(${bytes.join(', ')});`) as StringReader;
  } catch {
    return (src, at) => {
      let text = '';
      for (let i = at; i < at + length; i++) {
        if (src[i]! >= 0x80) return undefined;
        text += fromCharCode(src[i]!);
      }
      return text;
    };
  }
}

function shapeReader(keys: readonly string[], frozen: boolean): ShapeReader {
  // JSON.stringify makes a valid JS string literal of any key; "__proto__" is excluded above,
  // so a literal property never sets the prototype.
  const literal = `{ ${keys.map((key) => `${JSON.stringify(key)}: d.read()`).join(', ')} }`;
  try {
    return new Function('d', `return ${frozen ? `Object.freeze(${literal})` : literal};`) as ShapeReader;
  } catch {
    return (decoder) => {
      const object: Record<string, unknown> = {};
      for (const key of keys) object[key] = decoder.read();
      return frozen ? Object.freeze(object) : object;
    };
  }
}
