-- Holds a scheduled send unless its key is remembered (see src/redis/schedule.rs).
-- KEYS: [1] the key string, [2] the due sorted set, [3] the items hash,
--       [4] the owner's sorted set.
-- ARGV: [1] the send's JSON, [2] the key's lifetime in ms, [3] msg_id,
--       [4] deliver_at (Unix ms).
-- Returns nil when held now, else the JSON of the send first held under the key.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[1])
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
  return false
end
return redis.call('GET', KEYS[1])
