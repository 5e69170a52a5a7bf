// Consistency of incr/update/lock across the threads of one process, without
// Redis: the creating thread (this test) plus worker threads that attach to the
// cache by its handle (fixtures/consistency-thread.mjs).
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardCache } from 'shardcache';
import { runTask } from './fixtures/consistency-tasks.mjs';

interface Reply { id?: number; ok?: boolean; value?: unknown; error?: { code?: string; message: string }; ready?: boolean }

class Thread {
  private nextId = 1;
  private constructor(readonly worker: Worker) {}

  static async start(handle: unknown): Promise<Thread> {
    const worker = new Worker(new URL('./fixtures/consistency-thread.mjs', import.meta.url), { workerData: { handle } });
    await new Promise<void>((resolve, reject) => {
      const onReady = (message: Reply) => {
        if (!message.ready) return;
        worker.off('message', onReady);
        worker.off('error', reject);
        resolve();
      };
      worker.on('message', onReady);
      worker.once('error', reject);
    });
    return new Thread(worker);
  }

  call<T>(task: Record<string, unknown>): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const onMessage = (message: Reply) => {
        if (message.id !== id) return;
        this.worker.off('message', onMessage);
        if (message.ok) resolve(message.value as T);
        else reject(Object.assign(new Error(message.error!.message), { code: message.error!.code }));
      };
      this.worker.on('message', onMessage);
      this.worker.postMessage({ id, task });
    });
  }

  async close(): Promise<void> {
    const exited = new Promise((resolve) => this.worker.once('exit', resolve));
    await this.call({ op: 'close' });
    await exited;
  }
}

interface Counted { values: number[]; increasing: boolean }
interface Hold { start: number; end: number; fence: number; released: boolean }
interface Tried { ok: boolean; fence?: number; code?: string; acquiredAt?: number; waitedMs: number }

const N = 3;
const M = 200;

describe('consistency across threads (no Redis)', () => {
  let cache: ShardCache;
  let threads: Thread[] = [];

  beforeAll(async () => {
    cache = await ShardCache.create({ shards: 4 });
    threads = await Promise.all(Array.from({ length: N }, () => Thread.start(cache.handle)));
  });

  afterAll(async () => {
    await Promise.allSettled(threads.map((t) => t.close()));
    await cache?.close();
  });

  /** Runs the task on every worker thread and on this thread at once. */
  function everywhere<T>(task: Record<string, unknown>): Promise<T[]> {
    return Promise.all([...threads.map((t) => t.call<T>(task)), runTask(cache, task) as Promise<T>]);
  }

  function expectExactlyOnceEach(results: Counted[]): void {
    for (const r of results) {
      expect(r.values).toHaveLength(M);
      expect(r.increasing).toBe(true);
    }
    // Every value 1..(N+1)M was handed out exactly once.
    const all = results.flatMap((r) => r.values).sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: (N + 1) * M }, (_, i) => i + 1));
  }

  it(`incr from ${N} worker threads and the main thread, ${M} times each, loses no increment`, async () => {
    const results = await everywhere<Counted>({ op: 'incr', key: 'hits', m: M });
    expectExactlyOnceEach(results);
    expect(cache.get('hits')).toBe((N + 1) * M);
    // Every thread sees the final value too.
    for (const t of threads) expect(await t.call({ op: 'get', key: 'hits' })).toBe((N + 1) * M);
  });

  it(`update from ${N} worker threads and the main thread, ${M} times each, loses no update`, async () => {
    const results = await everywhere<Counted>({ op: 'update', key: 'cart', m: M });
    expectExactlyOnceEach(results);
    expect(cache.get('cart')).toEqual({ n: (N + 1) * M });
    for (const t of threads) expect(await t.call({ op: 'get', key: 'cart' })).toEqual({ n: (N + 1) * M });
  });

  it('lock holds never overlap and fencing tokens increase in acquisition order', async () => {
    const perThread = await everywhere<Hold[]>({ op: 'holds', key: 'res', rounds: 100, ttlMs: 5_000, waitMs: 20_000 });
    const holds = perThread.flat().sort((a, b) => a.start - b.start);
    expect(holds).toHaveLength((N + 1) * 100);
    for (const h of holds) expect(h.released).toBe(true);
    for (let i = 1; i < holds.length; i++) {
      const [prev, next] = [holds[i - 1]!, holds[i]!];
      expect(prev.end, `hold ${i - 1} [${prev.start}, ${prev.end}] overlaps hold ${i} [${next.start}, ${next.end}]`).toBeLessThanOrEqual(next.start);
      expect(next.fence).toBeGreaterThan(prev.fence);
    }
  });

  it('lock with waitMs 50 rejects with ERR_LOCK_TIMEOUT while another thread holds it', async () => {
    const holder = await threads[0]!.call<Tried>({ op: 'tryLock', key: 'busy', ttlMs: 10_000, waitMs: 1_000, name: 'busy' });
    expect(holder.ok).toBe(true);
    try {
      // From another worker thread...
      const other = await threads[1]!.call<Tried>({ op: 'tryLock', key: 'busy', ttlMs: 1_000, waitMs: 50 });
      expect(other.ok).toBe(false);
      expect(other.code).toBe('ERR_LOCK_TIMEOUT');
      expect(other.waitedMs).toBeGreaterThanOrEqual(45);
      // ...and from the creating thread.
      const error = await cache.lock('busy', { waitMs: 50 }).then(() => undefined, (e: unknown) => e);
      expect(error).toMatchObject({ code: 'ERR_LOCK_TIMEOUT' });
    } finally {
      expect(await threads[0]!.call({ op: 'release', name: 'busy' })).toBe(true);
    }
    // The creating thread's timed-out request still holds a place in the
    // slot's queue until this thread passes it on, which it does as soon as
    // its turn comes, asynchronously: a try-once (waitMs 0) right now may
    // still find that place ahead of it. A short wait finds the lock free.
    const after = await cache.lock('busy', { waitMs: 1_000 });
    expect(after.fencingToken).toBeGreaterThan(holder.fence!);
    expect(await after.release()).toBe(true);
  });

  it('a lock whose holder never releases is taken by another thread after its TTL, with a larger fencing token', async () => {
    const first = await threads[2]!.call<Tried>({ op: 'tryLock', key: 'abandoned', ttlMs: 100, waitMs: 1_000, name: 'abandoned' });
    expect(first.ok).toBe(true);
    const second = await threads[0]!.call<Tried>({ op: 'tryLock', key: 'abandoned', ttlMs: 5_000, waitMs: 3_000, name: 'taker' });
    expect(second.ok).toBe(true);
    expect(second.fence).toBeGreaterThan(first.fence!);
    // Not before the first holder's TTL ran out (1 ms of slack for clock rounding).
    expect(second.acquiredAt! - first.acquiredAt!).toBeGreaterThanOrEqual(99);
    // The first holder lost it: it can neither extend nor release the new holder's lock.
    expect(await threads[2]!.call({ op: 'extend', name: 'abandoned', ms: 5_000 })).toEqual({ ok: false, lost: true });
    expect(await threads[2]!.call({ op: 'release', name: 'abandoned' })).toBe(false);
    expect(await threads[0]!.call({ op: 'extend', name: 'taker', ms: 5_000 })).toEqual({ ok: true, lost: false });
    expect(await threads[0]!.call({ op: 'release', name: 'taker' })).toBe(true);
  });
});
