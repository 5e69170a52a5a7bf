/**
 * The shared half of the process-wide lock table (for `lock`, `incr` and
 * `update` when no Redis is configured): the slots every thread of the
 * process maps, and the ticket protocol on them. The other half, one
 * thread's callers queueing for its tickets, is lock-table.ts.
 *
 *   byte 0       HEADER (64 B)  BigInt64 [0] origin: Date.now() when the table was made;
 *                               every time below is whole ms after it
 *   byte 64      SLOTS          LOCK_SLOTS slots of 64 B (a cache line each, so two
 *                               busy slots never share one), BigInt64 words:
 *
 *      slot:  [0] STATE    ticket now served × 2, + 1 once its owner claimed it
 *             [1] NEXT     next ticket to hand out
 *             [2] LEASE    expiry << 22 | passed << 21 | (served ticket mod 2^21)
 *             [3] TURN_AT  when the ticket now served got its turn
 *             [4..7] BELL  ticket t's owner sleeps on BELL[t mod 4], which is
 *                          bumped and notified when t's turn comes
 *
 * Keys hash to one of LOCK_SLOTS slots. Two keys sharing a slot exclude each
 * other (safe, only less concurrent).
 *
 * Fairness. Each slot is a ticket lock: a thread takes a ticket (NEXT) and
 * waits until STATE serves it, so the lock goes round in arrival order and a
 * thread that releases and asks again queues behind everyone already waiting.
 * (With a plain compare-and-swap lock, the releasing thread takes the lock
 * again in the microseconds a sleeping waiter needs to wake and look, ~60 µs:
 * two threads looping on one key run one after the other, not in turns.)
 *
 * The fencing token of a hold is its ticket + 1. Turns are served in ticket
 * order, so tokens strictly increase in hold order, for every key of the slot,
 * and they are fixed before the hold starts: a holder paused right after its
 * claim cannot end up with a larger token than the holder after it.
 *
 * Every change of STATE is one compare-and-swap, so the transitions cannot
 * interleave: claim (t, free) -> (t, held) by t's owner; release
 * (t, held) -> (t+1, free) by the holder; and two ways to pass a turn over:
 *
 * - A holder that died (or stopped renewing) is passed over once its lease
 *   ran out: a waiter first sets the lease's `passed` bit (a CAS on the exact
 *   lease it judged expired, so it fails if the holder extended meanwhile, and
 *   from then on the holder's own extend fails), then advances STATE. A waiter
 *   that dies between the two leaves a passed lease, which the next one
 *   finishes passing.
 * - A turn nobody claims within CLAIM_WINDOW_MS of TURN_AT (its ticket's
 *   thread died, or closed, or timed out and is gone) is advanced by a waiter
 *   behind it. A thread still alive passes its own unwanted turns at once.
 *
 * The lease packs the expiry with the ticket it belongs to so that extend is
 * one CAS: a holder that was passed over and extends late finds the lease
 * changed (passed, or rewritten by the next holder) and fails, without ever
 * overwriting the next holder's expiry. The claimant writes its lease before
 * its claim, so whoever sees the claim sees the lease (Atomics are seq-cst),
 * and a holder that dies right after its claim still has an expiry. Times are
 * read with Date.now(), as before; a lease allows 2^41 ms (69 years) after the
 * origin.
 *
 * Waiting is Atomics.waitAsync on the ticket's BELL, bounded by the next time
 * something may need doing (a lease running out, a claim window ending) and by
 * MAX_SLEEP_MS. A release wakes the next ticket's owner, not every waiter: on
 * a machine with fewer cores than threads, waking the others only for them to
 * sleep again delays the one that matters. The waiter loads the bell before
 * it looks at STATE, so a turn that comes after the look changes the bell and
 * the wait returns at once. (Keeping the thread alive meanwhile is the
 * caller's side: see lock-table.ts.)
 */
export const LOCK_SLOTS = 4096;

const HEADER_WORDS = 8;
const SLOT_WORDS = 8;
const W_STATE = 0;
const W_NEXT = 1;
const W_LEASE = 2;
const W_TURN_AT = 3;
const W_BELL = 4;
const BELLS = 4;

const LEASE_TICKET_MASK = (1n << 21n) - 1n;
const LEASE_PASSED = 1n << 21n;
const LEASE_EXPIRY_SHIFT = 22n;
const MAX_LEASE_MS = 2 ** 41 - 1;

/**
 * How long a turn may stay unclaimed before the waiters behind it pass it
 * over. Long enough for a live thread to wake and claim on a loaded machine
 * (normally ~60 µs; a GC pause or a busy event loop takes longer, and then the
 * thread only loses its place, it queues again); short enough that a thread
 * that died with a ticket holds the others up briefly.
 */
