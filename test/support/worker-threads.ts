// The main thread's side of the fixtures that run in worker threads
// (test/integration/fixtures/): a plain worker attached to a cache and driven
// by requests, and piscina pools whose tasks attach by the handle they carry.
import { Worker } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { CacheHandle } from 'shardcache';
import type { Cleanup } from './cleanup.js';
import { within } from './deadline.js';

const FIXTURES = new URL('../integration/fixtures/', import.meta.url);

/** The main thread's side of fixtures/attach-worker.mjs: a worker attached to a cache, driven by requests. */
export class AttachedWorker {
  private readonly worker: Worker;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  readonly ready: Promise<void>;

  private constructor(worker: Worker) {
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

  /** Starts a worker attached to the cache of `handle`; `cleanup`, when given, stops it. */
  static async start(handle: CacheHandle, cleanup?: Cleanup): Promise<AttachedWorker> {
    const worker = new Worker(new URL('attach-worker.mjs', FIXTURES), { workerData: { handle } });
    const client = new AttachedWorker(worker);
    cleanup?.add(() => client.stop());
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

/**
 * A piscina pool of `threads` threads running a task module of fixtures/:
 * 'cache-worker.mjs' (one attach per task: write or fetch, for the Redis
 * tier) or 'piscina-task.mjs' (one attach per thread: the thread tests).
 * `cleanup`, when given, destroys it.
 */
export function piscinaPool(task: 'cache-worker.mjs' | 'piscina-task.mjs', threads: number, cleanup?: Cleanup): Piscina {
  const pool = new Piscina({ filename: new URL(task, FIXTURES).href, minThreads: threads, maxThreads: threads });
  cleanup?.add(() => pool.destroy());
  return pool;
}
