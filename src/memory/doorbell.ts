/**
 * Waking a shard's owner. An idle owner sleeps in Atomics.waitAsync on its
 * shard's doorbell word (H_DOORBELL) after announcing it in H_SLEEPING (see
 * workers/shard-worker.ts for the owner's half of the handshake).
 *
 * Waking a sleeping thread costs a system call here and ~60 µs there, so
 * producers ring only when the owner said it sleeps, and only the producer
 * that flips SLEEPING from 1 to 0 pays for the notify; the others see 0 and
 * know a wake-up is on its way. The doorbell is bumped before the notify so
 * an owner that read the old value just before sleeping returns at once
 * instead of missing the write.
 */
import { H_DOORBELL, H_SLEEPING } from './layout.js';

/** Wakes the owner of the shard whose header words `shardI32` maps, asleep or not. */
export function wakeOwner(shardI32: Int32Array): void {
  Atomics.add(shardI32, H_DOORBELL, 1);
  Atomics.notify(shardI32, H_DOORBELL);
}

/** Wakes the owner if it announced sleep: the cheap call for every burst of writes. */
export function wakeOwnerIfSleeping(shardI32: Int32Array): void {
  if (Atomics.load(shardI32, H_SLEEPING) === 1 && Atomics.compareExchange(shardI32, H_SLEEPING, 1, 0) === 1) {
    wakeOwner(shardI32);
  }
}
