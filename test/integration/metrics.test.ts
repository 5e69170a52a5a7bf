// registerMetrics with the OpenTelemetry SDK: a MeterProvider and a metric
// reader collected on demand. Every instrument's value equals stats() at
// collection, without and with Redis (also while Redis is frozen: collection
// reads shared memory and waits for nobody), counting every thread.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { BatchObservableResult, Meter, Observable } from '@opentelemetry/api';
import { DataPointType, MeterProvider, MetricReader, type MetricData } from '@opentelemetry/sdk-metrics';
import { ShardCache, type ShardCacheStats } from 'shardcache';
import { registerMetrics } from 'shardcache/metrics';
import { startRedis, type RedisServer } from '../support/redis-server.js';
import { MiB } from '../support/bytes.js';
import { expectCode } from '../support/expect-code.js';
import { waitFor } from '../support/poll.js';
import { AttachedWorker } from '../support/worker-threads.js';
import { Cleanup } from '../support/cleanup.js';
import { quit, redisClient } from '../support/redis-client.js';

/** A reader that collects only when asked. */
class OnDemandReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

interface Collected {
  value: number;
  kind: 'counter' | 'updown' | 'gauge';
  unit: string;
  description: string;
}

const CACHE_NAMES = [
  'shardcache.hits', 'shardcache.misses', 'shardcache.sets', 'shardcache.deletes', 'shardcache.evictions',
  'shardcache.expirations', 'shardcache.rejections', 'shardcache.entries', 'shardcache.bytes_used',
];
const REDIS_NAMES = ['shardcache.redis.pending', 'shardcache.redis.flushed', 'shardcache.redis.failed', 'shardcache.redis.retries'];

function kindOf(metric: MetricData): Collected['kind'] {
  if (metric.dataPointType === DataPointType.GAUGE) return 'gauge';
  if (metric.dataPointType === DataPointType.SUM) return metric.isMonotonic ? 'counter' : 'updown';
  throw new Error(`unexpected data point type ${metric.dataPointType} for ${metric.descriptor.name}`);
}

/** Collects once; the shardcache instruments that have a data point, by name. */
async function collect(reader: MetricReader): Promise<Map<string, Collected>> {
  const { resourceMetrics, errors } = await reader.collect();
  expect(errors).toEqual([]);
  const out = new Map<string, Collected>();
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) {
      if (!metric.descriptor.name.startsWith('shardcache.') || metric.dataPoints.length === 0) continue;
      expect(metric.dataPoints).toHaveLength(1); // no attributes: one series per instrument
      out.set(metric.descriptor.name, {
        value: metric.dataPoints[0]!.value as number,
        kind: kindOf(metric),
        unit: metric.descriptor.unit,
        description: metric.descriptor.description,
      });
    }
  }
  return out;
}

/** What each instrument must equal. */
function expected(stats: ShardCacheStats): Record<string, number> {
  return {
    'shardcache.hits': stats.hits,
    'shardcache.misses': stats.misses,
    'shardcache.sets': stats.sets,
    'shardcache.deletes': stats.deletes,
    'shardcache.evictions': stats.evictions,
    'shardcache.expirations': stats.expirations,
    'shardcache.rejections': stats.rejections,
    'shardcache.entries': stats.entries,
    'shardcache.bytes_used': stats.bytesUsed,
    ...(stats.redis
      ? {
          'shardcache.redis.pending': stats.redis.pending,
          'shardcache.redis.flushed': stats.redis.flushed,
          'shardcache.redis.failed': stats.redis.failed,
          'shardcache.redis.retries': stats.redis.retries,
        }
      : {}),
  };
}

function valuesOf(collected: Map<string, Collected>): Record<string, number> {
  return Object.fromEntries([...collected].map(([name, { value }]) => [name, value]));
}

