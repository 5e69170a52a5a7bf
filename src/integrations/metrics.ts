/**
 * `shardcache/metrics`: a cache's `stats()` as OpenTelemetry metrics.
 *
 * Every instrument is asynchronous (observable), fed by one batch callback
 * that reads `cache.stats()` once per collection. `stats()` reads shared
 * memory (each counter has one writer: an owner, a reader thread's own slot,
 * or the flusher), so a collection is synchronous and never waits for an
 * owner, Redis, or another thread; a figure may trail by the writes in
 * progress, never be torn. The counters are totals since the cache was
 * created, across all its threads, which is what an observable counter
 * reports (cumulative). Register in one thread per cache: every thread's
 * `stats()` reads the same memory, so two registrations count everything twice.
 */
import type { BatchObservableResult, Meter, Observable, ValueType } from '@opentelemetry/api';
import { ShardCache, ShardCacheError, type ShardCacheStats } from '../index.js';

/**
 * OpenTelemetry's ValueType.INT (0 in its stable API). Only types are imported
 * from @opentelemetry/api, so this module loads without it: the meter passed
 * in brings the implementation.
 */
const VALUE_TYPE_INT = 0 as ValueType;

type Kind = 'counter' | 'gauge' | 'updown';

interface InstrumentSpec {
  readonly name: string;
  readonly kind: Kind;
  /** UCUM, with OpenTelemetry's `{annotation}` for counts of things. */
  readonly unit: string;
  readonly description: string;
  readonly read: (stats: ShardCacheStats) => number;
}

/** Named and styled after OpenTelemetry's semantic conventions: a namespace, dots, snake_case words. */
const CACHE_INSTRUMENTS: readonly InstrumentSpec[] = [
  { name: 'shardcache.hits', kind: 'counter', unit: '{hit}', description: 'Lookups (get, getMany, fetch) that found a live entry, on every thread', read: (s) => s.hits },
  { name: 'shardcache.misses', kind: 'counter', unit: '{miss}', description: 'Lookups (get, getMany, fetch) that found no live entry, on every thread', read: (s) => s.misses },
  { name: 'shardcache.sets', kind: 'counter', unit: '{set}', description: 'Writes of a value applied by the shard owners', read: (s) => s.sets },
  { name: 'shardcache.deletes', kind: 'counter', unit: '{delete}', description: 'Deletes applied by the shard owners', read: (s) => s.deletes },
  { name: 'shardcache.evictions', kind: 'counter', unit: '{eviction}', description: 'Entries evicted to stay within maxBytes', read: (s) => s.evictions },
  { name: 'shardcache.expirations', kind: 'counter', unit: '{expiration}', description: 'Entries removed because their TTL ran out', read: (s) => s.expirations },
  { name: 'shardcache.rejections', kind: 'counter', unit: '{rejection}', description: 'New entries admission refused (with maxEntries: seen less often than the entry they would displace)', read: (s) => s.rejections },
  { name: 'shardcache.entries', kind: 'gauge', unit: '{entry}', description: 'Entries in the shards (expired ones count until their owner removes them)', read: (s) => s.entries },
  { name: 'shardcache.bytes_used', kind: 'gauge', unit: 'By', description: 'Bytes of the shards in use: index and entries', read: (s) => s.bytesUsed },
];

/** Only for a cache that writes behind to Redis (stats().redis is present). */
const REDIS_INSTRUMENTS: readonly InstrumentSpec[] = [
  { name: 'shardcache.redis.pending', kind: 'updown', unit: '{write}', description: 'Writes accepted and not yet acknowledged by Redis, wherever they wait', read: (s) => s.redis!.pending },
  { name: 'shardcache.redis.flushed', kind: 'counter', unit: '{write}', description: 'Writes Redis acknowledged', read: (s) => s.redis!.flushed },
  { name: 'shardcache.redis.failed', kind: 'counter', unit: '{write}', description: 'Writes dropped after maxAttempts refusals by Redis, or refused by the codec', read: (s) => s.redis!.failed },
  { name: 'shardcache.redis.retries', kind: 'counter', unit: '{retry}', description: 'Re-sends to Redis after a failure', read: (s) => s.redis!.retries },
];

function create(meter: Meter, spec: InstrumentSpec): Observable {
  const options = { description: spec.description, unit: spec.unit, valueType: VALUE_TYPE_INT };
  switch (spec.kind) {
    case 'counter': return meter.createObservableCounter(spec.name, options);
    case 'gauge': return meter.createObservableGauge(spec.name, options);
    case 'updown': return meter.createObservableUpDownCounter(spec.name, options);
  }
}

/**
 * Reports `cache`'s stats through `meter` (an OpenTelemetry `Meter`, e.g.
 * `metrics.getMeter('my-service')`), created or attached, in any thread.
 * The `shardcache.redis.*` instruments are made only for a cache that writes
 * behind to Redis. Once the cache is closed, collections report nothing for
 * it. Returns a function that unregisters (idempotent).
 */
export function registerMetrics(cache: ShardCache, meter: Meter): () => void {
  if (!(cache instanceof ShardCache)) {
    throw new ShardCacheError('ERR_INVALID_OPTION', 'registerMetrics: cache must be a ShardCache (created or attached)');
  }
  if (meter === null || typeof meter !== 'object' || typeof meter.addBatchObservableCallback !== 'function') {
    throw new ShardCacheError('ERR_INVALID_OPTION', 'registerMetrics: meter must be an OpenTelemetry Meter (@opentelemetry/api 1.3 or later)');
  }
  const specs = cache.stats().redis !== undefined ? [...CACHE_INSTRUMENTS, ...REDIS_INSTRUMENTS] : CACHE_INSTRUMENTS;
  const observables = specs.map((spec) => create(meter, spec));
  const observe = (result: BatchObservableResult): void => {
    if (cache.closed) return;
    const stats = cache.stats();
    for (let i = 0; i < specs.length; i++) result.observe(observables[i]!, specs[i]!.read(stats));
  };
  meter.addBatchObservableCallback(observe, observables);
  let registered = true;
  return () => {
    if (!registered) return;
    registered = false;
    meter.removeBatchObservableCallback(observe, observables);
  };
}
