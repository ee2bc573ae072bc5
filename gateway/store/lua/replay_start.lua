--[[ REPLAY_START: makes a prepared bulk replay the endpoint's running one and queues its
  first batch, or returns the one already running (the caller then drops what it prepared).
  The lock only ever points at a replay whose hash and to-do list are complete, so whoever
  reads it sees the real `matched`.

  KEYS[1]     the replay lock
  KEYS[2]     the replay (hash), already written, seen by no one yet
  KEYS[3]     its to-do list, likewise
  ARGV[1..5]  the common arguments (scripts.py)
  ARGV[6]     replay id
  ARGV[7]     lock ttl, ms
  ARGV[8]     job id of the first batch
  Returns     {1, replay id} when started, {0, the running replay's id} otherwise
]]
--@include lib/jobs.lua

local replay, ttl, job = ARGV[6], tonumber(ARGV[7]), ARGV[8]
local running = redis.call('GET', KEYS[1])
if running then return {0, running} end
if redis.call('LLEN', KEYS[3]) > 0 then
  redis.call('SET', KEYS[1], replay, 'PX', ttl)
  enqueue(job, REPLAY_BATCH_FUNCTION, replay, NOW)
else
  redis.call('HSET', KEYS[2], 'state', 'enqueued')
end
return {1, replay}
