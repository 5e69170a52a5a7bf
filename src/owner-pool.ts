/**
 * The supervisor of the shard owners, on the thread that created the cache.
 *
 * It starts one owner worker per shard, keeps the registry of every
 * producer's write queues (so a replacement owner gets them all), and replaces
 * an owner that dies: the shard's buffer outlives its owner, and the new owner
 * repairs it (repairShard) and resumes each queue from its tail, so no queued
 * or stored write is lost.
 */
import { EventEmitter } from 'node:events';
import os from 'node:os';
import { BroadcastChannel, Worker } from 'node:worker_threads';
import { ShardCacheError } from './errors.js';
import type { ChannelMessage, FromOwner, OwnerData, ProducerRings, ToOwner } from './messages.js';

const WORKER_URL = new URL('../workers/shard-worker.js', import.meta.url);
/**
 * An owner that drained its queues polls for more this long before it sleeps,
 * when the machine has a core for every owner and one more for the threads
 * that write: waking a sleeping owner costs the writer a system call and the
 * owner ~60 µs. With fewer cores than that, a polling owner takes its core from
 * a writer or another owner, and 1000 sets then settled() measured 25% slower
 * on 2 cores with 2 owners (1422 against 1257 ns a set; 0.5 ms of polling:
 * 2159 ns), so there owners sleep at once.
 */
const SPIN_BEFORE_SLEEP_MS = 0.05;
/** A replacement owner that fails this many times in a row is not replaced again. */
const MAX_RESTARTS_IN_A_ROW = 5;

export interface OwnerPoolConfig {
  shards: readonly SharedArrayBuffer[];
  channel: string;
  control: SharedArrayBuffer;
  changeLogs?: readonly SharedArrayBuffer[];
  batchSize: number;
}

export class OwnerPool extends EventEmitter {
  private readonly config: OwnerPoolConfig;
  private readonly workers: (Worker | undefined)[];
  private readonly producers = new Map<number, ProducerRings>();
  private readonly restarts: number[];
  private readonly channel: BroadcastChannel;
  private stopping = false;
  /** Owners replaced so far, for stats and tests. */
  replacements = 0;

  constructor(config: OwnerPoolConfig, initial: ProducerRings[]) {
    super();
    this.config = config;
    this.workers = new Array(config.shards.length).fill(undefined);
    this.restarts = new Array(config.shards.length).fill(0);
    for (const p of initial) this.producers.set(p.producer, p);
    this.channel = new BroadcastChannel(config.channel);
    this.channel.onmessage = (event: unknown) => {
      const message = (event as { data: ChannelMessage }).data;
      if (message.type === 'register') this.producers.set(message.producer, { producer: message.producer, rings: message.rings });
      else if (message.type === 'unregister') this.producers.delete(message.producer);
    };
    this.channel.unref();
  }

  async start(): Promise<void> {
    await Promise.all(this.config.shards.map((_, shard) => this.spawn(shard)));
  }

  /** Terminates an owner as a crash would, for tests: the pool replaces it. Resolves once replaced. */
  async crash(shard: number): Promise<void> {
    const worker = this.workers[shard];
    if (!worker) throw new Error(`no owner for shard ${shard}`);
    const replaced = new Promise<void>((resolve) => {
      const onReplaced = (s: number) => {
        if (s === shard) {
          this.off('replaced', onReplaced);
          resolve();
        }
      };
      this.on('replaced', onReplaced);
    });
    await worker.terminate();
    await replaced;
  }

  /** Every registered producer's write queues. */
  producerRings(): ProducerRings[] {
    return [...this.producers.values()];
  }

  private spawn(shard: number): Promise<void> {
    const data: OwnerData = {
      shard,
      sab: this.config.shards[shard]!,
      channel: this.config.channel,
      producers: [...this.producers.values()],
      changeLog: this.config.changeLogs?.[shard],
      control: this.config.control,
      batchSize: this.config.batchSize,
      spinMs: this.config.shards.length < os.availableParallelism() ? SPIN_BEFORE_SLEEP_MS : 0,
    };
    const worker = new Worker(WORKER_URL, { workerData: data, name: `shardcache owner ${shard}` });
    this.workers[shard] = worker;
    return new Promise<void>((resolve, reject) => {
      let ready = false;
      worker.on('message', (message: FromOwner) => {
        if (message.type === 'ready') {
          ready = true;
          this.restarts[shard] = 0;
          // Owners must not keep the process alive by themselves: close() stops
          // them, and a process that never calls close() can still exit. Only
          // now: adding a 'message' listener refs the worker again, and until
          // it is ready the start-up itself must keep the process alive.
          worker.unref();
          resolve();
        }
      });
      worker.on('error', (error) => {
        if (!ready) reject(new ShardCacheError('ERR_OWNER_FAILED', `shard owner ${shard} failed to start: ${error.message}`, { cause: error }));
        else this.emit('ownerError', shard, error);
      });
      worker.on('exit', () => {
        if (this.workers[shard] !== worker) return;
        this.workers[shard] = undefined;
        if (!ready || this.stopping) return;
        this.replace(shard);
      });
    });
  }

  private replace(shard: number): void {
    if (++this.restarts[shard]! > MAX_RESTARTS_IN_A_ROW) {
      this.emit('ownerError', shard, new ShardCacheError('ERR_OWNER_FAILED', `shard owner ${shard} keeps failing; not replacing it again`));
      return;
    }
    this.replacements++;
    this.spawn(shard).then(
      () => this.emit('replaced', shard),
      (error) => this.emit('ownerError', shard, error),
    );
  }

  /** Asks every owner to apply what is queued and exit; waits for them. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.workers.map(async (worker) => {
        if (!worker) return;
        const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
        // Keep the process alive until the owner has applied what is queued.
        worker.ref();
        worker.postMessage({ type: 'stop' } satisfies ToOwner);
        await exited;
      }),
    );
    this.channel.close();
  }
}
