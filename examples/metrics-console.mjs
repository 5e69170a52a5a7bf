// shardcache's stats as OpenTelemetry metrics, exported to the console.
// Run after `npm run build`: node examples/metrics-console.mjs
import { ConsoleMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { ShardCache } from 'shardcache';
import { registerMetrics } from 'shardcache/metrics';

const reader = new PeriodicExportingMetricReader({ exporter: new ConsoleMetricExporter(), exportIntervalMillis: 60_000 });
const provider = new MeterProvider({ readers: [reader] });

const cache = await ShardCache.create({ maxBytes: 64 * 1024 * 1024 });
const unregister = registerMetrics(cache, provider.getMeter('shardcache-example'));

for (let i = 0; i < 1000; i++) cache.set(`user:${i}`, { id: i });
for (let i = 0; i < 1500; i++) cache.get(`user:${i}`); // 1000 hits, 500 misses
await cache.settled();

await reader.forceFlush(); // one export now: shardcache.hits, .misses, .sets, .entries, ...
unregister();
await provider.shutdown();
await cache.close();
