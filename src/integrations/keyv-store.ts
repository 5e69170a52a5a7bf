/**
 * `shardcache/keyv`: a Keyv storage adapter over a ShardCache, so Keyv and
 * everything built on it (cache-manager 7) share one cache between the
 * threads of a process, with Redis behind it if the cache has it. It uses
 * only the package's public API.
 *
 * What Keyv hands a store (keyv 5, src/index.ts):
 * - keys already prefixed `${namespace}:` (namespace 'keyv' unless set);
 * - values already serialized: by default a JSON string of `{ value, expires }`
 *   (or that object itself when Keyv's `serialize` is undefined, as
 *   cache-manager's default Keyv has it); Keyv checks `expires` itself on
 *   every read, and the store gets the same TTL in ms (undefined: none);
 * - `clear()` and `iterator(namespace)` are for one namespace only.
 *
 * Namespaces. ShardCache has no public way to list its keys, so a store
 * cannot find "every key with this prefix" in shared memory or in Redis.
 * Instead the stores of one thread note, per cache, the keys they wrote
 * (KeyRegistry below); `clear()` deletes, and `iterator()` reads, the noted
 * keys with the namespace's prefix. So both see the keys written through a
 * KeyvShardCache on this thread and still in the cache, not keys written by
 * other threads, other processes, or the cache's own API. A public key
 * iteration on ShardCache (over the shards, and SCAN with Redis) would
 * replace the registry and lift that limit.
 *
 * Consistency is the cache's: a write is visible to the writing thread at
 * once, to other threads once its owner applied it (await `cache.settled()`
 * to be sure), and with Redis written behind. Waiting for `settled()` in
 * every `set` made a Keyv set about ten times slower here, so it does not.
 * With write-behind, a delete (and clear) resolves only once Redis
 * acknowledged it (`flush()`): `get` reads Redis on a local miss, and until
 * the DEL reaches Redis it would read the old value back there (and keep it).
 */
import { EventEmitter } from 'node:events';
import type { KeyvStoreAdapter, StoredData } from 'keyv';
import { ShardCache, ShardCacheError, type ShardCacheOptions } from '../index.js';

/** Wrap an existing cache (created or attached, in any thread) instead of building one. */
export interface KeyvShardCacheWrapOptions {
  /** The cache to use. `disconnect()` leaves it open: its owner closes it. */
  cache: ShardCache;
}

/** ShardCache options (the store builds and owns its cache), or `{ cache }` (the store wraps yours). */
export type KeyvShardCacheOptions = ShardCacheOptions | KeyvShardCacheWrapOptions;

/**
 * Keyv 5 attaches a store's `iterator` only when `store.opts.dialect` names
 * an adapter it knows to iterate ('sqlite', 'postgres', 'mysql', 'mongo',
 * 'redis', 'valkey', 'etcd'; anything else makes it read `opts.url`). This
 * store follows the Redis adapter's contract (keys prefixed by namespace,
 * `iterator(namespace)` yields `[key, stored value]`), so it says 'redis'.
 * Keyv uses the dialect for nothing else; Keyv 6 looks for `iterator` itself.
 */
const ITERABLE_DIALECT = 'redis';

/** Keys read per fetchMany while iterating: one MGET per batch with Redis. */
const ITERATOR_BATCH = 100;

/** The registry is swept of keys no longer in the cache when it outgrows twice its size after the last sweep, and never below this. */
const SWEEP_MIN = 10_000;

/**
 * What the KeyvShardCache stores of one thread share about one cache: the
 * keys they wrote (for clear and iterator: see the top of the file), and
 * the stores to tell about the cache's background errors (one listener on
 * the cache, whatever the number of stores).
 */
class KeyRegistry {
  /**
   * The noted keys, true while written and not deleted through a store. A
   * delete marks its key false rather than removing it: V8's Map and Set
   * leave a removed entry's hole in its bucket's chain until they rebuild, so
   * a key deleted and written again and again (a session key, say) among
   * 100k noted keys made each write walk thousands of holes (18–71 µs a
   * delete and write, measured). Sweeps remove the false ones in bulk.
   */
  private readonly keys = new Map<string, boolean>();
  private sweepAt = SWEEP_MIN;
  /** Held weakly: a store dropped without disconnect() must not be kept alive by its cache. */
  private readonly stores = new Set<WeakRef<KeyvShardCache>>();
  private pruneAt = 16;

  constructor(private readonly cache: ShardCache) {
    cache.on('error', (error: Error) => {
      for (const ref of this.stores) {
        const store = ref.deref();
        if (store === undefined) this.stores.delete(ref);
        else store.report(error);
      }
    });
  }

