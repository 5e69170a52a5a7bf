/**
 * The cache-wide control block: one small SharedArrayBuffer every thread maps.
 *
 *   Int32 words:  [0] closed  [1] next producer id  [2] next thread-stats slot
 *                 [3] writes waiting for Redis (pending)  [4] unused
 *                 [5] flush bell: an owner saw a batch's worth of pending writes
 *   Float64 4..7: Redis write-behind counters (flushed, retries, failed, last flush ms)
 *   Float64 (index 8 on): per-thread hit and miss counters, one 64-byte line
 *                 per thread so threads never write the same cache line.
 *
 * Hits and misses are counted by readers on every thread, so each thread owns
 * a slot and adds to it with plain stores; `stats()` sums the slots.
 */
export const C_CLOSED = 0;
export const C_NEXT_PRODUCER = 1;
export const C_NEXT_THREAD = 2;
export const C_REDIS_PENDING = 3;
export const C_FLUSH_BELL = 5;

// Float64 counters of the Redis write-behind (written by the flushing thread only).
export const F_REDIS_FLUSHED = 4;
export const F_REDIS_RETRIES = 5;
export const F_REDIS_FAILED = 6;
export const F_REDIS_LAST_FLUSH_MS = 7;

/** Float64 index of the first thread slot. */
const THREADS_BASE = 8;
const SLOT_DOUBLES = 8;
export const T_HITS = 0;
export const T_MISSES = 1;

/** Threads that can ever use one cache (each attach takes a slot). */
export const MAX_THREADS = 4096;

export function createControl(): SharedArrayBuffer {
  return new SharedArrayBuffer((THREADS_BASE + MAX_THREADS * SLOT_DOUBLES) * 8);
}

/**
 * Takes this thread's stats slot; returns its counters (index T_HITS, T_MISSES)
 * as a view of their own, so a count is one store at a constant index: the
 * near-cache hit, which counts one, costs ~100 ns in all.
 */
export function takeThreadSlot(control: Int32Array): Float64Array {
  const n = Atomics.add(control, C_NEXT_THREAD, 1);
  // Past MAX_THREADS, threads share the last slot: counts stay right in sum,
  // only the write pattern is no longer contention-free.
  const first = THREADS_BASE + Math.min(n, MAX_THREADS - 1) * SLOT_DOUBLES;
  return new Float64Array(control.buffer, first * 8, SLOT_DOUBLES);
}

export function sumThreadCounter(control: Int32Array, f64: Float64Array, counter: number): number {
  const used = Math.min(Atomics.load(control, C_NEXT_THREAD), MAX_THREADS);
  let sum = 0;
  for (let t = 0; t < used; t++) sum += f64[THREADS_BASE + t * SLOT_DOUBLES + counter]!;
  return sum;
}
