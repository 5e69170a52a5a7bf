/**
 * The per-thread near cache: decoded values of hot keys, so a hit costs a
 * Map lookup plus one atomic load instead of a probe, a copy and a decode.
 *
 * An entry remembers where its value came from (shard, slot), the write's seq,
 * and the version of the key's stripe it was validated at. The fast check is
 * that stripe version: the owner bumps it for every change to any key of the
 * stripe, so an unchanged version proves the entry current, and the 16 KiB of
 * versions stay in the reader's cache (the slot itself is a likely cache miss).
 * If the version moved (another key of the stripe changed), the slot's seq
 * decides: the entry is served only while that slot still holds that seq. Any
 * later write, delete, eviction or move of the key changes or clears the slot,
 * so a stale decoded value is never returned. Expiry is checked against the
 * stored time.
 *
 * A cached value is shared by every `get` on this thread, so it must be
 * immutable: plain objects and arrays are deep-frozen; values holding Buffers,
 * typed arrays, Maps, Sets or Dates (which freezing does not protect) are not
 * near-cached and are decoded afresh on every `get`.
 */
import type { ShardView } from './memory/shard-view.js';

/**
 * A Map from key to a small integer id, and what the check needs in typed
 * arrays indexed by that id: a hit reads no per-entry heap object (a likely
 * cache miss with many entries), and the stripe versions are hot.
 *
 * Eviction is CLOCK over the ids: a hit sets the id's referenced bit, and
 * when every id is in use the hand clears set bits until it finds a clear one
 * and reuses that id. A hit then costs one Map lookup and a store to a byte
 * this thread owns; lru-cache's get (a Map lookup plus relinking its recency
 * list) measured slower here, and its order is not worth more than CLOCK's
 * for a cache in front of a cache. New entries start unreferenced, so keys
 * read once leave first.
 */
export class NearCache {
  private readonly ids = new Map<string, number>();
  private readonly views: readonly ShardView[];
  private readonly capacity: number;
  private readonly keys: (string | undefined)[];
  private readonly values: unknown[];
  private readonly referenced: Uint8Array;
  private readonly shard: Uint16Array;
  private readonly slot: Int32Array;
  private readonly seq: Int32Array;
  private readonly stripe: Int32Array;
  private readonly version: Int32Array;
  private readonly expires: Float64Array;
  /** Ids given back by `drop`, reused before the hand evicts. */
  private readonly free: number[] = [];
  private used = 0;
  private hand = 0;
  private hits = 0;

  constructor(max: number, views: readonly ShardView[]) {
    this.views = views;
    this.capacity = max;
    this.keys = new Array<string | undefined>(max).fill(undefined);
    this.values = new Array<unknown>(max).fill(undefined);
    this.referenced = new Uint8Array(max);
    this.shard = new Uint16Array(max);
    this.slot = new Int32Array(max);
    this.seq = new Int32Array(max);
    this.stripe = new Int32Array(max);
    this.version = new Int32Array(max);
    this.expires = new Float64Array(max);
  }

  /** The cached value if it is still the key's current one, else undefined. */
  get(key: string): unknown {
    const id = this.ids.get(key);
    if (id === undefined) return undefined;
    const view = this.views[this.shard[id]!]!;
    const version = Atomics.load(view.i32, this.stripe[id]!);
    if (version !== this.version[id]) {
      if (!view.holds(this.slot[id]!, this.seq[id]!)) return this.drop(key, id);
      // Still current at a later version: remember it, so the next check is the fast one.
      if ((version & 1) === 0) this.version[id] = version;
    }
    const expires = this.expires[id]!;
    if (expires !== 0 && expires <= Date.now()) return this.drop(key, id);
    this.referenced[id] = 1;
    // Mark the key used for the owner's CLOCK (and count it in the sketch with
    // maxEntries), but only on every 8th hit: the slot is likely a cache miss,
    // and a hot key is hit often enough.
    if ((++this.hits & 7) === 0) view.touchSampled(this.slot[id]!, 8);
    return this.values[id];
  }

  /** Caches `value`, read from `view` (its found* fields describe the read). */
  set(key: string, value: unknown, shard: number, view: ShardView): void {
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.free.pop() ?? (this.used < this.capacity ? this.used++ : this.evict());
      this.ids.set(key, id);
      this.keys[id] = key;
      this.referenced[id] = 0;
    }
    this.values[id] = value;
    this.shard[id] = shard;
    this.slot[id] = view.foundSlot;
    this.seq[id] = view.foundSeq;
    this.stripe[id] = view.foundStripe;
    this.version[id] = view.foundVersion;
    // Served only while fresh: a stale value is fetch's to serve, never get's.
    this.expires[id] = view.foundFreshUntil;
  }

  clear(): void {
    this.ids.clear();
    this.keys.fill(undefined);
    this.values.fill(undefined);
    this.free.length = 0;
    this.used = 0;
    this.hand = 0;
  }

  get size(): number {
    return this.ids.size;
  }

  private drop(key: string, id: number): undefined {
    this.ids.delete(key);
    this.keys[id] = undefined;
    this.values[id] = undefined;
    this.free.push(id);
    return undefined;
  }

  /** Frees the id the CLOCK hand picks (every id is in use: the free list is empty). */
  private evict(): number {
    for (;;) {
      const id = this.hand;
      this.hand = id + 1 === this.capacity ? 0 : id + 1;
      if (this.referenced[id] === 1) {
        this.referenced[id] = 0;
        continue;
      }
      this.ids.delete(this.keys[id]!);
      this.values[id] = undefined;
      return id;
    }
  }
}

export function createNearCache(max: number, views: readonly ShardView[]): NearCache | undefined {
  return max > 0 ? new NearCache(max, views) : undefined;
}

/** Deep-freezes `value` if every part of it can be made immutable. Returns whether it did. */
export function freezeIfShareable(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return true;
  // Check everything before freezing anything: a value that turns out not to
  // be shareable is returned to the caller untouched.
  if (!isPlain(value, 0)) return false;
  deepFreeze(value);
  return true;
}

const MAX_DEPTH = 32;

function isPlain(value: object, depth: number): boolean {
  if (depth > MAX_DEPTH) return false;
  const proto = Object.getPrototypeOf(value);
  if (Array.isArray(value)) {
    if (proto !== Array.prototype) return false;
  } else if (proto !== Object.prototype && proto !== null) {
    return false;
  }
  for (const k in value) {
    const item: unknown = (value as Record<string, unknown>)[k];
    if (item !== null && typeof item === 'object' && !isPlain(item, depth + 1)) return false;
  }
  return true;
}

function deepFreeze(value: object): void {
  for (const k in value) {
    const item: unknown = (value as Record<string, unknown>)[k];
    if (item !== null && typeof item === 'object') deepFreeze(item);
  }
  Object.freeze(value);
}
