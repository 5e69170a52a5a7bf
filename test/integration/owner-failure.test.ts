// Owner death: a shard's buffer outlives its owner thread. When an owner is
// terminated (as a crash would), a replacement repairs the shard and resumes
// every producer's queue from its tail: no stored or queued write is lost, and
// readers never fail meanwhile.
import { describe, expect, it } from 'vitest';
import { ShardCache } from 'shardcache';
import { MiB } from '../support/bytes.js';
import { cleanupAfterEach } from '../support/cleanup.js';
import { within } from '../support/deadline.js';
import { turn } from '../support/event-loop.js';
import { waitFor } from '../support/poll.js';
import { testAttach, testCache } from '../support/test-cache.js';
import { AttachedWorker } from '../support/worker-threads.js';

type Versioned = { key: string; version: number; pad: string };

describe('owner failure', () => {
  const cleanup = cleanupAfterEach();

  it('writes streamed while owners are killed mid-stream all land; reads never fail', async () => {
    const cache = await testCache({ shards: 2, maxBytes: 16 * MiB }, cleanup);
    const reader = await testAttach(cache.handle, cleanup);
    const KEYS = 2000;
    const keys = Array.from({ length: KEYS }, (_, i) => `oc:${i}`);
    const last = new Map<string, number>();
    const pad = 'p'.repeat(200);
    let version = 0;
    let seed = 12345;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % KEYS;
    const failures: string[] = [];
    const fail = (why: string) => { if (failures.length < 10) failures.push(why); };
    const kills = [5, 25, 45, 65]; // rounds at which an owner is killed: shard 0, 1, 0, 1
    let crash: Promise<void> | undefined;
    let crashes = 0;

    for (let round = 0; round < 80; round++) {
      const at = kills.indexOf(round);
      if (at >= 0) {
        // Kill while a burst is still being applied: queue one, then terminate without waiting.
        for (let i = 0; i < 3000; i++) {
          const key = keys[rnd()]!;
          cache.set(key, { key, version: ++version, pad });
          last.set(key, version);
        }
        crash = cache.terminateOwnerForTesting(at % 2).then(() => { crashes++; });
      }
      for (let i = 0; i < 500; i++) {
        const key = keys[rnd()]!;
        try {
          cache.set(key, { key, version: ++version, pad });
          last.set(key, version);
        } catch (error) {
          fail(`set ${key}: ${String(error)}`);
        }
      }
      for (let i = 0; i < 300; i++) {
        const key = keys[rnd()]!;
        try {
          // This thread wrote every key, so it must read exactly its last write (pending or applied).
          const v = cache.get(key) as Versioned | undefined;
          if (last.has(key) ? v?.version !== last.get(key) || v?.key !== key : v !== undefined) {
            fail(`${key}: read ${v?.key}#${v?.version}, last written ${last.get(key)}`);
          }
          // The other reader sees applied writes only: the right key, never a version from the future.
          const r = reader.get(key) as Versioned | undefined;
          if (r !== undefined && (r.key !== key || r.version > last.get(key)!)) fail(`reader ${key}: ${r.key}#${r.version}`);
        } catch (error) {
          fail(`get ${key}: ${String(error)}`);
        }
      }
      if (crash && kills.includes(round - 10)) {
        await within(15_000, 'the replacement owner', crash);
        crash = undefined;
      }
      await turn();
    }
    expect(failures).toEqual([]);
    expect(crashes).toBe(4);

    await within(10_000, 'settled after the crashes', cache.settled());
    const missing: string[] = [];
    for (const [key, v] of last) {
      const got = reader.get(key) as Versioned | undefined;
      if (got?.version !== v || got.key !== key) missing.push(`${key}: ${got?.version} != ${v}`);
    }
    expect(missing.slice(0, 10)).toEqual([]);
    expect(cache.stats().entries).toBe(last.size);
    expect(reader.size).toBe(last.size);
  }, 60_000);

  it('an attached worker keeps writing through owner crashes; its writes all land', async () => {
    const cache = await testCache({ shards: 2, maxBytes: 16 * MiB }, cleanup);
    const worker = await AttachedWorker.start(cache.handle, cleanup);
    const last = new Map<string, number>();
    let version = 0;
    for (let round = 0; round < 12; round++) {
      const entries: Array<[string, { v: number }]> = [];
      for (let i = 0; i < 400; i++) {
        const key = `ow:${(round * 131 + i * 7) % 1500}`;
        entries.push([key, { v: ++version }]);
        last.set(key, version);
      }
      const writing = worker.call('set', entries);
      if (round % 4 === 1) await within(15_000, 'owner replacement', cache.terminateOwnerForTesting(round % 8 === 1 ? 0 : 1));
      await writing;
    }
    await worker.call('settled');
    for (const [key, v] of last) expect((cache.get(key) as { v: number }).v).toBe(v);
    // The worker reads its own keys correctly too.
    const sample = [...last.keys()].slice(0, 200);
    const seen = await worker.call<Array<{ value: { v: number } }>>('get', sample);
    sample.forEach((key, i) => expect(seen[i]!.value.v).toBe(last.get(key)));
  }, 60_000);

  it('a worker streaming writes as fast as it can, while both owners are killed twice, loses nothing', async () => {
    const cache = await testCache({ shards: 2, maxBytes: 16 * MiB }, cleanup);
    const worker = await AttachedWorker.start(cache.handle, cleanup);
    const control = new Int32Array(new SharedArrayBuffer(8)); // [0] stop, [1] writes so far
    const streaming = worker.call<{ last: Record<string, number>; writes: number; stopped: boolean; failures: string[] }>(
      'stream', 'st:', 3000, control.buffer,
    );
    const progress = async (more: number) => {
      const target = Atomics.load(control, 1) + more;
      await waitFor(`the worker to make ${more} more writes`, () => Atomics.load(control, 1) >= target, 15_000);
    };
    await progress(2_000);
    for (const shard of [0, 1, 0, 1]) {
      await within(15_000, 'owner replacement', cache.terminateOwnerForTesting(shard));
      await progress(2_000); // the worker carries on through the replacement
    }
    Atomics.store(control, 0, 1);
    const { last, writes, stopped, failures } = await streaming;
    expect(stopped).toBe(true); // every owner died while the worker was writing
    expect(failures).toEqual([]);
    expect(writes).toBeGreaterThan(10_000);
    for (const [key, version] of Object.entries(last)) {
      const got = cache.get(key) as { key: string; version: number } | undefined;
      if (got?.version !== version || got.key !== key) throw new Error(`${key}: ${JSON.stringify(got)} != ${version}`);
    }
    expect(cache.size).toBe(Object.keys(last).length);
  }, 30_000);

  it('stored data survives an idle crash; a replacement applies new writes and serves near-cached keys correctly', async () => {
    const cache = await testCache({ shards: 2, maxBytes: 8 * MiB }, cleanup);
    const reader = await testAttach(cache.handle, cleanup);
    for (let i = 0; i < 1000; i++) cache.set(`idle:${i}`, { i });
    await cache.settled();
    for (let i = 0; i < 1000; i++) reader.get(`idle:${i}`); // fill the reader's near cache
    const before = cache.stats();
    await cache.terminateOwnerForTesting(0);
    await cache.terminateOwnerForTesting(1);
    expect(cache.stats().entries).toBe(before.entries);
    for (let i = 0; i < 1000; i++) expect(reader.get(`idle:${i}`)).toEqual({ i });

    for (let i = 0; i < 1000; i += 3) cache.set(`idle:${i}`, { i, updated: true });
    for (let i = 1; i < 1000; i += 3) cache.delete(`idle:${i}`);
    await within(10_000, 'settled after replacement', cache.settled());
    for (let i = 0; i < 1000; i++) {
      const want = i % 3 === 0 ? { i, updated: true } : i % 3 === 1 ? undefined : { i };
      expect(reader.get(`idle:${i}`)).toEqual(want);
    }
    expect(cache.size).toBe(1000 - 333); // i % 3 === 1 for 333 of 0..999
  }, 30_000);

  it('a thread that attaches after a crash registers with the replacement owner', async () => {
    const cache = await testCache({ shards: 2, maxBytes: 8 * MiB }, cleanup);
    await cache.terminateOwnerForTesting(0);
    await cache.terminateOwnerForTesting(1);
    const worker = await AttachedWorker.start(cache.handle);
    try {
      const entries = Array.from({ length: 300 }, (_, i) => [`late:${i}`, i]);
      await worker.call('set', entries);
      await worker.call('settled');
      for (let i = 0; i < 300; i++) expect(cache.get(`late:${i}`)).toBe(i);
    } finally {
      await worker.stop();
    }
    // The same shard can be replaced again and again.
    for (let n = 0; n < 3; n++) await cache.terminateOwnerForTesting(1);
    cache.set('late:again', 'ok');
    await within(10_000, 'settled', cache.settled());
    const reader = await ShardCache.attach(cache.handle);
    expect(reader.get('late:again')).toBe('ok');
    await reader.close();
  }, 30_000);
});
