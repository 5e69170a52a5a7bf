/**
 * A thread's write queues and their registration with the owners.
 *
 * Each thread that writes gets a producer id and one ring per shard. The
 * creating thread's rings are handed to the owners at start-up; a thread that
 * attaches later posts them on the cache's BroadcastChannel and waits until
 * every owner has acknowledged them (an owner cannot apply a ring it has not
 * seen). Detaching posts `unregister`: the owners apply what is still queued,
 * then forget the rings.
 */
import { BroadcastChannel } from 'node:worker_threads';
import { ShardCacheError } from './errors.js';
import { C_NEXT_PRODUCER } from './memory/control.js';
import { createRing } from './memory/write-queue.js';
import type { CacheHandle, ChannelMessage, ProducerRings } from './messages.js';
import { ATTACH_RETRY_MS, ATTACH_TIMEOUT_MS, type ResolvedCoreOptions } from './options.js';

export function newProducer(control: Int32Array, options: ResolvedCoreOptions): ProducerRings {
  const producer = Atomics.add(control, C_NEXT_PRODUCER, 1);
  const rings = Array.from({ length: options.shards }, () => createRing(options.ringBytes));
  return { producer, rings };
}

/** Registers a producer's rings with every owner and waits for each to acknowledge. */
export async function registerProducer(handle: CacheHandle, producer: ProducerRings): Promise<void> {
  const channel = new BroadcastChannel(handle.channel);
  const acknowledged = new Set<number>();
  try {
    await new Promise<void>((resolve, reject) => {
      const post = () => channel.postMessage({ type: 'register', producer: producer.producer, rings: producer.rings } satisfies ChannelMessage);
      // Re-post until every owner answered: an owner being replaced right now
      // may have missed the first message.
      const retry = setInterval(post, ATTACH_RETRY_MS);
      const timeout = setTimeout(() => {
        clearInterval(retry);
        reject(new ShardCacheError('ERR_OWNER_FAILED', `attach: ${handle.shards.length - acknowledged.size} shard owner(s) did not answer within ${ATTACH_TIMEOUT_MS} ms`));
      }, ATTACH_TIMEOUT_MS);
      channel.onmessage = (event: unknown) => {
        const message = (event as { data: ChannelMessage }).data;
        if (message.type !== 'registered' || message.producer !== producer.producer) return;
        acknowledged.add(message.shard);
        if (acknowledged.size === handle.shards.length) {
          clearInterval(retry);
          clearTimeout(timeout);
          resolve();
        }
      };
      post();
    });
  } finally {
    channel.close();
  }
}

/** Tells the owners (and the supervisor) to apply what is left in the producer's rings and forget them. */
export function unregisterProducer(handle: CacheHandle, producer: number): void {
  const channel = new BroadcastChannel(handle.channel);
  channel.postMessage({ type: 'unregister', producer } satisfies ChannelMessage);
  channel.close();
}
