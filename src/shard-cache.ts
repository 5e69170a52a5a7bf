/**
 * ShardCache: the public class. One instance per thread: the creating thread
 * makes the shards and starts their owners; other threads `attach` to the same
 * shards by the handle. It checks arguments and delegates to the parts it
 * holds (built in wiring.ts): the write path into the rings (write-path.ts),
 * the read-your-writes overlay (overlay.ts), fetching (fetcher.ts), locks and
 * atomic operations (atomic-operations.ts), and the Redis tier.
 *
 * Consistency contract (also in the README):
 * - get/has read shared memory (or this thread's near cache, validated against
 *   the slot's seq) and never wait for another thread.
 * - A write is queued to the key's owner; the writing thread sees it at once
 *   through its overlay of queued writes; other threads see it once the owner
 *   applied it. `settled()` resolves when every write this thread queued before
 *   the call was applied.
 * - Writes of one thread to one key are applied in order. Writes of different
 *   threads to one key are applied in the order the owner drains them.
 */
import { EventEmitter } from 'node:events';
import { AtomicOperations } from './atomic-operations.js';
import type { ShardCodec } from './codec.js';
import { ShardCacheError, closedError, describe, invalidOption } from './errors.js';
import { Fetcher, type FetchOptions } from './fetcher.js';
import { hashKey, shardOf } from './hash.js';
import type { Lock, LockOptions } from './lock.js';
import { C_CLOSED, T_HITS, T_MISSES, takeThreadSlot } from './memory/control.js';
import { MAX_KEY_LENGTH, MAX_STALE_SECONDS } from './memory/layout.js';
import { NOT_FOUND, READ_CLOCK, Scratch, type ShardView } from './memory/shard-view.js';
import { OP_CLEAR, OP_DELETE, OP_SET } from './memory/write-queue.js';
import type { CacheHandle } from './messages.js';
import { createNearCache, type NearCache } from './near-cache.js';
import { FLUSH_TIMEOUT_MS, resolveTtl, validateTimeout, type ResolvedCoreOptions, type ShardCacheOptions } from './options.js';
import { NOT_QUEUED, Overlay } from './overlay.js';
import type { OwnerPool } from './owner-pool.js';
import { checkForCodec } from './redis/redis-codec.js';
import type { TierAccess } from './redis/redis-tier.js';
import { unregisterProducer } from './registration.js';
import { readStats, type ShardCacheStats } from './stats.js';
import { restoreStringPrototype } from './string-prototype.js';
import { attachParts, createParts, type CacheParts } from './wiring.js';
import type { WritePath } from './write-path.js';

export type { FetchOptions } from './fetcher.js';
export type { RedisStats, ShardCacheStats } from './stats.js';

export interface SetOptions {
  /** Time to live in ms for this entry; 0 or Infinity = never expires. Defaults to the cache's `ttlMs`. */
  ttlMs?: number;
  /**
   * A stale window after the TTL (see FetchOptions.staleWhileRevalidateMs):
   * `get`/`has` treat the entry as gone once its TTL ran out; `fetch` with a
   * loader and a window serves it while it refreshes. Needs a TTL.
   * @default 0
   */
  staleWhileRevalidateMs?: number;
}

export interface FlushOptions {
  /**
   * How long to wait before rejecting with ERR_FLUSH_TIMEOUT.
   * @default 30_000
   */
  timeoutMs?: number;
}

/**
 * Events: `error` (a write Redis refused `maxAttempts` times, or the codec
 * refused, and that was dropped: a ShardCacheError with the `key`; or a Redis
 * connection error of a client the cache made). Without an `error` listener
 * these are only counted in stats, never thrown.
 */
restoreStringPrototype();

export class ShardCache extends EventEmitter {
  /** Structured-cloneable: pass it to another thread and `ShardCache.attach` it there. */
  readonly handle: CacheHandle;
  private readonly options: ResolvedCoreOptions;
  private readonly views: readonly ShardView[];
  private readonly shardCount: number;
  private readonly writes: WritePath;
  private readonly codec: ShardCodec;
  private readonly overlay: Overlay;
  private readonly near: NearCache | undefined;
  private readonly fetcher: Fetcher;
  private readonly atomics: AtomicOperations;
  private readonly pool: OwnerPool | undefined;
  private readonly tier: TierAccess | undefined;
  private readonly producer: number;
  private readonly control: Int32Array;
  private readonly controlF64: Float64Array;
  /** This thread's hit and miss counters, in shared memory. */
  private readonly threadStats: Float64Array;
  private readonly scratch = new Scratch();
  /** Whether the shards count reads for admission (maxEntries): decided once, not per read. */
  private readonly countsReads: boolean;
  /** Refuses at `set` a value the Redis codec could never store (see checkForCodec); undefined when none can be foreseen. */
  private readonly checkCodec: ((value: unknown, key: string) => void) | undefined;
  private isClosed = false;

