/**
 * The owner's eviction policy for a shard with an entry bound (maxEntries):
 * W-TinyLFU (Einziger, Friedman, Manes, "TinyLFU: A Highly Efficient Cache
 * Admission Policy", ACM ToS 2017), as Caffeine runs it, adapted to a shard
 * whose readers never tell the owner what they read.
 *
 * Segments. A new entry enters the admission WINDOW (about 1% of the bound at
 * first). The rest, the MAIN space, is split into PROBATION and PROTECTED
 * (80% of main). When the shard is full, the window's oldest entry (the
 * candidate) leaves it and competes with probation's oldest (the victim): the
 * candidate is admitted to probation only if the frequency sketch estimates it
 * was read more often than the victim; otherwise the candidate is evicted.
 * A probation entry read again moves to protected; protected overflow moves
 * back to probation. So an entry read once is tried in the window and then
 * dropped unless it is more popular than what it would displace, which is what
 * makes a scan pass through without flushing the working set, while the window
 * still gives bursts of recent keys a chance (TinyLFU alone suffers on those).
 *
 * Recency without messages. Readers on other threads cannot reorder the
 * owner's lists; they set the slot's referenced bit (as for CLOCK) and bump the
 * sketch (frequency-sketch.ts). The lists are therefore ordered by insertion,
 * and the referenced bit stands for "read since": the owner acts on it lazily,
 * when an entry reaches the old end of its list (a window entry read since gets
 * another lap of the window, a probation entry read since is promoted, a
 * protected one gets another lap of protected). This is CLOCK's approximation
 * of LRU applied to each of W-TinyLFU's segments.
 *
 * The window adapts, by ARC's rule applied to W-TinyLFU's two spaces: the
 * owner remembers the hashes of keys it evicted lately (ghosts, as many as
 * the bound), and whether the window lost them (a candidate refused) or main
 * did (a victim). When an evicted key comes back, the space that lost it was
 * too small: a window ghost grows the window by one entry, a main ghost
 * shrinks it, each step scaled by the ratio of the other kind of ghost to
 * this one, as ARC scales its target (so the rarer signal is not drowned by
 * the commoner). Recency-heavy workloads grow the window towards LRU;
 * frequency-heavy ones shrink it towards TinyLFU. (Caffeine sizes its window
 * by hill climbing on the hit ratio; the owner does not see hits, and on the
 * ARC traces the ratio's own swings from one period to the next drowned the
 * effect of the window's size, where the ghosts' signal does not depend on
 * the workload's phase.)
 *
 * Hash flooding: an attacker who knows a victim's frequency could keep it in
 * place by flooding colliding candidates; as in Caffeine, a warm candidate
 * that only ties or trails the victim is admitted at random, 1 time in 128.
 *
 * Entries that wait for Redis (dirty) are never chosen: a dirty candidate is
 * admitted whatever its frequency, and a dirty victim is passed over.
 *
 * Only the owner thread touches this state, so it lives on the owner's heap,
 * in typed arrays indexed by slot: doubly linked lists with one sentinel per
 * segment. Backward-shift deletion moves slots, so the writer reports every
 * move (`move`), and a new owner after a crash starts from `adopt`.
 *
 * ARC, the bar this is measured against in bench/eviction.ts: Megiddo &
 * Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache", FAST '03.
 */
import type { FrequencySketch } from './frequency-sketch.js';
import { E_FLAGS, FLAG_DIRTY, H_ACCESSES, H_DIRTY, SLOT_WORDS } from './layout.js';
import { xorshift32 } from '../random.js';

export const NO_SLOT = -1;

const WINDOW = 1;
const PROBATION = 2;
const PROTECTED = 3;

/** Ghost kinds: evicted from the window (a refused candidate), from main (a victim). */
const WINDOW_GHOST = 0;
const MAIN_GHOST = 1;
const NO_GHOST = -1;

