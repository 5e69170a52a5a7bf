/**
 * Standard, self-describing msgpack for the bytes in Redis: what any msgpack
 * decoder in any language reads (`@msgpack/msgpack`, Python's `msgpack`, Go's
 * `vmihailenco/msgpack`), and what this module reads back from any encoder.
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

const MAX_DEPTH = 512;

const EXT_UNDEFINED = 0x00;
const EXT_TIMESTAMP = -1;
const EXT_BIGINT = 0x42;
const EXT_TYPED = 0x74;
const EXT_MAP = 0x4d;
const EXT_SET = 0x53;
const EXT_ERROR = 0x45;
const EXT_REGEXP = 0x52;

const TYPED_CODES = new Map<Function, number>([
  [Int8Array, 0], [Uint8ClampedArray, 2], [Int16Array, 3], [Uint16Array, 4], [Int32Array, 5],
  [Uint32Array, 6], [Float32Array, 7], [Float64Array, 8], [BigInt64Array, 9], [BigUint64Array, 10],
]);
const TYPED_BY_CODE: (new (buffer: ArrayBuffer) => ArrayBufferView)[] = [];
for (const [ctor, code] of TYPED_CODES) TYPED_BY_CODE[code] = ctor as new (buffer: ArrayBuffer) => ArrayBufferView;
const CODE_ARRAY_BUFFER = 16;
const CODE_DATA_VIEW = 17;

const utf8 = new TextDecoder('utf-8', { fatal: true });

// ---- encoding --------------------------------------------------------------

class Writer {
  buffer = Buffer.allocUnsafe(256);
  view = new DataView(this.buffer.buffer, this.buffer.byteOffset, this.buffer.byteLength);
  at = 0;

  ensure(bytes: number): void {
    if (this.at + bytes <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.at + bytes) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buffer.copy(next, 0, 0, this.at);
    this.buffer = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.byteLength);
  }

  byte(b: number): void {
    this.ensure(1);
    this.buffer[this.at++] = b;
  }

  /** A type byte followed by a big-endian unsigned of `width` bytes. */
  head(type: number, width: 0 | 1 | 2 | 4, n: number): void {
    this.ensure(1 + width);
    this.buffer[this.at++] = type;
    if (width === 1) this.buffer[this.at] = n;
    else if (width === 2) this.view.setUint16(this.at, n);
    else if (width === 4) this.view.setUint32(this.at, n);
    this.at += width;
  }

  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buffer.set(bytes, this.at);
    this.at += bytes.length;
  }
}

/** Encodes one value as standard msgpack. Throws a TypeError for what msgpack cannot carry (functions, symbols). */
export function encodeStandard(value: unknown): Buffer {
  const w = new Writer();
  write(w, value, 0);
  return Buffer.from(w.buffer.subarray(0, w.at));
}

