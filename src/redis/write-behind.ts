/**
 * Write-behind to Redis, run by the thread that created the cache.
 *
 * Owners log every applied change (op, key) to their shard's change log. The
 * flusher drains the logs in batches and, for each key in a batch, sends the
 * key's CURRENT local state: SET with the value in the codec's bytes (converted
 * here from the shard's own format, see redis-codec.ts) and remaining
 * TTL as PX if the key is present, DEL if it was deleted (its latest record is
 * a delete) or expired before it reached Redis; a key absent only because its
 * clean entry was evicted is left alone in Redis. Sending state rather
 * than replaying operations is what coalesces (ten writes of a key in a batch
 * are one SET) and what keeps order: one flush is in flight at a time, and any
 * write after a state was read has its own record in a later batch.
 *
 * Entries stay dirty (never evicted) until Redis acknowledged their seq; the
 * flusher then queues CLEAN(key, seq) to the owner, which clears the flag only
 * if the key still holds that seq.
 *
 * Failures: a failed connection or timeout retries the whole batch with
 * backoff, forever (the writes stay pending, and backpressure bounds them); a
 * reply error for one key (WRONGTYPE, ...) retries that key up to
 * `maxAttempts`, then drops it, counts it as failed and reports it; a value
 * the codec refuses is dropped the same way at once. A dropped write will
 * never reach Redis, so its entry is marked clean (evictable) like a flushed
 * one. Every logged record ends up counted exactly once as flushed or failed.
 */
import { EventEmitter } from 'node:events';
import { ShardCacheError } from '../errors.js';
import {
  C_FLUSH_BELL, C_REDIS_PENDING, F_REDIS_FAILED, F_REDIS_FLUSHED, F_REDIS_LAST_FLUSH_MS, F_REDIS_RETRIES,
} from '../memory/control.js';
import { FLAG_DIRTY, H_LOG_PROCESSED, RECORD_NUMBER_MASK } from '../memory/layout.js';
import { NOT_FOUND, Scratch, type ShardView } from '../memory/shard-view.js';
import { OP_CLEAN, OP_CLEAR, OP_DELETE, RingConsumer, RingProducer, recordBytes } from '../memory/write-queue.js';
import { Cluster } from 'ioredis';
import type { RedisCodec } from './redis-codec.js';
import type { WriteBehindOptions } from './redis-options.js';
import { MAX_TIMER_MS } from '../options.js';
import { groupByNode, isConnectionError, type Client } from './redis-target.js';

const BACKOFF_MIN_MS = 25;
const BACKOFF_MAX_MS = 2_000;
const SCAN_COUNT = 1000;

interface PendingKey {
  key: string;
  hash: number;
  shard: number;
  /** Change-log records this key stands for in the batch. */
  records: number;
  /** The op of the key's latest record in the batch (set or delete). */
  lastOp: number;
  attempts: number;
}

export interface WriteBehindConfig {
  client: Client;
  keyPrefix: string;
  codec: RedisCodec;
  options: Required<WriteBehindOptions>;
  views: readonly ShardView[];
  changeLogs: readonly SharedArrayBuffer[];
  /** The flusher's own write queues, for CLEAN records (never stalled by backpressure). */
  cleanRings: readonly SharedArrayBuffer[];
  control: SharedArrayBuffer;
  /** Called when a key is dropped after maxAttempts. */
  onKeyFailed: (key: string, error: Error) => void;
  /** Wakes a shard's owner after CLEAN records were queued. */
  wakeOwner: (shard: number) => void;
  /** Called with the keys whose new state Redis just acknowledged (for the invalidation bus). */
  onFlushed?: (keys: string[]) => void;
}

export class WriteBehind extends EventEmitter {
  private readonly config: WriteBehindConfig;
  private readonly logs: RingConsumer[];
  private readonly cleans: RingProducer[];
  private readonly control: Int32Array;
  private readonly stats: Float64Array;
  private readonly scratch = new Scratch();
  /** Change-log position per shard up to which every record is flushed or failed. */
  private readonly done: number[];
  /**
   * Records taken from each shard's log so far, counted as the owner numbers
   * them when it appends (both start at 0 with the cache), so a CLEAN can say
   * "every record up to this number is processed".
   */
  private readonly taken: number[];
  private running: Promise<void> | undefined;
  private again = false;
  private readonly timer: NodeJS.Timeout;
  private stopped = false;

