// Bounded polling: the only way these helpers and the tests wait for a
// condition (a server to be ready, a flush to land, an entry to expire).
import { setTimeout as delay } from 'node:timers/promises';

export interface PollOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Returns a reason to give up early, e.g. the server process already exited. */
  abortIf?: () => string | undefined;
}

export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  { timeoutMs = 10_000, intervalMs = 50, abortIf }: PollOptions = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reason = abortIf?.();
    if (reason !== undefined) throw new Error(`gave up waiting for ${what}: ${reason}`);
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(intervalMs);
  }
}

/** Polls a condition (synchronous or not) every 10 ms until it holds, failing after `timeoutMs`. */
export function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  return waitUntil(what, async () => check(), { timeoutMs, intervalMs: 10 });
}