function write(w: Writer, value: unknown, depth: number): void {
  if (depth > MAX_DEPTH) throw new TypeError(`value is nested more than ${MAX_DEPTH} levels deep`);
  switch (typeof value) {
    case 'string': return writeString(w, value);
    case 'number': return writeNumber(w, value);
    case 'boolean': return w.byte(value ? 0xc3 : 0xc2);
    case 'undefined': return writeExt(w, EXT_UNDEFINED, new Uint8Array(1));
    case 'bigint': return writeExt(w, EXT_BIGINT, bigintBytes(value));
    case 'object': break;
    default: throw new TypeError(`a ${typeof value} cannot be encoded`);
  }
  if (value === null) return w.byte(0xc0);
  if (Array.isArray(value)) {
    arrayHead(w, value.length);
    for (const item of value) write(w, item, depth + 1);
    return;
  }
  if (value instanceof Uint8Array && !(value instanceof Uint8ClampedArray)) {
    if (value.length < 0x100) w.head(0xc4, 1, value.length);
    else if (value.length < 0x10000) w.head(0xc5, 2, value.length);
    else w.head(0xc6, 4, value.length);
    return w.raw(value);
  }
  if (value instanceof Date) return writeDate(w, value);
  if (value instanceof Map) {
    return writeNested(w, EXT_MAP, () => {
      mapHead(w, value.size);
      for (const [k, v] of value) {
        write(w, k, depth + 1);
        write(w, v, depth + 1);
      }
    });
  }
  if (value instanceof Set) {
    return writeNested(w, EXT_SET, () => {
      arrayHead(w, value.size);
      for (const v of value) write(w, v, depth + 1);
    });
  }
  if (ArrayBuffer.isView(value)) {
    const code = value instanceof DataView ? CODE_DATA_VIEW : TYPED_CODES.get(value.constructor);
    if (code === undefined) throw new TypeError(`a ${value.constructor.name} cannot be encoded`);
    return writeTyped(w, code, new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
  }
  if (value instanceof ArrayBuffer) return writeTyped(w, CODE_ARRAY_BUFFER, new Uint8Array(value));
  if (value instanceof Error) return writeNested(w, EXT_ERROR, () => write(w, [value.name, value.message], depth + 1));
  if (value instanceof RegExp) return writeNested(w, EXT_REGEXP, () => write(w, [value.source, value.flags], depth + 1));
  const keys = Object.keys(value);
  mapHead(w, keys.length);
  for (const key of keys) {
    writeString(w, key);
    write(w, (value as Record<string, unknown>)[key], depth + 1);
  }
}

function writeString(w: Writer, text: string): void {
  const length = Buffer.byteLength(text, 'utf8');
  if (length < 0x20) w.byte(0xa0 | length);
  else if (length < 0x100) w.head(0xd9, 1, length);
  else if (length < 0x10000) w.head(0xda, 2, length);
  else w.head(0xdb, 4, length);
  w.ensure(length);
  w.at += w.buffer.write(text, w.at, length, 'utf8');
}

function writeNumber(w: Writer, n: number): void {
  if (Number.isSafeInteger(n) && !Object.is(n, -0)) {
    if (n >= 0) {
      if (n < 0x80) return w.byte(n);
      if (n < 0x100) return w.head(0xcc, 1, n);
      if (n < 0x10000) return w.head(0xcd, 2, n);
      if (n < 0x100000000) return w.head(0xce, 4, n);
      w.head(0xcf, 0, 0);
      w.ensure(8);
      w.view.setBigUint64(w.at, BigInt(n));
      w.at += 8;
      return;
    }
    if (n >= -0x20) return w.byte(n & 0xff);
    w.ensure(9);
    if (n >= -0x80) {
      w.buffer[w.at++] = 0xd0;
      w.view.setInt8(w.at++, n);
    } else if (n >= -0x8000) {
      w.buffer[w.at++] = 0xd1;
      w.view.setInt16(w.at, n);
      w.at += 2;
    } else if (n >= -0x80000000) {
      w.buffer[w.at++] = 0xd2;
      w.view.setInt32(w.at, n);
      w.at += 4;
    } else {
      w.buffer[w.at++] = 0xd3;
      w.view.setBigInt64(w.at, BigInt(n));
      w.at += 8;
    }
    return;
  }
  // Fractions, -0, NaN, the infinities and integers past 2^53: float64 keeps them exactly.
  w.ensure(9);
  w.buffer[w.at++] = 0xcb;
  w.view.setFloat64(w.at, n);
  w.at += 8;
}

function arrayHead(w: Writer, length: number): void {
  if (length < 0x10) w.byte(0x90 | length);
  else if (length < 0x10000) w.head(0xdc, 2, length);
  else w.head(0xdd, 4, length);
}

function mapHead(w: Writer, length: number): void {
  if (length < 0x10) w.byte(0x80 | length);
  else if (length < 0x10000) w.head(0xde, 2, length);
  else w.head(0xdf, 4, length);
}

function writeExt(w: Writer, type: number, data: Uint8Array): void {
  const n = data.length;
  const fixed = n === 1 ? 0xd4 : n === 2 ? 0xd5 : n === 4 ? 0xd6 : n === 8 ? 0xd7 : n === 16 ? 0xd8 : 0;
  if (fixed !== 0) w.byte(fixed);
  else if (n < 0x100) w.head(0xc7, 1, n);
  else if (n < 0x10000) w.head(0xc8, 2, n);
  else w.head(0xc9, 4, n);
  w.byte(type & 0xff);
  w.raw(data);
}

/** An extension whose payload is itself msgpack: written in place as ext32, its length patched after. */
function writeNested(w: Writer, type: number, body: () => void): void {
  w.head(0xc9, 4, 0);
  const lengthAt = w.at - 4;
  w.byte(type);
  const start = w.at;
  body();
  w.view.setUint32(lengthAt, w.at - start);
}

function writeTyped(w: Writer, code: number, bytes: Uint8Array): void {
  const data = new Uint8Array(1 + bytes.length);
  data[0] = code;
  data.set(bytes, 1);
  writeExt(w, EXT_TYPED, data);
}

function writeDate(w: Writer, date: Date): void {
  const ms = date.getTime();
  if (Number.isNaN(ms)) throw new TypeError('an invalid Date cannot be encoded');
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms - seconds * 1000) * 1_000_000;
  // The smallest of the three timestamp forms that holds it, as other encoders choose.
  if (nanos === 0 && seconds >= 0 && seconds < 0x100000000) {
    const data = new Uint8Array(4);
    new DataView(data.buffer).setUint32(0, seconds);
    return writeExt(w, EXT_TIMESTAMP, data);
  }
  if (seconds >= 0 && seconds < 0x400000000) {
    const data = new Uint8Array(8);
    const view = new DataView(data.buffer);
    view.setUint32(0, nanos * 4 + Math.floor(seconds / 0x100000000));
    view.setUint32(4, seconds >>> 0);
    return writeExt(w, EXT_TIMESTAMP, data);
  }
  const data = new Uint8Array(12);
  const view = new DataView(data.buffer);
  view.setUint32(0, nanos);
  view.setBigInt64(4, BigInt(seconds));
  writeExt(w, EXT_TIMESTAMP, data);
}

