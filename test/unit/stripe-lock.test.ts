// Striped seqlocks (src/memory/stripe-lock.ts) and the reader's use of them.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { hashKey } from '../../dist/src/hash.js';
import { HEADER_BYTES, STRIPE_MASK, createShardBuffer } from '../../dist/src/memory/layout.js';
import { NOT_FOUND, Scratch, ShardView } from '../../dist/src/memory/shard-view.js';
import { STRIPE_STUCK, readBegin, readValid, writeBegin, writeEnd } from '../../dist/src/memory/stripe-lock.js';
import { repairShard } from '../../dist/src/memory/shard-writer.js';
import { Harness } from '../support/shard-harness.js';

const STRIPE_BASE = HEADER_BYTES >> 2;

describe('stripe seqlock', () => {
  it('a read is valid until a write begins, and stays invalid after it ends', () => {
    const i32 = new Int32Array(new SharedArrayBuffer(64));
    const v = readBegin(i32, 3);
    expect(v % 2).toBe(0);
    expect(readValid(i32, 3, v)).toBe(true);
    writeBegin(i32, 3);
    expect(readValid(i32, 3, v)).toBe(false);
    writeEnd(i32, 3);
    expect(readValid(i32, 3, v)).toBe(false);
    const again = readBegin(i32, 3);
    expect(again).toBe(v + 2);
    expect(readValid(i32, 3, again)).toBe(true);
    expect(readValid(i32, 4, readBegin(i32, 4))).toBe(true); // stripes are independent
  });

  it('a reader of a stripe left odd by a dead owner gives up waiting after a bounded time', () => {
    const i32 = new Int32Array(new SharedArrayBuffer(16));
    writeBegin(i32, 1); // the owner died here
    const start = performance.now();
    const v = readBegin(i32, 1);
    const waited = performance.now() - start;
    expect(v).toBe(STRIPE_STUCK); // it cannot tell dead from slow, so it does not read
    expect(waited).toBeGreaterThanOrEqual(15);
    expect(waited).toBeLessThan(1_000);
  });

  it('a key whose stripe a dead owner left odd reads as a miss without hanging, and is back once repaired', () => {
    const sab = createShardBuffer(256 * 1024);
    const h = new Harness(sab);
    h.set('k', { v: 1 });
    h.set('other', 2);
    Atomics.add(h.view.i32, STRIPE_BASE + (hashKey('k') & STRIPE_MASK), 1);
    const start = performance.now();
    expect(h.get('k')).toBeUndefined();
    expect(h.has('k')).toBe(false);
    expect(performance.now() - start).toBeLessThan(1_000);
    expect(h.get('other')).toBe(2);
    repairShard(sab); // what the replacement owner does first
    expect(h.get('k')).toEqual({ v: 1 });
    expect(h.has('k')).toBe(true);
  });

  // An owner alive but slow (descheduled, paused by GC) mid-change keeps
  // changing bytes under one odd version: readers must never return them.
  it('a reader never returns bytes an alive owner changes while the stripe is odd, however long it takes', async () => {
    const sab = createShardBuffer(256 * 1024);
    const h = new Harness(sab);
    h.set('k', Buffer.alloc(1000, 0x41));
    const view = new ShardView(sab);
    const scratch = new Scratch();
    expect(view.read('k', hashKey('k'), Date.now(), scratch)).toBeGreaterThan(1000);
    const valueEnd = view.foundLength;
    const valueStart = view.probedValueStart + (valueEnd - 1000); // value bytes of the Buffer
    const owner = new Worker(
      `
      const { parentPort, workerData: { sab, stripe, start } } = require('node:worker_threads');
      const i32 = new Int32Array(sab);
      const u8 = new Uint8Array(sab);
      Atomics.add(i32, stripe, 1); // begin a change ...
      parentPort.postMessage('odd');
      const end = Date.now() + 300; // ... and be slow about it, while alive
      for (let flip = 0; Date.now() < end; flip ^= 1) u8.fill(flip ? 0x42 : 0x41, start, start + 1000);
      u8.fill(0x42, start, start + 1000);
      Atomics.add(i32, stripe, 1);
      parentPort.postMessage('even');
      `,
      { eval: true, workerData: { sab, stripe: STRIPE_BASE + (hashKey('k') & STRIPE_MASK), start: valueStart } },
    );
    try {
      await new Promise((resolve) => owner.once('message', resolve));
      let torn = 0;
      let reads = 0;
      const end = Date.now() + 250;
      while (Date.now() < end) {
        const n = view.read('k', hashKey('k'), Date.now(), scratch);
        if (n === NOT_FOUND) continue;
        reads++;
        const bytes = scratch.buffer.subarray(n - 1000, n);
        if (bytes.some((b) => b !== bytes[0])) torn++;
      }
      expect(torn).toBe(0);
      // Once the slow owner finishes, the new value reads whole.
      await new Promise((resolve) => owner.once('message', resolve));
      const n = view.read('k', hashKey('k'), Date.now(), scratch);
      expect(n).toBeGreaterThan(1000);
      expect(scratch.buffer.subarray(n - 1000, n).every((b) => b === 0x42)).toBe(true);
    } finally {
      await owner.terminate();
    }
  });
});