  private constructor(parts: CacheParts) {
    super();
    const { handle, views, writes, tier } = parts;
    this.handle = handle;
    this.options = handle.options;
    this.views = views;
    this.shardCount = views.length;
    this.writes = writes;
    const codec = (this.codec = parts.codec);
    this.overlay = new Overlay(writes.producers, codec);
    this.near = createNearCache(handle.options.nearCache, views, this.overlay.queuedStripes);
    this.pool = parts.pool;
    this.tier = tier;
    this.producer = parts.producer;
    this.control = new Int32Array(handle.control);
    this.controlF64 = new Float64Array(handle.control);
    this.threadStats = takeThreadSlot(this.control);
    this.countsReads = views[0]?.sketch !== undefined;
    const overlay = this.overlay;
    const atomics = (this.atomics = new AtomicOperations({ target: this, tier, locks: handle.locks, views, writes, overlay, codec }));
    this.fetcher = new Fetcher({
      target: this,
      tier: handle.redis?.readThrough ? tier : undefined,
      views,
      writes,
      overlay,
      codec,
      maxValueBytes: handle.options.maxValueBytes,
      writeBehind: handle.redis?.writeBehind === true,
      refreshGuard: (key) => atomics.tryRefresh(key),
      problems: parts.problems,
    });
    const redisCodec = handle.redis?.codec;
    this.checkCodec = redisCodec === 'string' || redisCodec === 'buffer' ? (value, key) => checkForCodec(redisCodec, value, key) : undefined;
    parts.problems.on('error', (error: Error) => this.report(error));
  }

  /** Creates a cache and starts one owner thread per shard. */
  static async create(options?: ShardCacheOptions): Promise<ShardCache> {
    restoreStringPrototype();
    return new ShardCache(await createParts(options));
  }

  /** Attaches this thread to a cache created elsewhere in the process. Same data, no copy. */
  static async attach(handle: CacheHandle): Promise<ShardCache> {
    if (handle === null || typeof handle !== 'object' || handle.kind !== 'shardcache' || handle.version !== 1) {
      throw new ShardCacheError('ERR_INVALID_OPTION', `handle must be a ShardCache's .handle (got ${describe(handle)})`);
    }
    restoreStringPrototype();
    return new ShardCache(await attachParts(handle));
  }

  /** Whether `close()` was called on this thread's instance. */
  get closed(): boolean {
    return this.isClosed;
  }

  // ---- Redis tier ---------------------------------------------------------

  /**
   * The local value if present; else (with Redis) the value in Redis, cached
   * locally; else `loader(key)`, whose result is set (and written behind).
   * One Redis request per key is in flight per process, one loader call per
   * key per thread, however many callers ask.
   */
  fetch<T = unknown>(key: string, options?: FetchOptions<T>): Promise<T | undefined> {
    // Not an async function: a local hit, the common case, then costs one
    // resolved promise instead of an async function's machinery.
    let local: unknown;
    try {
      local = this.get(key);
      if (local === undefined) this.checkFetch(key, options);
    } catch (error) {
      return Promise.reject(error);
    }
    if (local !== undefined) return Promise.resolve(local as T);
    return this.fetcher.fetchMiss(key, options);
  }

  /** `fetch` for many keys: local hits, then one MGET per Redis node for the rest. */
  async fetchMany<T = unknown>(keys: readonly string[], options?: FetchOptions<T>): Promise<(T | undefined)[]> {
    const values = this.getMany(keys) as (T | undefined)[];
    for (const key of keys) this.checkFetch(key, options);
    const missing: number[] = [];
    for (let i = 0; i < values.length; i++) if (values[i] === undefined) missing.push(i);
    if (missing.length > 0) await this.fetcher.fetchMissing(keys, values, missing, options);
    return values;
  }

  /**
   * Resolves when every write issued (by any thread) before the call is
   * acknowledged by Redis; rejects with ERR_FLUSH_TIMEOUT after `timeoutMs`.
   * Without write-behind it resolves at once.
   */
  async flush(options?: FlushOptions): Promise<void> {
    if (this.isClosed) throw closedError();
    const timeoutMs = options?.timeoutMs ?? FLUSH_TIMEOUT_MS;
    validateTimeout(timeoutMs, 'timeoutMs');
    await this.settled();
    if (this.tier && this.handle.redis?.writeBehind) await this.tier.flush(timeoutMs);
  }

