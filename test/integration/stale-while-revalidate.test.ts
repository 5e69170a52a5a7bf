// fetch with staleWhileRevalidateMs: a stale value is served at once while one
// refresh runs (one per key in the process), get and has never see it, and a
// failed refresh keeps it until its window ends. Waits are on conditions.
import { describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../support/cleanup.js';
import { waitFor } from '../support/poll.js';
import { redisFixture } from '../support/redis-fixture.js';
import { testAttach, testCache } from '../support/test-cache.js';

/** A loader whose calls wait until the test lets them finish. */
function gatedLoader<T>(value: T) {
  let calls = 0;
  let release!: () => void;
  let gate = new Promise<void>((resolve) => (release = resolve));
  const loader = async () => {
    calls++;
    await gate;
    return value;
  };
  return {
    loader,
    get calls() {
      return calls;
    },
    open() {
      release();
    },
    close() {
      gate = new Promise<void>((resolve) => (release = resolve));
    },
  };
}

describe('stale-while-revalidate (no Redis)', () => {
  const cleanup = cleanupAfterEach();

  it('serves a stale value to ten concurrent fetches at once, runs the loader once, then serves the new value', async () => {
    const cache = await testCache({}, cleanup);
    const first = await cache.fetch('k', { loader: () => 'v1', ttlMs: 100, staleWhileRevalidateMs: 30_000 });
    expect(first).toBe('v1');
    await cache.settled();
    await waitFor('the entry to go stale', () => cache.get('k') === undefined, 5_000);
    // Stale: get and has do not see it.
    expect(cache.has('k')).toBe(false);

    const slow = gatedLoader('v2');
    const fetches = Array.from({ length: 10 }, () => cache.fetch('k', { loader: slow.loader, ttlMs: 60_000, staleWhileRevalidateMs: 30_000 }));
    // All ten answer while the loader is still held: they did not wait for it.
    expect(await Promise.all(fetches)).toEqual(Array(10).fill('v1'));
    await waitFor('the refresh to call the loader', () => slow.calls === 1, 5_000);
    // More fetches while it runs join it.
    expect(await cache.fetch('k', { loader: slow.loader, ttlMs: 60_000, staleWhileRevalidateMs: 30_000 })).toBe('v1');
    expect(slow.calls).toBe(1);
    slow.open();
    await waitFor('the refresh to store its value', () => cache.get('k') === 'v2', 5_000);
    expect(await cache.fetch('k', { loader: slow.loader, ttlMs: 60_000, staleWhileRevalidateMs: 30_000 })).toBe('v2');
    expect(slow.calls).toBe(1);
  });

  it('refreshes once per key in the process: another instance of the cache serves the stale value without calling its loader', async () => {
    const cache = await testCache({}, cleanup);
    const other = await testAttach(cache.handle, cleanup);
    cache.set('k', 'old', { ttlMs: 100, staleWhileRevalidateMs: 30_000 });
    await cache.settled();
    await waitFor('the entry to go stale', () => other.get('k') === undefined, 5_000);
    const mine = gatedLoader('new');
    const theirs = gatedLoader('theirs');
    expect(await cache.fetch('k', { loader: mine.loader, ttlMs: 60_000, staleWhileRevalidateMs: 30_000 })).toBe('old');
    await waitFor('the first refresh to call its loader', () => mine.calls === 1, 5_000);
    expect(await other.fetch('k', { loader: theirs.loader, ttlMs: 60_000, staleWhileRevalidateMs: 30_000 })).toBe('old');
    mine.open();
    theirs.open();
    await waitFor('the refresh to reach the other instance', () => other.get('k') === 'new', 5_000);
    // The other instance's refresh found the key's refresh taken and gave up without loading.
    expect(theirs.calls).toBe(0);
  });

  it('reports a failed refresh through the error event and keeps serving the stale value', async () => {
    const cache = await testCache({}, cleanup);
    const errors: (Error & { code?: string; key?: string })[] = [];
    cache.on('error', (error) => errors.push(error));
    cache.set('k', 'stale', { ttlMs: 100, staleWhileRevalidateMs: 30_000 });
    await cache.settled();
    await waitFor('the entry to go stale', () => cache.get('k') === undefined, 5_000);
    const failing = () => Promise.reject(new Error('backend down'));
    expect(await cache.fetch('k', { loader: failing, ttlMs: 60_000, staleWhileRevalidateMs: 30_000 })).toBe('stale');
    await waitFor('the failure to be reported', () => errors.length === 1, 5_000);
    expect(errors[0]).toMatchObject({ code: 'ERR_REFRESH_FAILED', key: 'k' });
    expect(await cache.fetch('k', { loader: () => 'fresh', ttlMs: 60_000, staleWhileRevalidateMs: 30_000 })).toBe('stale');
    await waitFor('the second refresh to store its value', () => cache.get('k') === 'fresh', 5_000);
  });

  it('does not serve a stale value past its window, nor to a fetch without a window or loader', async () => {
    const cache = await testCache({}, cleanup);
    cache.set('k', 'old', { ttlMs: 100, staleWhileRevalidateMs: 1_000 });
    await cache.settled();
    await waitFor('the entry to go stale', () => cache.get('k') === undefined, 5_000);
    expect(await cache.fetch('k')).toBeUndefined();
    expect(await cache.fetch('k', { loader: () => 'loaded' })).toBe('loaded');
    cache.set('j', 'old', { ttlMs: 100, staleWhileRevalidateMs: 1_000 });
    await cache.settled();
    await waitFor('the window to end', async () => (await cache.fetch('j', { loader: () => undefined, staleWhileRevalidateMs: 1_000 })) === undefined, 5_000);
    expect(() => cache.set('x', 1, { ttlMs: 10, staleWhileRevalidateMs: -1 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
    expect(() => cache.set('x', 1, { ttlMs: 10, staleWhileRevalidateMs: 1e9 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }));
  });
});

describe('stale-while-revalidate with Redis', () => {
  const redis = redisFixture({ cacheRedis: { writeBehind: { flushIntervalMs: 60_000 } } });

  it('keeps the entry in Redis for ttl + window, and the stale window applies to the local copy', async () => {
    const { cache, client } = await redis.cacheOn();
    await cache.fetch('k', { loader: () => 'v1', ttlMs: 200, staleWhileRevalidateMs: 60_000 });
    await cache.flush();
    const pttl = await client.pttl('app:k');
    expect(pttl).toBeGreaterThan(55_000);
    expect(pttl).toBeLessThanOrEqual(60_200);
    await waitFor('the local copy to go stale', () => cache.get('k') === undefined, 5_000);
    const slow = gatedLoader('v2');
    expect(await cache.fetch('k', { loader: slow.loader, ttlMs: 60_000, staleWhileRevalidateMs: 60_000 })).toBe('v1');
    slow.open();
    await waitFor('the refresh to store its value', () => cache.get('k') === 'v2', 5_000);
    await cache.flush();
    expect(await client.pttl('app:k')).toBeGreaterThan(100_000);
  });
});