/** The window's starting share of the bound (Caffeine's default). */
const INITIAL_WINDOW = 0.01;
/** Protected's share of the main space: room for entries read twice, and enough probation to try newcomers. */
const PROTECTED_SHARE = 0.8;
/** The window never takes more than this share: past it the cache is LRU with extra steps. */
const MAX_WINDOW_SHARE = 0.8;
/** Reads per entry between agings of the sketch (the paper's sample size W = 10 C). */
const SAMPLE_PER_ENTRY = 10;
/** A candidate at least this frequent that does not beat the victim is admitted 1 time in 128. */
const WARM_FREQUENCY = 6;

export class EvictionPolicy {
  /** The entry bound this policy keeps the shard inside. */
  readonly capacity: number;
  /** Whether the victim `victim()` last returned was a candidate refused admission. */
  rejected = false;
  private readonly i32: Int32Array;
  private readonly slotBase: number;
  private readonly sketch: FrequencySketch;
  /** Segment lists. Slots 0..slots-1 are entries; slots + segment is that segment's sentinel. */
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private readonly segment: Uint8Array;
  private readonly sizes = new Int32Array(4);
  private readonly sentinel: number;
  private windowTarget: number;
  private maxWindow = 1;
  private maxProtected = 0;
  private readonly samplePeriod: number;
  private lastAging = 0;
  private random: number;
  /**
   * Ghosts: keys evicted lately, by hash, in a direct-mapped table (a
   * collision forgets the older ghost: the signal is statistical anyway),
   * stamped with the ghost's number and, in the low bit, whether main lost it.
   */
  private readonly ghostHash: Int32Array;
  private readonly ghostStamp: Int32Array;
  private readonly ghostMask: number;
  private ghostClock = 0;
  /** The kind of each of the last `capacity` ghosts, and how many of each those are. */
  private readonly ghostKinds: Uint8Array;
  private readonly ghostCounts = new Int32Array(2);

  constructor(i32: Int32Array, slotBase: number, slots: number, capacity: number, sketch: FrequencySketch) {
    this.i32 = i32;
    this.slotBase = slotBase;
    this.capacity = capacity;
    this.sketch = sketch;
    this.sentinel = slots;
    this.prev = new Int32Array(slots + 4);
    this.next = new Int32Array(slots + 4);
    this.segment = new Uint8Array(slots + 4);
    this.samplePeriod = SAMPLE_PER_ENTRY * capacity;
    this.windowTarget = INITIAL_WINDOW * capacity;
    this.random = (Math.random() * 0x7fffffff) | 1;
    let ghosts = 64;
    while (ghosts < 2 * capacity) ghosts *= 2;
    this.ghostHash = new Int32Array(ghosts);
    this.ghostStamp = new Int32Array(ghosts);
    this.ghostMask = ghosts - 1;
    this.ghostKinds = new Uint8Array(capacity);
    this.ghostCounts[WINDOW_GHOST] = capacity; // the kinds array starts as all WINDOW_GHOST
    this.resize();
    this.clear();
  }

  /** Forgets every entry (the shard was cleared). */
  clear(): void {
    this.segment.fill(0);
    for (let q = WINDOW; q <= PROTECTED; q++) {
      const s = this.sentinel + q;
      this.prev[s] = s;
      this.next[s] = s;
      this.sizes[q] = 0;
    }
    this.lastAging = this.i32[H_ACCESSES]!;
  }

  /** Takes over the entries a previous owner left: all on probation, the window empty. */
  adopt(slots: number): void {
    for (let s = 0; s < slots; s++) if (this.i32[this.slotBase + s * SLOT_WORDS] !== 0) this.pushHead(PROBATION, s);
  }

  /** A new key entered the shard at `slot`. */
  insert(slot: number): void {
    this.pushHead(WINDOW, slot);
    const ghost = this.takeGhost(this.i32[this.slotBase + slot * SLOT_WORDS]!);
    if (ghost !== NO_GHOST) this.adapt(ghost);
    // Past its quota (a main ghost shrank it), the window hands its oldest to
    // probation; victim() hands on the rest, one per insert.
    if (this.sizes[WINDOW]! > this.maxWindow) this.moveTo(this.tail(WINDOW), PROBATION);
  }

