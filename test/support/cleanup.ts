// Clean-up that cannot be forgotten: whatever a test or suite starts (a cache,
// a client, a pool, a frozen server) registers how to undo it right where it
// is made, and the steps run after the test (or suite) however it ended.
import { afterAll, afterEach } from 'vitest';

/** Runs registered clean-up steps in reverse order; every step runs even if one fails. */
export class Cleanup {
  private readonly steps: Array<() => unknown> = [];

  add(step: () => unknown): void {
    this.steps.push(step);
  }

  async run(): Promise<void> {
    const errors: unknown[] = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await step();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'clean-up failed');
  }
}

/** A Cleanup run after each test of the enclosing describe (or file). */
export function cleanupAfterEach(): Cleanup {
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());
  return cleanup;
}

/** A Cleanup run once the enclosing describe (or file) is done: for what a beforeAll made. */
export function cleanupAfterAll(): Cleanup {
  const cleanup = new Cleanup();
  afterAll(() => cleanup.run());
  return cleanup;
}
