--[[ REPLAY_BATCH: replays the next batch of a bulk replay and queues the job for the batch
  after it, or marks the replay fully enqueued. One script, so a crash cannot drop a batch
  half-way.

  KEYS[1]     the replay (hash)
  KEYS[2]     its to-do list
  KEYS[3]     its lock
  ARGV[1..5]  the common arguments (scripts.py)
  ARGV[6]     replay id
  ARGV[7]     batch size
  ARGV[8]     job id of the next batch
  Returns     'more' or 'done'
]]
--@include lib/replay.lua

local function main()
  local replay, size, next_job = ARGV[6], tonumber(ARGV[7]), ARGV[8]
  local r = redis.call('HMGET', KEYS[1], 'created_at', 'filter')
  local started, only_failed = tonumber(r[1]), r[2] ~= 'all'
  local batch = redis.call('LRANGE', KEYS[2], 0, size - 1)
  for _, did in ipairs(batch) do
    local result = replay_delivery(did, replay, started, only_failed)
    if result ~= 'ok' and result ~= 'already' then
      redis.call('HINCRBY', KEYS[1], 'skipped', 1)
    end
  end
  redis.call('LTRIM', KEYS[2], #batch, -1)
  if redis.call('LLEN', KEYS[2]) > 0 then
    enqueue(next_job, REPLAY_BATCH_FUNCTION, replay, NOW)
    return 'more'
  end
  redis.call('HSET', KEYS[1], 'state', 'enqueued')
  redis.call('DEL', KEYS[3])
  return 'done'
end

return with_counts(main())