  /** The entry at `slot` left the shard (deleted, evicted, expired, dropped). */
  remove(slot: number): void {
    if (this.segment[slot] !== 0) this.unlink(slot);
  }

  /** Backward shift moved the entry at `from` to `to` (an empty slot). */
  move(from: number, to: number): void {
    const q = this.segment[from]!;
    if (q === 0) return;
    const p = this.prev[from]!;
    const n = this.next[from]!;
    this.prev[to] = p;
    this.next[to] = n;
    this.next[p] = to;
    this.prev[n] = to;
    this.segment[to] = q;
    this.segment[from] = 0;
  }

  /**
   * Ages the sketch once readers counted SAMPLE_PER_ENTRY reads per entry
   * since the last time. One load when it is not due; the writer calls it
   * per insert.
   */
  maintain(): void {
    const accesses = this.i32[H_ACCESSES]!;
    // A difference modulo 2^32: the counter wraps.
    if ((accesses - this.lastAging) >>> 0 >= this.samplePeriod) {
      this.sketch.halve();
      this.lastAging = accesses;
    }
  }

  /**
   * The entry to evict so that one new entry fits: a candidate refused
   * admission (`rejected` is then true) or main's victim. NO_SLOT when every
   * entry waits for Redis.
   */
  victim(): number {
    this.rejected = false;
    const candidate = this.sizes[WINDOW]! >= this.maxWindow ? this.windowCandidate() : NO_SLOT;
    const victim = this.mainVictim();
    if (candidate === NO_SLOT) {
      if (victim === NO_SLOT) return this.cleanInWindow();
      this.remember(victim, MAIN_GHOST);
      return victim;
    }
    if (victim === NO_SLOT) {
      if (!this.isDirty(candidate)) {
        this.rejected = true;
        return candidate;
      }
      this.moveTo(candidate, PROBATION);
      return this.cleanInWindow();
    }
    if (this.isDirty(candidate) || this.admits(candidate, victim)) {
      this.moveTo(candidate, PROBATION);
      this.remember(victim, MAIN_GHOST);
      return victim;
    }
    this.rejected = true;
    this.remember(candidate, WINDOW_GHOST);
    return candidate;
  }

  /**
   * Whether the entry at `slot`, met at the arena's tail when the arena is
   * out of bytes, should be kept (moved to the head) rather than evicted: the
   * byte-bound counterpart of `victim`, by segment and referenced bit. An
   * entry not read since is evicted from the window or probation; from
   * protected it is demoted to probation, so it goes on its next lap unless
   * read meanwhile. An entry read since is kept (and promoted from probation).
   */
  keepAtTail(slot: number): boolean {
    const q = this.segment[slot]!;
    const referenced = this.takeReferenced(slot);
    if (q === PROTECTED) {
      this.moveTo(slot, referenced ? PROTECTED : PROBATION);
      return true;
    }
    if (!referenced) return false;
    if (q === PROBATION) {
      this.moveTo(slot, PROTECTED);
      this.trimProtected();
    } else if (q === WINDOW) {
      this.moveTo(slot, WINDOW);
    }
    return true;
  }

  /** Segment sizes, for tests: [window, probation, protected, window quota]. */
  sizesForTesting(): [number, number, number, number] {
    return [this.sizes[WINDOW]!, this.sizes[PROBATION]!, this.sizes[PROTECTED]!, this.maxWindow];
  }

