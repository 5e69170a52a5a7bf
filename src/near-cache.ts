/**
 * The per-thread near cache: decoded values of hot keys, so a hit costs an
 * lru-cache lookup plus one atomic load instead of a copy and a decode.
 *
 * An entry remembers where its value came from (shard, slot) and the write's
 * seq. It is served only while that slot still holds that seq: any later write,
 * delete, eviction or move of the key changes or clears the slot, so a stale
 * decoded value is never returned. Expiry is checked against the stored time.
 *
 * A cached value is shared by every `get` on this thread, so it must be
 * immutable: plain objects and arrays are deep-frozen; values holding Buffers,
 * typed arrays, Maps, Sets or Dates (which freezing does not protect) are not
 * near-cached and are decoded afresh on every `get`.
 */
import { LRUCache } from 'lru-cache';
import type { ShardView } from './memory/shard-view.js';

export interface NearEntry {
  value: unknown;
  view: ShardView;
  slot: number;
  seq: number;
  expires: number;
}

export function createNearCache(max: number): LRUCache<string, NearEntry> | undefined {
  return max > 0 ? new LRUCache<string, NearEntry>({ max }) : undefined;
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
