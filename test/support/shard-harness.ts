// Drives a ShardWriter the way a shard's owner does, without threads: every
// write goes through a real write-queue ring (RingProducer -> RingConsumer ->
// ShardWriter.apply), and reads go through a separate ShardView, as another
// thread's would. `checkShard` reads the shard's raw memory and lists every
// broken invariant of the layout described in src/memory/layout.ts.
//
// Imports the built JavaScript, so these tests exercise what ships.
import { decodeRange, encode } from '../../dist/src/codec.js';
import { hashKey, homeSlot } from '../../dist/src/hash.js';
import {
  E_HASH, E_KEY, E_KEY_LENGTH, E_SEQ, E_SIZE, KEY_LENGTH_MASK, KEY_WIDE, F_DELETES, F_EVICTIONS, F_EXPIRATIONS, F_SETS,
  H_ARENA_BYTES, H_ARENA_HEAD, H_ARENA_OFFSET, H_ARENA_TAIL, H_ARENA_USED, H_ENTRIES, H_INDEX_OFFSET,
  H_SLOTS, H_WRITE_GENERATION, HEADER_BYTES, SLOT_BYTES, SLOT_WORDS, STRIPES,
} from '../../dist/src/memory/layout.js';
import { NOT_FOUND, Scratch, ShardView } from '../../dist/src/memory/shard-view.js';
import { ShardWriter, repairShard } from '../../dist/src/memory/shard-writer.js';
import {
  OP_CLEAR, OP_DELETE, OP_FILL, OP_SET, RECORD_HEADER_BYTES, RingConsumer, RingProducer, createRing, recordBytes,
} from '../../dist/src/memory/write-queue.js';

const STRIPE_BASE = HEADER_BYTES >> 2;

/**
 * A shard buffer with a chosen index size and arena size, instead of the
 * geometry `createShardBuffer` derives from a byte budget. Readers and the
 * writer take the geometry from the header, so any consistent one works.
 */
export function customShard(slots: number, arenaBytes: number): SharedArrayBuffer {
  if (arenaBytes % 8 !== 0) throw new Error('arenaBytes must be a multiple of 8');
  const indexOffset = HEADER_BYTES + STRIPES * 4;
  const arenaOffset = indexOffset + slots * SLOT_BYTES;
  const sab = new SharedArrayBuffer(arenaOffset + arenaBytes);
  const i32 = new Int32Array(sab);
  i32[H_SLOTS] = slots;
  i32[H_INDEX_OFFSET] = indexOffset;
  i32[H_ARENA_OFFSET] = arenaOffset;
  i32[H_ARENA_BYTES] = arenaBytes;
  return sab;
}

export interface WriteOptions {
  /** Time to live from the harness clock; 0 = never. */
  ttlMs?: number;
  /** Overrides the key's hash, to force collisions or chosen home slots. */
  hash?: number;
}

export class Harness {
  readonly sab: SharedArrayBuffer;
  writer: ShardWriter;
  /** A reader's view, separate from the writer, as another thread would have. */
  readonly view: ShardView;
  readonly producer: RingProducer;
  consumer: RingConsumer;
  readonly scratch = new Scratch();
  /** The injected clock, in ms. Both the writer and reads use it. */
  clock = 1_000_000;

  constructor(sab: SharedArrayBuffer, ringCapacity = 1 << 20) {
    this.sab = sab;
    const ring = createRing(ringCapacity);
    this.producer = new RingProducer(ring);
    this.consumer = new RingConsumer(ring);
    this.writer = new ShardWriter(sab);
    this.writer.now = () => this.clock;
    this.view = new ShardView(sab);
  }

  set(key: string, value: unknown, { ttlMs = 0, hash = hashKey(key) }: WriteOptions = {}): void {
    this.push(OP_SET, key, hash, encode(value), ttlMs > 0 ? this.clock + ttlMs : 0);
  }

  delete(key: string, { hash = hashKey(key) }: WriteOptions = {}): void {
    this.push(OP_DELETE, key, hash, undefined, 0);
  }

  clear(): void {
    this.push(OP_CLEAR, '', 0, undefined, 0);
  }

