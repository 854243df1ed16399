-- Admits a batch of sends in one call (see src/redis/pipeline.rs).
-- KEYS: per admission i (1-based), KEYS[3i-2] = dedup key, KEYS[3i-1] = seq
--       counter, KEYS[3i] = stream shard.
-- ARGV: ARGV[1] = dedup TTL in ms; per admission, ARGV[3i-1] = envelope JSON
--       (its seq is overridden by the entry's `s` field), ARGV[3i] and
--       ARGV[3i+1] = the ack JSON before and after its seq number.
-- Returns per admission: {0, stored} for a key claimed before (including by
-- an earlier admission of this batch), the seq (an integer) when admitted,
-- {2, error} when the XADD failed (no key is left behind; the seq is skipped).
-- The reply is kept small on purpose: the caller already has the ack.
local ttl = ARGV[1]
local n = #KEYS / 3
local out = {}
for i = 1, n do
  local dk, sk, xk = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local prev = redis.call('GET', dk)
  if prev then
    out[i] = {0, prev}
  else
    local seq = redis.call('INCR', sk)
    local id = redis.pcall('XADD', xk, '*', 'e', ARGV[3 * i - 1], 's', seq)
    if type(id) == 'table' and id.err then
      out[i] = {2, id.err}
    else
      redis.call('SET', dk, ARGV[3 * i] .. string.format('%d', seq) .. ARGV[3 * i + 1], 'PX', ttl)
      out[i] = seq
    end
  end
end
return out
