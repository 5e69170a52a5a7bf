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
import { R_TAIL, Ring, waitForTail } from '../memory/write-queue.js';
import type { ChannelMessage, WireError } from '../messages.js';
import type { OwnerPool } from '../owner-pool.js';
import { randomBytes } from 'node:crypto';
import type { InvalidationBus } from './invalidation-bus.js';
import { ReadThrough, type RemoteValue } from './read-through.js';
import { ACQUIRE_LOCK, EXTEND_LOCK, RELEASE_LOCK, incrementScript } from './redis-scripts.js';
import type { ResolvedRedisOptions } from './redis-options.js';
import type { RedisCodec } from './redis-codec.js';
import type { WriteBehind } from './write-behind.js';
import type { WritePath } from '../write-path.js';

/**
 * A key read from Redis, converted from the codec's bytes to what the shard
 * keeps (redis-codec.ts), so that any thread can decode it.
 */
export interface TierValue {
  found: boolean;
  /** The shard's bytes for the value; null if absent, or if the shard cannot keep it (then in `value`). */
  bytes: Buffer | null;
  value?: unknown;
  /** Remaining TTL in ms, or 0 for none. */
  ttlMs: number;
  /** False if the value may predate another process's write (see RemoteValue): return it, don't keep it. */
  cacheable: boolean;
  /** fetchMany only: this key's bytes did not decode (ERR_DECODE); the other keys are unaffected. */
  error?: WireError;
}

export interface TierAccess {
  /** Rejects with ERR_DECODE if the key's bytes do not decode. */
  fetch(key: string): Promise<TierValue>;
  /** A fresh read, not shared with reads already in flight (for update under a lock). */
  read(key: string): Promise<TierValue>;
  fetchMany(keys: readonly string[]): Promise<TierValue[]>;
  /** Resolves once every write issued (by any thread) before the call is in Redis. */
  flush(timeoutMs: number): Promise<void>;
  /** One attempt at the Redis lock: { token, fence } or null if someone holds it. */
  lockAcquire(key: string, ttlMs: number): Promise<{ token: string; fence: number } | null>;
  lockRelease(key: string, token: string): Promise<boolean>;
  lockExtend(key: string, token: string, ttlMs: number): Promise<boolean>;
  /** INCRBY decided in Redis (on the codec's value); returns the new value and what to keep locally. */
  incr(key: string, by: number): Promise<{ value: number; local: unknown }>;
  close(): Promise<void>;
}

type Method = Exclude<keyof TierAccess, 'close'>;

export interface RedisTierConfig {
  options: ResolvedRedisOptions;
  codec: RedisCodec;
  writeBehind: WriteBehind | undefined;
  bus: InvalidationBus | undefined;
  pool: OwnerPool;
  channel: string;
  /** This thread's write queues (to wake owners). */
  writes: WritePath;
  /** The write generation of a key's shard, taken before a read (see keepLocalCopy in fetcher.ts). */
  generationOf: (key: string) => number;
  /** Keeps a local copy of a value read from Redis for another thread (this thread orders it after invalidations). */
  keepLocal: (key: string, remote: TierValue, generation: number) => void;
}

export class RedisTier implements TierAccess {
  private readonly config: RedisTierConfig;
  readonly readThrough: ReadThrough;
  private readonly channel: BroadcastChannel;

  constructor(config: RedisTierConfig) {
    this.config = config;
    this.readThrough = new ReadThrough(config.options.client, config.options.keyPrefix);
    this.channel = new BroadcastChannel(config.channel);
    this.channel.unref();
    this.channel.onmessage = (event: unknown) => this.serve((event as { data: ChannelMessage }).data);
  }

  private get client() {
    return this.config.options.client;
  }

  private key(key: string): string {
    return this.config.options.keyPrefix + key;
  }

  async fetch(key: string): Promise<TierValue> {
    return this.convert(key, await this.readThrough.get(key));
  }

  async fetchMany(keys: readonly string[]): Promise<TierValue[]> {
    const remote = await this.readThrough.getMany(keys);
    return remote.map((found, i) => {
      try {
        return this.convert(keys[i]!, found);
      } catch (error) {
        return { found: true, bytes: null, ttlMs: 0, cacheable: false, error: toWire(error) };
      }
    });
  }

  async read(key: string): Promise<TierValue> {
    return this.convert(key, await this.readThrough.readFresh(key));
  }

