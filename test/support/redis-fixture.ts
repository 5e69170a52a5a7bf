// The set-up the Redis test suites share. redisFixture() registers the hooks
// of the enclosing describe: real redis-servers for the suite (emptied before
// each test) or fresh ones for each test, and a Cleanup run after each test
// that closes what the fixture made for it: clients, caches, frozen servers.
import type { Redis, RedisOptions as ClientOptions } from 'ioredis';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import type { RedisOptions, ShardCache, ShardCacheOptions } from 'shardcache';
import { cleanupAfterEach, type Cleanup } from './cleanup.js';
import { redisCli } from './redis-cli.js';
import { quit, redisClient } from './redis-client.js';
import { startRedis, type RedisServer } from './redis-server.js';
import { resetStats } from './redis-stats.js';
import { testCache } from './test-cache.js';

/** options.redis without the connection, which the fixture provides. */
export type CacheRedisOptions = Omit<RedisOptions, 'client' | 'url'>;

export interface RedisFixtureOptions {
  /**
   * How many redis-servers to start (twemproxy needs several backends).
   * @default 1
   */
  servers?: number;
  /**
   * 'suite': started before the suite, stopped after it, FLUSHALLed before
   * each test. 'test': fresh servers for each test, stopped after it, for
   * tests that crash, stop or reconfigure them.
   * @default 'suite'
   */
  lifetime?: 'suite' | 'test';
  /**
   * CONFIG RESETSTAT before each test too, so commandCalls() counts the test's commands only.
   * @default false
   */
  resetStats?: boolean;
  /** options.redis of every cacheOn() in the suite, under what the call gives. */
  cacheRedis?: CacheRedisOptions;
}

export interface CacheOnOptions extends Omit<ShardCacheOptions, 'redis'> {
  /** Over { keyPrefix: 'app:', ...the suite's cacheRedis }; the client is the fixture's. */
  redis?: CacheRedisOptions;
  /** Where the cache's client connects: the first server by default, a tap's or proxy's port instead. */
  port?: number;
  /** Extra ioredis options for the cache's client. */
  clientOptions?: ClientOptions;
}

export interface RedisFixture {
  /** The first server (the only one, unless `servers` says more). */
  readonly server: RedisServer;
  readonly servers: readonly RedisServer[];
  /** The first server's port and url. */
  readonly port: number;
  readonly url: string;
  /** Run after each test; the test may add its own steps. */
  readonly cleanup: Cleanup;
  /** A plain ioredis client (on the first server by default), quit after the test. */
  client(port?: number, options?: ClientOptions): Redis;
  /** A test cache (2 shards, 16 MiB unless told) on a client of its own; both closed after the test. */
  cacheOn(options?: CacheOnOptions): Promise<{ cache: ShardCache; client: Redis }>;
  /** SIGSTOPs a server (the first by default) so requests stay in flight; the returned thaw is idempotent and also runs after the test. */
  freeze(server?: RedisServer): Promise<() => Promise<void>>;
}

export function redisFixture(options: RedisFixtureOptions = {}): RedisFixture {
  const { servers: count = 1, lifetime = 'suite' } = options;
  const cleanup = cleanupAfterEach();
  let servers: RedisServer[] = [];
  const start = () => Promise.all(Array.from({ length: count }, () => startRedis()));

  if (lifetime === 'suite') {
    beforeAll(async () => {
      servers = await start();
    });
    afterAll(async () => {
      await Promise.all(servers.map((server) => server.stop()));
    });
    beforeEach(async () => {
      for (const server of servers) await redisCli(server.port, 'FLUSHALL');
    });
  } else {
    beforeEach(async () => {
      servers = await start();
      // Added first, so it runs last: after the caches and clients on them are closed.
      for (const server of servers) cleanup.add(() => server.stop());
    });
  }
  if (options.resetStats) {
    beforeEach(async () => {
      for (const server of servers) await resetStats(server.port);
    });
  }

  const first = (): RedisServer => {
    const server = servers[0];
    if (server === undefined) throw new Error('redisFixture: no server yet (it starts in beforeAll or beforeEach)');
    return server;
  };

  const client = (port = first().port, clientOptions: ClientOptions = {}): Redis => {
    const made = redisClient(port, clientOptions);
    cleanup.add(() => quit(made));
    return made;
  };

  return {
    get server() {
      return first();
    },
    get servers() {
      return servers;
    },
    get port() {
      return first().port;
    },
    get url() {
      return first().url;
    },
    cleanup,
    client,
    async cacheOn({ redis, port, clientOptions, ...cacheOptions } = {}) {
      const made = client(port, clientOptions);
      const cache = await testCache({
        ...cacheOptions,
        redis: { client: made, keyPrefix: 'app:', ...options.cacheRedis, ...redis },
      }, cleanup);
      return { cache, client: made };
    },
    async freeze(server = first()) {
      await server.stopProcess('SIGSTOP');
      let thawed = false;
      const thaw = async () => {
        if (thawed) return;
        thawed = true;
        await server.stopProcess('SIGCONT');
      };
      cleanup.add(thaw);
      return thaw;
    },
  };
}
