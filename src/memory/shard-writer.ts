/**
 * The owner's side of a shard: applies queued writes, evicts, expires.
 * Only the shard's owner thread ever constructs one. No threads here: the
 * owner loop (workers/shard-worker.ts) drives it, and unit tests drive it
 * directly.
 *
 * Eviction: the arena is a ring (FreeCache). New entries are appended at head;
 * when there is no room the entry at tail is examined: padding and dead
 * entries (no slot points at them) are reclaimed, expired entries removed, and
 * a live entry gets a second chance (CLOCK) if a reader touched it since it was
 * last examined, or is kept if it still waits for Redis (dirty): such an entry
 * is moved to head instead of evicted. Otherwise it is evicted. CLOCK over the
 * arena approximates LRU; see bench/ for hit ratios on the ARC traces.
 *
 * With maxEntries the shard also has an entry bound, and W-TinyLFU decides
 * what the bound evicts (eviction-policy.ts, which cites the papers): a new
 * key must prove more popular, by the readers' frequency sketch, than what it
 * would displace. The arena's tail is then kept or evicted by the policy's
 * segments instead of the bare CLOCK bit (EvictionPolicy.keepAtTail), so the
 * byte bound, when it binds first, also spares the protected entries.
 *
 * Crash safety: each change is prepared where no reader looks (free arena
 * space) and published by slot stores under the stripe seqlock, so an owner
 * that dies mid-change leaves either the old or the new state, plus at worst an
 * odd stripe or a duplicated slot, which `repairShard` fixes on takeover.
 */
import { homeSlot } from '../hash.js';
import {
  E_EXPIRES, E_FLAGS, E_HASH, E_KEY, E_KEY_LENGTH, E_SEQ, E_SIZE, E_VALUE_LENGTH,
  F_DELETES, F_EVICTIONS, F_EXPIRATIONS, F_REJECTIONS, F_SETS, FLAG_DIRTY, H_MAX_ENTRIES,
  H_LOG_RECORDS, H_WRITE_GENERATION, H_ARENA_HEAD, RECORD_NUMBER_MASK, H_ARENA_TAIL, H_ARENA_USED, H_DIRTY, H_ENTRIES, H_SEQ, H_SWEEP_CURSOR, H_TTL_ENTRIES,
  HEADER_BYTES, KEY_LENGTH_MASK, KEY_WIDE, MAX_LOAD, STALE_SHIFT, SLOT_WORDS, STRIPE_MASK, STRIPES, entryBytes, fitsOneByte,
} from './layout.js';
import { NOT_FOUND, ShardView } from './shard-view.js';
import { writeBegin, writeEnd } from './stripe-lock.js';
import {
  OP_CLEAN, OP_CLEAR, OP_DELETE, OP_DROP, OP_DROP_CLEAN, OP_FILL, OP_PUT, OP_SET, type Ring,
} from './write-queue.js';
import type { ChangeLog } from './change-log.js';
import { EvictionPolicy, NO_SLOT } from './eviction-policy.js';

const STRIPE_BASE = HEADER_BYTES >> 2;
/** Deletes remembered for refusing stale FILLs (see recentDeletes). */
const RECENT_DELETES = 65_536;
/**
 * With a policy, the share of the arena live entries may fill before the
 * bytes bind. Below it at least a quarter of the ring is dead space, so
 * moving the live entries met at the tail costs at most three moves per
 * entry's worth of room found.
 */
const ROOMY_SHARE = 0.75;
/** Values up to this size are copied from the ring by a JS loop (see applySet). */
const SHORT_COPY_BYTES = 64;