  /** Redis bytes to the shard's; throws ERR_DECODE. */
  private convert(key: string, remote: RemoteValue): TierValue {
    if (remote.bytes === null) return { found: false, bytes: null, ttlMs: 0, cacheable: remote.cacheable };
    const converted = this.config.codec.fromRedis(remote.bytes, key);
    return { found: true, ...converted, ttlMs: remote.ttlMs, cacheable: remote.cacheable && converted.bytes !== null };
  }

  async flush(timeoutMs: number): Promise<void> {
    const writeBehind = this.config.writeBehind;
    if (!writeBehind) return;
    const deadline = Date.now() + timeoutMs;
    // 1. Every write queued by any thread so far must be applied by its owner,
    //    which logs it. Owners may be stalled on maxPending, so keep flushing.
    const queued = this.config.pool.producerRings().flatMap((p) => p.rings.map((sab, shard) => {
      const ring = new Ring(sab);
      return { ring, shard, target: Atomics.load(ring.i32, 0) };
    }));
    for (const { ring, shard, target } of queued) {
      for (;;) {
        const tail = Atomics.load(ring.i32, R_TAIL);
        if (ring.consumedThrough(target)) break;
        if (Date.now() > deadline) {
          throw new ShardCacheError('ERR_FLUSH_TIMEOUT', `flush() timed out after ${timeoutMs} ms with ${writeBehind.pending} write(s) still pending for Redis (and more not yet applied by shard ${shard}'s owner)`);
        }
        writeBehind.kick();
        this.config.writes.wake(shard);
        await waitForTail(ring, tail, 5);
      }
    }
    // 2. Everything logged so far must be acknowledged by Redis (or failed).
    await writeBehind.waitFlushed(writeBehind.logHeads(), Math.max(0, deadline - Date.now()));
  }

  /** Lock and fencing keys share a hash tag, so the script stays in one Cluster slot. */
  private lockKeys(key: string): [string, string] {
    const prefix = this.config.options.keyPrefix;
    return [`${prefix}lock:{${key}}`, `${prefix}fence:{${key}}`];
  }

  async lockAcquire(key: string, ttlMs: number): Promise<{ token: string; fence: number } | null> {
    const token = randomBytes(16).toString('hex');
    const [lockKey, fenceKey] = this.lockKeys(key);
    const fence = Number(await this.client.eval(ACQUIRE_LOCK, 2, lockKey, fenceKey, token, Math.ceil(ttlMs)));
    return fence > 0 ? { token, fence } : null;
  }

  async lockRelease(key: string, token: string): Promise<boolean> {
    return Number(await this.client.eval(RELEASE_LOCK, 1, this.lockKeys(key)[0], token)) === 1;
  }

  async lockExtend(key: string, token: string, ttlMs: number): Promise<boolean> {
    return Number(await this.client.eval(EXTEND_LOCK, 1, this.lockKeys(key)[0], token, Math.ceil(ttlMs))) === 1;
  }

  async incr(key: string, by: number): Promise<{ value: number; local: unknown }> {
    const bus = this.config.bus;
    const codec = this.config.codec.kind;
    const script = incrementScript(codec);
    if (script === undefined) {
      throw new ShardCacheError('ERR_NOT_SUPPORTED', `incr() runs in Redis, which cannot read values of options.redis.codec ${codec}: use update(key, (n) => (n ?? 0) + by) instead`);
    }
    try {
      // The script returns the new number as the text it stored (%.17g, exact for doubles).
      const text = String(await this.client.eval(script, 1, this.key(key), String(by), bus ? bus.channel : '', bus ? bus.message([key]) : ''));
      const value = Number(text);
      return { value, local: codec === 'string' ? text : value };
    } catch (error) {
      const message = String((error as Error)?.message);
      if (/ERR_NOT_A_NUMBER/.test(message)) {
        throw new ShardCacheError('ERR_NOT_A_NUMBER', `incr: the value of ${JSON.stringify(key)} in Redis is not a number (or the sum is not finite)`, { cause: error });
      }
      if (/ERR_DECODE/.test(message)) {
        throw new ShardCacheError('ERR_DECODE', `incr: the bytes stored in Redis for key ${JSON.stringify(key)} do not decode with options.redis.codec (${codec})`, { cause: error });
      }
      throw error;
    }
  }

