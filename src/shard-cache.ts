/**
 * ShardCache: the public class. One instance per thread: the creating thread
 * makes the shards and starts their owners; other threads `attach` to the same
 * shards by the handle.
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
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { BroadcastChannel } from 'node:worker_threads';
import { decodeRange, decodeUntrusted, encode } from './codec.js';
import { ShardCacheError, closedError, describe } from './errors.js';
import { hashKey, shardOf } from './hash.js';
import {
  C_CLOSED, C_NEXT_PRODUCER, C_REDIS_PENDING, F_REDIS_FAILED, F_REDIS_FLUSHED, F_REDIS_LAST_FLUSH_MS, F_REDIS_RETRIES,
  T_HITS, T_MISSES, createControl, sumThreadCounter, takeThreadSlot,
} from './memory/control.js';
import {
  F_DELETES, F_EVICTIONS, F_EXPIRATIONS, F_SETS, H_ARENA_USED, H_DOORBELL, H_ENTRIES, H_SLEEPING,
  FLAG_DIRTY, H_STALLED, H_WRITE_GENERATION, MAX_KEY_LENGTH, SLOT_WORDS, createShardBuffer,
} from './memory/layout.js';
import { NOT_FOUND, Scratch, ShardView } from './memory/shard-view.js';
import {
  OP_CLEAR, OP_DELETE, OP_DROP, OP_DROP_CLEAN, OP_FILL, OP_PUT, OP_SET, R_TAIL, R_WAITERS, RECORD_HEADER_BYTES, RingProducer, createRing, recordBytes,
} from './memory/write-queue.js';
import { InvalidationBus } from './redis/invalidation-bus.js';
import type { RemoteValue } from './redis/read-through.js';
import { resolveRedisOptions } from './redis/redis-options.js';
import { LockTable, createLockTable } from './memory/lock-table.js';
import { acquireLock, pollingAcquire, type Lock, type LockBackend, type LockOptions } from './lock.js';
import { RedisTier, RemoteTier, type TierAccess } from './redis/redis-tier.js';
import { WriteBehind } from './redis/write-behind.js';
import type { CacheHandle, ChannelMessage, ProducerRings } from './messages.js';
import { createNearCache, freezeIfShareable, type NearCache } from './near-cache.js';
import { OwnerPool } from './owner-pool.js';
import { resolveOptions, validateTtl, type ResolvedCoreOptions, type ShardCacheOptions } from './options.js';

export interface SetOptions {
  /** Time to live in ms for this entry; 0 = never expires. Defaults to the cache's `ttlMs`. */
  ttlMs?: number;
}

export interface FetchOptions<T = unknown> {
  /** Called on a miss in both the local cache and Redis; its result is cached (and written behind). */
  loader?: (key: string) => T | undefined | Promise<T | undefined>;
  /** TTL for a value the loader produced; defaults to the cache's `ttlMs`. */
  ttlMs?: number;
}

export interface FlushOptions {
  /**
   * How long to wait before rejecting with ERR_FLUSH_TIMEOUT.
   * @default 30_000
   */
  timeoutMs?: number;
}

export interface RedisStats {
  /** Writes waiting for Redis. */
  pending: number;
  /** Writes Redis acknowledged (a write coalesced into a later one counts when that one is acknowledged). */
  flushed: number;
  /** Re-sends after a failure. */
  retries: number;
  /** Writes dropped after `maxAttempts` refusals by Redis; each was reported by an `error` event. */
  failed: number;
  /** Duration of the last flush batch, in ms. */
  lastFlushMs: number;
}

export interface ShardCacheStats {
  entries: number;
  bytesUsed: number;
  maxBytes: number;
  shards: number;
  hits: number;
  misses: number;
  sets: number;
  deletes: number;
  evictions: number;
  expirations: number;
  /** Present when the cache has Redis behind it. */
  redis?: RedisStats;
}

/** A write this thread queued and its owner may not have applied yet. */
interface QueuedWrite {
  shard: number;
  /** SAB offset of the record in the ring. */
  offset: number;
  /** Ring position just past the record: applied once the ring's tail reaches it. */
  end: number;
}

const ATTACH_TIMEOUT_MS = 10_000;
const ATTACH_RETRY_MS = 200;
const OVERLAY_SWEEP_MIN = 4096;
const DEFAULT_FLUSH_TIMEOUT_MS = 30_000;
/** Queued bytes after which a burst of writes wakes its owner at once rather than at the burst's end. */
const SIGNAL_EARLY_BYTES = 32 * 1024;

/**
 * Events: `error` (a write Redis refused `maxAttempts` times and that was
 * dropped: a ShardCacheError with code ERR_REDIS and the `key`; or a Redis
 * connection error of a client the cache made). Without an `error` listener
 * these are only counted in stats, never thrown.
 */
