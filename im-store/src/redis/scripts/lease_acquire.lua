-- Takes or renews one partition lease (see src/redis/lease.rs).
-- KEYS: [1] the lease. ARGV: [1] holder, [2] ttl in ms.
-- Returns 1 if `holder` holds the lease now, else 0.
local v = redis.call('GET', KEYS[1])
if (not v) or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
