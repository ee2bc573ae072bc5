--[[ ORDERING_SKIP: an operator moves an ordering key past its head (lib/ordering.lua). A
  blocked head stays failed (and replayable); a head still being retried ends failed with the
  reason 'skipped', unless one of its attempts is open right now: that one is not skipped, so
  the key's next delivery never overtakes an attempt of its head. The key's next delivery
  then goes.

  KEYS        none (the key's state and queue are built from the endpoint and the key)
  ARGV[1..5]  the common arguments (scripts.py)
  ARGV[6]     endpoint id
  ARGV[7]     ordering key
  Returns     {'skipped', head, the delivery going now or ''}, {'in_flight', head} or {'none'}
              (no head holds the key)
]]
--@include lib/deliveries.lua

local function main()
  local ep, okey = ARGV[6], ARGV[7]
  local st = key_ordering_state(ep, okey)
  local head, blocked = ord_head(ep, okey, st)
  if not head then return {'none'} end
  if blocked then
    redis.call('ZREM', key_ordering_blocked(ep), okey)
    return {'skipped', head, ord_advance(ep, okey, st) or ''}
  end
  local open = redis.call('ZSCORE', key_endpoint_inflight(ep), head)
  if open and tonumber(open) > NOW then return {'in_flight', head} end
  close_delivery(key_delivery(head), head, ep, 'failed', 'skipped')
  return {'skipped', head, redis.call('HGET', st, 'head') or ''}
end

return with_counts(main())