export const CLAIM_WINDOW_MS = 250;
/** Longest a waiter sleeps without looking: a safety net, as the advance to a ticket rings its bell. */
const MAX_SLEEP_MS = 1_000;


export function createLockTable(): SharedArrayBuffer {
  const sab = new SharedArrayBuffer((HEADER_WORDS + LOCK_SLOTS * SLOT_WORDS) * 8);
  Atomics.store(new BigInt64Array(sab), 0, BigInt(Date.now()));
  return sab;
}

/** A hold: its ticket (the holder's identity for release and extend) and its fencing token. */
export interface Granted {
  ticket: number;
  fence: number;
}

/** The slots and their ticket protocol, as one thread maps them. */
export class LockSlots {
  private readonly words: BigInt64Array;
  private readonly origin: number;

  constructor(sab: SharedArrayBuffer) {
    this.words = new BigInt64Array(sab);
    this.origin = Number(Atomics.load(this.words, 0));
  }

  /** The slot's STATE word (see the file head). */
  state(slot: number): bigint {
    return Atomics.load(this.words, this.base(slot) + W_STATE);
  }

  /** Releases the hold if it is still this ticket's; never another holder's. */
  release(slot: number, ticket: number): boolean {
    const held = heldState(ticket);
    return this.state(slot) === held && this.advance(slot, held);
  }

  /** Sets the hold's expiry to `ms` from now if this ticket still holds the slot. */
  extend(slot: number, ticket: number, ms: number): boolean {
    const base = this.base(slot);
    if (Atomics.load(this.words, base + W_STATE) !== heldState(ticket)) return false;
    const lease = Atomics.load(this.words, base + W_LEASE);
    if ((lease & LEASE_TICKET_MASK) !== (BigInt(ticket) & LEASE_TICKET_MASK) || (lease & LEASE_PASSED) !== 0n) return false;
    // One CAS on the exact lease read: a waiter passing this hold over must
    // first mark that same lease passed, so exactly one of the two wins, and a
    // next holder's lease (written only after STATE moved on) is never replaced.
    return Atomics.compareExchange(this.words, base + W_LEASE, lease, this.lease(ticket, ms)) === lease;
  }

  base(slot: number): number {
    return HEADER_WORDS + slot * SLOT_WORDS;
  }

  /** Whole ms since the table's origin (never negative, should the clock step back past it). */
  now(): number {
    return Math.max(0, Date.now() - this.origin);
  }

  lease(ticket: number, ttlMs: number): bigint {
    // A non-finite extension (extend(NaN)) never runs out, as before.
    const expiry = Number.isFinite(ttlMs) ? Math.min(MAX_LEASE_MS, Math.max(0, Math.ceil(this.now() + ttlMs))) : MAX_LEASE_MS;
    return (BigInt(expiry) << LEASE_EXPIRY_SHIFT) | (BigInt(ticket) & LEASE_TICKET_MASK);
  }

  takeTicket(slot: number): number {
    const base = this.base(slot);
    const words = this.words;
    // On an idle slot the ticket is served at once, but TURN_AT may be old:
    // restamp it so that a waiter arriving right behind does not take this
    // turn for one nobody claimed.
    const state = Atomics.load(words, base + W_STATE);
    if ((state & 1n) === 0n && state >> 1n === Atomics.load(words, base + W_NEXT)) {
      Atomics.store(words, base + W_TURN_AT, BigInt(this.now()));
    }
    return Number(Atomics.add(words, base + W_NEXT, 1n));
  }

  /** Waits until `ticket` is served (true) or was passed over (false), passing over dead turns ahead of it. */
  async awaitTurn(slot: number, ticket: number): Promise<boolean> {
    const base = this.base(slot);
    const bell = base + W_BELL + (ticket % BELLS);
    const mine = freeState(ticket);
    const ours = BigInt(ticket);
    for (;;) {
      const rung = Atomics.load(this.words, bell);
      const state = Atomics.load(this.words, base + W_STATE);
      if (state === mine) return true;
      if (state >> 1n > ours) return false;
      const sleep = (state & 1n) === 1n ? this.passIfExpired(slot, state) : this.passIfUnclaimed(slot, state);
      if (sleep === 0) continue;
      // Resolves when this ticket's bell rings (at once if it rang since the
      // load above), or after `sleep`, to look for a dead turn to pass.
      const result = Atomics.waitAsync(this.words, bell, rung, sleep);
      if (result.async) await result.value;
    }
  }

