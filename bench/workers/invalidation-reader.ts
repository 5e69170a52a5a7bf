/**
 * A reader process of the "redis" scenario's invalidation measurement: holds
 * local copies of every key; told (over IPC) which writes the writer flushed
 * and when, it watches its copies of those keys until each is no older than
 * that write (dropped, or already refetched), reports the delays, and fetches
 * dropped keys again so it has copies to lose next time.
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
    // All keys of the message are watched together, and refetches are not
    // awaited: the reader must not fall behind the writer and measure its own backlog.
    const waiting = new Map(message.writes!);
    const deadline = Date.now() + GIVE_UP_MS;
    while (waiting.size > 0) {
      for (const [key, version] of waiting) {
        // Stale while the local copy is older than the flushed write.
        const local = cache.get(key) as { version: number } | undefined;
        if (local !== undefined && local.version < version && Date.now() < deadline) continue;
        delays.push(Math.max(0, performance.timeOrigin + performance.now() - message.flushedAt!));
        waiting.delete(key);
        if (local === undefined) cache.fetch(key).catch(() => {});
      }
      if (waiting.size > 0) await tick();
    }
    process.send!({ delays });
  });
});
process.send!({ ready: true });
