/**
 * Wiring: what `ShardCache.create` and `ShardCache.attach` build, as parts the
 * facade holds. Nothing here knows the facade.
 *
 * create (the creating thread): the shards, the control block and the lock
 * table; this thread's write queues; the owners (one worker per shard); and
 * with Redis the tier: change logs for the owners, the write-behind flusher
 * with its own queues for CLEAN records, the invalidation bus, the
 * read-through, all on this thread, which owns the connection.
 *
 * attach (any other thread): this thread's write queues, registered with the
 * owners, and a tier that forwards its Redis calls to the creating thread.
 */
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { ShardCacheError, closedError, describe } from './errors.js';
import { fillStamp, keepLocalCopy } from './fetcher.js';
import { hashKey } from './hash.js';
import { C_CLOSED, createControl } from './memory/control.js';
import { createShardBuffer } from './memory/layout.js';
import { createLockTable } from './memory/lock-table.js';
import { createStructureRegistry } from './memory/structures.js';
import { ShardCodec } from './codec.js';
import { RedisCodec } from './redis/redis-codec.js';
import { ShardView } from './memory/shard-view.js';
import { OP_DROP, OP_DROP_CLEAN, createRing } from './memory/write-queue.js';
import type { CacheHandle } from './messages.js';
import { resolveOptions, type ShardCacheOptions } from './options.js';
import { OwnerPool } from './owner-pool.js';
import { newProducer, registerProducer } from './registration.js';
import { InvalidationBus } from './redis/invalidation-bus.js';
import { resolveRedisOptions } from './redis/redis-options.js';
import { RedisTier, RemoteTier, type TierAccess } from './redis/redis-tier.js';
import { WriteBehind } from './redis/write-behind.js';
import { WritePath } from './write-path.js';

/** What one thread holds of a cache. */
export interface CacheParts {
  handle: CacheHandle;
  producer: number;
  views: ShardView[];
  writes: WritePath;
  /** This thread's codec of the shard format (values in shards and rings). */
  codec: ShardCodec;
  /** The owners' supervisor: on the creating thread only. */
  pool: OwnerPool | undefined;
  tier: TierAccess | undefined;
  /** Emits `error` for background failures the cache reports (a dropped write, a connection error). */
  problems: EventEmitter;
}

