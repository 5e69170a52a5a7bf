// The one place tests build a cache (and attach more instances to it).
// ShardCache.create and ShardCache.attach are called directly only where they
// are the subject: the documented defaults, option validation, attaching a
// handle (a clone, a closed cache's, a replaced owner's).
import { ShardCache, type CacheHandle, type ShardCacheOptions } from 'shardcache';
import { MiB } from './bytes.js';
import type { Cleanup } from './cleanup.js';

/** What a test cache is unless the test says otherwise: two shards, so keys are routed to two owner threads. */
export const TEST_CACHE_DEFAULTS = { shards: 2, maxBytes: 16 * MiB } as const satisfies ShardCacheOptions;

/** ShardCache.create with TEST_CACHE_DEFAULTS under `options`; closed by `cleanup` when one is given. */
export async function testCache(options: ShardCacheOptions = {}, cleanup?: Cleanup): Promise<ShardCache> {
  const cache = await ShardCache.create({ ...TEST_CACHE_DEFAULTS, ...options });
  cleanup?.add(() => cache.close());
  return cache;
}

/**
 * Another instance attached to the cache of `handle`, on this thread; closed by
 * `cleanup` when one is given. It has no pending writes of its own, so it reads
 * what the owners applied, as another thread would.
 */
export async function testAttach(handle: CacheHandle, cleanup?: Cleanup): Promise<ShardCache> {
  const cache = await ShardCache.attach(handle);
  cleanup?.add(() => cache.close());
  return cache;
}
