/**
 * Scenario "ops": single-thread operations of shardcache against lru-cache and
 * Map, on the same keys, values and access sequence, in the same run.
 *
 * Cases (per value kind):
 * - get hit, near cache warm, Zipf: shardcache with a near cache that holds the
 *   working set (`nearCache` = key count, as a user sizes it for a hot set);
 *   keys are served from the thread's decoded copies after warm-up.
 * - get hit with default options, Zipf: the near cache as the defaults size it
 *   (from maxBytes), so the hot keys hit it and the rest read shared memory.
 * - get hit from shared memory (`nearCache: 0`), uniform: every get probes the
 *   shard, copies the bytes out and decodes them. Also timed: msgpackr's
 *   default `unpack` of the same values (its default `pack`, a plain msgpack
 *   map), what decoding alone costs a user who keeps msgpack bytes.
 * - get miss, uniform: keys that were never stored.
 * - set until settled, uniform: a batch of sets (encoding included) and then
 *   `await cache.settled()`, so the time covers the owners applying them.
 * - mixed 90% get / 10% set, Zipf: the writes are not awaited per batch (the
 *   write queue and the owners absorb them, as in a service); the backlog is
 *   settled after the task so it is not left to the next one.
 */
import os from 'node:os';
import { LRUCache } from 'lru-cache';
import { ShardCache } from '../src/shard-cache.js';
import { pack, unpack } from 'msgpackr';
import { KeyCursor, indices, makeKeys, makeMissKeys } from './keys.js';
import { BATCH, consume, measureBatch, type ScenarioContext } from './measure.js';
import { addRow, finishScenario, newScenario, type Row, type ScenarioResult } from './report.js';
import { POOL_SIZE, VALUE_LABEL, valuePool } from './values.js';

const POOL_MASK = POOL_SIZE - 1;
/**
 * The budget a user would give this data set: twice what its entries take
 * (index included), so nothing is evicted. Not a fixed large budget: the index
 * grows with the budget, and a needlessly large one costs cache misses.
 */
function budgetFor(keyCount: number, encodedBytes: number): number {
  const perEntry = 80 /* index slot at 20% of budget */ + 32 + 12 + encodedBytes;
  return Math.max(32 * 1024 * 1024, Math.ceil((2 * keyCount * perEntry) / (1024 * 1024)) * 1024 * 1024);
}

export const GROUPS = {
  nearZipf: 'get hit · near cache warm · Zipf',
  defaultZipf: 'get hit · default options · Zipf',
  sharedUniform: 'get hit · shared memory (nearCache 0) · uniform',
  miss: 'get miss · uniform',
  set: 'set · until settled · uniform',
  mixed: 'mixed 90% get / 10% set · Zipf',
} as const;

/** Timed tasks per value kind (see makeTasks). */
const TASKS_PER_KIND = 19;

interface Task {
  group: string;
  subject: string;
  fn: () => unknown;
  /** Runs after the timed task (not timed). */
  after?: () => Promise<void>;
}

