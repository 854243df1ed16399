-- Takes one token of a bucket (see src/redis/throttle.rs).
-- KEYS: [1] the bucket (hash: t = tokens left, at = last refill, ms).
-- ARGV: [1] tokens per second (> 0), [2] burst (>= 1).
-- Returns 0 when taken, else the milliseconds until a token is back (a
-- refused take writes nothing). The clock is the server's, one for all
-- instances.
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(v[1]) or burst
local at = tonumber(v[2]) or now
if now > at then tokens = math.min(burst, tokens + (now - at) / 1000 * rate) end
if tokens >= 1 then
  tokens = tokens - 1
  redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', now)
  -- Gone once full again: a full bucket is what a missing key means.
  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
  return 0
end
return math.max(1, math.ceil((1 - tokens) / rate * 1000))