  static of(cache: ShardCache): KeyRegistry {
    let registry = registries.get(cache);
    if (registry === undefined) {
      registry = new KeyRegistry(cache);
      registries.set(cache, registry);
    }
    return registry;
  }

  addStore(store: KeyvShardCache): void {
    this.stores.add(new WeakRef(store));
    if (this.stores.size < this.pruneAt) return;
    for (const ref of this.stores) if (ref.deref() === undefined) this.stores.delete(ref);
    this.pruneAt = Math.max(16, this.stores.size * 2);
  }

  removeStore(store: KeyvShardCache): void {
    for (const ref of this.stores) if (ref.deref() === store) this.stores.delete(ref);
  }

  noteSet(key: string): void {
    this.keys.set(key, true);
    // Keys evicted, expired or deleted elsewhere leave no trace here: a sweep
    // now and then bounds the registry by the live keys (amortized O(1)).
    if (this.keys.size > this.sweepAt) {
      for (const [noted, written] of this.keys) if (!written || !this.cache.has(noted)) this.keys.delete(noted);
      this.sweepAt = Math.max(SWEEP_MIN, this.keys.size * 2);
    }
  }

  forget(key: string): void {
    if (this.keys.get(key) === true) this.keys.set(key, false);
  }

  /** The noted keys of `namespace` (all of them for none), in the order they were first written. */
  keysOf(namespace: string | undefined): string[] {
    const prefix = namespace === undefined ? '' : `${namespace}:`;
    const out: string[] = [];
    for (const [key, written] of this.keys) if (written && key.startsWith(prefix)) out.push(key);
    return out;
  }
}

/** Per thread (module state is per thread): one registry per cache instance. */
const registries = new WeakMap<ShardCache, KeyRegistry>();

/**
 * A Keyv store: `new Keyv({ store: new KeyvShardCache(options) })`.
 *
 * Events: `error`, for the cache's background errors (a write Redis dropped,
 * a connection error of a client the cache made: see ShardCache) and for a
 * failure to build the cache; Keyv re-emits them. Calls that fail reject
 * (Keyv turns a failed `set` or `delete` into `false` and an `error` event).
 */
export class KeyvShardCache extends EventEmitter implements KeyvStoreAdapter {
  /** Read by Keyv (see ITERABLE_DIALECT); Keyv's test suite also writes to it. */
  opts: { dialect: string; [option: string]: unknown } = { dialect: ITERABLE_DIALECT };
  /** Set by Keyv: the prefix of the keys this store's `clear()` removes. */
  namespace?: string | undefined;

  /** Whether this store built the cache (and so closes it on disconnect). */
  private readonly owns: boolean;
  /** The options to build the cache with (when it owns it). */
  private readonly cacheOptions: ShardCacheOptions | undefined;
  /** The cache once usable: at once when wrapped, after the first call when owned. */
  private current: ShardCache | undefined;
  /** The owned cache being built, resolved even if the store was disconnected meanwhile (disconnect closes it). */
  private building: Promise<ShardCache> | undefined;
  private disconnected = false;

  constructor(options?: KeyvShardCacheOptions) {
    super();
    if (options !== undefined && options !== null && typeof options === 'object' && 'cache' in options) {
      if (!(options.cache instanceof ShardCache)) {
        throw new ShardCacheError('ERR_INVALID_OPTION', 'options.cache must be a ShardCache (created or attached); pass ShardCache options instead to have the store build one');
      }
      this.owns = false;
      this.cacheOptions = undefined;
      this.use(options.cache);
    } else {
      // Keyv constructs its store synchronously and ShardCache.create is
      // asynchronous: the cache is built on the first call (getCache()).
      this.owns = true;
      this.cacheOptions = options;
    }
  }

  /**
   * The cache this store uses, built first if the store builds its own (for
   * `registerMetrics`, or to share it with other threads by its handle).
   * Rejects with ERR_CLOSED after `disconnect()`, or with what building it failed with.
   */
  getCache(): Promise<ShardCache> {
    if (this.current !== undefined) return Promise.resolve(this.current);
    if (this.disconnected) return Promise.reject(disconnectedError());
    this.building ??= ShardCache.create(this.cacheOptions).then(
      (cache) => {
        if (!this.disconnected) this.use(cache);
        return cache;
      },
      (error: unknown) => {
        // The first call rejects with it too; every later call gets the same
        // rejection (the options will not get better): make a new store.
        this.report(error instanceof Error ? error : new Error(String(error)));
        throw error;
      },
    );
    return this.building.then((cache) => {
      if (this.disconnected) throw disconnectedError();
      return cache;
    });
  }

