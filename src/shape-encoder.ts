/**
 * The encoder for the values most caches hold: plain objects of a shape
 * already in the cache's shared structures, whose values are numbers, ASCII
 * strings, booleans, null, arrays and such objects again. It writes the bytes
 * msgpackr's Packr would write for them (the record id, then the values), byte
 * for byte, at a fraction of the cost: msgpackr's general encoder measured
 * ~400 ns for the ~100 B object of the benchmarks, most of it dispatch on
 * types and options this shape of value never needs.
 *
 * Anything else (a shape not shared yet, a non-ASCII or long string, a Date,
 * a Map, undefined, a value too large for the scratch buffer) makes `encode`
 * answer NOT_ENCODED, and the codec hands the whole value to msgpackr, which
 * also shares new shapes; the next value of that shape then takes this path.
 * A value given up midway costs the work done so far (up to SCRATCH_BYTES
 * written) and has had the getters met so far read twice.
 *
 * Shapes are found by walking a tree of the structures' key lists with the
 * object's own keys in for…in order (msgpackr's order too), so a value is
 * matched to the same structure msgpackr would pick, or to none.
 *
 * Nothing written here can be lossy (see the codec's lossy check): strings
 * are ASCII only, and a shared shape never has a "__proto__" key.
 */
import type { StructureRegistry } from './memory/structures.js';

/** See hash.ts: a module-local const, so V8 inlines it however String is subclassed. */
const charCodeAt = String.prototype.charCodeAt;
/** Captured for the same reason; V8 also folds it inside a for…in over the same object. */
const hasOwnProperty = Object.prototype.hasOwnProperty;

export const NOT_ENCODED = -1;

/** Values up to this size take this path; larger ones go to msgpackr, whose cost then matters less. */
const SCRATCH_BYTES = 4096;
/** Longest string written here (a JS loop per code unit; msgpackr copies long ones natively). */
const MAX_STRING = 255;
/** Nesting this deep goes to msgpackr (which has its own limits and errors). */
const MAX_DEPTH = 32;
/** First record id of shared structures (msgpackr: 0x40 + index); ids from 0x60 take two bytes. */
export const RECORD_BASE = 0x40;
export const TWO_BYTE_RECORDS = 0x60;

/** One step of the key-list tree: the structures whose key lists start with the keys walked so far. */
interface ShapeNode {
  /** The key that leads here from the parent. */
  key: string;
  next: Map<string, ShapeNode>;
  /**
   * The child the last walk through here took: most values of a cache share
   * a few shapes, and a string compare (a pointer compare once `key` is the
   * internalized for…in key) is cheaper than a Map lookup.
   */
  last: ShapeNode | undefined;
  /** Record id of the structure whose key list ends here, 0 if none. */
  recordId: number;
}

function shapeNode(key: string): ShapeNode {
  return { key, next: new Map(), last: undefined, recordId: 0 };
}

export class ShapeEncoder {
  private readonly registry: StructureRegistry;
  private readonly scratch = new Uint8Array(SCRATCH_BYTES);
  private readonly view = new DataView(this.scratch.buffer);
  private readonly views = new Array<Uint8Array | undefined>(SCRATCH_BYTES + 1).fill(undefined);
  private readonly root: ShapeNode = shapeNode('');
  /** How many of the registry's structures the tree holds. */
  private known = 0;
  private position = 0;

  constructor(registry: StructureRegistry) {
    this.registry = registry;
  }

  /** Encodes `value` into the scratch buffer and returns its length, or NOT_ENCODED. */
  encode(value: unknown): number {
    this.position = 0;
    return this.write(value, 0) ? this.position : NOT_ENCODED;
  }

  /** The bytes of the last successful `encode`: a view, valid until the next one. */
  bytes(length: number): Uint8Array {
    // One view per length, made once: a subarray per encode measured ~20 ns,
    // a sixth of the encode. Bounded by SCRATCH_BYTES views.
    return (this.views[length] ??= this.scratch.subarray(0, length));
  }

  private write(value: unknown, depth: number): boolean {
    if (this.position > SCRATCH_BYTES - 16) return false;
    switch (typeof value) {
      case 'number':
        this.writeNumber(value);
        return true;
      case 'string':
        return this.writeString(value);
      case 'boolean':
        this.scratch[this.position++] = value ? 0xc3 : 0xc2;
        return true;
      case 'object':
        if (value === null) {
          this.scratch[this.position++] = 0xc0;
          return true;
        }
        if (depth >= MAX_DEPTH) return false;
        if (value.constructor === Object) return this.writeObject(value as Record<string, unknown>, depth);
        if (value.constructor === Array) return this.writeArray(value as unknown[], depth);
        return false;
      default:
        return false;
    }
  }

