// maxEntries and frequency-aware admission through the public API: the bound
// across shards, reads on another instance reaching the owner's decisions
// through the shared sketch, scan resistance, and what admission must never
// break (read-your-writes, write-behind, dirty entries).
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../support/cleanup.js';
import { redisFixture } from '../support/redis-fixture.js';
import { readRedis } from '../support/redis-format.js';
import { testAttach, testCache } from '../support/test-cache.js';

const cleanup = cleanupAfterEach();

describe('maxEntries', () => {
  it('bounds the entries of all shards together, each shard holding its share', async () => {
    const cache = await testCache({ shards: 2, maxEntries: 1000 }, cleanup);
    for (let i = 0; i < 5000; i++) cache.set(`k${i}`, i);
    await cache.settled();
    const stats = cache.stats();
    expect(stats.maxEntries).toBe(1000);
    expect(cache.size).toBeLessThanOrEqual(1000);
    expect(cache.size).toBeGreaterThan(900); // each shard at its bound of 500
    expect(stats.evictions).toBe(5000 - cache.size);
  });

  it('resists a scan: one pass over ten times the bound leaves the hot set read on another instance in place', async () => {
    // The default near cache serves most of the hot reads, which then count one in eight.
    const cache = await testCache({ shards: 2, maxEntries: 2000 }, cleanup);
    const reader = await testAttach(cache.handle, cleanup);
    const hot = Array.from({ length: 1000 }, (_, i) => `hot:${i}`);
    for (const key of hot) cache.set(key, { key });
    await cache.settled();
    // Reads on the other instance: only the shared sketch tells the owners about them.
    for (let round = 0; round < 64; round++) for (const key of hot) expect(reader.get(key)).toEqual({ key });
    // One pass over 20 000 keys never seen: each read once (a miss) and set.
    for (let i = 0; i < 20_000; i++) {
      const key = `scan:${i}`;
      if (cache.get(key) === undefined) cache.set(key, { key });
      if (i % 1000 === 999) await cache.settled();
    }
    await cache.settled();
    let kept = 0;
    for (const key of hot) if (reader.has(key)) kept++;
    expect(kept).toBeGreaterThanOrEqual(900);
    const stats = cache.stats();
    expect(stats.rejections).toBeGreaterThan(15_000);
    expect(cache.size).toBeLessThanOrEqual(2000);
  });

  it('lets a thread read its own refused write until the owner applied it, as every write', async () => {
    const cache = await testCache({ shards: 1, maxEntries: 100 }, cleanup);
    for (let i = 0; i < 100; i++) cache.set(`hot:${i}`, i);
    await cache.settled();
    for (let round = 0; round < 10; round++) for (let i = 0; i < 100; i++) cache.get(`hot:${i}`);
    const before = cache.stats().rejections;
    for (let i = 0; i < 50; i++) {
      cache.set(`cold:${i}`, i);
      expect(cache.get(`cold:${i}`)).toBe(i); // queued, not applied yet: this thread sees it
    }
    await cache.settled();
    expect(cache.stats().rejections).toBeGreaterThan(before);
    let hotKept = 0;
    for (let i = 0; i < 100; i++) if (cache.has(`hot:${i}`)) hotKept++;
    expect(hotKept).toBeGreaterThanOrEqual(95);
  });
});

describe('maxEntries with write-behind', () => {
  const redis = redisFixture({ cacheRedis: { writeBehind: { flushIntervalMs: 5 } } });
  const { cacheOn } = redis;

  it('writes every key to Redis, refused or not, and evicts none before Redis has it', async () => {
    const { cache, client } = await cacheOn({ shards: 1, maxEntries: 200 });
    const keys = Array.from({ length: 2000 }, (_, i) => `k${i}`);
    // Far more writes than the bound: the owner waits for Redis's acknowledgements
    // to make room (a dirty entry is never evicted), then admission decides.
    for (let i = 0; i < keys.length; i++) cache.set(keys[i]!, i);
    await cache.flush();
    const stored = await readRedis(client, 'app:', keys);
    expect(stored.size).toBe(keys.length);
    for (let i = 0; i < keys.length; i++) expect(stored.get(keys[i]!)).toBe(i);
    expect(cache.size).toBeLessThanOrEqual(200);
    expect(cache.stats().redis).toMatchObject({ pending: 0, failed: 0 });
  });
});
