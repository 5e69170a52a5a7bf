import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * Lets the event loop turn once: timers and I/O run, messages arrive, the
 * owners' supervisor sees an exit. For letting work in the background go on
 * between chunks of a test's own work, never for waiting on a result.
 */
export function turn(): Promise<void> {
  return nextTurn();
}