  private writeObject(object: Record<string, unknown>, depth: number): boolean {
    let recordId = this.recordIdOf(object);
    if (recordId === 0) {
      if (this.known === this.registry.count()) return false;
      this.learnStructures();
      recordId = this.recordIdOf(object);
      if (recordId === 0) return false;
    }
    const scratch = this.scratch;
    if (recordId >= TWO_BYTE_RECORDS) {
      const rest = recordId - TWO_BYTE_RECORDS;
      scratch[this.position++] = (rest & 0x1f) + TWO_BYTE_RECORDS;
      scratch[this.position++] = rest >> 5;
    } else {
      scratch[this.position++] = recordId;
    }
    for (const key in object) {
      if (!this.write(object[key], depth + 1)) return false;
    }
    return true;
  }

  /** The record id of the shared structure with exactly `object`'s keys, or 0. */
  private recordIdOf(object: Record<string, unknown>): number {
    let node = this.root;
    for (const key in object) {
      // for…in also walks enumerable keys of the prototype chain, which
      // msgpackr skips: leave such an object to msgpackr.
      if (!hasOwnProperty.call(object, key)) return 0;
      const last: ShapeNode | undefined = node.last;
      if (last !== undefined && last.key === key) {
        node = last;
        continue;
      }
      const next = node.next.get(key);
      if (next === undefined) return 0;
      next.key = key;
      node = node.last = next;
    }
    return node.recordId;
  }

  private writeArray(array: unknown[], depth: number): boolean {
    const length = array.length;
    const scratch = this.scratch;
    if (length < 16) {
      scratch[this.position++] = 0x90 | length;
    } else if (length < 0x10000) {
      scratch[this.position++] = 0xdc;
      scratch[this.position++] = length >> 8;
      scratch[this.position++] = length & 0xff;
    } else {
      return false;
    }
    for (let i = 0; i < length; i++) {
      // A hole reads as undefined, which msgpackr writes as its own extension: leave it to msgpackr.
      if (!this.write(array[i], depth + 1)) return false;
    }
    return true;
  }

  /** msgpackr's choices exactly: int32/uint32 in the smallest form (below 0x40 as a fixint, records start there), else float64. */
  private writeNumber(value: number): void {
    const scratch = this.scratch;
    let p = this.position;
    if (value >>> 0 === value) {
      if (value < 0x40) {
        scratch[p++] = value;
      } else if (value < 0x100) {
        scratch[p++] = 0xcc;
        scratch[p++] = value;
      } else if (value < 0x10000) {
        scratch[p++] = 0xcd;
        scratch[p++] = value >> 8;
        scratch[p++] = value & 0xff;
      } else {
        scratch[p++] = 0xce;
        this.view.setUint32(p, value);
        p += 4;
      }
    } else if (value >> 0 === value) {
      if (value >= -0x20) {
        scratch[p++] = 0x100 + value;
      } else if (value >= -0x80) {
        scratch[p++] = 0xd0;
        scratch[p++] = value + 0x100;
      } else if (value >= -0x8000) {
        scratch[p++] = 0xd1;
        this.view.setInt16(p, value);
        p += 2;
      } else {
        scratch[p++] = 0xd2;
        this.view.setInt32(p, value);
        p += 4;
      }
    } else {
      scratch[p++] = 0xcb;
      this.view.setFloat64(p, value);
      p += 8;
    }
    this.position = p;
  }

  private writeString(value: string): boolean {
    const length = value.length;
    if (length > MAX_STRING || this.position + length + 2 > SCRATCH_BYTES) return false;
    const scratch = this.scratch;
    let p = this.position;
    if (length < 0x20) {
      scratch[p++] = 0xa0 | length;
    } else {
      scratch[p++] = 0xd9;
      scratch[p++] = length;
    }
    for (let i = 0; i < length; i++) {
      const unit = charCodeAt.call(value, i);
      if (unit >= 0x80) return false;
      scratch[p++] = unit;
    }
    this.position = p;
    return true;
  }

  /** Adds the structures other encodes (msgpackr's, any thread's) saved since the last call. */
  private learnStructures(): void {
    // Only the new ones: a cache that keeps meeting new shapes would otherwise copy every known one each time.
    const structures = this.registry.parsed();
    for (let id = this.known; id < structures.length; id++) {
      let node = this.root;
      for (const key of structures[id]!) {
        let next = node.next.get(key);
        if (next === undefined) node.next.set(key, (next = shapeNode(key)));
        node = next;
      }
      if (node.recordId === 0) node.recordId = RECORD_BASE + id;
    }
    this.known = structures.length;
  }
}