export async function runOps(ctx: ScenarioContext): Promise<ScenarioResult> {
  const { config } = ctx;
  const result = newScenario(
    'ops',
    'ops — one thread, per operation (batches of 1000)',
    'lru-cache',
    [
      { header: 'ops/s', metric: 'opsPerSec', format: 'ops' },
      { header: 'p50/op', metric: 'p50Ns', format: 'ns' },
      { header: 'p99/op', metric: 'p99Ns', format: 'ns' },
      { header: '× lru-cache', metric: 'opsPerSec', format: 'ratio', ratio: true },
    ],
    ['value'],
  );
  result.settings = { keys: config.keyCount, cores: os.availableParallelism() };
  result.notes.push(`${config.keyCount} keys; shardcache defaults (shards = ${os.availableParallelism()} cores), maxBytes twice what the data takes, nearCache = key count for the "near cache warm" rows`);

  const keyCount = config.keyCount;
  const keys = makeKeys(keyCount);
  const missKeys = makeMissKeys(keyCount);
  const uniform = indices('uniform', keyCount);
  const zipf = indices('zipf', keyCount);

  const total = config.valueKinds.length * config.runs * TASKS_PER_KIND;
  let done = 0;

  for (const kind of config.valueKinds) {
    ctx.progress(done, total, `${VALUE_LABEL[kind]}: filling caches`);
    const pool = valuePool(kind);
    // What msgpackr's defaults make of the values (plain maps): the decode-alone comparison.
    const encoded = pool.map((v) => Buffer.from(pack(v)));
    const lru = new LRUCache<string, NonNullable<unknown>>({ max: keyCount });
    const map = new Map<string, unknown>();
    const maxBytes = budgetFor(keyCount, Math.max(...encoded.map((b) => b.length)));
    const near = await ShardCache.create({ maxBytes, nearCache: keyCount });
    const defaults = await ShardCache.create({ maxBytes });
    const shared = await ShardCache.create({ maxBytes, nearCache: 0 });
    try {
      for (let i = 0; i < keyCount; i++) {
        const key = keys[i]!;
        const value = pool[i & POOL_MASK]!;
        lru.set(key, value);
        map.set(key, value);
        near.set(key, value);
        defaults.set(key, value);
        shared.set(key, value);
      }
      await near.settled();
      await defaults.settled();
      await shared.settled();
      if (near.size !== keyCount || shared.size !== keyCount) {
        throw new Error(`ops: shardcache holds ${near.size}/${shared.size} of ${keyCount} entries after filling; raise budgetFor`);
      }

      const tasks = makeTasks({ keys, missKeys, uniform, zipf, pool, encoded, lru, map, near, defaults, shared });
      if (tasks.length !== TASKS_PER_KIND) throw new Error(`ops: TASKS_PER_KIND is ${TASKS_PER_KIND}, makeTasks made ${tasks.length}`);
      const rows = new Map<Task, Row>();
      for (const task of tasks) rows.set(task, addRow(result, task.group, task.subject, { value: VALUE_LABEL[kind] }));

      for (let run = 0; run < config.runs; run++) {
        for (const task of tasks) {
          ctx.progress(done, total, `${VALUE_LABEL[kind]} · ${task.group} · ${task.subject} · run ${run + 1}/${config.runs}`);
          const figures = await measureBatch(`${task.group} ${task.subject}`, task.fn, { timeMs: config.timeMs, warmupMs: config.warmupMs });
          if (task.after) await task.after();
          rows.get(task)!.runs.push({ opsPerSec: figures.opsPerSec, p50Ns: figures.p50Ns, p99Ns: figures.p99Ns });
          done++;
        }
      }
    } finally {
      await near.close();
      await defaults.close();
      await shared.close();
    }
  }
  ctx.progress(total, total, 'done');
  return finishScenario(result);
}

interface Subjects {
  keys: string[];
  missKeys: string[];
  uniform: Uint32Array;
  zipf: Uint32Array;
  pool: unknown[];
  encoded: Buffer[];
  lru: LRUCache<string, NonNullable<unknown>>;
  map: Map<string, unknown>;
  near: ShardCache;
  defaults: ShardCache;
  shared: ShardCache;
}

/**
 * The timed tasks, in the order they run. Each has its own cursor, so each
 * walks the same access sequence from its own start. Loops are written out
 * per subject (not one generic loop taking a `get` callback) so each call site
 * stays monomorphic, as it would be in a service.
 */
