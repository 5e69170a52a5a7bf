/**
 * The write queue: a single-producer single-consumer ring in a SharedArrayBuffer,
 * one per (producer thread, shard). The producer is the thread that calls
 * `set`/`delete`; the consumer is the shard's owner. No message is posted per
 * write: a write is a few stores into the ring and one atomic publish.
 *
 *   byte 0    head (written by the producer)
 *   byte 64   tail (written by the consumer)
 *   byte 128  producers waiting for room
 *   byte 192  data: `capacity` bytes (a power of two) of 8-byte aligned records
 *
 * head and tail sit on cache lines of their own: sharing one, every write of
 * one side would evict the line the other side reads on every record. Each
 * side also keeps the last value it saw of the other's counter and reloads it
 * only when that value says the ring is full (producer) or empty (consumer).
 *
 *   record:  [0] u32 size  [4] u32 op  [8] i32 hash  [12] u32 key length (code units)
 *            [16] u32 value length  [20] u32 spare  [24] f64 expiresAt
 *            [32] key as UTF-16 code units, then value bytes, padded to 8
 *
 * head and tail count bytes since the ring was made and wrap at 2^32; they are
 * compared by their difference, which is always within the capacity. A record
 * never straddles the end of the data: the producer writes a WRAP record over
 * the remainder and starts again at 0.
 *
 * Ordering: the producer writes the record with plain stores, then publishes it
 * with Atomics.store(head). The consumer loads head atomically before reading a
 * record, and publishes consumption with Atomics.store(tail) after applying it;
 * the producer only reuses bytes behind tail. Both are seq-cst, which makes the
 * plain stores visible in order.
 */
import { align8 } from './layout.js';

export const R_HEAD = 0;
export const R_TAIL = 16;
export const R_WAITERS = 32;
export const DATA_OFFSET = 192;
export const RECORD_HEADER_BYTES = 32;

export const OP_WRAP = 0;
export const OP_SET = 1;
export const OP_DELETE = 2;
export const OP_CLEAR = 3;
/** Sent by the Redis flusher: the write stamped with the seq in the spare word reached Redis. */
export const OP_CLEAN = 4;
/** A value read from Redis: stored only if the key is absent, never written back to Redis. */
export const OP_FILL = 5;
/** A value Redis decided (incr): stored over whatever is there, never written back to Redis. */
export const OP_PUT = 6;
/** Another process changed the key: drop the local copy unless a local write of it still waits for Redis. */
export const OP_DROP = 7;
/** Invalidations may have been missed: drop every entry that does not wait for Redis. */
export const OP_DROP_CLEAN = 8;

export function createRing(capacity: number): SharedArrayBuffer {
  if ((capacity & (capacity - 1)) !== 0) throw new Error('ring capacity must be a power of two');
  return new SharedArrayBuffer(DATA_OFFSET + capacity);
}

/** Views on a ring, shared by the producer and consumer sides. */
export class Ring {
  readonly sab: SharedArrayBuffer;
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  readonly u16: Uint16Array;
  readonly u8: Buffer;
  readonly capacity: number;
  readonly mask: number;

  constructor(sab: SharedArrayBuffer) {
    this.sab = sab;
    this.i32 = new Int32Array(sab);
    this.f64 = new Float64Array(sab);
    this.u16 = new Uint16Array(sab);
    this.u8 = Buffer.from(sab);
    this.capacity = sab.byteLength - DATA_OFFSET;
    this.mask = this.capacity - 1;
  }

  /** Byte offset in the SAB of ring position `pos`. */
  at(pos: number): number {
    return DATA_OFFSET + (pos & this.mask);
  }

  /** Whether every byte written before `pos` was consumed. */
  consumedThrough(pos: number): boolean {
    return ((Atomics.load(this.i32, R_TAIL) - pos) | 0) >= 0;
  }

  get head(): number {
    return Atomics.load(this.i32, R_HEAD);
  }

  /** Bytes published and not yet consumed. */
  get pending(): number {
    return (Atomics.load(this.i32, R_HEAD) - Atomics.load(this.i32, R_TAIL)) >>> 0;
  }

  /** The key of the record at `offset`, as a string. */
  readKey(offset: number): string {
    const length = this.i32[(offset + 12) >> 2]!;
    const k = (offset + RECORD_HEADER_BYTES) >> 1;
    return String.fromCharCode.apply(null, this.u16.subarray(k, k + length) as unknown as number[]);
  }
}

export function recordBytes(keyLength: number, valueLength: number): number {
  return align8(RECORD_HEADER_BYTES + keyLength * 2 + valueLength);
}

