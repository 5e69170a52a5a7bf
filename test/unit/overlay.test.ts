// Read-your-writes, deterministically: ShardCache instances attach to shards
// whose "owner" is this test. It answers their registration on the cache's
// BroadcastChannel and applies their queued writes only when told to, so a
// write's state (queued or applied) is never a race. No threads.
import { randomUUID } from 'node:crypto';
import { BroadcastChannel } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ShardCacheError } from '../../dist/src/errors.js';
import { hashKey, shardOf } from '../../dist/src/hash.js';
import { createControl } from '../../dist/src/memory/control.js';
import { createShardBuffer } from '../../dist/src/memory/layout.js';
import { createLockTable } from '../../dist/src/memory/lock-table.js';
import { createStructureRegistry } from '../../dist/src/memory/structures.js';
import { ShardWriter } from '../../dist/src/memory/shard-writer.js';
import { RingConsumer } from '../../dist/src/memory/write-queue.js';
import type { CacheHandle, ChannelMessage } from '../../dist/src/messages.js';
import { resolveOptions } from '../../dist/src/options.js';
import { ShardCache } from '../../dist/src/shard-cache.js';

const MiB = 1024 * 1024;

class ManualOwner {
  readonly handle: CacheHandle;
  private readonly channel: BroadcastChannel;
  private readonly writers: ShardWriter[];
  /** producer id -> one consumer per shard, in registration order (the order the owner drains). */
  private readonly consumers = new Map<number, RingConsumer[]>();

  constructor(options: Parameters<typeof resolveOptions>[0]) {
    const resolved = resolveOptions(options);
    this.handle = {
      kind: 'shardcache',
      version: 1,
      channel: `test:${randomUUID()}`,
      shards: Array.from({ length: resolved.shards }, () => createShardBuffer(resolved.shardBytes)),
      control: createControl(),
      locks: createLockTable(),
      structures: createStructureRegistry(),
      options: resolved,
    };
    this.writers = this.handle.shards.map((sab) => new ShardWriter(sab));
    this.channel = new BroadcastChannel(this.handle.channel);
    this.channel.onmessage = (event: unknown) => {
      const message = (event as { data: ChannelMessage }).data;
      if (message.type !== 'register') return;
      if (!this.consumers.has(message.producer)) {
        this.consumers.set(message.producer, message.rings.map((ring) => new RingConsumer(ring)));
      }
      for (let shard = 0; shard < this.writers.length; shard++) {
        this.channel.postMessage({ type: 'registered', producer: message.producer, shard } satisfies ChannelMessage);
      }
    };
  }

  /** Applies everything queued by every producer, as the owners would. Returns how many records. */
  applyAll(): number {
    let applied = 0;
    for (const rings of this.consumers.values()) {
      rings.forEach((consumer, shard) => {
        for (let offset = consumer.next(); offset >= 0; offset = consumer.next()) {
          if (!this.writers[shard]!.apply(consumer, offset)) throw new Error('apply refused');
          consumer.done(offset);
          applied++;
        }
        consumer.wakeWaiters();
      });
    }
    return applied;
  }

  queued(): boolean {
    for (const rings of this.consumers.values()) if (rings.some((c) => c.hasWork())) return true;
    return false;
  }

  close(): void {
    this.channel.close();
  }
}

function expectCode(fn: () => unknown, code: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ShardCacheError);
  expect((caught as ShardCacheError).code).toBe(code);
}

/** Resolves 'resolved' if `promise` settles within `ms`, else 'pending'. For checking that something does NOT happen. */
async function stillPendingAfter(promise: Promise<unknown>, ms: number): Promise<'resolved' | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    promise.then(() => 'resolved' as const),
    new Promise<'pending'>((resolve) => { timer = setTimeout(() => resolve('pending'), ms); }),
  ]);
  clearTimeout(timer);
  return result;
}