function makeTasks(s: Subjects): Task[] {
  const { keys, missKeys, uniform, zipf, pool, encoded, lru, map, near, defaults, shared } = s;
  const tasks: Task[] = [];
  const add = (group: string, subject: string, fn: () => unknown, after?: () => Promise<void>) => tasks.push({ group, subject, fn, after });

  // get hit, near cache warm, Zipf
  {
    const a = new KeyCursor(keys, zipf), b = new KeyCursor(keys, zipf), c = new KeyCursor(keys, zipf);
    add(GROUPS.nearZipf, 'shardcache', () => {
      let n = 0;
      for (let i = 0; i < BATCH; i++) if (near.get(a.next()) !== undefined) n++;
      consume(n);
    });
    add(GROUPS.nearZipf, 'lru-cache', () => {
      let n = 0;
      for (let i = 0; i < BATCH; i++) if (lru.get(b.next()) !== undefined) n++;
      consume(n);
    });
    add(GROUPS.nearZipf, 'Map', () => {
      let n = 0;
      for (let i = 0; i < BATCH; i++) if (map.get(c.next()) !== undefined) n++;
      consume(n);
    });
  }

  // get hit with default options (near cache sized from maxBytes), Zipf
  {
    const a = new KeyCursor(keys, zipf), b = new KeyCursor(keys, zipf), c = new KeyCursor(keys, zipf);
    add(GROUPS.defaultZipf, 'shardcache', () => {
      let n = 0;
      for (let i = 0; i < BATCH; i++) if (defaults.get(a.next()) !== undefined) n++;
      consume(n);
    });
    add(GROUPS.defaultZipf, 'lru-cache', () => {
      let n = 0;
      for (let i = 0; i < BATCH; i++) if (lru.get(b.next()) !== undefined) n++;
      consume(n);
    });
    add(GROUPS.defaultZipf, 'Map', () => {
      let n = 0;
      for (let i = 0; i < BATCH; i++) if (map.get(c.next()) !== undefined) n++;
      consume(n);
    });
  }

  // get hit straight from shared memory, uniform
  {
    const a = new KeyCursor(keys, uniform), b = new KeyCursor(keys, uniform), c = new KeyCursor(keys, uniform), d = new KeyCursor(keys, uniform);
    add(GROUPS.sharedUniform, 'shardcache', () => {
      let n = 0;
      for (let i = 0; i < BATCH; i++) if (shared.get(a.next()) !== undefined) n++;
      consume(n);
    });
    add(GROUPS.sharedUniform, 'lru-cache', () => {
      let n = 0;
      for (let i = 0; i < BATCH; i++) if (lru.get(b.next()) !== undefined) n++;
      consume(n);
    });
    add(GROUPS.sharedUniform, 'Map', () => {
      let n = 0;
      for (let i = 0; i < BATCH; i++) if (map.get(c.next()) !== undefined) n++;
      consume(n);
    });
    add(GROUPS.sharedUniform, 'msgpackr unpack', () => {
      let n = 0;
      for (let i = 0; i < BATCH; i++) {
        if (unpack(encoded[d.nextIndex() & POOL_MASK]!) !== undefined) n++;
      }
      consume(n);
    });
  }

  // get miss, uniform
  {
    const a = new KeyCursor(missKeys, uniform), b = new KeyCursor(missKeys, uniform), c = new KeyCursor(missKeys, uniform);
    add(GROUPS.miss, 'shardcache', () => {
      let n = 0;
      for (let i = 0; i < BATCH; i++) if (near.get(a.next()) === undefined) n++;
      consume(n);
    });
    add(GROUPS.miss, 'lru-cache', () => {
      let n = 0;
      for (let i = 0; i < BATCH; i++) if (lru.get(b.next()) === undefined) n++;
      consume(n);
    });
    add(GROUPS.miss, 'Map', () => {
      let n = 0;
      for (let i = 0; i < BATCH; i++) if (map.get(c.next()) === undefined) n++;
      consume(n);
    });
  }

  // set, until settled, uniform: overwrites keys that exist, with a value that
  // differs from the stored one (lru-cache takes a shortcut for the same value)
  {
    const a = new KeyCursor(keys, uniform), b = new KeyCursor(keys, uniform), c = new KeyCursor(keys, uniform);
    let ra = 0, rb = 0, rc = 0;
    add(GROUPS.set, 'shardcache', async () => {
      const round = ++ra;
      for (let i = 0; i < BATCH; i++) {
        const k = a.nextIndex();
        near.set(keys[k]!, pool[(k + round) & POOL_MASK]);
      }
      await near.settled();
    });
    add(GROUPS.set, 'lru-cache', () => {
      const round = ++rb;
      for (let i = 0; i < BATCH; i++) {
        const k = b.nextIndex();
        lru.set(keys[k]!, pool[(k + round) & POOL_MASK]!);
      }
    });
    add(GROUPS.set, 'Map', () => {
      const round = ++rc;
      for (let i = 0; i < BATCH; i++) {
        const k = c.nextIndex();
        map.set(keys[k]!, pool[(k + round) & POOL_MASK]);
      }
    });
  }

  // mixed 90/10, Zipf: every tenth operation is a set (of a changed value)
  {
    const a = new KeyCursor(keys, zipf), b = new KeyCursor(keys, zipf), c = new KeyCursor(keys, zipf);
    let ra = 0, rb = 0, rc = 0;
    add(
      GROUPS.mixed,
      'shardcache',
      () => {
        const round = ++ra;
        let n = 0;
        for (let i = 0; i < BATCH; i++) {
          const k = a.nextIndex();
          if (i % 10 === 9) near.set(keys[k]!, pool[(k + round) & POOL_MASK]);
          else if (near.get(keys[k]!) !== undefined) n++;
        }
        consume(n);
      },
      () => near.settled(),
    );
    add(GROUPS.mixed, 'lru-cache', () => {
      const round = ++rb;
      let n = 0;
      for (let i = 0; i < BATCH; i++) {
        const k = b.nextIndex();
        if (i % 10 === 9) lru.set(keys[k]!, pool[(k + round) & POOL_MASK]!);
        else if (lru.get(keys[k]!) !== undefined) n++;
      }
      consume(n);
    });
    add(GROUPS.mixed, 'Map', () => {
      const round = ++rc;
      let n = 0;
      for (let i = 0; i < BATCH; i++) {
        const k = c.nextIndex();
        if (i % 10 === 9) map.set(keys[k]!, pool[(k + round) & POOL_MASK]);
        else if (map.get(keys[k]!) !== undefined) n++;
      }
      consume(n);
    });
  }
  return tasks;
}
