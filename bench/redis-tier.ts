/**
 * Scenario "redis": the Redis tier, against ioredis and the server itself, on
 * the Redis given with `--redis URL` (loopback or the project's own test
 * hosts only), in the same run:
 *
 * - write-behind: N sets into a cache with Redis behind it, timed until
 *   `flush()` resolves, against a hand-written ioredis pipeline of the same
 *   `SET key bytes PX ttl` commands in batches of 1000 (one in flight, as the
 *   flusher does), and against `redis-benchmark -P 16 -t set` (the server's own
 *   limit, when redis-benchmark is installed);
 * - read-through: `fetch` of keys only in Redis against a raw awaited ioredis
 *   GET, and `fetch` of a local hit against the same raw GET;
 * - invalidation (full runs): 3 processes on one Redis, one writing ~5k/s over
 *   1k keys, the others holding local copies: time from the writer's flush to
 *   the readers no longer returning the old value.
 *
 * Keys live under a fresh prefix per run and are deleted afterwards.
 */
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { encode } from '../src/codec.js';
import { ShardCache } from '../src/shard-cache.js';
import { median, type ScenarioContext } from './measure.js';
import { addRow, finishScenario, newScenario, type ScenarioResult } from './report.js';
import { makeObject } from './values.js';

const TTL_MS = 600_000;
const PIPELINE = 1000;
const INVALIDATION_CHILD = fileURLToPath(new URL('./workers/invalidation-reader.js', import.meta.url));

export const REDIS_GROUPS = {
  writeBehind: 'write-behind · sets until flush()',
  fetchRemote: 'fetch · key only in Redis',
  fetchLocal: 'fetch · local hit',
  invalidation: 'invalidation · flush → other processes drop the old value',
} as const;

function isLoopback(url: URL): boolean {
  return ['127.0.0.1', 'localhost', '[::1]', '::1'].includes(url.hostname);
}

export async function runRedisTier(ctx: ScenarioContext): Promise<ScenarioResult> {
  const result = newScenario(
    'redis',
    'redis — the Redis tier against ioredis and the server, same Redis, same run',
    'ioredis',
    [
      { header: 'ops/s', metric: 'opsPerSec', format: 'ops' },
      { header: 'p50/op', metric: 'p50Ns', format: 'ns' },
      { header: 'p99/op', metric: 'p99Ns', format: 'ns' },
      { header: 'max', metric: 'maxNs', format: 'ns' },
      { header: '× ioredis', metric: 'opsPerSec', format: 'ratio', ratio: true },
    ],
  );
  const url = ctx.config.redisUrl;
  if (url === undefined) {
    result.status = 'skipped';
    result.notes.push('skipped: no --redis given');
    ctx.progress(1, 1, result.notes[0]!);
    return result;
  }
  const parsed = new URL(url);
  if (!isLoopback(parsed)) throw new Error(`--redis must point at this machine (loopback), got ${parsed.hostname}`);

  const writes = ctx.config.quick ? 50_000 : 1_000_000;
  const reads = ctx.config.quick ? 2_000 : 20_000;
  const runs = ctx.config.runs;
  const steps = runs * 3 + (ctx.config.quick ? 0 : 1);
  let done = 0;
  const client = new Redis(url);
  try {
    for (let run = 0; run < runs; run++) {
      ctx.progress(done++, steps, `write-behind: ${writes} sets, run ${run + 1}/${runs}`);
      const wb = await writeBehind(url, client, writes);
      addRow(result, REDIS_GROUPS.writeBehind, 'shardcache').runs.push({ opsPerSec: wb.shardcache });
      addRow(result, REDIS_GROUPS.writeBehind, 'ioredis').runs.push({ opsPerSec: wb.pipeline });
      ctx.progress(done++, steps, `redis-benchmark -P 16, run ${run + 1}/${runs}`);
      const server = serverLimit(parsed, writes);
      if (server !== undefined) addRow(result, REDIS_GROUPS.writeBehind, 'redis-benchmark -P 16').runs.push({ opsPerSec: server });
      ctx.progress(done++, steps, `fetch: ${reads} keys, run ${run + 1}/${runs}`);
      const f = await fetchLatency(url, client, reads);
      addRow(result, REDIS_GROUPS.fetchRemote, 'shardcache').runs.push(f.remote);
      addRow(result, REDIS_GROUPS.fetchRemote, 'ioredis').runs.push(f.rawGet);
      addRow(result, REDIS_GROUPS.fetchLocal, 'shardcache').runs.push(f.local);
      addRow(result, REDIS_GROUPS.fetchLocal, 'ioredis').runs.push(f.rawGet);
    }
    if (!ctx.config.quick) {
      ctx.progress(done++, steps, 'invalidation: 3 processes, ~5k writes/s over 1k keys for 10 s');
      const inv = await invalidationDelay(url, 10_000);
      addRow(result, REDIS_GROUPS.invalidation, 'shardcache').runs.push(inv);
      result.notes.push(`invalidation: ${inv.samples} observations; a delay is an upper bound (it includes the IPC message that tells a reader which key changed)`);
    }
  } finally {
    client.disconnect();
  }
  // Merge the rows added once per run into one row per (group, subject).
  const merged = new Map<string, (typeof result.rows)[number]>();
  for (const row of result.rows) {
    const id = `${row.group}\u0000${row.subject}`;
    const first = merged.get(id);
    if (first) first.runs.push(...row.runs);
    else merged.set(id, row);
  }
  result.rows = [...merged.values()];
  result.zeroOk.push('p50Ns', 'p99Ns', 'maxNs');
  ctx.progress(steps, steps, 'done');
  return finishScenario(result);
}