  constructor(config: WriteBehindConfig) {
    super();
    this.config = config;
    this.logs = config.changeLogs.map((sab) => new RingConsumer(sab));
    this.cleans = config.cleanRings.map((sab) => new RingProducer(sab));
    this.control = new Int32Array(config.control);
    this.stats = new Float64Array(config.control);
    this.done = this.logs.map((log) => log.position);
    this.taken = this.logs.map(() => 0);
    this.timer = setInterval(() => this.kick(), config.options.flushIntervalMs);
    this.timer.unref();
    void this.listenForBell();
  }

  /**
   * Owners ring the bell when a batch's worth of writes waits: flush then,
   * not at the next tick. (A pending waitAsync does not keep the process alive.)
   */
  private async listenForBell(): Promise<void> {
    while (!this.stopped) {
      const result = Atomics.waitAsync(this.control, C_FLUSH_BELL, 0);
      if (result.async) await result.value;
      Atomics.store(this.control, C_FLUSH_BELL, 0);
      if (!this.stopped) this.kick();
    }
  }

  get pending(): number {
    return Atomics.load(this.control, C_REDIS_PENDING);
  }

  /** Starts a flush unless one is in flight; if one is, another follows it at once. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.runBatches().finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  /** Log heads now: once `flushedThrough` them, every change logged before this call is in Redis. */
  logHeads(): number[] {
    return this.logs.map((log) => log.head);
  }

  flushedThrough(targets: readonly number[]): boolean {
    return targets.every((target, shard) => ((this.done[shard]! - target) | 0) >= 0);
  }

  /** Resolves once every log record before `targets` is flushed or failed, or rejects after timeoutMs. */
  async waitFlushed(targets: readonly number[], timeoutMs: number): Promise<void> {
    if (this.flushedThrough(targets)) return;
    this.kick();
    await new Promise<void>((resolve, reject) => {
      const onProgress = () => {
        if (!this.flushedThrough(targets)) return this.kick();
        cleanup();
        resolve();
      };
      const deadline = Date.now() + timeoutMs;
      let timeout: NodeJS.Timeout;
      // Re-armed in slices: setTimeout fires at once for delays past MAX_TIMER_MS.
      const arm = () => {
        const left = deadline - Date.now();
        if (left > 0) {
          timeout = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
          return;
        }
        cleanup();
        reject(new ShardCacheError('ERR_FLUSH_TIMEOUT', `flush() timed out after ${timeoutMs} ms with ${this.pending} write(s) still pending for Redis`));
      };
      const cleanup = () => {
        clearTimeout(timeout);
        this.off('progress', onProgress);
      };
      arm();
      this.on('progress', onProgress);
    });
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    Atomics.store(this.control, C_FLUSH_BELL, 1);
    Atomics.notify(this.control, C_FLUSH_BELL);
  }

  private async runBatches(): Promise<void> {
    for (;;) {
      const { keys, clear, ends, records } = this.collect();
      if (records === 0) return;
      const started = performance.now();
      if (clear) await this.untilDone(() => this.clearRedis());
      const through = [...this.taken];
      await this.send(keys, through);
      for (let shard = 0; shard < ends.length; shard++) {
        this.done[shard] = ends[shard]!;
        // Values read from Redis from now on are past these records' deletes (see recentDeletes in shard-writer.ts).
        Atomics.store(this.config.views[shard]!.i32, H_LOG_PROCESSED, through[shard]!);
      }
      this.stats[F_REDIS_LAST_FLUSH_MS] = performance.now() - started;
      this.emit('progress');
      if (this.stopped) return;
    }
  }

