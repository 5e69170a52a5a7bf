/**
 * The producer side of the write queues, for one thread: how a write reaches
 * its shard's owner. Every write is one record appended to this thread's ring
 * for the shard (memory/write-queue.ts); no message is posted per write.
 *
 * - Wake-ups: a burst of writes (a loop of sets) wakes each owner once, in a
 *   microtask after the burst, unless it queued more than SIGNAL_EARLY_BYTES,
 *   which wakes the owner at once so it starts before the queue fills.
 * - Backpressure: a full queue waits (blocking this thread) up to
 *   backpressureTimeoutMs for its owner; with write-behind, `admitPending`
 *   bounds the writes waiting for Redis (see there).
 * - Applied: `waitApplied` resolves once the owners consumed everything up to
 *   given ring positions; `settled` is that for everything queued so far.
 */
import { ShardCacheError, closedError } from './errors.js';
import { shardOf } from './hash.js';
import { C_CLOSED, C_REDIS_PENDING } from './memory/control.js';
import { wakeOwner, wakeOwnerIfSleeping } from './memory/doorbell.js';
import { H_STALLED } from './memory/layout.js';
import type { ShardView } from './memory/shard-view.js';
import { OP_CLEAR, OP_DELETE, OP_SET, R_TAIL, RingProducer, recordBytes, waitForTail, waitWhileTail } from './memory/write-queue.js';
import type { ResolvedCoreOptions } from './options.js';
import type { Overlay } from './overlay.js';

/**
 * Queued bytes after which a burst of writes wakes its owner at once rather
 * than at the burst's end, so the owner applies while the burst goes on
 * instead of all of it after. Measured, 1000 sets of ~100 B objects then
 * settled(), 2 shards on 2 cores: 32 KiB 1.75 µs a set, 8 KiB 1.3 µs, 4 KiB
 * 1.4 µs (more wake-ups than the owner's head start is worth).
 */
const SIGNAL_EARLY_BYTES = 8 * 1024;
/** Longest single wait for an owner; checks (closed, deadline) run between waits. */
const WAIT_SLICE_MS = 50;

export interface WritePathConfig {
  views: readonly ShardView[];
  rings: readonly SharedArrayBuffer[];
  control: Int32Array;
  options: ResolvedCoreOptions;
  /** Whether writes must reach Redis (write-behind): they are then counted pending, up to maxPending. */
  logsWrites: boolean;
  maxPending: number;
  /** The thread that created the cache: its event loop runs the Redis flush, so it must never wait for it. */
  isCreator: boolean;
}

export class WritePath {
  readonly producers: RingProducer[];
  /** Ring position just past the record the last `enqueue` appended. */
  lastEnd = 0;
  private readonly config: WritePathConfig;
  private readonly views: readonly ShardView[];
  private readonly control: Int32Array;
  /** Bytes queued per shard since its owner was last woken (see wakeLater). */
  private readonly unsignaledBytes: number[];
  private wakeScheduled = false;

  constructor(config: WritePathConfig) {
    this.config = config;
    this.views = config.views;
    this.control = config.control;
    this.producers = config.rings.map((sab) => new RingProducer(sab));
    this.unsignaledBytes = new Array<number>(config.rings.length).fill(0);
  }

  /**
   * Queues a write of `key` to its shard. With `overlay`, this thread sees it
   * at once (read-your-writes).
   */
  write(op: number, key: string, hash: number, bytes: Uint8Array | undefined, expires: number, overlay: Overlay | undefined, spare = 0): void {
    const shard = shardOf(hash, this.producers.length);
    const offset = this.enqueue(shard, op, key, hash, bytes, expires, spare, false);
    overlay?.record(key, hash, shard, offset, this.lastEnd);
  }

