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
 *            (the REC_* byte offsets below; `writeRecord` is the one writer)
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

/** See hash.ts: a module-local const, so V8 inlines it however String is subclassed. */
const charCodeAt = String.prototype.charCodeAt;

export const R_HEAD = 0;
export const R_TAIL = 16;
export const R_WAITERS = 32;
export const DATA_OFFSET = 192;

/** Byte offsets of a record's fields from the record's start. */
export const REC_SIZE = 0;
export const REC_OP = 4;
export const REC_HASH = 8;
export const REC_KEY_LENGTH = 12;
export const REC_VALUE_LENGTH = 16;
/** CLEAN: the seq Redis acknowledged; FILL: the write generation its read began at; change log: the entry's seq. */
export const REC_SPARE = 20;
/** expiresAt (ms since epoch, 0 = none); CLEAN: the last change-log record the flusher processed. */
export const REC_EXPIRES = 24;
export const REC_KEY = 32;
export const RECORD_HEADER_BYTES = REC_KEY;

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
    return tailReached(Atomics.load(this.i32, R_TAIL), pos);
  }

  get head(): number {
    return Atomics.load(this.i32, R_HEAD);
  }

  /** Bytes published and not yet consumed. */
  get pending(): number {
    return (Atomics.load(this.i32, R_HEAD) - Atomics.load(this.i32, R_TAIL)) >>> 0;
  }

  op(offset: number): number {
    return this.i32[(offset + REC_OP) >> 2]!;
  }

  hash(offset: number): number {
    return this.i32[(offset + REC_HASH) >> 2]!;
  }

  keyLength(offset: number): number {
    return this.i32[(offset + REC_KEY_LENGTH) >> 2]!;
  }

  valueLength(offset: number): number {
    return this.i32[(offset + REC_VALUE_LENGTH) >> 2]!;
  }

  spare(offset: number): number {
    return this.i32[(offset + REC_SPARE) >> 2]!;
  }

  expires(offset: number): number {
    return this.f64[(offset + REC_EXPIRES) >> 3]!;
  }

  /** Index in `u16` of the record's first key code unit. */
  keyIndex(offset: number): number {
    return (offset + REC_KEY) >> 1;
  }

  /** Byte offset in the SAB of the record's value. */
  valueStart(offset: number): number {
    return offset + REC_KEY + this.keyLength(offset) * 2;
  }

  /** The key of the record at `offset`, as a string. */
  readKey(offset: number): string {
    const k = this.keyIndex(offset);
    return String.fromCharCode.apply(null, this.u16.subarray(k, k + this.keyLength(offset)) as unknown as number[]);
  }
}

/** Whether a ring's tail, as loaded, has reached position `pos` (positions wrap at 2^32: compared by their difference). */
export function tailReached(tail: number, pos: number): boolean {
  return ((tail - pos) | 0) >= 0;
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

  /** Whether the consumer has consumed every record this producer published. */
  drained(): boolean {
    return Atomics.load(this.i32, R_TAIL) === this.position;
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
      this.i32[(w + REC_SIZE) >> 2] = wrap;
      this.i32[(w + REC_OP) >> 2] = OP_WRAP;
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

  /**
   * Writes a whole record at `offset`, reserved with `tryReserve(recordBytes(...))`;
   * `publish` then makes it visible. The key is a string, or UTF-16 code units
   * (an owner copying a key from one ring to another).
   */
  writeRecord(offset: number, op: number, hash: number, key: string | Uint16Array, value: Uint8Array | undefined, expiresAt: number, spare: number): void {
    const i32 = this.i32;
    const keyLength = key.length;
    const valueLength = value === undefined ? 0 : value.length;
    i32[(offset + REC_SIZE) >> 2] = recordBytes(keyLength, valueLength);
    i32[(offset + REC_OP) >> 2] = op;
    i32[(offset + REC_HASH) >> 2] = hash;
    i32[(offset + REC_KEY_LENGTH) >> 2] = keyLength;
    i32[(offset + REC_VALUE_LENGTH) >> 2] = valueLength;
    i32[(offset + REC_SPARE) >> 2] = spare;
    this.f64[(offset + REC_EXPIRES) >> 3] = expiresAt;
    const k = (offset + REC_KEY) >> 1;
    if (typeof key === 'string') {
      const u16 = this.u16;
      for (let i = 0; i < keyLength; i++) u16[k + i] = charCodeAt.call(key, i);
    } else {
      this.u16.set(key, k);
    }
    if (value !== undefined) this.u8.set(value, offset + REC_KEY + keyLength * 2);
  }

  /**
   * Blocks this thread up to `ms` until the consumer frees room, after
   * `tryReserve` found none. It waits on the tail that tryReserve judged by,
   * not a fresh load: had the consumer moved it in between (and, with nobody
   * counted waiting yet, notified no one), a fresh value would be the one it
   * never moves from again once the ring is empty, and the wait would last
   * its whole `ms`.
   */
  waitForRoom(ms: number): void {
    waitWhileTail(this, this.tailSeen, ms);
  }
}

/**
 * Blocks this thread up to `ms` while the ring's tail is still `tail`. The
 * caller loads `tail` before it checks the condition it waits for, so a
 * consumer that moves the tail after the check makes this return at once.
 */
export function waitWhileTail(ring: Ring, tail: number, ms: number): void {
  Atomics.add(ring.i32, R_WAITERS, 1);
  Atomics.wait(ring.i32, R_TAIL, tail, ms);
  Atomics.sub(ring.i32, R_WAITERS, 1);
}

/**
 * Waits, without blocking the thread, until the ring's tail moves from `tail`
 * (the owner consumed more) or `ms` pass. As with waitWhileTail, load `tail`
 * before checking what the wait is for: loaded after, it may be the value the
 * owner, done and asleep, never moves from again. The owner notifies R_TAIL after each
 * batch when R_WAITERS says someone waits; the timeout is the safety net.
 *
 * A pending Atomics.waitAsync does not keep a Node process alive (nor does
 * its timeout, an unref'd task): a thread whose only work left is this wait
 * would exit (or, on the main thread, let the process exit) with the promise
 * never settled. The interval keeps the event loop alive until the wait is
 * over, however late a loaded machine runs the wait's own timeout.
 */
export async function waitForTail(ring: Ring, tail: number, ms: number): Promise<void> {
  Atomics.add(ring.i32, R_WAITERS, 1);
  const result = Atomics.waitAsync(ring.i32, R_TAIL, tail, ms);
  const keepAlive = setInterval(() => {}, ms + 5);
  try {
    if (result.async) await result.value;
  } finally {
    clearInterval(keepAlive);
    Atomics.sub(ring.i32, R_WAITERS, 1);
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
      if (this.op(offset) !== OP_WRAP) return offset;
      this.position = (this.position + this.i32[(offset + REC_SIZE) >> 2]!) | 0;
    }
  }

  /** Marks the record at the current position consumed and lets producers reuse it. */
  done(offset: number): void {
    this.position = (this.position + this.i32[(offset + REC_SIZE) >> 2]!) | 0;
    Atomics.store(this.i32, R_TAIL, this.position);
  }

  /** Wakes producers blocked on a full ring, and `settled()` waiters. */
  wakeWaiters(): void {
    if (Atomics.load(this.i32, R_WAITERS) > 0) Atomics.notify(this.i32, R_TAIL);
  }
}
