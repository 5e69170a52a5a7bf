/**
 * A piscina task module for the scaling scenario. Each pool thread either
 * attaches to the ONE shardcache the main thread created (the handle arrives
 * in the task; its SharedArrayBuffers are shared, not copied) or builds its
 * own lru-cache with the same entries, then times gets with tinybench.
 *
 * All threads of a round meet at a barrier in shared memory before timing, so
 * their timed windows overlap; the main thread sums their throughput. The
 * barrier also proves the round ran on `threads` distinct threads: two tasks
 * on one thread could never both arrive.
 *
 * State (the attached cache, the lru-cache copy, keys) is kept per thread
 * across tasks, so later rounds time reads only.
 */
import v8 from 'node:v8';
import { threadId } from 'node:worker_threads';
import { LRUCache } from 'lru-cache';
import { ShardCache } from '../../src/shard-cache.js';
import type { CacheHandle } from '../../src/messages.js';
import { CHOICES, KeyCursor, indices, makeKeys, type Distribution } from '../keys.js';
import { BATCH, collectGarbage, consume, measureBatch } from '../measure.js';
import { makeValue, type ValueKind } from '../values.js';

export type ScalingSubject = 'shardcache' | 'lru-cache';

export interface ScalingTask {
  op: 'read' | 'detach';
  subject: ScalingSubject;
  /** For shardcache: the cache to attach to. */
  handle?: CacheHandle;
  keyCount: number;
  valueKind: ValueKind;
  distribution: Distribution;
  timeMs: number;
  warmupMs: number;
  /** Int32Array(1) over it: threads arrived so far. */
  barrier: SharedArrayBuffer;
  threads: number;
}

export interface ScalingReply {
  threadId: number;
  opsPerSec: number;
  p50Ns: number;
  p99Ns: number;
  /** Growth of this thread's JS heap for its cache: the lru-cache copy, or shardcache's near cache and bookkeeping. */
  heapBytes: number;
}

const BARRIER_TIMEOUT_MS = 60_000;

const attached = new Map<string, { cache: ShardCache; heapBytes: number }>();
const copies = new Map<string, { cache: LRUCache<string, NonNullable<unknown>>; heapBytes: number }>();
const keySets = new Map<number, string[]>();
const choices = new Map<string, Uint32Array>();

export default async function run(task: ScalingTask): Promise<ScalingReply | null> {
  if (task.op === 'detach') {
    arrive(task.barrier, task.threads);
    for (const { cache } of attached.values()) await cache.close();
    attached.clear();
    copies.clear();
    return null;
  }

  const keys = keysFor(task.keyCount);
  const choice = choicesFor(task.distribution, task.keyCount);
  const get = await prepare(task, keys);

  const index = arrive(task.barrier, task.threads);
  // Each thread starts at its own point of the same sequence.
  const cursor = new KeyCursor(keys, choice);
  for (let i = 0, skip = Math.floor((index * CHOICES) / task.threads); i < skip; i++) cursor.nextIndex();

  const figures = await measureBatch(
    `${task.subject} read`,
    () => {
      let n = 0;
      for (let i = 0; i < BATCH; i++) if (get(cursor.next()) !== undefined) n++;
      consume(n);
    },
    { timeMs: task.timeMs, warmupMs: task.warmupMs },
  );
  const heapBytes = task.subject === 'shardcache' ? attached.get(task.handle!.channel)!.heapBytes : copies.get(copyKey(task))!.heapBytes;
  return { threadId, opsPerSec: figures.opsPerSec, p50Ns: figures.p50Ns, p99Ns: figures.p99Ns, heapBytes };
}

/** Attaches or builds this thread's cache the first time; returns its get. */
async function prepare(task: ScalingTask, keys: string[]): Promise<(key: string) => unknown> {
  if (task.subject === 'shardcache') {
    const handle = task.handle!;
    let entry = attached.get(handle.channel);
    if (entry === undefined) {
      const before = heapUsed();
      const cache = await ShardCache.attach(handle);
      // Warm the near cache (if any) with this thread's reads before weighing it.
      const cursor = new KeyCursor(keys, choicesFor(task.distribution, task.keyCount));
      for (let i = 0; i < 4 * task.keyCount; i++) cache.get(cursor.next());
      entry = { cache, heapBytes: Math.max(0, heapUsed() - before) };
      attached.set(handle.channel, entry);
    }
    const cache = entry.cache;
    return (key) => cache.get(key);
  }
  const id = copyKey(task);
  let copy = copies.get(id);
  if (copy === undefined) {
    const before = heapUsed();
    const cache = new LRUCache<string, NonNullable<unknown>>({ max: task.keyCount });
    // Each value is its own object, as a copy per thread really holds.
    for (let i = 0; i < task.keyCount; i++) cache.set(keys[i]!, makeValue(task.valueKind, i) as NonNullable<unknown>);
    copy = { cache, heapBytes: Math.max(0, heapUsed() - before) };
    copies.set(id, copy);
  }
  const cache = copy.cache;
  return (key) => cache.get(key);
}

function copyKey(task: ScalingTask): string {
  return `${task.keyCount}:${task.valueKind}`;
}

function keysFor(count: number): string[] {
  let keys = keySets.get(count);
  if (keys === undefined) keySets.set(count, (keys = makeKeys(count)));
  return keys;
}

function choicesFor(distribution: Distribution, keyCount: number): Uint32Array {
  const id = `${distribution}:${keyCount}`;
  let choice = choices.get(id);
  if (choice === undefined) choices.set(id, (choice = indices(distribution, keyCount)));
  return choice;
}

/** This thread's JS heap in use after a full GC. */
function heapUsed(): number {
  collectGarbage();
  return v8.getHeapStatistics().used_heap_size;
}

/** Waits until `threads` tasks arrived; returns this one's arrival order. */
function arrive(barrier: SharedArrayBuffer, threads: number): number {
  const i32 = new Int32Array(barrier);
  const index = Atomics.add(i32, 0, 1);
  if (index + 1 === threads) {
    Atomics.notify(i32, 0);
    return index;
  }
  const deadline = Date.now() + BARRIER_TIMEOUT_MS;
  for (;;) {
    const arrived = Atomics.load(i32, 0);
    if (arrived >= threads) return index;
    if (Date.now() > deadline) throw new Error(`scaling barrier: ${arrived} of ${threads} threads arrived in ${BARRIER_TIMEOUT_MS} ms`);
    Atomics.wait(i32, 0, arrived, 100);
  }
}