  /**
   * Appends one record to `shard`'s queue and returns its SAB offset (the
   * overlay reads it back until it is applied). A write that must reach Redis
   * is counted pending from here, unless the caller `admitted` it already.
   */
  enqueue(shard: number, op: number, key: string, hash: number, bytes: Uint8Array | undefined, expires: number, spare: number, admitted: boolean): number {
    // An attached thread learns here that the creating thread closed the cache:
    // no owner would ever apply this write.
    if (Atomics.load(this.control, C_CLOSED) !== 0) throw closedError();
    const producer = this.producers[shard]!;
    const size = recordBytes(key.length, bytes === undefined ? 0 : bytes.length);
    // The ops an owner logs for Redis (the others are local: fills, drops, cleans).
    const logged = this.config.logsWrites && !admitted && (op === OP_SET || op === OP_DELETE || op === OP_CLEAR);
    if (logged) this.admitPending(1);
    let offset = producer.tryReserve(size);
    if (offset < 0) {
      try {
        offset = this.waitForRoom(shard, size);
      } catch (error) {
        if (logged) this.releasePending(1);
        throw error;
      }
    }
    producer.writeRecord(offset, op, hash, key, bytes, expires, spare);
    this.lastEnd = producer.publish();
    this.wakeLater(shard, size);
    return offset;
  }

