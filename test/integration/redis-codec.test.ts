// The bytes in Redis are the codec's (options.redis.codec), read and written
// by other clients on a real redis-server: another msgpack implementation
// (@msgpack/msgpack, with no knowledge of shardcache), raw SETs of JSON text
// and plain strings, raw bytes, and a codec of the user's own, also from a
// piscina worker thread attached to the cache.
import { decode as decodeMsgpack, encode as encodeMsgpack } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { ShardCacheError, type ShardCacheOptions } from 'shardcache';
import { redisCli } from '../support/redis-cli.js';
import { redisFixture } from '../support/redis-fixture.js';
import { testCache } from '../support/test-cache.js';
import { piscinaPool } from '../support/worker-threads.js';

const NO_TIMER = { flushIntervalMs: 60_000 };
type Codec = NonNullable<NonNullable<ShardCacheOptions['redis']>['codec']>;

describe('Redis codecs', () => {
  const redis = redisFixture({ cacheRedis: { writeBehind: NO_TIMER } });

  /** A cache whose bytes in Redis are `codec`'s (without one, the default's: msgpack). */
  const cacheWith = (codec?: Codec) => redis.cacheOn(codec === undefined ? {} : { redis: { codec } });

  /** Values as other services write them: JSON-like, the shape every msgpack library shares. */
  const foreign: Record<string, unknown> = {
    user: { id: 7, name: 'Ada Lovelace', tags: ['admin', 'math'], score: 99.5, active: true, manager: null },
    nested: { a: { b: { c: [1, { d: 'deep' }] } } },
    list: [1, -1, 200, -200, 70_000, -70_000, 2 ** 40, -(2 ** 40), 0.5, 'x', false],
    text: 'héllo wörld 🙂',
    number: 42,
    empty: {},
  };

  it('fetches standard msgpack written by another encoder as plain objects, through fetch and fetchMany', async () => {
    const { cache, client } = await cacheWith();
    for (const [key, value] of Object.entries(foreign)) await client.set(`app:${key}`, Buffer.from(encodeMsgpack(value)));

    for (const [key, value] of Object.entries(foreign)) {
      const got = await cache.fetch(key);
      expect(got, key).toEqual(value);
      if (typeof value === 'object' && !Array.isArray(value)) expect(Object.getPrototypeOf(got), key).toBe(Object.prototype);
    }
    const reader = await cacheWith();
    const keys = Object.keys(foreign);
    const many = await reader.cache.fetchMany([...keys, 'absent']);
    expect(many).toEqual([...keys.map((key) => foreign[key]), undefined]);
    expect(Object.getPrototypeOf(many[0])).toBe(Object.prototype);
    expect(many[0]).not.toBeInstanceOf(Map);
    // Kept locally, and still plain objects when decoded from the shard.
    await reader.cache.settled();
    expect(reader.cache.get('user')).toEqual(foreign.user);
    expect(Object.getPrototypeOf(reader.cache.get('user'))).toBe(Object.prototype);
  });

  it('writes what a plain msgpack decoder reads back unchanged', async () => {
    const { cache, client } = await cacheWith();
    for (const [key, value] of Object.entries(foreign)) cache.set(key, value);
    await cache.flush();
    for (const [key, value] of Object.entries(foreign)) {
      expect(decodeMsgpack((await client.getBuffer(`app:${key}`))!), key).toEqual(value);
    }
  });

  it('reads what other languages write: integer map keys, 64-bit integers, float32, timestamps', async () => {
    const { cache, client } = await cacheWith();
    // Hand-written bytes, as Python's or Go's msgpack lay them out.
    const cases: [string, number[], unknown][] = [
      ['int-keys', [0x82, 0x01, 0xa1, 0x61, 0x02, 0xa1, 0x62], { 1: 'a', 2: 'b' }],
      ['uint64', [0xcf, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01], 2n ** 53n + 1n],
      ['int64-small', [0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe], -2],
      ['float32', [0xca, 0x3f, 0xc0, 0x00, 0x00], 1.5],
      ['str8', [0xd9, 0x03, 0x61, 0x62, 0x63], 'abc'],
      ['ts32', [0xd6, 0xff, 0x65, 0x53, 0xf1, 0x00], new Date(1_700_000_000_000)],
      ['bin', [0xc4, 0x02, 0x00, 0xff], Buffer.from([0x00, 0xff])],
    ];
    for (const [key, bytes] of cases) await client.set(`app:${key}`, Buffer.from(bytes));
    for (const [key, , value] of cases) expect(await cache.fetch(key), key).toEqual(value);
  });

  it("'json': reads JSON text other services SET, and writes JSON text JSON.parse reads", async () => {
    const { cache, client } = await cacheWith('json');
    for (const [key, value] of Object.entries(foreign)) await client.set(`app:${key}`, JSON.stringify(value));
    for (const [key, value] of Object.entries(foreign)) expect(await cache.fetch(key), key).toEqual(value);
    await client.set('app:proto', '{"__proto__":{"polluted":true},"ok":1}');
    const proto = await cache.fetch('proto') as Record<string, unknown>;
    expect(Object.getPrototypeOf(proto)).toBe(Object.prototype);
    expect(proto.ok).toBe(1);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();

    cache.set('mine', { id: 1, at: new Date(0), list: [1, 'two'] });
    await cache.flush();
    expect(JSON.parse((await client.get('app:mine'))!)).toEqual({ id: 1, at: '1970-01-01T00:00:00.000Z', list: [1, 'two'] });
  });

  it("'string': a Go service's SET number \"42\" is the string '42', incr() counts on it, and non-strings are refused", async () => {
    const { cache, client } = await cacheWith('string');
    await client.set('app:number', '42');
    await client.set('app:greeting', 'grüß dich');
    expect(await cache.fetch('number')).toBe('42');
    expect(await cache.fetch('greeting')).toBe('grüß dich');
    expect(await cache.incr('number', 8)).toBe(50);
    expect(await client.get('app:number')).toBe('50');
    expect(cache.get('number')).toBe('50'); // locally what Redis holds: a string
    expect(() => cache.set('n', 1)).toThrow(expect.objectContaining({ code: 'ERR_UNSERIALIZABLE' }));
    expect(() => cache.set('o', { a: 1 })).toThrow(ShardCacheError);
    expect(cache.get('n')).toBeUndefined();
    cache.set('mine', 'plain text ✓');
    await cache.flush();
    expect(await client.get('app:mine')).toBe('plain text ✓');
    // Bytes that are not UTF-8 are not a string: ERR_DECODE for that key only.
    await client.set('app:latin1', Buffer.from([0x61, 0xe9, 0x62]));
    await expect(cache.fetch('latin1')).rejects.toMatchObject({ code: 'ERR_DECODE' });
    expect(await cache.fetch('greeting')).toBe('grüß dich');
  });

  it("'buffer': raw bytes in, the same bytes out", async () => {
    const { cache, client } = await cacheWith('buffer');
    const bytes = Buffer.from([0, 1, 2, 0xc1, 0xff]);
    await client.set('app:raw', bytes);
    const got = await cache.fetch('raw');
    expect(Buffer.isBuffer(got)).toBe(true);
    expect((got as Buffer).equals(bytes)).toBe(true);
    cache.set('mine', new Uint8Array([9, 8, 7]));
    await cache.flush();
    expect((await client.getBuffer('app:mine'))!.equals(Buffer.from([9, 8, 7]))).toBe(true);
    expect(() => cache.set('bad', 'text')).toThrow(expect.objectContaining({ code: 'ERR_UNSERIALIZABLE' }));
    await expect(cache.incr('raw')).rejects.toMatchObject({ code: 'ERR_NOT_SUPPORTED' });
  });

  it('a codec of your own decides the bytes, for writes and reads of attached worker threads too', async () => {
    // A framed text format: "v1:" then JSON.
    const codec = {
      encode: (value: unknown) => Buffer.from(`v1:${JSON.stringify(value)}`),
      decode: (bytes: Uint8Array) => {
        const text = Buffer.from(bytes).toString('utf8');
        if (!text.startsWith('v1:')) throw new Error('not a v1 frame');
        return JSON.parse(text.slice(3));
      },
    };
    const { cache, client } = await cacheWith(codec);
    await client.set('app:seeded', 'v1:{"from":"elsewhere"}');
    await client.set('app:unframed', '{"from":"elsewhere"}');
    const pool = piscinaPool('cache-worker.mjs', 2, redis.cleanup);
    const fetched = (await pool.run({ job: 'fetch', handle: cache.handle, key: 'seeded', callers: 3 })) as { values: unknown[] };
    expect(fetched.values).toEqual(Array(3).fill({ from: 'elsewhere' }));
    await expect(pool.run({ job: 'fetch', handle: cache.handle, key: 'unframed', callers: 1 })).rejects.toMatchObject({ message: expect.stringMatching(/do not decode/) });
    await pool.run({ job: 'write', handle: cache.handle, ops: [{ key: 'from-worker', value: { n: 1 } }] });
    expect(await client.get('app:from-worker')).toBe('v1:{"n":1}');
    cache.set('from-main', [1, 2]);
    await cache.flush();
    expect(await client.get('app:from-main')).toBe('v1:[1,2]');
  });

  it('bad bytes are ERR_DECODE for that key only: fetchMany keeps the other keys, nothing stored is touched', async () => {
    const { cache, client } = await cacheWith('json');
    cache.set('local', { kept: true });
    await cache.flush();
    await client.set('app:good', '{"good":true}');
    await client.set('app:bad', '{not json');
    await expect(cache.fetchMany(['good', 'bad'])).rejects.toMatchObject({ code: 'ERR_DECODE' });
    await cache.settled();
    expect(cache.get('good')).toEqual({ good: true });
    expect(cache.get('bad')).toBeUndefined();
    expect(cache.get('local')).toEqual({ kept: true });
    expect(await cache.fetch('good')).toEqual({ good: true });
  });

  it("a value the codec refuses at flush is counted failed and reported, and the other writes land ('json' and a bigint)", async () => {
    const { cache, client } = await cacheWith('json');
    const errors: (Error & { key?: string; code?: string })[] = [];
    cache.on('error', (error) => errors.push(error));
    cache.set('big', { n: 10n });
    cache.set('fine', { n: 10 });
    await cache.flush();
    expect(await client.get('app:fine')).toBe('{"n":10}');
    expect(await client.exists('app:big')).toBe(0);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'ERR_UNSERIALIZABLE', key: 'big' });
    const stats = cache.stats().redis!;
    expect(stats).toMatchObject({ pending: 0, flushed: 1, failed: 1 });
  });

  it('incr() works on the numbers other clients wrote, in msgpack and in json', async () => {
    const msgpack = await cacheWith();
    await msgpack.client.set('app:counter', Buffer.from(encodeMsgpack(41)));
    expect(await msgpack.cache.incr('counter')).toBe(42);
    expect(decodeMsgpack((await msgpack.client.getBuffer('app:counter'))!)).toBe(42);
    expect(await msgpack.cache.incr('counter', 0.25)).toBe(42.25);
    expect(decodeMsgpack((await msgpack.client.getBuffer('app:counter'))!)).toBe(42.25);

    await redisCli(redis.port, 'FLUSHALL');
    const json = await cacheWith('json');
    await json.client.set('app:counter', '41');
    expect(await json.cache.incr('counter', 2)).toBe(43);
    expect(await json.client.get('app:counter')).toBe('43');
    await json.client.set('app:words', '"forty"');
    await expect(json.cache.incr('words')).rejects.toMatchObject({ code: 'ERR_NOT_A_NUMBER' });
  });

  it('refuses an unknown codec with ERR_INVALID_OPTION', async () => {
    const client = redis.client();
    for (const codec of ['yaml', { encode: () => new Uint8Array() }, 42]) {
      await expect(testCache({ shards: 1, redis: { client, codec: codec as Codec } }))
        .rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('redis.codec') });
    }
  });
});