  // ---- atomic operations and locks ----------------------------------------

  /**
   * An exclusive lock on `key` with a fencing token: across every thread of
   * the process, and with Redis across processes and hosts too.
   */
  async lock(key: string, options?: LockOptions): Promise<Lock> {
    this.checkWrite(key);
    return this.atomics.lock(key, options);
  }

  /**
   * Adds `by` to the number stored at `key` (absent counts as 0) and returns
   * the new value. Atomic for every thread; with Redis, decided in Redis and so
   * atomic across processes, then cached locally.
   */
  async incr(key: string, by = 1): Promise<number> {
    this.checkWrite(key);
    if (typeof by !== 'number' || !Number.isFinite(by)) throw new ShardCacheError('ERR_INVALID_OPTION', `incr: by must be a finite number (got ${describe(by)})`);
    return this.atomics.incr(key, by);
  }

  /**
   * Atomic read-modify-write: `fn` gets the current value (or undefined) and
   * returns the new one, or undefined to delete. Under `lock(key)`: within the
   * process without Redis, across processes with it (reading Redis's value).
   */
  async update<T = unknown>(key: string, fn: (current: T | undefined) => T | undefined | Promise<T | undefined>, options?: LockOptions): Promise<T | undefined> {
    this.checkWrite(key);
    if (typeof fn !== 'function') throw new ShardCacheError('ERR_INVALID_OPTION', 'update: fn must be a function');
    return this.atomics.update(key, fn, options);
  }

  // ---- reads -------------------------------------------------------------

  /** The value stored for `key`, or undefined. Synchronous; never waits for another thread. */
  get(key: string): unknown {
    // The near-cache hit comes first and checks nothing else: only a valid key
    // is ever cached, and close() empties the near cache, so a bad key or a
    // closed cache always reaches readShared and its checks. The near cache
    // serves no key of a stripe this thread has queued writes to (overlay.ts),
    // so a queued write wins without being looked for here.
    const near = this.near;
    if (near !== undefined) {
      const value = near.get(key);
      if (value !== undefined) {
        this.threadStats[T_HITS]!++;
        return value;
      }
    }
    return this.readShared(key);
  }

  /** Empties the overlay if every write in it is applied; returns whether it did. */
  private overlayApplied(): boolean {
    if (!this.writes.allApplied()) return false;
    this.overlay.clear();
    return true;
  }

  /** get past the near cache: this thread's queued write, else the shard. */
  private readShared(key: string): unknown {
    if (this.isClosed) throw closedError();
    checkKey(key);
    const hash = hashKey(key);
    // Emptied first if the owners applied all of it by now (a load per shard), so it is not probed for nothing.
    if (this.overlay.size !== 0 && !this.overlayApplied()) {
      const queued = this.overlay.pending(key, hash);
      if (queued !== NOT_QUEUED) {
        const value = this.overlay.read(queued);
        this.threadStats[value === undefined ? T_MISSES : T_HITS]!++;
        if (this.countsReads) this.views[shardOf(hash, this.shardCount)]!.sketch?.increment(hash);
        return value;
      }
    }
    const near = this.near;
    const shard = shardOf(hash, this.shardCount);
    const view = this.views[shard]!;
    const length = view.read(key, hash, READ_CLOCK, this.scratch);
    // With maxEntries, every read counts into the shard's frequency sketch, a
    // miss too: admission needs to know the keys that are asked for, not only
    // those present (see memory/eviction-policy.ts).
    view.sketch?.increment(hash);
    if (length === NOT_FOUND) {
      this.threadStats[T_MISSES]!++;
      return undefined;
    }
    view.touch(view.foundSlot);
    if (near === undefined) {
      const value = this.codec.decodeRange(this.scratch.buffer, 0, length);
      this.threadStats[T_HITS]!++;
      return value;
    }
    // Frozen whether or not the near cache takes it now, so a caller never
    // sees one read of a key mutable and the next frozen.
    const value = this.codec.decodeShareable(this.scratch.buffer, 0, length);
    if (this.codec.shareable && near.admit(key, hash)) near.set(key, hash, value, shard, view);
    this.threadStats[T_HITS]!++;
    return value;
  }

  /** Whether a live (unexpired) entry exists for `key`. Not counted as a read for admission (like lru-cache's has, which leaves recency alone). */
  has(key: string): boolean {
    if (this.isClosed) throw closedError();
    checkKey(key);
    const hash = hashKey(key);
    if (this.overlay.size !== 0) {
      const queued = this.overlay.pending(key, hash);
      if (queued !== NOT_QUEUED) return this.overlay.isLive(queued);
    }
    return this.views[shardOf(hash, this.shardCount)]!.has(key, hash, READ_CLOCK);
  }

