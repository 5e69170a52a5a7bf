// Options (src/options.ts): defaults, and validation whose messages name the
// option. Limits that would need 256 real owner threads are checked here,
// without starting any.
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { ShardCacheError } from '../../dist/src/errors.js';
import { MAX_KEY_LENGTH, MIN_SHARD_BYTES, largestValueFor, shardGeometry } from '../../dist/src/memory/layout.js';
import { recordBytes } from '../../dist/src/memory/write-queue.js';
import { DEFAULTS, resolveOptions } from '../../dist/src/options.js';

const MiB = 1024 * 1024;

function invalid(options: unknown, name: string): void {
  let caught: unknown;
  try {
    resolveOptions(options as never);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ShardCacheError);
  expect((caught as ShardCacheError).code).toBe('ERR_INVALID_OPTION');
  expect((caught as ShardCacheError).message).toContain(`options.${name}`);
}

describe('resolveOptions', () => {
  it('fills the documented defaults', () => {
    const r = resolveOptions();
    expect(r.shards).toBe(os.availableParallelism());
    expect(r.maxBytes).toBe(64 * MiB);
    expect(r.ttlMs).toBe(0);
    expect(r.nearCache).toBe(65_536); // one per KiB of maxBytes, at most 65 536
    expect(resolveOptions({ maxBytes: 512 * 1024, shards: 1 }).nearCache).toBe(1024);
    expect(resolveOptions({ maxBytes: 32 * MiB }).nearCache).toBe(32_768);
    expect(r.maxValueBytes).toBe(Math.min(DEFAULTS.maxValueBytes, largestValueFor(shardGeometry(r.shardBytes))));
    expect(r.shardBytes * r.shards).toBeLessThanOrEqual(r.maxBytes);
    expect(resolveOptions({})).toEqual(r);
  });

  it('accepts the limits of shards: 1 and 256', () => {
    expect(resolveOptions({ shards: 1, maxBytes: MIN_SHARD_BYTES }).shards).toBe(1);
    expect(resolveOptions({ shards: 256, maxBytes: 256 * MIN_SHARD_BYTES }).shards).toBe(256);
  });

  it('sizes each write queue to hold at least two of the largest records', () => {
    for (const maxValueBytes of [1, 1000, 100_000, MiB]) {
      const r = resolveOptions({ shards: 1, maxBytes: 64 * MiB, maxValueBytes });
      expect(r.ringBytes).toBeGreaterThanOrEqual(2 * recordBytes(MAX_KEY_LENGTH, maxValueBytes));
      expect(r.ringBytes & (r.ringBytes - 1)).toBe(0);
    }
  });

  it('never lets one value take more than a quarter of a shard arena', () => {
    const r = resolveOptions({ shards: 2, maxBytes: 2 * MIN_SHARD_BYTES });
    const g = shardGeometry(r.shardBytes);
    expect(r.maxValueBytes + 32 + MAX_KEY_LENGTH * 2).toBeLessThanOrEqual(g.arenaBytes / 4);
    invalid({ shards: 2, maxBytes: 2 * MIN_SHARD_BYTES, maxValueBytes: r.maxValueBytes + 1 }, 'maxValueBytes');
  });

  it.each<[string, unknown]>([
    ['shards', 0], ['shards', 257], ['shards', 1.5], ['shards', -1], ['shards', Number.NaN], ['shards', '2'],
    ['maxBytes', 0], ['maxBytes', -1], ['maxBytes', 1.5], ['maxBytes', '64mb'], ['maxBytes', Number.POSITIVE_INFINITY],
    ['ttlMs', -1], ['ttlMs', Number.NaN], ['ttlMs', Number.NEGATIVE_INFINITY], ['ttlMs', '10'],
    ['maxValueBytes', 0], ['maxValueBytes', 1.5], ['maxValueBytes', 1e12],
    ['nearCache', -1], ['nearCache', 0.5], ['nearCache', 1e9],
    ['backpressureTimeoutMs', -1], ['backpressureTimeoutMs', Number.NaN],
    ['maxEntries', 0], ['maxEntries', -5], ['maxEntries', 1.5], ['maxEntries', '1000'], ['maxEntries', Number.NaN],
    ['maxEntries', Number.POSITIVE_INFINITY], ['maxEntries', 2 ** 53],
  ])('refuses options.%s = %s, naming it', (name, value) => {
    invalid({ shards: 2, maxBytes: 8 * MiB, [name]: value }, name);
  });

  it('splits maxEntries over the shards, rounding up, and clamps a share the budget cannot index', () => {
    expect(resolveOptions({ shards: 2, maxBytes: 8 * MiB })).toMatchObject({ maxEntries: 0, shardMaxEntries: 0 });
    expect(resolveOptions({ shards: 3, maxBytes: 8 * MiB, maxEntries: 1000 })).toMatchObject({ maxEntries: 1000, shardMaxEntries: 334 });
    // More entries than 4 MiB per shard could index: the index and sketch may take half the shard.
    const r = resolveOptions({ shards: 2, maxBytes: 8 * MiB, maxEntries: 10_000_000 });
    expect(r.shardMaxEntries).toBeGreaterThan(50_000);
    expect(r.shardMaxEntries).toBeLessThan(5_000_000);
    const g = shardGeometry(r.shardBytes, r.shardMaxEntries);
    expect(g.maxEntries).toBe(r.shardMaxEntries);
    expect(g.indexOffset + g.slots * 16 - g.sketchOffset).toBeLessThanOrEqual(r.shardBytes / 2);
    // A bound the default index holds leaves the index as it was; a larger one grows it.
    expect(shardGeometry(4 * MiB, 1000).slots).toBe(shardGeometry(4 * MiB).slots);
    expect(shardGeometry(4 * MiB, 50_000).slots * 0.85).toBeGreaterThanOrEqual(50_000);
    expect(shardGeometry(4 * MiB, 50_000).maxEntries).toBe(50_000);
  });

  it('takes any TTL up to Infinity: Infinity means no expiry, as 0 does', () => {
    expect(resolveOptions({ ttlMs: Number.POSITIVE_INFINITY }).ttlMs).toBe(0);
    expect(resolveOptions({ ttlMs: 365 * 24 * 3600 * 1000 }).ttlMs).toBe(365 * 24 * 3600 * 1000);
  });

  it('refuses a budget too small for its shards, or over 2 GiB per shard, naming maxBytes', () => {
    invalid({ shards: 4, maxBytes: 4 * MIN_SHARD_BYTES - 1 }, 'maxBytes');
    invalid({ shards: 1, maxBytes: 2 ** 31 + MiB }, 'maxBytes');
  });
});
