/**
 * Options of the Redis tier, their defaults and validation.
 */
import { Cluster, Redis } from 'ioredis';
import { ShardCacheError, invalidOption } from '../errors.js';
import { MAX_TIMER_MS } from '../options.js';
import { codecKind, isCodecOption, type CodecKind, type CodecOption } from './redis-codec.js';

export interface WriteBehindOptions {
  /**
   * Longest a write waits locally before it is sent to Redis.
   * @default 50
   */
  flushIntervalMs?: number;
  /**
   * Keys per flush (one pipeline per Redis node). A flush starts early once
   * this many writes wait.
   * @default 1000
   */
  batchSize?: number;
  /**
   * Writes that may wait for Redis at once, across all threads. At the bound,
   * owners stop applying new writes, write queues fill, and writers wait up to
   * `backpressureTimeoutMs` and then get ERR_BACKPRESSURE: memory stays bounded
   * however long Redis is away.
   * @default 100_000
   */
  maxPending?: number;
  /**
   * Attempts for a key Redis refuses (a reply error such as WRONGTYPE) before
   * the write is dropped, counted in `failed` and reported by an `error` event.
   * Connection failures and timeouts are retried without limit: they are not
   * the key's fault.
   * @default 5
   */
  maxAttempts?: number;
}

export interface RedisOptions {
  /** An ioredis client or Cluster. The cache does not close a client it was given. */
  client?: Redis | Cluster;
  /** Or a URL (`redis://127.0.0.1:6379`): the cache makes the client and closes it on close(). */
  url?: string;
  /**
   * Prefix of every key the cache writes to Redis.
   * @default 'shardcache:'
   */
  keyPrefix?: string;
  /**
   * The bytes a value has in Redis: `'msgpack'` (standard msgpack, readable
   * by any msgpack decoder), `'json'` (UTF-8 JSON text), `'string'` (values
   * are strings, stored as UTF-8), `'buffer'` (values are bytes, stored as
   * they are), or your own `{ encode(value): Uint8Array, decode(bytes) }`.
   * Only Redis sees it: shards keep their own format. See README, "Bytes in Redis".
   * @default 'msgpack'
   */
  codec?: CodecOption;
  /**
   * Write-behind settings, or false to never write to Redis.
   * @default {}
   */
  writeBehind?: false | WriteBehindOptions;
  /**
   * Whether `fetch` reads Redis on a local miss.
   * @default true
   */
  readThrough?: boolean;
  /**
   * The client goes through twemproxy (nutcracker): commands twemproxy cannot
   * proxy (SCAN for `clear()`, pub/sub for invalidation) are refused with
   * ERR_NOT_SUPPORTED instead of failing obscurely.
   * @default false
   */
  twemproxy?: boolean;
  /**
   * The invalidation bus: after this process's writes reach Redis, other
   * processes drop their local copies (and this one drops copies others
   * changed). Needs pub/sub, which twemproxy does not proxy.
   * @default true, false with twemproxy
   */
  invalidation?: boolean;
}

export interface ResolvedRedisOptions {
  invalidation: boolean;
  client: Redis | Cluster;
  ownsClient: boolean;
  keyPrefix: string;
  writeBehind: false | Required<WriteBehindOptions>;
  readThrough: boolean;
  twemproxy: boolean;
  codec: CodecOption;
  codecKind: CodecKind;
}

export const REDIS_DEFAULTS = {
  keyPrefix: 'shardcache:',
  flushIntervalMs: 50,
  batchSize: 1000,
  maxPending: 100_000,
  maxAttempts: 5,
} as const;

export function resolveRedisOptions(options: RedisOptions): ResolvedRedisOptions {
  if (options === null || typeof options !== 'object') throw invalidOption('redis', 'must be an object', options);
  const { client, url } = options;
  if (client !== undefined && url !== undefined) throw invalidOption('redis', 'takes a client or a url, not both', 'both');
  if (client !== undefined && !(client instanceof Redis) && !(client instanceof Cluster)) {
    throw invalidOption('redis.client', 'must be an ioredis Redis or Cluster instance', client);
  }
  if (url !== undefined && typeof url !== 'string') throw invalidOption('redis.url', 'must be a redis:// URL string', url);
  if (client === undefined && url === undefined) throw invalidOption('redis', 'needs a client or a url', options);
  const keyPrefix = options.keyPrefix ?? REDIS_DEFAULTS.keyPrefix;
  if (typeof keyPrefix !== 'string') throw invalidOption('redis.keyPrefix', 'must be a string', keyPrefix);
  const readThrough = options.readThrough ?? true;
  if (typeof readThrough !== 'boolean') throw invalidOption('redis.readThrough', 'must be a boolean', readThrough);
  const twemproxy = options.twemproxy ?? false;
  if (typeof twemproxy !== 'boolean') throw invalidOption('redis.twemproxy', 'must be a boolean', twemproxy);

  const codec = options.codec ?? 'msgpack';
  if (!isCodecOption(codec)) {
    throw invalidOption('redis.codec', "must be 'msgpack', 'json', 'string', 'buffer' or an object with encode(value) and decode(bytes) functions", codec);
  }
  const invalidation = options.invalidation ?? !twemproxy;
  if (typeof invalidation !== 'boolean') throw invalidOption('redis.invalidation', 'must be a boolean', invalidation);
  if (invalidation && twemproxy) {
    throw new ShardCacheError('ERR_NOT_SUPPORTED', 'options.redis.invalidation needs pub/sub, which twemproxy does not proxy; leave it off with twemproxy');
  }
  let writeBehind: ResolvedRedisOptions['writeBehind'] = false;
  if (options.writeBehind !== false) {
    const wb = options.writeBehind ?? {};
    if (wb === null || typeof wb !== 'object') throw invalidOption('redis.writeBehind', 'must be false or an object', wb);
    writeBehind = {
      flushIntervalMs: Math.min(MAX_TIMER_MS, positive(wb.flushIntervalMs ?? REDIS_DEFAULTS.flushIntervalMs, 'redis.writeBehind.flushIntervalMs', 0)),
      batchSize: positive(wb.batchSize ?? REDIS_DEFAULTS.batchSize, 'redis.writeBehind.batchSize', 1, true),
      maxPending: positive(wb.maxPending ?? REDIS_DEFAULTS.maxPending, 'redis.writeBehind.maxPending', 1, true),
      maxAttempts: positive(wb.maxAttempts ?? REDIS_DEFAULTS.maxAttempts, 'redis.writeBehind.maxAttempts', 1, true),
    };
  }
  const made = client ?? new Redis(url!, { lazyConnect: false });
  return { client: made, ownsClient: client === undefined, keyPrefix, writeBehind, readThrough, twemproxy, invalidation, codec, codecKind: codecKind(codec) };
}

function positive(value: unknown, name: string, min: number, integer = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw invalidOption(name, `must be ${integer ? 'an integer' : 'a number'} of at least ${min}`, value);
  }
  return value;
}
