--@include lib/deliveries.lua
--@include lib/ingest.lua

-- Disables an endpoint, cancels its pending deliveries and tells the business.
local function disable_endpoint(ep, reason, cancel_reason, emit_id)
  local epkey = key_endpoint(ep)
  local f = redis.call('HMGET', epkey, 'disabled', 'business_id')
  if not f[2] or f[1] == '1' then return false end
  redis.call('HSET', epkey, 'disabled', '1', 'disabled_reason', reason, 'disabled_at', NOW)
  for _, did in ipairs(redis.call('SMEMBERS', key_endpoint_pending(ep))) do
    close_delivery(key_delivery(did), did, ep, 'cancelled', cancel_reason)
  end
  operational_event(emit_id, 'hookgate.endpoint.disabled', f[2],
                    {endpoint_id = ep, reason = reason, disabled_at = NOW_ISO})
  return true
end
