// The process-wide lock table under contention, without Redis: incr, update
// and lock from the creating thread (this test) and attached worker threads
// end exact, no thread starves, waitMs is honoured, and a thread that gives
// up, detaches or dies while others wait leaves nothing stuck.
//
// Two kinds of worker: fixtures/lock-rounds.mjs runs one task at top level
// and listens for nothing (a thread whose event loop only the cache keeps
// alive), fixtures/lock-thread.mjs takes tasks one by one (for tests that
// need a request to wait at a known place in the queue).
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardCache } from 'shardcache';
import { hashKey } from '../../dist/src/hash.js';
import { CLAIM_WINDOW_MS, LOCK_SLOTS } from '../../dist/src/memory/lock-table.js';
import { now, runLockTask } from './fixtures/lock-tasks.mjs';
import { within } from '../support/deadline.js';

interface Reply { id?: number; ok?: boolean; value?: unknown; error?: { code?: string; message: string }; ready?: boolean }
interface Counted { values: number[]; maxWaitMs: number }
interface CountedKeys { values: number[][]; maxWaitMs: number }
interface Hold { start: number; end: number; fence: number; released: boolean }
interface Held { holds: Hold[]; maxWaitMs: number }
interface Tried { ok: boolean; fence?: number; code?: string; acquiredAt?: number; waitedMs: number }

/** A whole contended run must end within this; it fails on a thread that starves, it does not measure speed. */
const RUN_BOUND_MS = 60_000;
/** No single incr, update or lock of a contended run may wait this long (4 threads take turns). */
const MAX_WAIT_MS = 5_000;
/** A request that nothing should hold up is granted within this (a loose bound: the machine is shared). */
const PROMPT_MS = 5_000;

/** A lock-thread.mjs worker, driven by requests. A request still open when the thread exits rejects. */
class Thread {
  private nextId = 1;
  private readonly open = new Map<number, (reply: Reply) => void>();
  readonly exited: Promise<number>;

  private constructor(readonly worker: Worker) {
    worker.on('message', (reply: Reply) => {
      const answer = reply.id === undefined ? undefined : this.open.get(reply.id);
      if (!answer) return;
      this.open.delete(reply.id!);
      answer(reply);
    });
    this.exited = new Promise((resolve) => worker.once('exit', (code: number) => {
      for (const answer of this.open.values()) answer({ ok: false, error: { message: `the thread exited (${code}) before it answered` } });
      this.open.clear();
      resolve(code);
    }));
  }

  static async start(handle: unknown): Promise<Thread> {
    const worker = new Worker(new URL('./fixtures/lock-thread.mjs', import.meta.url), { workerData: { handle } });
    await within(15_000, 'a lock thread to attach', new Promise<void>((resolve, reject) => {
      worker.on('message', (message: Reply) => { if (message.ready) resolve(); });
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`the lock thread exited (${code}) before it was ready`)));
    }));
    return new Thread(worker);
  }

  call<T>(task: Record<string, unknown>): Promise<T> {
    const id = this.nextId++;
    return within(RUN_BOUND_MS, `task ${String(task.op)}`, new Promise<T>((resolve, reject) => {
      this.open.set(id, (reply) => {
        if (reply.ok) resolve(reply.value as T);
        else reject(Object.assign(new Error(reply.error!.message), { code: reply.error!.code }));
      });
      this.worker.postMessage({ id, task });
    }));
  }

  async close(): Promise<void> {
    await this.call({ op: 'close' });
    await this.exited;
  }
}

/**
 * Runs `task` on `count` fresh lock-rounds.mjs workers and on this thread,
 * all starting at once; resolves with every thread's result (this thread's
 * last). A worker that exits before it answers fails the run.
 */
