--[[ INGEST_MANY: stores a group of events (a group commit, a batch) in one call; each event
  on its own is as atomic as the call: its body, one delivery per matching endpoint with the
  first attempt of each on arq's queue, its idempotency key (scoped by business).

  KEYS[1]     registered event types (hash)
  ARGV[1..5]  the common arguments (scripts.py)
  ARGV[6]     idempotency key ttl, ms
  ARGV[7..]   two per event: its fields, space-separated (check_custom_type 0|1, event_id,
              type, business_id, fingerprint or '-', only_endpoint or '-', 'k' followed by the
              idempotency key or '_' when none, 'o' followed by the hex of the ordering key
              or '_' when none; none of them can hold a space), then its body.
              Two arguments per event rather than nine: redis-py packs every argument in
              Python, which was a quarter of the gateway's time on batches.
  Returns     kind, payload per event: 'created', the delivery ids joined by ','; 'duplicate',
              what the idempotency key holds ('{fingerprint}|{event_id}'); 'unknown_type', '';
              'moved', the cell its business moved to (nothing is stored here once it has:
              the gateway reads the directory again and sends the event there).
]]
--@include lib/ingest.lua

local function main()
  local idem_ttl = tonumber(ARGV[6])
  local out, seen = {}, {}
  for a = 7, #ARGV, 2 do
    local check, event_id, etype, business_id, fingerprint, only_ep, idem, ord = string.match(
      ARGV[a], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
    local okey = string.sub(ord, 1, 1) == 'o' and unhex(string.sub(ord, 2)) or ''
    if only_ep == '-' then only_ep = '' end
    local key = string.sub(idem, 1, 1) == 'k' and key_idempotency(business_id, string.sub(idem, 2))
    local prior = key and redis.call('GET', key)
    if key and not prior then
      -- a key stored before keys were scoped by business counts only for the same request
      -- (its fingerprint covers the business): another business's never answers, not even 409
      local old = redis.call('GET', key_idempotency_unscoped(string.sub(idem, 2)))
      if old and string.sub(old, 1, #fingerprint + 1) == fingerprint .. '|' then prior = old end
    end
    local moved = seen['moved:' .. business_id]
    if moved == nil then
      moved = redis.call('GET', key_business_moved(business_id)) or false
      seen['moved:' .. business_id] = moved
    end
    if prior then
      out[#out + 1] = 'duplicate'
      out[#out + 1] = prior
    elseif moved then
      out[#out + 1] = 'moved'
      out[#out + 1] = moved
    elseif check == '1' and redis.call('HEXISTS', KEYS[1], etype) == 0 then
      out[#out + 1] = 'unknown_type'
      out[#out + 1] = ''
    else
      local made = ingest_event(event_id, ARGV[a + 1], etype, business_id, only_ep, seen, okey)
      if key then redis.call('SET', key, fingerprint .. '|' .. event_id, 'PX', idem_ttl) end
      out[#out + 1] = 'created'
      out[#out + 1] = table.concat(made, ',')
    end
  end
  return out
end

return with_counts(main())
