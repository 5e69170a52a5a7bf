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
 * The value is msgpack (the cache's format), decoded and re-encoded with Lua's
 * cmsgpack; its TTL is kept. Returns the new value as a string (a Lua number
 * returned as an integer reply would lose its fraction).
 */
export const INCREMENT = `
local current = redis.call('GET', KEYS[1])
local n = 0
if current then
  n = cmsgpack.unpack(current)
  if type(n) ~= 'number' then return redis.error_reply('ERR_NOT_A_NUMBER value is not a number') end
end
n = n + tonumber(ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('SET', KEYS[1], cmsgpack.pack(n), 'PX', ttl)
else
  redis.call('SET', KEYS[1], cmsgpack.pack(n))
end
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return tostring(n)`;