async function everywhere<T>(cache: ShardCache, task: Record<string, unknown>, count = 3): Promise<T[]> {
  const gate = new Int32Array(new SharedArrayBuffer(4));
  const ready: Promise<void>[] = [];
  const results: Promise<T>[] = [];
  for (let i = 0; i < count; i++) {
    const worker = new Worker(new URL('./fixtures/lock-rounds.mjs', import.meta.url), { workerData: { handle: cache.handle, gate: gate.buffer, task } });
    let answered = false;
    ready.push(new Promise((resolve, reject) => {
      worker.on('message', (message: Reply) => { if (message.ready) resolve(); });
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`worker ${i} exited (${code}) before it was ready`)));
    }));
    results.push(new Promise<T>((resolve, reject) => {
      worker.on('message', (message: Reply) => {
        if (message.ready) return;
        answered = true;
        if (message.ok) resolve(message.value as T);
        else reject(Object.assign(new Error(message.error!.message), { code: message.error!.code }));
      });
      worker.once('error', reject);
      worker.once('exit', (code) => {
        if (!answered) reject(new Error(`worker ${i} exited (${code}) in the middle of its task: its event loop ran out while it waited for a lock`));
      });
    }));
  }
  await within(15_000, 'the workers to attach', Promise.all(ready));
  Atomics.store(gate, 0, 1);
  Atomics.notify(gate, 0);
  return within(RUN_BOUND_MS, `${count + 1} threads running ${String(task.op)}`, Promise.all([...results, runLockTask(cache, task) as Promise<T>]));
}

function slotOf(key: string): number {
  return (hashKey(key) >>> 0) % LOCK_SLOTS;
}

/** `count` keys whose lock slots spread over the whole table: one in each of `count` equal ranges, the first and the last slot included. */
function keysOverSlots(count: number): string[] {
  const keys = new Array<string | undefined>(count).fill(undefined);
  let found = 0;
  for (let i = 0; found < count; i++) {
    const key = `spread:${i}`;
    const slot = slotOf(key);
    const range = Math.floor((slot * count) / LOCK_SLOTS);
    if (keys[range] !== undefined) continue;
    if (range === 0 && slot !== 0) continue;
    if (range === count - 1 && slot !== LOCK_SLOTS - 1) continue;
    keys[range] = key;
    found++;
  }
  return keys as string[];
}

function expectEachValueOnce(results: Counted[], perThread: number): void {
  for (const r of results) {
    expect(r.values).toHaveLength(perThread);
    for (let i = 1; i < r.values.length; i++) expect(r.values[i]!).toBeGreaterThan(r.values[i - 1]!);
    expect(r.maxWaitMs, 'a single wait of one thread').toBeLessThan(MAX_WAIT_MS);
  }
  const all = results.flatMap((r) => r.values).sort((a, b) => a - b);
  expect(all).toEqual(Array.from({ length: results.length * perThread }, (_, i) => i + 1));
}

