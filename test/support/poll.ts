// Bounded polling: the only way these helpers wait for a server to be ready.
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