export class ShardWriter extends ShardView {
  readonly arenaBytes: number;
  private readonly maxEntries: number;
  /** W-TinyLFU, with maxEntries only; without, the arena's CLOCK alone evicts. */
  readonly policy: EvictionPolicy | undefined;
  /**
   * Bytes of the entries slots point at (the arena's used bytes also count
   * dead entries and padding). With a policy, while these stay under
   * ROOMY_SHARE of the arena the bytes do not bind: a live entry met at the
   * tail is moved, never evicted, and only the entry bound evicts.
   */
  private liveBytes = 0;
  private readonly roomyBytes: number;
  /** Stripes made odd by the current change, made even together at its end. */
  private touched = new Int32Array(64);
  private touchedCount = 0;
  /**
   * Set when writes must reach Redis: every applied change is logged, and
   * entries stay dirty (never evicted) until Redis acknowledges them.
   */
  changeLog: ChangeLog | undefined;
  private lastSeq = 0;
  /** Byte offset of the entry the last applied set wrote. */
  private lastEntryAt = 0;
  /** Slots removed so far: index positions can only move (backward shift) when this grows. */
  private slotRemovals = 0;
  /**
   * Keys deleted recently, with the delete's stamp: a value read from Redis
   * that may predate the delete must not bring the key back (FILL). A FILL
   * carries the stamp its read began at (see fillStamp in fetcher.ts):
   *
   * - without write-behind, the shard's write generation: a delete applied
   *   after the read began is newer than it;
   * - with write-behind, the number of change-log records the flusher had
   *   processed: a delete whose record was not yet processed when the read
   *   began may not have reached Redis, so Redis may still hold the old
   *   value (a delete applied later has a later record too). Without this,
   *   a fetch between a delete and its flush brought the old value back as a
   *   clean entry, and the flusher, finding the key present and clean, never
   *   sent the DEL.
   *
   * Bounded: it remembers the last RECENT_DELETES deletes, in a ring of their
   * keys and stamps (`recentKeys`, `recentStamps`), and the map holds each
   * key's latest of them. `forgottenStamp` is the stamp of the last delete to
   * leave the ring, and a FILL older than that is refused outright. A key
   * leaves the map only when its latest delete leaves the ring. (It was a map
   * in delete order, trimmed from its oldest entry: V8's Map keeps a deleted
   * entry's hole until it rebuilds its table, so finding the oldest entry
   * skipped every hole before it, and once 65 536 distinct keys were deleted
   * each later delete cost the owner ~17 µs instead of ~1.5.)
   */
  private readonly recentDeletes = new Map<string, number>();
  private readonly recentKeys = new Array<string | undefined>(RECENT_DELETES).fill(undefined);
  private readonly recentStamps = new Int32Array(RECENT_DELETES);
  /** Where the next delete goes in the ring: its oldest, once full. */
  private recentAt = 0;
  private forgottenStamp = 0;
  now: () => number = Date.now;

  constructor(sab: SharedArrayBuffer) {
    super(sab);
    this.arenaBytes = this.arenaEnd - this.arenaStart;
    const indexBound = Math.floor(this.slots * MAX_LOAD);
    const bound = this.i32[H_MAX_ENTRIES]!;
    if (bound > 0 && this.sketch !== undefined) {
      this.maxEntries = Math.min(bound, indexBound);
      this.policy = new EvictionPolicy(this.i32, this.slotBase, this.slots, this.maxEntries, this.sketch);
      // A new owner takes over the entries the last one left.
      this.policy.adopt(this.slots);
    } else {
      this.maxEntries = indexBound;
    }
    this.roomyBytes = Math.floor(this.arenaBytes * ROOMY_SHARE);
    for (let s = 0; s < this.slots; s++) {
      const w = this.slotBase + s * SLOT_WORDS;
      if (this.i32[w] !== 0) this.liveBytes += this.i32[(this.i32[w + 1]! + E_SIZE) >> 2]!;
    }
  }

  /**
   * Applies the record at `offset` in `ring`. Returns false if it cannot be
   * applied yet (no room: everything left in the shard waits for Redis); the
   * caller keeps the record and retries later.
   */
  apply(ring: Ring, offset: number): boolean {
    const op = ring.op(offset);
    if (op === OP_CLEAN) {
      this.applyClean(ring, offset);
      return true;
    }
    // Local-only operations: decided by Redis or another process, never logged.
    switch (op) {
      case OP_FILL:
        // A value read from Redis loses to anything written locally meanwhile.
        if (this.probeRecordKey(ring, offset) !== NOT_FOUND || this.deletedSince(ring, offset)) return true;
        return this.applySet(ring, offset, false, 0);
      case OP_PUT:
        return this.applySet(ring, offset, false, 0);
      case OP_DROP: {
        const slot = this.probeRecordKey(ring, offset);
        if (slot !== NOT_FOUND && !this.isDirty(slot)) this.removeSlot(slot);
        return true;
      }
      case OP_DROP_CLEAN:
        this.dropClean();
        return true;
    }
    const log = this.changeLog;
    if (log !== undefined && !log.tryReserve(op === OP_CLEAR ? 0 : ring.keyLength(offset))) return false;
    switch (op) {
      case OP_SET:
        // A SET's spare word is its stale window in seconds (a FILL's is its stamp).
        if (!this.applySet(ring, offset, log !== undefined, ring.spare(offset))) {
          log?.cancel();
          return false;
        }
        break;
      case OP_DELETE:
        this.applyDelete(ring, offset);
        this.rememberDelete(ring.readKey(offset));
        break;
      case OP_CLEAR:
        this.clear();
        this.recentDeletes.clear();
        this.recentKeys.fill(undefined);
        this.recentAt = 0;
        this.forgottenStamp = this.nextStamp();
        break;
      default: throw new Error(`shardcache: unknown write op ${op}`);
    }
    this.i32[H_WRITE_GENERATION] = (this.i32[H_WRITE_GENERATION]! + 1) | 0;
    if (log !== undefined) {
      log.append(op, this.lastSeq, ring, offset);
      const record = (this.i32[H_LOG_RECORDS]! + 1) & RECORD_NUMBER_MASK;
      this.i32[H_LOG_RECORDS] = record;
      // The entry stays dirty until the flusher has processed this record (see applyClean).
      if (op === OP_SET) this.i32[(this.lastEntryAt + E_FLAGS) >> 2] = FLAG_DIRTY | (record << 1);
    }
    return true;
  }

