/**
 * The messages between threads, written down as types. Per-operation traffic
 * never uses messages (it goes through shared-memory rings); these are only
 * for start-up, attach/detach and shutdown.
 */
import type { ResolvedCoreOptions } from './options.js';

/** What `cache.handle` holds: plain data and SharedArrayBuffers, structured-cloneable. */
export interface CacheHandle {
  readonly kind: 'shardcache';
  readonly version: 1;
  /** BroadcastChannel name on which threads register their write queues with the owners. */
  readonly channel: string;
  readonly shards: readonly SharedArrayBuffer[];
  readonly control: SharedArrayBuffer;
  /** The process-wide lock table (lock-table.ts). */
  readonly locks: SharedArrayBuffer;
  /** The shared record structures of the values (memory/structures.ts). */
  readonly structures: SharedArrayBuffer;
  readonly options: ResolvedCoreOptions;
  /** What the Redis tier does, if there is one (the connection stays on the creating thread). */
  readonly redis?: {
    readonly writeBehind: boolean;
    readonly readThrough: boolean;
    readonly twemproxy: boolean;
    /** options.redis.writeBehind.maxPending (Infinity without write-behind): every writing thread enforces it. */
    readonly maxPending: number;
    /** The codec's name, or 'custom' (its functions stay on the creating thread, which converts). */
    readonly codec: import('./redis/redis-codec.js').CodecKind;
  };
}

export interface WireError {
  readonly code: import('./errors.js').ShardCacheErrorCode;
  readonly message: string;
}

/** A producer's write queues, one ring per shard. */
export interface ProducerRings {
  readonly producer: number;
  readonly rings: readonly SharedArrayBuffer[];
}

/** On the cache's BroadcastChannel. */
export type ChannelMessage =
  | { type: 'register'; producer: number; rings: readonly SharedArrayBuffer[] }
  | { type: 'registered'; producer: number; shard: number }
  | { type: 'unregister'; producer: number }
  // Attached threads ask the creating thread, which owns the Redis connection.
  | { type: 'call'; id: number; producer: number; method: TierMethod; args: unknown[] }
  | { type: 'result'; id: number; producer: number; value: unknown; error?: WireError | undefined };

export type TierMethod = 'fetch' | 'read' | 'fetchMany' | 'flush' | 'lockAcquire' | 'lockRelease' | 'lockExtend' | 'incr';

/** workerData of a shard owner. */
export interface OwnerData {
  readonly shard: number;
  readonly sab: SharedArrayBuffer;
  readonly channel: string;
  readonly producers: readonly ProducerRings[];
  /** Present when writes must reach Redis: the owner logs changes here. */
  readonly changeLog?: SharedArrayBuffer;
  readonly control: SharedArrayBuffer;
  readonly batchSize: number;
  /** How long an owner that ran out of work polls for more before it sleeps (see owner-pool.ts). */
  readonly spinMs: number;
}

/** From the supervisor to an owner. */
export type ToOwner = { type: 'stop' };
/** From an owner to the supervisor. */
export type FromOwner = { type: 'ready' } | { type: 'stopped' };