  /** Takes up to batchSize records from the logs, coalesced by key. */
  private collect(): { keys: PendingKey[]; clear: boolean; ends: number[]; records: number } {
    const byKey = new Map<string, PendingKey>();
    let clear = false;
    let records = 0;
    let clearRecords = 0;
    const limit = this.config.options.batchSize;
    for (let shard = 0; shard < this.logs.length; shard++) {
      const log = this.logs[shard]!;
      const share = Math.max(1, Math.ceil(limit / this.logs.length));
      for (let n = 0; n < share; n++) {
        const at = log.next();
        if (at < 0) break;
        const op = log.op(at);
        records++;
        this.taken[shard] = (this.taken[shard]! + 1) & RECORD_NUMBER_MASK;
        if (op === OP_CLEAR) {
          clear = true;
          clearRecords++;
        } else {
          const key = log.readKey(at);
          const found = byKey.get(key);
          if (found) {
            found.records++;
            found.lastOp = op;
          } else {
            byKey.set(key, { key, hash: log.hash(at), shard, records: 1, lastOp: op, attempts: 0 });
          }
        }
        log.done(at);
      }
    }
    if (clearRecords > 0) this.settle(clearRecords, 0);
    return { keys: [...byKey.values()], clear, ends: this.logs.map((log) => log.position), records };
  }