  private applySet(ring: Ring, offset: number, dirty: boolean, staleSeconds: number): boolean {
    const hash = ring.hash(offset);
    const keyLength = ring.keyLength(offset);
    const valueLength = ring.valueLength(offset);
    const expires = ring.expires(offset);
    const keyIndex = ring.keyIndex(offset);
    const wide = !fitsOneByte(ring.u16, keyIndex, keyLength);
    const keyBytes = wide ? keyLength * 2 : keyLength;
    const size = entryBytes(keyBytes, valueLength);

    // Make index room first: the entry about to be written is not in the index
    // yet, and eviction treats unindexed entries as dead.
    const removals = this.slotRemovals;
    let slot = this.probeCodeUnits(ring.u16, keyIndex, keyLength, hash);
    if (slot === NOT_FOUND) {
      const policy = this.policy;
      if (policy !== undefined) {
        if (!this.admitRoom(policy)) return false;
      } else {
        while (this.i32[H_ENTRIES]! >= this.maxEntries) {
          if (!this.evictOne(false)) return false;
        }
      }
    }
    const position = this.reserve(size);
    if (position < 0) return false;

    const at = this.arenaStart + position;
    this.lastEntryAt = at;
    const seq = this.nextSeq();
    const i32 = this.i32;
    i32[(at + E_SIZE) >> 2] = size;
    i32[(at + E_HASH) >> 2] = hash;
    i32[(at + E_SEQ) >> 2] = seq;
    i32[(at + E_KEY_LENGTH) >> 2] = (wide ? keyLength | KEY_WIDE : keyLength) | (staleSeconds << STALE_SHIFT);
    i32[(at + E_VALUE_LENGTH) >> 2] = valueLength;
    i32[(at + E_FLAGS) >> 2] = dirty ? FLAG_DIRTY : 0;
    this.f64[(at + E_EXPIRES) >> 3] = expires;
    if (wide) {
      this.u16.set(ring.u16.subarray(keyIndex, keyIndex + keyLength), (at + E_KEY) >> 1);
    } else {
      const u8 = this.u8;
      const units = ring.u16;
      for (let j = 0; j < keyLength; j++) u8[at + E_KEY + j] = units[keyIndex + j]!;
    }
    const valueStart = ring.valueStart(offset);
    const valueAt = at + E_KEY + keyBytes;
    // A short value is copied by a JS loop: Buffer#copy's call into native
    // code measured more than the copy itself (~15% of applying a ~30 B value).
    if (valueLength <= SHORT_COPY_BYTES) {
      const from = ring.u8;
      const to = this.u8;
      for (let j = 0; j < valueLength; j++) to[valueAt + j] = from[valueStart + j]!;
    } else {
      ring.u8.copy(this.u8, valueAt, valueStart, valueStart + valueLength);
    }
    this.advanceHead(size);
    if (expires !== 0) i32[H_TTL_ENTRIES] = 1;
    if (dirty) i32[H_DIRTY]!++;
    this.liveBytes += size;

    // Publish. Evicting may have removed slots, and a removal shifts others
    // (the key's own among them): then locate the key again.
    if (this.slotRemovals !== removals) slot = this.probeCodeUnits(ring.u16, keyIndex, keyLength, hash);
    if (slot !== NOT_FOUND) {
      const w = this.slotBase + slot * SLOT_WORDS;
      const old = i32[w + 1]!;
      this.forgetDirty(old);
      this.liveBytes -= i32[(old + E_SIZE) >> 2]!;
      this.begin(hash);
      i32[w + 1] = at;
      i32[w + 2] = seq;
      this.end();
      markDead(i32, old);
    } else {
      let i = homeSlot(hash, this.slots);
      while (i32[this.slotBase + i * SLOT_WORDS] !== 0) if (++i === this.slots) i = 0;
      const w = this.slotBase + i * SLOT_WORDS;
      this.begin(hash);
      i32[w + 1] = at;
      i32[w + 2] = seq;
      i32[w + 3] = 0;
      i32[w] = hash;
      this.end();
      i32[H_ENTRIES]!++;
      this.policy?.insert(i);
    }
    this.f64[F_SETS]!++;
    return true;
  }

