/**
 * `cache.lock(key)`: an exclusive lock with a fencing token, over one of two
 * backends with the same shape: the process-wide lock table in shared memory
 * (no Redis), or Redis (`SET NX PX` + compare-and-delete), which is exclusive
 * across processes and hosts as well as threads.
 *
 * A fencing token strictly increases per key: a holder that was paused past
 * its TTL and lost the lock can be told apart by the resource it writes to.
 */
import { ShardCacheError } from './errors.js';

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
  tryAcquire(ttlMs: number): Promise<{ holder: T; fence: number } | null>;
  /** Waits a little (or until the holder changes) before the next try. */
  pause(attempt: number, maxMs: number): Promise<void>;
  release(holder: T): Promise<boolean>;
  extend(holder: T, ttlMs: number): Promise<boolean>;
}

export const LOCK_DEFAULTS = { ttlMs: 10_000, waitMs: 10_000 } as const;

export async function acquireLock<T>(key: string, backend: LockBackend<T>, options: LockOptions = {}): Promise<Lock> {
  const ttlMs = options.ttlMs ?? LOCK_DEFAULTS.ttlMs;
  const waitMs = options.waitMs ?? LOCK_DEFAULTS.waitMs;
  if (!(ttlMs > 0) || !Number.isFinite(ttlMs)) throw new ShardCacheError('ERR_INVALID_OPTION', `options.ttlMs must be a positive number of milliseconds (got ${ttlMs})`);
  if (!(waitMs >= 0) || !Number.isFinite(waitMs)) throw new ShardCacheError('ERR_INVALID_OPTION', `options.waitMs must be 0 or more milliseconds (got ${waitMs})`);
  const deadline = Date.now() + waitMs;
  for (let attempt = 0; ; attempt++) {
    options.signal?.throwIfAborted();
    const got = await backend.tryAcquire(ttlMs);
    if (got) return heldLock(key, backend, got.holder, got.fence, ttlMs, options.autoRenew === true);
    const left = deadline - Date.now();
    if (left <= 0) throw new ShardCacheError('ERR_LOCK_TIMEOUT', `lock(${JSON.stringify(key)}) was not acquired within options.waitMs (${waitMs} ms)`);
    await backend.pause(attempt, left);
  }
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
    }, Math.max(1, Math.floor(ttlMs / 3)));
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
