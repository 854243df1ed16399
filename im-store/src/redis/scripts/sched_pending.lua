-- An owner's held sends, soonest first (see src/redis/schedule.rs).
-- KEYS: [1] the owner's sorted set, [2] the items hash.
-- Returns the item JSONs; ids whose item is gone (dead-lettered) are dropped
-- from the owner's set.
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for _, id in ipairs(ids) do
  local v = redis.call('HGET', KEYS[2], id)
  if v then
    out[#out + 1] = v
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
