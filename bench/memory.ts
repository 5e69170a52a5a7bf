/**
 * Scenario "memory": millions of ~100-byte objects held by shardcache and by
 * lru-cache, each side in a fresh child process (bench/workers/memory-side.ts):
 * main-thread heap used, RSS, GC pauses, and event-loop delay under a steady
 * mixed load. The sides alternate (lru-cache, shardcache, lru-cache, …) so a
 * drift of the machine does not favour one.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ScenarioContext } from './measure.js';
import { addRow, finishScenario, newScenario, type ScenarioResult } from './report.js';
import type { MemoryReport, MemorySide } from './workers/memory-side.js';

const SIDE_URL = new URL('./workers/memory-side.js', import.meta.url);
/**
 * Offered load during the delay measurement: 100 operations per 1 ms tick, a
 * busy service's cache traffic on one thread. Both sides sustain it with 2
 * million entries on a 2-core machine; a side that fell behind would show its
 * backlog as delay, not its pauses, and is reported as such (KEPT_UP).
 */
export const MEMORY_LOAD_OPS_PER_SEC = 100_000;
/** A side that did less than this share of the offered operations fell behind. */
const KEPT_UP = 0.95;
/** A side that has not reported by then is killed and the scenario fails. */
const SIDE_TIMEOUT_MS = 10 * 60_000;

export const MEMORY_GROUP = 'objects held, then 90/10 load';

export async function runMemory(ctx: ScenarioContext): Promise<ScenarioResult> {
  const { config } = ctx;
  const result = newScenario(
    'memory',
    `memory — ${(config.memoryEntries / 1e6).toFixed(1)} million ~100 B objects, one child process per side`,
    'lru-cache',
    [
      { header: 'heap filled', metric: 'heapUsedBytes', format: 'bytes' },
      { header: 'heap loaded', metric: 'heapUsedAfterLoadBytes', format: 'bytes' },
      { header: 'heap ×', metric: 'heapUsedAfterLoadBytes', format: 'ratio', ratio: true },
      { header: 'RSS', metric: 'rssBytes', format: 'bytes' },
      { header: 'forced GC', metric: 'forcedFullGcMs', format: 'ms' },
      { header: 'GC fill', metric: 'gcFillMs', format: 'ms' },
      { header: 'GC load', metric: 'gcLoadMs', format: 'ms' },
      { header: 'ELD p99', metric: 'eldP99Ms', format: 'ms' },
      { header: 'ELD p99 ×', metric: 'eldP99Ms', format: 'ratio', ratio: true },
      { header: 'ELD max', metric: 'eldMaxMs', format: 'ms' },
      { header: 'load ops/s', metric: 'loadOpsPerSec', format: 'ops' },
      { header: 'fill', metric: 'fillSec', format: 's' },
    ],
  );
  result.notes.push(
    `heap used and RSS after full GCs, once filled and again after the load; GC = sum of 'gc' pauses; ELD = event-loop delay during ${config.memoryLoadMs / 1000} s of 90% get (Zipf) / 10% set at ${MEMORY_LOAD_OPS_PER_SEC / 1000}k ops/s`,
    'shardcache with default options (one owner thread per core, near cache sized from maxBytes); fill = seconds to store every entry (until settled)',
  );
  result.settings = { entries: config.memoryEntries, loadMs: config.memoryLoadMs, offeredOpsPerSec: MEMORY_LOAD_OPS_PER_SEC };
  const rows = {
    'lru-cache': addRow(result, MEMORY_GROUP, 'lru-cache'),
    shardcache: addRow(result, MEMORY_GROUP, 'shardcache'),
  };
  const sides: MemorySide[] = ['lru-cache', 'shardcache'];
  const total = config.runs * sides.length;
  let done = 0;
  for (let run = 0; run < config.runs; run++) {
    for (const side of sides) {
      ctx.progress(done, total, `${side}: ${config.memoryEntries} objects in a child process · run ${run + 1}/${config.runs}`);
      const report = await runSide(side, config.memoryEntries, config.memoryLoadMs);
      if (report.held !== config.memoryEntries) {
        throw new Error(`memory: ${side} held ${report.held} of ${config.memoryEntries} entries after the fill`);
      }
      rows[side].runs.push({
        heapUsedBytes: report.heapUsedBytes,
        rssBytes: report.rssBytes,
        heapUsedAfterLoadBytes: report.heapUsedAfterLoadBytes,
        rssAfterLoadBytes: report.rssAfterLoadBytes,
        forcedFullGcMs: report.forcedFullGcMs,
        gcFillMs: report.gcFillMs,
        gcLoadMs: report.gcLoadMs,
        gcLoadMaxPauseMs: report.gcLoadMaxPauseMs,
        eldP50Ms: report.eldP50Ms,
        eldP99Ms: report.eldP99Ms,
        eldMaxMs: report.eldMaxMs,
        fillSec: report.fillSec,
        loadOpsPerSec: report.loadOps / (config.memoryLoadMs / 1000),
        ...(side === 'shardcache' ? { sharedBytes: report.sharedBytes } : {}),
      });
      if (report.loadOps < KEPT_UP * report.offeredOpsPerSec * (config.memoryLoadMs / 1000)) {
        result.notes.push(`WARNING: run ${run + 1}: ${side} did ${report.loadOps} of ${report.offeredOpsPerSec * (config.memoryLoadMs / 1000)} offered operations; its delay includes a backlog`);
      }
      done++;
    }
  }
  ctx.progress(total, total, 'done');
  // A side with no GC during a short load is possible; every other figure must be positive.
  result.zeroOk.push('gcLoadMs', 'gcLoadMaxPauseMs', 'gcFillMs');
  return finishScenario(result);
}

function runSide(side: MemorySide, entries: number, loadMs: number): Promise<MemoryReport> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(SIDE_URL), [side, String(entries), String(loadMs), String(MEMORY_LOAD_OPS_PER_SEC)], {
      execArgv: ['--expose-gc', '--max-old-space-size=8192'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let report: MemoryReport | undefined;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`memory: the ${side} side did not finish in ${SIDE_TIMEOUT_MS / 1000} s`));
    }, SIDE_TIMEOUT_MS);
    child.on('message', (message) => {
      report = message as MemoryReport;
    });
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (report !== undefined && code === 0) resolve(report);
      else reject(new Error(`memory: the ${side} side exited with ${signal ?? `code ${code}`} before reporting`));
    });
  });
}