export class ShardCache extends EventEmitter {
  /** Structured-cloneable: pass it to another thread and `ShardCache.attach` it there. */
  readonly handle: CacheHandle;
  private readonly options: ResolvedCoreOptions;
  private readonly views: ShardView[];
  private readonly producers: RingProducer[];
  private readonly producerId: number;
  private readonly control: Int32Array;
  private readonly controlF64: Float64Array;
  private readonly statsSlot: number;
  private readonly shardCount: number;
  private readonly near: NearCache | undefined;
  private readonly scratch = new Scratch();
  private readonly overlay = new Map<string, QueuedWrite>();
  private overlaySweepAt = OVERLAY_SWEEP_MIN;
  /** Bytes queued per shard since its owner was last signalled (see signalLater). */
  private readonly unsignaledBytes: number[];
  private signalScheduled = false;
  private readonly pool: OwnerPool | undefined;
  private tier: TierAccess | undefined;
  private lockTable: LockTable | undefined;
  private readonly fetches = new Map<string, Promise<unknown>>();
  private closed = false;

  private constructor(handle: CacheHandle, producer: ProducerRings, pool: OwnerPool | undefined) {
    super();
    this.handle = handle;
    this.options = handle.options;
    this.shardCount = handle.shards.length;
    this.views = handle.shards.map((sab) => new ShardView(sab));
    this.producers = producer.rings.map((sab) => new RingProducer(sab));
    this.producerId = producer.producer;
    this.control = new Int32Array(handle.control);
    this.controlF64 = new Float64Array(handle.control);
    this.statsSlot = takeThreadSlot(this.control);
    this.near = createNearCache(handle.options.nearCache, this.views);
    this.unsignaledBytes = new Array<number>(this.shardCount).fill(0);
    this.pool = pool;
  }

  /** Creates a cache and starts one owner thread per shard. */
  static async create(options?: ShardCacheOptions): Promise<ShardCache> {
    const resolved = resolveOptions(options);
    const control = createControl();
    const controlI32 = new Int32Array(control);
    const shards = Array.from({ length: resolved.shards }, () => createShardBuffer(resolved.shardBytes));
    const handle: CacheHandle = {
      kind: 'shardcache',
      version: 1,
      channel: `shardcache:${randomUUID()}`,
      shards,
      control,
      locks: createLockTable(),
      options: resolved,
    };
    const producer = newProducer(controlI32, resolved);
    if (options?.redis === undefined) {
      const pool = new OwnerPool({ shards, channel: handle.channel, control, maxPending: Infinity, batchSize: Infinity }, [producer]);
      await pool.start();
      return new ShardCache(handle, producer, pool);
    }

    const redis = resolveRedisOptions(options.redis);
    const wb = redis.writeBehind;
    const invalidation = redis.invalidation;
    const withRedis: CacheHandle = {
      ...handle,
      redis: { writeBehind: wb !== false, readThrough: redis.readThrough, twemproxy: redis.twemproxy },
    };
    // The flusher's own queues carry CLEAN records, which owners apply even when stalled.
    const flusher = wb === false ? undefined : newProducer(controlI32, resolved);
    const changeLogs = wb === false ? undefined : shards.map(() => createRing(changeLogBytes(wb.maxPending, resolved.shards)));
    const pool = new OwnerPool(
      {
        shards,
        channel: handle.channel,
        control,
        changeLogs,
        maxPending: wb === false ? Infinity : wb.maxPending,
        batchSize: wb === false ? Infinity : wb.batchSize,
      },
      flusher ? [producer, flusher] : [producer],
    );
    try {
      await pool.start();
    } catch (error) {
      if (redis.ownsClient) redis.client.disconnect();
      throw error;
    }
    const cache = new ShardCache(withRedis, producer, pool);
    const wakeOwner = (shard: number) => cache.ringDoorbell(shard);
    let tier: RedisTier | undefined;
    const bus = invalidation
      ? new InvalidationBus(redis.client, redis.keyPrefix, {
        drop: (keys) => {
          tier?.readThrough.invalidate(keys);
          if (!cache.closed) for (const key of keys) cache.enqueue(OP_DROP, key, hashKey(key), undefined, 0, false);
        },
        dropAll: () => {
          tier?.readThrough.invalidateAll();
          if (!cache.closed) for (let shard = 0; shard < cache.shardCount; shard++) cache.enqueueTo(shard, OP_DROP_CLEAN, '', 0, undefined, 0, false);
        },
      })
      : undefined;
    let writeBehind: WriteBehind | undefined;
    if (wb !== false && flusher && changeLogs) {
      writeBehind = new WriteBehind({
        client: redis.client,
        keyPrefix: redis.keyPrefix,
        options: wb,
        views: cache.views,
        changeLogs,
        cleanRings: flusher.rings,
        control,
        onKeyFailed: (key, cause) => cache.report(Object.assign(
          new ShardCacheError('ERR_REDIS', `Redis refused the write of key ${describe(key)} ${wb.maxAttempts} times; it was dropped: ${cause.message}`, { cause }),
          { key },
        )),
        wakeOwner,
        onFlushed: bus ? (keys) => bus.publish(keys) : undefined,
      });
    }
    if (redis.ownsClient) redis.client.on('error', (error: Error) => cache.report(error));
    tier = new RedisTier({
      options: redis,
      writeBehind,
      bus,
      pool,
      channel: handle.channel,
      wakeOwner,
      generationOf: (key) => cache.generationOf(key),
      fillLocal: (key, remote, generation) => cache.fillLocal(key, remote, generation, false),
    });
    cache.tier = tier;
    if (bus) await bus.ready.catch(() => {});
    return cache;
  }

