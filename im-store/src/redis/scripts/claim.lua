#!lua
-- Claims idempotency keys in their key partition (see src/redis/pipeline.rs).
-- A key's claim names the conversation its send went to, so a retry that
-- names another conversation still finds its original send (PROTOCOL.md:
-- sends are idempotent per (sender, client_msg_id), whatever the payload).
-- KEYS: [1] the key partition's current claim bucket, [2] its previous one
--       (hashes: key field -> conversation).
-- ARGV: [1] bucket lifetime in ms, [2] n, then n key fields, then n
--       conversations.
-- Returns per key: 0 when claimed now, 1 when already held for the same
-- conversation (also by an earlier key of this call), else the conversation
-- that holds the claim.
local n = tonumber(ARGV[2])
local cur = redis.call('HMGET', KEYS[1], unpack(ARGV, 3, 2 + n))
local prev = {}
if KEYS[2] ~= KEYS[1] then prev = redis.call('HMGET', KEYS[2], unpack(ARGV, 3, 2 + n)) end
local out, mine, set = {}, {}, {}
for i = 1, n do
  local conv = ARGV[2 + n + i]
  local k = ARGV[2 + i]
  local held = cur[i] or prev[i] or mine[k]
  if held and held ~= conv then
    out[i] = held
  elseif held then
    out[i] = 1
  else
    mine[k] = conv
    set[#set + 1] = k
    set[#set + 1] = conv
    out[i] = 0
  end
end
if #set > 0 then
  redis.call('HSET', KEYS[1], unpack(set))
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return out
