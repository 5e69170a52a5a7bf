import { execFile } from 'node:child_process';

/** Runs redis-cli with the given arguments; rejects with its output on a non-zero exit. */
export function runRedisCli(args: readonly string[], timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    // The timeout keeps a SIGSTOPped or wedged server from hanging the test forever.
    execFile('redis-cli', args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}

/**
 * `redis-cli -h 127.0.0.1 -p port ...args`, returning its raw stdout. stdout is
 * not a TTY, so replies come in redis-cli's plain format ("PONG\n", "OK\n").
 */
export function redisCli(port: number, ...args: string[]): Promise<string> {
  return runRedisCli(['-h', '127.0.0.1', '-p', String(port), ...args]);
}
