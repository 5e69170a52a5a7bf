// The public API on one thread: operations, keys, values, TTL, memory bound,
// stats, close and errors. "Another reader" is a second instance attached in
// this thread: it has no pending writes of its own, so it reads what the
// owners applied, as another thread would.
import os from 'node:os';
import { beforeAll, describe, expect, it } from 'vitest';
import { MAX_KEY_LENGTH, ShardCache, ShardCacheError } from 'shardcache';
import { KiB, MiB } from '../support/bytes.js';
import { cleanupAfterAll, cleanupAfterEach } from '../support/cleanup.js';
import { turn } from '../support/event-loop.js';
import { expectCode, expectRejectsCode } from '../support/expect-code.js';
import { collidingKeys, keyWithRawHash } from '../support/keys.js';
import { waitFor } from '../support/poll.js';
import { testAttach, testCache } from '../support/test-cache.js';

const cleanup = cleanupAfterEach();

describe('ShardCache.create and options', () => {
  it('starts with the documented defaults', async () => {
    const cache = await ShardCache.create();
    try {
      const stats = cache.stats();
      expect(stats.shards).toBe(os.availableParallelism());
      expect(stats.maxBytes).toBe(64 * MiB);
      expect(stats.entries).toBe(0);
      expect(cache.size).toBe(0);
    } finally {
      await cache.close();
    }
  });

  it.each<[string, unknown]>([
    ['shards', 0],
    ['shards', 257],
    ['shards', 2.5],
    ['maxBytes', 1000],
    ['maxBytes', -1],
    ['ttlMs', -5],
    ['ttlMs', Number.NaN],
    ['maxValueBytes', 0],
    ['maxValueBytes', 1e12],
    ['nearCache', -1],
  ])('rejects options.%s = %s with ERR_INVALID_OPTION naming the option', async (name, value) => {
    const error = await expectRejectsCode(ShardCache.create({ shards: 2, maxBytes: 8 * MiB, [name]: value }), 'ERR_INVALID_OPTION');
    expect(error.message).toContain(`options.${name}`);
  });

  it('exports MAX_KEY_LENGTH', () => {
    expect(MAX_KEY_LENGTH).toBe(4096);
  });
});

