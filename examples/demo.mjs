// A first look at shardcache: one cache, shared by the main thread and a worker thread.
import { Worker } from 'node:worker_threads';
import { ShardCache } from 'shardcache';

const cache = await ShardCache.create({ maxBytes: 64 * 1024 * 1024 });
console.log(`cache with ${cache.stats().shards} shards (one owner thread each)`);

cache.set('user:42', { id: 42, name: 'Ada' }, { ttlMs: 60_000 });
console.log('get on the writing thread, at once:', cache.get('user:42'));
await cache.settled(); // now every thread sees it

// Another thread attaches to the same memory by the handle: no copy.
const worker = new Worker(
  `
  const { workerData, parentPort } = require('node:worker_threads');
  import('shardcache').then(async ({ ShardCache }) => {
    const cache = await ShardCache.attach(workerData);
    const seen = cache.get('user:42');
    cache.set('from:worker', { hello: 'main' });
    await cache.settled();
    await cache.close();
    parentPort.postMessage(seen);
  });
  `,
  { eval: true, workerData: cache.handle },
);
const seen = await new Promise((resolve) => worker.once('message', resolve));
console.log('the worker read:', seen);
console.log('the main thread reads what the worker wrote:', cache.get('from:worker'));

for (let i = 0; i < 100_000; i++) cache.set(`item:${i}`, { i, tags: ['a', 'b'] });
await cache.settled();
console.log('after 100k sets:', cache.stats());
await cache.close();
