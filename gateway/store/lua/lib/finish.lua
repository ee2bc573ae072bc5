--@include lib/counts.lua
--@include lib/jobs.lua
--@include lib/schedule.lua
--@include lib/deliveries.lua
--@include lib/ingest.lua
--@include lib/endpoints.lua
--@include lib/audit.lua

-- Records one attempt (its log entry, the endpoint's health, metrics) and moves the delivery
-- on: done, its next attempt scheduled, failed (emitting hookgate.delivery.exhausted), or its
-- endpoint disabled (410, or failing for HOOKGATE_DISABLE_AFTER), with its audit entry (kept
-- `audit_retention` ms). Also ends the arq job that ran the attempt (what arq's finish_job
-- does in its own round trip). Returns 'ok', 'stale' (the job was no longer the delivery's
-- current one: only the log entry is kept) or 'gone'.
local function finish_attempt(dkey, akey, did, job, record, outcome, next_at, bucket, latency,
                                emit_exhausted, emit_disabled, audit_retention)
  end_job(job)
  local d = redis.call('HMGET', dkey, 'status', 'job', 'endpoint_id', 'attempt', 'chain',
                       'event_type', 'business_id')
  if not d[1] then return 'gone' end
  local ep = d[3]
  local epkey = key_endpoint(ep)
  redis.call('ZREM', key_endpoint_inflight(ep), did)
  redis.call('RPUSH', akey, record)
  redis.call('PEXPIRE', akey, RETENTION)
  redis.call('PEXPIRE', dkey, RETENTION)
  redis.call('HSET', dkey, 'updated_at', NOW, 'attempts', redis.call('LLEN', akey))
  local ok = outcome == 'succeeded'
  count(ok and 'attempts_success' or 'attempts_failure', 1)
  count('latency_bucket:' .. bucket, 1)
  count('latency_sum', tonumber(latency))
  -- endpoint health: hourly outcome counts for 48 h (of attempts here, of the deliveries
  -- they end below), the failing streak
  local stats = key_endpoint_stats(ep)
  local hour = math.floor(NOW / 3600000)
  redis.call('HINCRBY', stats, hour .. (ok and ':ok' or ':fail'), 1)
  redis.call('HDEL', stats, (hour - 48) .. ':ok', (hour - 48) .. ':fail',
             (hour - 48) .. ':dok', (hour - 48) .. ':dfail')
  redis.call('PEXPIRE', stats, 49 * 3600000)
  local failing_since = nil
  if redis.call('EXISTS', epkey) == 1 then
    if ok then
      redis.call('HSET', epkey, 'last_success_at', NOW, 'consecutive_failures', 0,
                 'failing_since', '')
    else
      redis.call('HINCRBY', epkey, 'consecutive_failures', 1)
      failing_since = tonumber(redis.call('HGET', epkey, 'failing_since'))
      if not failing_since then
        failing_since = NOW
        redis.call('HSET', epkey, 'failing_since', NOW)
      end
    end
  end
  if d[1] ~= 'pending' or full_job(did, d[2]) ~= job then return 'stale' end
  if outcome == 'succeeded' then
    close_delivery(dkey, did, ep, 'succeeded', '')
    redis.call('HINCRBY', stats, hour .. ':dok', 1)
  elseif outcome == 'failed' then
    close_delivery(dkey, did, ep, 'failed', 'retries_exhausted')
    redis.call('HINCRBY', stats, hour .. ':dfail', 1)
    if string.sub(d[6] or '', 1, 9) ~= 'hookgate.' then
      operational_event(emit_exhausted, 'hookgate.delivery.exhausted', d[7],
        {delivery_id = did, event_id = event_of_delivery(did), endpoint_id = ep,
         event_type = d[6], attempts = redis.call('LLEN', akey)})
    end
  elseif outcome == 'retry' then
    local n = tonumber(d[4]) + 1
    schedule(dkey, did, job_name(did, d[5], n, 0), next_at, n)
  elseif outcome == 'gone' then
    local reason = 'endpoint answered 410 Gone'
    if disable_endpoint(ep, reason, 'endpoint_gone', emit_disabled) then
      audit_system(audit_retention, d[7], 'endpoint.auto_disable', ep .. ' ' .. did, reason)
    end
  end
  if failing_since and DISABLE_AFTER > 0 and NOW - failing_since >= DISABLE_AFTER then
    local reason = 'no successful delivery for ' .. DISABLE_AFTER_TEXT
    if disable_endpoint(ep, reason, 'endpoint_disabled', emit_disabled) then
      audit_system(audit_retention, d[7], 'endpoint.auto_disable', ep .. ' ' .. did, reason)
    end
  end
  return 'ok'
end
