export { ShardCache } from './shard-cache.js';
export type { SetOptions, ShardCacheStats } from './shard-cache.js';
export { ShardCacheError } from './errors.js';
export type { ShardCacheErrorCode } from './errors.js';
export type { ShardCacheOptions } from './options.js';
export type { RedisOptions } from './redis/redis-options.js';
export type { CacheHandle } from './messages.js';
export { MAX_KEY_LENGTH } from './memory/layout.js';
