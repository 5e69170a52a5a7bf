// The lock table's protocol on one thread: several LockTable views of one
// table stand for several threads (each view has its own queue and its own
// ticket per slot, as each thread does). No workers; the real threads are in
// test/integration/lock-fairness.test.ts.
import { describe, expect, it } from 'vitest';
import { CLAIM_WINDOW_MS, LOCK_SLOTS, LockTable, createLockTable, type Granted } from '../../dist/src/memory/lock-table.js';

const SLOT = 17;
const TTL = 10_000;
const WAIT = 10_000;

function views(count: number): LockTable[] {
  const sab = createLockTable();
  return Array.from({ length: count }, () => new LockTable(sab));
}

async function granted(promise: Promise<Granted | null>): Promise<Granted> {
  const got = await promise;
  if (got === null) throw new Error('expected the lock, the wait ran out');
  return got;
}

/** Records the order in which requests are granted. */
function inOrder(requests: Array<[string, Promise<Granted | null>]>, order: string[]): Array<Promise<Granted>> {
  return requests.map(([name, request]) => granted(request).then((got) => {
    order.push(name);
    return got;
  }));
}

describe('LockTable', () => {
  it('grants in request order across views, and a releaser that asks again queues behind the waiters', async () => {
    const [a, b, c] = views(3) as [LockTable, LockTable, LockTable];
    const first = await granted(a.acquire(SLOT, TTL, WAIT));
    const order: string[] = [];
    const [cGot, bGot] = inOrder([['c', c.acquire(SLOT, TTL, WAIT)], ['b', b.acquire(SLOT, TTL, WAIT)]], order);
    expect(a.release(SLOT, first.ticket)).toBe(true);
    const again = inOrder([['a', a.acquire(SLOT, TTL, WAIT)]], order)[0]!;
    const cHold = await cGot!;
    expect(c.release(SLOT, cHold.ticket)).toBe(true);
    const bHold = await bGot!;
    expect(b.release(SLOT, bHold.ticket)).toBe(true);
    const aHold = await again;
    expect(order).toEqual(['c', 'b', 'a']);
    expect(first.fence).toBeLessThan(cHold.fence);
    expect(cHold.fence).toBeLessThan(bHold.fence);
    expect(bHold.fence).toBeLessThan(aHold.fence);
    expect(a.release(SLOT, aHold.ticket)).toBe(true);
  });

  it('queues the callers of one view in their order, one ticket at a time', async () => {
    const [a, b] = views(2) as [LockTable, LockTable];
    const order: string[] = [];
    const holds = inOrder([['a1', a.acquire(SLOT, TTL, WAIT)], ['a2', a.acquire(SLOT, TTL, WAIT)], ['a3', a.acquire(SLOT, TTL, WAIT)]], order);
    const a1 = await holds[0]!;
    // b asks while a's next caller waits in a's own queue: b's ticket comes first.
    const bGot = inOrder([['b', b.acquire(SLOT, TTL, WAIT)]], order)[0]!;
    a.release(SLOT, a1.ticket);
    b.release(SLOT, (await bGot).ticket);
    a.release(SLOT, (await holds[1]!).ticket);
    a.release(SLOT, (await holds[2]!).ticket);
    expect(order).toEqual(['a1', 'b', 'a2', 'a3']);
  });

  it('with waitMs 0 takes a free slot, and refuses a held one or one others queue for', async () => {
    const [a, b, c] = views(3) as [LockTable, LockTable, LockTable];
    const hold = await granted(a.acquire(SLOT, TTL, 0));
    expect(await b.acquire(SLOT, TTL, 0)).toBeNull();
    const waiting = c.acquire(SLOT, TTL, WAIT);
    a.release(SLOT, hold.ticket);
    // Free for an instant, but c's turn.
    expect(await b.acquire(SLOT, TTL, 0)).toBeNull();
    c.release(SLOT, (await granted(waiting)).ticket);
    const later = await granted(b.acquire(SLOT, TTL, 0));
    expect(later.fence).toBeGreaterThan(hold.fence);
    // Slots are independent: the first and the last slot while SLOT is held.
    expect(await a.acquire(0, TTL, 0)).not.toBeNull();
    expect(await a.acquire(LOCK_SLOTS - 1, TTL, 0)).not.toBeNull();
  });

  it('a waiter whose waitMs runs out gives up on time, and its place is handed on at once', async () => {
    const [a, b, c] = views(3) as [LockTable, LockTable, LockTable];
    const hold = await granted(a.acquire(SLOT, TTL, WAIT));
    const started = performance.now();
    const gaveUp = b.acquire(SLOT, TTL, 100);
    const after = c.acquire(SLOT, TTL, WAIT);
    expect(await gaveUp).toBeNull();
    expect(performance.now() - started).toBeGreaterThanOrEqual(99);
    const released = performance.now();
    a.release(SLOT, hold.ticket);
    const got = await granted(after);
    // b's view passed its turn on when it came, without a claim window.
    expect(performance.now() - released).toBeLessThan(CLAIM_WINDOW_MS);
    expect(got.fence).toBe(hold.fence + 2);
  });

  it('a hold whose lease ran out is passed over; the old holder can neither extend nor release it', async () => {
    const [a, b] = views(2) as [LockTable, LockTable];
    const hold = await granted(a.acquire(SLOT, 50, WAIT));
    const started = Date.now();
    const next = await granted(b.acquire(SLOT, TTL, WAIT));
    expect(Date.now() - started).toBeGreaterThanOrEqual(49);
    expect(next.fence).toBeGreaterThan(hold.fence);
    expect(a.extend(SLOT, hold.ticket, TTL)).toBe(false);
    expect(a.release(SLOT, hold.ticket)).toBe(false);
    expect(b.extend(SLOT, next.ticket, TTL)).toBe(true);
    expect(b.release(SLOT, next.ticket)).toBe(true);
  });

  it('an extended hold is not passed over', async () => {
    const [a, b] = views(2) as [LockTable, LockTable];
    const hold = await granted(a.acquire(SLOT, 60, WAIT));
    const renew = setInterval(() => a.extend(SLOT, hold.ticket, 60), 15);
    try {
      expect(await b.acquire(SLOT, TTL, 250)).toBeNull();
    } finally {
      clearInterval(renew);
    }
    expect(a.release(SLOT, hold.ticket)).toBe(true);
  });

  it('a hold never released does not block its own view for longer than its lease', async () => {
    const [a] = views(1) as [LockTable];
    const hold = await granted(a.acquire(SLOT, 50, WAIT));
    const started = Date.now();
    const next = await granted(a.acquire(SLOT, TTL, 2_000));
    expect(Date.now() - started).toBeGreaterThanOrEqual(49);
    expect(next.fence).toBeGreaterThan(hold.fence);
    expect(a.release(SLOT, hold.ticket)).toBe(false);
    expect(a.release(SLOT, next.ticket)).toBe(true);
  });

  it('close rejects the waiting callers and hands the view\'s place on; abort rejects one caller', async () => {
    const [a, b, c] = views(3) as [LockTable, LockTable, LockTable];
    const hold = await granted(a.acquire(SLOT, TTL, WAIT));
    const closing = b.acquire(SLOT, TTL, WAIT);
    const controller = new AbortController();
    const aborted = c.acquire(SLOT, TTL, WAIT, controller.signal);
    const after = c.acquire(SLOT, TTL, WAIT);
    const reason = new Error('closed');
    b.close(reason);
    await expect(closing).rejects.toBe(reason);
    await expect(b.acquire(SLOT, TTL, WAIT)).rejects.toBe(reason);
    controller.abort(new Error('aborted'));
    await expect(aborted).rejects.toThrow('aborted');
    const released = performance.now();
    a.release(SLOT, hold.ticket);
    const got = await granted(after);
    expect(performance.now() - released).toBeLessThan(CLAIM_WINDOW_MS);
    expect(c.release(SLOT, got.ticket)).toBe(true);
  });

  it('fencing tokens strictly increase over many holds of several views', async () => {
    const tables = views(3);
    const fences: number[] = [];
    await Promise.all(tables.map(async (table) => {
      for (let i = 0; i < 100; i++) {
        const got = await granted(table.acquire(SLOT, TTL, WAIT));
        fences.push(got.fence);
        table.release(SLOT, got.ticket);
      }
    }));
    expect(fences).toHaveLength(300);
    for (let i = 1; i < fences.length; i++) expect(fences[i]!).toBeGreaterThan(fences[i - 1]!);
  });
});