describe('ShardCache operations', () => {
  let cache: ShardCache;
  let reader: ShardCache;
  const suiteCleanup = cleanupAfterAll();

  beforeAll(async () => {
    cache = await testCache({ shards: 2, maxBytes: 8 * MiB }, suiteCleanup);
    reader = await testAttach(structuredClone(cache.handle), suiteCleanup);
  });

  it('get, has, set and delete', async () => {
    expect(cache.get('ops:a')).toBeUndefined();
    expect(cache.has('ops:a')).toBe(false);
    expect(cache.set('ops:a', { n: 1 })).toBe(cache);
    expect(cache.get('ops:a')).toEqual({ n: 1 });
    expect(cache.has('ops:a')).toBe(true);
    await cache.settled();
    expect(reader.get('ops:a')).toEqual({ n: 1 });
    expect(reader.has('ops:a')).toBe(true);

    expect(cache.delete('ops:a')).toBe(true);
    expect(cache.get('ops:a')).toBeUndefined();
    expect(cache.has('ops:a')).toBe(false);
    expect(cache.delete('ops:a')).toBe(false);
    expect(cache.delete('ops:never-set')).toBe(false);
    await cache.settled();
    expect(reader.get('ops:a')).toBeUndefined();
    expect(reader.has('ops:a')).toBe(false);
  });

  it('setting undefined deletes the key', async () => {
    cache.set('ops:u', 1);
    cache.set('ops:u', undefined);
    expect(cache.has('ops:u')).toBe(false);
    await cache.settled();
    expect(reader.has('ops:u')).toBe(false);
  });

  it('reads its own writes at once, before the owner applied them', () => {
    for (let i = 0; i < 5000; i++) {
      cache.set(`ryw:${i}`, { i });
      if ((cache.get(`ryw:${i}`) as { i: number } | undefined)?.i !== i) throw new Error(`ryw:${i} not visible after set`);
    }
    for (let v = 0; v < 200; v++) {
      cache.set('ryw:hot', v);
      if (cache.get('ryw:hot') !== v) throw new Error(`overwrite ${v} not visible`);
    }
    for (let i = 0; i < 5000; i += 2) {
      expect(cache.delete(`ryw:${i}`)).toBe(true);
      if (cache.get(`ryw:${i}`) !== undefined || cache.has(`ryw:${i}`)) throw new Error(`ryw:${i} visible after delete`);
    }
    for (let i = 1; i < 5000; i += 2) expect(cache.get(`ryw:${i}`)).toEqual({ i });
  });

  it('shows a write to other readers once settled() resolves', async () => {
    for (let i = 0; i < 3000; i++) cache.set(`vis:${i}`, i);
    await cache.settled();
    for (let i = 0; i < 3000; i++) if (reader.get(`vis:${i}`) !== i) throw new Error(`vis:${i} is ${reader.get(`vis:${i}`)}`);
  });

  it('getMany and setMany, from arrays, Maps and generators', async () => {
    cache.setMany([['many:a', 1], ['many:b', 2]]);
    cache.setMany(new Map<string, unknown>([['many:c', 3], ['many:d', { d: 4 }]]));
    cache.setMany((function* () {
      yield ['many:e', 5] as const;
      yield ['many:a', 'last wins'] as const;
    })());
    const keys = ['many:a', 'many:b', 'many:missing', 'many:c', 'many:d', 'many:e', 'many:a'];
    const expected = ['last wins', 2, undefined, 3, { d: 4 }, 5, 'last wins'];
    expect(cache.getMany(keys)).toEqual(expected);
    expect(cache.getMany([])).toEqual([]);
    await cache.settled();
    expect(reader.getMany(keys)).toEqual(expected);
    cache.setMany([['many:b', undefined]]);
    expect(cache.has('many:b')).toBe(false);
  });

  it('keys: any string, all distinct', async () => {
    const keys = [
      '', ' ', '__proto__', 'constructor', 'hasOwnProperty', 'toString', '\u0000', 'a\u0000b',
      '\u{1F600}', '\u{1F600}\u{1F601}', '\uD83D', '\uDE00', '\uD800', '\uDFFF', '\uFFFD', '\uDFFF\uD800',
      'é', 'e\u0301', 'ß', 'SS', 'k'.repeat(MAX_KEY_LENGTH), 'k'.repeat(MAX_KEY_LENGTH - 1) + 'j',
      keyWithRawHash(0, 'zero-hash'), // its hash is remapped to 1 ...
      ...collidingKeys(1, 3, 'hash-one'), // ... colliding with these, whose hash is 1
      ...collidingKeys(0x77777777, 4, 'same-hash'),
    ];
    expect(new Set(keys).size).toBe(keys.length);
    const prefix = 'keys:';
    // Half of the keys with a prefix, half bare, so '' and friends are exercised as they are.
    const all = [...keys, ...keys.filter((k) => k.length < 100).map((k) => prefix + k)];
    // (The value holds the index, not the key: string values cannot hold lone surrogates, see below.)
    all.forEach((key, i) => cache.set(key, { i, length: key.length }));
    all.forEach((key, i) => expect(cache.get(key)).toEqual({ i, length: key.length }));
    await cache.settled();
    all.forEach((key, i) => {
      expect(reader.get(key)).toEqual({ i, length: key.length });
      expect(reader.get(key)).toEqual({ i, length: key.length }); // second read: from the near cache
    });
    // Deleting one of several keys with the same hash leaves the others.
    const same = collidingKeys(0x77777777, 4, 'same-hash');
    cache.delete(same[1]!);
    await cache.settled();
    for (const key of same) expect(reader.has(key)).toBe(key !== same[1]);
    expect(reader.get('\uD800')).not.toEqual(reader.get('\uDFFF'));
  });

  describe('values come back equal, with their types', () => {
    const values: Array<[string, unknown]> = [
      ['object', { a: 1, b: { c: [1, 2, { d: 'e' }] } }],
      ['empty object', {}],
      ['array', [1, 'two', [3], { four: 4 }, null]],
      ['empty array', []],
      ['string', 'hello \u{1F600} wörld'],
      ['empty string', ''],
      ['integer', 42],
      ['negative float', -1.25],
      ['big number', Number.MAX_SAFE_INTEGER],
      ['NaN', Number.NaN],
      ['Infinity', Number.POSITIVE_INFINITY],
      ['bigint', 12345678901234567890n],
      ['negative bigint', -42n],
      ['true', true],
      ['false', false],
      ['zero', 0],
      ['null', null],
      ['Date', new Date(Date.UTC(2001, 0, 1))],
      ['Map', new Map<unknown, unknown>([['a', 1], [2, 'two'], ['nested', new Map([['x', [1]]])]])],
      ['Set', new Set(['a', 1, null])],
      ['object holding a Map and a Set', { m: new Map([['k', 'v']]), s: new Set([1]) }],
    ];

    it.each(values)('%s', async (name, value) => {
      const key = `val:${name}`;
      cache.set(key, value);
      expect(cache.get(key)).toEqual(value); // from this thread's pending write, or the shard
      await cache.settled();
      expect(cache.get(key)).toEqual(value);
      expect(reader.get(key)).toEqual(value); // decoded from the shard
      expect(reader.get(key)).toEqual(value); // near cache, if shareable
    });

    it('a string value holding a lone surrogate comes back equal (or is refused)', async () => {
      for (const value of ['\uD800', 'a\uDFFFb', { nested: '\uDBFF' }]) {
        try {
          cache.set('val:surrogate', value);
        } catch (error) {
          expect((error as ShardCacheError).code).toBe('ERR_UNSERIALIZABLE');
          continue;
        }
        expect(cache.get('val:surrogate')).toEqual(value);
        await cache.settled();
        expect(reader.get('val:surrogate')).toEqual(value);
      }
    });

    it('a Map stays a Map and a plain object stays a plain object', async () => {
      cache.set('val:map', new Map([['a', 1]]));
      cache.set('val:obj', { a: 1 });
      await cache.settled();
      expect(reader.get('val:map')).toBeInstanceOf(Map);
      const obj = reader.get('val:obj');
      expect(obj).not.toBeInstanceOf(Map);
      expect(Object.getPrototypeOf(obj)).toBe(Object.prototype);
    });

    it('a Buffer stays a Buffer, a Uint8Array a Uint8Array', async () => {
      cache.set('val:buffer', Buffer.from([1, 2, 3]));
      cache.set('val:u8', new Uint8Array([4, 5]));
      cache.set('val:nested-buffer', { data: Buffer.from('xyz') });
      for (const source of [cache, reader]) {
        if (source === reader) await cache.settled();
        const buffer = source.get('val:buffer') as Buffer;
        expect(Buffer.isBuffer(buffer)).toBe(true);
        expect([...buffer]).toEqual([1, 2, 3]);
        const u8 = source.get('val:u8') as Uint8Array;
        expect(u8).toBeInstanceOf(Uint8Array);
        expect([...u8]).toEqual([4, 5]);
        const nested = source.get('val:nested-buffer') as { data: Buffer };
        expect(Buffer.isBuffer(nested.data)).toBe(true);
        expect(nested.data.toString()).toBe('xyz');
      }
    });
  });

  describe('returned values are never shared mutable state', () => {
    it('a plain object from the near cache is deep-frozen, and stays as stored', async () => {
      cache.set('mut:obj', { a: 1, inner: { list: [1, 2] } });
      await cache.settled();
      const first = reader.get('mut:obj') as { a: number; inner: { list: number[] } };
      const second = reader.get('mut:obj') as typeof first;
      for (const v of [first, second]) {
        expect(Object.isFrozen(v)).toBe(true);
        expect(Object.isFrozen(v.inner)).toBe(true);
        expect(Object.isFrozen(v.inner.list)).toBe(true);
        expect(() => { v.a = 2; }).toThrow(TypeError);
        expect(() => v.inner.list.push(3)).toThrow(TypeError);
      }
      expect(reader.get('mut:obj')).toEqual({ a: 1, inner: { list: [1, 2] } });
    });

    it('without a near cache, every get returns a fresh, unfrozen copy', async () => {
      const noNear = await testCache({ shards: 1, maxBytes: 1 * MiB, nearCache: 0 }, cleanup);
      noNear.set('k', { a: 1, inner: [1] });
      await noNear.settled();
      const v = noNear.get('k') as { a: number; inner: number[] };
      expect(Object.isFrozen(v)).toBe(false);
      v.a = 99;
      v.inner.push(2);
      expect(noNear.get('k')).toEqual({ a: 1, inner: [1] });
      expect(noNear.get('k')).not.toBe(noNear.get('k'));
    });

    it('Maps, Sets, Dates and Buffers are fresh copies: changing one changes nothing stored', async () => {
      cache.set('mut:map', new Map([['k', 1]]));
      cache.set('mut:set', new Set([1]));
      cache.set('mut:date', new Date(1000));
      cache.set('mut:buf', Buffer.from([1, 2, 3]));
      cache.set('mut:arr-with-buf', [Buffer.from([7])]);
      for (const source of [cache, reader]) {
        if (source === reader) await cache.settled();
        (source.get('mut:map') as Map<string, number>).set('k', 2);
        (source.get('mut:set') as Set<number>).add(2);
        (source.get('mut:date') as Date).setTime(5);
        (source.get('mut:buf') as Buffer).fill(0);
        ((source.get('mut:arr-with-buf') as Buffer[])[0]!).fill(0);
        expect(source.get('mut:map')).toEqual(new Map([['k', 1]]));
        expect(source.get('mut:set')).toEqual(new Set([1]));
        expect((source.get('mut:date') as Date).getTime()).toBe(1000);
        expect([...(source.get('mut:buf') as Buffer)]).toEqual([1, 2, 3]);
        expect([...(source.get('mut:arr-with-buf') as Buffer[])[0]!]).toEqual([7]);
        expect(source.get('mut:map')).not.toBe(source.get('mut:map'));
      }
    });

    it('changing the value passed to set changes nothing stored', async () => {
      const value = { list: [1], map: new Map([['a', 1]]) };
      cache.set('mut:input', value);
      value.list.push(2);
      value.map.set('a', 2);
      expect(cache.get('mut:input')).toEqual({ list: [1], map: new Map([['a', 1]]) });
      await cache.settled();
      expect(reader.get('mut:input')).toEqual({ list: [1], map: new Map([['a', 1]]) });
    });
  });

  describe('attach and handle', () => {
    it('the handle is structured-cloneable and a clone attaches to the same data', async () => {
      cache.set('handle:k', 'shared');
      await cache.settled();
      const clone = structuredClone(cache.handle);
      expect(clone.shards[0]).toBeInstanceOf(SharedArrayBuffer);
      const other = await ShardCache.attach(clone);
      try {
        expect(other.get('handle:k')).toBe('shared');
        other.set('handle:from-other', 1);
        await other.settled();
        expect(cache.get('handle:from-other')).toBe(1);
      } finally {
        await other.close();
      }
    });

    it('rejects something that is not a handle', async () => {
      for (const bad of [undefined, null, {}, 'handle', { kind: 'shardcache', version: 2 }]) {
        await expectRejectsCode(ShardCache.attach(bad as never), 'ERR_INVALID_OPTION');
      }
    });

    it('only the creating instance can terminate owners', async () => {
      await expectRejectsCode(reader.terminateOwnerForTesting(0), 'ERR_NOT_SUPPORTED');
    });
  });
});

