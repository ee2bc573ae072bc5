--@include lib/jobs.lua

-- Puts the delivery's next job on arq's queue, due at `at` (ms).
local function schedule(dkey, did, job, at, attempt)
  redis.call('HSET', dkey, 'job', job_suffix(did, job), 'attempt', attempt,
             'next_attempt_at', at)
  enqueue(job, ATTEMPT_FUNCTION, did, at)
  redis.call('ZADD', KEY_DUE, at, did)
end
