-- Cancels a held send of its owner (see src/redis/schedule.rs).
-- KEYS: [1] the owner's sorted set, [2] the due sorted set, [3] the items hash.
-- ARGV: [1] msg_id.
-- Returns 1 if the owner's send was held (and is now gone), else 0.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[3], ARGV[1])