describe('lock fairness across threads (no Redis)', () => {
  let cache: ShardCache;
  let threads: Thread[] = [];

  beforeAll(async () => {
    cache = await ShardCache.create({ shards: 2 });
    threads = await Promise.all([0, 1, 2].map(() => Thread.start(cache.handle)));
  });

  afterAll(async () => {
    await Promise.allSettled(threads.map((t) => t.close()));
    await cache?.close();
  });

  it('4 threads × 1000 incr of one key end at exactly 4000, each value handed out once, and none starves', { timeout: 90_000 }, async () => {
    const results = await everywhere<Counted>(cache, { op: 'incr', key: 'fair:n', m: 1000 });
    expectEachValueOnce(results, 1000);
    expect(cache.get('fair:n')).toBe(4000);
  });

  it('4 threads × 10 rounds of incr over 64 keys in every part of the lock table end at the exact sums', { timeout: 90_000 }, async () => {
    const keys = keysOverSlots(64);
    expect(new Set(keys.map(slotOf)).size).toBe(64);
    const results = await everywhere<CountedKeys>(cache, { op: 'incrKeys', keys, rounds: 10 });
    keys.forEach((key, k) => {
      expectEachValueOnce(results.map((r) => ({ values: r.values[k]!, maxWaitMs: r.maxWaitMs })), 10);
      expect(cache.get(key)).toBe(40);
    });
  });

  it('4 threads × 300 update of one key end exact', { timeout: 90_000 }, async () => {
    const results = await everywhere<Counted>(cache, { op: 'update', key: 'fair:u', m: 300 });
    expectEachValueOnce(results, 300);
    expect(cache.get('fair:u')).toEqual({ n: 1200 });
  });

  it('lock holds of 4 threads never overlap, and fencing tokens strictly increase in hold order', { timeout: 90_000 }, async () => {
    const results = await everywhere<Held>(cache, { op: 'holds', key: 'fair:res', rounds: 100, ttlMs: 10_000, waitMs: 30_000 });
    for (const r of results) expect(r.maxWaitMs, 'a single wait of one thread').toBeLessThan(MAX_WAIT_MS);
    const holds = results.flatMap((r) => r.holds).sort((a, b) => a.start - b.start);
    expect(holds).toHaveLength(4 * 100);
    for (const h of holds) expect(h.released).toBe(true);
    for (let i = 1; i < holds.length; i++) {
      const [prev, next] = [holds[i - 1]!, holds[i]!];
      expect(prev.end, `hold ${i - 1} [${prev.start}, ${prev.end}] overlaps hold ${i} [${next.start}, ${next.end}]`).toBeLessThanOrEqual(next.start);
      expect(next.fence).toBeGreaterThan(prev.fence);
    }
  });

  it('requests are granted in the order they were made; one that releases and asks again queues behind those waiting', async () => {
    const [a, b, c] = threads as [Thread, Thread, Thread];
    const gate = await a.call<Tried>({ op: 'tryLock', key: 'fair:order', ttlMs: 10_000, waitMs: 1_000, keep: true, name: 'gate' });
    expect(gate.ok).toBe(true);
    for (const [t, name] of [[b, 'b1'], [c, 'c1']] as const) await t.call({ op: 'start', key: 'fair:order', waitMs: 10_000, name });
    const mine = runLockTask(cache, { op: 'tryLock', key: 'fair:order', waitMs: 10_000 }) as Promise<Tried>;
    // b asks a second time while its first request still waits: its thread's
    // callers queue behind each other, and behind everyone already waiting.
    await b.call({ op: 'start', key: 'fair:order', waitMs: 10_000, name: 'b2' });
    await a.call({ op: 'release', name: 'gate' });
    const [b1, c1, main, b2] = await Promise.all([b.call<Tried>({ op: 'finish', name: 'b1' }), c.call<Tried>({ op: 'finish', name: 'c1' }), mine, b.call<Tried>({ op: 'finish', name: 'b2' })]);
    const fences = [gate, b1, c1, main, b2].map((t) => {
      expect(t.ok).toBe(true);
      return t.fence!;
    });
    expect([...fences].sort((x, y) => x - y)).toEqual(fences);
  });

  it('waitMs: a waiter gives up in about waitMs, and its place in the queue holds nobody up', async () => {
    const [a, b, c] = threads as [Thread, Thread, Thread];
    const holder = await a.call<Tried>({ op: 'tryLock', key: 'fair:busy', ttlMs: 10_000, waitMs: 1_000, keep: true, name: 'busy' });
    expect(holder.ok).toBe(true);
    const gaveUp = b.call<Tried>({ op: 'tryLock', key: 'fair:busy', ttlMs: 1_000, waitMs: 200 });
    // The creating thread gives up too, with its own clock.
    const started = performance.now();
    const error = await cache.lock('fair:busy', { waitMs: 200 }).then(() => undefined, (e: unknown) => e);
    const waited = performance.now() - started;
    expect(error).toMatchObject({ code: 'ERR_LOCK_TIMEOUT' });
    expect(waited).toBeGreaterThanOrEqual(195);
    expect(waited).toBeLessThan(PROMPT_MS);
    const other = await gaveUp;
    expect(other).toMatchObject({ ok: false, code: 'ERR_LOCK_TIMEOUT' });
    expect(other.waitedMs).toBeGreaterThanOrEqual(195);
    expect(other.waitedMs).toBeLessThan(PROMPT_MS);
    // c queues behind the two abandoned places; when the holder releases,
    // their threads pass their turns on at once (no claim window).
    await c.call({ op: 'start', key: 'fair:busy', waitMs: 10_000, name: 'after' });
    const released = await a.call<{ released: boolean; at: number }>({ op: 'release', name: 'busy' });
    expect(released.released).toBe(true);
    const after = await c.call<Tried>({ op: 'finish', name: 'after' });
    expect(after.ok).toBe(true);
    expect(after.fence!).toBeGreaterThan(holder.fence!);
    expect(after.acquiredAt! - released.at).toBeLessThan(CLAIM_WINDOW_MS);
    // And the lock is free again for anyone, without waiting.
    const next = await cache.lock('fair:busy', { waitMs: 0 });
    expect(next.fencingToken).toBeGreaterThan(after.fence!);
    expect(await next.release()).toBe(true);
  });

  for (const how of ['closes', 'is terminated'] as const) {
    it(`a thread that ${how} while it waits for a lock leaves nothing stuck: the others finish their rounds`, { timeout: 60_000 }, async () => {
      const [a, b, c] = threads as [Thread, Thread, Thread];
      const key = `fair:gone-${how === 'closes' ? 'closed' : 'killed'}`;
      const victim = await Thread.start(cache.handle);
      const holder = await a.call<Tried>({ op: 'tryLock', key, ttlMs: 10_000, waitMs: 1_000, keep: true, name: 'gone' });
      expect(holder.ok).toBe(true);
      // The victim queues first, then the others ask behind it.
      await victim.call({ op: 'start', key, waitMs: 30_000, name: 'victim' });
      const victimResult = victim.call<Tried>({ op: 'finish', name: 'victim' }).catch((e: Error) => ({ ok: false, code: e.message, waitedMs: 0 }));
      await b.call({ op: 'start', key, waitMs: 30_000, name: 'first-after' });
      const rounds = Promise.all([b, c].map((t) => t.call<Counted>({ op: 'incr', key, m: 150 })));
      const mine = runLockTask(cache, { op: 'incr', key, m: 150 }) as Promise<Counted>;
      if (how === 'closes') {
        await victim.close();
        // Its waiting request gave up with the cache.
        expect(await victimResult).toMatchObject({ ok: false, code: 'ERR_CLOSED' });
      } else {
        await victim.worker.terminate();
      }
      await victim.exited;
      const released = await a.call<{ released: boolean; at: number }>({ op: 'release', name: 'gone' });
      expect(released.released).toBe(true);
      const first = await b.call<Tried>({ op: 'finish', name: 'first-after' });
      expect(first.ok).toBe(true);
      // The victim's place was between the holder's and this one, and was passed over.
      expect(first.fence).toBe(holder.fence! + 2);
      expect(first.acquiredAt! - released.at).toBeLessThan(PROMPT_MS);
      const results = [...(await rounds), await mine];
      expectEachValueOnce(results, 150);
      expect(cache.get(key)).toBe(450);
    });
  }

  it('a holder terminated while it holds: the others get the lock once its TTL ran out, not before', { timeout: 60_000 }, async () => {
    const [b, c] = [threads[1]!, threads[2]!];
    const victim = await Thread.start(cache.handle);
    const holder = await victim.call<Tried>({ op: 'tryLock', key: 'fair:dead', ttlMs: 300, waitMs: 1_000, keep: true, name: 'dead' });
    expect(holder.ok).toBe(true);
    await b.call({ op: 'start', key: 'fair:dead', waitMs: 30_000, name: 'b' });
    await c.call({ op: 'start', key: 'fair:dead', waitMs: 30_000, name: 'c' });
    await victim.worker.terminate();
    const [got, then] = await Promise.all([b.call<Tried>({ op: 'finish', name: 'b' }), c.call<Tried>({ op: 'finish', name: 'c' })]);
    expect(got.ok).toBe(true);
    expect(then.ok).toBe(true);
    // The lease runs from the holder's claim, which lies between its request
    // and the moment its thread saw the grant (a loaded machine can put tens
    // of ms between the two): so no earlier than 300 ms after the request.
    // 1 ms of slack for clock rounding.
    expect(got.acquiredAt! - (holder.acquiredAt! - holder.waitedMs)).toBeGreaterThanOrEqual(299);
    expect(got.acquiredAt! - holder.acquiredAt!).toBeLessThan(300 + PROMPT_MS);
    expect(got.fence!).toBeGreaterThan(holder.fence!);
    expect(then.fence!).toBeGreaterThan(got.fence!);
  });
});