describe('clear and size', () => {
  it('size counts entries once applied; clear removes everything, for every reader', async () => {
    const cache = await testCache({ shards: 2, maxBytes: 4 * MiB }, cleanup);
    const reader = await testAttach(cache.handle, cleanup);
    for (let i = 0; i < 1000; i++) cache.set(`k${i}`, i);
    for (let i = 0; i < 100; i++) cache.set(`k${i}`, -i); // overwrites do not add entries
    for (let i = 900; i < 1000; i++) cache.delete(`k${i}`);
    await cache.settled();
    expect(cache.size).toBe(900);
    expect(reader.size).toBe(900);
    expect(reader.get('k5')).toBe(-5);

    cache.set('pending', 1);
    cache.clear(); // synchronous: applied by every owner when it returns
    expect(cache.size).toBe(0);
    expect(reader.size).toBe(0);
    expect(cache.get('k5')).toBeUndefined();
    expect(cache.get('pending')).toBeUndefined();
    expect(reader.get('k5')).toBeUndefined(); // including the reader's near cache
    expect(cache.stats().entries).toBe(0);

    cache.set('after', 'clear');
    expect(cache.get('after')).toBe('clear');
    await cache.settled();
    expect(reader.get('after')).toBe('clear');
    expect(cache.size).toBe(1);

    reader.clear(); // any thread may clear
    expect(cache.get('after')).toBeUndefined();
    expect(cache.size).toBe(0);
  });
});

