// One cache, many threads: a plain worker_threads Worker and a piscina pool
// attach by handle and share the same data. The stress test has the main
// thread and two piscina workers read and write the same few keys at once,
// and checks every value read is one that key could legally hold.
import { beforeAll, describe, expect, it } from 'vitest';
import type { Piscina } from 'piscina';
import { ShardCache } from 'shardcache';
import { MiB } from '../support/bytes.js';
import { cleanupAfterAll, cleanupAfterEach } from '../support/cleanup.js';
import { turn } from '../support/event-loop.js';
import { expectRejectsCode } from '../support/expect-code.js';
import { testCache } from '../support/test-cache.js';
import { AttachedWorker, piscinaPool } from '../support/worker-threads.js';
import { Checker, burst, random32, valueOf } from './fixtures/stress-check.mjs';

const cleanup = cleanupAfterEach();

type Described = { value: unknown; type: string };

describe('a plain worker_threads Worker', () => {
  let cache: ShardCache;
  let worker: AttachedWorker;
  const suiteCleanup = cleanupAfterAll();

  beforeAll(async () => {
    cache = await testCache({ shards: 2, maxBytes: 8 * MiB }, suiteCleanup);
    worker = await AttachedWorker.start(cache.handle, suiteCleanup);
  });

  it('reads what the main thread wrote, with types intact', async () => {
    const values: Array<[string, unknown, string]> = [
      ['w:obj', { a: [1, { b: 2 }] }, 'Object'],
      ['w:map', new Map<unknown, unknown>([['x', 1], [2, 'y']]), 'Map'],
      ['w:set', new Set([1, 2]), 'Set'],
      ['w:date', new Date(123_456), 'Date'],
      ['w:bigint', 2n ** 60n, 'BigInt'],
      ['w:buffer', Buffer.from([1, 2, 3]), 'Buffer'],
      ['w:string', 'wörld \u{1F600}', 'String'],
      ['w:null', null, 'null'],
    ];
    for (const [key, value] of values) cache.set(key, value);
    await cache.settled();
    const got = await worker.call<Described[]>('get', values.map(([key]) => key));
    values.forEach(([, value, type], i) => {
      expect(got[i]!.type).toBe(type);
      if (type === 'Buffer') expect([...(got[i]!.value as Uint8Array)]).toEqual([...(value as Buffer)]);
      else expect(got[i]!.value).toEqual(value);
    });
    expect(await worker.call('get', ['w:missing'])).toEqual([{ value: undefined, type: 'undefined' }]);
  });

  it('its writes reach the main thread once it settled; it reads its own writes at once', async () => {
    const entries = Array.from({ length: 500 }, (_, i) => [`wk:${i}`, { i }] as const);
    const own = await worker.call<unknown[]>('setThenGet', entries);
    expect(own).toEqual(entries.map(([, value]) => value));
    await worker.call('settled');
    // No settle on the main thread: the owners applied the worker's writes.
    for (const [key, value] of entries) expect(cache.get(key)).toEqual(value);
  });

  it('deletes, has and delete results agree across threads', async () => {
    cache.set('wd:a', 1);
    cache.set('wd:b', 2);
    await cache.settled();
    expect(await worker.call('delete', ['wd:a', 'wd:missing'])).toEqual([true, false]);
    await worker.call('settled');
    expect(cache.has('wd:a')).toBe(false);
    expect(cache.get('wd:a')).toBeUndefined();
    expect(await worker.call('has', ['wd:a', 'wd:b'])).toEqual([false, true]);
  });

  it('overwrites by one thread replace what another thread cached', async () => {
    cache.set('wo:k', { v: 1 });
    await cache.settled();
    expect(await worker.call('get', ['wo:k'])).toEqual([{ value: { v: 1 }, type: 'Object' }]);
    expect(await worker.call('get', ['wo:k'])).toEqual([{ value: { v: 1 }, type: 'Object' }]); // near-cached there
    cache.set('wo:k', { v: 2 });
    await cache.settled();
    expect(await worker.call('get', ['wo:k'])).toEqual([{ value: { v: 2 }, type: 'Object' }]);
  });

  it('counts hits and misses from every thread in stats()', async () => {
    cache.set('ws:k', 1);
    await cache.settled();
    const before = cache.stats();
    await worker.call('get', ['ws:k', 'ws:k', 'ws:k', 'ws:none', 'ws:none']);
    const after = cache.stats();
    expect(after.hits - before.hits).toBe(3);
    expect(after.misses - before.misses).toBe(2);
    expect(await worker.call('stats')).toEqual(after);
  });

  it('sees a TTL set on the main thread expire', async () => {
    cache.set('wt:k', 'short', { ttlMs: 40 });
    await cache.settled();
    const result = await worker.call<{ ms: number; get: unknown } | -1>('waitGone', 'wt:k', 3_000);
    expect(result).not.toBe(-1);
    expect(result).toEqual({ ms: expect.any(Number), get: undefined });
  });

  it('a clear on the worker empties the cache for the main thread', async () => {
    cache.set('wc:k', 1);
    await cache.settled();
    await worker.call('clear');
    expect(cache.get('wc:k')).toBeUndefined();
    expect(cache.size).toBe(0);
    expect(await worker.call('size')).toBe(0);
  });

  it('after the worker closes, its calls throw ERR_CLOSED and the main thread carries on', async () => {
    const second = await AttachedWorker.start(cache.handle, cleanup);
    await second.call('set', [['wz:k', 1]]);
    await second.call('close');
    expect(cache.get('wz:k')).toBe(1); // close applied the queued write
    const after = await second.call<Record<string, unknown>>('afterClose');
    expect(after).toEqual({ get: { code: 'ERR_CLOSED' }, set: { code: 'ERR_CLOSED' }, settled: 'ERR_CLOSED', close: 'resolved' });
    cache.set('wz:k', 2);
    await cache.settled();
    expect(cache.get('wz:k')).toBe(2);
  });
});