  /** Attaches this thread to a cache created elsewhere in the process. Same data, no copy. */
  static async attach(handle: CacheHandle): Promise<ShardCache> {
    if (handle === null || typeof handle !== 'object' || handle.kind !== 'shardcache' || handle.version !== 1) {
      throw new ShardCacheError('ERR_INVALID_OPTION', `handle must be a ShardCache's .handle (got ${describe(handle)})`);
    }
    const control = new Int32Array(handle.control);
    if (Atomics.load(control, C_CLOSED) !== 0) throw closedError();
    const producer = newProducer(control, handle.options);
    await registerProducer(handle, producer);
    const cache = new ShardCache(handle, producer, undefined);
    if (handle.redis) cache.tier = new RemoteTier(handle.channel, producer.producer);
    return cache;
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
    } catch (error) {
      return Promise.reject(error);
    }
    if (local !== undefined) return Promise.resolve(local as T);
    return this.fetchRemote(key, options);
  }

  private async fetchRemote<T>(key: string, options: FetchOptions<T> | undefined): Promise<T | undefined> {
    this.checkRedisKey(key);
    if (options?.ttlMs !== undefined) validateTtl(options.ttlMs, 'ttlMs');
    let flight = this.fetches.get(key);
    if (flight === undefined) {
      flight = this.fetchMiss(key, options).finally(() => this.fetches.delete(key));
      this.fetches.set(key, flight);
    }
    return flight as Promise<T | undefined>;
  }

  /** `fetch` for many keys: local hits, then one MGET per Redis node for the rest. */
  async fetchMany<T = unknown>(keys: readonly string[], options?: FetchOptions<T>): Promise<(T | undefined)[]> {
    const values = this.getMany(keys) as (T | undefined)[];
    for (const key of keys) this.checkRedisKey(key);
    const missing: number[] = [];
    for (let i = 0; i < values.length; i++) if (values[i] === undefined) missing.push(i);
    if (missing.length === 0) return values;
    if (this.tier && this.handle.redis?.readThrough) {
      const generations = missing.map((i) => this.generationOf(keys[i]!));
      const remote = await this.tier.fetchMany(missing.map((i) => keys[i]!));
      missing.forEach((i, n) => {
        const found = remote[n]!;
        if (found.bytes) values[i] = this.acceptRemote(keys[i]!, found, generations[n]!) as T;
      });
    }
    const loader = options?.loader;
    if (loader) {
      // Redis has been asked already (one MGET): only the loader is left.
      await Promise.all(missing.filter((i) => values[i] === undefined).map(async (i) => {
        const key = keys[i]!;
        let flight = this.fetches.get(key);
        if (flight === undefined) {
          flight = this.load(key, options).finally(() => this.fetches.delete(key));
          this.fetches.set(key, flight);
        }
        values[i] = (await flight) as T | undefined;
      }));
    }
    return values;
  }

  /**
   * Resolves when every write issued (by any thread) before the call is
   * acknowledged by Redis; rejects with ERR_FLUSH_TIMEOUT after `timeoutMs`.
   * Without write-behind it resolves at once.
   */
  async flush(options?: FlushOptions): Promise<void> {
    if (this.closed) throw closedError();
    const timeoutMs = options?.timeoutMs ?? DEFAULT_FLUSH_TIMEOUT_MS;
    validateTtl(timeoutMs, 'timeoutMs');
    await this.settled();
    if (this.tier && this.handle.redis?.writeBehind) await this.tier.flush(timeoutMs);
  }

  private async fetchMiss(key: string, options: FetchOptions | undefined): Promise<unknown> {
    if (this.tier && this.handle.redis?.readThrough) {
      const generation = this.generationOf(key);
      const remote = await this.tier.fetch(key);
      if (this.closed) throw closedError();
      if (remote.bytes) return this.acceptRemote(key, remote, generation);
    }
    return this.load(key, options);
  }

  /** Calls the loader, if any, and stores (and so writes behind) what it returns. */
  private async load(key: string, options: FetchOptions | undefined): Promise<unknown> {
    if (!options?.loader) return undefined;
    const value = await options.loader(key);
    if (value !== undefined && !this.closed) this.set(key, value, options.ttlMs !== undefined ? { ttlMs: options.ttlMs } : undefined);
    return value;
  }

  /** Decodes bytes read from Redis and keeps a local copy (never written back). */
  private acceptRemote(key: string, remote: RemoteValue, generation: number): unknown {
    const value = decodeUntrusted(remote.bytes!, key);
    this.fillLocal(key, remote, generation, true);
    return value;
  }

  /**
   * Stores a value read from Redis locally, unless it may be stale: invalidated
   * while in flight, or (checked by the owner) the key was deleted locally after
   * `generation`, the shard's write generation when the read began.
   */
  private fillLocal(key: string, remote: RemoteValue, generation: number, overlay: boolean): void {
    if (this.closed || !remote.cacheable || !remote.bytes || remote.bytes.length > this.options.maxValueBytes) return;
    this.enqueue(OP_FILL, key, hashKey(key), remote.bytes, remote.ttlMs > 0 ? Date.now() + remote.ttlMs : 0, overlay, generation);
  }

  /** The write generation of `key`'s shard (see fillLocal). */
  private generationOf(key: string): number {
    return Atomics.load(this.views[shardOf(hashKey(key), this.shardCount)]!.i32, H_WRITE_GENERATION);
  }

  // ---- atomic operations and locks ----------------------------------------

  /**
   * An exclusive lock on `key` with a fencing token: across every thread of
   * the process, and with Redis across processes and hosts too.
   */
  async lock(key: string, options?: LockOptions): Promise<Lock> {
    if (this.closed) throw closedError();
    checkKey(key);
    this.checkRedisKey(key);
    return acquireLock(key, this.lockBackend(key), options);
  }

  /**
   * Adds `by` to the number stored at `key` (absent counts as 0) and returns
   * the new value. Atomic for every thread; with Redis, decided in Redis and so
   * atomic across processes, then cached locally.
   */
  async incr(key: string, by = 1): Promise<number> {
    if (this.closed) throw closedError();
    checkKey(key);
    this.checkRedisKey(key);
    if (typeof by !== 'number' || !Number.isFinite(by)) throw new ShardCacheError('ERR_INVALID_OPTION', `incr: by must be a finite number (got ${describe(by)})`);
    const tier = this.tier;
    if (tier) {
      // A local write of the key still on its way to Redis would land after
      // the increment and undo it: let it land first.
      if (this.mayBePending(key)) await this.flush();
      const value = await tier.incr(key, by);
      if (!this.closed) this.enqueue(OP_PUT, key, hashKey(key), encode(value), 0, true);
      return value;
    }
    return this.withLocalLock(key, async () => {
      const current = this.get(key);
      if (current !== undefined && typeof current !== 'number') {
        throw new ShardCacheError('ERR_NOT_A_NUMBER', `incr: the value of ${describe(key)} is not a number`);
      }
      const value = (current ?? 0) + by;
      this.set(key, value);
      return value;
    });
  }

  /**
   * Atomic read-modify-write: `fn` gets the current value (or undefined) and
   * returns the new one, or undefined to delete. Under `lock(key)`: within the
   * process without Redis, across processes with it (reading Redis's value).
   */
  async update<T = unknown>(key: string, fn: (current: T | undefined) => T | undefined | Promise<T | undefined>, options?: LockOptions): Promise<T | undefined> {
    if (this.closed) throw closedError();
    checkKey(key);
    this.checkRedisKey(key);
    if (typeof fn !== 'function') throw new ShardCacheError('ERR_INVALID_OPTION', 'update: fn must be a function');
    const tier = this.tier;
    if (!tier) {
      return this.withLocalLock(key, async () => {
        const next = await fn(this.get(key) as T | undefined);
        if (next === undefined) this.delete(key);
        else this.set(key, next);
        return next;
      }, options);
    }
    const lock = await this.lock(key, options);
    try {
      if (this.mayBePending(key)) await this.flush();
      const remote = await tier.read(key);
      const current = remote.bytes ? decodeUntrusted(remote.bytes, key) as T : undefined;
      const next = await fn(current);
      if (next === undefined) this.delete(key);
      else this.set(key, next);
      // The next holder, in any process, reads Redis: it must find this value there.
      await this.flush();
      return next;
    } finally {
      await lock.release();
    }
  }

  private async withLocalLock<R>(key: string, body: () => Promise<R>, options: LockOptions = {}): Promise<R> {
    const lock = await acquireLock(key, this.localLockBackend(key), options);
    try {
      const result = await body();
      // Visible to every thread before the next holder reads.
      await this.settled();
      return result;
    } finally {
      await lock.release();
    }
  }

  private lockBackend(key: string): LockBackend<unknown> {
    const tier = this.tier;
    if (!tier) return this.localLockBackend(key) as LockBackend<unknown>;
    return {
      acquire: pollingAcquire(
        async (ttlMs) => {
          const got = await tier.lockAcquire(key, ttlMs);
          return got ? { holder: got.token, fence: got.fence } : null;
        },
        // Redis has no wait-for-key; poll with a growing, jittered pause.
        (attempt, maxMs) => delay(Math.min(maxMs, Math.min(50, 2 << Math.min(attempt, 5)) * (0.5 + Math.random()))),
      ),
      release: (token) => tier.lockRelease(key, token as string),
      extend: (token, ttlMs) => tier.lockExtend(key, token as string, ttlMs),
    };
  }

  private localLockBackend(key: string): LockBackend<number> {
    const table = (this.lockTable ??= new LockTable(this.handle.locks));
    const slot = table.slotOf(hashKey(key));
    return {
      acquire: async (ttlMs, waitMs, signal) => {
        const got = await table.acquire(slot, ttlMs, waitMs, signal);
        return got ? { holder: got.ticket, fence: got.fence } : null;
      },
      release: async (ticket) => table.release(slot, ticket),
      extend: async (ticket, ttlMs) => table.extend(slot, ticket, ttlMs),
    };
  }

  /** Whether a local write of `key` may not have reached Redis yet. */
  private mayBePending(key: string): boolean {
    if (this.overlay.has(key)) return true;
    const hash = hashKey(key);
    const view = this.views[shardOf(hash, this.shardCount)]!;
    return view.read(key, hash, Date.now(), this.scratch) !== NOT_FOUND && (view.foundFlags & FLAG_DIRTY) !== 0;
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

  // ---- reads -------------------------------------------------------------

  /** The value stored for `key`, or undefined. Synchronous; never waits for another thread. */
  get(key: string): unknown {
    if (this.closed) throw closedError();
    checkKey(key);
    if (this.overlay.size !== 0) {
      const queued = this.overlay.get(key);
      if (queued !== undefined && !this.applied(key, queued)) {
        const value = this.readQueued(queued);
        this.controlF64[this.statsSlot + (value === undefined ? T_MISSES : T_HITS)]!++;
        return value;
      }
    }
    const near = this.near;
    if (near !== undefined) {
      const value = near.get(key);
      if (value !== undefined) {
        this.controlF64[this.statsSlot + T_HITS]!++;
        return value;
      }
    }
    const hash = hashKey(key);
    const shard = shardOf(hash, this.shardCount);
    const view = this.views[shard]!;
    const length = view.read(key, hash, Date.now(), this.scratch);
    if (length === NOT_FOUND) {
      this.controlF64[this.statsSlot + T_MISSES]!++;
      return undefined;
    }
    const slot = view.foundSlot;
    view.touch(slot);
    const value = decodeRange(this.scratch.buffer, 0, length);
    if (near !== undefined && freezeIfShareable(value)) {
      near.set(key, value, shard, view);
    }
    this.controlF64[this.statsSlot + T_HITS]!++;
    return value;
  }

  /** Whether a live (unexpired) entry exists for `key`. */
  has(key: string): boolean {
    if (this.closed) throw closedError();
    checkKey(key);
    if (this.overlay.size !== 0) {
      const queued = this.overlay.get(key);
      if (queued !== undefined && !this.applied(key, queued)) return this.queuedIsLive(queued);
    }
    const hash = hashKey(key);
    return this.views[shardOf(hash, this.shardCount)]!.has(key, hash, Date.now());
  }

  getMany(keys: readonly string[]): unknown[] {
    if (this.closed) throw closedError();
    if (!Array.isArray(keys)) throw new ShardCacheError('ERR_INVALID_KEY', `keys must be an array of strings (got ${describe(keys)})`);
    const out = new Array<unknown>(keys.length);
    for (let i = 0; i < keys.length; i++) out[i] = this.get(keys[i]!);
    return out;
  }

  /** Live entries across all shards (expired entries count until the owner removes them). */
  get size(): number {
    if (this.closed) throw closedError();
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
    if (this.closed) throw closedError();
    checkKey(key);
    this.checkRedisKey(key);
    let ttl = this.options.ttlMs;
    if (options !== undefined) {
      if (options.ttlMs !== undefined) {
        validateTtl(options.ttlMs, 'ttlMs');
        ttl = options.ttlMs;
      }
    }
    if (value === undefined) {
      this.delete(key);
      return this;
    }
    this.enqueue(OP_SET, key, hashKey(key), this.encodeValue(key, value), ttl > 0 ? Date.now() + ttl : 0);
    return this;
  }

  setMany(entries: Iterable<readonly [string, unknown]>, options?: SetOptions): this {
    if (this.closed) throw closedError();
    if (entries === null || typeof (entries as Iterable<unknown>)[Symbol.iterator] !== 'function') {
      throw new ShardCacheError('ERR_INVALID_KEY', `entries must be an iterable of [key, value] pairs (got ${describe(entries)})`);
    }
    // Validate and encode everything first, so a bad entry rejects the whole
    // call before anything is queued.
    const list = [...entries];
    for (const entry of list) {
      if (!Array.isArray(entry)) throw new ShardCacheError('ERR_INVALID_KEY', `each entry must be a [key, value] pair (got ${describe(entry)})`);
      checkKey(entry[0]);
      this.checkRedisKey(entry[0]);
    }
    if (options?.ttlMs !== undefined) validateTtl(options.ttlMs, 'ttlMs');
    const encoded = list.map(([key, value]) => {
      if (value === undefined) return undefined;
      return Buffer.from(this.encodeValue(key, value)); // pack() reuses its buffer: copy before the next encode
    });
    const ttl = options?.ttlMs ?? this.options.ttlMs;
    const expires = ttl > 0 ? Date.now() + ttl : 0;
    for (let i = 0; i < list.length; i++) {
      const key = list[i]![0];
      const bytes = encoded[i];
      if (bytes === undefined) this.delete(key);
      else this.enqueue(OP_SET, key, hashKey(key), bytes, expires);
    }
    return this;
  }

  /** Encodes a value for `key`, refusing one larger than maxValueBytes. A view on msgpackr's buffer: see encode. */
  private encodeValue(key: string, value: unknown): Uint8Array {
    const bytes = encode(value);
    if (bytes.length > this.options.maxValueBytes) {
      throw new ShardCacheError('ERR_VALUE_TOO_LARGE', `value for ${describe(key)} encodes to ${bytes.length} bytes; options.maxValueBytes is ${this.options.maxValueBytes}`);
    }
    return bytes;
  }

  /** Deletes `key`. Returns whether it was there (as this thread sees it). */
  delete(key: string): boolean {
    if (this.closed) throw closedError();
    const existed = this.has(key);
    this.checkRedisKey(key);
    this.enqueue(OP_DELETE, key, hashKey(key), undefined, 0);
    return existed;
  }

  /** Removes every entry. Returns once every owner has applied it. */
  clear(): void {
    if (this.closed) throw closedError();
    if (this.handle.redis?.writeBehind && this.handle.redis.twemproxy) {
      throw new ShardCacheError('ERR_NOT_SUPPORTED', 'clear() cannot reach Redis through twemproxy (it does not proxy SCAN); delete keys one by one, or set redis.writeBehind to false');
    }
    for (let shard = 0; shard < this.shardCount; shard++) this.enqueueTo(shard, OP_CLEAR, '', 0, undefined, 0, false);
    this.overlay.clear();
    this.near?.clear();
    this.settledSync();
  }

  /** Resolves when every write this thread queued before the call is visible to all threads. */
  async settled(): Promise<void> {
    if (this.closed) throw closedError();
    await this.waitApplied(this.producers.map((p) => p.head));
    this.sweepOverlay();
  }

  stats(): ShardCacheStats {
    if (this.closed) throw closedError();
    let entries = 0, bytesUsed = 0, sets = 0, deletes = 0, evictions = 0, expirations = 0;
    for (const view of this.views) {
      entries += Atomics.load(view.i32, H_ENTRIES);
      bytesUsed += Atomics.load(view.i32, H_ARENA_USED) + view.slots * SLOT_WORDS * 4;
      sets += view.f64[F_SETS]!;
      deletes += view.f64[F_DELETES]!;
      evictions += view.f64[F_EVICTIONS]!;
      expirations += view.f64[F_EXPIRATIONS]!;
    }
    return {
      entries,
      bytesUsed,
      maxBytes: this.options.maxBytes,
      shards: this.shardCount,
      hits: sumThreadCounter(this.control, this.controlF64, T_HITS),
      misses: sumThreadCounter(this.control, this.controlF64, T_MISSES),
      sets,
      deletes,
      evictions,
      expirations,
      ...(this.handle.redis?.writeBehind ? { redis: this.redisStats() } : {}),
    };
  }

  private redisStats(): RedisStats {
    const f64 = this.controlF64;
    return {
      pending: Atomics.load(this.control, C_REDIS_PENDING),
      flushed: f64[F_REDIS_FLUSHED]!,
      retries: f64[F_REDIS_RETRIES]!,
      failed: f64[F_REDIS_FAILED]!,
      lastFlushMs: f64[F_REDIS_LAST_FLUSH_MS]!,
    };
  }

  /**
   * On the creating thread: applies queued writes, stops the owners and frees
   * the cache. On an attached thread: detaches this thread. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    // After the creating thread closed the cache there is nothing to wait for.
    if (Atomics.load(this.control, C_CLOSED) === 0) await this.waitApplied(this.producers.map((p) => p.head));
    this.closed = true;
    // Callers of this thread still waiting for a lock give up; this thread's
    // places in the lock queues are handed on (lock-table.ts).
    this.lockTable?.close(closedError());
    this.overlay.clear();
    this.near?.clear();
    if (this.pool) {
      let flushError: unknown;
      if (this.tier) {
        try {
          await this.tier.flush(DEFAULT_FLUSH_TIMEOUT_MS);
        } catch (error) {
          flushError = error;
        }
      }
      Atomics.store(this.control, C_CLOSED, 1);
      await this.pool.stop();
      await this.tier?.close();
      if (flushError) throw flushError;
    } else {
      await this.tier?.close();
      const channel = new BroadcastChannel(this.handle.channel);
      channel.postMessage({ type: 'unregister', producer: this.producerId } satisfies ChannelMessage);
      channel.close();
    }
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

  // ---- internals ---------------------------------------------------------

  private enqueue(op: number, key: string, hash: number, bytes: Uint8Array | undefined, expires: number, overlay = true, spare = 0): void {
    this.enqueueTo(shardOf(hash, this.shardCount), op, key, hash, bytes, expires, overlay, spare);
  }

  /** Queues a write; with `overlay`, this thread sees it at once (read-your-writes). */
  private enqueueTo(shard: number, op: number, key: string, hash: number, bytes: Uint8Array | undefined, expires: number, overlay = true, spare = 0): void {
    // An attached thread learns here that the creating thread closed the cache:
    // no owner would ever apply this write.
    if (Atomics.load(this.control, C_CLOSED) !== 0) throw closedError();
    const producer = this.producers[shard]!;
    const valueLength = bytes === undefined ? 0 : bytes.length;
    const size = recordBytes(key.length, valueLength);
    let offset = producer.tryReserve(size);
    if (offset < 0) offset = this.waitForRoom(shard, size);
    producer.writeHeader(offset, size, op, hash, key.length, valueLength, expires);
    producer.writeKey(offset, key);
    if (spare !== 0) producer.writeSpare(offset, spare);
    if (bytes !== undefined) producer.u8.set(bytes, offset + RECORD_HEADER_BYTES + key.length * 2);
    const end = producer.publish();
    if (overlay && op !== OP_CLEAR) {
      const queued = this.overlay.get(key);
      if (queued !== undefined) {
        queued.shard = shard;
        queued.offset = offset;
        queued.end = end;
      } else {
        this.overlay.set(key, { shard, offset, end });
        if (this.overlay.size >= this.overlaySweepAt) this.sweepOverlay();
      }
    }
    this.signalLater(shard, size);
  }

  /**
   * Wakes the shard's owner for this thread's new writes, once per burst:
   * waking a sleeping thread costs a system call here and ~60 µs there, so a
   * burst of writes (a loop of sets) signals once, in a microtask after it,
   * unless it has queued more than SIGNAL_EARLY_BYTES, which signals at once
   * so the owner starts before the queue fills.
   */
  private signalLater(shard: number, bytes: number): void {
    const unsignaled = (this.unsignaledBytes[shard]! += bytes);
    if (unsignaled > SIGNAL_EARLY_BYTES) {
      this.unsignaledBytes[shard] = 0;
      this.ringDoorbell(shard);
    } else if (!this.signalScheduled) {
      this.signalScheduled = true;
      queueMicrotask(this.signalBurst);
    }
  }

  private readonly signalBurst = (): void => {
    this.signalScheduled = false;
    for (let shard = 0; shard < this.shardCount; shard++) {
      if (this.unsignaledBytes[shard] !== 0) {
        this.unsignaledBytes[shard] = 0;
        this.ringDoorbell(shard);
      }
    }
  };

  /** Wakes the owner if it sleeps. Only the producer that flips SLEEPING pays for the notify. */
  private ringDoorbell(shard: number): void {
    const i32 = this.views[shard]!.i32;
    if (Atomics.load(i32, H_SLEEPING) === 1 && Atomics.compareExchange(i32, H_SLEEPING, 1, 0) === 1) {
      Atomics.add(i32, H_DOORBELL, 1);
      Atomics.notify(i32, H_DOORBELL);
    }
  }

  private waitForRoom(shard: number, size: number): number {
    const producer = this.producers[shard]!;
    const deadline = Date.now() + this.options.backpressureTimeoutMs;
    for (;;) {
      if (Atomics.load(this.control, C_CLOSED) !== 0) throw closedError();
      const i32 = this.views[shard]!.i32;
      Atomics.add(i32, H_DOORBELL, 1);
      Atomics.notify(i32, H_DOORBELL);
      // On the creating thread, the Redis flush runs on this thread's event loop:
      // waiting here for an owner stalled on pending Redis writes cannot help.
      if (this.pool && this.handle.redis?.writeBehind && Atomics.load(i32, H_STALLED) !== 0) {
        throw new ShardCacheError(
          'ERR_BACKPRESSURE',
          `options.redis.writeBehind.maxPending writes are waiting for Redis; on the thread that created the cache, writes cannot wait for them synchronously (the flush runs on this thread): await cache.flush() and retry`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ShardCacheError(
          'ERR_BACKPRESSURE',
          `shard ${shard}'s write queue stayed full for options.backpressureTimeoutMs (${this.options.backpressureTimeoutMs} ms): its owner (or Redis behind it) is behind`,
        );
      }
      producer.waitForRoom(Math.min(left, 50));
      const offset = producer.tryReserve(size);
      if (offset >= 0) return offset;
    }
  }

  /** Whether the queued write was applied; if so, forgets it. */
  private applied(key: string, queued: QueuedWrite): boolean {
    if (!this.producers[queued.shard]!.consumedThrough(queued.end)) return false;
    this.overlay.delete(key);
    return true;
  }

  private readQueued(queued: QueuedWrite): unknown {
    const ring = this.producers[queued.shard]!;
    const at = queued.offset;
    const op = ring.i32[(at + 4) >> 2];
    if (op !== OP_SET && op !== OP_FILL && op !== OP_PUT) return undefined;
    const expires = ring.f64[(at + 24) >> 3]!;
    if (expires !== 0 && expires <= Date.now()) return undefined;
    const start = at + RECORD_HEADER_BYTES + ring.i32[(at + 12) >> 2]! * 2;
    return decodeRange(ring.u8, start, start + ring.i32[(at + 16) >> 2]!);
  }

  private queuedIsLive(queued: QueuedWrite): boolean {
    const ring = this.producers[queued.shard]!;
    const op = ring.i32[(queued.offset + 4) >> 2];
    if (op !== OP_SET && op !== OP_FILL && op !== OP_PUT) return false;
    const expires = ring.f64[(queued.offset + 24) >> 3]!;
    return expires === 0 || expires > Date.now();
  }

  private sweepOverlay(): void {
    for (const [key, queued] of this.overlay) this.applied(key, queued);
    this.overlaySweepAt = Math.max(OVERLAY_SWEEP_MIN, this.overlay.size * 2);
  }

  private async waitApplied(targets: number[]): Promise<void> {
    for (let shard = 0; shard < targets.length; shard++) {
      const ring = this.producers[shard]!;
      const target = targets[shard]!;
      while (!ring.consumedThrough(target)) {
        if (Atomics.load(this.control, C_CLOSED) !== 0) throw closedError();
        const tail = Atomics.load(ring.i32, R_TAIL);
        if (((tail - target) | 0) >= 0) break;
        this.ringDoorbell(shard);
        Atomics.add(ring.i32, R_WAITERS, 1);
        // The timeout is a safety net; the owner notifies R_TAIL waiters after each batch.
        const result = Atomics.waitAsync(ring.i32, R_TAIL, tail, 20);
        const keepAlive = setTimeout(() => {}, 25);
        try {
          if (result.async) await result.value;
        } finally {
          clearTimeout(keepAlive);
          Atomics.sub(ring.i32, R_WAITERS, 1);
        }
      }
    }
  }

  /** Blocks this thread until this thread's queued writes are applied (used by clear()). */
  private settledSync(): void {
    const deadline = Date.now() + this.options.backpressureTimeoutMs;
    for (let shard = 0; shard < this.shardCount; shard++) {
      const ring = this.producers[shard]!;
      const target = ring.head;
      while (!ring.consumedThrough(target)) {
        if (Date.now() > deadline) {
          throw new ShardCacheError('ERR_BACKPRESSURE', `clear() waited options.backpressureTimeoutMs (${this.options.backpressureTimeoutMs} ms) for shard ${shard}'s owner`);
        }
        this.ringDoorbell(shard);
        ring.waitForRoom(5);
      }
    }
  }
}

/** Change-log ring size: room for each shard's share of maxPending short keys, within bounds. */
function changeLogBytes(maxPending: number, shards: number): number {
  const wanted = Math.min(64 * 1024 * 1024, Math.max(1024 * 1024, Math.ceil(maxPending / shards) * 64));
  let bytes = 1024 * 1024;
  while (bytes < wanted) bytes *= 2;
  return bytes;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string') {
    throw new ShardCacheError('ERR_INVALID_KEY', `keys must be strings (got ${describe(key)})`);
  }
  if (key.length > MAX_KEY_LENGTH) {
    throw new ShardCacheError('ERR_INVALID_KEY', `keys may be at most ${MAX_KEY_LENGTH} UTF-16 code units long (got ${key.length})`);
  }
}