  /**
   * Makes index room for one new key by the policy's choice (see
   * eviction-policy.ts). False if every entry waits for Redis.
   */
  private admitRoom(policy: EvictionPolicy): boolean {
    policy.maintain();
    while (this.i32[H_ENTRIES]! >= this.maxEntries) {
      const slot = policy.victim();
      if (slot === NO_SLOT) return false;
      const at = this.i32[this.slotBase + slot * SLOT_WORDS + 1]!;
      const expires = this.f64[(at + E_EXPIRES) >> 3]!;
      this.removeSlot(slot);
      if (expires !== 0 && expires <= this.now()) {
        this.f64[F_EXPIRATIONS]!++;
      } else {
        this.f64[F_EVICTIONS]!++;
        if (policy.rejected) this.f64[F_REJECTIONS]!++;
      }
    }
    return true;
  }

  private applyDelete(ring: Ring, offset: number): void {
    const slot = this.probeRecordKey(ring, offset);
    if (slot === NOT_FOUND) return;
    this.forgetDirty(this.i32[this.slotBase + slot * SLOT_WORDS + 1]!);
    this.removeSlot(slot);
    this.f64[F_DELETES]!++;
  }

  private rememberDelete(key: string): void {
    const at = this.recentAt;
    const oldest = this.recentKeys[at];
    if (oldest !== undefined) {
      const oldestStamp = this.recentStamps[at]!;
      // Deleted again since, the key keeps its later stamp in the map.
      if (this.recentDeletes.get(oldest) === oldestStamp) this.recentDeletes.delete(oldest);
      this.forgottenStamp = oldestStamp;
    }
    const stamp = this.nextStamp();
    this.recentKeys[at] = key;
    this.recentStamps[at] = stamp;
    this.recentAt = at + 1 === RECENT_DELETES ? 0 : at + 1;
    this.recentDeletes.set(key, stamp);
  }

  /** The stamp of the change being applied (before apply() counts it): its generation, or its change-log record. */
  private nextStamp(): number {
    return this.changeLog === undefined ? (this.i32[H_WRITE_GENERATION]! + 1) | 0 : (this.i32[H_LOG_RECORDS]! + 1) & RECORD_NUMBER_MASK;
  }

  /** Whether stamp `a` is later than stamp `b` (both wrap: generations at 2^32, record numbers at 2^30). */
  private later(a: number, b: number): boolean {
    if (this.changeLog === undefined) return ((a - b) | 0) > 0;
    const ahead = (a - b) & RECORD_NUMBER_MASK;
    return ahead !== 0 && ahead < RECORD_NUMBER_MASK >>> 1;
  }

  /** Whether the FILL at `offset` (stamped when its read began) may predate a delete of its key. */
  private deletedSince(ring: Ring, offset: number): boolean {
    const readAt = ring.spare(offset);
    if (this.later(this.forgottenStamp, readAt)) return true;
    const deletedAt = this.recentDeletes.get(ring.readKey(offset));
    return deletedAt !== undefined && this.later(deletedAt, readAt);
  }

  private probeRecordKey(ring: Ring, offset: number): number {
    return this.probeCodeUnits(ring.u16, ring.keyIndex(offset), ring.keyLength(offset), ring.hash(offset));
  }

  private isDirty(slot: number): boolean {
    const at = this.i32[this.slotBase + slot * SLOT_WORDS + 1]!;
    return (this.i32[(at + E_FLAGS) >> 2]! & FLAG_DIRTY) !== 0;
  }

  /** Removes every entry that does not wait for Redis. */
  private dropClean(): void {
    for (let i = 0; i < this.slots;) {
      if (this.i32[this.slotBase + i * SLOT_WORDS] !== 0 && !this.isDirty(i)) this.removeSlot(i);
      else i++; // after a removal, backward shift may have moved another slot into i
    }
  }

  /**
   * Redis acknowledged the write stamped `seq` (the record's spare word), and
   * the flusher has processed every change-log record up to number `through`
   * (the record's expiresAt field). The entry becomes clean only if it still
   * holds that write AND its own record is among those processed.
   *
   * Why both: the flusher sends a key's current state when it meets any record
   * of the key, so it may send (and have acknowledged) the newest value while
   * older records of the key (a delete, say) still wait in the log. Were the
   * entry clean then, it could be evicted or dropped, and the older delete,
   * met later with the key absent, would delete the newer value from Redis.
   */
  private applyClean(ring: Ring, offset: number): void {
    const seq = ring.spare(offset);
    const through = ring.expires(offset);
    const slot = this.probeRecordKey(ring, offset);
    if (slot === NOT_FOUND) return;
    const w = this.slotBase + slot * SLOT_WORDS;
    if (this.i32[w + 2] !== seq) return;
    const at = this.i32[w + 1]!;
    const record = this.i32[(at + E_FLAGS) >> 2]! >>> 1;
    if (((through - record) & RECORD_NUMBER_MASK) >= (RECORD_NUMBER_MASK >>> 1)) return;
    this.forgetDirty(at);
  }

