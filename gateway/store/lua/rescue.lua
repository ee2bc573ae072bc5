--[[ RESCUE: a pending delivery whose job no longer exists (an expired arq job, or one arq
  gave up on after repeated worker crashes) gets a new job for the same attempt.

  KEYS[1]     the delivery
  ARGV[1..5]  the common arguments (scripts.py)
  ARGV[6]     delivery id
  Returns     'rescued', 'queued' (its job exists), 'waiting' (it waits behind its ordering
              key's head, with no job on purpose) or 'closed' (no longer pending)
]]
--@include lib/schedule.lua

local did = ARGV[6]
local d = redis.call('HMGET', KEYS[1], 'status', 'job', 'attempt', 'chain', 'reason')
if d[1] ~= 'pending' then
  redis.call('ZREM', KEY_DUE, did)
  return 'closed'
end
if (d[2] or '') == '' and d[5] == 'waiting' then
  redis.call('ZREM', KEY_DUE, did)
  return 'waiting'
end
if d[2] and d[2] ~= '' and redis.call('EXISTS', ARQ_JOB_KEY .. full_job(did, d[2])) == 1 then
  return 'queued'
end
local k = redis.call('HINCRBY', KEYS[1], 'redefers', 1)
schedule(KEYS[1], did, job_name(did, d[4], d[3] or '1', k), NOW, d[3] or '1')
return 'rescued'
