/**
 * The decoder of the Redis boundary format (format.ts), for bytes from
 * outside: any encoder's standard msgpack, strictly checked.
 */
import {
  CODE_ARRAY_BUFFER, CODE_DATA_VIEW, EXT_BIGINT, EXT_ERROR, EXT_MAP, EXT_REGEXP, EXT_SET, EXT_TIMESTAMP, EXT_TYPED, EXT_UNDEFINED,
  MAX_DEPTH, TYPED_BY_CODE,
} from './format.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

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