  /**
   * Sends the current state of `keys`, retrying until each is flushed or
   * failed. `through[shard]`: the number of the last record this batch took.
   */
  private async send(keys: PendingKey[], through: readonly number[]): Promise<void> {
    let todo = keys;
    let backoff = BACKOFF_MIN_MS;
    while (todo.length > 0) {
      const retry: PendingKey[] = [];
      let connectionFailed = false;
      const now = Date.now();
      const commands = todo.map((pending) => this.stateOf(pending, now));
      const redisKeys = todo.map((p) => this.config.keyPrefix + p.key);
      const groups = groupByNode(this.config.client, redisKeys);
      await Promise.all(groups.map(async (group) => {
        const pipeline = this.config.client.pipeline();
        let sent = 0;
        for (const i of group) {
          const command = commands[i]!;
          if (command.kind === 'skip' || command.kind === 'refused') continue;
          sent++;
          if (command.kind === 'set') {
            if (command.px > 0) pipeline.set(redisKeys[i]!, command.bytes, 'PX', command.px);
            else pipeline.set(redisKeys[i]!, command.bytes);
          } else {
            pipeline.del(redisKeys[i]!);
          }
        }
        let results: [Error | null, unknown][] | null = [];
        if (sent > 0) {
          try {
            results = await pipeline.exec();
          } catch (error) {
            results = null;
            this.emit('connectionError', error);
          }
        }
        let r = 0;
        const landed: string[] = [];
        for (const i of group) {
          const pending = todo[i]!;
          const command = commands[i]!;
          if (command.kind === 'skip') {
            this.settle(pending.records, 0);
            continue;
          }
          if (command.kind === 'refused') {
            this.drop(pending, command.error, command.seq, through[pending.shard]!);
            continue;
          }
          const error = results === null ? new Error('pipeline failed') : results[r++]?.[0] ?? null;
          if (error === null) {
            this.settle(pending.records, 0);
            landed.push(pending.key);
            if (command.kind === 'set') this.queueClean(pending, command.seq, through[pending.shard]!);
          } else if (results === null || isConnectionError(error)) {
            connectionFailed = true;
            retry.push(pending);
          } else if (++pending.attempts >= this.config.options.maxAttempts) {
            this.drop(pending, error, command.kind === 'set' ? command.seq : 0, through[pending.shard]!);
          } else {
            retry.push(pending);
          }
        }
        if (landed.length > 0) this.config.onFlushed?.(landed);
      }));
      for (let shard = 0; shard < this.cleans.length; shard++) this.config.wakeOwner(shard);
      todo = retry;
      if (todo.length > 0) {
        this.stats[F_REDIS_RETRIES]! += todo.length;
        await delay(connectionFailed ? backoff : BACKOFF_MIN_MS);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
    }
  }

  /** Gives up on a write: counted failed, reported, and its entry no longer kept for Redis. */
  private drop(pending: PendingKey, error: Error, seq: number, through: number): void {
    this.settle(0, pending.records);
    if (seq !== 0) this.queueClean(pending, seq, through);
    this.config.onKeyFailed(pending.key, error);
  }

  private stateOf(pending: PendingKey, now: number):
    | { kind: 'set'; bytes: Buffer; px: number; seq: number }
    | { kind: 'del' }
    | { kind: 'skip' }
    | { kind: 'refused'; error: Error; seq: number } {
    const view = this.config.views[pending.shard]!;
    // Stale entries too: an entry in its stale window still exists, in Redis as here.
    const length = view.read(pending.key, pending.hash, now, this.scratch, true);
    if (length === NOT_FOUND) {
      if (pending.lastOp === OP_DELETE) return { kind: 'del' };
      // Expired before it was flushed: Redis must not keep an older value.
      if (view.read(pending.key, pending.hash, 0, this.scratch) !== NOT_FOUND && (view.foundFlags & FLAG_DIRTY) !== 0) {
        return { kind: 'del' };
      }
      // Otherwise absent after a set: an earlier batch sent this state, Redis
      // acknowledged it, and the clean entry was evicted since (or a delete
      // follows with its own record). Eviction must never delete from Redis.
      return { kind: 'skip' };
    }
    // Already acknowledged by Redis in an earlier batch: nothing new to send.
    if ((view.foundFlags & FLAG_DIRTY) === 0) return { kind: 'skip' };
    const px = view.foundExpires === 0 ? 0 : Math.max(1, Math.ceil(view.foundExpires - now));
    const seq = view.foundSeq;
    let bytes: Buffer;
    try {
      bytes = this.config.codec.toRedis(this.scratch.buffer.subarray(0, length), pending.key);
    } catch (error) {
      return { kind: 'refused', error: error as Error, seq };
    }
    return { kind: 'set', bytes, px, seq };
  }

  private settle(flushed: number, failed: number): void {
    if (flushed > 0) this.stats[F_REDIS_FLUSHED]! += flushed;
    if (failed > 0) this.stats[F_REDIS_FAILED]! += failed;
    Atomics.sub(this.control, C_REDIS_PENDING, flushed + failed);
    // Writers on attached threads may be waiting for the count to drop (admitPending).
    Atomics.notify(this.control, C_REDIS_PENDING);
  }

  /** Tells the owner Redis has the write stamped `seq`, so the entry may be evicted again. */
  private queueClean(pending: PendingKey, seq: number, through: number): void {
    const ring = this.cleans[pending.shard]!;
    const size = recordBytes(pending.key.length, 0);
    let at = ring.tryReserve(size);
    // The owner drains CLEAN records even when stalled, so room comes quickly;
    // if it does not, the entry merely stays dirty (kept) a while longer.
    for (let tries = 0; at < 0 && tries < 100; tries++) {
      this.config.wakeOwner(pending.shard);
      ring.waitForRoom(1);
      at = ring.tryReserve(size);
    }
    if (at < 0) return;
    ring.writeRecord(at, OP_CLEAN, pending.hash, pending.key, undefined, through, seq);
    ring.publish();
  }

  /** Deletes every key under the prefix (clear()). */
  private async clearRedis(): Promise<void> {
    const client = this.config.client;
    const nodes = client instanceof Cluster ? client.nodes('master') : [client];
    const match = `${escapeGlob(this.config.keyPrefix)}*`;
    for (const node of nodes) {
      let cursor = '0';
      do {
        const [next, found] = await node.scan(cursor, 'MATCH', match, 'COUNT', SCAN_COUNT);
        cursor = next;
        if (found.length > 0) {
          // One key per command: in a Cluster a multi-key UNLINK must stay in one slot.
          const pipeline = node.pipeline();
          for (const key of found) pipeline.unlink(key);
          await pipeline.exec();
        }
      } while (cursor !== '0');
    }
  }

  private async untilDone(attempt: () => Promise<void>): Promise<void> {
    let backoff = BACKOFF_MIN_MS;
    for (;;) {
      try {
        return await attempt();
      } catch (error) {
        this.emit('connectionError', error);
        this.stats[F_REDIS_RETRIES]!++;
        await delay(backoff);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