/**
 * The producer side. `tryReserve` finds room for a record without blocking;
 * the caller writes the record at the returned offset and calls `publish`.
 */
export class RingProducer extends Ring {
  /** Local copy of head: only this thread moves it. */
  private position: number;
  private reservedEnd = 0;
  /** The consumer's tail as last loaded: tail only grows, so room computed from it is a lower bound. */
  private tailSeen: number;

  constructor(sab: SharedArrayBuffer) {
    super(sab);
    this.position = Atomics.load(this.i32, R_HEAD);
    this.tailSeen = Atomics.load(this.i32, R_TAIL);
  }

  /**
   * Reserves `size` contiguous bytes (size from recordBytes). Returns the SAB
   * byte offset to write the record at, or -1 if the ring has no room now.
   */
  tryReserve(size: number): number {
    const pos = this.position;
    const index = pos & this.mask;
    const untilEnd = this.capacity - index;
    const wrap = size > untilEnd ? untilEnd : 0;
    if (((pos - this.tailSeen) >>> 0) + wrap + size > this.capacity) {
      this.tailSeen = Atomics.load(this.i32, R_TAIL);
      if (((pos - this.tailSeen) >>> 0) + wrap + size > this.capacity) return -1;
    }
    if (wrap !== 0) {
      const w = DATA_OFFSET + index;
      this.i32[w >> 2] = wrap;
      this.i32[(w + 4) >> 2] = OP_WRAP;
    }
    this.reservedEnd = (pos + wrap + size) | 0;
    return DATA_OFFSET + ((pos + wrap) & this.mask);
  }

  /** Makes the reserved record visible to the consumer. Returns the ring position just past it. */
  publish(): number {
    this.position = this.reservedEnd;
    Atomics.store(this.i32, R_HEAD, this.position);
    return this.position;
  }

  /** Writes the fixed record header at `offset`. */
  writeHeader(offset: number, size: number, op: number, hash: number, keyLength: number, valueLength: number, expiresAt: number): void {
    const i32 = this.i32;
    const w = offset >> 2;
    i32[w] = size;
    i32[w + 1] = op;
    i32[w + 2] = hash;
    i32[w + 3] = keyLength;
    i32[w + 4] = valueLength;
    this.f64[(offset + 24) >> 3] = expiresAt;
  }

  /** The record's spare word: CLEAN carries a seq there, FILL a write generation. */
  writeSpare(offset: number, value: number): void {
    this.i32[(offset + 20) >> 2] = value;
  }

  writeKey(offset: number, key: string): void {
    const u16 = this.u16;
    const k = (offset + RECORD_HEADER_BYTES) >> 1;
    for (let i = 0; i < key.length; i++) u16[k + i] = key.charCodeAt(i);
  }

  /** Blocks this thread up to `ms` until the consumer frees room (or `ms` passes). */
  waitForRoom(ms: number): void {
    const tail = Atomics.load(this.i32, R_TAIL);
    Atomics.add(this.i32, R_WAITERS, 1);
    Atomics.wait(this.i32, R_TAIL, tail, ms);
    Atomics.sub(this.i32, R_WAITERS, 1);
  }
}

/** The consumer side, used by the owner. */
export class RingConsumer extends Ring {
  /** Local copy of tail: only the owner moves it. */
  position: number;
  /** The producer's head as last loaded: records before it are published. */
  private headSeen: number;

  constructor(sab: SharedArrayBuffer) {
    super(sab);
    this.position = Atomics.load(this.i32, R_TAIL);
    this.headSeen = this.position;
  }

  hasWork(): boolean {
    if (this.headSeen !== this.position) return true;
    this.headSeen = Atomics.load(this.i32, R_HEAD);
    return this.headSeen !== this.position;
  }

  /**
   * Returns the SAB offset of the next record, skipping WRAP records, or -1
   * when the ring is empty. The record stays owned by the consumer until `done`.
   */
  next(): number {
    for (;;) {
      if (!this.hasWork()) return -1;
      const offset = DATA_OFFSET + (this.position & this.mask);
      if (this.i32[(offset + 4) >> 2] !== OP_WRAP) return offset;
      this.position = (this.position + this.i32[offset >> 2]!) | 0;
    }
  }

  /** Marks the record at the current position consumed and lets producers reuse it. */
  done(offset: number): void {
    this.position = (this.position + this.i32[offset >> 2]!) | 0;
    Atomics.store(this.i32, R_TAIL, this.position);
  }

  /** Wakes producers blocked on a full ring, and `settled()` waiters. */
  wakeWaiters(): void {
    if (Atomics.load(this.i32, R_WAITERS) > 0) Atomics.notify(this.i32, R_TAIL);
  }
}