  /** Clears an entry's dirty flag (it was flushed, replaced or deleted). */
  private forgetDirty(at: number): void {
    const flags = (at + E_FLAGS) >> 2;
    if ((this.i32[flags]! & FLAG_DIRTY) !== 0) {
      this.i32[flags]! &= ~FLAG_DIRTY;
      this.i32[H_DIRTY]!--;
    }
  }

  clear(): void {
    const i32 = this.i32;
    for (let s = 0; s < STRIPES; s++) writeBegin(i32, STRIPE_BASE + s);
    i32.fill(0, this.slotBase, this.slotBase + this.slots * SLOT_WORDS);
    i32[H_ARENA_HEAD] = 0;
    i32[H_ARENA_TAIL] = 0;
    i32[H_ARENA_USED] = 0;
    i32[H_ENTRIES] = 0;
    i32[H_DIRTY] = 0;
    for (let s = 0; s < STRIPES; s++) writeEnd(i32, STRIPE_BASE + s);
    this.liveBytes = 0;
    // The sketch keeps its counts: what was popular before a clear likely is after.
    this.policy?.clear();
  }

  /**
   * Removes expired entries among the next `budget` slots. Returns how many
   * were removed. Called by the owner when idle, so expired entries do not
   * hold memory until eviction reaches them.
   */
  sweepExpired(budget: number): number {
    const i32 = this.i32;
    if (i32[H_TTL_ENTRIES] === 0 || i32[H_ENTRIES] === 0) return 0;
    const now = this.now();
    let i = i32[H_SWEEP_CURSOR]! % this.slots;
    let removed = 0;
    for (let n = 0; n < budget; n++) {
      const w = this.slotBase + i * SLOT_WORDS;
      if (i32[w] !== 0) {
        const at = i32[w + 1]!;
        const expires = this.f64[(at + E_EXPIRES) >> 3]!;
        if (expires !== 0 && expires <= now && (i32[(at + E_FLAGS) >> 2]! & FLAG_DIRTY) === 0) {
          this.removeSlot(i);
          this.f64[F_EXPIRATIONS]!++;
          removed++;
          continue; // backward shift may have moved another slot into i
        }
      }
      if (++i === this.slots) i = 0;
    }
    i32[H_SWEEP_CURSOR] = i;
    return removed;
  }

  private nextSeq(): number {
    // Skip 0 so that a zeroed slot never matches a near-cache stamp.
    const seq = (this.i32[H_SEQ]! + 1) | 0 || 1;
    this.i32[H_SEQ] = seq;
    this.lastSeq = seq;
    return seq;
  }

  /** Grows `used` before moving head: see repairArena for why this order. */
  private advanceHead(size: number): void {
    const i32 = this.i32;
    let head = i32[H_ARENA_HEAD]! + size;
    if (head === this.arenaBytes) head = 0;
    i32[H_ARENA_USED]! += size;
    i32[H_ARENA_HEAD] = head;
  }

  /**
   * Finds `size` contiguous free bytes at head, evicting from tail as needed.
   * Returns the arena-relative position, or -1 if only entries that must be
   * kept (dirty) are left.
   */
  private reserve(size: number): number {
    const i32 = this.i32;
    let kept = 0;
    for (;;) {
      const used = i32[H_ARENA_USED]!;
      if (used === 0) {
        i32[H_ARENA_HEAD] = 0;
        i32[H_ARENA_TAIL] = 0;
        return 0;
      }
      const head = i32[H_ARENA_HEAD]!;
      const tail = i32[H_ARENA_TAIL]!;
      if (head > tail) {
        const untilEnd = this.arenaBytes - head;
        if (untilEnd >= size) return head;
        this.padToEnd();
        continue;
      }
      // head <= tail: the free space is [head, tail), empty when the ring is full.
      const free = used === this.arenaBytes ? 0 : tail - head;
      if (free >= size) return head;
      // After a full pass that kept everything, evict regardless of the CLOCK bit;
      // after a second, only dirty entries are left and the write must wait.
      if (kept > 2 * this.arenaBytes) return -1;
      const keptBytes = this.reclaimTail(kept > this.arenaBytes);
      kept += keptBytes;
    }
  }