describe('TTL', () => {
  let cache: ShardCache;
  let reader: ShardCache;
  const suiteCleanup = cleanupAfterAll();

  beforeAll(async () => {
    // One small shard, so the owner's idle sweep covers the whole index at once.
    cache = await testCache({ shards: 1, maxBytes: 512 * KiB }, suiteCleanup);
    reader = await testAttach(cache.handle, suiteCleanup);
  });

  it('an expired entry is never returned and has() is false, on any reader', async () => {
    // Long enough to be read on both readers first, even on a loaded machine.
    cache.set('ttl:a', { v: 1 }, { ttlMs: 200 });
    cache.set('ttl:forever', 'stays');
    expect(cache.get('ttl:a')).toEqual({ v: 1 });
    await cache.settled();
    expect(reader.get('ttl:a')).toEqual({ v: 1 }); // now in the reader's near cache
    await waitFor('ttl:a to expire', () => !cache.has('ttl:a'), 2_000);
    expect(cache.get('ttl:a')).toBeUndefined();
    expect(reader.has('ttl:a')).toBe(false);
    expect(reader.get('ttl:a')).toBeUndefined(); // the near cache honours the expiry
    expect(cache.getMany(['ttl:a', 'ttl:forever'])).toEqual([undefined, 'stays']);
    expect(cache.delete('ttl:a')).toBe(false);
  });

  it('an expired pending write is not returned either', async () => {
    cache.set('ttl:pending', 1, { ttlMs: 30 });
    await waitFor('ttl:pending to expire', () => !cache.has('ttl:pending'), 2_000);
    expect(cache.get('ttl:pending')).toBeUndefined();
  });

  it('the cache default applies, ttlMs: 0 means never, and an overwrite resets the expiry', async () => {
    const withDefault = await testCache({ shards: 1, maxBytes: 512 * KiB, ttlMs: 40 }, cleanup);
    withDefault.set('default', 1);
    withDefault.set('never', 1, { ttlMs: 0 });
    withDefault.set('longer', 1, { ttlMs: 60_000 });
    withDefault.setMany([['many-default', 1]]);
    withDefault.setMany([['many-never', 1]], { ttlMs: 0 });
    withDefault.set('reset', 1);
    withDefault.set('reset', 2, { ttlMs: 0 });
    await waitFor('the default TTL to expire', () => !withDefault.has('default') && !withDefault.has('many-default'), 2_000);
    expect(withDefault.get('never')).toBe(1);
    expect(withDefault.get('longer')).toBe(1);
    expect(withDefault.get('many-never')).toBe(1);
    expect(withDefault.get('reset')).toBe(2);
  });

  it('setMany with ttlMs expires every entry', async () => {
    cache.setMany([['ttl:m1', 1], ['ttl:m2', 2]], { ttlMs: 30 });
    expect(cache.getMany(['ttl:m1', 'ttl:m2'])).toEqual([1, 2]);
    await waitFor('setMany entries to expire', () => !cache.has('ttl:m1') && !cache.has('ttl:m2'), 2_000);
  });

  it('the owner removes expired entries: expirations counts them and size drops', async () => {
    const before = cache.stats().expirations;
    for (let i = 0; i < 50; i++) cache.set(`ttl:swept${i}`, i, { ttlMs: 20 });
    await cache.settled();
    const sizeWithThem = cache.size;
    expect(sizeWithThem).toBeGreaterThanOrEqual(50);
    // The idle owner sweeps about once a second.
    await waitFor('the owner to sweep expired entries', () => cache.stats().expirations >= before + 50, 5_000);
    expect(cache.size).toBeLessThanOrEqual(sizeWithThem - 50);
  });

  it('refuses a bad ttlMs on set with ERR_INVALID_OPTION', () => {
    for (const ttlMs of [-1, Number.NaN, Number.NEGATIVE_INFINITY, '5']) {
      const error = expectCode(() => cache.set('ttl:bad', 1, { ttlMs: ttlMs as number }), 'ERR_INVALID_OPTION');
      expect(error.message).toContain('ttlMs');
    }
    expect(cache.get('ttl:bad')).toBeUndefined();
  });

  it('takes a TTL of a year, and Infinity as no expiry', async () => {
    cache.set('ttl:year', 'y', { ttlMs: 365 * 24 * 3600 * 1000 });
    cache.set('ttl:forever', 'f', { ttlMs: Number.POSITIVE_INFINITY });
    await cache.settled();
    expect(cache.get('ttl:year')).toBe('y');
    expect(cache.get('ttl:forever')).toBe('f');
    expect(cache.has('ttl:forever')).toBe(true);
  });
});

