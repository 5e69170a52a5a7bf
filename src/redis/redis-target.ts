/**
 * Where commands go: one Redis (or twemproxy, which looks like one), or a
 * Redis Cluster. A pipeline to a Cluster must stay on one node, so keys are
 * grouped by the node that serves their slot (as ioredis's auto-pipelining
 * groups by slot), each group a pipeline of its own.
 */
import calculateSlot from 'cluster-key-slot';
import { Cluster, type Redis } from 'ioredis';

export type Client = Redis | Cluster;

/** Splits `keys` (full Redis keys) into groups that can share one pipeline. Returns index groups. */
export function groupByNode(client: Client, keys: readonly string[]): number[][] {
  if (!(client instanceof Cluster)) return [keys.map((_, i) => i)];
  const slots = client.slots;
  const groups = new Map<string, number[]>();
  for (let i = 0; i < keys.length; i++) {
    const slot = calculateSlot(keys[i]!);
    // Before the slot map is known, group by slot: always correct, just more pipelines.
    const node = slots[slot]?.[0] ?? `slot:${slot}`;
    let group = groups.get(node);
    if (group === undefined) groups.set(node, (group = []));
    group.push(i);
  }
  return [...groups.values()];
}

/** Whether a failure is the connection's (retry without limit), not the key's. */
export function isConnectionError(error: unknown): boolean {
  const name = (error as Error | undefined)?.name;
  const message = String((error as Error | undefined)?.message ?? '');
  if (name === 'ReplyError') {
    // Cluster redirections and loading are transient, not the key's fault.
    return /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN|LOADING|MASTERDOWN)/.test(message);
  }
  return true;
}
