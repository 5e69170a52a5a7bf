// Write-behind to a real redis-server: coalescing, order, bytes, TTL, prefix,
// client ownership, and writes issued from piscina worker threads.
import { describe, expect, it } from 'vitest';
import { encode as encodeMsgpack } from '@msgpack/msgpack';
import { ShardCacheError } from 'shardcache';
import { turn } from '../support/event-loop.js';
import { waitFor } from '../support/poll.js';
import { prng } from '../support/prng.js';
import { randomValue } from '../support/random-value.js';
import { redisCli } from '../support/redis-cli.js';
import { redisFixture } from '../support/redis-fixture.js';
import { decode, readRedis } from '../support/redis-format.js';
import { commandCalls, dbsize } from '../support/redis-stats.js';
import { testCache } from '../support/test-cache.js';
import { piscinaPool } from '../support/worker-threads.js';

/** Long enough that only flush() (or close()) starts a flush: makes command counts exact. */
const NO_TIMER = { flushIntervalMs: 60_000 };

describe('Redis write-behind', () => {
  // Caches write behind with NO_TIMER unless a test says otherwise.
  const redis = redisFixture({ resetStats: true, cacheRedis: { writeBehind: NO_TIMER } });
  const { cacheOn, cleanup } = redis;

  /** A cache with an empty local store that only reads Redis: what another process would see. */
  async function readerOn(keyPrefix = 'app:') {
    const { cache } = await cacheOn({ shards: 1, redis: { keyPrefix, writeBehind: false } });
    return cache;
  }

  it('lands an exact set/delete sequence on one key as its last state, coalesced into one command', async () => {
    const { cache, client } = await cacheOn();
    cache.set('k', 1).set('k', 2);
    cache.delete('k');
    cache.set('k', 3);
    cache.delete('k');
    cache.set('k', 4);
    cache.set('gone', 'a');
    cache.delete('gone');
    cache.set('gone', 'b');
    cache.delete('gone');
    await cache.flush();

    expect(await readRedis(client, 'app:', ['k', 'gone'])).toEqual(new Map([['k', 4]]));
    // Ten writes, two keys: one SET (the last state of k) and one DEL (gone).
    expect(await commandCalls(redis.port, 'set')).toBe(1);
    expect(await commandCalls(redis.port, 'del')).toBe(1);
    expect(cache.stats().redis).toMatchObject({ pending: 0, flushed: 10, retries: 0, failed: 0 });

    // Across flushes the last state wins each time too.
    cache.set('k', 5);
    cache.delete('k');
    await cache.flush();
    expect(await client.exists('app:k')).toBe(0);
    cache.delete('k');
    cache.set('k', 6);
    await cache.flush();
    expect(await readRedis(client, 'app:', ['k'])).toEqual(new Map([['k', 6]]));
    cache.set('k', undefined); // setting undefined deletes
    await cache.flush();
    expect(await client.exists('app:k')).toBe(0);
    expect(cache.stats().redis).toMatchObject({ pending: 0, flushed: 15, failed: 0 });
  });

  it('matches a Map model after random set/delete sequences on many keys', async () => {
    const { cache, client } = await cacheOn({ redis: { writeBehind: { flushIntervalMs: 2, batchSize: 64 } } });
    const random = prng(20261122);
    const keys = Array.from({ length: 400 }, (_, i) => (i % 50 === 0 ? `ключ-${i}-🙂` : `user:${i}`));
    const model = new Map<string, unknown>();
    const pick = () => keys[Math.floor(random() * keys.length)]!;
    let calls = 0;
    for (let n = 0; n < 20_000; n++) {
      const r = random();
      if (r < 0.6) {
        const key = pick();
        const value = randomValue(random, n);
        cache.set(key, value);
        model.set(key, value);
        calls++;
      } else if (r < 0.7) {
        const key = pick();
        const value = randomValue(random, n);
        cache.set(key, value, { ttlMs: 600_000 });
        model.set(key, value);
        calls++;
      } else if (r < 0.88) {
        const key = pick();
        cache.delete(key);
        model.delete(key);
        calls++;
      } else if (r < 0.93) {
        const key = pick();
        cache.set(key, undefined);
        model.delete(key);
        calls++;
      } else {
        const entries: [string, unknown][] = [[pick(), n], [pick(), undefined], [pick(), `many-${n}`]];
        cache.setMany(entries);
        for (const [key, value] of entries) {
          if (value === undefined) model.delete(key);
          else model.set(key, value);
        }
        calls += entries.length;
      }
      // Let flushes run while writes keep coming, so batches cut sequences anywhere.
      if (n % 400 === 399) await turn();
      if (n % 5000 === 4999) {
        await cache.flush();
        expect(await readRedis(client, 'app:', keys)).toEqual(model);
      }
    }
    await cache.flush();

    expect(await readRedis(client, 'app:', keys)).toEqual(model);
    expect(await dbsize(redis.port)).toBe(model.size);
    // Every set/delete was logged once and is now counted once as flushed or failed.
    const stats = cache.stats().redis!;
    expect(stats.pending).toBe(0);
    expect(stats.failed).toBe(0);
    expect(stats.pending + stats.flushed + stats.failed).toBe(calls);

    // Another cache with an empty local store reads the same values back through Redis.
    const reader = await readerOn();
    expect(await reader.fetchMany(keys)).toEqual(keys.map((key) => model.get(key)));
  });

  it('stores standard msgpack in Redis: plain objects as maps, JS-only types as the documented extensions', async () => {
    const { cache, client } = await cacheOn();
    const values: Record<string, unknown> = {
      int: 42,
      float: -1.25,
      text: 'héllo wörld 🙂',
      object: { id: 7, name: 'Ada', roles: ['admin', 'dev'], profile: { since: new Date(1_600_000_000_000), active: true } },
      array: [1, 'two', null, [3], { four: 4 }],
      map: new Map<unknown, unknown>([['a', 1], [2, 'b']]),
      set: new Set(['x', 'y']),
      buffer: Buffer.from('raw bytes'),
      nil: null,
      big: 2n ** 70n,
    };
    for (const [key, value] of Object.entries(values)) cache.set(key, value);
    await cache.flush();

    const reader = await readerOn();
    for (const [key, value] of Object.entries(values)) {
      const raw = await client.getBuffer(`app:${key}`);
      expect(raw, key).not.toBeNull();
      // Read by another implementation that knows only the documented format.
      expect(decode(raw!), key).toEqual(value);
      // JSON-like values use core types only: byte for byte what a plain encoder writes.
      if (!(value instanceof Map || value instanceof Set || typeof value === 'bigint')) {
        expect(raw!.equals(Buffer.from(encodeMsgpack(value))), key).toBe(true);
      }
      expect(await reader.fetch(key), key).toEqual(value);
    }
  });

  it('takes TTLs of a year and Infinity (no expiry), locally and in Redis, and flush() waits with a year-long timeout', async () => {
    const YEAR = 365 * 24 * 3600 * 1000;
    const { cache, client } = await cacheOn();
    cache.set('year', 'v', { ttlMs: YEAR });
    cache.set('forever', 'v', { ttlMs: Number.POSITIVE_INFINITY });
    cache.setMany([['many', 'v']], { ttlMs: YEAR * 2 });
    // A timeout past setTimeout's 24.8 days must not fire at once.
    await cache.flush({ timeoutMs: YEAR });
    await cache.settled();
    for (const key of ['year', 'forever', 'many']) expect(cache.get(key), key).toBe('v');
    const year = await client.pttl('app:year');
    expect(year).toBeGreaterThan(YEAR - 60_000);
    expect(year).toBeLessThanOrEqual(YEAR);
    expect(await client.pttl('app:many')).toBeGreaterThan(2 * YEAR - 60_000);
    expect(await client.pttl('app:forever')).toBe(-1);
    const lock = await cache.lock('year-lock', { ttlMs: YEAR, autoRenew: true });
    expect(await lock.release()).toBe(true);
  });

  it('carries the TTL to Redis as PX and removes deleted keys', async () => {
    const { cache, client } = await cacheOn();
    cache.set('ttl', 'v', { ttlMs: 60_000 });
    cache.set('forever', 'v');
    cache.set('was-ttl', 'v', { ttlMs: 60_000 });
    cache.set('was-ttl', 'w'); // the last write has no TTL
    cache.set('doomed', 'v', { ttlMs: 60_000 });
    await cache.flush();

    const ttl = await client.pttl('app:ttl');
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);
    expect(await client.pttl('app:forever')).toBe(-1);
    expect(await client.pttl('app:was-ttl')).toBe(-1);
    expect(await client.pttl('app:doomed')).toBeGreaterThan(0);

    cache.set('forever', 'now with a ttl', { ttlMs: 30_000 });
    cache.delete('doomed');
    await cache.flush();
    const replaced = await client.pttl('app:forever');
    expect(replaced).toBeGreaterThan(0);
    expect(replaced).toBeLessThanOrEqual(30_000);
    expect(await client.exists('app:doomed')).toBe(0);

    // The cache-wide default TTL applies too, and ttlMs 0 overrides it with "never".
    const other = await cacheOn({ ttlMs: 45_000, redis: { keyPrefix: 'dflt:' } });
    other.cache.set('a', 1);
    other.cache.set('b', 2, { ttlMs: 0 });
    await other.cache.flush();
    const fromDefault = await client.pttl('dflt:a');
    expect(fromDefault).toBeGreaterThan(0);
    expect(fromDefault).toBeLessThanOrEqual(45_000);
    expect(await client.pttl('dflt:b')).toBe(-1);
  });

  it('writes only under its keyPrefix, and clear() removes only keys under it (glob characters taken literally)', async () => {
    const client = redis.client();
    const plain = await testCache({ redis: { client, writeBehind: NO_TIMER } }, cleanup); // the default keyPrefix
    plain.set('k', 1);
    await plain.flush();
    expect(await client.keys('*')).toEqual(['shardcache:k']);

    const prefix = 'p?[ab]*:';
    const { cache } = await cacheOn({ redis: { keyPrefix: prefix } });
    cache.set('one', 1);
    cache.set('two', 2);
    await cache.flush();
    // Keys that the prefix, read as a glob, would match; and unrelated ones.
    await client.mset('pxa:one', 'foreign', 'pqb-x:two', 'foreign', 'other:1', 'foreign');
    expect((await client.keys('*')).sort()).toEqual(['other:1', `${prefix}one`, `${prefix}two`, 'pqb-x:two', 'pxa:one', 'shardcache:k'].sort());

    cache.clear();
    expect(cache.get('one')).toBeUndefined();
    await cache.flush();
    expect((await client.keys('*')).sort()).toEqual(['other:1', 'pqb-x:two', 'pxa:one', 'shardcache:k']);
    expect(await client.get('pxa:one')).toBe('foreign');
  });

  it('does not close a client it was given, closes one it made from a url, and flushes on close()', async () => {
    const given = redis.client();
    const cache = await testCache({ redis: { client: given, keyPrefix: 'app:', writeBehind: NO_TIMER } }); // closed below
    const keys = Array.from({ length: 100 }, (_, i) => `given:${i}`);
    keys.forEach((key, i) => cache.set(key, i));
    await cache.close(); // no flush() first: close() must flush
    expect(given.status).toBe('ready');
    expect(await given.ping()).toBe('PONG');
    const givenId = String(await given.client('ID'));
    expect(await readRedis(given, 'app:', keys)).toEqual(new Map(keys.map((key, i) => [key, i])));

    // Connections by id, leaving out redis-cli's own.
    const connections = async () => new Set((await redisCli(redis.port, 'CLIENT', 'LIST')).trim().split('\n')
      .filter((line) => !line.includes('cmd=client|list'))
      .map((line) => /^id=(\d+)/.exec(line)![1]!));
    const before = await connections();
    const owning = await testCache({ redis: { url: redis.url, keyPrefix: 'app:', writeBehind: NO_TIMER } });
    let closed = false;
    cleanup.add(() => (closed ? undefined : owning.close()));
    // Its own connection(s): the client it made (and what that client opened, e.g. a subscriber).
    let own: string[] = [];
    await waitFor('the cache to open its own connection', async () => {
      own = [...(await connections())].filter((id) => !before.has(id));
      return own.length > 0;
    });
    owning.set('from-url', 'x');
    await owning.close();
    closed = true;
    await waitFor('the cache to close its own connections', async () => {
      const now = await connections();
      return own.every((id) => !now.has(id));
    });
    // The given client's connection is still the same one.
    expect((await connections()).has(givenId)).toBe(true);
    expect(String(await given.client('ID'))).toBe(givenId);
    expect(await readRedis(given, 'app:', ['from-url'])).toEqual(new Map([['from-url', 'x']]));
  });

  it('never writes to Redis with writeBehind: false', async () => {
    const { cache } = await cacheOn({ redis: { writeBehind: false } });
    cache.set('local-only', 1);
    cache.delete('other');
    await cache.flush(); // resolves at once: nothing to wait for
    expect(cache.get('local-only')).toBe(1);
    expect(cache.stats().redis).toBeUndefined();
    expect(await dbsize(redis.port)).toBe(0);
    expect(await commandCalls(redis.port, 'set')).toBe(0);
    expect(await commandCalls(redis.port, 'del')).toBe(0);
  });

  it('flushes writes made on piscina worker threads when the worker awaits flush()', async () => {
    const { cache, client } = await cacheOn();
    const pool = piscinaPool('cache-worker.mjs', 2, cleanup);
    const task = (thread: string) => ({
      job: 'write',
      handle: cache.handle,
      ops: [
        ...Array.from({ length: 500 }, (_, i) => ({ key: `${thread}:${i}`, value: { thread, i } })),
        { key: `${thread}:seq`, value: 1 }, { key: `${thread}:seq`, value: 2 }, { key: `${thread}:seq`, delete: true },
        { key: `${thread}:seq`, value: 3 }, { key: `${thread}:seq`, delete: true }, { key: `${thread}:seq`, value: 4 },
        { key: `${thread}:gone`, value: 'x' }, { key: `${thread}:gone`, delete: true },
      ],
    });
    const results = await Promise.all([pool.run(task('w1')), pool.run(task('w2'))]);
    expect(new Set(results.map((r: { threadId: number }) => r.threadId)).size).toBe(2);

    // No flush on this thread: the workers' flush() calls are what put the writes in Redis.
    for (const thread of ['w1', 'w2']) {
      const keys = [...Array.from({ length: 500 }, (_, i) => `${thread}:${i}`), `${thread}:seq`, `${thread}:gone`];
      const expected = new Map<string, unknown>(Array.from({ length: 500 }, (_, i) => [`${thread}:${i}`, { thread, i }]));
      expected.set(`${thread}:seq`, 4);
      expect(await readRedis(client, 'app:', keys)).toEqual(expected);
    }
    const calls = results.reduce((sum: number, r: { calls: number }) => sum + r.calls, 0);
    expect(calls).toBe(2 * 508);
    expect(cache.stats().redis).toMatchObject({ pending: 0, flushed: calls, failed: 0 });
  });

  it('starts a flush early once batchSize writes wait, without waiting for flushIntervalMs', async () => {
    const { cache, client } = await cacheOn({ redis: { writeBehind: { flushIntervalMs: 60_000, batchSize: 10 } } });
    const keys = Array.from({ length: 100 }, (_, i) => `early:${i}`);
    keys.forEach((key, i) => cache.set(key, i));
    await cache.settled();
    await waitFor('the write-behind to flush without flush() or its timer', () => cache.stats().redis!.pending === 0, 3_000);
    expect((await readRedis(client, 'app:', keys)).size).toBe(100);
  });

  it('never lets two distinct keys share one Redis key', async () => {
    const { cache } = await cacheOn();
    let refused: unknown;
    try {
      cache.set('lone-\uD800', 1);
      cache.set('lone-\uDBFF', 2);
    } catch (error) {
      refused = error;
    }
    if (refused !== undefined) {
      expect(refused).toBeInstanceOf(ShardCacheError);
      expect((refused as ShardCacheError).code).toBe('ERR_INVALID_KEY');
      return;
    }
    await cache.flush();
    const reader = await readerOn();
    expect(await reader.fetch('lone-\uD800')).toBe(1);
    expect(await reader.fetch('lone-\uDBFF')).toBe(2);
  });
});
