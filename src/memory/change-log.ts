/**
 * The change log: what each owner tells the Redis write-behind. After applying
 * a set, delete or clear, the owner appends (op, key, seq) to its shard's log,
 * a ring the thread that owns the Redis connection drains. Values are not
 * copied here: the flusher reads the key's current bytes from the shard when
 * it flushes, which is what coalesces many writes of one key into one SET.
 *
 * The writes waiting for Redis are counted (C_REDIS_PENDING) and bounded by
 * the writing threads, when they queue a write (see ShardCache.admitPending),
 * not here: a write counts from the moment it is accepted, wherever it then
 * waits. If this ring has no room, the owner stops applying writes (the shard
 * stalls) until the flusher drains it, and writers meet full queues.
 */
import { C_FLUSH_BELL, C_REDIS_PENDING } from './control.js';
import { OP_CLEAR, OP_SET, RingProducer, recordBytes, type Ring } from './write-queue.js';

export class ChangeLog {
  private readonly ring: RingProducer;
  private readonly control: Int32Array;
  private readonly batchSize: number;
  private reserved = -1;

  constructor(ring: SharedArrayBuffer, control: SharedArrayBuffer, batchSize: number) {
    this.ring = new RingProducer(ring);
    this.control = new Int32Array(control);
    this.batchSize = batchSize;
  }

  /** Reserves room for one record; false means the owner must wait for the flusher. */
  tryReserve(keyLength: number): boolean {
    this.reserved = this.ring.tryReserve(recordBytes(keyLength, 0));
    return this.reserved >= 0;
  }

  /** Gives back a reservation the owner could not use (the ring's room is reserved again next time). */
  cancel(): void {
    this.reserved = -1;
  }

  /** Appends the reserved record: the key is copied from `src`, a write-queue record at `offset`. */
  append(op: number, seq: number, src: Ring, offset: number): void {
    const keyLength = op === OP_CLEAR ? 0 : src.keyLength(offset);
    const k = src.keyIndex(offset);
    this.ring.writeRecord(this.reserved, op, src.hash(offset), src.u16.subarray(k, k + keyLength), undefined, 0, op === OP_SET ? seq : 0);
    this.ring.publish();
    this.reserved = -1;
    // Enough waits for a batch: wake the flusher now rather than at its next tick.
    if (Atomics.load(this.control, C_REDIS_PENDING) >= this.batchSize && Atomics.compareExchange(this.control, C_FLUSH_BELL, 0, 1) === 0) {
      Atomics.notify(this.control, C_FLUSH_BELL);
    }
  }
}
