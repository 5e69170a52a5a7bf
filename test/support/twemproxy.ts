// A real twemproxy (nutcracker) in front of Redis servers, on 127.0.0.1.
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePorts } from './free-port.js';
import { waitUntil } from './poll.js';
import { isRunning, kill9, spawnTracked, terminate } from './processes.js';
import { ping } from './resp.js';
import { makeTempDir } from './tmp.js';

export interface Twemproxy {
  port: number;
  statsPort: number;
  pid: number;
  logFile: string;
  stop(): Promise<void>;
}

export interface TwemproxyOptions {
  /** Extra pool keys, e.g. { timeout: 500, server_failure_limit: 1 }. */
  pool?: Record<string, string | number | boolean>;
}

type Backend = number | { port: number };

function renderConfig(port: number, backends: readonly Backend[], extra: TwemproxyOptions['pool']): string {
  const lines = [
    'shardcache:',
    `  listen: 127.0.0.1:${port}`,
    '  hash: fnv1a_64',
    '  distribution: ketama',
    '  redis: true',
    '  auto_eject_hosts: false',
    ...Object.entries(extra ?? {}).map(([key, value]) => `  ${key}: ${String(value)}`),
    '  servers:',
    ...backends.map((b) => `    - 127.0.0.1:${typeof b === 'number' ? b : b.port}:1`),
  ];
  return lines.join('\n') + '\n';
}

export async function startTwemproxy(backends: readonly Backend[], opts: TwemproxyOptions = {}): Promise<Twemproxy> {
  if (backends.length === 0) throw new Error('twemproxy needs at least one backend');
  const dir = makeTempDir('twemproxy');
  const [port, statsPort] = await freePorts(2);
  if (port === undefined || statsPort === undefined) throw new Error('no ports allocated');
  const conf = join(dir, 'nutcracker.yml');
  const logFile = join(dir, 'nutcracker.log');
  writeFileSync(conf, renderConfig(port, backends, opts.pool));

  // Foreground (no -d) so the pid we spawned is the proxy itself and it dies with us.
  const args = ['-c', conf, '-o', logFile, '-a', '127.0.0.1', '-s', String(statsPort), '-p', join(dir, 'nutcracker.pid')];
  const child: ChildProcess = await spawnTracked('nutcracker', args, { cwd: dir });
  try {
    // nutcracker answers PING itself, so this works even before backends connect.
    await waitUntil(`nutcracker on port ${port} to answer PING`, () => ping(port, 500), {
      timeoutMs: 10_000,
      abortIf: () => (isRunning(child) ? undefined : `it exited (code ${child.exitCode}, signal ${child.signalCode})`),
    });
  } catch (err) {
    await kill9(child);
    let log = '(no log)';
    try {
      log = readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      // Died before opening its log.
    }
    throw new Error(`${(err as Error).message}\n--- ${logFile} ---\n${log}`);
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error('nutcracker has no pid');
  return { port, statsPort, pid, logFile, stop: () => terminate(child) };
}
