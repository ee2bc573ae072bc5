--[[ ORDERING_RELEASE: an endpoint that stopped being ordered lets every delivery waiting behind
  an ordering key go now, and forgets its blocked keys (their heads stay failed, and
  replayable). Run after the endpoint's `ordered` field was set to '0'; does nothing if it is
  '1' again.

  KEYS        none
  ARGV[1..5]  the common arguments (scripts.py)
  ARGV[6]     endpoint id
  Returns     how many deliveries were released
]]
--@include lib/schedule.lua

local ep = ARGV[6]
if redis.call('HGET', key_endpoint(ep), 'ordered') ~= '0' then return 0 end
local released = 0
for _, did in ipairs(redis.call('SMEMBERS', key_endpoint_pending(ep))) do
  local dkey = key_delivery(did)
  local d = redis.call('HMGET', dkey, 'status', 'job', 'attempt', 'chain')
  if d[1] == 'pending' and (d[2] or '') == '' then
    redis.call('HSET', dkey, 'reason', '', 'updated_at', NOW)
    redis.call('ZREM', KEY_WAITING, did)
    schedule(dkey, did, job_name(did, d[4], d[3] or '1', 0), NOW, d[3] or '1')
    released = released + 1
  end
end
local blocked = key_ordering_blocked(ep)
for _, okey in ipairs(redis.call('ZRANGE', blocked, 0, -1)) do
  redis.call('HSET', key_ordering_state(ep, okey), 'head', '', 'blocked', '')
end
redis.call('DEL', blocked)
return released