describe('read-your-writes overlay (manual owner)', () => {
  let owner: ManualOwner;
  let writer: ShardCache;
  let reader: ShardCache;

  beforeEach(async () => {
    owner = new ManualOwner({ shards: 2, maxBytes: 2 * MiB, backpressureTimeoutMs: 20 });
    writer = await ShardCache.attach(owner.handle);
    reader = await ShardCache.attach(owner.handle);
  });

  afterEach(async () => {
    owner.applyAll(); // close() waits until this thread's writes are applied
    await writer.close();
    await reader.close();
    owner.close();
  });

  it('a queued write is visible to its own thread only, until the owner applies it', () => {
    writer.set('k', { v: 1 });
    expect(owner.queued()).toBe(true);
    expect(writer.get('k')).toEqual({ v: 1 });
    expect(writer.has('k')).toBe(true);
    expect(reader.get('k')).toBeUndefined();
    expect(reader.has('k')).toBe(false);
    expect(writer.size).toBe(0); // size counts applied entries

    expect(owner.applyAll()).toBe(1);
    expect(reader.get('k')).toEqual({ v: 1 });
    expect(writer.get('k')).toEqual({ v: 1 });
    expect(writer.size).toBe(1);
  });

  it('thousands of unapplied writes, some applied midway, each read back as the last one written', () => {
    // Far more keys than the overlay's first table holds: it compacts and grows while writes are queued.
    const expected = new Map<string, number | undefined>();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 1500; i++) {
        const key = `k${(i * 7 + round * 500) % 2500}`;
        if (i % 11 === round) {
          writer.delete(key);
          expected.set(key, undefined);
        } else {
          writer.set(key, { n: i, round });
          expected.set(key, i * 10 + round);
        }
      }
      for (const [key, n] of expected) {
        const value = writer.get(key) as { n: number; round: number } | undefined;
        expect(value === undefined ? undefined : value.n * 10 + value.round, key).toBe(n);
        expect(writer.has(key)).toBe(n !== undefined);
      }
      // The reader sees only what the owner applied.
      if (round === 1) {
        owner.applyAll();
        for (const [key, n] of expected) expect(reader.has(key)).toBe(n !== undefined);
      }
    }
    // Once everything is applied, the grown table is emptied and shrinks over the next clears: writes still show.
    owner.applyAll();
    for (let i = 0; i < 12; i++) {
      writer.set('after', { i });
      expect(writer.get('after')).toEqual({ i });
      owner.applyAll();
      expect(writer.get('after')).toEqual({ i });
      expect(reader.get('after')).toEqual({ i });
    }
    for (const [key, n] of expected) expect(writer.has(key)).toBe(n !== undefined);
  });

  it('a key in its near cache, written again by the thread, reads back the new write at once', () => {
    writer.set('k', { v: 1 });
    owner.applyAll();
    // Two reads from the shard: the second keeps the value in the writer's near cache.
    expect(writer.get('k')).toEqual({ v: 1 });
    expect(writer.get('k')).toEqual({ v: 1 });
    const near = (writer as unknown as { near: { size: number } }).near;
    expect(near.size).toBe(1);
    writer.set('k', { v: 2 });
    expect(owner.queued()).toBe(true);
    expect(writer.get('k')).toEqual({ v: 2 });
    expect(writer.delete('k')).toBe(true);
    expect(writer.get('k')).toBeUndefined();
    expect(reader.get('k')).toEqual({ v: 1 });
    owner.applyAll();
    expect(writer.get('k')).toBeUndefined();
    expect(reader.get('k')).toBeUndefined();
  });

  it('a near-cached key written again stays hidden from the near cache while the overlay compacts', () => {
    writer.set('k', { v: 1 });
    owner.applyAll();
    writer.get('k');
    writer.get('k'); // in the near cache now
    writer.set('k', { v: 2 });
    // More unapplied writes than half the overlay's first table: it compacts, keeping them all.
    for (let i = 0; i < 300; i++) writer.set(`filler${i}`, i);
    expect(writer.get('k')).toEqual({ v: 2 });
    owner.applyAll();
    expect(writer.get('k')).toEqual({ v: 2 });
  });

  it('the last queued write wins, whatever mix of sets and deletes came before', () => {
    writer.set('k', 1);
    writer.set('k', 2);
    expect(writer.delete('k')).toBe(true);
    expect(writer.get('k')).toBeUndefined();
    expect(writer.delete('k')).toBe(false);
    writer.set('k', 3);
    expect(writer.get('k')).toBe(3);
    owner.applyAll();
    expect(reader.get('k')).toBe(3);
  });

  it('a queued delete hides the applied value from its thread only', () => {
    writer.set('k', 'stored');
    owner.applyAll();
    expect(writer.delete('k')).toBe(true);
    expect(writer.get('k')).toBeUndefined();
    expect(writer.has('k')).toBe(false);
    expect(reader.get('k')).toBe('stored');
    owner.applyAll();
    expect(reader.get('k')).toBeUndefined();
  });

  it('once its write is applied, a thread sees later writes of other threads', () => {
    writer.set('k', 'mine');
    owner.applyAll();
    reader.set('k', 'theirs');
    expect(writer.get('k')).toBe('mine'); // not applied yet
    owner.applyAll();
    expect(writer.get('k')).toBe('theirs');
    expect(writer.has('k')).toBe(true);
  });

  it('writes of two threads to one key apply in the order the owner drains them', () => {
    writer.set('k', 'first'); // registered first: drained first
    reader.set('k', 'second');
    expect(writer.get('k')).toBe('first');
    expect(reader.get('k')).toBe('second');
    owner.applyAll();
    expect(writer.get('k')).toBe('second');
    expect(reader.get('k')).toBe('second');
  });

  it('settled() resolves only after the owner applied the writes made before it', async () => {
    writer.set('a', 1);
    writer.set('b', 2);
    const settled = writer.settled();
    expect(await stillPendingAfter(settled, 60)).toBe('pending');
    owner.applyAll();
    await settled;
    expect(reader.getMany(['a', 'b'])).toEqual([1, 2]);
  });

  it('a queued write with a TTL expires even though the owner never applied it', async () => {
    writer.set('ttl', 'short', { ttlMs: 30 });
    expect(writer.get('ttl')).toBe('short');
    const deadline = Date.now() + 2_000;
    while (writer.has('ttl')) {
      if (Date.now() > deadline) throw new Error('the queued TTL write never expired');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(writer.get('ttl')).toBeUndefined();
  });

  it('a rejected write leaves the queued one, and queues nothing', () => {
    writer.set('k', 'good');
    owner.applyAll();
    writer.set('k', 'pending');
    expectCode(() => writer.set('k', () => 1), 'ERR_UNSERIALIZABLE');
    expectCode(() => writer.set('k', 1, { ttlMs: -1 }), 'ERR_INVALID_OPTION');
    expectCode(() => writer.setMany([['k', 'batch'], ['other', Symbol('x')]]), 'ERR_UNSERIALIZABLE');
    expect(writer.get('k')).toBe('pending');
    expect(writer.get('other')).toBeUndefined();
    expect(owner.applyAll()).toBe(1); // only the 'pending' write was queued
    expect(reader.get('k')).toBe('pending');
    expect(reader.has('other')).toBe(false);
  });

  it('a write refused for backpressure (queue full, owner not draining) changes nothing', () => {
    writer.set('bp', 'old');
    const bpShard = shardOf(hashKey('bp'), 2);
    // Keys of bp's shard, two code units long like 'bp'.
    const keys: string[] = [];
    for (let c = 0x100; keys.length < 20_000; c++) {
      const key = String.fromCharCode(c >> 8, c & 0xff);
      if (shardOf(hashKey(key), 2) === bpShard) keys.push(key);
    }
    const accepted = new Map<string, string>();
    const refused: string[] = [];
    let next = 0;
    // Fill bp's queue with ever smaller records, down to records the size of
    // set('bp', 'new'), each phase until 3 refusals in a row.
    for (const value of ['f'.repeat(10_000), 'f'.repeat(500), 'abc']) {
      for (let inARow = 0; inARow < 3;) {
        const key = keys[next++]!;
        try {
          writer.set(key, value);
          accepted.set(key, value);
          inARow = 0;
        } catch (error) {
          expect(error).toBeInstanceOf(ShardCacheError);
          expect((error as ShardCacheError).code).toBe('ERR_BACKPRESSURE');
          expect((error as ShardCacheError).message).toContain('backpressureTimeoutMs');
          refused.push(key);
          inARow++;
        }
      }
    }
    expectCode(() => writer.set('bp', 'new'), 'ERR_BACKPRESSURE');
    expect(writer.get('bp')).toBe('old');
    for (const key of refused) expect(writer.has(key)).toBe(false);
    owner.applyAll();
    expect(reader.get('bp')).toBe('old');
    for (const [key, value] of accepted) expect(reader.get(key)).toBe(value);
    for (const key of refused) expect(reader.has(key)).toBe(false);
  });

  it('counts reads of queued writes as hits and misses', () => {
    for (let i = 0; i < 10; i++) writer.set(`h${i}`, i);
    writer.delete('h9');
    for (let i = 0; i < 10; i++) writer.get(`h${i}`);
    const stats = writer.stats();
    expect(stats.hits).toBe(9);
    expect(stats.misses).toBe(1);
  });
});
