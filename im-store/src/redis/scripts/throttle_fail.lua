-- Counts a failure and starts its lockout (see src/redis/throttle.rs).
-- KEYS: [1] the failure record (hash: n = failures, u = locked until, ms).
-- ARGV: [1] free failures, [2] first lockout ms, [3] longest lockout ms,
--       [4] how long a failure is remembered, ms.
-- Returns the lockout started, ms (0 for none).
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local free, base, max, forget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
local lock = 0
if n > free then lock = math.min(max, base * 2 ^ math.min(n - free - 1, 40)) end
lock = math.floor(lock)
redis.call('HSET', KEYS[1], 'u', now + lock)
redis.call('PEXPIRE', KEYS[1], math.max(forget, lock))
return lock
