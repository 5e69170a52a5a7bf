// Small helpers for the integration tests. They import the package by name,
// as a user does ('shardcache' resolves to dist/ through package.json exports).
import { expect } from 'vitest';
import { ShardCacheError } from 'shardcache';
import { waitUntil } from '../support/poll.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;

/** Runs `fn` and returns the ShardCacheError it throws; fails if it throws anything else or nothing. */
export function expectCode(fn: () => unknown, code: string): ShardCacheError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  if (caught === undefined) throw new Error(`expected ${code}, nothing was thrown`);
  expect(caught).toBeInstanceOf(ShardCacheError);
  expect(caught).toBeInstanceOf(Error);
  expect((caught as ShardCacheError).name).toBe('ShardCacheError');
  expect((caught as ShardCacheError).code).toBe(code);
  return caught as ShardCacheError;
}

export async function expectRejectsCode(promise: Promise<unknown>, code: string): Promise<ShardCacheError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  if (caught === undefined) throw new Error(`expected a rejection with ${code}, it resolved`);
  expect(caught).toBeInstanceOf(ShardCacheError);
  expect((caught as ShardCacheError).code).toBe(code);
  return caught as ShardCacheError;
}

/** Polls a synchronous condition until it holds, failing after `timeoutMs`. */
export async function eventually(what: string, condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  await waitUntil(what, async () => condition(), { timeoutMs, intervalMs: 5 });
}

/** Lets the event loop turn once (so the supervisor can see owner exits, messages arrive). */
export function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Resolves with `promise`'s value, or rejects if it takes longer than `ms`: a hang becomes a failure. */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The main thread's side of fixtures/attach-worker.mjs: a worker attached to a cache, driven by requests. */
export class AttachedWorker {
  private readonly worker: import('node:worker_threads').Worker;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  readonly ready: Promise<void>;

  private constructor(worker: import('node:worker_threads').Worker) {
    this.worker = worker;
    this.ready = new Promise((resolve, reject) => {
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`attach worker exited (${code}) before it was ready`)));
      worker.on('message', (message: { ready?: boolean; id?: number; result?: unknown; error?: { code: string; message: string } }) => {
        if (message.ready) {
          resolve();
          return;
        }
        const request = this.pending.get(message.id!);
        if (!request) return;
        this.pending.delete(message.id!);
        if (message.error) request.reject(Object.assign(new Error(message.error.message), { code: message.error.code }));
        else request.resolve(message.result);
      });
    });
    worker.on('error', (error) => {
      for (const request of this.pending.values()) request.reject(error);
      this.pending.clear();
    });
  }

  static async start(handle: unknown): Promise<AttachedWorker> {
    const { Worker } = await import('node:worker_threads');
    const worker = new Worker(new URL('./fixtures/attach-worker.mjs', import.meta.url), { workerData: { handle } });
    const client = new AttachedWorker(worker);
    await within(15_000, 'the attach worker', client.ready);
    return client;
  }

  call<T = unknown>(op: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++;
    return within(20_000, `worker ${op}`, new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, op, args });
    }));
  }

  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}