/** Sets per second, until everything is acknowledged by Redis. */
async function writeBehind(url: string, client: Redis, writes: number): Promise<{ shardcache: number; pipeline: number }> {
  const prefix = `bench:${randomUUID()}:`;
  const values = Array.from({ length: 1024 }, (_, i) => makeObject(i));
  const cache = await ShardCache.create({ maxBytes: 512 * 1024 * 1024, redis: { url, keyPrefix: prefix, invalidation: false } });
  let shardcache: number;
  try {
    const start = performance.now();
    for (let i = 0; i < writes; i++) {
      try {
        cache.set(`user:${i}`, values[i & 1023], { ttlMs: TTL_MS });
      } catch (error) {
        // On the creating thread a write cannot wait for Redis synchronously:
        // let the flusher catch up, then write again.
        if ((error as { code?: string }).code !== 'ERR_BACKPRESSURE') throw error;
        await cache.flush();
        i--;
        continue;
      }
      // Give the flusher (on this thread's event loop) a turn now and then, as
      // a service handling requests does between them.
      if ((i & 1023) === 1023) await new Promise((resolve) => setImmediate(resolve));
    }
    await cache.flush({ timeoutMs: 600_000 });
    shardcache = writes / ((performance.now() - start) / 1000);
  } finally {
    await cache.close();
  }
  await deleteByPrefix(client, prefix);

  // The same commands by hand, encoding included (the bytes have to come from somewhere).
  const rawPrefix = `bench:${randomUUID()}:`;
  const start = performance.now();
  for (let i = 0; i < writes; i += PIPELINE) {
    const pipeline = client.pipeline();
    for (let j = i; j < Math.min(writes, i + PIPELINE); j++) pipeline.set(`${rawPrefix}user:${j}`, Buffer.from(encode(values[j & 1023])), 'PX', TTL_MS);
    await pipeline.exec();
  }
  const pipeline = writes / ((performance.now() - start) / 1000);
  await deleteByPrefix(client, rawPrefix);
  return { shardcache, pipeline };
}

