/**
 * `lock`, `incr` and `update`: the operations that must be atomic across
 * threads, and with Redis across processes and hosts. Each has two backends
 * of the same shape (LockBackend, see lock.ts):
 *
 * - without Redis, the process-wide lock table in shared memory
 *   (memory/lock-table.ts): `incr` and `update` run under the key's lock and
 *   wait until their write is applied (visible to every thread) before the
 *   next holder reads;
 * - with Redis, `SET NX PX` locks with fencing (redis-scripts.ts): `incr` is
 *   decided by a script in Redis, `update` runs under the Redis lock, reads
 *   Redis and flushes its write before releasing, so the next holder in any
 *   process reads it there.
 */
import type { ShardCodec } from './codec.js';
import { ShardCacheError, describe } from './errors.js';
import { hashKey, shardOf } from './hash.js';
import { acquireLock, pollingAcquire, type Lock, type LockBackend, type LockOptions } from './lock.js';
import { FLAG_DIRTY } from './memory/layout.js';
import { LockTable } from './memory/lock-table.js';
import { NOT_FOUND, READ_CLOCK, Scratch, type ShardView } from './memory/shard-view.js';
import { OP_PUT } from './memory/write-queue.js';
import type { Overlay } from './overlay.js';
import type { TierAccess } from './redis/redis-tier.js';
import type { WritePath } from './write-path.js';

/** What these operations need of the cache they serve: its public reads, writes and waits. */
export interface AtomicTarget {
  readonly closed: boolean;
  get(key: string): unknown;
  set(key: string, value: unknown): unknown;
  delete(key: string): unknown;
  settled(): Promise<void>;
  flush(): Promise<void>;
}

export interface AtomicOperationsConfig {
  target: AtomicTarget;
  tier: TierAccess | undefined;
  locks: SharedArrayBuffer;
  views: readonly ShardView[];
  writes: WritePath;
  overlay: Overlay;
  codec: ShardCodec;
}

/** Longest a background refresh holds its guard (a loader that never settles releases it then). */
const REFRESH_TTL_MS = 60_000;

export class AtomicOperations {
  private readonly config: AtomicOperationsConfig;
  private lockTable: LockTable | undefined;
  private readonly scratch = new Scratch();

  constructor(config: AtomicOperationsConfig) {
    this.config = config;
  }

  lock(key: string, options?: LockOptions): Promise<Lock> {
    return acquireLock(key, this.lockBackend(key), options);
  }

  /**
   * The right to refresh `key` in the background (stale-while-revalidate),
   * process-wide: a lock of the shared-memory table on a name of its own, not
   * waited for. Null if another thread (or caller) refreshes it now. Held at
   * most REFRESH_TTL_MS should a refresh never end.
   */
  async tryRefresh(key: string): Promise<Lock | null> {
    const name = `\u0000refresh:${key}`;
    try {
      return await acquireLock(name, this.localLockBackend(name), { ttlMs: REFRESH_TTL_MS, waitMs: 0 });
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_LOCK_TIMEOUT') return null;
      throw error;
    }
  }

  async incr(key: string, by: number): Promise<number> {
    const { tier, target } = this.config;
    if (tier) {
      // A local write of the key still on its way to Redis would land after
      // the increment and undo it: let it land first.
      if (this.mayBePending(key)) await target.flush();
      const { value, local } = await tier.incr(key, by);
      if (!target.closed) this.config.writes.write(OP_PUT, key, hashKey(key), this.config.codec.encode(local), 0, this.config.overlay);
      return value;
    }
    return this.withLocalLock(key, async () => {
      const current = target.get(key);
      if (current !== undefined && typeof current !== 'number') {
        throw new ShardCacheError('ERR_NOT_A_NUMBER', `incr: the value of ${describe(key)} is not a number`);
      }
      const value = (current ?? 0) + by;
      target.set(key, value);
      return value;
    });
  }

  async update<T>(key: string, fn: (current: T | undefined) => T | undefined | Promise<T | undefined>, options?: LockOptions): Promise<T | undefined> {
    const { tier, target } = this.config;
    if (!tier) {
      return this.withLocalLock(key, async () => {
        const next = await fn(target.get(key) as T | undefined);
        if (next === undefined) target.delete(key);
        else target.set(key, next);
        return next;
      }, options);
    }
    const lock = await this.lock(key, options);
    try {
      if (this.mayBePending(key)) await target.flush();
      const remote = await tier.read(key);
      const current = (remote.bytes ? this.config.codec.decodeRange(remote.bytes, 0, remote.bytes.length) : remote.value) as T | undefined;
      const next = await fn(current);
      if (next === undefined) target.delete(key);
      else target.set(key, next);
      // The next holder, in any process, reads Redis: it must find this value there.
      await target.flush();
      return next;
    } finally {
      await lock.release();
    }
  }

  /** This thread detaches: its callers still waiting for a lock reject with `reason`, its places in the queues are handed on. */
  close(reason: Error): void {
    this.lockTable?.close(reason);
  }

  private async withLocalLock<R>(key: string, body: () => Promise<R>, options: LockOptions = {}): Promise<R> {
    const lock = await acquireLock(key, this.localLockBackend(key), options);
    try {
      const result = await body();
      // Visible to every thread before the next holder reads.
      await this.config.target.settled();
      return result;
    } finally {
      await lock.release();
    }
  }

  private lockBackend(key: string): LockBackend<unknown> {
    const tier = this.config.tier;
    if (!tier) return this.localLockBackend(key) as LockBackend<unknown>;
    return {
      acquire: pollingAcquire(
        async (ttlMs) => {
          const got = await tier.lockAcquire(key, ttlMs);
          return got ? { holder: got.token, fence: got.fence } : null;
        },
        // Redis has no wait-for-key; poll with a growing, jittered pause.
        (attempt, maxMs) => delay(Math.min(maxMs, Math.min(50, 2 << Math.min(attempt, 5)) * (0.5 + Math.random()))),
      ),
      release: (token) => tier.lockRelease(key, token as string),
      extend: (token, ttlMs) => tier.lockExtend(key, token as string, ttlMs),
    };
  }

  private localLockBackend(key: string): LockBackend<number> {
    const table = (this.lockTable ??= new LockTable(this.config.locks));
    const slot = table.slotOf(hashKey(key));
    return {
      acquire: async (ttlMs, waitMs, signal) => {
        const got = await table.acquire(slot, ttlMs, waitMs, signal);
        return got ? { holder: got.ticket, fence: got.fence } : null;
      },
      release: async (ticket) => table.release(slot, ticket),
      extend: async (ticket, ttlMs) => table.extend(slot, ticket, ttlMs),
    };
  }

  /** Whether a local write of `key` may not have reached Redis yet. */
  private mayBePending(key: string): boolean {
    const hash = hashKey(key);
    if (this.config.overlay.has(key, hash)) return true;
    const views = this.config.views;
    const view = views[shardOf(hash, views.length)]!;
    return view.read(key, hash, READ_CLOCK, this.scratch) !== NOT_FOUND && (view.foundFlags & FLAG_DIRTY) !== 0;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