describe('registerMetrics', () => {
  const perTest = new Cleanup();
  afterEach(() => perTest.run());
  let reader: OnDemandReader;
  let meter: Meter;

  /** A provider with an on-demand reader, shut down after the test. */
  function provide(): { reader: OnDemandReader; meter: Meter } {
    const onDemand = new OnDemandReader();
    const provider = new MeterProvider({ readers: [onDemand] });
    perTest.add(() => provider.shutdown());
    return { reader: onDemand, meter: provider.getMeter('shardcache-test') };
  }

  // A provider per test: the SDK keeps the last value of a cumulative series
  // it saw, which would carry one test's figures into the next.
  beforeEach(() => {
    ({ reader, meter } = provide());
  });

  async function cacheWith(options: Parameters<typeof ShardCache.create>[0]) {
    const cache = await ShardCache.create(options);
    perTest.add(() => cache.close());
    const unregister = registerMetrics(cache, meter);
    perTest.add(unregister);
    return cache;
  }

  it('without Redis: each instrument, named, typed and with its unit, equals stats()', async () => {
    // One small shard, so that writes evict.
    const cache = await cacheWith({ shards: 1, maxBytes: 256 * 1024, nearCache: 0 });
    for (let i = 0; i < 2_000; i++) cache.set(`k${i}`, 'x'.repeat(200));
    for (let i = 0; i < 5; i++) cache.set(`short${i}`, i, { ttlMs: 1 });
    cache.delete('k1999');
    await cache.settled();
    for (let i = 1_990; i < 2_000; i++) cache.get(`k${i}`);
    cache.get('never-set');
    await waitFor('the owner to expire the short entries', () => cache.stats().expirations === 5, 5_000);

    const collected = await collect(reader);
    const stats = cache.stats();
    expect(valuesOf(collected)).toEqual(expected(stats));
    expect(stats.evictions).toBeGreaterThan(0);
    expect(stats.hits).toBeGreaterThan(0);
    expect(stats.misses).toBeGreaterThan(0);
    expect([...collected.keys()].sort()).toEqual([...CACHE_NAMES].sort());

    const kinds = Object.fromEntries([...collected].map(([name, { kind, unit }]) => [name, `${kind} ${unit}`]));
    expect(kinds).toEqual({
      'shardcache.hits': 'counter {hit}',
      'shardcache.misses': 'counter {miss}',
      'shardcache.sets': 'counter {set}',
      'shardcache.deletes': 'counter {delete}',
      'shardcache.evictions': 'counter {eviction}',
      'shardcache.expirations': 'counter {expiration}',
      'shardcache.rejections': 'counter {rejection}',
      'shardcache.entries': 'gauge {entry}',
      'shardcache.bytes_used': 'gauge By',
    });
    for (const { description } of collected.values()) expect(description.length).toBeGreaterThan(10);
  });

  it('with maxEntries, rejections counts the new entries admission refused', async () => {
    const cache = await cacheWith({ shards: 1, maxBytes: 4 * 1024 * 1024, maxEntries: 100, nearCache: 0 });
    // Hot keys read often, then a stream of keys never read: the stream loses to them.
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 100; i++) if (cache.get(`hot${i}`) === undefined) cache.set(`hot${i}`, i);
      await cache.settled();
    }
    for (let i = 0; i < 1_000; i++) cache.set(`cold${i}`, i);
    await cache.settled();
    const stats = cache.stats();
    expect(stats.rejections).toBeGreaterThan(0);
    expect(valuesOf(await collect(reader))['shardcache.rejections']).toBe(stats.rejections);
  });

  it("counts other threads' reads: every thread's stats() is the same memory", async () => {
    const cache = await cacheWith({ shards: 2, maxBytes: 8 * MiB });
    cache.set('a', 1);
    await cache.settled();
    const worker = await AttachedWorker.start(cache.handle);
    perTest.add(() => worker.stop());
    await worker.call('get', ['a', 'a', 'a', 'missing']);
    const collected = await collect(reader);
    expect(collected.get('shardcache.hits')!.value).toBe(3);
    expect(collected.get('shardcache.misses')!.value).toBe(1);
    expect(valuesOf(collected)).toEqual(expected(cache.stats()));
  });

  it('collects from a synchronous callback that reads shared memory (never waits for an owner)', async () => {
    const cache = await ShardCache.create({ shards: 1, maxBytes: 4 * MiB });
    perTest.add(() => cache.close());
    cache.set('a', 1);
    await cache.settled();
    // A Meter that only records what registerMetrics asks of it.
    let callback: ((result: BatchObservableResult) => void) | undefined;
    const names = new Map<Observable, string>();
    const instrument = (name: string) => {
      const observable = { addCallback() {}, removeCallback() {} } as unknown as Observable;
      names.set(observable, name);
      return observable;
    };
    const fake = {
      createObservableCounter: instrument,
      createObservableGauge: instrument,
      createObservableUpDownCounter: instrument,
      addBatchObservableCallback: (cb: (result: BatchObservableResult) => void) => { callback = cb; },
      removeBatchObservableCallback: () => { callback = undefined; },
    } as unknown as Meter;
    const unregister = registerMetrics(cache, fake);
    const seen: Record<string, number> = {};
    const returned = callback!({ observe: (observable: Observable, value: number) => { seen[names.get(observable)!] = value; } });
    expect(returned).toBeUndefined(); // not a promise: nothing to wait for
    expect(seen).toEqual(expected(cache.stats()));
    unregister();
    expect(callback).toBeUndefined();
    unregister(); // idempotent
  });

  it('after unregister, or once the cache is closed, collections no longer read the cache', async () => {
    const cache = await ShardCache.create({ shards: 1, maxBytes: 4 * MiB });
    perTest.add(() => cache.close());
    const unregister = registerMetrics(cache, meter);
    cache.set('a', 1);
    await cache.settled();
    expect((await collect(reader)).get('shardcache.sets')!.value).toBe(1);
    unregister();
    unregister(); // idempotent
    cache.set('b', 2);
    await cache.settled();
    // The SDK repeats a cumulative series' last value; the callback did not run.
    expect((await collect(reader)).get('shardcache.sets')?.value ?? 1).toBe(1);

    const { reader: other, meter: otherMeter } = provide();
    const closing = await ShardCache.create({ shards: 1, maxBytes: 4 * MiB });
    perTest.add(registerMetrics(closing, otherMeter));
    await closing.close();
    // A closed cache's stats() throws ERR_CLOSED; the callback skips it instead.
    expect((await collect(other)).size).toBe(0);
  });

  it('refuses what is not a cache or a meter', async () => {
    const cache = await ShardCache.create({ shards: 1, maxBytes: 4 * MiB });
    perTest.add(() => cache.close());
    expectCode(() => registerMetrics({} as ShardCache, meter), 'ERR_INVALID_OPTION');
    expectCode(() => registerMetrics(cache, {} as Meter), 'ERR_INVALID_OPTION');
  });

  describe('with Redis', () => {
    let redis: RedisServer;
    beforeAll(async () => {
      redis = await startRedis();
    });
    afterAll(async () => {
      await redis?.stop();
    });

    it('adds the write-behind instruments; pending while Redis is frozen, flushed and failed after, all equal to stats()', async () => {
      const client = redisClient(redis.port);
      perTest.add(() => quit(client));
      // 'json' cannot carry a bigint: that write fails at flush, counted in failed.
      const cache = await cacheWith({ shards: 2, maxBytes: 8 * MiB, redis: { client, keyPrefix: 'metrics:', codec: 'json' } });
      cache.on('error', () => {}); // the dropped bigint is reported here
      await redis.stopProcess('SIGSTOP');
      perTest.add(() => (redis.running ? redis.stopProcess('SIGCONT') : undefined));
      for (let i = 0; i < 100; i++) cache.set(`w${i}`, { i });
      cache.set('big', 2n ** 80n);
      await cache.settled();

      // Redis answers nothing now; collecting still reads everything at once.
      let collected = await collect(reader);
      expect([...collected.keys()].sort()).toEqual([...CACHE_NAMES, ...REDIS_NAMES].sort());
      expect(collected.get('shardcache.redis.pending')).toMatchObject({ value: 101, kind: 'updown', unit: '{write}' });
      expect(collected.get('shardcache.redis.flushed')).toMatchObject({ kind: 'counter', unit: '{write}' });
      expect(collected.get('shardcache.redis.failed')).toMatchObject({ kind: 'counter', unit: '{write}' });
      expect(collected.get('shardcache.redis.retries')).toMatchObject({ kind: 'counter', unit: '{retry}' });
      expect(valuesOf(collected)).toEqual(expected(cache.stats()));

      await redis.stopProcess('SIGCONT');
      await cache.flush();
      collected = await collect(reader);
      const stats = cache.stats();
      expect(valuesOf(collected)).toEqual(expected(stats));
      expect(stats.redis).toMatchObject({ pending: 0, flushed: 100, failed: 1 });
    });
  });
});
