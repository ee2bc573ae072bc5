--@include lib/counts.lua
--@include lib/ordering.lua

local function close_delivery(dkey, did, endpoint_id, status, reason)
  local f = redis.call('HMGET', dkey, 'replay', 'okey')
  redis.call('HSET', dkey, 'status', status, 'job', '', 'next_attempt_at', '', 'updated_at', NOW,
             'reason', reason)
  redis.call('ZREM', KEY_DUE, did)
  redis.call('SREM', key_endpoint_pending(endpoint_id), did)
  count('deliveries_' .. status, 1)
  if f[1] and f[1] ~= '' then
    redis.call('HINCRBY', key_replay(f[1]), status, 1)
  end
  if f[2] and f[2] ~= '' then ord_release(endpoint_id, f[2], did, reason) end
end
