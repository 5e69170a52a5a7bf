import type { CodecKind } from './redis-codec.js';

/**
 * The Lua scripts the Redis tier runs. Each touches only the keys it is given
 * (so it works in a Cluster when they share a hash tag).
 */

/** KEYS: lock, fence. ARGV: token, ttl ms. Returns the new fencing token, or 0 if the lock is held. */
export const ACQUIRE_LOCK = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0`;

/** KEYS: lock. ARGV: token. Deletes the lock only if this token holds it: never another holder's. */
export const RELEASE_LOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`;

/** KEYS: lock. ARGV: token, ttl ms. */
export const EXTEND_LOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`;

/**
 * KEYS: value key. ARGV: increment, invalidation channel, invalidation message.
 * Reads the number in the codec's bytes (`decode`), adds, and stores it back
 * in the same codec, keeping the key's TTL. The new number is returned as the
 * text `%.17g` writes, which names a double exactly (Lua's tostring keeps only
 * 14 digits); the 'string' codec stores that same text.
 */
function increment(decode: string, encode: string): string {
  return `
local current = redis.call('GET', KEYS[1])
local n = 0
if current then
  local ok, decoded = pcall(function() ${decode} end)
  if not ok then return redis.error_reply('ERR_DECODE the value does not decode') end
  if type(decoded) ~= 'number' then return redis.error_reply('ERR_NOT_A_NUMBER the value is not a number') end
  n = decoded
end
n = n + tonumber(ARGV[1])
if n ~= n or n == math.huge or n == -math.huge then return redis.error_reply('ERR_NOT_A_NUMBER the result is not finite') end
local text = string.format('%.17g', n)
local stored = ${encode}
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('SET', KEYS[1], stored, 'PX', ttl)
else
  redis.call('SET', KEYS[1], stored)
end
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return text`;
}

const INCREMENT: Partial<Record<CodecKind, string>> = {
  // cmsgpack writes an integral number as a msgpack int, any other as a double.
  msgpack: increment('return cmsgpack.unpack(current)', 'cmsgpack.pack(n)'),
  json: increment('return cjson.decode(current)', 'text'),
  // tonumber also reads hex and exponents: any number a service may have written as text.
  string: increment('return tonumber(current)', 'text'),
};

/** The increment script for a codec, or undefined where Redis cannot read the codec's values. */
export function incrementScript(codec: CodecKind): string | undefined {
  return INCREMENT[codec];
}
