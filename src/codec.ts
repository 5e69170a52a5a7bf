/**
 * The shard's own value format: msgpackr records with the cache's shared
 * structures (memory/structures.ts). Only this process's threads read these
 * bytes; what Redis holds is the codec's (src/redis/redis-codec.ts), converted
 * at that boundary.
 *
 * - Shared structures: an object's key list is stored once per cache, not in
 *   every value; a value is its record id and its values. Every thread of the
 *   cache encodes and decodes with the same registry, one ShardCodec per
 *   thread and cache.
 * - `mapsAsObjects: false`: objects are records and msgpack maps decode as
 *   `Map`; without records msgpackr cannot tell a `Map` from an object.
 * - `moreTypes: true` keeps Sets, typed arrays, Errors and RegExps.
 * - `copyBuffers: true`: a decoded Buffer must never alias the scratch or
 *   shared buffer it was read from.
 * - `writeFunction` throws: msgpackr would otherwise silently drop functions.
 *
 * A codec made without a registry inlines every key list (msgpackr's own
 * structures): its bytes decode with any ShardCodec, which the tests and
 * benchmarks that drive a shard without a cache rely on.
 */
import { Packr } from 'msgpackr';
import { ShardCacheError } from './errors.js';
import { freezeIfShareable } from './freeze.js';
import { MAX_SHARED_STRUCTURES, StructureRegistry } from './memory/structures.js';
import { NOT_DECODED, ShapeDecoder } from './shape-decoder.js';
import { NOT_ENCODED, ShapeEncoder } from './shape-encoder.js';

export class ShardCodec {
  private readonly packr: Packr;
  /** The fast path for values of shared shapes (shape-encoder.ts); only with a registry. */
  private readonly shapes: ShapeEncoder | undefined;
  /** Its counterpart for decoding (shape-decoder.ts). */
  private readonly shapeReader: ShapeDecoder | undefined;
  /** Whether the value the last `decodeShareable` returned is deep-frozen (see there). */
  shareable = false;
  /** Set when a decode had to load structures another thread saved (see decodeRange). */
  private loadedStructures = false;

  constructor(structures?: SharedArrayBuffer) {
    const registry = structures && new StructureRegistry(structures);
    this.shapes = registry && new ShapeEncoder(registry);
    this.shapeReader = registry && new ShapeDecoder(registry);
    this.packr = new Packr({
      useRecords: true,
      mapsAsObjects: false,
      moreTypes: true,
      copyBuffers: true,
      writeFunction() {
        throw new TypeError('functions cannot be cached');
      },
      ...(registry && {
        maxSharedStructures: MAX_SHARED_STRUCTURES,
        getStructures: () => {
          this.loadedStructures = true;
          return registry.load();
        },
        saveStructures: (structures: string[][], isCompatible: (existing: string[][]) => boolean) => registry.save(structures, isCompatible),
        // A key the lossy-value check must see stays inline (see encode), and so does every shape once the registry is full.
        shouldShareStructure: (keys: string[]) => registry.hasRoom() && keys.every((key) => key !== '__proto__' && key.isWellFormed()),
      }),
    } as ConstructorParameters<typeof Packr>[0]);
  }

  /**
   * Encodes a value. The result is a view on a reusable buffer (the shape
   * encoder's or msgpackr's): valid until the next `encode` on this thread, so
   * copy it before keeping it.
   */
  encode(value: unknown): Uint8Array {
    let bytes: Buffer;
    try {
      // Inside the try too: a getter or a Proxy trap may throw on either path.
      const shapes = this.shapes;
      if (shapes !== undefined) {
        const length = shapes.encode(value);
        if (length !== NOT_ENCODED) return shapes.bytes(length);
      }
      bytes = this.packr.pack(value);
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
    // in the bytes (shapes with such keys are never shared, so their key names
    // stay in the value), and the costly walk runs only for values that have it.
    if (mayBeLossy(bytes)) refuseLossy(value, 0);
    return bytes;
  }

  /**
   * Decodes bytes[start, end). Throws msgpackr's own error on bad bytes. Past
   * 0 it decodes a subarray: msgpackr's `{ start, end }` form is ~15x slower
   * than decoding a view.
   */
  decodeRange(bytes: Uint8Array, start: number, end: number): unknown {
    const shapes = this.shapeReader;
    if (shapes !== undefined) {
      const value = shapes.decode(bytes, start, end, false);
      if (value !== NOT_DECODED) return value;
    }
    return this.unpack(bytes, start, end);
  }

  /**
   * Decodes bytes[start, end) for a near cache: deep-frozen where it can be
   * (freeze.ts), and `shareable` says whether it is. A value of shared shapes
   * is frozen as the shape decoder builds it; any other is decoded by
   * msgpackr, then checked and frozen.
   */
  decodeShareable(bytes: Uint8Array, start: number, end: number): unknown {
    const shapes = this.shapeReader;
    if (shapes !== undefined) {
      const frozen = shapes.decode(bytes, start, end, true);
      if (frozen !== NOT_DECODED) {
        this.shareable = true;
        return frozen;
      }
    }
    const value = this.unpack(bytes, start, end);
    this.shareable = freezeIfShareable(value);
    return value;
  }

  private unpack(bytes: Uint8Array, start: number, end: number): unknown {
    this.loadedStructures = false;
    const value = start === 0 ? this.packr.unpack(bytes, end) : this.packr.unpack(bytes.subarray(start, end));
    // msgpackr finishes a decode that loaded structures from a private copy of
    // the bytes, so its Buffers come back as plain Uint8Arrays: decode again,
    // now with every structure known (once per new structure per thread).
    if (!this.loadedStructures) return value;
    return start === 0 ? this.packr.unpack(bytes, end) : this.packr.unpack(bytes.subarray(start, end));
  }
}

const standalone = new ShardCodec();

/** Encodes with no shared structures (see the file head): for driving a shard without a cache. */
export function encode(value: unknown): Uint8Array {
  return standalone.encode(value);
}

/** Decodes bytes made by `encode` (or any ShardCodec without shared structures). */
export function decodeRange(bytes: Uint8Array, start: number, end: number): unknown {
  return standalone.decodeRange(bytes, start, end);
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