  /**
   * Counts `n` more writes waiting for Redis, never past maxPending across all
   * threads: a compare-and-swap, so the bound is exact however many threads
   * write at once, and `pending` counts a write from the moment it is accepted
   * until Redis acknowledged it, whether it waits in a write queue, for its
   * owner or in a change log. At the bound, the creating thread refuses at
   * once (the flush that would make room runs on its own event loop); another
   * thread waits, up to backpressureTimeoutMs, for the flusher to make room.
   */
  admitPending(n: number): void {
    const control = this.control;
    const { maxPending, isCreator, options } = this.config;
    let deadline = 0;
    for (;;) {
      const pending = Atomics.load(control, C_REDIS_PENDING);
      if (pending + n <= maxPending) {
        if (Atomics.compareExchange(control, C_REDIS_PENDING, pending, pending + n) === pending) return;
        continue;
      }
      if (isCreator) {
        throw new ShardCacheError(
          'ERR_BACKPRESSURE',
          `options.redis.writeBehind.maxPending (${maxPending}) writes are waiting for Redis; on the thread that created the cache, writes cannot wait for them synchronously (the flush runs on this thread): await cache.flush() and retry`,
        );
      }
      if (deadline === 0) deadline = Date.now() + options.backpressureTimeoutMs;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ShardCacheError(
          'ERR_BACKPRESSURE',
          `options.redis.writeBehind.maxPending (${maxPending}) writes stayed waiting for Redis for options.backpressureTimeoutMs (${options.backpressureTimeoutMs} ms)`,
        );
      }
      if (Atomics.load(control, C_CLOSED) !== 0) throw closedError();
      // This thread's last writes may still wait for the wake-up planned after
      // the burst, in a microtask that cannot run while this thread blocks:
      // without them applied and logged, the flusher has nothing to settle.
      this.wakeAfterBurst();
      // The flusher notifies this word each time it settles writes.
      Atomics.wait(control, C_REDIS_PENDING, pending, Math.min(left, WAIT_SLICE_MS));
    }
  }

  releasePending(n: number): void {
    Atomics.sub(this.control, C_REDIS_PENDING, n);
    Atomics.notify(this.control, C_REDIS_PENDING);
  }

  /** Wakes `shard`'s owner for this thread's new writes, once per burst (see the file head). */
  private wakeLater(shard: number, bytes: number): void {
    const unsignaled = (this.unsignaledBytes[shard]! += bytes);
    if (unsignaled > SIGNAL_EARLY_BYTES) {
      this.unsignaledBytes[shard] = 0;
      wakeOwnerIfSleeping(this.views[shard]!.i32);
    } else if (!this.wakeScheduled) {
      this.wakeScheduled = true;
      queueMicrotask(this.wakeAfterBurst);
    }
  }

  /** Wakes every owner this thread queued writes for since it last woke them. */
  private readonly wakeAfterBurst = (): void => {
    this.wakeScheduled = false;
    for (let shard = 0; shard < this.unsignaledBytes.length; shard++) {
      if (this.unsignaledBytes[shard] !== 0) {
        this.unsignaledBytes[shard] = 0;
        wakeOwnerIfSleeping(this.views[shard]!.i32);
      }
    }
  };

  /** Blocks this thread until `shard`'s queue has room for `size` bytes; returns the reserved offset. */
  private waitForRoom(shard: number, size: number): number {
    const producer = this.producers[shard]!;
    const { options, logsWrites, isCreator } = this.config;
    const deadline = Date.now() + options.backpressureTimeoutMs;
    for (;;) {
      if (Atomics.load(this.control, C_CLOSED) !== 0) throw closedError();
      const i32 = this.views[shard]!.i32;
      wakeOwner(i32);
      // On the creating thread, the Redis flush runs on this thread's event loop:
      // waiting here for an owner stalled on a full change log cannot help.
      if (isCreator && logsWrites && Atomics.load(i32, H_STALLED) !== 0) {
        throw new ShardCacheError(
          'ERR_BACKPRESSURE',
          `shard ${shard}'s change log is full of writes waiting for Redis; on the thread that created the cache, writes cannot wait for them synchronously (the flush runs on this thread): await cache.flush() and retry`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ShardCacheError(
          'ERR_BACKPRESSURE',
          `shard ${shard}'s write queue stayed full for options.backpressureTimeoutMs (${options.backpressureTimeoutMs} ms): its owner (or Redis behind it) is behind`,
        );
      }
      producer.waitForRoom(Math.min(left, WAIT_SLICE_MS));
      const offset = producer.tryReserve(size);
      if (offset >= 0) return offset;
    }
  }

  /** Ring heads now: once `waitApplied` them, every write queued before is applied. */
  heads(): number[] {
    return this.producers.map((p) => p.head);
  }

  /** Whether the owners have applied every write this thread queued. */
  allApplied(): boolean {
    const producers = this.producers;
    for (let shard = 0; shard < producers.length; shard++) if (!producers[shard]!.drained()) return false;
    return true;
  }

  /** Resolves once each shard's owner consumed this thread's queue up to `targets[shard]`. */
  async waitApplied(targets: readonly number[]): Promise<void> {
    for (let shard = 0; shard < targets.length; shard++) {
      const ring = this.producers[shard]!;
      const target = targets[shard]!;
      for (;;) {
        const tail = Atomics.load(ring.i32, R_TAIL);
        if (ring.consumedThrough(target)) break;
        if (Atomics.load(this.control, C_CLOSED) !== 0) throw closedError();
        wakeOwnerIfSleeping(this.views[shard]!.i32);
        await waitForTail(ring, tail, 20);
      }
    }
  }

  /** Blocks this thread until everything it queued is applied (clear() must return applied). */
  settleSync(what: string): void {
    const { options } = this.config;
    const deadline = Date.now() + options.backpressureTimeoutMs;
    for (let shard = 0; shard < this.producers.length; shard++) {
      const ring = this.producers[shard]!;
      const target = ring.head;
      for (;;) {
        const tail = Atomics.load(ring.i32, R_TAIL);
        if (ring.consumedThrough(target)) break;
        if (Date.now() > deadline) {
          throw new ShardCacheError('ERR_BACKPRESSURE', `${what} waited options.backpressureTimeoutMs (${options.backpressureTimeoutMs} ms) for shard ${shard}'s owner`);
        }
        wakeOwnerIfSleeping(this.views[shard]!.i32);
        waitWhileTail(ring, tail, 5);
      }
    }
  }

  /** Wakes `shard`'s owner if it sleeps (the Redis tier, after queueing CLEAN or DROP records). */
  wake(shard: number): void {
    wakeOwnerIfSleeping(this.views[shard]!.i32);
  }
}
