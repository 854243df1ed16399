-- The time left of a lockout, ms (0 for none) (see src/redis/throttle.rs).
-- KEYS: [1] the failure record (hash: n = failures, u = locked until, ms).
local u = tonumber(redis.call('HGET', KEYS[1], 'u'))
if not u then return 0 end
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
return math.max(0, u - now)
