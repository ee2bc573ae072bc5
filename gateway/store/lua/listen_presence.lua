--[[ LISTEN_PRESENCE: a client's connection to a listen session comes, stays or goes. While it
  is there the session's online mark holds the connection's token, so the session's attempts
  are made; each step also notes when a client was last connected (what the session's expiry
  counts from). A newer connection takes the session over: the older one learns it at its next
  'stay' and closes. A connection that comes starts at once the attempt that was waiting for a
  client (re-deferred by the claim while none was connected).

  KEYS        none: the session's keys are built from its endpoint id
  ARGV[1..5]  the common arguments (scripts.py)
  ARGV[6]     the session's endpoint id
  ARGV[7]     the connection's token
  ARGV[8]     'connect' (takes the session over), 'stay' (every second while the connection
              is open) or 'leave'
  ARGV[9]     how long the online mark lasts unless renewed, ms
  Returns     'ok'; 'replaced' (stay: another connection holds the session); 'gone' (no such
              session: it was deleted or has expired); 'disabled' (its deliveries are
              cancelled and skipped until it is enabled again)
]]
--@include lib/schedule.lua

-- The session's next delivery (the head of its one ordering key), when it waits for a client:
-- its job goes now instead of when the claim re-deferred it to.
local function start_waiting(ep)
  local head = redis.call('HGET', key_ordering_state(ep, LISTEN_ORDERING_KEY), 'head')
  if not head or head == '' then return end
  local dkey = key_delivery(head)
  local d = redis.call('HMGET', dkey, 'status', 'job', 'attempt', 'chain', 'reason')
  if d[1] ~= 'pending' or (d[2] or '') == '' or d[5] ~= 'session_offline' then return end
  end_job(full_job(head, d[2]))
  local k = redis.call('HINCRBY', dkey, 'redefers', 1)
  schedule(dkey, head, job_name(head, d[4], d[3], k), NOW, d[3])
end

local function main()
  local ep, token, what, ttl = ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
  local epkey, online = key_endpoint(ep), key_listen_online(ep)
  local holder = redis.call('GET', online)
  if redis.call('HGET', epkey, 'kind') ~= LISTEN_KIND then
    if holder == token then redis.call('DEL', online) end
    return 'gone'
  end
  if redis.call('HGET', epkey, 'disabled') == '1' then
    if holder == token then redis.call('DEL', online) end
    return 'disabled'
  end
  if what == 'leave' then
    if holder == token then redis.call('DEL', online) end
  elseif what == 'stay' and holder and holder ~= token then
    return 'replaced'
  else
    redis.call('SET', online, token, 'PX', ttl)
    -- a connection that comes, or whose mark had lapsed (a stalled renewal)
    if what == 'connect' or not holder then start_waiting(ep) end
  end
  redis.call('HSET', epkey, 'last_connected_at', NOW)
  redis.call('ZADD', KEY_LISTEN_SESSIONS, NOW, ep)
  return 'ok'
end

return main()
