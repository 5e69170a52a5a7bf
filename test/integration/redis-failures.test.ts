// The Redis tier when Redis fails: a crash (kill -9) mid-stream, a frozen
// server (SIGSTOP) and backpressure, flush timeouts, connection errors, a key
// Redis refuses, and hostile bytes under the cache's prefix.
import { describe, expect, it } from 'vitest';
import { ShardCacheError } from 'shardcache';
import { turn } from '../support/event-loop.js';
import { waitFor } from '../support/poll.js';
import { prng } from '../support/prng.js';
import { redisCli } from '../support/redis-cli.js';
import { redisFixture } from '../support/redis-fixture.js';
import { encode, readRedis } from '../support/redis-format.js';
import { dbsize } from '../support/redis-stats.js';
import { testCache } from '../support/test-cache.js';
import { piscinaPool } from '../support/worker-threads.js';

describe('Redis tier failures', () => {
  // Tests crash, freeze, stop and reconfigure their server: each gets a fresh one.
  const fixture = redisFixture({ lifetime: 'test', cacheRedis: { writeBehind: { flushIntervalMs: 5 } } });
  const { cacheOn, cleanup, freeze } = fixture;

  it('survives kill -9 of Redis halfway through 100k writes: after restart and flush() every key holds its last value', async () => {
    const redis = fixture.server;
    const { cache, client } = await cacheOn();
    const errors: Error[] = [];
    cache.on('error', (error: Error) => errors.push(error));
    const TOTAL = 100_000;
    const KEYS = 5_000;
    const random = prng(9);
    const last = new Map<string, unknown>();
    let calls = 0;
    let restarting: Promise<void> | undefined;
    let crashedRunId = '';
    const runId = (info: string) => /^run_id:(\w+)/m.exec(info)![1]!;
    for (let i = 0; i < TOTAL; i++) {
      if (i === TOTAL / 2) {
        // Some of the stream is in Redis already, some is in flight: crash it now.
        await waitFor('part of the stream to reach Redis', () => cache.stats().redis!.flushed > 0);
        crashedRunId = runId(await redisCli(redis.port, 'INFO', 'server'));
        await redis.kill9();
      }
      if (i === (TOTAL * 7) / 10) restarting = redis.restart(); // same port; writes go on meanwhile
      // Keys cycle, so every key's last write comes after the crash (Redis restarts empty).
      const key = `k${i % KEYS}`;
      if (random() < 0.1) {
        cache.delete(key);
        last.delete(key);
      } else {
        const value = { i, tag: `v${i % 97}` };
        cache.set(key, value);
        last.set(key, value);
      }
      calls++;
      if (i % 1000 === 999) await turn();
    }
    await restarting;
    await cache.flush({ timeoutMs: 90_000 });

    const keys = Array.from({ length: KEYS }, (_, i) => `k${i}`);
    expect(await readRedis(client, 'app:', keys)).toEqual(last);
    expect(await dbsize(redis.port)).toBe(last.size);
    const stats = cache.stats().redis!;
    expect(stats.pending).toBe(0);
    expect(stats.failed).toBe(0);
    // Every set/delete was logged once and counted once as flushed or failed.
    expect(stats.pending + stats.flushed + stats.failed).toBe(calls);
    // It really was a new Redis (a crash loses everything: no persistence).
    expect(runId(await redisCli(redis.port, 'INFO', 'server'))).not.toBe(crashedRunId);
    expect(errors.filter((e) => (e as ShardCacheError).code === 'ERR_REDIS')).toEqual([]);
  }, 120_000);

  it('counts every accepted write as pending while Redis is frozen, refuses exactly at maxPending on the creating thread, and lands them all after it thaws', async () => {
    const redis = fixture.server;
    const MAX_PENDING = 2_000;
    const { cache, client } = await cacheOn({
      maxValueBytes: 1024,
      backpressureTimeoutMs: 300,
      redis: { writeBehind: { flushIntervalMs: 5, maxPending: MAX_PENDING } },
    });
    const thaw = await freeze();
    let accepted = 0;
    let refusal: unknown;
    let maxEntries = 0;
    for (let i = 0; i < 200_000 && refusal === undefined; i++) {
      try {
        cache.set(`k${i}`, i);
        accepted++;
      } catch (error) {
        refusal = error;
      }
      // At every moment, wherever the writes wait (write queue, owner, change log).
      const stats = cache.stats();
      expect(stats.redis!.pending + stats.redis!.flushed + stats.redis!.failed).toBe(accepted);
      maxEntries = Math.max(maxEntries, stats.entries);
      if (i % 100 === 0) await turn(); // the flusher runs (and finds Redis frozen)
    }
    expect(refusal).toBeInstanceOf(ShardCacheError);
    expect((refusal as ShardCacheError).code).toBe('ERR_BACKPRESSURE');
    expect((refusal as ShardCacheError).message).toContain('maxPending');
    expect(accepted).toBe(MAX_PENDING);
    expect(() => cache.set('one-more', 1)).toThrow(expect.objectContaining({ code: 'ERR_BACKPRESSURE' }));
    expect(() => cache.delete('k0')).toThrow(expect.objectContaining({ code: 'ERR_BACKPRESSURE' }));
    expect(() => cache.clear()).toThrow(expect.objectContaining({ code: 'ERR_BACKPRESSURE' }));
    expect(cache.stats().redis!.pending).toBe(MAX_PENDING);
    expect(maxEntries).toBeLessThanOrEqual(MAX_PENDING);
    // Nothing refused was stored: the first key is still there, the refused one is not.
    expect(cache.get('k0')).toBe(0);
    expect(cache.get('one-more')).toBeUndefined();

    await thaw();
    await cache.flush({ timeoutMs: 30_000 });
    const keys = Array.from({ length: accepted }, (_, i) => `k${i}`);
    expect(await readRedis(client, 'app:', keys)).toEqual(new Map(keys.map((key, i) => [key, i])));
    expect(await dbsize(redis.port)).toBe(accepted);
    expect(cache.stats().redis).toMatchObject({ pending: 0, flushed: accepted, failed: 0 });

    // And it takes writes again.
    cache.set('after', 'thaw');
    await cache.flush();
    expect(await readRedis(client, 'app:', ['after'])).toEqual(new Map([['after', 'thaw']]));
  });

  it('makes writers on attached threads wait at maxPending while Redis is frozen, and go on once it thaws', async () => {
    const MAX_PENDING = 1_000;
    const { cache, client } = await cacheOn({
      backpressureTimeoutMs: 20_000,
      redis: { writeBehind: { flushIntervalMs: 5, maxPending: MAX_PENDING } },
    });
    const pool = piscinaPool('cache-worker.mjs', 2, cleanup);
    const thaw = await freeze();
    const ops = (thread: string) => Array.from({ length: 1_500 }, (_, i) => ({ key: `${thread}:${i}`, value: i }));
    const writers = [pool.run({ job: 'write', handle: cache.handle, ops: ops('a') }), pool.run({ job: 'write', handle: cache.handle, ops: ops('b') })];
    for (const writer of writers) writer.catch(() => {}); // awaited below
    await waitFor('the writers to fill maxPending', () => cache.stats().redis!.pending === MAX_PENDING);
    // Both are stuck at the bound: pending never passes it while they wait.
    expect(cache.stats().redis!.pending).toBe(MAX_PENDING);
    await thaw();
    const done = (await Promise.all(writers)) as { calls: number }[];
    expect(done.map((d) => d.calls)).toEqual([1_500, 1_500]);
    await cache.flush();
    expect(cache.stats().redis).toMatchObject({ pending: 0, flushed: 3_000, failed: 0 });
    const keys = [...ops('a'), ...ops('b')].map((op) => op.key);
    expect((await readRedis(client, 'app:', keys)).size).toBe(3_000);
  });

  it('rejects flush({timeoutMs}) with ERR_FLUSH_TIMEOUT naming the pending count while Redis is frozen or down', async () => {
    const redis = fixture.server;
    const { cache, client } = await cacheOn({ redis: { writeBehind: { flushIntervalMs: 5 } } });
    const thaw = await freeze();
    const keys = Array.from({ length: 37 }, (_, i) => `frozen${i}`);
    keys.forEach((key, i) => cache.set(key, i));
    await cache.settled();
    const started = Date.now();
    const error = await cache.flush({ timeoutMs: 200 }).then(() => undefined, (e: unknown) => e);
    const elapsed = Date.now() - started;
    expect(error).toBeInstanceOf(ShardCacheError);
    expect((error as ShardCacheError).code).toBe('ERR_FLUSH_TIMEOUT');
    expect((error as Error).message).toMatch(/\b37 write\(s\)/);
    expect(cache.stats().redis!.pending).toBe(37);
    expect(elapsed).toBeGreaterThanOrEqual(190);
    expect(elapsed).toBeLessThan(5_000);

    await thaw();
    await cache.flush({ timeoutMs: 30_000 });
    expect((await readRedis(client, 'app:', keys)).size).toBe(37);

    // Down rather than frozen: connections are refused until it comes back.
    await redis.stop();
    cache.set('while-down', 'x');
    cache.delete('frozen0');
    await cache.settled();
    const downError = await cache.flush({ timeoutMs: 200 }).then(() => undefined, (e: unknown) => e);
    expect((downError as ShardCacheError).code).toBe('ERR_FLUSH_TIMEOUT');
    expect((downError as Error).message).toMatch(/\b2 write\(s\)/);
    await redis.restart();
    await cache.flush({ timeoutMs: 30_000 });
    // Redis came back empty (no persistence): only what was written since is there.
    expect(await readRedis(client, 'app:', ['while-down', 'frozen0', 'frozen1'])).toEqual(new Map([['while-down', 'x']]));
    expect(cache.stats().redis).toMatchObject({ pending: 0, flushed: 39, failed: 0 });
  });

  it('reports connection errors of a client it made from a url through the error event, and recovers', async () => {
    const redis = fixture.server;
    const cache = await testCache({ redis: { url: redis.url, keyPrefix: 'app:', writeBehind: { flushIntervalMs: 5 } } }, cleanup);
    const errors: Error[] = [];
    cache.on('error', (error: Error) => errors.push(error));
    await redis.stop();
    cache.set('while-down', { n: 1 });
    await waitFor('a connection error to be reported', () => errors.length > 0);
    expect(errors[0]).toBeInstanceOf(Error);
    expect(cache.stats().redis!.pending).toBe(1);
    await redis.restart();
    await cache.flush({ timeoutMs: 30_000 });
    const check = fixture.client();
    expect(await readRedis(check, 'app:', ['while-down'])).toEqual(new Map([['while-down', { n: 1 }]]));
    expect(cache.stats().redis).toMatchObject({ pending: 0, flushed: 1, failed: 0 });
  });

  it('reports a key Redis refuses through an error event, counts it as failed, and still lands the other keys', async () => {
    const redis = fixture.server;
    // A user that may only touch app:ok*: Redis answers NOPERM for app:bad and
    // nothing else, a per-key reply error (not a connection failure).
    expect(await redisCli(redis.port, 'ACL', 'SETUSER', 'limited', 'on', 'nopass', 'resetkeys', '~app:ok*', 'allchannels', '+@all')).toBe('OK\n');
    const { cache } = await cacheOn({
      clientOptions: { username: 'limited', password: 'unused' },
      redis: { writeBehind: { flushIntervalMs: 5, maxAttempts: 3 } },
    });
    const admin = fixture.client();
    const errors: Error[] = [];
    cache.on('error', (error: Error) => errors.push(error));

    const ok = Array.from({ length: 50 }, (_, i) => `ok${i}`);
    ok.slice(0, 25).forEach((key, i) => cache.set(key, i));
    cache.set('bad', { refused: true });
    ok.slice(25).forEach((key, i) => cache.set(key, 25 + i));
    await cache.flush();

    expect(await readRedis(admin, 'app:', ok)).toEqual(new Map(ok.map((key, i) => [key, i])));
    expect(await admin.exists('app:bad')).toBe(0);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(ShardCacheError);
    expect((errors[0] as ShardCacheError).code).toBe('ERR_REDIS');
    expect((errors[0] as ShardCacheError & { key?: string }).key).toBe('bad');
    expect(errors[0]!.message).toContain('NOPERM');
    const stats = cache.stats().redis!;
    expect(stats).toMatchObject({ pending: 0, flushed: 50, failed: 1 });
    expect(stats.retries).toBeGreaterThanOrEqual(2); // maxAttempts 3: two re-sends

    // Two more writes of the bad key: one error (one key), two failed records; others unaffected.
    cache.set('bad', 1);
    cache.delete('bad');
    cache.set('ok-later', 'fine');
    await cache.flush();
    expect(errors).toHaveLength(2);
    expect((errors[1] as ShardCacheError & { key?: string }).key).toBe('bad');
    // The set and the delete of 'bad' meet Redis as one DEL if one batch takes
    // both records (2 failed), or as a skipped set (superseded by the delete,
    // counted flushed) and a DEL (1 failed) if the flush timer falls between.
    const after = cache.stats().redis!;
    expect(after.pending).toBe(0);
    expect(after.flushed + after.failed).toBe(54);
    expect([2, 3]).toContain(after.failed);
    expect(await readRedis(admin, 'app:', ['ok-later'])).toEqual(new Map([['ok-later', 'fine']]));
  });

  it('rejects the never-used msgpack byte 0xc1 with ERR_DECODE', async () => {
    const { cache, client } = await cacheOn();
    await client.set('app:c1', Buffer.from([0xc1]));
    await expect(cache.fetch('c1')).rejects.toMatchObject({ code: 'ERR_DECODE' });
    await cache.settled();
    expect(cache.get('c1')).toBeUndefined();
  });

  it('rejects bytes under its prefix that do not decode with ERR_DECODE, keeps working, and is not prototype-polluted by them', async () => {
    const { cache, client } = await cacheOn();
    const junk: Record<string, Buffer> = {
      text: Buffer.from('hello'), // a fixint followed by garbage
      truncated: Buffer.from([0x92, 0x01]), // an array of 2 with one element
      huge: Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xff, 0x61]), // claims a 4 GiB string
    };
    for (const [key, bytes] of Object.entries(junk)) await client.set(`app:${key}`, bytes);
    await client.set('app:fine', encode({ fine: true }));

    for (const key of Object.keys(junk)) {
      const error = await cache.fetch(key).then(() => undefined, (e: unknown) => e);
      expect(error, key).toBeInstanceOf(ShardCacheError);
      expect((error as ShardCacheError).code, key).toBe('ERR_DECODE');
      expect(cache.get(key), key).toBeUndefined(); // nothing of it was kept
    }
    await expect(cache.fetchMany(['fine', 'text'])).rejects.toMatchObject({ code: 'ERR_DECODE' });
    // The process and the cache keep working.
    expect(await cache.fetch('fine')).toEqual({ fine: true });
    cache.set('after', [1, 2]);
    await cache.flush();
    expect(await readRedis(client, 'app:', ['after'])).toEqual(new Map([['after', [1, 2]]]));

    // A msgpack map {"__proto__": {"x": 1}, "y": 2} as any encoder writes it:
    // a plain object whose "__proto__" is an own key, never its prototype.
    const protoMap = Buffer.from([0x82, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa1, 0x78, 0x01, 0xa1, 0x79, 0x02]);
    await client.set('app:proto-map', protoMap);
    const value = await cache.fetch('proto-map') as Record<string, unknown>;
    expect(({} as Record<string, unknown>).x).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('x');
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.keys(value)).toEqual(['__proto__', 'y']);
    expect(Object.getOwnPropertyDescriptor(value, '__proto__')?.value).toEqual({ x: 1 });
    expect(value.x).toBeUndefined();
    expect(value.y).toBe(2);
    // msgpackr's record extension is not standard msgpack: refused, not misread.
    await client.set('app:proto-record', Buffer.from([0xd4, 0x72, 0x40, 0x91, 0xa1, 0x79, 0x02]));
    await expect(cache.fetch('proto-record')).rejects.toMatchObject({ code: 'ERR_DECODE' });
  });
});
