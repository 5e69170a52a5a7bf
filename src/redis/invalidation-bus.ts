/**
 * The invalidation bus: after this process's writes reach Redis, it publishes
 * their keys; every other process connected to the same Redis drops its local
 * copies, so its next `get` misses and its next `fetch` reads the new value.
 *
 * Messages are msgpack `[nodeId, keys[]]` on `<keyPrefix>__invalidate`; a
 * process ignores its own. Plain PUBLISH/SUBSCRIBE: a Redis Cluster forwards
 * them to every node, so it works there too; twemproxy proxies no pub/sub.
 *
 * A missed message must not leave a stale value forever: when the subscriber
 * connection comes back after losing it, every local entry that does not wait
 * for Redis is dropped (entries still waiting for Redis are this process's
 * newer writes and are kept).
 */
import { randomUUID } from 'node:crypto';
import { pack, unpack } from 'msgpackr';
import { Cluster } from 'ioredis';
import type { Client } from './redis-target.js';

export interface InvalidationHandlers {
  /** Another process changed these keys. */
  drop(keys: string[]): void;
  /** Messages may have been missed. */
  dropAll(): void;
}

export class InvalidationBus {
  readonly nodeId = randomUUID();
  readonly channel: string;
  private readonly publisher: Client;
  private readonly subscriber: Client;
  private readonly handlers: InvalidationHandlers;
  private connectedOnce = false;
  /** Resolves once the subscription is active. */
  readonly ready: Promise<void>;

  constructor(client: Client, keyPrefix: string, handlers: InvalidationHandlers) {
    this.channel = `${keyPrefix}__invalidate`;
    this.publisher = client;
    this.handlers = handlers;
    this.subscriber = client instanceof Cluster ? client.duplicate() : client.duplicate();
    this.subscriber.on('error', () => {
      // Reconnection is ioredis's job; the 'ready' after it triggers dropAll.
    });
    this.subscriber.on('ready', () => {
      if (this.connectedOnce) this.handlers.dropAll();
      this.connectedOnce = true;
    });
    this.subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => {
      if (channel.toString() !== this.channel) return;
      let decoded: unknown;
      try {
        decoded = unpack(message);
      } catch {
        return; // not ours
      }
      if (!Array.isArray(decoded) || decoded[0] === this.nodeId || !Array.isArray(decoded[1])) return;
      this.handlers.drop(decoded[1].filter((k): k is string => typeof k === 'string'));
    });
    this.ready = this.subscriber.subscribe(this.channel).then(() => undefined);
    this.ready.catch(() => {});
  }

  /** The message announcing that `keys` changed. */
  message(keys: readonly string[]): Buffer {
    return pack([this.nodeId, keys]);
  }

  publish(keys: readonly string[]): void {
    if (keys.length === 0) return;
    this.publisher.publish(this.channel, this.message(keys)).catch(() => {
      // A lost publish is what the reconnect policy of the receivers is for.
    });
  }

  async close(): Promise<void> {
    this.subscriber.disconnect();
  }
}
