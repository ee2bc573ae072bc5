--@include lib/schedule.lua
--@include lib/counts.lua

-- Ordered delivery per key (README, "Ordering"). On an ordered endpoint the deliveries of the
-- events that share an ordering key go one at a time, in sequence order (1, 2, 3 … per
-- endpoint and key, given at ingest). The key's head is the delivery going now or, when its
-- retries are spent and the endpoint blocks, the one an operator must replay or skip; the
-- others wait in the key's queue, pending with no job, until the head is resolved. Every
-- move is inside the script that closes, replays or skips a delivery, so no crash can start
-- a key's next delivery before its head is resolved, nor leave a key with no head.

-- The jobs ord_advance made due in this script call, in order: FINISH_MANY hands them to the
-- worker that recorded the outcome, which takes them at once instead of at its next poll.
local PROMOTED = {}

-- An ordering key crosses INGEST_MANY's packed fields as hex (it may hold spaces).
local function unhex(text)
  return (string.gsub(text, '..', function(h) return string.char(tonumber(h, 16)) end))
end

-- The key's head while it still holds the key (pending, or the blocked head), and whether it
-- is blocked; nil when none does (a head whose delivery expired, or one resolved, holds
-- nothing: a blocked entry of such a head is dropped here).
local function ord_head(ep, okey, st)
  local s = redis.call('HMGET', st, 'head', 'blocked')
  local head, blocked = s[1], s[2] and s[2] ~= ''
  if not head or head == '' then return nil, false end
  local status = redis.call('HGET', key_delivery(head), 'status')
  if status == 'pending' then return head, false end
  if blocked and status then return head, true end
  if blocked then redis.call('ZREM', key_ordering_blocked(ep), okey) end
  redis.call('HSET', st, 'head', '', 'blocked', '')
  return nil, false
end

-- Starts the key's next waiting delivery, if the endpoint is enabled and one waits (those
-- closed or expired meanwhile are passed over); returns its id, or nil when the key is free.
local function ord_advance(ep, okey, st)
  redis.call('HSET', st, 'head', '', 'blocked', '')
  if redis.call('HGET', key_endpoint(ep), 'disabled') ~= '0' then return nil end
  local q = key_ordering_queue(ep, okey)
  while true do
    local popped = redis.call('ZPOPMIN', q)
    if #popped == 0 then return nil end
    local did = popped[1]
    local dkey = key_delivery(did)
    local d = redis.call('HMGET', dkey, 'status', 'job', 'attempt', 'chain')
    redis.call('ZREM', KEY_WAITING, did)
    if d[1] == 'pending' and (d[2] or '') == '' then
      redis.call('HSET', st, 'head', did)
      redis.call('PEXPIRE', st, RETENTION)
      redis.call('HSET', dkey, 'reason', '', 'updated_at', NOW)
      local job = job_name(did, d[4], d[3] or '1', 0)
      schedule(dkey, did, job, NOW, d[3] or '1')
      PROMOTED[#PROMOTED + 1] = job
      return did
    end
  end
end

-- A delivery of key `okey` is to go (a new one at ingest: `seq` nil gives it the key's next
-- sequence number; a replayed one keeps its own). Returns its sequence number and 'go' (it is
-- the head now: the caller schedules it), or 'wait' (it is queued: the caller stores it
-- pending with no job, then calls ord_advance when the third value is true, because no head
-- holds the key but earlier deliveries wait).
local function ord_join(ep, okey, did, seq)
  local st = key_ordering_state(ep, okey)
  if not seq then seq = redis.call('HINCRBY', st, 'seq', 1) end
  redis.call('PEXPIRE', st, RETENTION)
  local head, blocked = ord_head(ep, okey, st)
  local q = key_ordering_queue(ep, okey)
  if head == did then
    -- the blocked head, replayed: it goes again, and the key resumes once it succeeds
    redis.call('HSET', st, 'blocked', '')
    redis.call('ZREM', key_ordering_blocked(ep), okey)
    return seq, 'go', false
  end
  if not head and redis.call('EXISTS', q) == 0 then
    redis.call('HSET', st, 'head', did)
    return seq, 'go', false
  end
  redis.call('ZADD', q, seq, did)
  redis.call('PEXPIRE', q, RETENTION)
  return seq, 'wait', not head
end

-- Delivery `did` of key `okey` closed (close_delivery). A waiting one leaves the queue; the
-- head's key goes on with its next delivery, unless the head failed for good on an endpoint
-- that blocks: the key then stays blocked behind it until it is replayed or skipped.
local function ord_release(ep, okey, did, reason)
  local st = key_ordering_state(ep, okey)
  if redis.call('HGET', st, 'head') ~= did then
    redis.call('ZREM', key_ordering_queue(ep, okey), did)
    redis.call('ZREM', KEY_WAITING, did)
    return
  end
  local e = redis.call('HMGET', key_endpoint(ep), 'ordered', 'on_exhausted')
  if reason == 'retries_exhausted' and e[1] == '1' and e[2] ~= 'skip' then
    count('ordering_keys_blocked', 1)
    redis.call('HSET', st, 'blocked', NOW)
    redis.call('PEXPIRE', st, RETENTION)
    redis.call('ZADD', key_ordering_blocked(ep), NOW, okey)
    return
  end
  ord_advance(ep, okey, st)
end
