// Tracks every server process the test helpers spawn so that a test file that
// crashes, forgets its afterAll, or is torn down by vitest never leaves servers
// behind. Only pids we spawned are ever signalled.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { waitUntil } from './poll.js';

interface Registry {
  children: Set<ChildProcess>;
  dirs: Set<string>;
}

// Keyed on globalThis so that a module graph loaded twice in one process
// (vite-node can re-evaluate modules) still shares one registry and one handler.
const KEY = Symbol.for('shardcache.test.support.registry');
const holder = globalThis as typeof globalThis & { [KEY]?: Registry };

function registry(): Registry {
  const existing = holder[KEY];
  if (existing) return existing;
  const created: Registry = { children: new Set(), dirs: new Set() };
  holder[KEY] = created;
  installSafetyNet();
  return created;
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function cleanupSync(): void {
  const reg = holder[KEY];
  if (!reg) return;
  for (const child of reg.children) {
    if (child.pid !== undefined && isRunning(child)) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // Already gone between the check and the kill.
      }
    }
  }
  reg.children.clear();
  for (const dir of reg.dirs) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  reg.dirs.clear();
}

function installSafetyNet(): void {
  process.on('exit', cleanupSync);
  // vitest's fork pool ends workers with SIGTERM, and a signal that has no
  // listener kills Node without emitting 'exit'. So we listen, clean up, and then
  // re-raise the signal to keep its default effect, unless someone else handles it.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(signal, () => {
      cleanupSync();
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}

/** Remembers a temp dir so it is removed when the test process exits. */
export function trackDir(dir: string): void {
  registry().dirs.add(dir);
}

/** Spawns a tracked child; resolves once it is running, rejects if it cannot start. */
export async function spawnTracked(
  command: string,
  args: readonly string[],
  options: SpawnOptions = {},
): Promise<ChildProcess> {
  const reg = registry();
  const child = spawn(command, args, { stdio: 'ignore', ...options });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) => reject(new Error(`cannot spawn ${command}: ${err.message}`)));
  });
  // Later 'error' events (e.g. signalling a process that just died) must not
  // become uncaught exceptions; callers observe the child through 'exit'.
  child.on('error', () => {});
  reg.children.add(child);
  child.once('exit', () => reg.children.delete(child));
  return child;
}

/** Resolves true once the child has exited, or false if it is still alive after timeoutMs. */
export async function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (!isRunning(child)) return true;
  const ac = new AbortController();
  const exited = new Promise<true>((resolve) => child.once('exit', () => resolve(true)));
  const timedOut = delay(timeoutMs, false as const, { signal: ac.signal }).catch(() => false as const);
  try {
    return await Promise.race([exited, timedOut]);
  } finally {
    ac.abort();
  }
}

/** SIGTERM, then SIGKILL if the child has not exited within graceMs. */
export async function terminate(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (!isRunning(child)) return;
  child.kill('SIGTERM');
  // A SIGSTOPped process cannot act on SIGTERM until it is continued.
  child.kill('SIGCONT');
  if (await waitForExit(child, graceMs)) return;
  await kill9(child);
}

/** SIGKILL and wait for the exit to be observed. */
export async function kill9(child: ChildProcess): Promise<void> {
  if (!isRunning(child)) return;
  child.kill('SIGKILL');
  if (!(await waitForExit(child, 10_000))) {
    throw new Error(`pid ${child.pid} survived SIGKILL for 10 s`);
  }
}

/** Reads the process state letter from /proc (Linux); 'T' means stopped by a signal. */
export function isStopped(pid: number): boolean {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name in field 2 may contain spaces, so parse after its closing paren.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state === 'T';
}

/**
 * SIGSTOP freezes a process (its connections stay open, nothing answers),
 * SIGCONT resumes it. Resolves once the kernel reports the new state, so the
 * caller can rely on it immediately.
 */
export async function sendStopSignal(pid: number, signal: 'SIGSTOP' | 'SIGCONT'): Promise<void> {
  process.kill(pid, signal);
  const wantStopped = signal === 'SIGSTOP';
  await waitUntil(`pid ${pid} to be ${wantStopped ? 'stopped' : 'continued'}`, async () => {
    return isStopped(pid) === wantStopped;
  }, { timeoutMs: 5_000, intervalMs: 5 });
}

export { isRunning };
