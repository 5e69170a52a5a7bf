// W-TinyLFU in the shard (src/memory/eviction-policy.ts), driven through a
// ShardWriter by the harness: the entry bound, admission by frequency, scan
// resistance, dirty entries, the byte bound, takeover by a new owner, and the
// lists staying consistent with the index through backward-shift deletes.
import { describe, expect, it } from 'vitest';
import { hashKey } from '../../dist/src/hash.js';
import { ChangeLog } from '../../dist/src/memory/change-log.js';
import { createControl } from '../../dist/src/memory/control.js';
import { F_REJECTIONS, createShardBuffer, entryBytes, shardGeometry } from '../../dist/src/memory/layout.js';
import { NOT_FOUND } from '../../dist/src/memory/shard-view.js';
import { OP_SET, createRing } from '../../dist/src/memory/write-queue.js';
import { encode } from '../../dist/src/codec.js';
import { Harness, checkShard } from '../support/shard-harness.js';
import { prng } from '../support/prng.js';

const MiB = 1024 * 1024;

/** A harness over a shard bounded at `maxEntries`, with bytes to spare. */
function bounded(maxEntries: number, bytes = 4 * MiB): Harness {
  return new Harness(createShardBuffer(bytes, maxEntries));
}

/** A `get` as ShardCache does it: counted into the sketch, hit or miss; a hit marks its slot. */
function read(h: Harness, key: string): boolean {
  const hash = hashKey(key);
  const found = h.view.read(key, hash, h.clock, h.scratch) !== NOT_FOUND;
  h.view.sketch!.increment(hash);
  if (found) h.view.touch(h.view.foundSlot);
  return found;
}

/** get, and set on a miss: how a cache in front of a store is used. */
function request(h: Harness, key: string): boolean {
  if (read(h, key)) return true;
  h.set(key, 1);
  return false;
}

function consistent(h: Harness): void {
  expect(checkShard(h.sab).problems).toEqual([]);
  expect(h.writer.policy!.checkForTesting(h.view.slots)).toEqual([]);
}