  getMany(keys: readonly string[]): unknown[] {
    if (this.isClosed) throw closedError();
    if (!Array.isArray(keys)) throw new ShardCacheError('ERR_INVALID_KEY', `keys must be an array of strings (got ${describe(keys)})`);
    const out = new Array<unknown>(keys.length);
    for (let i = 0; i < keys.length; i++) out[i] = this.get(keys[i]!);
    return out;
  }

  /** Live entries across all shards (expired entries count until the owner removes them). */
  get size(): number {
    if (this.isClosed) throw closedError();
    let n = 0;
    for (const view of this.views) n += view.entries;
    return n;
  }

  // ---- writes ------------------------------------------------------------

  /**
   * Stores `value` under `key`. Visible to this thread at once, to others once
   * the owner applied it. Setting `undefined` deletes the key (as lru-cache does).
   */
  set(key: string, value: unknown, options?: SetOptions): this {
    this.checkWrite(key);
    const ttl = options?.ttlMs === undefined ? this.options.ttlMs : resolveTtl(options.ttlMs, 'ttlMs');
    const stale = ttl > 0 && options?.staleWhileRevalidateMs !== undefined ? staleSeconds(options.staleWhileRevalidateMs) : 0;
    if (value === undefined) {
      this.delete(key);
      return this;
    }
    // The entry lives through its stale window; readers subtract the window to know its freshness.
    this.writes.write(OP_SET, key, hashKey(key), this.encodeValue(key, value), ttl > 0 ? Date.now() + ttl + stale * 1000 : 0, this.overlay, stale);
    return this;
  }

  setMany(entries: Iterable<readonly [string, unknown]>, options?: SetOptions): this {
    if (this.isClosed) throw closedError();
    if (entries === null || typeof (entries as Iterable<unknown>)[Symbol.iterator] !== 'function') {
      throw new ShardCacheError('ERR_INVALID_KEY', `entries must be an iterable of [key, value] pairs (got ${describe(entries)})`);
    }
    // Validate and encode everything first, so a bad entry rejects the whole
    // call before anything is queued.
    const list = [...entries];
    for (const entry of list) {
      if (!Array.isArray(entry)) throw new ShardCacheError('ERR_INVALID_KEY', `each entry must be a [key, value] pair (got ${describe(entry)})`);
      this.checkWrite(entry[0]);
    }
    const ttl = options?.ttlMs === undefined ? this.options.ttlMs : resolveTtl(options.ttlMs, 'ttlMs');
    const stale = ttl > 0 && options?.staleWhileRevalidateMs !== undefined ? staleSeconds(options.staleWhileRevalidateMs) : 0;
    // pack() reuses its buffer: copy before the next encode.
    const encoded = list.map(([key, value]) => (value === undefined ? undefined : Buffer.from(this.encodeValue(key, value))));
    const expires = ttl > 0 ? Date.now() + ttl + stale * 1000 : 0;
    for (let i = 0; i < list.length; i++) {
      const key = list[i]![0];
      const bytes = encoded[i];
      if (bytes === undefined) this.delete(key);
      else this.writes.write(OP_SET, key, hashKey(key), bytes, expires, this.overlay, stale);
    }
    return this;
  }

  /** Encodes a value for `key`, refusing one larger than maxValueBytes. A view on msgpackr's buffer: see encode. */
  private encodeValue(key: string, value: unknown): Uint8Array {
    this.checkCodec?.(value, key);
    const bytes = this.codec.encode(value);
    if (bytes.length > this.options.maxValueBytes) {
      throw new ShardCacheError('ERR_VALUE_TOO_LARGE', `value for ${describe(key)} encodes to ${bytes.length} bytes; options.maxValueBytes is ${this.options.maxValueBytes}`);
    }
    return bytes;
  }

  /** Deletes `key`. Returns whether it was there (as this thread sees it). */
  delete(key: string): boolean {
    const existed = this.has(key);
    this.checkWrite(key);
    this.writes.write(OP_DELETE, key, hashKey(key), undefined, 0, this.overlay);
    return existed;
  }

