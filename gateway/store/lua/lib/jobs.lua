-- Attempt job ids and arq jobs, the Lua half of queue.py's contracts (ATTEMPT_JOB_PREFIX,
-- ARQ_*, JOB_EXPIRY and the function names come from queue.py through the prelude;
-- tests/test_contracts.py holds the rest to queue.py).

-- attempt:{delivery}:{n}, then :r{chain}:{n} for replays, .{k} for re-deferrals
-- (queue.attempt_job_id).
local function job_name(did, chain, attempt, redefer)
  local name = ATTEMPT_JOB_PREFIX .. did .. ':'
  if tonumber(chain) and tonumber(chain) > 0 then name = name .. 'r' .. chain .. ':' end
  name = name .. attempt
  if tonumber(redefer) and tonumber(redefer) > 0 then name = name .. '.' .. redefer end
  return name
end

-- The delivery hash keeps only what follows `attempt:{delivery}:` in its current job's id
-- (queue.current_job_id).
local function full_job(did, suffix)
  return ATTEMPT_JOB_PREFIX .. did .. ':' .. (suffix or '')
end

local function job_suffix(did, job)
  return string.sub(job, #ATTEMPT_JOB_PREFIX + #did + 2)
end

-- The delivery id inside an attempt job id, nil for any other job (queue.delivery_of).
local ATTEMPT_JOB_PATTERN = '^' .. ATTEMPT_JOB_PREFIX .. '(dlv_[^:]+):'
local function delivery_of(job)
  return string.match(job, ATTEMPT_JOB_PATTERN)
end

-- An arq job calling fn(arg), as queue.serialize_job encodes it: JSON, never pickle.
local function arq_job(fn, arg)
  return '{"t":null,"f":"' .. fn .. '","a":["' .. arg .. '"],"k":{},"et":' .. NOW .. '}'
end

-- Queues job `job` calling fn(arg), due at `at` (ms); like arq's enqueue, its key expires
-- JOB_EXPIRY after it is due.
local function enqueue(job, fn, arg, at)
  redis.call('SET', ARQ_JOB_KEY .. job, arq_job(fn, arg), 'PX', at - NOW + JOB_EXPIRY)
  redis.call('ZADD', ARQ_QUEUE, at, job)
end

-- What arq's finish of a job removes (no result is kept).
local function end_job(job)
  redis.call('DEL', ARQ_JOB_KEY .. job, ARQ_IN_PROGRESS_KEY .. job, ARQ_RETRY_KEY .. job)
  redis.call('ZREM', ARQ_QUEUE, job)
end

-- A delivery's event: dlv_{26-character event stem}{n, hex}[.{cell}] → evt_{stem}[.{cell}]
-- (store.event_of).
local function event_of_delivery(did)
  return 'evt_' .. string.sub(did, 5, 30) .. (string.match(did, '%.[%w%-]+$') or '')
end