  /**
   * Examines the entry at tail. Reclaims it (returns 0), or keeps it by moving
   * it to head (returns its size).
   */
  private reclaimTail(ignoreClock: boolean): number {
    const i32 = this.i32;
    const tail = i32[H_ARENA_TAIL]!;
    const at = this.arenaStart + tail;
    const size = i32[(at + E_SIZE) >> 2]!;
    const hash = i32[(at + E_HASH) >> 2]!;
    const slot = hash === 0 ? NOT_FOUND : this.slotPointingAt(hash, at);
    if (slot !== NOT_FOUND) {
      const w = this.slotBase + slot * SLOT_WORDS;
      const expires = this.f64[(at + E_EXPIRES) >> 3]!;
      const dirty = (i32[(at + E_FLAGS) >> 2]! & FLAG_DIRTY) !== 0;
      const expired = expires !== 0 && expires <= this.now();
      // keepAtTail reorders the policy's lists, so it is asked last, and only when its answer decides.
      const policy = this.policy;
      if (dirty || (!ignoreClock && !expired && (policy === undefined ? i32[w + 3] === 1 : this.liveBytes < this.roomyBytes || policy.keepAtTail(slot)))) {
        this.moveTailToHead(slot, at, size, hash);
        return size;
      }
      this.removeSlot(slot);
      if (expired) this.f64[F_EXPIRATIONS]!++;
      else this.f64[F_EVICTIONS]!++;
    }
    this.advanceTail(size);
    return 0;
  }

  /** Evicts one live entry for index room. Returns false if nothing could be evicted. */
  private evictOne(ignoreClock: boolean): boolean {
    const entries = this.i32[H_ENTRIES]!;
    let budget = 2 * this.arenaBytes;
    while (this.i32[H_ENTRIES] === entries) {
      if (this.i32[H_ARENA_USED] === 0 || budget <= 0) return false;
      budget -= this.reclaimTail(ignoreClock || budget < this.arenaBytes) || 1;
    }
    return true;
  }

  /** Fills [head, end) with padding and continues from 0: entries never straddle the end. */
  private padToEnd(): void {
    const i32 = this.i32;
    const head = i32[H_ARENA_HEAD]!;
    const untilEnd = this.arenaBytes - head;
    const at = this.arenaStart + head;
    i32[(at + E_SIZE) >> 2] = untilEnd;
    i32[(at + E_HASH) >> 2] = 0;
    i32[H_ARENA_USED]! += untilEnd;
    i32[H_ARENA_HEAD] = 0;
  }

  private advanceTail(size: number): void {
    const i32 = this.i32;
    let tail = i32[H_ARENA_TAIL]! + size;
    if (tail === this.arenaBytes) tail = 0;
    i32[H_ARENA_TAIL] = tail;
    i32[H_ARENA_USED]! -= size;
  }

  /**
   * Keeps the tail entry by moving it to head. With head <= tail the move stays
   * inside [head, tail + size), so it never straddles the arena's end; with
   * head > tail (only under index pressure) it fits before the end or head
   * wraps first. Readers of that key see its stripe odd during the move.
   */
  private moveTailToHead(slot: number, at: number, size: number, hash: number): void {
    const i32 = this.i32;
    if (i32[H_ARENA_HEAD]! > i32[H_ARENA_TAIL]! && this.arenaBytes - i32[H_ARENA_HEAD]! < size) this.padToEnd();
    const head = i32[H_ARENA_HEAD]!;
    const tail = i32[H_ARENA_TAIL]!;
    const w = this.slotBase + slot * SLOT_WORDS;
    if (head < tail && tail - head < size) {
      // The free gap is smaller than the entry: a copy would overwrite the
      // entry itself, and an owner dying mid-copy would leave it torn. Pad the
      // gap instead (it is reclaimed on the next lap); the ring is then full
      // and the entry stays where it is.
      const gap = this.arenaStart + head;
      i32[(gap + E_SIZE) >> 2] = tail - head;
      i32[(gap + E_HASH) >> 2] = 0;
      i32[H_ARENA_USED]! += tail - head;
      i32[H_ARENA_HEAD] = tail;
    }
    const to = this.arenaStart + i32[H_ARENA_HEAD]!;
    // The move is CLOCK's second chance, which spends the referenced bit; a
    // policy reads the bit itself (keepAtTail), and a move only to make room
    // must leave it for the policy's lists.
    const referenced = this.policy === undefined ? 0 : i32[w + 3]!;
    if (to === at) {
      // Full ring: moving the entry from tail to head is only moving the ends.
      this.i32[w + 3] = referenced;
      this.advanceHead(size);
      this.advanceTail(size);
      return;
    }
    // Crash-safe order: a whole copy first, then head past it, then the slot,
    // then tail. Dying at any point leaves one copy the slot points at and at
    // most one dead copy that eviction reclaims.
    this.u8.copy(this.u8, to, at, at + size);
    this.advanceHead(size);
    this.begin(hash);
    i32[w + 1] = to;
    i32[w + 3] = referenced;
    this.end();
    this.advanceTail(size);
  }

