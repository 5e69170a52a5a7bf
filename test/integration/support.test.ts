// Proves the integration-test helpers start, control and clean up real servers.
import { describe, expect, it } from 'vitest';
import { cleanupAfterAll } from '../support/cleanup.js';
import { freePorts } from '../support/free-port.js';
import { redisCli } from '../support/redis-cli.js';
import { startCluster } from '../support/redis-cluster.js';
import { startRedis } from '../support/redis-server.js';
import { ping } from '../support/resp.js';
import { startTwemproxy } from '../support/twemproxy.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('test support', () => {
  const cleanup = cleanupAfterAll();

  it('hands out distinct free ports', async () => {
    const ports = await freePorts(5);
    expect(new Set(ports).size).toBe(5);
  });

  it('starts, freezes, kills and restarts a standalone redis', async () => {
    const redis = await startRedis();
    cleanup.add(() => redis.stop());
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    expect(await redisCli(redis.port, 'PING')).toBe('PONG\n');

    await redis.stopProcess('SIGSTOP');
    expect(await ping(redis.port, 300)).toBe(false);
    await redis.stopProcess('SIGCONT');
    expect(await ping(redis.port)).toBe(true);

    await redisCli(redis.port, 'SET', 'k', 'v');
    const firstPid = redis.pid;
    await redis.kill9();
    expect(alive(firstPid)).toBe(false);
    await redis.restart();
    expect(redis.pid).not.toBe(firstPid);
    expect(await redisCli(redis.port, 'PING')).toBe('PONG\n');
    // Persistence is off, so a crash loses everything, as the cache tests expect.
    expect(await redisCli(redis.port, 'EXISTS', 'k')).toBe('0\n');

    const pid = redis.pid;
    await redis.stop();
    expect(alive(pid)).toBe(false);
  });

  it('starts a three-node cluster', async () => {
    const cluster = await startCluster();
    cleanup.add(() => cluster.stop());
    expect(cluster.nodes).toHaveLength(3);
    for (const node of cluster.nodes) {
      expect(await redisCli(node.port, 'CLUSTER', 'INFO')).toContain('cluster_state:ok');
    }
    await cluster.stop();
    for (const server of cluster.servers) expect(alive(server.pid)).toBe(false);
  }, 60_000);

  it('proxies through twemproxy to two redis servers', async () => {
    const backends = await Promise.all([startRedis(), startRedis()]);
    for (const b of backends) cleanup.add(() => b.stop());
    const proxy = await startTwemproxy(backends);
    cleanup.add(() => proxy.stop());

    expect(await redisCli(proxy.port, 'SET', 'k', 'v')).toBe('OK\n');
    expect(await redisCli(proxy.port, 'GET', 'k')).toBe('v\n');
    // The key landed on exactly one of the backends.
    const found = await Promise.all(backends.map((b) => redisCli(b.port, 'EXISTS', 'k')));
    expect(found.map((s) => s.trim()).sort()).toEqual(['0', '1']);

    await proxy.stop();
    expect(alive(proxy.pid)).toBe(false);
  });
});
