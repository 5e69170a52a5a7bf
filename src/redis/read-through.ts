/**
 * Read-through: what `fetch` does after a local miss, on the thread that owns
 * the Redis connection. One request per key is in flight at a time however many
 * callers (and, through the owning thread, however many threads) ask: the
 * others share its promise. GET and PTTL go in one pipeline, one round trip, so
 * the local copy expires when Redis's does.
 */
import calculateSlot from 'cluster-key-slot';
import { Cluster } from 'ioredis';
import { groupByNode, type Client } from './redis-target.js';

export interface RemoteValue {
  /** The msgpack bytes in Redis, or null if the key is absent. */
  bytes: Buffer | null;
  /** Remaining TTL in ms, or 0 for none. */
  ttlMs: number;
  /**
   * False if the key was invalidated while the read was in flight: the bytes
   * may predate another process's write, so they are returned but not cached
   * (the race described in Redis's client-side caching documentation).
   */
  cacheable: boolean;
}

export class ReadThrough {
  private readonly client: Client;
  private readonly keyPrefix: string;
  private readonly inFlight = new Map<string, { promise: Promise<RemoteValue>; stale: boolean }>();
  /** Bumped by invalidateAll: reads started before it are not cached. */
  private epoch = 0;
  /** Bumped by every invalidate: a batch read during one is not cached. */
  private invalidations = 0;

  constructor(client: Client, keyPrefix: string) {
    this.client = client;
    this.keyPrefix = keyPrefix;
  }

  get(key: string): Promise<RemoteValue> {
    let request = this.inFlight.get(key);
    if (request === undefined) {
      const epoch = this.epoch;
      const entry = { promise: undefined as unknown as Promise<RemoteValue>, stale: false };
      entry.promise = this.read(key).then((remote) => {
        remote.cacheable = !entry.stale && epoch === this.epoch;
        return remote;
      }).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, entry);
      request = entry;
    }
    return request.promise;
  }

  /** Another process changed `keys`: reads of them now in flight must not be cached. */
  invalidate(keys: readonly string[]): void {
    this.invalidations++;
    for (const key of keys) {
      const request = this.inFlight.get(key);
      if (request) request.stale = true;
    }
  }

  invalidateAll(): void {
    this.epoch++;
  }

  /** A read of its own, not shared with one in flight. */
  readFresh(key: string): Promise<RemoteValue> {
    return this.read(key);
  }

  private async read(key: string): Promise<RemoteValue> {
    const redisKey = this.keyPrefix + key;
    const results = await this.client.pipeline().getBuffer(redisKey).pttl(redisKey).exec();
    return toRemote(results?.[0], results?.[1]);
  }

  /**
   * One pipeline per node: MGET (one per slot in a Cluster, where a multi-key
   * command must stay in one slot) plus a PTTL per key. Order of `keys` kept.
   */
  async getMany(keys: readonly string[]): Promise<RemoteValue[]> {
    const redisKeys = keys.map((key) => this.keyPrefix + key);
    const out = new Array<RemoteValue>(keys.length);
    const epoch = this.epoch;
    const invalidations = this.invalidations;
    const cluster = this.client instanceof Cluster;
    await Promise.all(groupByNode(this.client, redisKeys).map(async (group) => {
      const mgets = cluster ? groupBySlot(group, redisKeys) : [group];
      const pipeline = this.client.pipeline();
      for (const part of mgets) pipeline.mgetBuffer(...part.map((i) => redisKeys[i]!));
      for (const part of mgets) for (const i of part) pipeline.pttl(redisKeys[i]!);
      const results = (await pipeline.exec()) ?? [];
      let r = mgets.length;
      mgets.forEach((part, m) => {
        const [error, values] = results[m] ?? [new Error('no reply from Redis'), null];
        if (error) throw error;
        part.forEach((i, n) => {
          out[i] = toRemote([null, (values as (Buffer | null)[])[n] ?? null], results[r++]);
          // No per-key tracking for batches: any invalidation meanwhile makes them uncacheable.
          out[i]!.cacheable = epoch === this.epoch && invalidations === this.invalidations;
        });
      });
    }));
    return out;
  }
}

function groupBySlot(group: number[], redisKeys: readonly string[]): number[][] {
  const bySlot = new Map<number, number[]>();
  for (const i of group) {
    const slot = calculateSlot(redisKeys[i]!);
    const list = bySlot.get(slot);
    if (list) list.push(i);
    else bySlot.set(slot, [i]);
  }
  return [...bySlot.values()];
}

function toRemote(get: [Error | null, unknown] | undefined, pttl: [Error | null, unknown] | undefined): RemoteValue {
  if (!get) throw new Error('no reply from Redis');
  if (get[0]) throw get[0];
  const bytes = (get[1] as Buffer | null) ?? null;
  const ms = pttl && !pttl[0] ? Number(pttl[1]) : -1;
  return { bytes, ttlMs: ms > 0 ? ms : 0, cacheable: true };
}