  async close(): Promise<void> {
    this.config.writeBehind?.stop();
    this.channel.close();
    await this.config.bus?.close();
    if (this.config.options.ownsClient) {
      try {
        await this.client.quit();
      } catch {
        this.client.disconnect();
      }
    }
  }

  /** Answers an attached thread's call. */
  private serve(message: ChannelMessage): void {
    if (message.type !== 'call') return;
    const { id, producer, method, args } = message;
    const reply = (value: unknown, error?: WireError) =>
      this.channel.postMessage({ type: 'result', id, producer, value, error } satisfies ChannelMessage);
    let work: Promise<unknown>;
    if (method === 'fetch') {
      const key = args[0] as string;
      // This thread stores the local copy, so that it is ordered with the
      // invalidations this thread applies; the caller must not store it too.
      const generation = this.config.generationOf(key);
      work = this.fetch(key).then((remote) => {
        this.config.keepLocal(key, remote, generation);
        return { ...remote, cacheable: false };
      });
    } else {
      work = (this[method] as (...a: unknown[]) => Promise<unknown>)(...args);
    }
    work.then((value) => reply(value), (error) => reply(undefined, toWire(error)));
  }
}

/** An attached thread's view of the tier: calls forwarded to the creating thread. */
export class RemoteTier implements TierAccess {
  private readonly channel: BroadcastChannel;
  private readonly producer: number;
  private nextId = 1;
  private readonly waiting = new Map<number, (reply: ChannelMessage) => void>();

  constructor(channelName: string, producer: number) {
    this.producer = producer;
    this.channel = new BroadcastChannel(channelName);
    this.channel.unref();
    this.channel.onmessage = (event: unknown) => {
      const message = (event as { data: ChannelMessage }).data;
      if (message.type === 'result' && message.producer === this.producer) {
        this.waiting.get(message.id)?.(message);
        this.waiting.delete(message.id);
      }
    };
  }

  async fetch(key: string): Promise<TierValue> {
    return asBuffer((await this.call('fetch', [key])) as TierValue);
  }

  fetchMany(keys: readonly string[]): Promise<TierValue[]> {
    return Promise.all(keys.map((key) => this.fetch(key).catch((error: unknown): TierValue => {
      if (error instanceof ShardCacheError && error.code === 'ERR_DECODE') return { found: true, bytes: null, ttlMs: 0, cacheable: false, error: error.toWire() };
      throw error;
    })));
  }

  async read(key: string): Promise<TierValue> {
    return asBuffer((await this.call('read', [key])) as TierValue);
  }

  async flush(timeoutMs: number): Promise<void> {
    await this.call('flush', [timeoutMs]);
  }

  lockAcquire(key: string, ttlMs: number) {
    return this.call('lockAcquire', [key, ttlMs]) as Promise<{ token: string; fence: number } | null>;
  }

  lockRelease(key: string, token: string) {
    return this.call('lockRelease', [key, token]) as Promise<boolean>;
  }

  lockExtend(key: string, token: string, ttlMs: number) {
    return this.call('lockExtend', [key, token, ttlMs]) as Promise<boolean>;
  }

  incr(key: string, by: number) {
    return this.call('incr', [key, by]) as Promise<{ value: number; local: unknown }>;
  }

  async close(): Promise<void> {
    this.channel.close();
  }

  private call(method: Method, args: unknown[]): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      // Keep this thread alive while it waits for the answer (the channel is unref'd).
      const keepAlive = setInterval(() => {}, 1000);
      this.waiting.set(id, (reply) => {
        clearInterval(keepAlive);
        if (reply.type !== 'result') return;
        if (reply.error) reject(ShardCacheError.fromWire(reply.error));
        else resolve(reply.value);
      });
      this.channel.postMessage({ type: 'call', id, producer: this.producer, method, args } satisfies ChannelMessage);
    });
  }
}

/** A Buffer arrives as a plain Uint8Array through the channel. */
function asBuffer(remote: TierValue): TierValue {
  return remote.bytes ? { ...remote, bytes: Buffer.from(remote.bytes.buffer, remote.bytes.byteOffset, remote.bytes.byteLength) } : remote;
}

function toWire(error: unknown): WireError {
  if (error instanceof ShardCacheError) return error.toWire();
  return { code: 'ERR_REDIS', message: (error as Error)?.message ?? String(error) };
}