describe('memory bound and eviction', () => {
  it('stays within maxBytes while 10x the budget is inserted, and never returns another key\'s value', async () => {
    const maxBytes = 1 * MiB;
    const cache = await testCache({ shards: 2, maxBytes }, cleanup);
    const reader = await testAttach(cache.handle, cleanup);
    const pad = 'x'.repeat(1000);
    const count = Math.ceil((10 * maxBytes) / 1050);
    for (let i = 0; i < count; i++) {
      cache.set(`ev:${i}`, { key: `ev:${i}`, i, pad });
      if (i % 500 === 0) {
        await cache.settled();
        const s = cache.stats();
        expect(s.bytesUsed).toBeLessThanOrEqual(maxBytes);
      }
    }
    await cache.settled();
    const stats = cache.stats();
    expect(stats.bytesUsed).toBeLessThanOrEqual(maxBytes);
    expect(stats.maxBytes).toBe(maxBytes);
    expect(stats.evictions).toBeGreaterThan(count / 2);
    // Each key was set once and none deleted: what is missing was evicted, and counted.
    expect(stats.sets).toBe(count);
    expect(stats.entries).toBe(stats.sets - stats.evictions - stats.expirations);
    expect(cache.size).toBe(stats.entries);
    let present = 0;
    for (const source of [cache, reader]) {
      present = 0;
      for (let i = 0; i < count; i++) {
        const v = source.get(`ev:${i}`) as { key: string; i: number } | undefined;
        if (v === undefined) continue;
        present++;
        if (v.key !== `ev:${i}` || v.i !== i) throw new Error(`ev:${i} returned ${v.key}#${v.i}`);
      }
      expect(present).toBe(stats.entries);
    }
    for (let i = count - 50; i < count; i++) expect(reader.has(`ev:${i}`)).toBe(true); // the newest survive
  });

  it('a key overwritten many times returns its last value', async () => {
    const cache = await testCache({ shards: 2, maxBytes: 1 * MiB }, cleanup);
    const reader = await testAttach(cache.handle, cleanup);
    const pad = 'y'.repeat(500);
    for (let round = 0; round < 50; round++) {
      for (let k = 0; k < 200; k++) cache.set(`ow:${k}`, { k, round, pad });
      await turn();
    }
    await cache.settled();
    for (let k = 0; k < 200; k++) expect(reader.get(`ow:${k}`)).toEqual({ k, round: 49, pad });
    expect(cache.stats().entries).toBe(200);
  });
});

