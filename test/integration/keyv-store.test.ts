// KeyvShardCache beyond Keyv's own suite (keyv-suite.test.ts): who builds and
// closes the cache, what lands in the cache, TTLs, namespaces and their
// documented limit, errors, worker threads, and Redis behind the cache.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import Keyv from 'keyv';
import { Piscina } from 'piscina';
import { ShardCache, ShardCacheError } from 'shardcache';
import { KeyvShardCache } from 'shardcache/keyv';
import { redisCli } from '../support/redis-cli.js';
import { startRedis, type RedisServer } from '../support/redis-server.js';
import { MiB } from '../support/bytes.js';
import { expectCode, expectRejectsCode } from '../support/expect-code.js';
import { Cleanup } from '../support/cleanup.js';
import { quit, redisClient } from '../support/redis-client.js';

/** A Keyv whose `error` events are collected. */
function keyvOn(store: KeyvShardCache, options: { namespace?: string; serialize?: undefined; deserialize?: undefined } = {}) {
  const keyv = new Keyv({ store, ...options });
  const errors: unknown[] = [];
  keyv.on('error', (error: unknown) => errors.push(error));
  return { keyv, errors };
}

describe('KeyvShardCache', () => {
  let cache: ShardCache;
  const cleanup = new Cleanup();

  beforeAll(async () => {
    // A default TTL, to show Keyv's "no TTL" is not replaced by it.
    cache = await ShardCache.create({ shards: 2, maxBytes: 16 * MiB, ttlMs: 30_000 });
  });
  afterAll(async () => {
    await cache?.close();
  });
  afterEach(async () => {
    vi.useRealTimers();
    await cleanup.run();
  });

  describe('the cache it uses', () => {
    it('builds its own on the first call, not in the constructor, and closes it on disconnect()', async () => {
      // Invalid options do not throw here: Keyv constructs stores synchronously.
      const broken = new KeyvShardCache({ shards: 0 });
      const { keyv: brokenKeyv, errors } = keyvOn(broken);
      expect(await brokenKeyv.set('k', 1)).toBe(false);
      expect(errors.length).toBeGreaterThan(0);
      expect((errors[0] as ShardCacheError).code).toBe('ERR_INVALID_OPTION');
      await expectRejectsCode(broken.getCache(), 'ERR_INVALID_OPTION');

      const store = new KeyvShardCache({ shards: 1, maxBytes: 4 * MiB });
      const { keyv } = keyvOn(store);
      expect(await keyv.set('k', { n: 1 })).toBe(true);
      expect(await keyv.get('k')).toEqual({ n: 1 });
      const own = await store.getCache();
      expect(own.closed).toBe(false);
      await keyv.disconnect();
      expect(own.closed).toBe(true);
      await keyv.disconnect(); // idempotent
    });

    it('never builds a cache if disconnected first', async () => {
      const store = new KeyvShardCache({ shards: 1, maxBytes: 4 * MiB });
      await store.disconnect();
      await expectRejectsCode(store.getCache(), 'ERR_CLOSED');
    });

    it('closes a cache still being built when disconnect() comes first', async () => {
      const store = new KeyvShardCache({ shards: 1, maxBytes: 4 * MiB });
      const first = expectRejectsCode(store.getCache(), 'ERR_CLOSED');
      await store.disconnect();
      await first;
    });

    it('wraps a cache and leaves it open on disconnect(); the store is then closed', async () => {
      const store = new KeyvShardCache({ cache });
      expect(await store.getCache()).toBe(cache);
      const { keyv, errors } = keyvOn(store);
      await keyv.set('wrap', 'still here');
      await keyv.disconnect();
      expect(cache.closed).toBe(false);
      expect(JSON.parse(cache.get('keyv:wrap') as string).value).toBe('still here');
      expect(await keyv.set('wrap', 'after')).toBe(false);
      expect((errors[0] as ShardCacheError).code).toBe('ERR_CLOSED');
      await expectRejectsCode(store.get('keyv:wrap'), 'ERR_CLOSED');
    });

    it('refuses a cache option that is not a ShardCache', () => {
      expectCode(() => new KeyvShardCache({ cache: {} as ShardCache }), 'ERR_INVALID_OPTION');
    });
  });

  describe('what it stores', () => {
    it("keeps Keyv's serialized value under the namespaced key, with Keyv's TTL and no TTL when Keyv has none", async () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      const { keyv } = keyvOn(new KeyvShardCache({ cache }), { namespace: 'ttl' });
      await keyv.set('short', { x: 1 }, 60_000);
      await keyv.set('forever', { x: 2 });
      const stored = JSON.parse(cache.get('ttl:short') as string);
      expect(stored.value).toEqual({ x: 1 });
      expect(stored.expires).toBe(Date.now() + 60_000);
      // An hour later (readers check expiry against their own clock): the
      // entry with Keyv's TTL is gone from the cache itself, the one without
      // stays although the cache's default ttlMs is 30 s.
      vi.setSystemTime(Date.now() + 3_600_000);
      expect(cache.get('ttl:short')).toBeUndefined();
      expect(cache.has('ttl:short')).toBe(false);
      expect(JSON.parse(cache.get('ttl:forever') as string).value).toEqual({ x: 2 });
      expect(await keyv.get('forever')).toEqual({ x: 2 });
    });

    it('keeps values as they are when Keyv does not serialize (as cache-manager does by default)', async () => {
      const { keyv } = keyvOn(new KeyvShardCache({ cache }), { serialize: undefined, deserialize: undefined });
      const value = { when: new Date(5), tags: new Set(['a']), bytes: Buffer.from([1, 2, 3]), big: 2n ** 70n, map: new Map([[1, 'one']]) };
      await keyv.set('typed', value, 60_000);
      const back = await keyv.get('typed');
      expect(back).toEqual(value);
      expect(back.when).toBeInstanceOf(Date);
      expect(Buffer.isBuffer(back.bytes)).toBe(true);
      const raw = cache.get('keyv:typed') as { value: unknown; expires: number };
      expect(raw.value).toEqual(value);
      expect(typeof raw.expires).toBe('number');
    });

    it('answers getMany, has and deleteMany as Keyv expects', async () => {
      const { keyv } = keyvOn(new KeyvShardCache({ cache }), { namespace: 'many' });
      await keyv.set('a', 1);
      await keyv.set('b', 2);
      expect(await keyv.get(['a', 'missing', 'b'])).toEqual([1, undefined, 2]);
      expect(await keyv.has('a')).toBe(true);
      expect(await keyv.has('missing')).toBe(false);
      expect(await keyv.delete(['a', 'missing'])).toBe(false); // not every key was there
      expect(await keyv.delete(['b'])).toBe(true);
      expect(await keyv.get(['a', 'b'])).toEqual([undefined, undefined]);
      expect(cache.has('many:a')).toBe(false);
    });
  });

  describe('namespaces', () => {
    it('clear() removes its namespace and leaves other namespaces and the rest of the cache', async () => {
      cache.set('plain', 'not keyv');
      const a = keyvOn(new KeyvShardCache({ cache }), { namespace: 'a' }).keyv;
      const b = keyvOn(new KeyvShardCache({ cache }), { namespace: 'b' }).keyv;
      await a.set('x', 1);
      await a.set('y', 2);
      await b.set('x', 3);
      // Another store of the same namespace on this thread: it clears what the first wrote.
      await keyvOn(new KeyvShardCache({ cache }), { namespace: 'a' }).keyv.clear();
      expect(cache.get('a:x')).toBeUndefined();
      expect(cache.get('a:y')).toBeUndefined();
      expect(await b.get('x')).toBe(3);
      expect(cache.get('plain')).toBe('not keyv');
      const seen: unknown[] = [];
      for await (const entry of b.iterator!(undefined)) seen.push(entry);
      expect(seen).toEqual([['x', 3]]);
    });

    it('iterator() skips what left the cache and yields keys in the order first written', async () => {
      const store = new KeyvShardCache({ cache });
      const { keyv } = keyvOn(store, { namespace: 'order' });
      for (const key of ['c', 'a', 'b', 'gone']) await keyv.set(key, key.toUpperCase());
      cache.delete('order:gone'); // not through Keyv
      await keyv.set('c', 'C2'); // rewriting keeps its place
      const seen: unknown[] = [];
      for await (const entry of keyv.iterator!(undefined)) seen.push(entry);
      expect(seen).toEqual([['c', 'C2'], ['a', 'A'], ['b', 'B']]);
    });

    it('a key deleted and written again, over and over, is cleared and iterated as its last write says', async () => {
      const { keyv } = keyvOn(new KeyvShardCache({ cache }), { namespace: 'churn' });
      for (let i = 0; i < 50; i++) await keyv.set(`k${i}`, i);
      for (let round = 0; round < 300; round++) {
        await keyv.set('hot', round);
        await keyv.delete('hot');
        await keyv.set('warm', round);
      }
      await keyv.delete('k1');
      // Written again outside Keyv after its delete: not this store's to clear.
      cache.set('churn:hot', 'someone else');
      const seen: unknown[] = [];
      for await (const entry of keyv.iterator!(undefined)) seen.push(entry[0]);
      expect(seen).toEqual([...Array.from({ length: 50 }, (_, i) => `k${i}`).filter((k) => k !== 'k1'), 'warm']);
      await keyv.clear();
      expect(cache.get('churn:k0')).toBeUndefined();
      expect(cache.get('churn:warm')).toBeUndefined();
      expect(cache.get('churn:hot')).toBe('someone else');
    });

    it("cannot see keys other threads' stores wrote (the documented limit)", async () => {
      const pool = new Piscina({ filename: new URL('./fixtures/keyv-task.mjs', import.meta.url).href, minThreads: 1, maxThreads: 1 });
      cleanup.add(() => pool.destroy());
      await pool.run({ job: 'wrap', handle: cache.handle, namespace: 'limit', entries: [['theirs', 1]], read: 'theirs' });
      const { keyv } = keyvOn(new KeyvShardCache({ cache }), { namespace: 'limit' });
      await keyv.set('mine', 2);
      const seen: unknown[] = [];
      for await (const entry of keyv.iterator!(undefined)) seen.push(entry);
      expect(seen).toEqual([['mine', 2]]);
      await keyv.clear();
      expect(await keyv.get('mine')).toBeUndefined();
      expect(await keyv.get('theirs')).toBe(1); // still there: delete it where it was written, or by key
    });
  });

  describe('threads', () => {
    let pool: Piscina;
    beforeAll(() => {
      pool = new Piscina({ filename: new URL('./fixtures/keyv-task.mjs', import.meta.url).href, minThreads: 2, maxThreads: 2 });
    });
    afterAll(async () => {
      await pool?.destroy();
    });

    it('a store in a worker wraps the cache attached there, shares its data, and leaves it open on disconnect()', async () => {
      const entries = Array.from({ length: 50 }, (_, i) => [`w${i}`, { i, from: 'worker' }]);
      const result = await pool.run({ job: 'wrap', handle: cache.handle, namespace: 'threads', entries, read: 'w7' });
      expect(result.read).toEqual({ i: 7, from: 'worker' });
      expect(result.openAfterDisconnect).toBe(true);
      expect(JSON.parse(result.rawAfterDisconnect).value).toEqual({ i: 0, from: 'worker' });
      // The main thread reads the worker's writes through its own store.
      const { keyv } = keyvOn(new KeyvShardCache({ cache }), { namespace: 'threads' });
      expect(await keyv.get(entries.map(([key]) => key as string))).toEqual(entries.map(([, value]) => value));
      expect(cache.closed).toBe(false);
    });

    it('a store in a worker builds its own cache there and closes it on disconnect()', async () => {
      const result = await pool.run({ job: 'own' });
      expect(result.read).toEqual({ from: result.threadId });
      expect(result.closedAfterDisconnect).toBe(true);
    });
  });

  describe('errors', () => {
    it("re-emits the cache's background errors, with one listener on the cache however many stores", async () => {
      const before = cache.listenerCount('error');
      const stores = Array.from({ length: 30 }, () => keyvOn(new KeyvShardCache({ cache })));
      expect(cache.listenerCount('error')).toBeLessThanOrEqual(Math.max(before, 1));
      const problem = new ShardCacheError('ERR_REDIS', 'a write Redis refused');
      cache.emit('error', problem);
      for (const { errors } of stores) expect(errors).toEqual([problem]);
    });

    it('a value the cache refuses makes set() false and an error event', async () => {
      const small = await ShardCache.create({ shards: 1, maxBytes: 1 * MiB, maxValueBytes: 1024 });
      cleanup.add(() => small.close());
      const { keyv, errors } = keyvOn(new KeyvShardCache({ cache: small }));
      expect(await keyv.set('big', 'x'.repeat(4096))).toBe(false);
      expect((errors[0] as ShardCacheError).code).toBe('ERR_VALUE_TOO_LARGE');
      expect(await keyv.get('big')).toBeUndefined();
    });
  });
});