function newProducer(control: Int32Array, options: ResolvedCoreOptions): ProducerRings {
  const producer = Atomics.add(control, C_NEXT_PRODUCER, 1);
  const rings = Array.from({ length: options.shards }, () => createRing(options.ringBytes));
  return { producer, rings };
}

/** Registers a producer's rings with every owner and waits for each to acknowledge. */
async function registerProducer(handle: CacheHandle, producer: ProducerRings): Promise<void> {
  const channel = new BroadcastChannel(handle.channel);
  const acknowledged = new Set<number>();
  try {
    await new Promise<void>((resolve, reject) => {
      const post = () => channel.postMessage({ type: 'register', producer: producer.producer, rings: producer.rings } satisfies ChannelMessage);
      // Re-post until every owner answered: an owner being replaced right now
      // may have missed the first message.
      const retry = setInterval(post, ATTACH_RETRY_MS);
      const timeout = setTimeout(() => {
        clearInterval(retry);
        reject(new ShardCacheError('ERR_OWNER_FAILED', `attach: ${handle.shards.length - acknowledged.size} shard owner(s) did not answer within ${ATTACH_TIMEOUT_MS} ms`));
      }, ATTACH_TIMEOUT_MS);
      channel.onmessage = (event: unknown) => {
        const message = (event as { data: ChannelMessage }).data;
        if (message.type !== 'registered' || message.producer !== producer.producer) return;
        acknowledged.add(message.shard);
        if (acknowledged.size === handle.shards.length) {
          clearInterval(retry);
          clearTimeout(timeout);
          resolve();
        }
      };
      post();
    });
  } finally {
    channel.close();
  }
}