describe('stats', () => {
  it('counts entries, hits, misses, sets and deletes', async () => {
    const cache = await testCache({ shards: 2, maxBytes: 4 * MiB }, cleanup);
    const reader = await testAttach(cache.handle, cleanup);
    expect(cache.stats()).toEqual({
      entries: 0, bytesUsed: expect.any(Number), maxBytes: 4 * MiB, maxEntries: 0, shards: 2,
      hits: 0, misses: 0, sets: 0, deletes: 0, evictions: 0, rejections: 0, expirations: 0,
    });
    const empty = cache.stats().bytesUsed;
    expect(empty).toBeLessThanOrEqual(4 * MiB);
    for (let i = 0; i < 10; i++) cache.set(`s${i}`, i);
    cache.set('s0', 'again');
    cache.delete('s9');
    cache.delete('never-there');
    await cache.settled();
    for (let i = 0; i < 9; i++) reader.get(`s${i}`); // 9 hits (first reads)
    for (let i = 0; i < 9; i++) reader.get(`s${i}`); // 9 hits (near cache)
    reader.get('s9'); // miss
    reader.get('nope'); // miss
    const stats = cache.stats();
    expect(stats.entries).toBe(9);
    expect(stats.sets).toBe(11);
    expect(stats.deletes).toBe(1); // deleting an absent key deletes nothing
    expect(stats.hits).toBe(18);
    expect(stats.misses).toBe(2);
    expect(stats.bytesUsed).toBeGreaterThan(empty);
    expect(reader.stats()).toEqual(stats); // the same numbers from any instance
  });

  // Reads of this thread's own queued writes count too: test/unit/overlay.test.ts
  // checks that deterministically.
});

