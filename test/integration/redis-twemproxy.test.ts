// The Redis tier through a real twemproxy (nutcracker) in front of two redis-servers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardCacheError } from 'shardcache';
import { redisCli } from '../support/redis-cli.js';
import { TWEMPROXY_CLIENT_OPTIONS } from '../support/redis-client.js';
import { redisFixture } from '../support/redis-fixture.js';
import { decode } from '../support/redis-format.js';
import { commandCalls, dbsize, resetStats } from '../support/redis-stats.js';
import { startTwemproxy, type Twemproxy } from '../support/twemproxy.js';

describe('Redis tier through twemproxy', () => {
  const redis = redisFixture({ servers: 2 });
  let proxy: Twemproxy;

  // Registered after the fixture's hooks: the backends start before the proxy and stop after it.
  beforeAll(async () => {
    proxy = await startTwemproxy(redis.servers);
  });
  afterAll(async () => {
    await proxy?.stop();
  });

  function cacheThroughProxy(writeBehind: false | Record<string, number>) {
    return redis.cacheOn({ port: proxy.port, clientOptions: TWEMPROXY_CLIENT_OPTIONS, redis: { twemproxy: true, writeBehind } });
  }

  it('writes behind, fetches and fetchMany()s through the proxy, with keys spread over both backends', async () => {
    const { cache, client } = await cacheThroughProxy({ flushIntervalMs: 5 });
    // The varying part leads: twemproxy's fnv1a_64 + ketama sends keys that differ
    // only in a short suffix (item:1, item:2, ...) mostly to one server.
    const keys = Array.from({ length: 500 }, (_, i) => `${i}:item`);
    keys.forEach((key, i) => cache.set(key, { i }));
    cache.set('ttl', 'short', { ttlMs: 60_000 });
    cache.set('seq', 1);
    cache.delete('seq');
    cache.set('seq', 2);
    await cache.flush();
    for (let i = 0; i < 500; i += 4) cache.delete(keys[i]!);
    await cache.flush();

    const sizes = await Promise.all(redis.servers.map((b) => dbsize(b.port)));
    for (const size of sizes) expect(size).toBeGreaterThan(0);
    expect(sizes[0]! + sizes[1]!).toBe(375 + 2);
    expect(decode((await client.getBuffer('app:seq'))!)).toBe(2);
    const ttl = await client.pttl('app:ttl');
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);

    const reader = await cacheThroughProxy(false);
    expect(await reader.cache.fetch('1:item')).toEqual({ i: 1 });
    expect(await reader.cache.fetch('0:item')).toBeUndefined();
    expect(await reader.cache.fetch('ttl')).toBe('short');
    await Promise.all(redis.servers.map((b) => resetStats(b.port)));
    const asked = ['missing', ...keys.slice(0, 40), 'seq'];
    const values = await reader.cache.fetchMany(asked);
    expect(values).toEqual([undefined, ...keys.slice(0, 40).map((_, i) => (i % 4 === 0 ? undefined : { i })), 2]);
    // twemproxy splits the one MGET into one per backend that serves some of the keys.
    const mgets = await Promise.all(redis.servers.map((b) => commandCalls(b.port, 'mget')));
    const present = asked.filter((_, n) => values[n] !== undefined && asked[n] !== '1:item');
    for (const [b, backend] of redis.servers.entries()) {
      const holds = (await Promise.all(present.map((key) => redisCli(backend.port, 'EXISTS', `app:${key}`)))).some((r) => r.trim() === '1');
      expect(holds).toBe(true); // the asked keys are spread over both
      expect(mgets[b]).toBe(1);
    }
    for (const backend of redis.servers) expect(await commandCalls(backend.port, 'get')).toBe(0);
  });

  it('refuses clear() with ERR_NOT_SUPPORTED when writing behind through twemproxy, and loses nothing', async () => {
    const { cache, client } = await cacheThroughProxy({ flushIntervalMs: 5 });
    cache.set('kept', 'value');
    await cache.flush();
    let error: unknown;
    try {
      cache.clear();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ShardCacheError);
    expect((error as ShardCacheError).code).toBe('ERR_NOT_SUPPORTED');
    expect(cache.get('kept')).toBe('value');
    await cache.flush();
    expect(decode((await client.getBuffer('app:kept'))!)).toBe('value');
    expect(cache.stats().redis).toMatchObject({ pending: 0, failed: 0 });
  });
});
