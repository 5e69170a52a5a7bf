/**
 * Shared record structures: the key lists of the object shapes values have,
 * kept once per cache in shared memory instead of inlined in every value.
 *
 * msgpackr writes an object whose shape it knows as a one- or two-byte record
 * id followed by the values alone; a shape it does not know yet it adds to its
 * structures and asks us to save (saveStructures), and a reader that meets an
 * id it does not know asks us for the structures again (getStructures). That
 * halves a small object and decodes it ~2.7x faster than an inlined record.
 * This registry makes one list of structures for every thread of the process:
 *
 *   Int32 [0] lock (0 free, 1 held)   [1] structures saved   [2] data bytes used
 *   byte 64: the structures, each a u32 byte length then its key list as JSON
 *
 * Append-only: a structure's id is its index, and an id once saved never
 * changes meaning, so a reader never needs a lock. A writer publishes the
 * count (Atomics.store) after the bytes it covers; a reader loads the count
 * first, so every structure it counts is complete. Writers append under the
 * lock, and only if no other thread appended since their packer last loaded
 * (msgpackr's isCompatible check); otherwise msgpackr reloads and re-encodes.
 * A thread that encodes a value saves its new structures before the encode
 * returns, so before the value can reach any ring, shard or other thread.
 *
 * When the region is full, no more shapes are shared: msgpackr then inlines
 * the key list in the value (slower, still self-describing).
 */

const W_LOCK = 0;
const W_COUNT = 1;
const W_BYTES = 2;
const DATA = 64;
/** Room for the structures; an average shape of ~60 bytes of key names fits ~4000 times. */
export const STRUCTURE_BYTES = 256 * 1024;
/** Most shared structures (msgpackr's limit, ids of up to two bytes). */
export const MAX_SHARED_STRUCTURES = 8160;

export function createStructureRegistry(): SharedArrayBuffer {
  return new SharedArrayBuffer(DATA + STRUCTURE_BYTES);
}

type Structure = string[];

/** One thread's view of a cache's structures. */
export class StructureRegistry {
  private readonly i32: Int32Array;
  private readonly u8: Buffer;
  /** What this thread has parsed so far (a prefix of the shared list). */
  private readonly loaded: Structure[] = [];
  private loadedBytes = 0;
  /** Set once a save found no room: from then on this thread shares no new shape (see hasRoom). */
  private full = false;

  constructor(sab: SharedArrayBuffer) {
    this.i32 = new Int32Array(sab);
    this.u8 = Buffer.from(sab);
  }

  /** The structures saved so far, by id (a fresh array: msgpackr keeps and marks it). */
  load(): Structure[] {
    return this.parsed().map((keys) => keys.slice());
  }

  /** The structures saved so far, by id, parsing only the new ones: this thread's own list, not to be changed. */
  parsed(): readonly Structure[] {
    const count = this.count();
    while (this.loaded.length < count) {
      const at = DATA + this.loadedBytes;
      const length = this.u8.readUInt32LE(at);
      this.loaded.push(JSON.parse(this.u8.toString('utf8', at + 4, at + 4 + length)) as Structure);
      this.loadedBytes += 4 + length;
    }
    return this.loaded;
  }

  /**
   * Appends the structures past the saved ones, if `isCompatible` says the
   * saving packer had loaded every saved one. False means reload and retry.
   */
  save(structures: readonly Structure[], isCompatible: (existing: Structure[]) => boolean): boolean {
    this.lock();
    try {
      const existing = this.load();
      if (!isCompatible(existing)) return false;
      let bytes = Atomics.load(this.i32, W_BYTES);
      let count = existing.length;
      for (let id = count; id < structures.length; id++) {
        const json = JSON.stringify(structures[id]);
        const length = Buffer.byteLength(json);
        // Full: the packer is told no and re-encodes; hasRoom now says no, so
        // that encode inlines the shape instead of asking again.
        if (DATA + bytes + 4 + length > this.u8.length) {
          this.full = true;
          return false;
        }
        this.u8.writeUInt32LE(length, DATA + bytes);
        this.u8.write(json, DATA + bytes + 4, length, 'utf8');
        bytes += 4 + length;
        count++;
      }
      Atomics.store(this.i32, W_BYTES, bytes);
      Atomics.store(this.i32, W_COUNT, count);
      return true;
    } finally {
      Atomics.store(this.i32, W_LOCK, 0);
      Atomics.notify(this.i32, W_LOCK, 1);
    }
  }

  /** How many structures are saved (a reader that knows this many knows them all). */
  count(): number {
    return Atomics.load(this.i32, W_COUNT);
  }

  /** Whether another shape may still be shared (room for a shape of ordinary size). */
  hasRoom(): boolean {
    return !this.full && DATA + Atomics.load(this.i32, W_BYTES) + 1024 <= this.u8.length && this.count() < MAX_SHARED_STRUCTURES;
  }

  /** The append lock: held for a few microseconds, so a short wait suffices. */
  private lock(): void {
    while (Atomics.compareExchange(this.i32, W_LOCK, 0, 1) !== 0) Atomics.wait(this.i32, W_LOCK, 1, 1);
  }
}
