// Read-through from a real redis-server: single flight across callers and
// threads (counted by Redis itself), loaders, fetchMany's MGET, and how a
// value read from Redis meets local writes made while it was in flight.
import { describe, expect, it } from 'vitest';
import { waitFor } from '../support/poll.js';
import { redisFixture } from '../support/redis-fixture.js';
import { encode, readRedis } from '../support/redis-format.js';
import { commandCalls, resetStats } from '../support/redis-stats.js';
import { resp } from '../support/resp.js';
import { startTap } from '../support/tcp-tap.js';
import { piscinaPool } from '../support/worker-threads.js';

const NO_TIMER = { flushIntervalMs: 60_000 };

describe('Redis read-through', () => {
  const redis = redisFixture({ cacheRedis: { writeBehind: NO_TIMER } });
  const { cacheOn, cleanup, freeze } = redis;

  it('sends one GET for concurrent fetches from a worker thread and 50 on the main thread', async () => {
    // The cache talks to Redis through a tap, which shows when its GET is on the wire.
    const tap = await startTap(redis.port);
    cleanup.add(() => tap.close());
    const { cache } = await cacheOn({ port: tap.port });
    const seeder = redis.client();
    const hot = { id: 'hot', items: [1, 2, 3], at: new Date(1_700_000_000_000) };
    await seeder.set('app:hot', encode(hot));
    const pool = piscinaPool('cache-worker.mjs', 1, cleanup);
    await resetStats(redis.port);
    const getHot = resp('get', 'app:hot');

    const thaw = await freeze();
    const onWorker = pool.run({ job: 'fetch', handle: cache.handle, key: 'hot', callers: 5 });
    onWorker.catch(() => {}); // awaited below; only a clean-up after a failure would leave it unawaited
    await waitFor('the worker thread\'s fetch to reach Redis as a GET', () => tap.count(getHot) > 0);
    // Redis cannot answer yet, so these must join the GET in flight.
    const onMain = Array.from({ length: 50 }, () => cache.fetch('hot'));
    await thaw();

    const fromWorker = (await onWorker) as { values: unknown[] };
    expect(fromWorker.values).toEqual(Array(5).fill(hot));
    expect(await Promise.all(onMain)).toEqual(Array(50).fill(hot));
    expect(tap.count(getHot)).toBe(1);
    expect(await commandCalls(redis.port, 'get')).toBe(1);

    // The value is now local: no further GET, and it is never written back to Redis.
    await cache.settled();
    expect(cache.get('hot')).toEqual(hot);
    expect(await cache.fetch('hot')).toEqual(hot);
    await cache.flush();
    expect(await commandCalls(redis.port, 'get')).toBe(1);
    expect(await commandCalls(redis.port, 'set')).toBe(0);
  });

  it('calls the loader once for concurrent fetches of a key absent from Redis, and writes its value behind', async () => {
    const { cache, client } = await cacheOn();
    await resetStats(redis.port);
    let loads = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const loader = async (key: string) => {
      loads++;
      await gate;
      return { loaded: key };
    };
    const fetches = Array.from({ length: 20 }, () => cache.fetch('cold', { loader, ttlMs: 30_000 }));
    await waitFor('the loader to be called', () => loads > 0);
    release();
    expect(await Promise.all(fetches)).toEqual(Array(20).fill({ loaded: 'cold' }));
    expect(loads).toBe(1);
    expect(await commandCalls(redis.port, 'get')).toBe(1);

    await cache.flush();
    expect(await readRedis(client, 'app:', ['cold'])).toEqual(new Map([['cold', { loaded: 'cold' }]]));
    const ttl = await client.pttl('app:cold');
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(30_000);

    // Now a local hit: neither the loader nor Redis is asked again.
    expect(await cache.fetch('cold', { loader })).toEqual({ loaded: 'cold' });
    expect(loads).toBe(1);
    expect(await commandCalls(redis.port, 'get')).toBe(1);

    // A loader that finds nothing caches nothing.
    expect(await cache.fetch('nothing', { loader: () => undefined })).toBeUndefined();
    await cache.flush();
    expect(await client.exists('app:nothing')).toBe(0);
  });

  it('fetchMany reads all misses with one MGET and returns values in order, undefined for misses', async () => {
    const { cache, client } = await cacheOn();
    const a = { name: 'a' };
    const b = [2, 'b'];
    const c = new Map([['c', 3]]);
    await client.set('app:a', encode(a));
    await client.set('app:b', encode(b), 'PX', 50_000);
    await client.set('app:c', encode(c));
    await resetStats(redis.port);

    expect(await cache.fetchMany(['a', 'miss-1', 'b', 'miss-2', 'c'])).toEqual([a, undefined, b, undefined, c]);
    expect(await commandCalls(redis.port, 'mget')).toBe(1);
    expect(await commandCalls(redis.port, 'get')).toBe(0);

    // The hits are local now; only the misses go to Redis again, still one MGET.
    expect(await cache.fetchMany(['c', 'b', 'a', 'miss-1'])).toEqual([c, b, a, undefined]);
    expect(await commandCalls(redis.port, 'mget')).toBe(2);
    expect(await cache.fetchMany(['a', 'b'])).toEqual([a, b]);
    expect(await commandCalls(redis.port, 'mget')).toBe(2);

    // A loader fills the misses Redis could not.
    const loaded: string[] = [];
    const values = await cache.fetchMany(['miss-2', 'a'], { loader: (key) => (loaded.push(key), `loaded ${key}`) });
    expect(values).toEqual(['loaded miss-2', a]);
    expect(loaded).toEqual(['miss-2']);
  });

  it('keeps a local copy of a value read from Redis only as long as Redis keeps it', async () => {
    const { cache, client } = await cacheOn();
    await client.set('app:short', encode('short-lived'), 'PX', 1_000);
    await client.set('app:long', encode('long-lived'));
    expect(await cache.fetch('short')).toBe('short-lived');
    expect(await cache.fetch('long')).toBe('long-lived');
    await cache.settled();
    expect(cache.get('short')).toBe('short-lived');
    await waitFor('the local copy of "short" to expire with its Redis TTL', () => cache.get('short') === undefined, 5_000);
    expect(cache.get('long')).toBe('long-lived');
  });

  it('does not read Redis when readThrough is false', async () => {
    const { cache, client } = await cacheOn({ redis: { readThrough: false } });
    await client.set('app:there', encode('in redis'));
    await resetStats(redis.port);
    expect(await cache.fetch('there')).toBeUndefined();
    expect(await cache.fetchMany(['there', 'other'])).toEqual([undefined, undefined]);
    expect(await cache.fetch('there', { loader: () => 'from loader' })).toBe('from loader');
    expect(await commandCalls(redis.port, 'get')).toBe(0);
    expect(await commandCalls(redis.port, 'mget')).toBe(0);
  });

  it('lets a local set made while a fetch is in flight win over the value read from Redis', async () => {
    const { cache, client } = await cacheOn();
    await client.set('app:k', encode('old'));
    const thaw = await freeze();
    const fetching = cache.fetch('k');
    cache.set('k', 'new');
    await thaw();
    await fetching; // may be 'old' (it was asked first); what matters is what stays
    await cache.settled();
    expect(cache.get('k')).toBe('new');
    await cache.flush();
    expect(await readRedis(client, 'app:', ['k'])).toEqual(new Map([['k', 'new']]));
  });

  it('does not let a fetch in flight resurrect a key deleted meanwhile, locally or in Redis', async () => {
    const { cache, client } = await cacheOn();
    await client.set('app:k', encode('old'));
    const thaw = await freeze();
    const fetching = cache.fetch('k');
    cache.delete('k');
    await thaw();
    await fetching;
    await cache.settled();
    expect(cache.get('k')).toBeUndefined();
    await cache.flush();
    expect(await client.exists('app:k')).toBe(0);
  });

  it('does not let a fetch between a delete and its flush bring the key back, locally or in Redis (main and worker threads)', async () => {
    const { cache, client } = await cacheOn();
    const pool = piscinaPool('cache-worker.mjs', 1, cleanup);
    for (const key of ['main', 'worker']) cache.set(key, 'v1');
    await cache.flush();
    // Deleted locally and applied, while the DEL still waits for the next flush (no timer).
    for (const key of ['main', 'worker']) cache.delete(key);
    await cache.settled();
    expect(await client.exists('app:main', 'app:worker')).toBe(2);
    // Each fetch reads Redis, which still has v1; whatever it returns, nothing of it may stay.
    await cache.fetch('main');
    await pool.run({ job: 'fetch', handle: cache.handle, key: 'worker', callers: 2 });
    await cache.settled();
    expect(cache.get('main')).toBeUndefined();
    expect(cache.get('worker')).toBeUndefined();
    await cache.flush();
    expect(await client.exists('app:main', 'app:worker')).toBe(0);
    // Once the DELs are flushed, a value written by someone else is fetched and kept again.
    await client.set('app:main', encode('v2'));
    expect(await cache.fetch('main')).toBe('v2');
    await cache.settled();
    expect(cache.get('main')).toBe('v2');
  });
});
