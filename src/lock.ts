/**
 * `cache.lock(key)`: an exclusive lock with a fencing token, over one of two
 * backends with the same shape: the process-wide lock table in shared memory
 * (no Redis; a fair queue per slot, see memory/lock-table.ts), or Redis
 * (`SET NX PX` + compare-and-delete, polled), which is exclusive across
 * processes and hosts as well as threads.
 *
 * A fencing token strictly increases per key: a holder that was paused past
 * its TTL and lost the lock can be told apart by the resource it writes to.
 */
import { ShardCacheError } from './errors.js';
import { MAX_TIMER_MS } from './options.js';

export interface LockOptions {
  /**
   * How long the lock is held unless released or extended. A holder that dies
   * holds it no longer than this.
   * @default 10_000
   */
  ttlMs?: number;
  /**
   * How long to wait for the lock before rejecting with ERR_LOCK_TIMEOUT.
   * 0 tries once.
   * @default 10_000
   */
  waitMs?: number;
  /** Aborts the wait. */
  signal?: AbortSignal;
  /**
   * Extend the lock by `ttlMs` every `ttlMs / 3` while it is held; if an
   * extension fails, `lost` fires.
   * @default false
   */
  autoRenew?: boolean;
}

export interface Lock {
  /** Strictly increasing per key across all holders. */
  readonly fencingToken: number;
  /** Fires when the lock is known lost (an extension failed). */
  readonly lost: AbortSignal;
  /** Releases the lock if this holder still has it; never releases another holder's lock. */
  release(): Promise<boolean>;
  /** Extends the lock to `ttlMs` from now if this holder still has it. */
  extend(ttlMs: number): Promise<boolean>;
}

export interface LockBackend<T> {
  /**
   * Waits up to `waitMs` (0: tries once) for the lock; resolves with it, or
   * with null once `waitMs` ran out. Rejects with the signal's reason if aborted.
   */
  acquire(ttlMs: number, waitMs: number, signal: AbortSignal | undefined): Promise<{ holder: T; fence: number } | null>;
  release(holder: T): Promise<boolean>;
  extend(holder: T, ttlMs: number): Promise<boolean>;
}

/**
 * `acquire` for a backend that can only try (Redis): tries, pauses, tries
 * again until `waitMs` runs out. `pause` waits a little, at most `maxMs`.
 */
export function pollingAcquire<T>(
  tryAcquire: (ttlMs: number) => Promise<{ holder: T; fence: number } | null>,
  pause: (attempt: number, maxMs: number) => Promise<void>,
): LockBackend<T>['acquire'] {
  return async (ttlMs, waitMs, signal) => {
    const deadline = Date.now() + waitMs;
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      const got = await tryAcquire(ttlMs);
      if (got) return got;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await pause(attempt, left);
    }
  };
}

export const LOCK_DEFAULTS = { ttlMs: 10_000, waitMs: 10_000 } as const;

export async function acquireLock<T>(key: string, backend: LockBackend<T>, options: LockOptions = {}): Promise<Lock> {
  const ttlMs = options.ttlMs ?? LOCK_DEFAULTS.ttlMs;
  const waitMs = options.waitMs ?? LOCK_DEFAULTS.waitMs;
  if (!(ttlMs > 0) || !Number.isFinite(ttlMs)) throw new ShardCacheError('ERR_INVALID_OPTION', `options.ttlMs must be a positive number of milliseconds (got ${ttlMs})`);
  if (!(waitMs >= 0) || !Number.isFinite(waitMs)) throw new ShardCacheError('ERR_INVALID_OPTION', `options.waitMs must be 0 or more milliseconds (got ${waitMs})`);
  options.signal?.throwIfAborted();
  const got = await backend.acquire(ttlMs, waitMs, options.signal);
  if (!got) throw new ShardCacheError('ERR_LOCK_TIMEOUT', `lock(${JSON.stringify(key)}) was not acquired within options.waitMs (${waitMs} ms)`);
  return heldLock(key, backend, got.holder, got.fence, ttlMs, options.autoRenew === true);
}

function heldLock<T>(key: string, backend: LockBackend<T>, holder: T, fence: number, ttlMs: number, autoRenew: boolean): Lock {
  const lost = new AbortController();
  let released = false;
  const markLost = () => {
    if (!lost.signal.aborted) lost.abort(new ShardCacheError('ERR_LOCK_LOST', `lock on ${JSON.stringify(key)} was lost`));
  };
  let timer: NodeJS.Timeout | undefined;
  if (autoRenew) {
    timer = setInterval(() => {
      backend.extend(holder, ttlMs).then((ok) => {
        if (!ok) {
          clearInterval(timer);
          markLost();
        }
      }, () => {
        clearInterval(timer);
        markLost();
      });
    }, Math.min(MAX_TIMER_MS, Math.max(1, Math.floor(ttlMs / 3))));
    timer.unref();
  }
  return {
    fencingToken: fence,
    lost: lost.signal,
    async release() {
      if (released) return false;
      released = true;
      clearInterval(timer);
      return backend.release(holder);
    },
    async extend(ms: number) {
      if (released) return false;
      const ok = await backend.extend(holder, ms);
      if (!ok) markLost();
      return ok;
    },
  };
}
