/**
 * The encoder of the Redis boundary format (format.ts): JSON-like values in
 * core msgpack types, each in its smallest form as other encoders write it;
 * the JS-only types as self-contained extensions.
 */
import {
  CODE_ARRAY_BUFFER, CODE_DATA_VIEW, EXT_BIGINT, EXT_ERROR, EXT_MAP, EXT_REGEXP, EXT_SET, EXT_TIMESTAMP, EXT_TYPED, EXT_UNDEFINED,
  MAX_DEPTH, TYPED_CODES,
} from './format.js';

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