describe('eviction policy (maxEntries)', () => {
  it('keeps the shard at its entry bound, whatever the index could hold', () => {
    const h = bounded(500);
    for (let i = 0; i < 5000; i++) request(h, `k${i}`);
    expect(h.entries).toBe(500);
    expect(h.counters().evictions).toBe(4500);
    consistent(h);
  });

  it('refuses a newcomer less popular than the entry it would displace, and counts the refusal', () => {
    const h = bounded(100);
    for (let round = 0; round < 5; round++) for (let i = 0; i < 100; i++) request(h, `hot${i}`);
    for (let i = 0; i < 100; i++) request(h, `cold${i}`); // each read once
    let hot = 0;
    for (let i = 0; i < 100; i++) if (h.has(`hot${i}`)) hot++;
    expect(hot).toBeGreaterThanOrEqual(95); // the window holds one newcomer at a time
    expect(h.view.f64[F_REJECTIONS]).toBeGreaterThan(90);
    consistent(h);
  });

  it('admits a newcomer once it is read more often than what it displaces', () => {
    const h = bounded(100);
    for (let i = 0; i < 100; i++) request(h, `old${i}`);
    for (let round = 0; round < 4; round++) for (let i = 0; i < 50; i++) request(h, `new${i}`);
    let admitted = 0;
    for (let i = 0; i < 50; i++) if (h.has(`new${i}`)) admitted++;
    expect(admitted).toBeGreaterThanOrEqual(45);
    consistent(h);
  });

  it('resists a scan: one pass over ten times the bound leaves the hot set in place', () => {
    const capacity = 1000;
    const h = bounded(capacity);
    const random = prng(7);
    // A working set of half the bound, read in a skewed order, then one pass over 10 000 keys read once each.
    for (let n = 0; n < 20_000; n++) request(h, `hot${Math.floor(random() ** 2 * 500)}`);
    for (let i = 0; i < 10 * capacity; i++) request(h, `scan${i}`);
    let kept = 0;
    for (let i = 0; i < 500; i++) if (h.has(`hot${i}`)) kept++;
    expect(kept).toBeGreaterThanOrEqual(0.9 * 500);
    consistent(h);
  });

  it('without maxEntries the same scan flushes the hot set (CLOCK, as before)', () => {
    // The same 1000 entries' worth of arena, bounded by bytes alone.
    const size = entryBytes(8, encode(1).length);
    let bytes = 256 * 1024;
    while (shardGeometry(bytes).arenaBytes < 1000 * size) bytes += 4096;
    const h = new Harness(createShardBuffer(bytes));
    expect(h.view.sketch).toBeUndefined();
    const random = prng(7);
    for (let n = 0; n < 20_000; n++) {
      const key = `hot${Math.floor(random() ** 2 * 500)}`;
      if (h.has(key)) h.touch(key);
      else h.set(key, 1);
    }
    for (let i = 0; i < 10_000; i++) if (!h.has(`scan${i}`)) h.set(`scan${i}`, 1);
    let kept = 0;
    for (let i = 0; i < 500; i++) if (h.has(`hot${i}`)) kept++;
    expect(kept).toBeLessThan(0.1 * 500);
  });

  it('never evicts an entry that waits for Redis, and refuses the write once only such entries are left', () => {
    const h = bounded(100);
    for (let i = 0; i < 50; i++) request(h, `clean${i}`);
    h.writer.changeLog = new ChangeLog(createRing(1 << 20), createControl(), 1_000_000);
    for (let i = 0; i < 100; i++) {
      if (!read(h, `dirty${i}`)) h.set(`dirty${i}`, i);
    }
    // 100 dirty entries fill the bound: every clean one was evicted for them, no dirty one.
    for (let i = 0; i < 100; i++) expect(h.get(`dirty${i}`)).toBe(i);
    expect(h.entries).toBe(100);
    // The next write cannot be made room for: the writer refuses it (the owner
    // stalls and retries once Redis acknowledged some).
    h.enqueue(OP_SET, 'one-more', hashKey('one-more'), encode(0), 0);
    const offset = h.consumer.next();
    expect(h.writer.apply(h.consumer, offset)).toBe(false);
    for (let i = 0; i < 100; i++) expect(h.get(`dirty${i}`)).toBe(i);
    consistent(h);
  });

  it('lets the byte bound evict first when the arena fills before the entry bound', () => {
    // An entry bound of 10 000 but room for ~1000 of these entries.
    const h = bounded(10_000, 512 * 1024);
    const value = 'v'.repeat(300);
    for (let i = 0; i < 5000; i++) {
      const key = `k${i}`;
      if (!read(h, key)) h.set(key, value);
    }
    expect(h.entries).toBeLessThan(10_000);
    expect(h.arenaUsed).toBeLessThanOrEqual(h.arenaBytes);
    expect(h.counters().evictions).toBeGreaterThan(3000);
    consistent(h);
  });

  it('keeps the lists consistent with the index through deletes, updates, expiry, clear and takeover', () => {
    const h = bounded(300);
    const random = prng(11);
    for (let n = 0; n < 20_000; n++) {
      const key = `k${Math.floor(random() * 1000)}`;
      const r = random();
      if (r < 0.6) request(h, key);
      else if (r < 0.8) h.set(key, n, { ttlMs: random() < 0.5 ? 1 : 0 });
      else h.delete(key);
      if (n % 1000 === 0) h.clock += 2;
      if (n % 5000 === 4999) {
        h.writer.sweepExpired(10_000);
        consistent(h);
      }
    }
    expect(h.entries).toBeLessThanOrEqual(300);
    consistent(h);
    // A new owner takes the shard over: its policy starts from the entries there.
    h.recover();
    consistent(h);
    for (let i = 0; i < 2000; i++) request(h, `after${i}`);
    expect(h.entries).toBe(300);
    consistent(h);
    h.clear();
    expect(h.entries).toBe(0);
    consistent(h);
    for (let i = 0; i < 500; i++) request(h, `again${i}`);
    expect(h.entries).toBe(300);
    consistent(h);
  });
});
