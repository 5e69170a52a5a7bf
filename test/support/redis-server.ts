// A real redis-server on 127.0.0.1 in its own temp dir, for integration tests.
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './free-port.js';
import { waitUntil } from './poll.js';
import { isRunning, kill9, sendStopSignal, spawnTracked, terminate } from './processes.js';
import { ping } from './resp.js';
import { makeTempDir } from './tmp.js';

export interface StartRedisOptions {
  /** Fixed port; by default a free one is picked (and re-picked if it was stolen). */
  port?: number;
  /** Extra redis-server arguments, e.g. ['--maxmemory', '10mb']. */
  args?: string[];
}

const READY_TIMEOUT_MS = 10_000;

function logTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log)';
  }
}

async function launch(port: number, dir: string, extraArgs: readonly string[]): Promise<ChildProcess> {
  const logFile = join(dir, 'redis.log');
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--save', '',
    '--appendonly', 'no',
    '--protected-mode', 'no',
    '--daemonize', 'no',
    '--dir', dir,
    '--logfile', logFile,
    ...extraArgs,
  ];
  const child = await spawnTracked('redis-server', args, { cwd: dir });
  try {
    await waitUntil(`redis-server on port ${port} to answer PING`, () => ping(port, 500), {
      timeoutMs: READY_TIMEOUT_MS,
      abortIf: () => (isRunning(child) ? undefined : `it exited (code ${child.exitCode}, signal ${child.signalCode})`),
    });
  } catch (err) {
    await kill9(child);
    throw new Error(`${(err as Error).message}\n--- ${logFile} ---\n${logTail(logFile)}`);
  }
  return child;
}

export class RedisServer {
  #child: ChildProcess;

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly args: readonly string[],
    child: ChildProcess,
  ) {
    this.#child = child;
  }

  static async start(opts: StartRedisOptions = {}): Promise<RedisServer> {
    const args = opts.args ?? [];
    const dir = makeTempDir('redis');
    if (opts.port !== undefined) return new RedisServer(opts.port, dir, args, await launch(opts.port, dir, args));
    // freePort() only says the port *was* free; if another process grabbed it
    // first, redis exits with "Address already in use" and we pick another.
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      try {
        return new RedisServer(port, dir, args, await launch(port, dir, args));
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  }

  get pid(): number {
    const { pid } = this.#child;
    if (pid === undefined) throw new Error('redis-server has no pid');
    return pid;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return isRunning(this.#child);
  }

  /** Graceful shutdown (SIGTERM), escalating to SIGKILL after 5 s. */
  stop(): Promise<void> {
    return terminate(this.#child);
  }

  /** Simulates a crash: SIGKILL, then wait until the process is really gone. */
  kill9(): Promise<void> {
    return kill9(this.#child);
  }

  /** Starts redis again on the same port and dir (stopping it first if still running). */
  async restart(): Promise<void> {
    await this.stop();
    this.#child = await launch(this.port, this.dir, this.args);
  }

  /** SIGSTOP freezes the server (connections stay open, nothing answers), SIGCONT resumes it; see sendStopSignal. */
  async stopProcess(signal: 'SIGSTOP' | 'SIGCONT'): Promise<void> {
    await sendStopSignal(this.pid, signal);
  }
}

export function startRedis(opts?: StartRedisOptions): Promise<RedisServer> {
  return RedisServer.start(opts);
}
