// The frequency sketch in a shard's memory (src/memory/frequency-sketch.ts):
// readers bump it, the owner reads estimates and ages it.
import { describe, expect, it } from 'vitest';
import { hashKey } from '../../dist/src/hash.js';
import { H_ACCESSES, H_SKETCH_OFFSET, createShardBuffer, shardGeometry } from '../../dist/src/memory/layout.js';
import { ShardView } from '../../dist/src/memory/shard-view.js';

const MiB = 1024 * 1024;

function sketchOf(sab: SharedArrayBuffer) {
  const sketch = new ShardView(sab).sketch;
  if (sketch === undefined) throw new Error('the shard has no sketch');
  return sketch;
}

describe('frequency sketch', () => {
  it('exists only in a shard with an entry bound, between the stripes and the index', () => {
    expect(new ShardView(createShardBuffer(MiB)).sketch).toBeUndefined();
    const g = shardGeometry(MiB, 1000);
    expect(g.sketchOffset).toBeGreaterThan(0);
    expect(g.sketchOffset % 64).toBe(0); // blocks are cache lines
    expect(g.indexOffset).toBe(g.sketchOffset + g.sketchBytes);
    expect(g.sketchBytes).toBe(8192); // 8 bytes per entry, rounded up to a power of two
    expect(new Int32Array(createShardBuffer(MiB, 1000))[H_SKETCH_OFFSET]).toBe(g.sketchOffset);
  });

  it('never underestimates a key it counted, and saturates at 15', () => {
    const sketch = sketchOf(createShardBuffer(4 * MiB, 10_000));
    const keys = Array.from({ length: 10_000 }, (_, i) => hashKey(`k${i}`));
    keys.forEach((hash, i) => {
      for (let n = 0; n < i % 20; n++) sketch.increment(hash);
    });
    let excess = 0;
    keys.forEach((hash, i) => {
      const f = sketch.frequency(hash);
      expect(f).toBeGreaterThanOrEqual(Math.min(15, i % 20));
      expect(f).toBeLessThanOrEqual(15);
      excess += f - Math.min(15, i % 20);
    });
    // Collisions inflate a few estimates a little at 10 000 keys in a sketch sized for them.
    expect(excess / keys.length).toBeLessThan(0.5);
  });

  it('halves every counter when it ages', () => {
    const sketch = sketchOf(createShardBuffer(MiB, 1000));
    const a = hashKey('a'), b = hashKey('b');
    for (let n = 0; n < 15; n++) sketch.increment(a);
    for (let n = 0; n < 5; n++) sketch.increment(b);
    sketch.halve();
    expect(sketch.frequency(a)).toBe(7);
    expect(sketch.frequency(b)).toBe(2);
    sketch.halve();
    sketch.halve();
    sketch.halve();
    expect(sketch.frequency(a)).toBe(0);
  });

  it('counts reads into the shard header in batches, a near-cache sample as many reads', () => {
    const sab = createShardBuffer(MiB, 1000);
    const sketch = sketchOf(sab);
    const header = new Int32Array(sab);
    for (let n = 0; n < 63; n++) sketch.increment(hashKey('x'));
    expect(header[H_ACCESSES]).toBe(0); // not yet: one atomic add per batch
    sketch.increment(hashKey('x'));
    expect(header[H_ACCESSES]).toBe(64);
    sketch.incrementSampled(hashKey('y'), 8);
    sketch.publish();
    expect(header[H_ACCESSES]).toBe(72);
    // Weighted like the reads it stands for, so a near-cached key is not undercounted; saturating at 15.
    expect(sketch.frequency(hashKey('y'))).toBe(8);
    sketch.incrementSampled(hashKey('y'), 8);
    expect(sketch.frequency(hashKey('y'))).toBe(15);
  });

  it('is shared: what one thread\'s view counts, another view reads', () => {
    const sab = createShardBuffer(MiB, 1000);
    const reader = sketchOf(sab);
    const owner = sketchOf(sab);
    for (let n = 0; n < 4; n++) reader.increment(hashKey('shared'));
    expect(owner.frequency(hashKey('shared'))).toBe(4);
  });
});
