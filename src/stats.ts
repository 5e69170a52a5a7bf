/**
 * `stats()`: counters read from shared memory, never by asking an owner.
 * Owners write their shard's counters (Float64 words in the shard header);
 * readers count hits and misses in their own thread's slot of the control
 * block; the flusher writes the Redis counters. Each is written by one thread
 * and read here with plain loads, so a figure may trail by the writes in
 * progress, never be torn.
 */
import {
  C_REDIS_PENDING, F_REDIS_FAILED, F_REDIS_FLUSHED, F_REDIS_LAST_FLUSH_MS, F_REDIS_RETRIES, T_HITS, T_MISSES, sumThreadCounter,
} from './memory/control.js';
import { F_DELETES, F_EVICTIONS, F_EXPIRATIONS, F_REJECTIONS, F_SETS, H_ARENA_USED, H_ENTRIES, H_MAX_ENTRIES, SLOT_WORDS, sketchBytesFor } from './memory/layout.js';
import type { ShardView } from './memory/shard-view.js';

export interface RedisStats {
  /** Writes accepted and not yet acknowledged by Redis (or failed), wherever they wait. */
  pending: number;
  /** Writes Redis acknowledged (a write coalesced into a later one counts when that one is acknowledged). */
  flushed: number;
  /** Re-sends after a failure. */
  retries: number;
  /** Writes dropped after `maxAttempts` refusals by Redis, or refused by the codec; each was reported by an `error` event. */
  failed: number;
  /** Duration of the last flush batch, in ms. */
  lastFlushMs: number;
}

export interface ShardCacheStats {
  entries: number;
  bytesUsed: number;
  maxBytes: number;
  /** The entry bound granted for all shards together (see options.maxEntries); 0 without one. */
  maxEntries: number;
  shards: number;
  hits: number;
  misses: number;
  sets: number;
  deletes: number;
  evictions: number;
  /**
   * Of the evictions, those where admission refused a new entry: it lost to
   * the entry it would have displaced (only with maxEntries).
   */
  rejections: number;
  expirations: number;
  /** Present when the cache writes behind to Redis. */
  redis?: RedisStats;
}

export function readStats(views: readonly ShardView[], control: Int32Array, controlF64: Float64Array, maxBytes: number, withRedis: boolean): ShardCacheStats {
  let entries = 0, bytesUsed = 0, maxEntries = 0, sets = 0, deletes = 0, evictions = 0, rejections = 0, expirations = 0;
  for (const view of views) {
    entries += Atomics.load(view.i32, H_ENTRIES);
    bytesUsed += Atomics.load(view.i32, H_ARENA_USED) + view.slots * SLOT_WORDS * 4 + (view.sketch === undefined ? 0 : sketchBytesFor(view.i32[H_MAX_ENTRIES]!));
    sets += view.f64[F_SETS]!;
    deletes += view.f64[F_DELETES]!;
    evictions += view.f64[F_EVICTIONS]!;
    rejections += view.f64[F_REJECTIONS]!;
    maxEntries += view.i32[H_MAX_ENTRIES]!;
    expirations += view.f64[F_EXPIRATIONS]!;
  }
  return {
    entries,
    bytesUsed,
    maxBytes,
    maxEntries,
    shards: views.length,
    hits: sumThreadCounter(control, controlF64, T_HITS),
    misses: sumThreadCounter(control, controlF64, T_MISSES),
    sets,
    deletes,
    evictions,
    rejections,
    expirations,
    ...(withRedis ? { redis: readRedisStats(control, controlF64) } : {}),
  };
}

function readRedisStats(control: Int32Array, f64: Float64Array): RedisStats {
  return {
    // Never below 0: a write re-applied after an owner crash is logged twice (README, "Failures").
    pending: Math.max(0, Atomics.load(control, C_REDIS_PENDING)),
    flushed: f64[F_REDIS_FLUSHED]!,
    retries: f64[F_REDIS_RETRIES]!,
    failed: f64[F_REDIS_FAILED]!,
    lastFlushMs: f64[F_REDIS_LAST_FLUSH_MS]!,
  };
}