  /** The slot whose entry offset is `at`, or NOT_FOUND if the entry is dead. */
  private slotPointingAt(hash: number, at: number): number {
    const i32 = this.i32;
    const n = this.slots;
    let i = homeSlot(hash, n);
    for (let probes = 0; probes < n; probes++) {
      const w = this.slotBase + i * SLOT_WORDS;
      const h = i32[w];
      if (h === 0) return NOT_FOUND;
      if (h === hash && i32[w + 1] === at) return i;
      if (++i === n) i = 0;
    }
    return NOT_FOUND;
  }

  /** Whether the entry at `at` (key length word `word`) holds the code units src[keyIndex, +keyLength). */
  private entryKeyEquals(at: number, word: number, src: Uint16Array, keyIndex: number, keyLength: number): boolean {
    let j = 0;
    if ((word & KEY_WIDE) !== 0) {
      const u16 = this.u16;
      const k = (at + E_KEY) >> 1;
      while (j < keyLength && u16[k + j] === src[keyIndex + j]) j++;
    } else {
      const u8 = this.u8;
      const k = at + E_KEY;
      while (j < keyLength && u8[k + j] === src[keyIndex + j]) j++;
    }
    return j === keyLength;
  }

  /** Probe for a key given as code units in another buffer (a ring record). */
  private probeCodeUnits(src: Uint16Array, keyIndex: number, keyLength: number, hash: number): number {
    const i32 = this.i32;
    const n = this.slots;
    let i = homeSlot(hash, n);
    for (let probes = 0; probes < n; probes++) {
      const w = this.slotBase + i * SLOT_WORDS;
      const h = i32[w];
      if (h === 0) return NOT_FOUND;
      if (h === hash) {
        const at = i32[w + 1]!;
        const word = i32[(at + E_KEY_LENGTH) >> 2]!;
        if ((word & KEY_LENGTH_MASK) === keyLength && this.entryKeyEquals(at, word, src, keyIndex, keyLength)) return i;
      }
      if (++i === n) i = 0;
    }
    return NOT_FOUND;
  }

  /**
   * Deletes a slot with backward-shift (no tombstones, so probes stay short
   * under constant churn). Every key whose slot moves has its stripe odd until
   * the shift is complete: a reader probing for it could otherwise pass over
   * its new position before it arrives there and wrongly report a miss.
   */
  private removeSlot(slot: number): void {
    const i32 = this.i32;
    const n = this.slots;
    const base = this.slotBase;
    const policy = this.policy;
    policy?.remove(slot);
    const entry = i32[base + slot * SLOT_WORDS + 1]!;
    this.liveBytes -= i32[(entry + E_SIZE) >> 2]!;
    this.begin(i32[base + slot * SLOT_WORDS]!);
    let hole = slot;
    let j = slot;
    for (;;) {
      if (++j === n) j = 0;
      const wj = base + j * SLOT_WORDS;
      const h = i32[wj]!;
      if (h === 0) break;
      const home = homeSlot(h, n);
      // Move j into the hole unless its home lies cyclically in (hole, j].
      const inRange = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (!inRange) {
        this.beginMore(h);
        const wh = base + hole * SLOT_WORDS;
        i32[wh + 1] = i32[wj + 1]!;
        i32[wh + 2] = i32[wj + 2]!;
        i32[wh + 3] = i32[wj + 3]!;
        i32[wh] = h;
        policy?.move(j, hole);
        hole = j;
      }
    }
    const wh = base + hole * SLOT_WORDS;
    i32[wh] = 0;
    i32[wh + 1] = 0;
    i32[wh + 2] = 0;
    i32[wh + 3] = 0;
    this.end();
    markDead(i32, entry);
    i32[H_ENTRIES]!--;
    this.slotRemovals++;
  }

  private begin(hash: number): void {
    this.touchedCount = 0;
    this.beginMore(hash);
  }

