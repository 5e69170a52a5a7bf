/**
 * Scenario "redis": the Redis tier — a HOOK, not written yet.
 *
 * To fill in (owner: the Redis tier's engineer), measured like the others
 * (bench/measure.ts batches, lru-cache/ioredis in the same run, medians):
 * - write-behind: `set` throughput and `flush()` latency with Redis behind
 *   the cache, against ioredis `pipeline()` SETs and auto-pipelined SETs;
 * - read-through: `fetch(key)` on a local miss (single-flight) against a
 *   plain awaited ioredis GET;
 * - invalidation: time from a write on one process to the stale local copy
 *   being dropped on another.
 * Only loopback or the project's own test hosts are valid targets.
 *
 * `npm run bench -- --redis redis://127.0.0.1:6379` passes the URL here. Until
 * this is written the scenario reports itself as skipped (which is not a
 * failure, in --quick or otherwise).
 */
import type { ScenarioContext } from './measure.js';
import { newScenario, type ScenarioResult } from './report.js';

export async function runRedisTier(ctx: ScenarioContext): Promise<ScenarioResult> {
  const result = newScenario('redis', 'redis — the Redis tier behind the cache', 'ioredis', []);
  result.status = 'skipped';
  const url = ctx.config.redisUrl;
  if (url === undefined) {
    result.notes.push('skipped: no --redis given');
  } else {
    result.notes.push(`skipped: --redis ${url} given, but the Redis scenarios are not written yet (see bench/redis-tier.ts)`);
  }
  ctx.progress(1, 1, result.notes[0]!);
  return result;
}
