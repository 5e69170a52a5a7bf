/**
 * The Redis tier as each thread sees it.
 *
 * `RedisTier` lives on the creating thread, which owns the connection: it runs
 * the write-behind and read-through and answers the other threads' requests on
 * the cache's BroadcastChannel. `RemoteTier` is what an attached thread uses:
 * the same three calls, forwarded to the creating thread (a message per local
 * miss or flush, never per get or set).
 */
import { BroadcastChannel } from 'node:worker_threads';
import { ShardCacheError } from '../errors.js';
import { R_TAIL, Ring } from '../memory/write-queue.js';
import type { ChannelMessage, WireError } from '../messages.js';
import type { OwnerPool } from '../owner-pool.js';
import { ReadThrough, type RemoteValue } from './read-through.js';
import type { ResolvedRedisOptions } from './redis-options.js';
import type { WriteBehind } from './write-behind.js';

export interface TierAccess {
  fetch(key: string): Promise<RemoteValue>;
  fetchMany(keys: readonly string[]): Promise<RemoteValue[]>;
  /** Resolves once every write issued (by any thread) before the call is in Redis. */
  flush(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

export class RedisTier implements TierAccess {
  private readonly options: ResolvedRedisOptions;
  private readonly readThrough: ReadThrough;
  private readonly writeBehind: WriteBehind | undefined;
  private readonly pool: OwnerPool;
  private readonly channel: BroadcastChannel;
  private readonly wakeOwner: (shard: number) => void;

  constructor(options: ResolvedRedisOptions, writeBehind: WriteBehind | undefined, pool: OwnerPool, channelName: string, wakeOwner: (shard: number) => void) {
    this.options = options;
    this.readThrough = new ReadThrough(options.client, options.keyPrefix);
    this.writeBehind = writeBehind;
    this.pool = pool;
    this.wakeOwner = wakeOwner;
    this.channel = new BroadcastChannel(channelName);
    this.channel.unref();
    this.channel.onmessage = (event: unknown) => this.serve((event as { data: ChannelMessage }).data);
  }

  fetch(key: string): Promise<RemoteValue> {
    return this.readThrough.get(key);
  }

  fetchMany(keys: readonly string[]): Promise<RemoteValue[]> {
    return this.readThrough.getMany(keys);
  }

  async flush(timeoutMs: number): Promise<void> {
    const writeBehind = this.writeBehind;
    if (!writeBehind) return;
    const deadline = Date.now() + timeoutMs;
    // 1. Every write queued by any thread so far must be applied by its owner,
    //    which logs it. Owners may be stalled on maxPending, so keep flushing.
    const queued = this.pool.producerRings().flatMap((p) => p.rings.map((sab, shard) => {
      const ring = new Ring(sab);
      return { ring, shard, target: Atomics.load(ring.i32, 0) };
    }));
    for (const { ring, shard, target } of queued) {
      while (!ring.consumedThrough(target)) {
        if (Date.now() > deadline) {
          throw new ShardCacheError('ERR_FLUSH_TIMEOUT', `flush() timed out after ${timeoutMs} ms with ${writeBehind.pending} write(s) still pending for Redis (and more not yet applied by shard ${shard}'s owner)`);
        }
        writeBehind.kick();
        this.wakeOwner(shard);
        const result = Atomics.waitAsync(ring.i32, R_TAIL, Atomics.load(ring.i32, R_TAIL), 5);
        const keepAlive = setTimeout(() => {}, 10);
        if (result.async) await result.value;
        clearTimeout(keepAlive);
      }
    }
    // 2. Everything logged so far must be acknowledged by Redis (or failed).
    await writeBehind.waitFlushed(writeBehind.logHeads(), Math.max(0, deadline - Date.now()));
  }

  async close(): Promise<void> {
    this.writeBehind?.stop();
    this.channel.close();
    if (this.options.ownsClient) {
      try {
        await this.options.client.quit();
      } catch {
        this.options.client.disconnect();
      }
    }
  }

  private serve(message: ChannelMessage): void {
    if (message.type === 'fetch') {
      this.fetch(message.key).then(
        (remote) => this.channel.postMessage({ type: 'fetched', id: message.id, producer: message.producer, bytes: remote.bytes, ttlMs: remote.ttlMs } satisfies ChannelMessage),
        (error) => this.channel.postMessage({ type: 'fetched', id: message.id, producer: message.producer, bytes: null, ttlMs: 0, error: toWire(error) } satisfies ChannelMessage),
      );
    } else if (message.type === 'flush') {
      this.flush(message.timeoutMs).then(
        () => this.channel.postMessage({ type: 'flushed', id: message.id, producer: message.producer } satisfies ChannelMessage),
        (error) => this.channel.postMessage({ type: 'flushed', id: message.id, producer: message.producer, error: toWire(error) } satisfies ChannelMessage),
      );
    }
  }
}

/** An attached thread's view of the tier: requests to the creating thread. */
export class RemoteTier implements TierAccess {
  private readonly channel: BroadcastChannel;
  private readonly producer: number;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (m: ChannelMessage) => void }>();

  constructor(channelName: string, producer: number) {
    this.producer = producer;
    this.channel = new BroadcastChannel(channelName);
    this.channel.unref();
    this.channel.onmessage = (event: unknown) => {
      const message = (event as { data: ChannelMessage }).data;
      if ((message.type === 'fetched' || message.type === 'flushed') && message.producer === this.producer) {
        this.waiting.get(message.id)?.resolve(message);
        this.waiting.delete(message.id);
      }
    };
  }

  async fetch(key: string): Promise<RemoteValue> {
    const reply = await this.request({ type: 'fetch', id: this.nextId++, producer: this.producer, key });
    if (reply.type !== 'fetched') throw new Error('unexpected reply');
    if (reply.error) throw ShardCacheError.fromWire(reply.error);
    return { bytes: reply.bytes ? Buffer.from(reply.bytes) : null, ttlMs: reply.ttlMs };
  }

  fetchMany(keys: readonly string[]): Promise<RemoteValue[]> {
    return Promise.all(keys.map((key) => this.fetch(key)));
  }

  async flush(timeoutMs: number): Promise<void> {
    const reply = await this.request({ type: 'flush', id: this.nextId++, producer: this.producer, timeoutMs });
    if (reply.type === 'flushed' && reply.error) throw ShardCacheError.fromWire(reply.error);
  }

  async close(): Promise<void> {
    this.channel.close();
  }

  private request(message: ChannelMessage & { id: number }): Promise<ChannelMessage> {
    return new Promise((resolve) => {
      // Keep this thread alive while it waits for the answer (the channel is unref'd).
      const keepAlive = setInterval(() => {}, 1000);
      this.waiting.set(message.id, {
        resolve: (reply) => {
          clearInterval(keepAlive);
          resolve(reply);
        },
      });
      this.channel.postMessage(message);
    });
  }
}

function toWire(error: unknown): WireError {
  if (error instanceof ShardCacheError) return error.toWire();
  return { code: 'ERR_REDIS', message: (error as Error)?.message ?? String(error) };
}
