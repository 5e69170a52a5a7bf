/**
 * Process-wide locks in shared memory, for `lock`, `incr` and `update` when no
 * Redis is configured: every thread of the process maps the same table. The
 * slots and their ticket protocol are lock-slots.ts; this is one thread's
 * side: its callers and its tickets.
 *
 * Within a thread, callers of one slot queue in JS and the thread holds one
 * ticket per slot at a time, so a slot never has more tickets in flight than
 * threads using it. A caller whose waitMs runs out gives up at once; the
 * thread's ticket then serves the next caller here, or, if none is left, is
 * passed on the moment its turn comes.
 *
 * waitAsync does not keep a Node event loop alive (its timeout is an unref'd
 * task, nodejs/node#61941): a thread whose only work was awaiting a lock
 * exited in the middle of it. So each waiting caller has a ref'd timer for its
 * waitMs: the thread stays up while someone waits, and a ticket nobody waits
 * for any more does not keep it up (if the thread exits, the claim window
 * passes the ticket over).
 */
import { MAX_TIMER_MS } from '../options.js';
import { LOCK_SLOTS, LockSlots, freeState, heldState, type Granted } from './lock-slots.js';

export { CLAIM_WINDOW_MS, LOCK_SLOTS, createLockTable, type Granted } from './lock-slots.js';


interface Waiter {
  readonly ttlMs: number;
  /** performance.now() by which it gives up. */
  readonly deadline: number;
  readonly resolve: (granted: Granted | null) => void;
  readonly reject: (reason: unknown) => void;
  readonly signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  timer: NodeJS.Timeout | undefined;
}

/**
 * This thread's callers of one slot, and its one ticket there. Kept once
 * made (at most LOCK_SLOTS per thread), so a busy slot allocates nothing.
 */
interface SlotQueue {
  readonly waiters: Waiter[];
  /** A ticket of this thread is in flight here (waiting for its turn, or held). */
  serving: boolean;
  /** The ticket a caller on this thread holds here, or -1. */
  held: number;
  holdTimer: NodeJS.Timeout | undefined;
}

/** One thread's view of the table. */
export class LockTable {
  private readonly slots: LockSlots;
  private readonly queues = new Map<number, SlotQueue>();
  private closedReason: unknown;
  private closed = false;

  constructor(sab: SharedArrayBuffer) {
    this.slots = new LockSlots(sab);
  }

  slotOf(hash: number): number {
    return (hash >>> 0) % LOCK_SLOTS;
  }

