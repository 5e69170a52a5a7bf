/**
 * A shard's owner: start-up and the owner loop. The logic it runs (applying
 * writes, evicting, expiring) lives in src/memory/ and is tested without threads.
 *
 * The loop drains every producer's ring, then sleeps on the shard's doorbell
 * with Atomics.waitAsync: an idle owner uses no CPU, and because it waits
 * asynchronously its event loop still receives register/unregister messages.
 */
import { BroadcastChannel, parentPort, workerData } from 'node:worker_threads';
import { H_DOORBELL, H_SLEEPING, H_STALLED, H_TTL_ENTRIES } from '../src/memory/layout.js';
import { ShardWriter, repairShard } from '../src/memory/shard-writer.js';
import { RingConsumer } from '../src/memory/write-queue.js';
import { wakeOwner } from '../src/memory/doorbell.js';
import { ChangeLog } from '../src/memory/change-log.js';
import type { ChannelMessage, FromOwner, OwnerData, ToOwner } from '../src/messages.js';

const data = workerData as OwnerData;
/** Records applied per ring before moving to the next, so one busy producer cannot starve the others. */
const BATCH = 256;
/** Batches between visits to the event loop (messages) while the owner is busy. */
const BATCHES_PER_YIELD = 64;
/** How often an idle owner with TTL entries wakes to sweep expired ones. */
const SWEEP_INTERVAL_MS = 1000;
const SWEEP_SLOTS = 8192;

repairShard(data.sab);
const writer = new ShardWriter(data.sab);
if (data.changeLog) writer.changeLog = new ChangeLog(data.changeLog, data.control, data.batchSize);
const consumers = new Map<number, RingConsumer>();
for (const p of data.producers) {
  const ring = p.rings[data.shard];
  if (ring) consumers.set(p.producer, new RingConsumer(ring));
}
const i32 = writer.i32;
let stopping = false;

const channel = new BroadcastChannel(data.channel);
channel.onmessage = (event: unknown) => {
  const message = (event as { data: ChannelMessage }).data;
  if (message.type === 'register') {
    const ring = message.rings[data.shard];
    if (ring && !consumers.has(message.producer)) consumers.set(message.producer, new RingConsumer(ring));
    channel.postMessage({ type: 'registered', producer: message.producer, shard: data.shard } satisfies ChannelMessage);
    wake();
  } else if (message.type === 'unregister') {
    const consumer = consumers.get(message.producer);
    // Apply what is still queued before forgetting the ring.
    if (consumer) {
      drainRing(consumer, Infinity);
      consumers.delete(message.producer);
    }
  }
};

parentPort!.on('message', (message: ToOwner) => {
  if (message.type === 'stop') {
    stopping = true;
    wake();
  }
});

function wake(): void {
  wakeOwner(i32);
}

/** Applies up to `limit` records of one ring. Returns how many, or -1 if the shard stalled. */
function drainRing(consumer: RingConsumer, limit: number): number {
  let applied = 0;
  while (applied < limit) {
    const offset = consumer.next();
    if (offset < 0) break;
    if (!writer.apply(consumer, offset)) {
      Atomics.store(i32, H_STALLED, 1);
      consumer.wakeWaiters();
      return -1;
    }
    consumer.done(offset);
    applied++;
  }
  if (applied > 0) consumer.wakeWaiters();
  return applied;
}

function drainAll(): number {
  let applied = 0;
  for (const consumer of consumers.values()) {
    const n = drainRing(consumer, BATCH);
    if (n > 0) applied += n;
  }
  if (applied > 0) Atomics.store(i32, H_STALLED, 0);
  return applied;
}

function hasWork(): boolean {
  for (const consumer of consumers.values()) if (consumer.hasWork()) return true;
  return false;
}

async function run(): Promise<void> {
  let batches = 0;
  let lastSweep = Date.now();
  while (!stopping) {
    if (drainAll() > 0) {
      if (++batches % BATCHES_PER_YIELD === 0) await new Promise((resolve) => setImmediate(resolve));
      continue;
    }
    if (data.spinMs > 0) {
      const spinUntil = performance.now() + data.spinMs;
      while (!hasWork() && performance.now() < spinUntil);
    }
    if (hasWork() && Atomics.load(i32, H_STALLED) === 0) continue;

    const now = Date.now();
    if (now - lastSweep >= SWEEP_INTERVAL_MS) {
      lastSweep = now;
      if (writer.sweepExpired(SWEEP_SLOTS) > 0) continue;
    }
    // Sleep. Read the doorbell before announcing sleep: a producer that
    // publishes after our hasWork() check will see SLEEPING and bump the
    // doorbell, so waitAsync returns at once instead of missing the write.
    const bell = Atomics.load(i32, H_DOORBELL);
    Atomics.store(i32, H_SLEEPING, 1);
    if (hasWork() && Atomics.load(i32, H_STALLED) === 0) {
      Atomics.store(i32, H_SLEEPING, 0);
      continue;
    }
    const timeout = Atomics.load(i32, H_TTL_ENTRIES) !== 0 ? SWEEP_INTERVAL_MS : Atomics.load(i32, H_STALLED) !== 0 ? 10 : Infinity;
    const result = Atomics.waitAsync(i32, H_DOORBELL, bell, timeout);
    if (result.async) await result.value;
    Atomics.store(i32, H_SLEEPING, 0);
  }
  // Apply whatever producers queued before close, then leave.
  while (drainAll() > 0);
  channel.close();
  parentPort!.postMessage({ type: 'stopped' } satisfies FromOwner);
  parentPort!.close();
}

parentPort!.postMessage({ type: 'ready' } satisfies FromOwner);
void run();
