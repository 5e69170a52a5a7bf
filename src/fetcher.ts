/**
 * Fetching: what `fetch` and `fetchMany` do after a local miss. Read-through
 * to Redis (through the tier, which owns the connection on the creating thread
 * and is asked by message from the others), then the caller's loader; what is
 * found is kept locally.
 *
 * Single flight: one miss per key is in flight per thread, however many
 * callers ask (they share its promise), and through the tier one Redis read
 * per key per process. A loader runs once per key per thread.
 *
 * A value read from Redis is kept locally as a FILL record, which the owner
 * stores only if no local write of the key happened meanwhile: the record
 * carries a stamp taken before the read (fillStamp), and the owner refuses a
 * FILL that a delete of its key may be newer than (see ShardWriter.deletedSince).
 */
import { closedError, ShardCacheError } from './errors.js';
import type { ShardCodec } from './codec.js';
import { hashKey, shardOf } from './hash.js';
import { H_LOG_PROCESSED, H_WRITE_GENERATION } from './memory/layout.js';
import { NOT_FOUND, Scratch, type ShardView } from './memory/shard-view.js';
import type { EventEmitter } from 'node:events';
import { OP_FILL } from './memory/write-queue.js';
import type { Overlay } from './overlay.js';
import type { TierAccess, TierValue } from './redis/redis-tier.js';
import type { WritePath } from './write-path.js';

export interface FetchOptions<T = unknown> {
  /** Called on a miss in both the local cache and Redis; its result is cached (and written behind). */
  loader?: (key: string) => T | undefined | Promise<T | undefined>;
  /** TTL for a value the loader produced; defaults to the cache's `ttlMs`. */
  ttlMs?: number;
  /**
   * Stale-while-revalidate: a value the loader produced stays for this long
   * after its TTL ran out, and in that window `fetch` returns it at once and
   * starts one refresh through the loader in the background (one per key per
   * process, across threads). `get` and `has` never return a stale value. A
   * failed refresh is reported by the `error` event; the stale value stays
   * until the window ends. Whole seconds (rounded up), at most ~9 hours.
   * @default 0 (no window)
   */
  staleWhileRevalidateMs?: number;
}

/** What the fetcher needs of the cache it serves: its public reads and writes, and whether it is closed. */
export interface FetchTarget {
  readonly closed: boolean;
  get(key: string): unknown;
  set(key: string, value: unknown, options?: { ttlMs?: number; staleWhileRevalidateMs?: number }): unknown;
}

/** Takes the process-wide right to refresh `key` (a lock of the lock table, not waited for), or null if another thread has it. */
export type RefreshGuard = (key: string) => Promise<{ release(): Promise<boolean> } | null>;

export interface FetcherConfig {
  target: FetchTarget;
  /** Absent without Redis, or with readThrough off. */
  tier: TierAccess | undefined;
  views: readonly ShardView[];
  writes: WritePath;
  overlay: Overlay;
  codec: ShardCodec;
  maxValueBytes: number;
  /** The cache writes behind to Redis (decides the FILL stamp). */
  writeBehind: boolean;
  refreshGuard: RefreshGuard;
  /** Where a failed background refresh is reported (the cache's `error` event). */
  problems: EventEmitter;
}

export class Fetcher {
  private readonly config: FetcherConfig;
  private readonly inFlight = new Map<string, Promise<unknown>>();
  private readonly scratch = new Scratch();

  constructor(config: FetcherConfig) {
    this.config = config;
  }

  /** The miss path of `fetch`: a stale value being refreshed, or Redis, then the loader. */
  fetchMiss<T>(key: string, options: FetchOptions<T> | undefined): Promise<T | undefined> {
    if (options?.loader && options.staleWhileRevalidateMs) {
      const stale = this.readStale(key);
      if (stale !== undefined) {
        this.refresh(key, options);
        return Promise.resolve(stale as T);
      }
    }
    return this.singleFlight(key, () => this.readThenLoad(key, options)) as Promise<T | undefined>;
  }

  /** The value of `key` past its freshness but inside its stale window, if there is one. */
  private readStale(key: string): unknown {
    const hash = hashKey(key);
    const views = this.config.views;
    const length = views[shardOf(hash, views.length)]!.read(key, hash, Date.now(), this.scratch, true);
    return length === NOT_FOUND ? undefined : this.config.codec.decodeRange(this.scratch.buffer, 0, length);
  }

