--@include lib/counts.lua

local function close_delivery(dkey, did, endpoint_id, status, reason)
  local replay = redis.call('HGET', dkey, 'replay')
  redis.call('HSET', dkey, 'status', status, 'job', '', 'next_attempt_at', '', 'updated_at', NOW,
             'reason', reason)
  redis.call('ZREM', KEY_DUE, did)
  redis.call('SREM', key_endpoint_pending(endpoint_id), did)
  count('deliveries_' .. status, 1)
  if replay and replay ~= '' then
    redis.call('HINCRBY', key_replay(replay), status, 1)
  end
end
