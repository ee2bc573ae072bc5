--@include lib/schedule.lua
--@include lib/ordering.lua

-- A new attempt chain for a delivery that is not pending: same webhook-id, same body.
-- A bulk replay passes when it started and what it takes; a delivery replayed since then, or
-- that succeeded meanwhile when only failures were asked for, is left alone. A delivery of an
-- ordering key on an endpoint still ordered rejoins its key at its own sequence number: it
-- goes at once when nothing of the key goes before it (the blocked head, replayed, resumes
-- its key), and waits its turn otherwise.
local function replay_delivery(did, replay, started, only_failed)
  local dkey = key_delivery(did)
  local d = redis.call('HMGET', dkey, 'status', 'endpoint_id', 'chain', 'replay', 'replayed_at',
                       'okey', 'seq')
  if not d[1] then return 'gone' end
  if d[1] == 'pending' then
    if replay ~= '' and d[4] == replay then return 'already' end
    return 'pending'
  end
  if started and tonumber(d[5] or '') and tonumber(d[5]) >= started then return 'replayed' end
  if only_failed and d[1] == 'succeeded' then return 'succeeded' end
  local ep = redis.call('HMGET', key_endpoint(d[2]), 'url', 'disabled', 'ordered')
  if not ep[1] then return 'endpoint_deleted' end
  if ep[2] == '1' then return 'endpoint_disabled' end
  local chain = tonumber(d[3] or '0') + 1
  redis.call('HSET', dkey, 'status', 'pending', 'chain', chain, 'reason', '', 'replay', replay,
             'replayed_at', NOW, 'updated_at', NOW)
  redis.call('SADD', key_endpoint_pending(d[2]), did)
  local move, advance = 'go', false
  if d[6] and d[6] ~= '' and tonumber(d[7] or '') and ep[3] == '1' then
    local _
    _, move, advance = ord_join(d[2], d[6], did, tonumber(d[7]))
  end
  if move == 'go' then
    schedule(dkey, did, job_name(did, chain, 1, 0), NOW, 1)
  else
    redis.call('HSET', dkey, 'job', '', 'attempt', 1, 'next_attempt_at', '', 'reason', 'waiting')
    redis.call('ZADD', KEY_WAITING, NOW, did)
    if advance then ord_advance(d[2], d[6], key_ordering_state(d[2], d[6])) end
  end
  redis.call('PEXPIRE', dkey, RETENTION)
  redis.call('PEXPIRE', key_delivery_attempts(did), RETENTION)
  if replay ~= '' then redis.call('HINCRBY', key_replay(replay), 'enqueued', 1) end
  return 'ok'
end