export async function createParts(options: ShardCacheOptions | undefined): Promise<CacheParts> {
  const resolved = resolveOptions(options);
  const redis = options?.redis === undefined ? undefined : resolveRedisOptions(options.redis);
  const wb = redis?.writeBehind || undefined;
  const control = createControl();
  const controlI32 = new Int32Array(control);
  const shards = Array.from({ length: resolved.shards }, () => createShardBuffer(resolved.shardBytes, resolved.shardMaxEntries));
  const handle: CacheHandle = {
    kind: 'shardcache',
    version: 1,
    channel: `shardcache:${randomUUID()}`,
    shards,
    control,
    locks: createLockTable(),
    structures: createStructureRegistry(),
    options: resolved,
    ...(redis && {
      redis: {
        writeBehind: wb !== undefined,
        readThrough: redis.readThrough,
        twemproxy: redis.twemproxy,
        maxPending: wb?.maxPending ?? Infinity,
        codec: redis.codecKind,
      },
    }),
  };
  const producer = newProducer(controlI32, resolved);
  // The flusher's own queues carry CLEAN records, which owners apply even when stalled.
  const flusher = wb && newProducer(controlI32, resolved);
  const changeLogs = wb && shards.map(() => createRing(changeLogBytes(wb.maxPending, resolved.shards)));
  const pool = new OwnerPool(
    { shards, channel: handle.channel, control, changeLogs, batchSize: wb?.batchSize ?? Infinity },
    flusher ? [producer, flusher] : [producer],
  );
  try {
    await pool.start();
  } catch (error) {
    if (redis?.ownsClient) redis.client.disconnect();
    throw error;
  }
  const views = shards.map((sab) => new ShardView(sab));
  const writes = threadWrites(handle, producer.rings, views, true);
  const problems = new EventEmitter();
  const codec = new ShardCodec(handle.structures);
  const parts: CacheParts = { handle, producer: producer.producer, views, writes, codec, pool, tier: undefined, problems };
  if (!redis) return parts;

  const redisCodec = new RedisCodec(redis.codec, codec);
  // Writes the tier makes on this thread's queues, never once the cache is closed.
  const open = () => Atomics.load(controlI32, C_CLOSED) === 0;
  let tier: RedisTier | undefined;
  const bus = redis.invalidation
    ? new InvalidationBus(redis.client, redis.keyPrefix, {
      drop: (keys) => {
        tier?.readThrough.invalidate(keys);
        if (open()) for (const key of keys) writes.write(OP_DROP, key, hashKey(key), undefined, 0, undefined);
      },
      dropAll: () => {
        tier?.readThrough.invalidateAll();
        if (open()) for (let shard = 0; shard < views.length; shard++) writes.enqueue(shard, OP_DROP_CLEAN, '', 0, undefined, 0, 0, false);
      },
    })
    : undefined;
  const writeBehind = wb && flusher && changeLogs && new WriteBehind({
    client: redis.client,
    keyPrefix: redis.keyPrefix,
    codec: redisCodec,
    options: wb,
    views,
    changeLogs,
    cleanRings: flusher.rings,
    control,
    onKeyFailed: (key, cause) => problems.emit('error', Object.assign(
      // A ShardCacheError here is the codec refusing the value; anything else came from Redis.
      cause instanceof ShardCacheError
        ? cause
        : new ShardCacheError('ERR_REDIS', `Redis refused the write of key ${describe(key)} ${wb.maxAttempts} times; it was dropped: ${cause.message}`, { cause }),
      { key },
    )),
    wakeOwner: (shard) => writes.wake(shard),
    onFlushed: bus ? (keys) => bus.publish(keys) : undefined,
  });
  if (redis.ownsClient) redis.client.on('error', (error: Error) => problems.emit('error', error));
  tier = new RedisTier({
    options: redis,
    codec: redisCodec,
    writeBehind: writeBehind || undefined,
    bus,
    pool,
    channel: handle.channel,
    writes,
    // A value read from Redis for another thread is kept by this one, ordered
    // after the invalidations this thread applies.
    keepLocal: (key, remote, generation) => {
      if (open()) keepLocalCopy(writes, key, remote, generation, resolved.maxValueBytes, undefined);
    },
    generationOf: (key) => fillStamp(views, key, wb !== undefined),
  });
  parts.tier = tier;
  if (bus) await bus.ready.catch(() => {});
  return parts;
}

export async function attachParts(handle: CacheHandle): Promise<CacheParts> {
  const control = new Int32Array(handle.control);
  if (Atomics.load(control, C_CLOSED) !== 0) throw closedError();
  const producer = newProducer(control, handle.options);
  await registerProducer(handle, producer);
  const views = handle.shards.map((sab) => new ShardView(sab));
  return {
    handle,
    producer: producer.producer,
    views,
    writes: threadWrites(handle, producer.rings, views, false),
    codec: new ShardCodec(handle.structures),
    pool: undefined,
    tier: handle.redis ? new RemoteTier(handle.channel, producer.producer) : undefined,
    problems: new EventEmitter(),
  };
}

function threadWrites(handle: CacheHandle, rings: readonly SharedArrayBuffer[], views: readonly ShardView[], isCreator: boolean): WritePath {
  return new WritePath({
    views,
    rings,
    control: new Int32Array(handle.control),
    options: handle.options,
    logsWrites: handle.redis?.writeBehind === true,
    maxPending: handle.redis?.maxPending ?? Infinity,
    isCreator,
  });
}

/** Change-log ring size: room for each shard's share of maxPending short keys, within bounds. */
function changeLogBytes(maxPending: number, shards: number): number {
  const wanted = Math.min(64 * 1024 * 1024, Math.max(1024 * 1024, Math.ceil(maxPending / shards) * 64));
  let bytes = 1024 * 1024;
  while (bytes < wanted) bytes *= 2;
  return bytes;
}
