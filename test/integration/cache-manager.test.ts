// cache-manager 7 over KeyvShardCache, as its README builds a cache:
// createCache({ stores: [new Keyv({ store })] }). set, get, del, ttl, mset,
// mget, clear, wrap (one loader call for concurrent callers, and none in a
// worker thread once the main thread stored the value), disconnect.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createCache } from 'cache-manager';
import Keyv from 'keyv';
import { Piscina } from 'piscina';
import { ShardCache } from 'shardcache';
import { KeyvShardCache } from 'shardcache/keyv';
import { MiB } from '../support/bytes.js';

describe('cache-manager over KeyvShardCache', () => {
  let cache: ShardCache;

  beforeAll(async () => {
    cache = await ShardCache.create({ shards: 2, maxBytes: 16 * MiB });
  });
  afterAll(async () => {
    await cache?.close();
  });

  function manager(namespace?: string) {
    const keyv = new Keyv({ store: new KeyvShardCache({ cache }), ...(namespace !== undefined ? { namespace } : {}) });
    return createCache({ stores: [keyv] });
  }

  it('set, get and del', async () => {
    const m = manager();
    expect(await m.set('user:1', { name: 'Ada' })).toEqual({ name: 'Ada' });
    expect(await m.get('user:1')).toEqual({ name: 'Ada' });
    // In the shared cache under Keyv's namespace: every thread of the process reads it.
    expect(JSON.parse(cache.get('keyv:user:1') as string).value).toEqual({ name: 'Ada' });
    expect(await m.del('user:1')).toBe(true);
    expect(await m.get('user:1')).toBeUndefined();
    expect(cache.has('keyv:user:1')).toBe(false);
  });

  it("set with a TTL: ttl() answers Keyv's expiry, and the cache entry carries the TTL", async () => {
    const m = manager('ttl');
    const before = Date.now();
    await m.set('k', 'v', 60_000);
    const expires = await m.ttl('k');
    expect(expires).toBeGreaterThanOrEqual(before + 60_000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 60_000);
    expect(await m.ttl('missing')).toBeUndefined();
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(expires! + 1);
      expect(cache.has('ttl:k')).toBe(false);
      expect(await m.get('k')).toBeUndefined();
    } finally {
      vi.useRealTimers();
    }
  });

  it('mset, mget and clear (of its namespace only)', async () => {
    const m = manager('multi');
    const other = manager('other');
    await other.set('x', 'stays');
    await m.mset([{ key: 'a', value: 1 }, { key: 'b', value: 2, ttl: 60_000 }]);
    expect(await m.mget(['a', 'missing', 'b'])).toEqual([1, undefined, 2]);
    expect(await m.clear()).toBe(true);
    expect(await m.mget(['a', 'b'])).toEqual([undefined, undefined]);
    expect(await other.get('x')).toBe('stays');
  });

  it('wrap calls the loader once for concurrent callers, then serves the cached value', async () => {
    const m = manager('wrap');
    let calls = 0;
    const loader = async () => {
      calls++;
      await new Promise((resolve) => setImmediate(resolve));
      return { loaded: calls };
    };
    const first = await Promise.all(Array.from({ length: 10 }, () => m.wrap('report', loader, 60_000)));
    expect(first).toEqual(Array.from({ length: 10 }, () => ({ loaded: 1 })));
    expect(await m.wrap('report', loader, 60_000)).toEqual({ loaded: 1 });
    expect(calls).toBe(1);
  });

  it('wrap in a worker thread finds what the main thread stored: the loader does not run there', async () => {
    const pool = new Piscina({ filename: new URL('./fixtures/keyv-task.mjs', import.meta.url).href, minThreads: 1, maxThreads: 1 });
    try {
      const m = manager();
      expect(await m.wrap('shared-report', async () => ({ from: 'main' }), 60_000)).toEqual({ from: 'main' });
      await cache.settled(); // other threads see it
      const result = await pool.run({ job: 'wrap-loader', handle: cache.handle, key: 'shared-report' });
      expect(result).toMatchObject({ value: { from: 'main' }, loaderRan: false });
      // And the other way round: the worker's loader result is the main thread's hit.
      const fresh = await pool.run({ job: 'wrap-loader', handle: cache.handle, key: 'worker-report' });
      expect(fresh.loaderRan).toBe(true);
      expect(await m.get('worker-report')).toEqual({ from: fresh.threadId });
    } finally {
      await pool.destroy();
    }
  });

  it('disconnect() closes a cache the store built, and leaves a wrapped one open', async () => {
    const ownStore = new KeyvShardCache({ shards: 1, maxBytes: 4 * MiB });
    const own = createCache({ stores: [new Keyv({ store: ownStore })] });
    await own.set('k', 1);
    expect(await own.get('k')).toBe(1);
    const built = await ownStore.getCache();
    const wrapped = manager('disconnect');
    await wrapped.set('k', 2);
    await own.disconnect();
    await wrapped.disconnect();
    expect(built.closed).toBe(true);
    expect(cache.closed).toBe(false);
    expect(JSON.parse(cache.get('disconnect:k') as string).value).toBe(2);
  });
});