  /**
   * For STATE `held`: passes the hold over if its lease ran out and returns 0;
   * else returns how long to sleep before looking again.
   */
  passIfExpired(slot: number, held: bigint): number {
    const index = this.base(slot) + W_LEASE;
    const lease = Atomics.load(this.words, index);
    // The holder wrote its lease before its claim, so a lease of another
    // ticket means STATE moved on after our load: look again (and should it
    // not have, which the order of writes rules out, sleep rather than spin).
    if ((lease & LEASE_TICKET_MASK) !== ((held >> 1n) & LEASE_TICKET_MASK)) {
      return Atomics.load(this.words, this.base(slot) + W_STATE) === held ? 1 : 0;
    }
    if ((lease & LEASE_PASSED) === 0n) {
      const left = Number(lease >> LEASE_EXPIRY_SHIFT) - this.now();
      if (left > 0) return Math.max(1, Math.min(left, MAX_SLEEP_MS));
      // Fails if the holder extended since our load; then look again.
      if (Atomics.compareExchange(this.words, index, lease, lease | LEASE_PASSED) !== lease) return 0;
    }
    this.advance(slot, held);
    return 0;
  }

  /**
   * For a free STATE whose ticket is someone else's: passes the turn over if
   * it stayed unclaimed for CLAIM_WINDOW_MS and returns 0; else returns how
   * long to sleep before looking again.
   */
  passIfUnclaimed(slot: number, free: bigint): number {
    const turnAt = Number(Atomics.load(this.words, this.base(slot) + W_TURN_AT));
    const left = turnAt + CLAIM_WINDOW_MS - this.now();
    if (left > 0) return Math.max(1, Math.min(left, MAX_SLEEP_MS));
    this.advance(slot, free);
    return 0;
  }

  /** Claims `ticket`'s turn (STATE must serve it, free). False if it was passed over first. */
  claim(slot: number, ticket: number, ttlMs: number): boolean {
    const base = this.base(slot);
    const free = freeState(ticket);
    // The lease first: whoever sees the claim then sees the lease. Nobody
    // holds the slot now, so no live lease is overwritten; a passed-over
    // holder extending late finds its lease gone and fails.
    Atomics.store(this.words, base + W_LEASE, this.lease(ticket, ttlMs));
    return Atomics.compareExchange(this.words, base + W_STATE, free, free | 1n) === free;
  }

  /** Moves STATE from `from` to the next ticket's free turn and wakes its owner. False if STATE was not `from`. */
  advance(slot: number, from: bigint): boolean {
    const base = this.base(slot);
    // TURN_AT before STATE: whoever sees the new turn sees when it began (or a
    // later stamp, if this CAS fails, which only delays a pass-over). A thread
    // paused between reading the clock and this store can leave an older stamp
    // behind; at worst a live thread's turn is then passed early and it queues
    // again: fairness, never exclusion, is what TURN_AT decides.
    Atomics.store(this.words, base + W_TURN_AT, BigInt(this.now()));
    const ticket = Number((from >> 1n) + 1n);
    if (Atomics.compareExchange(this.words, base + W_STATE, from, freeState(ticket)) !== from) return false;
    const bell = base + W_BELL + (ticket % BELLS);
    Atomics.add(this.words, bell, 1n);
    Atomics.notify(this.words, bell);
    return true;
  }

  /** Takes the slot only if it is free and nobody queues for it (passing over dead turns first). */
  tryAcquire(slot: number, ttlMs: number): Granted | null {
    const base = this.base(slot);
    const words = this.words;
    for (let look = 0; look < 3; look++) {
      const state = Atomics.load(words, base + W_STATE);
      if ((state & 1n) === 1n) {
        if (this.passIfExpired(slot, state) > 0) return null;
        continue;
      }
      const serving = state >> 1n;
      if (Atomics.load(words, base + W_NEXT) !== serving) {
        if (this.passIfUnclaimed(slot, state) > 0) return null;
        continue;
      }
      // Take the served ticket, and only that one: a ticket further back
      // would have to be waited for or passed on.
      Atomics.store(words, base + W_TURN_AT, BigInt(this.now()));
      if (Atomics.compareExchange(words, base + W_NEXT, serving, serving + 1n) !== serving) continue;
      const ticket = Number(serving);
      // Fails only if a waiter that arrived in the last instant passed the
      // turn; it is then theirs, and ours is already gone.
      return this.claim(slot, ticket, ttlMs) ? { ticket, fence: ticket + 1 } : null;
    }
    return null;
  }
}

export function freeState(ticket: number): bigint {
  return BigInt(ticket) << 1n;
}

export function heldState(ticket: number): bigint {
  return (BigInt(ticket) << 1n) | 1n;
}