describe('after the creating thread closes the cache', () => {
  it('an attached thread cannot write any more (ERR_CLOSED), and settled() and close() do not hang', async () => {
    const cache = await testCache({ shards: 2, maxBytes: 4 * MiB }); // closed by the test itself
    const worker = await AttachedWorker.start(cache.handle, cleanup);
    await worker.call('set', [['before-close', 1]]);
    await cache.close(); // applies what every thread queued, then stops the owners
    const after = await worker.call<Record<string, { code?: string } | string>>('afterClose');
    expect(after.set).toEqual({ code: 'ERR_CLOSED' }); // not silently queued for an owner that is gone
    expect(['resolved', 'ERR_CLOSED']).toContain(after.settled);
    expect(after.close).toBe('resolved');
    await expectRejectsCode(ShardCache.attach(cache.handle), 'ERR_CLOSED');
  });
});

describe('a piscina pool of 2 workers', () => {
  let cache: ShardCache;
  let pool: Piscina;
  const suiteCleanup = cleanupAfterAll();

  beforeAll(async () => {
    cache = await testCache({ shards: 2, maxBytes: 16 * MiB }, suiteCleanup);
    pool = piscinaPool('piscina-task.mjs', 2, suiteCleanup);
  });

  /** Runs one task per pool thread at once (a barrier holds each until both started). */
  function onEachThread<T>(make: (i: number) => Record<string, unknown>): Promise<T[]> {
    const barrierSab = new SharedArrayBuffer(4);
    return Promise.all([0, 1].map((i) => pool.run({ handle: cache.handle, barrierSab, parties: 2, ...make(i) }) as Promise<T>));
  }

  it('each pool thread attaches, reads the main thread\'s writes and writes its own', async () => {
    cache.set('p:from-main', { hello: 'pool' });
    await cache.settled();
    const results = await onEachThread<{ threadId: number; seen: unknown; key: string; ownRead: unknown }>(() => ({
      op: 'roundtrip', readKey: 'p:from-main',
    }));
    expect(new Set(results.map((r) => r.threadId)).size).toBe(2);
    for (const r of results) {
      expect(r.seen).toEqual({ hello: 'pool' });
      expect(r.ownRead).toEqual({ threadId: r.threadId, list: [1, 2, 3] });
      expect(cache.get(r.key)).toEqual({ threadId: r.threadId, list: [1, 2, 3] });
    }
  });

  it('stress: main and both pool threads read and write the same keys; every read is legal', async () => {
    const KEYS = 12;
    const WRITERS = 3; // 0 = main thread, 1 and 2 = pool threads
    const DURATION_MS = 2_000;
    const keys = Array.from({ length: KEYS }, (_, i) => `hot:${i}`);
    keys.forEach((key) => cache.set(key, valueOf(key, 0, 0)));
    await cache.settled();

    const deadline = Date.now() + DURATION_MS;
    const workers = onEachThread<{
      threadId: number; writerId: number; reads: number; violations: string[]; errors: string[]; counters: number[];
    }>((i) => ({ op: 'stress', keys, writerId: i + 1, writers: WRITERS, deadline, seed: 1000 + i }));

    const counters = new Array<number>(KEYS).fill(0);
    const checker = new Checker(keys, WRITERS, 0);
    const next = random32(7);
    const mainErrors: string[] = [];
    while (Date.now() < deadline) {
      try {
        burst(cache, keys, counters, checker, next, 200);
      } catch (error) {
        if (mainErrors.length < 5) mainErrors.push(String(error));
      }
      await turn(); // the main thread also runs piscina and the owners' supervisor
    }
    await cache.settled();
    const results = await workers;

    expect(new Set(results.map((r) => r.threadId)).size).toBe(2);
    expect(mainErrors).toEqual([]);
    expect(checker.violations).toEqual([]);
    expect(checker.reads).toBeGreaterThan(1_000);
    for (const r of results) {
      expect(r.errors).toEqual([]);
      expect(r.violations).toEqual([]);
      expect(r.reads).toBeGreaterThan(1_000);
      expect(r.counters.reduce((a, b) => a + b, 0)).toBeGreaterThan(500);
    }

    // Everyone settled: each key holds the last write of whichever writer was applied last.
    const finalCounters = [counters, ...results.sort((a, b) => a.writerId - b.writerId).map((r) => r.counters)];
    const mainView = keys.map((key) => cache.get(key) as { k: string; w: number; c: number });
    mainView.forEach((v, i) => {
      expect(v.k).toBe(keys[i]);
      expect(v.c).toBe(finalCounters[v.w]![i]);
    });

    // And every thread sees the same final values; then the pool threads detach.
    const views = await onEachThread<{ threadId: number; values: unknown[] }>(() => ({ op: 'readAll', keys }));
    for (const view of views) expect(view.values).toEqual(mainView);
    const closed = await onEachThread<{ threadId: number; afterClose: string }>(() => ({ op: 'close' }));
    for (const c of closed) expect(c.afterClose).toBe('ERR_CLOSED');
    expect(cache.get(keys[0]!)).toEqual(mainView[0]);
  }, 30_000);
});
