/**
 * The issue's required comparisons, read from the scenarios' results. A
 * target whose scenario (or value kind, or thread count) did not run this
 * time is left out, not failed.
 */
import os from 'node:os';
import { median } from './measure.js';
import { MEMORY_GROUP } from './memory.js';
import { CAPACITY_GROUP, ISSUE_OBJECT } from './capacity.js';
import { GROUPS } from './ops.js';
import type { Row, ScenarioResult, TargetResult } from './report.js';
import { scalingGroup } from './scaling.js';
import { VALUE_LABEL } from './values.js';

export function evaluateTargets(scenarios: ScenarioResult[]): TargetResult[] {
  const targets: TargetResult[] = [];
  const find = (scenario: string, test: (row: Row) => boolean): Row | undefined =>
    scenarios.find((s) => s.name === scenario && s.status === 'ok')?.rows.find(test);
  const add = (name: string, measure: string, direction: '>=' | '<=', target: number, actual: number | undefined) => {
    if (actual === undefined) return;
    targets.push({ name, measure, direction, target, actual, pass: direction === '>=' ? actual >= target : actual <= target });
  };

  const object = VALUE_LABEL.object;
  const ops = (group: string, subject: string) => find('ops', (r) => r.group === group && r.subject === subject && r.params.value === object);

  add('get hit, near cache warm (Zipf)', 'shardcache / lru-cache, ops/s, ~100 B object', '>=', 0.9, ops(GROUPS.nearZipf, 'shardcache')?.vsBaseline.opsPerSec);
  add('get hit, default options (Zipf 0.99)', 'shardcache / lru-cache, ops/s, ~100 B object', '>=', 0.5, ops(GROUPS.defaultZipf, 'shardcache')?.vsBaseline.opsPerSec);
  add('get hit from shared memory (nearCache 0, uniform)', 'shardcache / lru-cache, ops/s, ~100 B object', '>=', 0.25, ops(GROUPS.sharedUniform, 'shardcache')?.vsBaseline.opsPerSec);
  add('get hit from shared memory vs decode alone', "shardcache / msgpackr's default unpack of the same value", '>=', 1.0, perRunRatio(ops(GROUPS.sharedUniform, 'shardcache'), ops(GROUPS.sharedUniform, 'msgpackr unpack'), 'opsPerSec'));
  add('set (encode, until settled)', 'shardcache / lru-cache set, ops/s, ~100 B object', '>=', 0.4, ops(GROUPS.set, 'shardcache')?.vsBaseline.opsPerSec);
  // 165 B: what an entry of that object took before shared structures and one-byte keys (405k in 64 MiB).
  const capacity = find('capacity', (r) => r.group === CAPACITY_GROUP && r.subject === 'shardcache' && r.params.value === ISSUE_OBJECT);
  add('entries a 64 MiB cache holds', `165 B (before) / bytes per entry, ${ISSUE_OBJECT}`, '>=', 1.5, capacity ? 165 / median(capacity.runs.map((r) => r.bytesPerEntry!)) : undefined);

  const scaling = scenarios.find((s) => s.name === 'scaling' && s.status === 'ok');
  if (scaling) {
    const shards = Math.min(...scaling.rows.map((r) => Number(r.params.shards ?? Infinity)).filter(Number.isFinite));
    const preferred = scaling.rows.some((r) => r.params.shards === os.availableParallelism()) ? os.availableParallelism() : shards;
    const shardcacheAt = (threads: number) =>
      scaling.rows.find((r) => r.group === scalingGroup('uniform', threads) && r.subject === 'shardcache (nearCache 0)' && r.params.shards === preferred);
    add('2 threads reading one cache', `2 threads / 1 thread, shardcache nearCache 0, uniform, ${preferred} shards`, '>=', 1.8, perRunRatio(shardcacheAt(2), shardcacheAt(1), 'opsPerSec'));
  }

  const memory = find('memory', (r) => r.group === MEMORY_GROUP && r.subject === 'shardcache');
  add('memory: main-thread heap used', 'shardcache / lru-cache heap used (after the load)', '<=', 0.05, memory?.vsBaseline.heapUsedAfterLoadBytes);
  add('memory: longest GC pause', 'shardcache / lru-cache, a full GC with every entry held', '<=', 0.1, memory?.vsBaseline.forcedFullGcMs);
  add('memory: event-loop delay p99 under load', 'shardcache / lru-cache ELD p99', '<=', 1.0, memory?.vsBaseline.eldP99Ms);
  return targets;
}

/** Median over repetitions of a.runs[i][metric] / b.runs[i][metric]. */
function perRunRatio(a: Row | undefined, b: Row | undefined, metric: string): number | undefined {
  if (a === undefined || b === undefined) return undefined;
  const ratios: number[] = [];
  for (let i = 0; i < Math.min(a.runs.length, b.runs.length); i++) {
    const x = a.runs[i]![metric];
    const y = b.runs[i]![metric];
    if (x !== undefined && y !== undefined && y !== 0) ratios.push(x / y);
  }
  return ratios.length > 0 ? median(ratios) : undefined;
}