  /**
   * Reloads a stale `key` in the background: once per key on this thread (the
   * single flight), and once per key in the process (the refresh guard, which
   * another thread's refresh holds). The loader's value replaces the stale one.
   */
  private refresh(key: string, options: FetchOptions): void {
    if (this.inFlight.has(key)) return;
    void this.singleFlight(key, async () => {
      const guard = await this.config.refreshGuard(key);
      if (guard === null) return undefined;
      try {
        return await this.load(key, options);
      } catch (error) {
        this.config.problems.emit('error', Object.assign(
          new ShardCacheError('ERR_REFRESH_FAILED', `the background refresh of ${JSON.stringify(key)} failed; its stale value stays until its window ends: ${(error as Error)?.message ?? String(error)}`, { cause: error }),
          { key },
        ));
        return undefined;
      } finally {
        await guard.release();
      }
    });
  }

  /** The miss path of `fetchMany`: one tier call for all `missing` indexes of `keys`, then loaders. */
  async fetchMissing<T>(keys: readonly string[], values: (T | undefined)[], missing: number[], options: FetchOptions<T> | undefined): Promise<void> {
    const tier = this.config.tier;
    if (tier) {
      const stamps = missing.map((i) => this.stampOf(keys[i]!));
      const remote = await tier.fetchMany(missing.map((i) => keys[i]!));
      let failed: TierValue | undefined;
      missing.forEach((i, n) => {
        const found = remote[n]!;
        if (found.error) failed ??= found;
        else if (found.found) values[i] = this.accept(keys[i]!, found, stamps[n]!) as T;
      });
      // The other keys were kept (and are returned by the next call); this one's bytes are bad.
      if (failed) throw ShardCacheError.fromWire(failed.error!);
    }
    if (!options?.loader) return;
    // Redis has been asked already (one MGET): only the loader is left.
    await Promise.all(missing.filter((i) => values[i] === undefined).map(async (i) => {
      const key = keys[i]!;
      values[i] = (await this.singleFlight(key, () => this.load(key, options))) as T | undefined;
    }));
  }

  /** The one in-flight miss of `key` on this thread, started by `start` if there is none. */
  private singleFlight(key: string, start: () => Promise<unknown>): Promise<unknown> {
    let flight = this.inFlight.get(key);
    if (flight === undefined) {
      flight = start().finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, flight);
    }
    return flight;
  }

  private async readThenLoad(key: string, options: FetchOptions | undefined): Promise<unknown> {
    const tier = this.config.tier;
    if (tier) {
      const stamp = this.stampOf(key);
      const remote = await tier.fetch(key);
      if (this.config.target.closed) throw closedError();
      if (remote.found) return this.accept(key, remote, stamp);
    }
    return this.load(key, options);
  }

  /** Calls the loader, if any, and stores (and so writes behind) what it returns. */
  private async load(key: string, options: FetchOptions | undefined): Promise<unknown> {
    if (!options?.loader) return undefined;
    const value = await options.loader(key);
    const target = this.config.target;
    if (value !== undefined && !target.closed) target.set(key, value, { ttlMs: options.ttlMs, staleWhileRevalidateMs: options.staleWhileRevalidateMs });
    return value;
  }

  /** The value read from Redis; keeps a local copy (never written back). */
  private accept(key: string, remote: TierValue, stamp: number): unknown {
    if (remote.bytes === null) return remote.value;
    const value = this.config.codec.decodeRange(remote.bytes, 0, remote.bytes.length);
    this.keepLocal(key, remote, stamp, true);
    return value;
  }

  private keepLocal(key: string, remote: TierValue, stamp: number, overlay: boolean): void {
    const { target, writes, maxValueBytes } = this.config;
    if (!target.closed) keepLocalCopy(writes, key, remote, stamp, maxValueBytes, overlay ? this.config.overlay : undefined);
  }

  private stampOf(key: string): number {
    return fillStamp(this.config.views, key, this.config.writeBehind);
  }
}

/**
 * Stores a value read from Redis locally, unless it may be stale: invalidated
 * while in flight, or (checked by the owner) a delete of the key may be newer
 * than the read, which began at `stamp` (see fillStamp). With `overlay`, the
 * calling thread sees it at once. The creating thread also calls this for the
 * reads it serves other threads.
 */
export function keepLocalCopy(writes: WritePath, key: string, remote: TierValue, stamp: number, maxValueBytes: number, overlay: Overlay | undefined): void {
  if (!remote.cacheable || !remote.bytes || remote.bytes.length > maxValueBytes) return;
  const expires = remote.ttlMs > 0 ? Date.now() + remote.ttlMs : 0;
  writes.write(OP_FILL, key, hashKey(key), remote.bytes, expires, overlay, stamp);
}

/**
 * The stamp a FILL of `key` carries, taken before the read of Redis: its
 * shard's write generation, or with write-behind the change-log records the
 * flusher has processed (see recentDeletes in shard-writer.ts).
 */
export function fillStamp(views: readonly ShardView[], key: string, writeBehind: boolean): number {
  return Atomics.load(views[shardOf(hashKey(key), views.length)]!.i32, writeBehind ? H_LOG_PROCESSED : H_WRITE_GENERATION);
}
