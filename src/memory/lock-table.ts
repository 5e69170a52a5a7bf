/**
 * Process-wide locks in shared memory, for `lock`, `incr` and `update` when no
 * Redis is configured: every thread of the process maps the same table.
 *
 *   Int32 per slot: [0] holder token (0 = free)  [1] fencing counter
 *                   [2] token whose expiry is written in the Float64 below
 *   Float64 per slot: expiry time (ms since epoch) of the current holder
 *
 * Keys hash to one of LOCK_SLOTS slots. Two keys sharing a slot exclude each
 * other (safe, only less concurrent); fencing tokens come from the slot's
 * counter, so they strictly increase for every key of the slot.
 *
 * Taking a lock is a compare-and-swap of the holder word. The expiry is
 * written after the swap, so a reader could see the new holder with the old
 * holder's (past) expiry and steal the lock: word [2] says whose expiry the
 * Float64 holds, and a lock counts as expired only if that is the holder's.
 * A thread that dies holding a lock holds it only until its expiry.
 */
export const LOCK_SLOTS = 4096;
const WORDS = 4;
const EXPIRY_BASE = (LOCK_SLOTS * WORDS * 4) / 8;

export function createLockTable(): SharedArrayBuffer {
  return new SharedArrayBuffer(LOCK_SLOTS * WORDS * 4 + LOCK_SLOTS * 8);
}

export class LockTable {
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private readonly tokens: Int32Array;

  /** `tokens` is a shared counter word (in the control block) handing out unique tokens. */
  constructor(sab: SharedArrayBuffer, tokens: Int32Array, private readonly tokenIndex: number) {
    this.i32 = new Int32Array(sab);
    this.f64 = new Float64Array(sab);
    this.tokens = tokens;
  }

  slotOf(hash: number): number {
    return (hash >>> 0) % LOCK_SLOTS;
  }

  /** Tries once. Returns { token, fence } or null if held by someone else. */
  tryAcquire(slot: number, ttlMs: number): { token: number; fence: number } | null {
    const w = slot * WORDS;
    const holder = Atomics.load(this.i32, w);
    if (holder !== 0 && !this.expired(slot, holder)) return null;
    const token = (Atomics.add(this.tokens, this.tokenIndex, 1) + 1) | 0 || 1;
    if (Atomics.compareExchange(this.i32, w, holder, token) !== holder) return null;
    this.f64[EXPIRY_BASE + slot] = Date.now() + ttlMs;
    Atomics.store(this.i32, w + 2, token);
    const fence = Atomics.add(this.i32, w + 1, 1) + 1;
    return { token, fence };
  }

  /** Waits (without blocking the thread) until the slot's holder changes, at most `ms`. */
  async waitForChange(slot: number, ms: number): Promise<void> {
    const w = slot * WORDS;
    const holder = Atomics.load(this.i32, w);
    if (holder === 0) return;
    const result = Atomics.waitAsync(this.i32, w, holder, ms);
    if (result.async) await result.value;
  }

  release(slot: number, token: number): boolean {
    const w = slot * WORDS;
    if (Atomics.compareExchange(this.i32, w, token, 0) !== token) return false;
    Atomics.notify(this.i32, w);
    return true;
  }

  extend(slot: number, token: number, ms: number): boolean {
    const w = slot * WORDS;
    if (Atomics.load(this.i32, w) !== token) return false;
    this.f64[EXPIRY_BASE + slot] = Date.now() + ms;
    Atomics.store(this.i32, w + 2, token);
    // The holder may have expired and been replaced between the check and the write.
    return Atomics.load(this.i32, w) === token;
  }

  private expired(slot: number, holder: number): boolean {
    if (Atomics.load(this.i32, slot * WORDS + 2) !== holder) return false;
    return this.f64[EXPIRY_BASE + slot]! <= Date.now();
  }
}