  /** A value read from Redis when the shard's write generation was `readAt` (see fillStamp in fetcher.ts). */
  fill(key: string, value: unknown, readAt: number): void {
    const bytes = encode(value);
    const offset = this.producer.tryReserve(recordBytes(key.length, bytes.length));
    if (offset < 0) throw new Error('harness ring is full');
    this.producer.writeRecord(offset, OP_FILL, hashKey(key), key, bytes, 0, readAt);
    this.producer.publish();
    this.drain();
  }

  /** The stamp a FILL read now would carry: the shard's write generation. */
  get generation(): number {
    return new Int32Array(this.sab)[H_WRITE_GENERATION]!;
  }

  /** Queues one record and lets the "owner" apply everything queued. */
  push(op: number, key: string, hash: number, bytes: Uint8Array | undefined, expiresAt: number): void {
    this.enqueue(op, key, hash, bytes, expiresAt);
    this.drain();
  }

  enqueue(op: number, key: string, hash: number, bytes: Uint8Array | undefined, expiresAt: number): void {
    const valueLength = bytes === undefined ? 0 : bytes.length;
    const size = recordBytes(key.length, valueLength);
    const offset = this.producer.tryReserve(size);
    if (offset < 0) throw new Error('harness ring is full');
    this.producer.writeRecord(offset, op, hash, key, bytes, expiresAt, 0);
    this.producer.publish();
  }

  /** Applies every queued record, as the owner loop does. Returns how many. */
  drain(): number {
    let applied = 0;
    for (;;) {
      const offset = this.consumer.next();
      if (offset < 0) return applied;
      if (!this.writer.apply(this.consumer, offset)) throw new Error('the writer refused a record');
      this.consumer.done(offset);
      applied++;
    }
  }

  /**
   * What a replacement owner does after the owner died: repair the shard, make
   * a new writer and a new consumer (which resumes at the ring's tail, so a
   * record the dead owner was applying is applied again), then drain.
   */
  recover(): { rebuilt: boolean } {
    const result = repairShard(this.sab);
    this.writer = new ShardWriter(this.sab);
    this.writer.now = () => this.clock;
    this.consumer = new RingConsumer(this.producer.sab);
    this.drain();
    return result;
  }

  get(key: string, { hash = hashKey(key) }: WriteOptions = {}): unknown {
    const length = this.view.read(key, hash, this.clock, this.scratch);
    return length === NOT_FOUND ? undefined : decodeRange(this.scratch.buffer, 0, length);
  }

  has(key: string, { hash = hashKey(key) }: WriteOptions = {}): boolean {
    return this.view.has(key, hash, this.clock);
  }

  /** Reads `key` and sets its CLOCK bit, as a `get` on any thread does. */
  touch(key: string, { hash = hashKey(key) }: WriteOptions = {}): void {
    if (this.view.read(key, hash, this.clock, this.scratch) === NOT_FOUND) throw new Error(`touch: ${key} is not there`);
    this.view.touch(this.view.foundSlot);
  }

  get entries(): number {
    return this.view.i32[H_ENTRIES]!;
  }

  get arenaUsed(): number {
    return this.view.i32[H_ARENA_USED]!;
  }

  get arenaBytes(): number {
    return this.view.i32[H_ARENA_BYTES]!;
  }

  counters(): { sets: number; deletes: number; evictions: number; expirations: number } {
    const f64 = this.view.f64;
    return { sets: f64[F_SETS]!, deletes: f64[F_DELETES]!, evictions: f64[F_EVICTIONS]!, expirations: f64[F_EXPIRATIONS]! };
  }
}

export interface ShardReport {
  problems: string[];
  /** Key -> slot, for every indexed key. */
  keys: Map<string, number>;
}

/**
 * Checks a shard's invariants from its raw memory:
 * - every stripe version is even (no change in progress);
 * - head, tail and used agree, and walking the arena from tail by entry sizes
 *   covers exactly `used` bytes;
 * - every occupied slot points at the start of a live entry (inside the used
 *   part of the arena), whose stored hash and seq match the slot;
 * - no key is indexed twice, and every key is reachable from its home slot
 *   without crossing an empty slot (linear probing's invariant, which
 *   backward-shift deletion must keep);
 * - empty slots are fully zeroed, and H_ENTRIES counts the occupied slots.
 */