  /** Removes every entry. Returns once every owner has applied it. */
  clear(): void {
    if (this.isClosed) throw closedError();
    const redis = this.handle.redis;
    if (redis?.writeBehind && redis.twemproxy) {
      throw new ShardCacheError('ERR_NOT_SUPPORTED', 'clear() cannot reach Redis through twemproxy (it does not proxy SCAN); delete keys one by one, or set redis.writeBehind to false');
    }
    // Admitted for every shard at once: a clear refused halfway would clear only some shards.
    if (redis?.writeBehind) this.writes.admitPending(this.shardCount);
    let queued = 0;
    try {
      for (; queued < this.shardCount; queued++) this.writes.enqueue(queued, OP_CLEAR, '', 0, undefined, 0, 0, true);
    } catch (error) {
      if (redis?.writeBehind) this.writes.releasePending(this.shardCount - queued);
      throw error;
    }
    this.overlay.clear();
    this.near?.clear();
    this.writes.settleSync('clear()');
  }

  /** Resolves when every write this thread queued before the call is visible to all threads. */
  async settled(): Promise<void> {
    if (this.isClosed) throw closedError();
    await this.writes.waitApplied(this.writes.heads());
    // Clearing is O(1) where a sweep visits every entry; it is right only
    // if nothing queued meanwhile is still waiting.
    if (!this.overlayApplied()) this.overlay.sweep();
  }

  stats(): ShardCacheStats {
    if (this.isClosed) throw closedError();
    return readStats(this.views, this.control, this.controlF64, this.options.maxBytes, this.handle.redis?.writeBehind === true);
  }

  /**
   * On the creating thread: applies queued writes, stops the owners and frees
   * the cache. On an attached thread: detaches this thread. Idempotent.
   */
  async close(): Promise<void> {
    if (this.isClosed) return;
    // After the creating thread closed the cache there is nothing to wait for.
    if (Atomics.load(this.control, C_CLOSED) === 0) await this.writes.waitApplied(this.writes.heads());
    this.isClosed = true;
    // Callers of this thread still waiting for a lock give up; this thread's
    // places in the lock queues are handed on (lock-table.ts).
    this.atomics.close(closedError());
    this.overlay.clear();
    this.near?.clear();
    if (!this.pool) {
      await this.tier?.close();
      unregisterProducer(this.handle, this.producer);
      return;
    }
    let flushError: unknown;
    try {
      await this.tier?.flush(FLUSH_TIMEOUT_MS);
    } catch (error) {
      flushError = error;
    }
    Atomics.store(this.control, C_CLOSED, 1);
    await this.pool.stop();
    await this.tier?.close();
    if (flushError) throw flushError;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /**
   * For tests of owner failure: terminates shard `shard`'s owner as a crash
   * would and resolves once a replacement owns the shard. Creating thread only.
   */
  async terminateOwnerForTesting(shard: number): Promise<void> {
    if (!this.pool) throw new ShardCacheError('ERR_NOT_SUPPORTED', 'only the creating thread supervises the owners');
    await this.pool.crash(shard);
  }

  // ---- checks ------------------------------------------------------------

  /** What every write (and lock) checks first. */
  private checkWrite(key: string): void {
    if (this.isClosed) throw closedError();
    checkKey(key);
    this.checkRedisKey(key);
  }

  private checkFetch(key: string, options: FetchOptions<unknown> | undefined): void {
    this.checkRedisKey(key);
    if (options?.ttlMs !== undefined) resolveTtl(options.ttlMs, 'ttlMs');
    if (options?.staleWhileRevalidateMs !== undefined) staleSeconds(options.staleWhileRevalidateMs);
  }

  /**
   * With Redis behind the cache, keys also become Redis keys, which ioredis
   * sends as UTF-8: a lone surrogate would become U+FFFD and two keys could
   * collide there. Such keys are refused for writes and Redis reads.
   */
  private checkRedisKey(key: string): void {
    if (this.handle.redis !== undefined && !key.isWellFormed()) {
      throw new ShardCacheError('ERR_INVALID_KEY', 'with Redis behind the cache, keys must be well-formed UTF-16 (no lone surrogates): Redis keys are UTF-8');
    }
  }

  /** Emits `error` only if someone listens: a background failure must never crash the process. */
  private report(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }
}

/** A stale window in whole seconds, as an entry keeps it (see layout.ts). */
function staleSeconds(ms: unknown): number {
  if (typeof ms !== 'number' || !(ms >= 0) || ms > MAX_STALE_SECONDS * 1000) {
    throw invalidOption('staleWhileRevalidateMs', `must be a number of milliseconds from 0 to ${MAX_STALE_SECONDS * 1000}`, ms);
  }
  return Math.ceil(ms / 1000);
}

function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string') {
    throw new ShardCacheError('ERR_INVALID_KEY', `keys must be strings (got ${describe(key)})`);
  }
  if (key.length > MAX_KEY_LENGTH) {
    throw new ShardCacheError('ERR_INVALID_KEY', `keys may be at most ${MAX_KEY_LENGTH} UTF-16 code units long (got ${key.length})`);
  }
}
