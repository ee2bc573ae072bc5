--@include lib/deliveries.lua
--@include lib/schedule.lua

-- Starts one attempt of delivery `did` under job `job`: checks the job is the delivery's
-- current one, closes deliveries whose endpoint or event is gone, and takes a slot of the
-- endpoint's in-flight cap for `lease` ms (or, when the cap is full, re-defers the attempt by
-- `busy_defer` ms under a new job). The cap is the endpoint's own (`default_cap` when it set
-- none), never more than `max_cap`: an endpoint stored before that bound holds no more. An
-- attempt of a listen session no client is connected to waits the same way, re-deferred by
-- `offline_defer` ms with nothing recorded and no attempt spent, until a client connects (its
-- connection starts the attempt at once: listen_presence.lua) or the session expires.
-- Returns {'go', body, url, secrets, headers, attempt, event_id, endpoint_id, chain,
-- event_type, ordering key, sequence} ('' and '' for an unordered delivery) or {kind} for an
-- attempt not to make.
local function claim_delivery(dkey, did, job, lease, busy_defer, default_cap, max_cap,
                              offline_defer)
  local d = redis.call('HMGET', dkey, 'status', 'job', 'endpoint_id', 'attempt', 'chain',
                       'event_type', 'okey', 'seq')
  if not d[1] then return {'gone'} end
  if d[1] ~= 'pending' or full_job(did, d[2]) ~= job then return {'stale'} end
  local event_id = event_of_delivery(did)
  local ep = redis.call('HMGET', key_endpoint(d[3]), 'url', 'secrets', 'headers',
                        'max_in_flight', 'disabled', 'kind')
  if not ep[1] then
    close_delivery(dkey, did, d[3], 'cancelled', 'endpoint_deleted')
    return {'cancelled'}
  end
  if ep[5] == '1' then
    close_delivery(dkey, did, d[3], 'cancelled', 'endpoint_disabled')
    return {'cancelled'}
  end
  local body = redis.call('GET', key_event_body(event_id))
  if not body then
    close_delivery(dkey, did, d[3], 'failed', 'event_expired')
    return {'failed'}
  end
  local listen = ep[6] == LISTEN_KIND
  if listen and redis.call('EXISTS', key_listen_online(d[3])) == 0 then
    local k = redis.call('HINCRBY', dkey, 'redefers', 1)
    redis.call('HSET', dkey, 'reason', 'session_offline')
    schedule(dkey, did, job_name(did, d[5], d[4], k), NOW + offline_defer, d[4])
    return {'offline'}
  end
  local inflight = key_endpoint_inflight(d[3])
  redis.call('ZREMRANGEBYSCORE', inflight, '-inf', NOW)
  local cap = math.min(tonumber(ep[4]) or default_cap, max_cap)
  if not redis.call('ZSCORE', inflight, did) and redis.call('ZCARD', inflight) >= cap then
    local k = redis.call('HINCRBY', dkey, 'redefers', 1)
    schedule(dkey, did, job_name(did, d[5], d[4], k), NOW + busy_defer, d[4])
    return {'busy'}
  end
  redis.call('ZADD', inflight, NOW + lease, did)
  redis.call('PEXPIRE', inflight, lease * 2)
  if listen then redis.call('HSET', dkey, 'reason', '') end
  return {'go', body, ep[1], ep[2], ep[3] or '', d[4], event_id, d[3], d[5] or '0', d[6] or '',
          d[7] or '', d[8] or ''}
end
