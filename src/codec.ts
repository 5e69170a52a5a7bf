/**
 * The shard's own value format: the one msgpackr set-up, shared by every
 * thread. Only this process's threads read these bytes; what Redis holds is
 * the codec's (src/redis/redis-codec.ts), converted at that boundary.
 *
 * - `useRecords: true` + `mapsAsObjects: false`: plain objects are written as
 *   records (their key list inlined in each value, so any thread or process
 *   decodes them without shared state) and msgpack maps decode as `Map`. With
 *   records off, msgpackr cannot tell a `Map` from an object on the way back.
 * - `moreTypes: true` keeps Sets, typed arrays, Errors and RegExps.
 * - `copyBuffers: true`: a decoded Buffer must never alias the scratch or
 *   shared buffer it was read from.
 * - `writeFunction` throws: msgpackr would otherwise silently drop functions.
 */
import { Packr } from 'msgpackr';
import { ShardCacheError } from './errors.js';

const packr = new Packr({
  useRecords: true,
  mapsAsObjects: false,
  moreTypes: true,
  copyBuffers: true,
  writeFunction() {
    throw new TypeError('functions cannot be cached');
  },
});

/**
 * Encodes a value. The result is a view on msgpackr's reusable buffer: valid
 * until the next `encode` on this thread, so copy it before keeping it.
 */
export function encode(value: unknown): Uint8Array {
  let bytes: Buffer;
  try {
    bytes = packr.pack(value);
  } catch (cause) {
    throw new ShardCacheError(
      'ERR_UNSERIALIZABLE',
      `value cannot be encoded: ${(cause as Error)?.message ?? String(cause)}`,
      { cause },
    );
  }
  // Two things msgpack cannot carry back unchanged: a string with a lone
  // surrogate (UTF-8 writes it as U+FFFD) and an own "__proto__" property
  // (renamed on decode, which is what keeps decoding safe). Both leave a mark
  // in the bytes, so the costly walk runs only for values that have the mark.
  if (mayBeLossy(bytes)) refuseLossy(value, 0);
  return bytes;
}

/**
 * Whether the bytes could hold a lossy string or an own "__proto__": U+FFFD
 * (EF BF BD, how Buffer writes a lone surrogate), a CESU-8 surrogate (ED A0..BF,
 * how msgpackr writes one in short strings), or "__". One pass in JS for short
 * values (cheaper than several calls into native code), indexOf for long ones.
 */
function mayBeLossy(bytes: Buffer): boolean {
  const n = bytes.length;
  if (n > 256) {
    return bytes.indexOf(REPLACEMENT_CHARACTER) !== -1 || hasSurrogateBytes(bytes) || bytes.indexOf(PROTO) !== -1;
  }
  for (let i = 0; i < n - 1; i++) {
    const b = bytes[i]!;
    if (b === 0xef || b === 0x5f) {
      if (bytes[i + 1] === (b === 0xef ? 0xbf : 0x5f)) return true;
    } else if (b === 0xed) {
      const next = bytes[i + 1]!;
      if (next >= 0xa0 && next <= 0xbf) return true;
    }
  }
  return false;
}

/**
 * msgpackr writes short strings itself, a lone surrogate as its 3-byte
 * (CESU-8) form ED A0..BF xx, which no valid UTF-8 contains.
 */
function hasSurrogateBytes(bytes: Buffer): boolean {
  for (let i = bytes.indexOf(0xed); i !== -1 && i + 1 < bytes.length; i = bytes.indexOf(0xed, i + 1)) {
    const next = bytes[i + 1]!;
    if (next >= 0xa0 && next <= 0xbf) return true;
  }
  return false;
}

const REPLACEMENT_CHARACTER = Buffer.from([0xef, 0xbf, 0xbd]);
const PROTO = Buffer.from('__');

function refuseLossy(value: unknown, depth: number): void {
  if (typeof value === 'string') {
    if (!value.isWellFormed()) {
      throw new ShardCacheError('ERR_UNSERIALIZABLE', 'value holds a string with a lone surrogate, which msgpack (UTF-8) cannot carry');
    }
    return;
  }
  if (value === null || typeof value !== 'object' || depth > 256 || ArrayBuffer.isView(value)) return;
  if (value instanceof Map) {
    for (const [k, v] of value) {
      refuseLossy(k, depth + 1);
      refuseLossy(v, depth + 1);
    }
    return;
  }
  if (value instanceof Set) {
    for (const v of value) refuseLossy(v, depth + 1);
    return;
  }
  if (Object.hasOwn(value, '__proto__')) {
    throw new ShardCacheError('ERR_UNSERIALIZABLE', 'value has an own "__proto__" property, which would not come back unchanged');
  }
  for (const k of Object.keys(value)) {
    refuseLossy(k, depth + 1);
    refuseLossy((value as Record<string, unknown>)[k], depth + 1);
  }
}

/**
 * Decodes bytes[start, end). Throws msgpackr's own error on bad bytes; callers
 * map it. Past 0 it decodes a subarray: msgpackr's `{ start, end }` form is
 * ~15x slower than decoding a view.
 */
export function decodeRange(bytes: Uint8Array, start: number, end: number): unknown {
  return start === 0 ? packr.unpack(bytes, end) : packr.unpack(bytes.subarray(start, end));
}