describe('close', () => {
  it('applies queued writes, then every call throws ERR_CLOSED; close is idempotent', async () => {
    const cache = await testCache({ shards: 2, maxBytes: 4 * MiB });
    const reader = await testAttach(cache.handle);
    for (let i = 0; i < 2000; i++) cache.set(`c${i}`, i);
    await cache.close();
    // Reads of the shared memory still work on the attached reader: the writes were applied first.
    for (let i = 0; i < 2000; i++) if (reader.get(`c${i}`) !== i) throw new Error(`c${i} was not applied before close`);
    await reader.close();

    for (const closed of [cache, reader]) {
      expectCode(() => closed.get('a'), 'ERR_CLOSED');
      expectCode(() => closed.has('a'), 'ERR_CLOSED');
      expectCode(() => closed.set('a', 1), 'ERR_CLOSED');
      expectCode(() => closed.delete('a'), 'ERR_CLOSED');
      expectCode(() => closed.getMany(['a']), 'ERR_CLOSED');
      expectCode(() => closed.setMany([['a', 1]]), 'ERR_CLOSED');
      expectCode(() => closed.clear(), 'ERR_CLOSED');
      expectCode(() => closed.size, 'ERR_CLOSED');
      expectCode(() => closed.stats(), 'ERR_CLOSED');
      await expectRejectsCode(closed.settled(), 'ERR_CLOSED');
      await closed.close(); // idempotent
    }
    await expectRejectsCode(ShardCache.attach(cache.handle), 'ERR_CLOSED');
  });

  it('getMany([]) after close throws ERR_CLOSED', async () => {
    const cache = await testCache({ shards: 1, maxBytes: 1 * MiB });
    await cache.close();
    expectCode(() => cache.getMany([]), 'ERR_CLOSED');
  });

  it('await using closes the cache at the end of the block', async () => {
    let escaped: ShardCache | undefined;
    {
      await using cache = await testCache({ shards: 1, maxBytes: 1 * MiB });
      cache.set('a', 1);
      expect(cache.get('a')).toBe(1);
      escaped = cache;
    }
    expectCode(() => escaped!.get('a'), 'ERR_CLOSED');
  });

  it('Symbol.asyncDispose closes too', async () => {
    const cache = await testCache({ shards: 1, maxBytes: 1 * MiB });
    await cache[Symbol.asyncDispose]();
    expectCode(() => cache.set('a', 1), 'ERR_CLOSED');
  });
});

