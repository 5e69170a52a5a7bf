/**
 * The one msgpackr set-up, shared by every thread and by the Redis tier (the
 * bytes in a shard are the bytes in Redis).
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
  try {
    return packr.pack(value);
  } catch (cause) {
    throw new ShardCacheError(
      'ERR_UNSERIALIZABLE',
      `value cannot be encoded: ${(cause as Error)?.message ?? String(cause)}`,
      { cause },
    );
  }
}

/** Decodes bytes[start, end). Throws msgpackr's own error on bad bytes; callers map it. */
export function decodeRange(bytes: Uint8Array, start: number, end: number): unknown {
  return start === 0 ? packr.unpack(bytes, end) : packr.unpack(bytes, { start, end });
}

/** Decodes bytes that came from outside (Redis): any failure becomes ERR_DECODE. */
export function decodeUntrusted(bytes: Uint8Array, key: string): unknown {
  try {
    return packr.unpack(bytes);
  } catch (cause) {
    throw new ShardCacheError('ERR_DECODE', `the bytes stored for key ${JSON.stringify(key)} do not decode`, { cause });
  }
}
