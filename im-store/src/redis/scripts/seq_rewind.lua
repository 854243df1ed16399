-- Gives back an unused block of seqs (see src/redis/seq.rs).
-- KEYS: [1] the partition's seq hash. ARGV: [1] conversation, [2] the block's
-- last seq, [3] the seq before the block.
-- Returns 1 if the block was the last one and is given back, else 0.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
