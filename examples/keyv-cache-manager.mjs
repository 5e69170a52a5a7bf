// Keyv and cache-manager over shardcache: one cache for every thread of the process.
// Run after `npm run build`: node examples/keyv-cache-manager.mjs
import { createCache } from 'cache-manager';
import Keyv from 'keyv';
import { ShardCache } from 'shardcache';
import { KeyvShardCache } from 'shardcache/keyv';

// A store that builds its own cache on first use, and closes it on disconnect() ...
const keyv = new Keyv({ store: new KeyvShardCache({ maxBytes: 64 * 1024 * 1024 }), namespace: 'users' });
await keyv.set('42', { id: 42, name: 'Ada' }, 60_000); // TTL in ms
console.log('keyv:', await keyv.get('42'));
await keyv.disconnect();

// ... or one over a cache you made (and close), e.g. to hand cache.handle to worker threads.
const cache = await ShardCache.create({ maxBytes: 64 * 1024 * 1024 });
const manager = createCache({ stores: [new Keyv({ store: new KeyvShardCache({ cache }) })] });
const load = async () => ({ rows: 3 }); // runs once: the next wrap, on any thread, finds it
console.log('cache-manager:', await manager.wrap('report:daily', load, 60_000), await manager.get('report:daily'));
await manager.del('report:daily');
await manager.disconnect(); // leaves `cache` open
await cache.close();
