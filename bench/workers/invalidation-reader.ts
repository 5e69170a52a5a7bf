/**
 * A reader process of the "redis" scenario's invalidation measurement: holds
 * local copies of every key; told (over IPC) which writes the writer flushed
 * and when, it waits until its copy of each key is no older than that write
 * (dropped, or already refetched) and reports the delay, then fetches a
 * dropped key again so it has a copy to lose next time.
 */
import { ShardCache } from '../../src/shard-cache.js';

const [url, prefix, count] = process.argv.slice(2) as [string, string, string];
const cache = await ShardCache.create({ shards: 1, maxBytes: 16 * 1024 * 1024, redis: { url, keyPrefix: prefix, writeBehind: false } });
for (let k = 0; k < Number(count); k++) await cache.fetch(`k${k}`);
await cache.settled();

const GIVE_UP_MS = 5_000;
const tick = () => new Promise((resolve) => setImmediate(resolve));

let queue = Promise.resolve();
process.on('message', (message: { writes?: [string, number][]; flushedAt?: number; done?: boolean }) => {
  queue = queue.then(async () => {
    if (message.done) {
      await cache.close();
      process.exit(0);
    }
    const delays: number[] = [];
    for (const [key, version] of message.writes!) {
      // Stale while the local copy is older than the flushed write.
      const stale = () => ((cache.get(key) as { version: number } | undefined)?.version ?? Infinity) < version;
      const deadline = Date.now() + GIVE_UP_MS;
      while (stale() && Date.now() < deadline) await tick();
      delays.push(Math.max(0, performance.timeOrigin + performance.now() - message.flushedAt!));
      if (cache.get(key) === undefined) await cache.fetch(key);
    }
    process.send!({ delays });
  });
});
process.send!({ ready: true });
