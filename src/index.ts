export { ShardCache } from './shard-cache.js';
export type { FetchOptions, FlushOptions, RedisStats, SetOptions, ShardCacheStats } from './shard-cache.js';
export { ShardCacheError } from './errors.js';
export type { ShardCacheErrorCode } from './errors.js';
export type { ShardCacheOptions } from './options.js';
export type { RedisOptions, WriteBehindOptions } from './redis/redis-options.js';
export type { Lock, LockOptions } from './lock.js';
export type { CacheHandle } from './messages.js';
export { MAX_KEY_LENGTH } from './memory/layout.js';