  /**
   * Waits up to `waitMs` for the slot; resolves with the hold, or null when
   * `waitMs` ran out. 0 tries once. Rejects with the signal's reason if aborted.
   */
  acquire(slot: number, ttlMs: number, waitMs: number, signal?: AbortSignal): Promise<Granted | null> {
    if (this.closed) return Promise.reject(this.closedReason);
    let q = this.queues.get(slot);
    if (q === undefined || !q.serving) {
      // Nobody on this thread queues or holds here: a free slot nobody queues
      // for is taken at once, without a waiter and its timer.
      const got = this.slots.tryAcquire(slot, ttlMs);
      if (got !== null) {
        this.hold(slot, q ?? this.queueOf(slot), got.ticket);
        return Promise.resolve(got);
      }
    }
    if (waitMs <= 0) return Promise.resolve(null);
    const queue = q ?? this.queueOf(slot);
    return new Promise<Granted | null>((resolve, reject) => {
      const waiter: Waiter = { ttlMs, deadline: performance.now() + waitMs, resolve, reject, signal, onAbort: undefined, timer: undefined };
      queue.waiters.push(waiter);
      this.armDeadline(queue, waiter);
      if (signal) {
        waiter.onAbort = () => {
          if (this.forget(queue, waiter)) reject(signal.reason);
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      if (!queue.serving) {
        queue.serving = true;
        void this.serve(slot, queue);
      } else if (queue.held >= 0) {
        // A caller here holds the slot: if its lease already ran out, this
        // waiter must not wait on a release that may never come.
        this.checkHold(slot, queue);
      }
    });
  }

  /** Releases the hold if it is still this ticket's; never another holder's. */
  release(slot: number, ticket: number): boolean {
    const released = this.slots.release(slot, ticket);
    const q = this.queues.get(slot);
    if (q !== undefined && q.held === ticket) this.endHold(slot, q);
    return released;
  }

  /** Sets the hold's expiry to `ms` from now if this ticket still holds the slot. */
  extend(slot: number, ticket: number, ms: number): boolean {
    return this.slots.extend(slot, ticket, ms);
  }

  /**
   * This thread detaches: its waiting callers reject with `reason`. Its tickets
   * still in the queue are passed on when their turn comes while the thread
   * lives, or by the claim window once it is gone. Holds stay until released
   * or expired.
   */
  close(reason: unknown): void {
    this.closed = true;
    this.closedReason = reason;
    for (const q of this.queues.values()) {
      for (const waiter of q.waiters.splice(0)) {
        this.settle(waiter);
        waiter.reject(reason);
      }
    }
  }

  // ---- this thread's queue ------------------------------------------------

  /**
   * Takes this thread's ticket for the slot and waits for its turn, which goes
   * to the first caller here still waiting. When that caller's hold ends,
   * endHold starts this again for the next one.
   */
  private async serve(slot: number, q: SlotQueue): Promise<void> {
    try {
      while (q.waiters.length > 0) {
        const ticket = this.slots.takeTicket(slot);
        if (!(await this.slots.awaitTurn(slot, ticket))) continue; // passed over: queue again
        const waiter = q.waiters[0];
        if (waiter === undefined) {
          // Everyone here gave up while the ticket waited: hand the turn on now.
          this.slots.advance(slot, freeState(ticket));
          break;
        }
        if (!this.slots.claim(slot, ticket, waiter.ttlMs)) continue; // passed over just before the claim
        q.waiters.shift();
        this.settle(waiter);
        this.hold(slot, q, ticket);
        waiter.resolve({ ticket, fence: ticket + 1 });
        return;
      }
      q.serving = false;
    } catch (error) {
      // Nothing above throws; if it ever did, no caller may wait forever.
      q.serving = false;
      for (const waiter of q.waiters.splice(0)) {
        this.settle(waiter);
        waiter.reject(error);
      }
    }
  }

  /** A caller here holds `ticket`; the thread's ticket stays in use until the hold ends. */
  private hold(slot: number, q: SlotQueue, ticket: number): void {
    q.serving = true;
    q.held = ticket;
    this.checkHold(slot, q);
  }

  /** The hold ended (released here, or passed over): queue again for the next caller here, if any. */
  private endHold(slot: number, q: SlotQueue): void {
    clearTimeout(q.holdTimer);
    q.holdTimer = undefined;
    q.held = -1;
    if (q.waiters.length > 0) void this.serve(slot, q);
    else q.serving = false;
  }

  private queueOf(slot: number): SlotQueue {
    const q: SlotQueue = { waiters: [], serving: false, held: -1, holdTimer: undefined };
    this.queues.set(slot, q);
    return q;
  }

  /**
   * Ends this thread's hold when another thread passed it over after its lease
   * ran out, or passes it over itself when callers here wait for it: a hold
   * that is never released must not block this thread's other callers.
   */
  private checkHold(slot: number, q: SlotQueue): void {
    clearTimeout(q.holdTimer);
    q.holdTimer = undefined;
    if (q.held < 0) return;
    const held = heldState(q.held);
    for (let look = 0; look < 2; look++) {
      if (this.slots.state(slot) !== held) {
        this.endHold(slot, q);
        return;
      }
      // Nobody here waits: the next caller to queue, or the release, looks again.
      if (q.waiters.length === 0) return;
      const sleep = this.slots.passIfExpired(slot, held);
      if (sleep > 0) {
        q.holdTimer = setTimeout(() => this.checkHold(slot, q), Math.min(sleep + 1, MAX_TIMER_MS));
        // The waiting callers' own timers keep the thread alive.
        q.holdTimer.unref();
        return;
      }
    }
  }

  private armDeadline(q: SlotQueue, waiter: Waiter): void {
    // Re-armed rather than trusted: a timer may fire a little early, and
    // setTimeout cannot wait more than MAX_TIMER_MS.
    const left = waiter.deadline - performance.now();
    if (left > 0) {
      waiter.timer = setTimeout(() => this.armDeadline(q, waiter), Math.min(Math.ceil(left), MAX_TIMER_MS));
      return;
    }
    // Its ticket (if it was the one the thread's ticket was for) is handed to
    // the next caller here, or passed on when its turn comes.
    if (this.forget(q, waiter)) waiter.resolve(null);
  }

  /** Removes a waiter that gave up; false if it was no longer waiting. */
  private forget(q: SlotQueue, waiter: Waiter): boolean {
    const at = q.waiters.indexOf(waiter);
    if (at < 0) return false;
    q.waiters.splice(at, 1);
    this.settle(waiter);
    return true;
  }

  private settle(waiter: Waiter): void {
    clearTimeout(waiter.timer);
    waiter.timer = undefined;
    if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
    waiter.onAbort = undefined;
  }
}
