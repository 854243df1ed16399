-- Gives up claims of sends that were not admitted (see src/redis/pipeline.rs).
-- KEYS: [1] the key partition's current claim bucket, [2] its previous one.
-- ARGV: n key fields, then n conversations: a field is deleted only while it
-- still names that conversation.
local n = #ARGV / 2
for i = 1, n do
  for k = 1, #KEYS do
    if redis.call('HGET', KEYS[k], ARGV[i]) == ARGV[n + i] then
      redis.call('HDEL', KEYS[k], ARGV[i])
    end
  end
end
return 0