describe('errors', () => {
  let cache: ShardCache;
  let reader: ShardCache;
  const suiteCleanup = cleanupAfterAll();

  beforeAll(async () => {
    cache = await testCache({ shards: 2, maxBytes: 4 * MiB, maxValueBytes: 1000 }, suiteCleanup);
    reader = await testAttach(cache.handle, suiteCleanup);
  });

  /** The old value is intact for this thread (pending or applied) and for another reader. */
  async function expectUnchanged(key: string, value: unknown): Promise<void> {
    expect(cache.get(key)).toEqual(value);
    await cache.settled();
    expect(cache.get(key)).toEqual(value);
    expect(reader.get(key)).toEqual(value);
  }

  it.each<[string, unknown]>([
    ['a number', 1],
    ['undefined', undefined],
    ['null', null],
    ['an object', {}],
    ['an array', ['a']],
    ['a symbol', Symbol('k')],
    ['a String object', new String('k')],
  ])('ERR_INVALID_KEY for %s as a key, on every operation', (_name, key) => {
    const k = key as string;
    expectCode(() => cache.get(k), 'ERR_INVALID_KEY');
    expectCode(() => cache.has(k), 'ERR_INVALID_KEY');
    expectCode(() => cache.set(k, 1), 'ERR_INVALID_KEY');
    expectCode(() => cache.delete(k), 'ERR_INVALID_KEY');
    expectCode(() => cache.getMany([k]), 'ERR_INVALID_KEY');
    expectCode(() => cache.setMany([[k, 1]]), 'ERR_INVALID_KEY');
  });

  it('ERR_INVALID_KEY for a key longer than MAX_KEY_LENGTH; exactly MAX_KEY_LENGTH is fine', async () => {
    const longest = 'L'.repeat(MAX_KEY_LENGTH);
    const tooLong = longest + 'L';
    const error = expectCode(() => cache.set(tooLong, 1), 'ERR_INVALID_KEY');
    expect(error.message).toContain(String(MAX_KEY_LENGTH));
    expectCode(() => cache.get(tooLong), 'ERR_INVALID_KEY');
    expectCode(() => cache.has(tooLong), 'ERR_INVALID_KEY');
    expectCode(() => cache.delete(tooLong), 'ERR_INVALID_KEY');
    cache.set(longest, 'ok');
    await expectUnchanged(longest, 'ok');
  });

  it('ERR_INVALID_KEY for malformed getMany/setMany arguments', () => {
    expectCode(() => cache.getMany('abc' as never), 'ERR_INVALID_KEY');
    expectCode(() => cache.setMany(5 as never), 'ERR_INVALID_KEY');
    expectCode(() => cache.setMany(null as never), 'ERR_INVALID_KEY');
    expectCode(() => cache.setMany(['not a pair'] as never), 'ERR_INVALID_KEY');
  });

  it('ERR_VALUE_TOO_LARGE names maxValueBytes and keeps the old value', async () => {
    cache.set('big', 'small');
    const error = expectCode(() => cache.set('big', 'x'.repeat(2000)), 'ERR_VALUE_TOO_LARGE');
    expect(error.message).toContain('maxValueBytes');
    expectCode(() => cache.set('big', Buffer.alloc(1001)), 'ERR_VALUE_TOO_LARGE');
    await expectUnchanged('big', 'small');
  });

  it.each<[string, unknown]>([
    ['a function', () => 1],
    ['a symbol', Symbol('v')],
    ['an object holding a function', { ok: 1, fn() {} }],
    ['a Map holding a symbol', new Map([['s', Symbol('v')]])],
  ])('ERR_UNSERIALIZABLE for %s, keeping the old value', async (_name, value) => {
    cache.set('unser', { old: true });
    expectCode(() => cache.set('unser', value), 'ERR_UNSERIALIZABLE');
    await expectUnchanged('unser', { old: true });
    cache.set('unser-pending', 'pending'); // a pending write is not disturbed either
    expectCode(() => cache.set('unser-pending', value), 'ERR_UNSERIALIZABLE');
    expect(cache.get('unser-pending')).toBe('pending');
  });

  it('a bad ttlMs keeps the old value', async () => {
    cache.set('ttl-old', 1);
    expectCode(() => cache.set('ttl-old', 2, { ttlMs: -1 }), 'ERR_INVALID_OPTION');
    expectCode(() => cache.set('ttl-old', undefined, { ttlMs: -1 }), 'ERR_INVALID_OPTION'); // not even a delete
    await expectUnchanged('ttl-old', 1);
  });

  it.each<[string, Array<[unknown, unknown]>, unknown, string]>([
    ['an unserializable value', [['sm:a', 'new'], ['sm:b', () => 1], ['sm:new', 1]], undefined, 'ERR_UNSERIALIZABLE'],
    ['a value too large', [['sm:a', 'new'], ['sm:new', 1], ['sm:b', 'z'.repeat(5000)]], undefined, 'ERR_VALUE_TOO_LARGE'],
    ['a bad key', [['sm:a', 'new'], ['sm:new', 1], [42, 'v']], undefined, 'ERR_INVALID_KEY'],
    ['a bad ttlMs', [['sm:a', 'new'], ['sm:new', 1]], { ttlMs: -1 }, 'ERR_INVALID_OPTION'],
    ['a delete before the bad entry', [['sm:a', undefined], ['sm:b', Symbol('x')]], undefined, 'ERR_UNSERIALIZABLE'],
  ])('setMany with %s stores none of its entries', async (_name, entries, options, code) => {
    cache.set('sm:a', 'old a');
    cache.set('sm:b', 'old b');
    cache.delete('sm:new');
    expectCode(() => cache.setMany(entries as never, options as never), code);
    await expectUnchanged('sm:a', 'old a');
    await expectUnchanged('sm:b', 'old b');
    expect(cache.has('sm:new')).toBe(false);
    expect(reader.has('sm:new')).toBe(false);
  });

  it('errors are ShardCacheError with a code and a message', () => {
    const error = expectCode(() => cache.get(1 as never), 'ERR_INVALID_KEY');
    expect(error).toBeInstanceOf(ShardCacheError);
    expect(error.message).toMatch(/string/);
  });
});