export function checkShard(sab: SharedArrayBuffer): ShardReport {
  const i32 = new Int32Array(sab);
  const u16 = new Uint16Array(sab);
  const u8 = new Uint8Array(sab);
  const problems: string[] = [];
  const slots = i32[H_SLOTS]!;
  const slotBase = i32[H_INDEX_OFFSET]! >> 2;
  const arenaStart = i32[H_ARENA_OFFSET]!;
  const arenaBytes = i32[H_ARENA_BYTES]!;

  for (let s = 0; s < STRIPES; s++) {
    if ((i32[STRIPE_BASE + s]! & 1) !== 0) problems.push(`stripe ${s} is odd`);
  }

  const head = i32[H_ARENA_HEAD]!;
  const tail = i32[H_ARENA_TAIL]!;
  const used = i32[H_ARENA_USED]!;
  if (head < 0 || head >= arenaBytes || head % 8 !== 0) problems.push(`head ${head} out of range`);
  if (tail < 0 || tail >= arenaBytes || tail % 8 !== 0) problems.push(`tail ${tail} out of range`);
  if (used < 0 || used > arenaBytes) problems.push(`used ${used} outside 0..${arenaBytes}`);
  const span = (((head - tail) % arenaBytes) + arenaBytes) % arenaBytes;
  if (head === tail ? used !== 0 && used !== arenaBytes : span !== used) {
    problems.push(`head ${head}, tail ${tail} and used ${used} disagree`);
  }

  const liveStarts = new Set<number>();
  let pos = tail;
  let walked = 0;
  while (walked < used) {
    const at = arenaStart + pos;
    const size = i32[(at + E_SIZE) >> 2]!;
    if (size <= 0 || size % 8 !== 0 || pos + size > arenaBytes) {
      problems.push(`bad entry size ${size} at arena position ${pos}`);
      break;
    }
    liveStarts.add(at);
    walked += size;
    pos += size;
    if (pos === arenaBytes) pos = 0;
  }
  if (walked !== used && problems.length === 0) problems.push(`arena walk covered ${walked} bytes, used is ${used}`);

  const keys = new Map<string, number>();
  let occupied = 0;
  for (let i = 0; i < slots; i++) {
    const w = slotBase + i * SLOT_WORDS;
    const h = i32[w]!;
    if (h === 0) {
      if (i32[w + 1] !== 0 || i32[w + 2] !== 0 || i32[w + 3] !== 0) problems.push(`empty slot ${i} is not zeroed`);
      continue;
    }
    occupied++;
    const at = i32[w + 1]!;
    if (!liveStarts.has(at)) {
      problems.push(`slot ${i} points at ${at}, which is not a live entry`);
      continue;
    }
    if (i32[(at + E_HASH) >> 2] !== h) problems.push(`slot ${i} hash ${h} != entry hash ${i32[(at + E_HASH) >> 2]}`);
    if (i32[(at + E_SEQ) >> 2] !== i32[w + 2]) problems.push(`slot ${i} seq ${i32[w + 2]} != entry seq ${i32[(at + E_SEQ) >> 2]}`);
    const word = i32[(at + E_KEY_LENGTH) >> 2]!;
    const keyLength = word & KEY_LENGTH_MASK;
    let key = '';
    for (let j = 0; j < keyLength; j++) {
      key += String.fromCharCode((word & KEY_WIDE) !== 0 ? u16[((at + E_KEY) >> 1) + j]! : u8[at + E_KEY + j]!);
    }
    if (keys.has(key)) problems.push(`key ${JSON.stringify(key)} is in slots ${keys.get(key)} and ${i}`);
    keys.set(key, i);
    for (let j = homeSlot(h, slots); j !== i; j = j + 1 === slots ? 0 : j + 1) {
      if (i32[slotBase + j * SLOT_WORDS] === 0) {
        problems.push(`slot ${i} (${JSON.stringify(key)}) is unreachable: empty slot ${j} after its home`);
        break;
      }
    }
  }
  if (occupied !== i32[H_ENTRIES]) problems.push(`H_ENTRIES is ${i32[H_ENTRIES]} but ${occupied} slots are occupied`);
  return { problems, keys };
}

/** A 32-bit hash (never 0) whose home slot in an index of `slots` slots is `home`. */
export function hashWithHome(home: number, slots: number, random: () => number): number {
  for (;;) {
    const h = (Math.floor(random() * 2 ** 32) | 0) || 1;
    if (homeSlot(h, slots) === home) return h;
  }
}
