// Assertions on the errors the cache throws: a ShardCacheError with a given code.
import { expect } from 'vitest';
import { ShardCacheError } from 'shardcache';

/** Runs `fn` and returns the ShardCacheError it throws; fails if it throws anything else or nothing. */
export function expectCode(fn: () => unknown, code: string): ShardCacheError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  if (caught === undefined) throw new Error(`expected ${code}, nothing was thrown`);
  expect(caught).toBeInstanceOf(ShardCacheError);
  expect(caught).toBeInstanceOf(Error);
  expect((caught as ShardCacheError).name).toBe('ShardCacheError');
  expect((caught as ShardCacheError).code).toBe(code);
  return caught as ShardCacheError;
}

/** Awaits `promise` and returns the ShardCacheError it rejects with; fails if it resolves or rejects with another code. */
export async function expectRejectsCode(promise: Promise<unknown>, code: string): Promise<ShardCacheError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  if (caught === undefined) throw new Error(`expected a rejection with ${code}, it resolved`);
  expect(caught).toBeInstanceOf(ShardCacheError);
  expect((caught as ShardCacheError).code).toBe(code);
  return caught as ShardCacheError;
}
