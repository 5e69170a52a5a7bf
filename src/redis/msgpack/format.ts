/**
 * Standard, self-describing msgpack for the bytes in Redis: what any msgpack
 * decoder in any language reads (`@msgpack/msgpack`, Python's `msgpack`, Go's
 * `vmihailenco/msgpack`), written by encode.ts, and read back by decode.ts from
 * any encoder.
 *
 * This is a boundary format, used by the creating thread when it writes to
 * Redis and when it reads from it, never on the read path of a shard (which
 * keeps its own format, see src/codec.ts). It is written here rather than
 * configured out of msgpackr because msgpackr writes a `Map` exactly as it
 * writes an object, and its JS-only types as a one-byte "tag" extension
 * followed by a separate value, which other decoders misread as two values.
 *
 * JSON-like values use only core msgpack types: nil, bool, int, float64, str,
 * array, and map with string keys (any plain or class object: its own
 * enumerable string keys). A `Uint8Array` (or `Buffer`) is `bin`, a `Date` the
 * standard timestamp extension (-1). The other JS types are extensions whose
 * payload is complete in itself, so a decoder that does not know them skips
 * them cleanly (as an opaque extension value):
 *
 *   type  JS value          payload
 *   0x00  undefined         one zero byte (the notepack / msgpackr convention)
 *   0x42  bigint            big-endian two's complement, shortest form (as msgpackr)
 *   0x74  typed array,      one byte naming the type (msgpackr's codes: 0 Int8, 2
 *         ArrayBuffer,      Uint8Clamped, 3 Int16, 4 Uint16, 5 Int32, 6 Uint32,
 *         DataView          7 Float32, 8 Float64, 9 BigInt64, 10 BigUint64,
 *                           16 ArrayBuffer, 17 DataView), then the raw bytes
 *   0x4d  Map               a msgpack map, keys of any type
 *   0x53  Set               a msgpack array
 *   0x45  Error             a msgpack array [name, message]
 *   0x52  RegExp            a msgpack array [source, flags]
 *
 * Decoding is for bytes from outside: a msgpack map becomes a plain object
 * (prototype Object.prototype; a "__proto__" key becomes an own property,
 * never the prototype); integer and nil keys become strings, other key types
 * and anything malformed (0xC1, truncated or trailing bytes, unknown
 * extensions, invalid UTF-8, nesting past MAX_DEPTH) throw.
 */

export const MAX_DEPTH = 512;

export const EXT_UNDEFINED = 0x00;
export const EXT_TIMESTAMP = -1;
export const EXT_BIGINT = 0x42;
export const EXT_TYPED = 0x74;
export const EXT_MAP = 0x4d;
export const EXT_SET = 0x53;
export const EXT_ERROR = 0x45;
export const EXT_REGEXP = 0x52;

export const TYPED_CODES = new Map<Function, number>([
  [Int8Array, 0], [Uint8ClampedArray, 2], [Int16Array, 3], [Uint16Array, 4], [Int32Array, 5],
  [Uint32Array, 6], [Float32Array, 7], [Float64Array, 8], [BigInt64Array, 9], [BigUint64Array, 10],
]);
export const TYPED_BY_CODE: (new (buffer: ArrayBuffer) => ArrayBufferView)[] = [];
for (const [ctor, code] of TYPED_CODES) TYPED_BY_CODE[code] = ctor as new (buffer: ArrayBuffer) => ArrayBufferView;
export const CODE_ARRAY_BUFFER = 16;
export const CODE_DATA_VIEW = 17;
