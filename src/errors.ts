/**
 * Every error shardcache raises is a `ShardCacheError` with a stable `code`.
 * Codes follow Node's style so callers can branch on `err.code` without
 * parsing messages. Errors that cross a thread boundary travel as
 * `{ code, message }` and are rebuilt here with `fromWire`.
 */
export type ShardCacheErrorCode =
  | 'ERR_INVALID_OPTION'
  | 'ERR_INVALID_KEY'
  | 'ERR_VALUE_TOO_LARGE'
  | 'ERR_UNSERIALIZABLE'
  | 'ERR_CLOSED'
  | 'ERR_BACKPRESSURE'
  | 'ERR_FLUSH_TIMEOUT'
  | 'ERR_DECODE'
  | 'ERR_LOCK_TIMEOUT'
  | 'ERR_LOCK_LOST'
  | 'ERR_NOT_SUPPORTED'
  | 'ERR_NOT_A_NUMBER'
  | 'ERR_REDIS'
  | 'ERR_REFRESH_FAILED'
  | 'ERR_OWNER_FAILED';

export class ShardCacheError extends Error {
  readonly code: ShardCacheErrorCode;

  constructor(code: ShardCacheErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ShardCacheError';
    this.code = code;
  }

  toWire(): { code: ShardCacheErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }

  static fromWire(wire: { code: ShardCacheErrorCode; message: string }): ShardCacheError {
    return new ShardCacheError(wire.code, wire.message);
  }
}

export function invalidOption(name: string, requirement: string, got: unknown): ShardCacheError {
  return new ShardCacheError(
    'ERR_INVALID_OPTION',
    `options.${name} ${requirement} (got ${describe(got)})`,
  );
}

export function closedError(): ShardCacheError {
  return new ShardCacheError('ERR_CLOSED', 'the cache is closed; create or attach a new one');
}

/** A short, safe description of a bad input for error messages. */
export function describe(value: unknown): string {
  if (typeof value === 'string') {
    return value.length > 40 ? `a string of length ${value.length}` : JSON.stringify(value);
  }
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'symbol') return 'a symbol';
  return Array.isArray(value) ? 'an array' : 'an object';
}
