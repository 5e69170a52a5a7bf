// Process-level guarantees, each checked in a fresh node process: memory stays
// bounded while far more than maxBytes is inserted, and after close() nothing
// keeps the process alive.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { MiB } from '../support/bytes.js';
import { spawnTracked, waitForExit } from '../support/processes.js';

interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  exited: boolean;
}

/** Runs a fixture in a new node process; `exited` is false if it was still alive after `timeoutMs` (then it is killed). */
async function runChild(fixture: string, args: string[], nodeFlags: string[], timeoutMs: number): Promise<ChildResult> {
  const script = fileURLToPath(new URL(`./fixtures/${fixture}`, import.meta.url));
  const child = await spawnTracked(process.execPath, [...nodeFlags, script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const exited = await waitForExit(child, timeoutMs);
  if (!exited) {
    child.kill('SIGKILL');
    await waitForExit(child, 10_000);
  }
  // Let the pipes drain after exit.
  await Promise.all([child.stdout, child.stderr].map((s) => (s!.readableEnded ? undefined : new Promise((r) => s!.once('close', r)))));
  return { code: child.exitCode, signal: child.signalCode, stdout, stderr, exited };
}

describe('memory bound (child process)', () => {
  it('RSS growth stays within maxBytes + 96 MiB while 10x maxBytes is inserted, and stops growing', async () => {
    const maxBytes = 64 * MiB;
    // The documented constant: beyond the shards' maxBytes, a process pays for
    // the owner threads (a V8 isolate each), this thread's write queues (one
    // ring per shard, 4 MiB each with the default maxValueBytes) and the JS
    // heaps. 96 MiB covers that with two shards.
    const OVERHEAD = 96 * MiB;
    // Once the cache is full, inserting 8x more must not grow RSS by more than heap noise.
    const PLATEAU = 32 * MiB;
    // --max-semi-space-size caps V8's young generation (the test loop's garbage),
    // which otherwise grows to ~40 MiB per isolate and is not the cache's memory.
    const result = await runChild('memory-child.mjs', [String(maxBytes), '2'], ['--max-semi-space-size=4'], 60_000);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const m = JSON.parse(result.stdout) as {
      before: number; afterTwo: number; after: number; sets: number;
      stats: { bytesUsed: number; maxBytes: number; evictions: number; entries: number; sets: number };
    };
    const growth = m.after - m.before;
    expect(m.sets * 1000).toBeGreaterThanOrEqual(9.5 * maxBytes);
    expect(m.stats.sets).toBe(m.sets);
    expect(m.stats.bytesUsed).toBeLessThanOrEqual(maxBytes);
    expect(m.stats.evictions).toBe(m.sets - m.stats.entries); // old entries were evicted, and counted
    expect(growth).toBeLessThan(maxBytes + OVERHEAD);
    expect(m.after - m.afterTwo).toBeLessThan(PLATEAU);
  }, 90_000);
});

describe('process exit after close (child process)', () => {
  // Each child finishes its work in well under a second; if it is alive 10 s
  // later, something (a thread, a handle, a timer) keeps it alive.
  const EXIT_TIMEOUT_MS = 10_000;

  it.each([
    ['close()', 'close'],
    ['Symbol.asyncDispose', 'dispose'],
    ['an attached worker thread detached and the creator closed', 'attached-worker'],
  ])('exits by itself after %s', async (_name, mode) => {
    const result = await runChild('exit-child.mjs', [mode], [], EXIT_TIMEOUT_MS);
    expect(result.exited).toBe(true);
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe('closed\n');
    expect(result.code).toBe(0);
  }, 30_000);

  // Owners are unref()'d once ready: a process that forgets close() still ends.
  it('exits by itself when close() is never called (owners do not hold the process)', async () => {
    const result = await runChild('exit-child.mjs', ['no-close'], [], EXIT_TIMEOUT_MS);
    expect(result.exited).toBe(true);
    expect(result.stdout).toBe('done\n');
    expect(result.code).toBe(0);
  }, 30_000);
});
