/**
 * Read-your-writes: this thread's writes that its owners have not applied yet.
 *
 * After `set` returns, the writing thread must see the value at once, though
 * the owner applies it later. The overlay maps each key this thread wrote to
 * where its latest record sits in this thread's write queue; a read of that
 * key decodes the record straight from the queue until the ring's tail has
 * passed it (the owner applied it), and from then on reads the shard as every
 * other thread does. The record cannot be overwritten while unapplied: a
 * producer reuses only bytes behind the tail.
 *
 * Entries are forgotten lazily: when a read finds its record applied, and in
 * sweeps once the map doubles (so a thread that writes many keys and never
 * reads them keeps the map bounded by what is in flight).
 */
import type { ShardCodec } from './codec.js';
import { OP_FILL, OP_PUT, OP_SET, type RingProducer } from './memory/write-queue.js';

/**
 * The overlay's size that first triggers a sweep. Small: an entry lives until
 * a sweep or a read finds it applied, and under a steady load with no
 * settled() an entry that outlives a young-generation GC or two is promoted,
 * to be collected by a full one; 4096 measured more time in GC than 256 under
 * 10k sets/s, and a sweep of a few hundred entries costs little.
 */
const SWEEP_MIN = 256;

/** A write this thread queued and its owner may not have applied yet. */
interface QueuedWrite {
  shard: number;
  /** SAB offset of the record in the ring. */
  offset: number;
  /** Ring position just past the record: applied once the ring's tail reaches it. */
  end: number;
}

export class Overlay {
  private readonly producers: readonly RingProducer[];
  private readonly codec: ShardCodec;
  private readonly queued = new Map<string, QueuedWrite>();
  private sweepAt = SWEEP_MIN;

  constructor(producers: readonly RingProducer[], codec: ShardCodec) {
    this.producers = producers;
    this.codec = codec;
  }

  get size(): number {
    return this.queued.size;
  }

  /** Remembers the record of `key` just queued: at `offset` in `shard`'s ring, ending at `end`. */
  record(key: string, shard: number, offset: number, end: number): void {
    const queued = this.queued.get(key);
    if (queued !== undefined) {
      queued.shard = shard;
      queued.offset = offset;
      queued.end = end;
      return;
    }
    this.queued.set(key, { shard, offset, end });
    if (this.queued.size >= this.sweepAt) this.sweep();
  }

  /** The unapplied write of `key`, if any (forgetting it once applied). */
  pending(key: string): QueuedWrite | undefined {
    const queued = this.queued.get(key);
    if (queued === undefined || this.applied(key, queued)) return undefined;
    return queued;
  }

  has(key: string): boolean {
    return this.queued.has(key);
  }

  /** The value the queued write stores, or undefined for a delete or an expired value. */
  read(queued: QueuedWrite): unknown {
    const ring = this.producers[queued.shard]!;
    const at = queued.offset;
    if (!this.isLive(queued)) return undefined;
    const start = ring.valueStart(at);
    return this.codec.decodeRange(ring.u8, start, start + ring.valueLength(at));
  }

  /** Whether the queued write leaves a live (unexpired, fresh) value. */
  isLive(queued: QueuedWrite): boolean {
    const ring = this.producers[queued.shard]!;
    const op = ring.op(queued.offset);
    if (op !== OP_SET && op !== OP_FILL && op !== OP_PUT) return false;
    const expires = ring.expires(queued.offset);
    // A SET's spare word is its stale window in seconds: fresh until expires minus that.
    const staleMs = op === OP_SET ? ring.spare(queued.offset) * 1000 : 0;
    return expires === 0 || expires - staleMs > Date.now();
  }

  /** Forgets every applied write. */
  sweep(): void {
    for (const [key, queued] of this.queued) this.applied(key, queued);
    this.sweepAt = Math.max(SWEEP_MIN, this.queued.size * 2);
  }

  clear(): void {
    this.queued.clear();
  }

  private applied(key: string, queued: QueuedWrite): boolean {
    if (!this.producers[queued.shard]!.consumedThrough(queued.end)) return false;
    this.queued.delete(key);
    return true;
  }
}