  private beginMore(hash: number): void {
    const stripe = STRIPE_BASE + (hash & STRIPE_MASK);
    for (let t = 0; t < this.touchedCount; t++) if (this.touched[t] === stripe) return;
    if (this.touchedCount === this.touched.length) {
      // A very long shift: the stripes opened so far must stay odd (their keys
      // are mid-move), so grow the list rather than close them early.
      const bigger = new Int32Array(this.touched.length * 2);
      bigger.set(this.touched);
      this.touched = bigger;
    }
    this.touched[this.touchedCount++] = stripe;
    writeBegin(this.i32, stripe);
  }

  private end(): void {
    for (let t = 0; t < this.touchedCount; t++) writeEnd(this.i32, this.touched[t]!);
    this.touchedCount = 0;
  }
}

/**
 * The arena's head, tail and used bytes are words written one after the other,
 * so an owner can die between them. `used` follows from head and tail except
 * when they are equal (empty or full). The writer grows `used` before it moves
 * head, and moves tail before it shrinks `used`, so with head == tail:
 * used > arena size is a full-ring move that died half-way (completed here),
 * used == arena size is full, anything else is an append to an empty ring that
 * died before it was published (dropped: no slot points at it yet).
 */
function repairArena(i32: Int32Array, arenaBytes: number): void {
  const head = i32[H_ARENA_HEAD]!;
  const tail = i32[H_ARENA_TAIL]!;
  const used = i32[H_ARENA_USED]!;
  if (used > arenaBytes) {
    i32[H_ARENA_TAIL] = head;
    i32[H_ARENA_USED] = arenaBytes;
  } else if (head !== tail) {
    i32[H_ARENA_USED] = (head - tail + arenaBytes) % arenaBytes;
  } else if (used !== arenaBytes) {
    i32[H_ARENA_USED] = 0;
  }
}

/**
 * Marks an entry no slot points at any more (superseded or removed) with hash
 * 0, so that reclaiming it at the arena's tail needs no probe of the index: a
 * cache miss saved per overwrite once the arena wraps. Always after the slot
 * changed, never before: an owner dying in between leaves an unmarked dead
 * entry (probed as before), never a live one marked (repairShard keeps only
 * slots whose entry's hash matches). Readers never read an entry's hash.
 */
function markDead(i32: Int32Array, entry: number): void {
  i32[(entry + E_HASH) >> 2] = 0;
}

/**
 * Makes a shard consistent after its owner died: a stripe left odd means the
 * owner died mid-change, so the index is rebuilt from its slots (dropping
 * duplicates a half-done shift can leave) and every stripe made even. Counters
 * derived from the index are recounted. Called by the new owner before it
 * applies anything.
 */
export function repairShard(sab: SharedArrayBuffer): { rebuilt: boolean } {
  const view = new ShardView(sab);
  const i32 = view.i32;
  repairArena(i32, view.arenaEnd - view.arenaStart);
  let odd = false;
  for (let s = 0; s < STRIPES; s++) if ((i32[STRIPE_BASE + s]! & 1) !== 0) odd = true;
  let rebuilt = false;
  if (odd) {
    const seen = new Set<number>();
    const kept: number[] = [];
    for (let i = 0; i < view.slots; i++) {
      const w = view.slotBase + i * SLOT_WORDS;
      const h = i32[w]!;
      const at = i32[w + 1]!;
      if (h === 0 || seen.has(at)) continue;
      if (at < view.arenaStart || at >= view.arenaEnd || i32[(at + E_HASH) >> 2] !== h) continue;
      seen.add(at);
      kept.push(h, at, i32[w + 2]!, i32[w + 3]!);
    }
    i32.fill(0, view.slotBase, view.slotBase + view.slots * SLOT_WORDS);
    for (let k = 0; k < kept.length; k += 4) {
      let i = homeSlot(kept[k]!, view.slots);
      while (i32[view.slotBase + i * SLOT_WORDS] !== 0) if (++i === view.slots) i = 0;
      const w = view.slotBase + i * SLOT_WORDS;
      i32[w + 1] = kept[k + 1]!;
      i32[w + 2] = kept[k + 2]!;
      i32[w + 3] = kept[k + 3]!;
      i32[w] = kept[k]!;
    }
    for (let s = 0; s < STRIPES; s++) if ((i32[STRIPE_BASE + s]! & 1) !== 0) Atomics.add(i32, STRIPE_BASE + s, 1);
    rebuilt = true;
  }
  let entries = 0;
  let dirty = 0;
  for (let i = 0; i < view.slots; i++) {
    const w = view.slotBase + i * SLOT_WORDS;
    if (i32[w] === 0) continue;
    entries++;
    if ((i32[(i32[w + 1]! + E_FLAGS) >> 2]! & FLAG_DIRTY) !== 0) dirty++;
  }
  i32[H_ENTRIES] = entries;
  i32[H_DIRTY] = dirty;
  return { rebuilt };
}