  /** Lists every problem with the lists' consistency against the index, for tests. */
  checkForTesting(slots: number): string[] {
    const problems: string[] = [];
    const seen = new Uint8Array(slots);
    for (let q = WINDOW; q <= PROTECTED; q++) {
      const head = this.sentinel + q;
      let n = 0;
      for (let s = this.next[head]!; s !== head; s = this.next[s]!) {
        if (s < 0 || s >= slots) {
          problems.push(`segment ${q} links to ${s}`);
          break;
        }
        if (this.prev[this.next[s]!] !== s) problems.push(`slot ${s}: next's prev is not it`);
        if (this.segment[s] !== q) problems.push(`slot ${s} is in list ${q} but marked ${this.segment[s]}`);
        if (seen[s] === 1) problems.push(`slot ${s} is listed twice`);
        seen[s] = 1;
        if (this.i32[this.slotBase + s * SLOT_WORDS] === 0) problems.push(`slot ${s} is listed but empty`);
        if (++n > slots) {
          problems.push(`segment ${q} loops`);
          break;
        }
      }
      if (n !== this.sizes[q]) problems.push(`segment ${q} holds ${n}, its size says ${this.sizes[q]}`);
    }
    for (let s = 0; s < slots; s++) {
      if (this.i32[this.slotBase + s * SLOT_WORDS] !== 0 && seen[s] === 0) problems.push(`slot ${s} is in no segment`);
    }
    return problems;
  }

  /** The window's oldest entry not read since its last lap; one lap at most. */
  private windowCandidate(): number {
    for (let n = this.sizes[WINDOW]!; n > 0; n--) {
      const s = this.tail(WINDOW);
      if (!this.takeReferenced(s)) return s;
      this.moveTo(s, WINDOW);
    }
    return this.sizes[WINDOW]! > 0 ? this.tail(WINDOW) : NO_SLOT;
  }

  /**
   * Probation's oldest entry not read since it got there and not dirty;
   * entries read since are promoted on the way. NO_SLOT if none is clean.
   */
  private mainVictim(): number {
    const checkDirty = this.i32[H_DIRTY] !== 0;
    for (let budget = 2 * (this.sizes[PROBATION]! + this.sizes[PROTECTED]!) + 2; budget > 0; budget--) {
      if (this.sizes[PROBATION] === 0) {
        if (this.sizes[PROTECTED] === 0) return NO_SLOT;
        this.moveTo(this.tail(PROTECTED), PROBATION);
        continue;
      }
      const s = this.tail(PROBATION);
      if (this.takeReferenced(s)) {
        this.moveTo(s, PROTECTED);
        this.trimProtected();
      } else if (checkDirty && this.isDirty(s)) {
        this.moveTo(s, PROBATION);
      } else {
        return s;
      }
    }
    return NO_SLOT;
  }

  /** A clean window entry, oldest first, for when main has none. */
  private cleanInWindow(): number {
    const head = this.sentinel + WINDOW;
    for (let s = this.prev[head]!; s !== head; s = this.prev[s]!) if (!this.isDirty(s)) return s;
    return NO_SLOT;
  }

  /** Demotes protected's oldest entries not read since to probation while protected is over its quota. */
  private trimProtected(): void {
    for (let laps = this.sizes[PROTECTED]!; this.sizes[PROTECTED]! > this.maxProtected && laps > 0; laps--) {
      const s = this.tail(PROTECTED);
      this.moveTo(s, this.takeReferenced(s) ? PROTECTED : PROBATION);
    }
    while (this.sizes[PROTECTED]! > this.maxProtected) this.moveTo(this.tail(PROTECTED), PROBATION);
  }

  /** TinyLFU's admission: whether the candidate is more popular than the victim. */
  private admits(candidate: number, victim: number): boolean {
    const c = this.sketch.frequency(this.i32[this.slotBase + candidate * SLOT_WORDS]!);
    const v = this.sketch.frequency(this.i32[this.slotBase + victim * SLOT_WORDS]!);
    if (c > v) return true;
    if (c < WARM_FREQUENCY) return false;
    // xorshift32: cheap, and nothing here needs more than a coin with 128 sides.
    this.random = xorshift32(this.random);
    return (this.random & 127) === 0;
  }