function bigintBytes(n: bigint): Uint8Array {
  const bytes: number[] = [];
  // Emit bytes little end first until the rest is all sign.
  for (;;) {
    const byte = Number(n & 0xffn);
    n >>= 8n;
    bytes.push(byte);
    if ((n === 0n && (byte & 0x80) === 0) || (n === -1n && (byte & 0x80) !== 0)) break;
  }
  return Uint8Array.from(bytes.reverse());
}

// ---- decoding --------------------------------------------------------------

class Reader {
  readonly view: DataView;
  at = 0;
  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  need(n: number): void {
    if (this.at + n > this.bytes.length) throw new RangeError('msgpack bytes end in the middle of a value');
  }

  u8(): number {
    this.need(1);
    return this.bytes[this.at++]!;
  }

  u16(): number {
    this.need(2);
    const n = this.view.getUint16(this.at);
    this.at += 2;
    return n;
  }

  u32(): number {
    this.need(4);
    const n = this.view.getUint32(this.at);
    this.at += 4;
    return n;
  }

  take(n: number): Uint8Array {
    this.need(n);
    const out = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
}

/** Decodes exactly one msgpack value from `bytes`. Throws on anything malformed. */
export function decodeStandard(bytes: Uint8Array): unknown {
  const r = new Reader(bytes);
  const value = read(r, 0);
  if (r.at !== bytes.length) throw new RangeError(`${bytes.length - r.at} byte(s) follow the msgpack value`);
  return value;
}

function read(r: Reader, depth: number): unknown {
  if (depth > MAX_DEPTH) throw new RangeError(`msgpack value nested more than ${MAX_DEPTH} levels deep`);
  const b = r.u8();
  if (b < 0x80) return b;
  if (b >= 0xe0) return b - 0x100;
  if (b < 0x90) return readMap(r, b & 0x0f, depth);
  if (b < 0xa0) return readArray(r, b & 0x0f, depth);
  if (b < 0xc0) return readString(r, b & 0x1f);
  switch (b) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return Buffer.from(r.take(r.u8()));
    case 0xc5: return Buffer.from(r.take(r.u16()));
    case 0xc6: return Buffer.from(r.take(r.u32()));
    case 0xc7: return readExt(r, r.u8(), depth);
    case 0xc8: return readExt(r, r.u16(), depth);
    case 0xc9: return readExt(r, r.u32(), depth);
    case 0xca: r.need(4); r.at += 4; return r.view.getFloat32(r.at - 4);
    case 0xcb: r.need(8); r.at += 8; return r.view.getFloat64(r.at - 8);
    case 0xcc: return r.u8();
    case 0xcd: return r.u16();
    case 0xce: return r.u32();
    case 0xcf: r.need(8); r.at += 8; return integer(r.view.getBigUint64(r.at - 8));
    case 0xd0: r.need(1); return r.view.getInt8(r.at++);
    case 0xd1: r.need(2); r.at += 2; return r.view.getInt16(r.at - 2);
    case 0xd2: r.need(4); r.at += 4; return r.view.getInt32(r.at - 4);
    case 0xd3: r.need(8); r.at += 8; return integer(r.view.getBigInt64(r.at - 8));
    case 0xd4: return readExt(r, 1, depth);
    case 0xd5: return readExt(r, 2, depth);
    case 0xd6: return readExt(r, 4, depth);
    case 0xd7: return readExt(r, 8, depth);
    case 0xd8: return readExt(r, 16, depth);
    case 0xd9: return readString(r, r.u8());
    case 0xda: return readString(r, r.u16());
    case 0xdb: return readString(r, r.u32());
    case 0xdc: return readArray(r, r.u16(), depth);
    case 0xdd: return readArray(r, r.u32(), depth);
    case 0xde: return readMap(r, r.u16(), depth);
    case 0xdf: return readMap(r, r.u32(), depth);
    default: throw new RangeError(`0x${b.toString(16)} is not a msgpack type byte`); // 0xc1
  }
}

