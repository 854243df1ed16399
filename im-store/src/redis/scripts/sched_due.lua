-- The sends due at a time, soonest first (see src/redis/schedule.rs).
-- KEYS: [1] the due sorted set, [2] the items hash.
-- ARGV: [1] now (Unix ms), [2] the most to return.
-- Returns a flat array: msg_id, item JSON (nil if the item is missing), ...
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
local chunk = 500
for first = 1, #ids, chunk do
  local last = math.min(first + chunk - 1, #ids)
  local vals = redis.call('HMGET', KEYS[2], unpack(ids, first, last))
  for i = first, last do
    out[2 * i - 1] = ids[i]
    out[2 * i] = vals[i - first + 1]
  end
end
return out
