/**
 * ARC, simulated, as the bar for the shard's hit ratio (bench/eviction.ts):
 * Megiddo & Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache",
 * USENIX FAST '03, Figure 4.
 *
 * Four LRU lists over `c` pages: T1 (seen once recently) and T2 (seen at least
 * twice) hold the cached pages; B1 and B2 remember pages recently evicted
 * from each (ghosts, no data). A ghost hit in B1 says T1 was too small, in B2
 * that T2 was, and moves the target size `p` of T1 accordingly.
 *
 * Each list is a Map in recency order (the first key is the least recent):
 * deleting and re-inserting a key makes it the most recent.
 */
export class ArcSimulator {
  private readonly c: number;
  private p = 0;
  private readonly t1 = new Map<number, true>();
  private readonly t2 = new Map<number, true>();
  private readonly b1 = new Map<number, true>();
  private readonly b2 = new Map<number, true>();

  constructor(capacity: number) {
    this.c = capacity;
  }

  /** Requests page `x`; returns whether it was a hit. */
  request(x: number): boolean {
    const { t1, t2, b1, b2, c } = this;
    // Case I: a hit in T1 or T2 makes x frequent.
    if (t1.delete(x) || t2.delete(x)) {
      t2.set(x, true);
      return true;
    }
    // Case II: a ghost of T1: T1 should have been larger.
    if (b1.has(x)) {
      this.p = Math.min(c, this.p + Math.max(b2.size / b1.size, 1));
      this.replace(false);
      b1.delete(x);
      t2.set(x, true);
      return false;
    }
    // Case III: a ghost of T2: T2 should have been larger.
    if (b2.has(x)) {
      this.p = Math.max(0, this.p - Math.max(b1.size / b2.size, 1));
      this.replace(true);
      b2.delete(x);
      t2.set(x, true);
      return false;
    }
    // Case IV: a page seen nowhere.
    const l1 = t1.size + b1.size;
    if (l1 === c) {
      if (t1.size < c) {
        dropOldest(b1);
        this.replace(false);
      } else {
        dropOldest(t1);
      }
    } else {
      const total = l1 + t2.size + b2.size;
      if (total >= c) {
        if (total === 2 * c) dropOldest(b2);
        this.replace(false);
      }
    }
    t1.set(x, true);
    return false;
  }

  /** REPLACE(x, p): evicts T1's or T2's least recent page into its ghost list. */
  private replace(inB2: boolean): void {
    const { t1, t2 } = this;
    // T2 empty with T1 at its target (p = c) is the one case the figure leaves
    // open: T1 is then the only list with a page to give.
    if (t1.size > 0 && (t1.size > this.p || (inB2 && t1.size === this.p) || t2.size === 0)) {
      this.b1.set(dropOldest(t1), true);
    } else if (t2.size > 0) {
      this.b2.set(dropOldest(t2), true);
    }
  }
}

function dropOldest(list: Map<number, true>): number {
  const oldest = list.keys().next().value as number;
  list.delete(oldest);
  return oldest;
}