/** A 64-bit integer: a number where that is exact, else a bigint. */
function integer(n: bigint): number | bigint {
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

function readString(r: Reader, length: number): string {
  const bytes = r.take(length);
  // ASCII, the common case, without the decoder's call overhead.
  if (length < 32) {
    let ascii = true;
    for (let i = 0; i < length; i++) if (bytes[i]! >= 0x80) { ascii = false; break; }
    if (ascii) return String.fromCharCode(...bytes);
  }
  return utf8.decode(bytes);
}

function readArray(r: Reader, length: number, depth: number): unknown[] {
  // Each element takes at least one byte: a length the bytes cannot hold is malformed.
  r.need(length);
  const out = new Array<unknown>(length);
  for (let i = 0; i < length; i++) out[i] = read(r, depth + 1);
  return out;
}

function readMap(r: Reader, length: number, depth: number): Record<string, unknown> {
  r.need(length * 2);
  const out: Record<string, unknown> = {};
  for (let i = 0; i < length; i++) {
    const key = objectKey(read(r, depth + 1));
    const value = read(r, depth + 1);
    if (key === '__proto__') Object.defineProperty(out, key, { value, writable: true, enumerable: true, configurable: true });
    else out[key] = value;
  }
  return out;
}

function objectKey(key: unknown): string {
  if (typeof key === 'string') return key;
  if (typeof key === 'number' || typeof key === 'bigint' || typeof key === 'boolean' || key === null) return String(key);
  throw new TypeError('a msgpack map key that is not a string, number, boolean or nil cannot be an object key');
}

function readExt(r: Reader, length: number, depth: number): unknown {
  r.need(1);
  const type = r.view.getInt8(r.at++);
  const data = r.take(length);
  switch (type) {
    case EXT_UNDEFINED: return undefined;
    case EXT_TIMESTAMP: return readTimestamp(data);
    case EXT_BIGINT: return readBigint(data);
    case EXT_TYPED: return readTyped(data);
    case EXT_MAP: {
      const inner = new Reader(data);
      const b = inner.u8();
      const size = b >= 0x80 && b < 0x90 ? b & 0x0f : b === 0xde ? inner.u16() : b === 0xdf ? inner.u32() : -1;
      if (size < 0) throw new RangeError('a Map extension must hold a msgpack map');
      inner.need(size * 2);
      const map = new Map<unknown, unknown>();
      for (let i = 0; i < size; i++) map.set(read(inner, depth + 1), read(inner, depth + 1));
      return whole(inner, map);
    }
    case EXT_SET: return new Set(nestedArray(data, depth, 'Set'));
    case EXT_ERROR: {
      const [name, message] = nestedArray(data, depth, 'Error');
      const error = new Error(String(message));
      error.name = String(name);
      return error;
    }
    case EXT_REGEXP: {
      const [source, flags] = nestedArray(data, depth, 'RegExp');
      return new RegExp(String(source), String(flags));
    }
    default: throw new RangeError(`unknown msgpack extension type ${type}`);
  }
}

function nestedArray(data: Uint8Array, depth: number, what: string): unknown[] {
  const inner = new Reader(data);
  const value = read(inner, depth + 1);
  if (!Array.isArray(value)) throw new RangeError(`a ${what} extension must hold a msgpack array`);
  return whole(inner, value);
}

function whole<T>(r: Reader, value: T): T {
  if (r.at !== r.bytes.length) throw new RangeError('bytes follow the value inside an extension');
  return value;
}

function readTimestamp(data: Uint8Array): Date {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data.length === 4) return new Date(view.getUint32(0) * 1000);
  if (data.length === 8) {
    const high = view.getUint32(0);
    const nanos = high >>> 2;
    const seconds = (high & 0x3) * 0x100000000 + view.getUint32(4);
    return new Date(seconds * 1000 + Math.floor(nanos / 1_000_000));
  }
  if (data.length === 12) return new Date(Number(view.getBigInt64(4)) * 1000 + Math.floor(view.getUint32(0) / 1_000_000));
  throw new RangeError(`a timestamp extension of ${data.length} bytes`);
}

function readBigint(data: Uint8Array): bigint {
  if (data.length === 0) throw new RangeError('an empty bigint extension');
  let n = BigInt.asIntN(8, BigInt(data[0]!));
  for (let i = 1; i < data.length; i++) n = (n << 8n) | BigInt(data[i]!);
  return n;
}

function readTyped(data: Uint8Array): unknown {
  if (data.length === 0) throw new RangeError('an empty typed-array extension');
  const code = data[0]!;
  // A copy: aligned for the element size, and never aliasing the input (a
  // Buffer's own slice() would alias it, hence Uint8Array's).
  const buffer = Uint8Array.prototype.slice.call(data, 1).buffer;
  if (code === CODE_ARRAY_BUFFER) return buffer;
  if (code === CODE_DATA_VIEW) return new DataView(buffer);
  if (code === 1) return Buffer.from(buffer);
  const Typed = TYPED_BY_CODE[code];
  if (!Typed) throw new RangeError(`unknown typed-array code ${code}`);
  const size = (Typed as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
  if (buffer.byteLength % size !== 0) throw new RangeError('a typed-array extension whose length is not a whole number of elements');
  return new Typed(buffer);
}
