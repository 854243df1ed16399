#!lua
-- Admits one partition's batch of sends (see src/redis/pipeline.rs).
-- Every key is of the partition's slot {pN}, so this runs on Redis Cluster.
-- KEYS: [1] the partition's stream, [2] its seq hash (conversation -> last
--       seq), [3] its current dedup bucket, [4] its previous dedup bucket
--       (hashes: dedup field -> "seq:msg_id:ts:conversation").
-- ARGV: [1] bucket lifetime in ms, [2] the batch: the envelopes' JSON, one
--       per line, in order (their seq is taken from the entry's `s` field),
--       [3] n, then n dedup fields, then n conversations, then n ack tails
--       ("msg_id:ts:conversation").
-- Returns per send: the seq (an integer) when admitted; the stored ack
-- ("seq:msg_id:ts:conversation") for a key remembered from before; -j for a
-- repeat of send j of this batch.
-- Writes nothing before the XADD (a refused XADD aborts the script), and the
-- script is declared (#!lua) so an OOM server refuses it before it starts:
-- a failed admission takes no seq and leaves no key.
local n = tonumber(ARGV[3])
local cur = redis.call('HMGET', KEYS[3], unpack(ARGV, 4, 3 + n))
local prev = {}
if KEYS[4] ~= KEYS[3] then prev = redis.call('HMGET', KEYS[4], unpack(ARGV, 4, 3 + n)) end
local out, first, need, convs = {}, {}, {}, {}
local fresh = 0
for i = 1, n do
  local stored = cur[i] or prev[i]
  local k = ARGV[3 + i]
  if stored then
    out[i] = stored
  elseif first[k] then
    out[i] = -first[k]
  else
    first[k] = i
    fresh = fresh + 1
    local c = ARGV[3 + n + i]
    if not need[c] then
      need[c] = 0
      convs[#convs + 1] = c
    end
    need[c] = need[c] + 1
    out[i] = 0
  end
end
if fresh == 0 then return out end
local last = redis.call('HMGET', KEYS[2], unpack(convs))
local nxt, upd = {}, {}
for j, c in ipairs(convs) do
  local base = tonumber(last[j]) or 0
  nxt[c] = base
  upd[#upd + 1] = c
  upd[#upd + 1] = base + need[c]
end
local seqs, ded = {}, {}
for i = 1, n do
  if out[i] == 0 then
    local c = ARGV[3 + n + i]
    local s = nxt[c] + 1
    nxt[c] = s
    out[i] = s
    seqs[i] = s
    ded[#ded + 1] = ARGV[3 + i]
    ded[#ded + 1] = s .. ':' .. ARGV[3 + 2 * n + i]
  else
    seqs[i] = 0
  end
end
redis.call('XADD', KEYS[1], '*', 'b', ARGV[2], 's', table.concat(seqs, ','))
redis.call('HSET', KEYS[2], unpack(upd))
redis.call('HSET', KEYS[3], unpack(ded))
redis.call('PEXPIRE', KEYS[3], ARGV[1])
return out
