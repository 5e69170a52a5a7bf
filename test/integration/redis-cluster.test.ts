// The Redis tier on a real three-master Redis Cluster, through an ioredis Cluster client.
import { once } from 'node:events';
import calculateSlot from 'cluster-key-slot';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupAfterEach } from '../support/cleanup.js';
import { redisCli } from '../support/redis-cli.js';
import { quit } from '../support/redis-client.js';
import { startCluster, type RedisCluster } from '../support/redis-cluster.js';
import { decode } from '../support/redis-format.js';
import { commandCalls, dbsize, resetStats } from '../support/redis-stats.js';
import { testCache } from '../support/test-cache.js';

describe('Redis tier on a Redis Cluster', () => {
  let cluster: RedisCluster;
  const cleanup = cleanupAfterEach();

  beforeAll(async () => {
    cluster = await startCluster();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  async function clusterClient(): Promise<Cluster> {
    const client = new Cluster([{ host: '127.0.0.1', port: cluster.nodes[0]!.port }]);
    client.on('error', () => {});
    cleanup.add(() => quit(client));
    await once(client, 'ready');
    return client;
  }

  it('writes 2000 keys behind to all three masters, reads them through, and clear() empties every node', async () => {
    const client = await clusterClient();
    const cache = await testCache({ redis: { client, keyPrefix: 'app:', writeBehind: { flushIntervalMs: 5, batchSize: 500 } } }, cleanup);
    const keys = Array.from({ length: 2000 }, (_, i) => `item:${i}`);
    keys.forEach((key, i) => cache.set(key, { i, even: i % 2 === 0 }));
    await cache.flush();

    const sizes = await Promise.all(cluster.nodes.map((node) => dbsize(node.port)));
    for (const size of sizes) expect(size).toBeGreaterThan(0);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(2000);
    // Each key sits on the node that serves its slot, holding the cache's msgpack bytes.
    for (const i of [0, 777, 1999]) {
      expect(decode((await client.getBuffer(`app:item:${i}`))!)).toEqual({ i, even: i % 2 === 0 });
    }

    // Changes after the first flush: deletes and updates reach the right nodes too.
    for (let i = 0; i < 2000; i += 10) cache.delete(keys[i]!);
    for (let i = 5; i < 2000; i += 10) cache.set(keys[i]!, 'updated', { ttlMs: 60_000 });
    await cache.flush();
    const expected = keys.map((_, i) => (i % 10 === 0 ? undefined : i % 10 === 5 ? 'updated' : { i, even: i % 2 === 0 }));
    const ttl = await client.pttl('app:item:5');
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);

    // Another cache with an empty local store reads through the cluster.
    const reader = await testCache({ shards: 1, redis: { client, keyPrefix: 'app:', writeBehind: false } }, cleanup);
    expect(await reader.fetch('item:7')).toEqual({ i: 7, even: false });
    expect(await reader.fetch('item:10')).toBeUndefined();
    await Promise.all(cluster.nodes.map((node) => resetStats(node.port)));
    const asked = [...keys, 'missing:a', 'missing:b'].reverse();
    // Keys the reader holds locally (item:7, fetched above) are not asked of Redis.
    const remote = asked.filter((key) => reader.get(key) === undefined);
    expect(remote).not.toContain('item:7');
    const values = await reader.fetchMany(asked);
    expect(values).toEqual([undefined, undefined, ...[...expected].reverse()]);
    // One MGET per slot (a multi-key command must stay in one slot), none per key.
    const slots = new Set(remote.map((key) => calculateSlot(`app:${key}`)));
    const mgets = await Promise.all(cluster.nodes.map((node) => commandCalls(node.port, 'mget')));
    expect(mgets.reduce((a, b) => a + b, 0)).toBe(slots.size);
    for (const node of cluster.nodes) expect(await commandCalls(node.port, 'get')).toBe(0);

    // clear() removes the cache's keys from every master, and only those.
    await client.set('other:keep', 'x');
    cache.clear();
    await cache.flush();
    const after = await Promise.all(cluster.nodes.map((node) => redisCli(node.port, 'KEYS', 'app:*')));
    expect(after.map((text) => text.trim())).toEqual(['', '', '']);
    expect(await client.get('other:keep')).toBe('x');
  });
});
