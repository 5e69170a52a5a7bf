// Plain ioredis clients for the tests' own traffic (seeding, reading back)
// and for the caches under test.
import { Cluster, Redis, type RedisOptions } from 'ioredis';

/** A plain ioredis client on a loopback port; connection errors are expected in some tests and only recorded. */
export function redisClient(port: number, extra: RedisOptions = {}): Redis {
  const client = new Redis({ host: '127.0.0.1', port, ...extra });
  client.on('error', () => {});
  return client;
}

/**
 * What a client through twemproxy needs with ioredis 6, which otherwise opens
 * a connection with HELLO (RESP3), CLIENT SETINFO and an INFO ready check:
 * commands nutcracker does not proxy.
 */
export const TWEMPROXY_CLIENT_OPTIONS: RedisOptions = { protocol: 2, enableReadyCheck: false, disableClientInfo: true };

/** QUIT, or a hard disconnect if the server cannot answer (frozen, stopped). */
export async function quit(client: Redis | Cluster): Promise<void> {
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}
