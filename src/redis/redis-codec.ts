/**
 * The `codec` option: the bytes a value has in Redis, a boundary of its own.
 *
 * A shard keeps values in its internal format (src/codec.ts), chosen for the
 * read path; Redis holds the codec's bytes, chosen so that other services,
 * in any language, read and write the same keys. The thread that owns the
 * Redis connection converts between the two: when it flushes a write
 * (`toRedis`) and when it reads a key (`fromRedis`), never on a `get`.
 *
 *   'msgpack'  standard msgpack (./msgpack/format.ts): plain objects are
 *              maps, JS-only types are self-contained extensions
 *   'json'     UTF-8 JSON text, as JSON.stringify writes it and JSON.parse
 *              reads it (a Date is read back as its ISO string, a Map as {})
 *   'string'   the value is a string, stored as its UTF-8 bytes
 *   'buffer'   the value is bytes (a Uint8Array or Buffer), stored as they are
 *   { encode, decode }  your own
 *
 * Values the codec cannot carry are refused by `set` where every thread can
 * tell ('string', 'buffer'); otherwise (a bigint under 'json', a custom
 * encoder's refusal) the write fails at flush, counted in `failed` and
 * reported by the cache's `error` event. Bytes a codec cannot decode are
 * ERR_DECODE for that key only.
 */
import { ShardCacheError, describe } from '../errors.js';
import type { ShardCodec } from '../codec.js';
import { decodeStandard } from './msgpack/decode.js';
import { encodeStandard } from './msgpack/encode.js';

export interface Codec {
  /** The bytes to store in Redis for `value`. Throw to refuse a value. */
  encode(value: unknown): Uint8Array;
  /** The value of bytes read from Redis. Throw if they are not this codec's. */
  decode(bytes: Uint8Array): unknown;
}

export type CodecName = 'msgpack' | 'json' | 'string' | 'buffer';
export type CodecOption = CodecName | Codec;
/** What every thread knows of the codec (a custom codec's functions stay on the creating thread). */
export type CodecKind = CodecName | 'custom';

const utf8 = new TextDecoder('utf-8', { fatal: true });

const BUILT_IN: Record<CodecName, Codec> = {
  msgpack: { encode: encodeStandard, decode: decodeStandard },
  json: {
    encode(value) {
      const text = JSON.stringify(value);
      if (text === undefined) throw new TypeError('JSON.stringify returned nothing for this value');
      return Buffer.from(text, 'utf8');
    },
    decode: (bytes) => JSON.parse(utf8.decode(bytes)),
  },
  string: {
    encode(value) {
      if (typeof value !== 'string') throw new TypeError(`codec 'string' stores strings only (got ${describe(value)})`);
      return Buffer.from(value, 'utf8');
    },
    decode: (bytes) => utf8.decode(bytes),
  },
  buffer: {
    encode(value) {
      if (!(value instanceof Uint8Array)) throw new TypeError(`codec 'buffer' stores Uint8Arrays and Buffers only (got ${describe(value)})`);
      return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    },
    decode: (bytes) => Buffer.from(bytes),
  },
};

/** A value read from Redis, in the form the shard keeps. */
export interface ConvertedValue {
  /** The shard's bytes for the value, or null if the shard cannot keep it (the value is then in `value`). */
  bytes: Buffer | null;
  value?: unknown;
}

export class RedisCodec {
  readonly kind: CodecKind;
  private readonly codec: Codec;
  private readonly shard: ShardCodec;

  /** `shard`: the creating thread's codec of the shard format, for the conversions. */
  constructor(option: CodecOption, shard: ShardCodec) {
    this.shard = shard;
    if (typeof option === 'string') {
      this.kind = option;
      this.codec = BUILT_IN[option];
    } else {
      this.kind = 'custom';
      this.codec = option;
    }
  }

  /** Shard bytes to Redis bytes. Throws ERR_UNSERIALIZABLE if the codec refuses the value. */
  toRedis(shardBytes: Uint8Array, key: string): Buffer {
    const value = this.shard.decodeRange(shardBytes, 0, shardBytes.length);
    let bytes: Uint8Array;
    try {
      bytes = this.codec.encode(value);
    } catch (cause) {
      throw new ShardCacheError('ERR_UNSERIALIZABLE', `options.redis.codec (${this.kind}) cannot encode the value of ${describe(key)}: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    }
    if (!(bytes instanceof Uint8Array)) {
      throw new ShardCacheError('ERR_UNSERIALIZABLE', `options.redis.codec.encode must return a Uint8Array (got ${describe(bytes)} for ${describe(key)})`);
    }
    // A copy for your codec: an encoder may return a view on a buffer it reuses
    // (msgpackr's pack does), and the pipeline reads the bytes only when it is sent.
    // The built-in codecs return fresh bytes.
    return this.kind === 'custom' ? Buffer.from(bytes) : (bytes as Buffer);
  }

  /** The value of bytes read from Redis. Throws ERR_DECODE. */
  decode(bytes: Uint8Array, key: string): unknown {
    try {
      return this.codec.decode(bytes);
    } catch (cause) {
      throw new ShardCacheError('ERR_DECODE', `the bytes stored in Redis for key ${describe(key)} do not decode with options.redis.codec (${this.kind}): ${(cause as Error)?.message ?? String(cause)}`, { cause });
    }
  }

  /** Redis bytes to what the shard keeps. Throws ERR_DECODE. */
  fromRedis(bytes: Uint8Array, key: string): ConvertedValue {
    const value = this.decode(bytes, key);
    try {
      return { bytes: Buffer.from(this.shard.encode(value)) };
    } catch {
      // Valid for the codec but not for the shard (an own "__proto__" key, which
      // the shard's format would rename): returned, not kept locally.
      return { bytes: null, value };
    }
  }
}

/**
 * The check `set` makes on any thread, for codecs whose refusals are cheap to
 * foresee: a value that could never reach Redis is refused at once.
 */
export function checkForCodec(kind: CodecKind, value: unknown, key: string): void {
  if (kind === 'string' && typeof value !== 'string') {
    throw new ShardCacheError('ERR_UNSERIALIZABLE', `options.redis.codec is 'string': the value of ${describe(key)} must be a string (got ${describe(value)})`);
  }
  if (kind === 'buffer' && !(value instanceof Uint8Array)) {
    throw new ShardCacheError('ERR_UNSERIALIZABLE', `options.redis.codec is 'buffer': the value of ${describe(key)} must be a Uint8Array or Buffer (got ${describe(value)})`);
  }
}

export function codecKind(option: CodecOption): CodecKind {
  return typeof option === 'string' ? option : 'custom';
}

export function isCodecOption(option: unknown): option is CodecOption {
  if (typeof option === 'string') return Object.hasOwn(BUILT_IN, option);
  return option !== null && typeof option === 'object'
    && typeof (option as Codec).encode === 'function' && typeof (option as Codec).decode === 'function';
}
