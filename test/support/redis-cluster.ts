// A three-master Redis Cluster on 127.0.0.1, no replicas.
import { freePorts } from './free-port.js';
import { waitUntil } from './poll.js';
import { runRedisCli, redisCli } from './redis-cli.js';
import { RedisServer } from './redis-server.js';

export interface ClusterNode {
  host: string;
  port: number;
}

export interface RedisCluster {
  nodes: ClusterNode[];
  servers: RedisServer[];
  stop(): Promise<void>;
}

const SIZE = 3;

export async function startCluster(): Promise<RedisCluster> {
  // The cluster bus defaults to port+10000, which overflows 65535 for most
  // ephemeral ports, so bus ports are allocated explicitly (--cluster-port, Redis 7+).
  const ports = await freePorts(SIZE * 2);
  const dataPorts = ports.slice(0, SIZE);
  const busPorts = ports.slice(SIZE);

  const servers: RedisServer[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(servers.map((s) => s.stop()));
  };
  try {
    for (const [i, port] of dataPorts.entries()) {
      servers.push(
        await RedisServer.start({
          port,
          args: [
            '--cluster-enabled', 'yes',
            '--cluster-config-file', `nodes-${port}.conf`,
            '--cluster-node-timeout', '5000',
            '--cluster-port', String(busPorts[i]),
          ],
        }),
      );
    }
    await runRedisCli(
      ['--cluster', 'create', ...dataPorts.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'],
      30_000,
    );
    // `--cluster create` returns once slots are assigned, but each node only
    // reports ok after gossip has told it every slot is served.
    await waitUntil(
      'cluster_state:ok on every node',
      async () => {
        const infos = await Promise.all(dataPorts.map((p) => redisCli(p, 'CLUSTER', 'INFO')));
        return infos.every((info) => info.includes('cluster_state:ok'));
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { nodes: dataPorts.map((port) => ({ host: '127.0.0.1', port })), servers, stop };
}