  async get<Value>(key: string): Promise<StoredData<Value> | undefined> {
    const cache = this.current ?? (await this.getCache());
    return (await cache.fetch(key)) as StoredData<Value> | undefined;
  }

  async getMany<Value>(keys: string[]): Promise<Array<StoredData<Value | undefined>>> {
    const cache = this.current ?? (await this.getCache());
    return (await cache.fetchMany(keys)) as Array<StoredData<Value | undefined>>;
  }

  /** `ttl` in ms; undefined (Keyv's "no TTL") stores the entry without expiry, whatever the cache's default `ttlMs`. */
  async set(key: string, value: unknown, ttl?: number): Promise<boolean> {
    const cache = this.current ?? (await this.getCache());
    cache.set(key, value, { ttlMs: ttl ?? 0 });
    KeyRegistry.of(cache).noteSet(key);
    return true;
  }

  /** Resolves to whether the key was in the cache, as this thread sees it (a key only in Redis counts as absent). */
  async delete(key: string): Promise<boolean> {
    const cache = this.current ?? (await this.getCache());
    const existed = cache.delete(key);
    KeyRegistry.of(cache).forget(key);
    await this.confirmDeletes(cache);
    return existed;
  }

  /** Resolves to true if every key was there (what Keyv answers for a store without deleteMany). */
  async deleteMany(keys: string[]): Promise<boolean> {
    const cache = this.current ?? (await this.getCache());
    const registry = KeyRegistry.of(cache);
    let all = true;
    for (const key of keys) {
      if (!cache.delete(key)) all = false;
      registry.forget(key);
    }
    await this.confirmDeletes(cache);
    return all;
  }

  /**
   * Deletes this namespace's keys (every namespace's, without one) that the
   * KeyvShardCache stores of this thread wrote: see the top of the file.
   * Other entries of the cache stay; `cache.clear()` removes everything.
   */
  async clear(): Promise<void> {
    const cache = this.current ?? (await this.getCache());
    const registry = KeyRegistry.of(cache);
    for (const key of registry.keysOf(this.namespace)) {
      cache.delete(key);
      registry.forget(key);
    }
    await this.confirmDeletes(cache);
  }

  /** Whether the key has a live entry; with Redis, a local miss asks Redis (as `get` does). */
  async has(key: string): Promise<boolean> {
    const cache = this.current ?? (await this.getCache());
    if (cache.has(key)) return true;
    return (await cache.fetch(key)) !== undefined;
  }

  /**
   * `[key, stored value]` for the keys of `namespace` (all, without one) that
   * this thread's stores wrote and the cache still holds: see the top of the file.
   */
  async *iterator<Value>(namespace?: string): AsyncGenerator<Array<string | Awaited<Value> | undefined>, void> {
    const cache = this.current ?? (await this.getCache());
    const registry = KeyRegistry.of(cache);
    const keys = registry.keysOf(namespace);
    for (let start = 0; start < keys.length; start += ITERATOR_BATCH) {
      const batch = keys.slice(start, start + ITERATOR_BATCH);
      const values = await cache.fetchMany(batch);
      for (let i = 0; i < batch.length; i++) {
        const value = values[i];
        if (value === undefined) registry.forget(batch[i]!);
        else yield [batch[i]!, value as Awaited<Value>];
      }
    }
  }

  /**
   * Closes the cache if this store built it (flushing to Redis first);
   * leaves a wrapped cache open. Later calls reject with ERR_CLOSED. Idempotent.
   */
  async disconnect(): Promise<void> {
    if (this.disconnected) return;
    this.disconnected = true;
    const cache = this.current;
    this.current = undefined;
    if (cache !== undefined) KeyRegistry.of(cache).removeStore(this);
    if (!this.owns) return;
    // A build still under way is closed once done.
    const built = cache ?? (await this.building?.catch(() => undefined));
    await built?.close();
  }

  /**
   * Emits `error` only if someone listens (a background failure must not
   * crash the process). For KeyRegistry.
   * @internal
   */
  report(error: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  private use(cache: ShardCache): void {
    this.current = cache;
    KeyRegistry.of(cache).addStore(this);
  }

  /** With write-behind, waits until Redis has the deletes (see the top of the file). */
  private async confirmDeletes(cache: ShardCache): Promise<void> {
    if (cache.handle.redis?.writeBehind) await cache.flush();
  }
}

function disconnectedError(): ShardCacheError {
  return new ShardCacheError('ERR_CLOSED', 'this KeyvShardCache was disconnected; make a new store');
}