  /** An evicted key came back: the space that lost it grows (see "The window adapts" above). */
  private adapt(ghost: number): void {
    const fromWindow = this.ghostCounts[WINDOW_GHOST]!;
    const fromMain = this.ghostCounts[MAIN_GHOST]!;
    if (ghost === WINDOW_GHOST) {
      this.windowTarget = Math.min(MAX_WINDOW_SHARE * this.capacity, this.windowTarget + Math.max(1, fromMain / Math.max(1, fromWindow)));
    } else {
      this.windowTarget = Math.max(1, this.windowTarget - Math.max(1, fromWindow / Math.max(1, fromMain)));
    }
    this.resize();
    // A grown window takes main's oldest entry at once, as Caffeine moves
    // entries when it resizes: evicting for the room instead would throw away
    // an entry admission chose. (A shrunk one hands its surplus on in insert.)
    if (this.sizes[WINDOW]! < this.maxWindow) {
      const from = this.sizes[PROBATION]! > 0 ? PROBATION : PROTECTED;
      if (this.sizes[from]! > 0) this.moveTo(this.tail(from), WINDOW);
    }
  }

  /** Remembers the evicted entry at `slot` as a ghost of the window or of main. */
  private remember(slot: number, kind: number): void {
    const hash = this.i32[this.slotBase + slot * SLOT_WORDS]!;
    const i = (Math.imul(hash, 0x9e3779b1) >>> 0) & this.ghostMask;
    this.ghostHash[i] = hash;
    this.ghostStamp[i] = (++this.ghostClock << 1) | kind;
    // The last `capacity` ghosts, by kind, for adapt's ratio.
    const k = this.ghostClock % this.capacity;
    this.ghostCounts[this.ghostKinds[k]!]!--;
    this.ghostKinds[k] = kind;
    this.ghostCounts[kind]!++;
  }

  /** The kind of ghost `hash` is, forgetting it, or NO_GHOST (never evicted, or too long ago). */
  private takeGhost(hash: number): number {
    const i = (Math.imul(hash, 0x9e3779b1) >>> 0) & this.ghostMask;
    if (this.ghostHash[i] !== hash) return NO_GHOST;
    const stamp = this.ghostStamp[i]!;
    this.ghostHash[i] = 0;
    // Only the last `capacity` evictions count, as ARC keeps as many ghosts as pages.
    if (this.ghostClock - (stamp >>> 1) > this.capacity) return NO_GHOST;
    return stamp & 1;
  }

  private resize(): void {
    this.maxWindow = Math.max(1, Math.round(this.windowTarget));
    this.maxProtected = Math.floor(PROTECTED_SHARE * (this.capacity - this.maxWindow));
  }

  /** Whether the slot's entry was read since the bit was last cleared; clears it. */
  private takeReferenced(slot: number): boolean {
    const w = this.slotBase + slot * SLOT_WORDS + 3;
    if (this.i32[w] === 0) return false;
    this.i32[w] = 0;
    return true;
  }

  private isDirty(slot: number): boolean {
    const at = this.i32[this.slotBase + slot * SLOT_WORDS + 1]!;
    return (this.i32[(at + E_FLAGS) >> 2]! & FLAG_DIRTY) !== 0;
  }

  private tail(q: number): number {
    return this.prev[this.sentinel + q]!;
  }

  /** Unlinks `slot` and links it at the new end of segment `q` (its own, for another lap). */
  private moveTo(slot: number, q: number): void {
    this.unlink(slot);
    this.pushHead(q, slot);
  }

  private pushHead(q: number, slot: number): void {
    const head = this.sentinel + q;
    const first = this.next[head]!;
    this.next[head] = slot;
    this.prev[slot] = head;
    this.next[slot] = first;
    this.prev[first] = slot;
    this.segment[slot] = q;
    this.sizes[q]!++;
  }

  private unlink(slot: number): void {
    const p = this.prev[slot]!;
    const n = this.next[slot]!;
    this.next[p] = n;
    this.prev[n] = p;
    this.sizes[this.segment[slot]!]!--;
    this.segment[slot] = 0;
  }
}
