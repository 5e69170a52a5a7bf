/**
 * Options: one interface with documented defaults, one defaults object, one
 * `resolveOptions` that validates and fills them. An invalid option throws
 * ERR_INVALID_OPTION naming it.
 */
import os from 'node:os';
import { invalidOption } from './errors.js';
import { MIN_SHARD_BYTES, largestValueFor, shardEntryBound, shardGeometry } from './memory/layout.js';
import { recordBytes } from './memory/write-queue.js';
import { MAX_KEY_LENGTH } from './memory/layout.js';
import type { RedisOptions } from './redis/redis-options.js';

export interface ShardCacheOptions {
  /**
   * Number of shards, each owned by one worker thread.
   * @default os.availableParallelism()
   */
  shards?: number;
  /**
   * Hard memory budget, in bytes, for all shards together (index and values).
   * Each shard gets an equal share; the least recently used entries are evicted
   * to stay inside it. Per-thread write queues and near caches come on top (see
   * README, "Memory").
   * @default 64 MiB
   */
  maxBytes?: number;
  /**
   * Most entries all shards together hold, besides the maxBytes budget
   * (like lru-cache's `max`): whichever binds first evicts. Each shard holds
   * at most ceil(maxEntries / shards), since a key's shard is fixed by its
   * hash. A shard's index grows to fit its share; a share its budget cannot
   * index (the index and the sketch may take half the shard: about one entry
   * per 40 to 64 bytes of the shard) is clamped to what it can, and
   * `stats().maxEntries` says what was granted.
   *
   * Setting it also turns on frequency-aware admission (W-TinyLFU): readers
   * count their reads in a sketch in shared memory (8 bytes per entry, out of
   * maxBytes), and a new key enters the main space only if it was read more
   * often than what it would displace, so scans and one-hit keys do not flush
   * the working set. Without it, entries are bounded by bytes alone and
   * evicted by CLOCK, and reads count nothing.
   * @default undefined (no entry bound)
   */
  maxEntries?: number;
  /**
   * Default time to live in milliseconds for `set` without its own `ttlMs`.
   * 0 or Infinity means entries do not expire (not "expire at once"); any
   * finite TTL works, a year or more.
   * @default 0
   */
  ttlMs?: number;
  /**
   * Largest encoded (msgpack) value accepted, in bytes. Larger values are
   * refused with ERR_VALUE_TOO_LARGE. Cannot exceed a quarter of a shard's arena.
   * Each writing thread's queue to each shard holds two of the largest records,
   * so this also sizes those queues (1 MiB each at the default).
   * @default the smaller of 256 KiB and the largest a shard can hold
   */
  maxValueBytes?: number;
  /**
   * Entries in each thread's near cache of decoded values; 0 turns it off.
   * Each entry costs the decoded value on that thread's heap plus ~90 bytes
   * (a Map entry and the check's typed-array slots): ~20 MiB per thread at
   * 65 536 entries of ~100-byte objects.
   * @default one per KiB of maxBytes, from 1024 to 65 536 (65 536 at the default 64 MiB)
   */
  nearCache?: number;
  /**
   * How long a write waits for room in a full write queue (an owner that is
   * behind, or Redis write-behind that is behind) before it throws
   * ERR_BACKPRESSURE.
   * @default 5_000
   */
  backpressureTimeoutMs?: number;
  /** Redis behind the cache: see RedisOptions. */
  redis?: RedisOptions;
}

/** The options every thread needs, as plain data that travels in the handle. */
export interface ResolvedCoreOptions {
  shards: number;
  maxBytes: number;
  shardBytes: number;
  /** options.maxEntries, 0 if unset. */
  maxEntries: number;
  /** Each shard's entry bound: its share of maxEntries, clamped to what its budget can index; 0 if none. */
  shardMaxEntries: number;
  ttlMs: number;
  maxValueBytes: number;
  nearCache: number;
  backpressureTimeoutMs: number;
  ringBytes: number;
}

export const DEFAULTS = {
  maxBytes: 64 * 1024 * 1024,
  ttlMs: 0,
  maxValueBytes: 256 * 1024,
  backpressureTimeoutMs: 5_000,
} as const;

/** How long `flush()` waits by default, and `close()` for the pending writes. */
export const FLUSH_TIMEOUT_MS = 30_000;
/** How long `attach` waits for every owner to acknowledge the new thread's queues. */
export const ATTACH_TIMEOUT_MS = 10_000;
/** How often `attach` re-posts its registration (an owner being replaced may miss one). */
export const ATTACH_RETRY_MS = 200;

/** A shard's SAB uses Int32 byte offsets. */
const MAX_SHARD_BYTES = 2 ** 31 - 8;
const MIN_RING_BYTES = 256 * 1024;

