--@include lib/counts.lua
--@include lib/match.lua
--@include lib/jobs.lua
--@include lib/ordering.lua

-- Stores an event and one delivery per matching endpoint (only `only_ep` when given), with
-- the first attempt of each on arq's queue; returns the delivery ids. An event with an
-- ordering key `okey` ('' for none) joins that key on each ordered endpoint (lib/ordering.lua):
-- its delivery there gets the key's next sequence number, and waits, with no job yet, when
-- another delivery of the key goes before it. A listen session orders every delivery by one
-- key of its own (LISTEN_ORDERING_KEY), whatever key the event has: its deliveries go one at
-- a time, in ingest order.
-- `seen`, when given, keeps the endpoints of each business and the fields of each endpoint
-- read so far in this script call: INGEST_MANY passes one, since ingest changes neither;
-- scripts that also disable endpoints pass none.
local function ingest_event(event_id, body, etype, business_id, only_ep, seen, okey)
  -- evt_{26-character stem}[.{cell}]: the cell's suffix ends each delivery id too
  local stem, cell_suffix = string.sub(event_id, 5, 30), string.sub(event_id, 31)
  local endpoints
  if only_ep ~= '' then
    endpoints = {only_ep}
  else
    endpoints = seen and seen[business_id]
    if not endpoints then
      endpoints = redis.call('SMEMBERS', key_business_endpoints(business_id))
      table.sort(endpoints)
      if seen then seen[business_id] = endpoints end
    end
  end
  local made = {}
  local entry = string.format('%013d', NOW) .. ':'
  for _, ep in ipairs(endpoints) do
    local f = seen and seen['ep:' .. ep]
    if not f then
      f = redis.call('HMGET', key_endpoint(ep), 'types', 'disabled', 'ordered', 'kind')
      if seen then seen['ep:' .. ep] = f end
    end
    if f[1] and (only_ep ~= '' or matches(f[1], etype)) then
      -- the delivery id holds its event's id: dlv_{event id stem}{n}[.{cell}]
      local did = 'dlv_' .. stem .. string.format('%x', #made + 1) .. cell_suffix
      local dkey = key_delivery(did)
      if f[2] == '1' then
        redis.call('HSET', dkey, 'endpoint_id', ep, 'business_id', business_id,
                   'event_type', etype, 'created_at', NOW, 'updated_at', NOW, 'redefers', 0,
                   'chain', 0, 'status', 'skipped', 'attempt', 0, 'reason', 'endpoint_disabled')
        count('deliveries_skipped', 1)
      else
        local seq, move, advance = nil, 'go', false
        local key = okey
        if f[4] == LISTEN_KIND then key = LISTEN_ORDERING_KEY end
        if key and key ~= '' and (f[3] == '1' or f[4] == LISTEN_KIND) then
          seq, move, advance = ord_join(ep, key, did, nil)
        end
        if move == 'go' then
          -- what schedule() writes for the first attempt, in the same HSET
          local job = job_name(did, 0, 1, 0)
          redis.call('HSET', dkey, 'endpoint_id', ep, 'business_id', business_id,
                     'event_type', etype, 'created_at', NOW, 'updated_at', NOW, 'redefers', 0,
                     'chain', 0, 'status', 'pending', 'job', job_suffix(did, job),
                     'attempt', 1, 'next_attempt_at', NOW)
          enqueue(job, ATTEMPT_FUNCTION, did, NOW)
          redis.call('ZADD', KEY_DUE, NOW, did)
        else
          redis.call('HSET', dkey, 'endpoint_id', ep, 'business_id', business_id,
                     'event_type', etype, 'created_at', NOW, 'updated_at', NOW, 'redefers', 0,
                     'chain', 0, 'status', 'pending', 'job', '', 'attempt', 1,
                     'next_attempt_at', '', 'reason', 'waiting')
          redis.call('ZADD', KEY_WAITING, NOW, did)
        end
        if seq then redis.call('HSET', dkey, 'okey', key, 'seq', seq) end
        redis.call('SADD', key_endpoint_pending(ep), did)
        if advance then ord_advance(ep, key, key_ordering_state(ep, key)) end
      end
      redis.call('PEXPIRE', dkey, RETENTION)
      redis.call('ZADD', KEY_INDEX_ALL, 0, entry .. did)
      redis.call('ZADD', key_index_business(business_id), 0, entry .. did)
      redis.call('ZADD', key_index_endpoint(ep), 0, entry .. did)
      made[#made + 1] = did
    end
  end
  -- An event is its body alone: its time is in its id, its type and business in the body,
  -- and its deliveries are dlv_{stem}1, dlv_{stem}2, … (one key per event keeps it small).
  redis.call('SET', key_event_body(event_id), body, 'PX', RETENTION)
  count('events_ingested', 1)
  return made
end

-- One of hookgate's own events (hookgate.*), to every endpoint of the business that asks.
local function operational_event(event_id, etype, business_id, data)
  local body = cjson.encode({business_id = business_id, type = etype, timestamp = NOW_ISO,
                             data = data})
  ingest_event(event_id, body, etype, business_id, '')
end
