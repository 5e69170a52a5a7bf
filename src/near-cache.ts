/**
 * The per-thread near cache: decoded values of hot keys, so a hit costs an
 * lru-cache lookup plus one atomic load instead of a copy and a decode.
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
import { LRUCache } from 'lru-cache';
import type { ShardView } from './memory/shard-view.js';

/**
 * lru-cache keeps the recency order and maps a key to a small integer id; what
 * the check needs lives in typed arrays indexed by that id. A hit then reads
 * no per-entry heap object (a likely cache miss with many entries): the id is
 * a small integer, the arrays are contiguous, and the stripe versions are hot.
 */
export class NearCache {
  private readonly lru: LRUCache<string, number>;
  private readonly views: readonly ShardView[];
  private readonly values: unknown[];
  private readonly shard: Uint16Array;
  private readonly slot: Int32Array;
  private readonly seq: Int32Array;
  private readonly stripe: Int32Array;
  private readonly version: Int32Array;
  private readonly expires: Float64Array;
  /** Ids given back by evictions; one spare id beyond `max` lets a set allocate before lru-cache evicts. */
  private readonly free: number[] = [];
  private next = 0;
  private hits = 0;

  constructor(max: number, views: readonly ShardView[]) {
    this.views = views;
    this.lru = new LRUCache<string, number>({ max, dispose: (id) => this.release(id) });
    const ids = max + 1;
    this.values = new Array<unknown>(ids).fill(undefined);
    this.shard = new Uint16Array(ids);
    this.slot = new Int32Array(ids);
    this.seq = new Int32Array(ids);
    this.stripe = new Int32Array(ids);
    this.version = new Int32Array(ids);
    this.expires = new Float64Array(ids);
  }

  /** The cached value if it is still the key's current one, else undefined. */
  get(key: string): unknown {
    const id = this.lru.get(key);
    if (id === undefined) return undefined;
    const view = this.views[this.shard[id]!]!;
    const version = Atomics.load(view.i32, this.stripe[id]!);
    if (version !== this.version[id]) {
      if (!view.holds(this.slot[id]!, this.seq[id]!)) return this.drop(key);
      // Still current at a later version: remember it, so the next check is the fast one.
      if ((version & 1) === 0) this.version[id] = version;
    }
    const expires = this.expires[id]!;
    if (expires !== 0 && expires <= Date.now()) return this.drop(key);
    // Mark the key used for the owner's CLOCK, but only on every 8th hit: the
    // slot is likely a cache miss, and a hot key is hit often enough.
    if ((++this.hits & 7) === 0) view.touch(this.slot[id]!);
    return this.values[id];
  }

  /** Caches `value`, read from `view` (its found* fields describe the read). */
  set(key: string, value: unknown, shard: number, view: ShardView): void {
    let id = this.lru.peek(key);
    if (id === undefined) {
      id = this.free.pop() ?? this.next++;
      this.lru.set(key, id);
    }
    this.values[id] = value;
    this.shard[id] = shard;
    this.slot[id] = view.foundSlot;
    this.seq[id] = view.foundSeq;
    this.stripe[id] = view.foundStripe;
    this.version[id] = view.foundVersion;
    this.expires[id] = view.foundExpires;
  }

  clear(): void {
    this.lru.clear();
  }

  get size(): number {
    return this.lru.size;
  }

  private drop(key: string): undefined {
    this.lru.delete(key);
    return undefined;
  }

  private release(id: number): void {
    this.values[id] = undefined;
    this.free.push(id);
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