export function resolveOptions(options: ShardCacheOptions = {}): ResolvedCoreOptions {
  if (options === null || typeof options !== 'object') throw invalidOption('', 'must be an object', options);
  const shards = options.shards ?? os.availableParallelism();
  if (!Number.isInteger(shards) || shards < 1 || shards > 256) {
    throw invalidOption('shards', 'must be an integer from 1 to 256', shards);
  }
  const maxBytes = options.maxBytes ?? DEFAULTS.maxBytes;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < shards * MIN_SHARD_BYTES) {
    throw invalidOption('maxBytes', `must be an integer of at least ${MIN_SHARD_BYTES} bytes per shard (${shards * MIN_SHARD_BYTES} for ${shards} shards)`, maxBytes);
  }
  const shardBytes = Math.floor(maxBytes / shards);
  if (shardBytes > MAX_SHARD_BYTES) {
    throw invalidOption('maxBytes', `must be at most 2 GiB per shard; raise options.shards`, maxBytes);
  }
  const maxEntries = options.maxEntries ?? 0;
  if (options.maxEntries !== undefined && (!Number.isSafeInteger(maxEntries) || maxEntries < 1)) {
    throw invalidOption('maxEntries', 'must be a positive safe integer, or undefined for no entry bound', options.maxEntries);
  }
  const shardMaxEntries = shardEntryBound(Math.floor(shardBytes / 8) * 8, Math.ceil(maxEntries / shards));
  const ttlMs = resolveTtl(options.ttlMs ?? DEFAULTS.ttlMs, 'ttlMs');
  const largest = largestValueFor(shardGeometry(shardBytes, shardMaxEntries));
  const maxValueBytes = options.maxValueBytes ?? Math.min(DEFAULTS.maxValueBytes, largest);
  if (!Number.isInteger(maxValueBytes) || maxValueBytes < 1 || maxValueBytes > largest) {
    throw invalidOption('maxValueBytes', `must be an integer from 1 to ${largest} (a quarter of a shard's arena) with maxBytes ${maxBytes} and ${shards} shards`, maxValueBytes);
  }
  const nearCache = options.nearCache ?? defaultNearCache(maxBytes);
  if (!Number.isInteger(nearCache) || nearCache < 0 || nearCache > 10_000_000) {
    throw invalidOption('nearCache', 'must be an integer from 0 (off) to 10000000', nearCache);
  }
  const backpressureTimeoutMs = options.backpressureTimeoutMs ?? DEFAULTS.backpressureTimeoutMs;
  validateTimeout(backpressureTimeoutMs, 'backpressureTimeoutMs');
  // Room for at least two of the largest records, so one large write never
  // waits for a ring that can never hold it.
  let ringBytes = MIN_RING_BYTES;
  while (ringBytes < 2 * recordBytes(MAX_KEY_LENGTH, maxValueBytes)) ringBytes *= 2;
  return { shards, maxBytes, shardBytes, maxEntries, shardMaxEntries, ttlMs, maxValueBytes, nearCache, backpressureTimeoutMs, ringBytes };
}

/**
 * The near cache follows the budget: a cache sized for more entries gets more
 * hot keys decoded, up to a heap cost that stays small against lru-cache's
 * (see README, "Memory").
 */
export function defaultNearCache(maxBytes: number): number {
  return Math.max(NEAR_CACHE_MIN, Math.min(NEAR_CACHE_MAX, Math.floor(maxBytes / NEAR_CACHE_BYTES_PER_ENTRY)));
}

const NEAR_CACHE_BYTES_PER_ENTRY = 1024;
const NEAR_CACHE_MIN = 1024;
const NEAR_CACHE_MAX = 65_536;

/** A timeout in ms: finite and 0 or more (0 means do not wait). */
export function validateTimeout(ms: unknown, name: string): asserts ms is number {
  if (typeof ms !== 'number' || !(ms >= 0) || !Number.isFinite(ms)) {
    throw invalidOption(name, 'must be a finite number of milliseconds, 0 or more', ms);
  }
}

/**
 * A TTL in ms as the cache keeps it: 0 and Infinity both mean no expiry (0 is
 * returned for both). Any finite TTL works, a year or more: TTLs become
 * absolute expiry times (ms since the epoch, exact in a double), never timers.
 */
export function resolveTtl(ttlMs: unknown, name: string): number {
  if (typeof ttlMs !== 'number' || !(ttlMs >= 0)) {
    throw invalidOption(name, 'must be a number of milliseconds, 0 or Infinity (no expiry) or more', ttlMs);
  }
  return ttlMs === Infinity ? 0 : ttlMs;
}

/** setTimeout's longest delay (about 24.8 days): longer waits are re-armed, never passed to it. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