describe('KeyvShardCache with Redis behind the cache', () => {
  let redis: RedisServer;
  const cleanup = new Cleanup();
  const perTest = new Cleanup();

  beforeAll(async () => {
    redis = await startRedis();
    cleanup.add(() => redis.stop());
  });
  afterAll(() => cleanup.run());
  afterEach(() => perTest.run());

  async function cacheOn(writeBehind: boolean) {
    const client = redisClient(redis.port);
    perTest.add(() => quit(client));
    const cache = await ShardCache.create({ shards: 2, maxBytes: 8 * MiB, redis: { client, keyPrefix: 'kv:', writeBehind: writeBehind ? {} : false } });
    perTest.add(() => cache.close());
    return cache;
  }

  it('what Keyv writes reaches Redis, and another process reads it through its own store', async () => {
    const cache = await cacheOn(true);
    const { keyv } = keyvOn(new KeyvShardCache({ cache }));
    await keyv.set('shared', { n: 42 }, 60_000);
    await cache.flush();
    const pttl = Number((await redisCli(redis.port, 'PTTL', 'kv:keyv:shared')).trim());
    expect(pttl).toBeGreaterThan(50_000);
    // A second cache with nothing local stands for another process.
    const other = keyvOn(new KeyvShardCache({ cache: await cacheOn(false) })).keyv;
    expect(await other.has('shared')).toBe(true);
    expect(await other.get('shared')).toEqual({ n: 42 });
  });

  it('a delete resolves once Redis has it, so a get after it never reads the old value back', async () => {
    const cache = await cacheOn(true);
    const { keyv } = keyvOn(new KeyvShardCache({ cache }), { namespace: 'del' });
    await keyv.set('a', 1);
    await keyv.set('b', 2);
    await cache.flush();
    expect(await keyv.delete('a')).toBe(true);
    expect((await redisCli(redis.port, 'EXISTS', 'kv:del:a')).trim()).toBe('0');
    expect(await keyv.get('a')).toBeUndefined();
    await keyv.clear();
    expect((await redisCli(redis.port, 'EXISTS', 'kv:del:b')).trim()).toBe('0');
    expect(await keyv.get('b')).toBeUndefined();
    await cache.flush();
    expect((await redisCli(redis.port, 'EXISTS', 'kv:del:a', 'kv:del:b')).trim()).toBe('0');
  });
});