/** `redis-benchmark -P 16 -t set`: the server's own limit, or undefined if the tool is missing. */
function serverLimit(url: URL, requests: number): number | undefined {
  try {
    const out = execFileSync('redis-benchmark', [
      '-h', url.hostname.replace(/^\[|\]$/g, ''), '-p', url.port || '6379', '-P', '16', '-t', 'set', '-n', String(requests), '-d', '100', '-q',
    ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const match = /SET:\s*([\d.]+)\s+requests per second/.exec(out);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

interface Latency extends Record<string, number> {
  opsPerSec: number;
  p50Ns: number;
  p99Ns: number;
  maxNs: number;
}

function summarize(samplesNs: number[]): Latency {
  const sorted = [...samplesNs].sort((a, b) => a - b);
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return {
    opsPerSec: 1e9 / mean,
    p50Ns: median(sorted),
    p99Ns: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))]!,
    maxNs: sorted[sorted.length - 1]!,
  };
}

/** One awaited operation at a time, as a request handler would. */
async function fetchLatency(url: string, client: Redis, reads: number): Promise<{ remote: Latency; local: Latency; rawGet: Latency }> {
  const prefix = `bench:${randomUUID()}:`;
  const bytes = Buffer.from(encode(makeObject(7)));
  for (let i = 0; i < reads; i += PIPELINE) {
    const pipeline = client.pipeline();
    for (let j = i; j < Math.min(reads, i + PIPELINE); j++) pipeline.set(`${prefix}k${j}`, bytes, 'PX', TTL_MS);
    await pipeline.exec();
  }
  // The near cache holds the working set, as for the "near cache warm" rows of
  // ops: a local hit is then the near cache plus one resolved promise.
  const cache = await ShardCache.create({ maxBytes: 64 * 1024 * 1024, nearCache: reads, redis: { url, keyPrefix: prefix, writeBehind: false, invalidation: false } });
  const rawGet: number[] = [];
  const remote: number[] = [];
  const local: number[] = [];
  try {
    // Interleaved, so both see the same moments of a noisy machine.
    for (let i = 0; i < reads; i++) {
      let t = process.hrtime.bigint();
      await client.getBuffer(`${prefix}k${i}`);
      rawGet.push(Number(process.hrtime.bigint() - t));
      t = process.hrtime.bigint();
      await cache.fetch(`k${i}`);
      remote.push(Number(process.hrtime.bigint() - t));
    }
    await cache.settled();
    for (let i = 0; i < reads; i++) cache.get(`k${i}`); // decoded once into the near cache
    for (let i = 0; i < reads; i++) {
      const t = process.hrtime.bigint();
      await cache.fetch(`k${i}`);
      local.push(Number(process.hrtime.bigint() - t));
    }
  } finally {
    await cache.close();
  }
  await deleteByPrefix(client, prefix);
  return { remote: summarize(remote), local: summarize(local), rawGet: summarize(rawGet) };
}

/**
 * The writer (this process) writes ~5k/s over 1k keys; two reader processes
 * hold local copies. After each flush the writer tells the readers (IPC) which
 * keys it flushed and when; a reader reports when its copy stopped returning
 * the old value. Delay = seen − flushed (an upper bound: it includes the IPC).
 */
async function invalidationDelay(url: string, durationMs: number): Promise<Record<string, number>> {
  const prefix = `bench:${randomUUID()}:`;
  const keys = 1000;
  const cache = await ShardCache.create({ maxBytes: 64 * 1024 * 1024, redis: { url, keyPrefix: prefix, writeBehind: { flushIntervalMs: 50 } } });
  const delays: number[] = [];
  const readers: ChildProcess[] = [];
  try {
    for (let k = 0; k < keys; k++) cache.set(`k${k}`, { version: 0 });
    await cache.flush();
    // The readers fetch every key once, so they hold local copies to lose.
    for (let r = 0; r < 2; r++) readers.push(fork(INVALIDATION_CHILD, [url, prefix, String(keys)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    await Promise.all(readers.map((r) => new Promise((resolve) => r.once('message', resolve))));
    for (const r of readers) r.on('message', (m: { delays?: number[] }) => m.delays && delays.push(...m.delays));
    const end = performance.now() + durationMs;
    let version = 0;
    while (performance.now() < end) {
      // 50 writes every ~10 ms ≈ 5k/s
      const batch: [string, number][] = [];
      for (let i = 0; i < 50; i++) {
        const key = `k${Math.floor(Math.random() * keys)}`;
        cache.set(key, { version: ++version });
        batch.push([key, version]);
      }
      await cache.flush();
      const flushedAt = performance.timeOrigin + performance.now();
      for (const r of readers) r.send({ writes: batch, flushedAt });
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await Promise.all(readers.map((r) => new Promise((resolve) => {
      r.once('exit', resolve);
      r.send({ done: true });
    })));
  } finally {
    for (const r of readers) if (r.exitCode === null) r.kill();
    await cache.close();
  }
  const client = new Redis(url);
  await deleteByPrefix(client, prefix);
  client.disconnect();
  const { p50Ns, p99Ns, maxNs } = summarize(delays.map((ms) => ms * 1e6));
  return { p50Ns, p99Ns, maxNs, samples: delays.length };
}

async function deleteByPrefix(client: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await client.unlink(...keys);
  } while (cursor !== '0');
}
