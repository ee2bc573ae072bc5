"""Lua scripts that make each state change of hookgate one atomic Redis step.

Each script is the whole of one transition (ingest, claim, finish, replay, rescue, disable), so
a crash of any process between two Redis calls cannot leave a half-written event, a delivery
with no job, or an operational event that was decided but never stored. Scripts build some
key names from the prefix they are given: hookgate, like arq, runs on one Redis primary (or
one per shard), never on Redis Cluster.
"""

from __future__ import annotations

# ARGV[1..11] of every script; each script's own arguments start at ARGV[12].
COMMON_ARGS = 11
_HEADER = r"""
local PREFIX, ARQ_JOB, ARQ_QUEUE, DUE, METRICS = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local NOW, JOB_EXPIRY, RETENTION = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local NOW_ISO, DISABLE_AFTER, DISABLE_AFTER_TEXT = ARGV[9], tonumber(ARGV[10]), ARGV[11]
"""

# Shared helpers, prepended to every script.
_COMMON = r"""
-- Counters of the metrics hash, added up over the script call and written once at its end
-- (see _script): a call recording a hundred attempts writes each counter once.
local COUNTS = {}
local function count(field, n)
  COUNTS[field] = (COUNTS[field] or 0) + n
end
local function flush_counts()
  for field, n in pairs(COUNTS) do
    if field == 'latency_sum' then
      redis.call('HINCRBYFLOAT', METRICS, field, string.format('%.6f', n))
    else
      redis.call('HINCRBY', METRICS, field, n)
    end
  end
end

-- Exact names or `family.*`; an empty subscription takes every type but hookgate's own,
-- which go only to endpoints that ask for them (and so can never feed on themselves).
local function matches(types, etype)
  if types == '' then return string.sub(etype, 1, 9) ~= 'hookgate.' end
  for p in string.gmatch(types, '%S+') do
    if p == etype then return true end
    if string.sub(p, -2) == '.*' then
      local stem = string.sub(p, 1, -2)
      if string.sub(etype, 1, #stem) == stem then return true end
    end
  end
  return false
end

-- attempt:{delivery}:{n}, then :r{chain}:{n} for replays, .{k} for re-deferrals.
local function job_name(did, chain, attempt, redefer)
  local name = 'attempt:' .. did .. ':'
  if tonumber(chain) and tonumber(chain) > 0 then name = name .. 'r' .. chain .. ':' end
  name = name .. attempt
  if tonumber(redefer) and tonumber(redefer) > 0 then name = name .. '.' .. redefer end
  return name
end

local function arq_job(fn, arg)
  return '{"t":null,"f":"' .. fn .. '","a":["' .. arg .. '"],"k":{},"et":' .. NOW .. '}'
end

-- The delivery hash keeps only what follows `attempt:{delivery}:` in its current job's id.
local function full_job(did, suffix)
  return 'attempt:' .. did .. ':' .. (suffix or '')
end

-- Puts the delivery's next job on arq's queue, due at `at` (ms).
local function schedule(dkey, did, job, at, attempt)
  redis.call('HSET', dkey, 'job', string.sub(job, #did + 10), 'attempt', attempt,
             'next_attempt_at', at)
  redis.call('SET', ARQ_JOB .. job, arq_job('deliver', did), 'PX', at - NOW + JOB_EXPIRY)
  redis.call('ZADD', ARQ_QUEUE, at, job)
  redis.call('ZADD', DUE, at, did)
end

local function close_delivery(dkey, did, endpoint_id, status, reason)
  local replay = redis.call('HGET', dkey, 'replay')
  redis.call('HSET', dkey, 'status', status, 'job', '', 'next_attempt_at', '', 'updated_at', NOW,
             'reason', reason)
  redis.call('ZREM', DUE, did)
  redis.call('SREM', PREFIX .. 'ep:' .. endpoint_id .. ':pending', did)
  count('deliveries_' .. status, 1)
  if replay and replay ~= '' then
    redis.call('HINCRBY', PREFIX .. 'replay:' .. replay, status, 1)
  end
end

-- Stores an event and one delivery per matching endpoint (only `only_ep` when given), with
-- the first attempt of each on arq's queue; returns the delivery ids.
-- `seen`, when given, keeps the endpoints of each business and the fields of each endpoint
-- read so far in this script call: INGEST_MANY passes one, since ingest changes neither;
-- scripts that also disable endpoints pass none.
local function ingest_event(event_id, body, etype, business_id, only_ep, seen)
  local stem = string.sub(event_id, 5)
  local endpoints
  if only_ep ~= '' then
    endpoints = {only_ep}
  else
    endpoints = seen and seen[business_id]
    if not endpoints then
      endpoints = redis.call('SMEMBERS', PREFIX .. 'bus:' .. business_id .. ':eps')
      table.sort(endpoints)
      if seen then seen[business_id] = endpoints end
    end
  end
  local made = {}
  local entry = string.format('%013d', NOW) .. ':'
  for _, ep in ipairs(endpoints) do
    local f = seen and seen['ep:' .. ep]
    if not f then
      f = redis.call('HMGET', PREFIX .. 'ep:' .. ep, 'types', 'disabled')
      if seen then seen['ep:' .. ep] = f end
    end
    if f[1] and (only_ep ~= '' or matches(f[1], etype)) then
      local did = 'dlv_' .. stem .. string.format('%x', #made + 1)
      local dkey = PREFIX .. 'dlv:' .. did
      -- (the delivery id holds its event's id: dlv_{event id stem}{n})
      if f[2] == '1' then
        redis.call('HSET', dkey, 'endpoint_id', ep, 'business_id', business_id,
                   'event_type', etype, 'created_at', NOW, 'updated_at', NOW, 'redefers', 0,
                   'chain', 0, 'status', 'skipped', 'attempt', 0, 'reason', 'endpoint_disabled')
        count('deliveries_skipped', 1)
      else
        -- what schedule() writes for the first attempt, in the same HSET
        local job = job_name(did, 0, 1, 0)
        redis.call('HSET', dkey, 'endpoint_id', ep, 'business_id', business_id,
                   'event_type', etype, 'created_at', NOW, 'updated_at', NOW, 'redefers', 0,
                   'chain', 0, 'status', 'pending', 'job', string.sub(job, #did + 10),
                   'attempt', 1, 'next_attempt_at', NOW)
        redis.call('SADD', PREFIX .. 'ep:' .. ep .. ':pending', did)
        redis.call('SET', ARQ_JOB .. job, arq_job('deliver', did), 'PX', JOB_EXPIRY)
        redis.call('ZADD', ARQ_QUEUE, NOW, job)
        redis.call('ZADD', DUE, NOW, did)
      end
      redis.call('PEXPIRE', dkey, RETENTION)
      redis.call('ZADD', PREFIX .. 'idx:all', 0, entry .. did)
      redis.call('ZADD', PREFIX .. 'idx:bus:' .. business_id, 0, entry .. did)
      redis.call('ZADD', PREFIX .. 'idx:ep:' .. ep, 0, entry .. did)
      made[#made + 1] = did
    end
  end
  -- An event is its body alone: its time is in its id, its type and business in the body,
  -- and its deliveries are dlv_{stem}1, dlv_{stem}2, … (one key per event keeps it small).
  redis.call('SET', PREFIX .. 'evt:' .. event_id .. ':body', body, 'PX', RETENTION)
  count('events_ingested', 1)
  return made
end

local function operational_event(event_id, etype, business_id, data)
  local body = cjson.encode({business_id = business_id, type = etype, timestamp = NOW_ISO,
                             data = data})
  ingest_event(event_id, body, etype, business_id, '')
end

-- A new attempt chain for a delivery that is not pending: same webhook-id, same body.
-- A bulk replay passes when it started and what it takes; a delivery replayed since then, or
-- that succeeded meanwhile when only failures were asked for, is left alone.
local function replay_delivery(did, replay, started, only_failed)
  local dkey = PREFIX .. 'dlv:' .. did
  local d = redis.call('HMGET', dkey, 'status', 'endpoint_id', 'chain', 'replay', 'replayed_at')
  if not d[1] then return 'gone' end
  if d[1] == 'pending' then
    if replay ~= '' and d[4] == replay then return 'already' end
    return 'pending'
  end
  if started and tonumber(d[5] or '') and tonumber(d[5]) >= started then return 'replayed' end
  if only_failed and d[1] == 'succeeded' then return 'succeeded' end
  local ep = redis.call('HMGET', PREFIX .. 'ep:' .. d[2], 'url', 'disabled')
  if not ep[1] then return 'endpoint_deleted' end
  if ep[2] == '1' then return 'endpoint_disabled' end
  local chain = tonumber(d[3] or '0') + 1
  redis.call('HSET', dkey, 'status', 'pending', 'chain', chain, 'reason', '', 'replay', replay,
             'replayed_at', NOW, 'updated_at', NOW)
  redis.call('SADD', PREFIX .. 'ep:' .. d[2] .. ':pending', did)
  schedule(dkey, did, job_name(did, chain, 1, 0), NOW, 1)
  redis.call('PEXPIRE', dkey, RETENTION)
  redis.call('PEXPIRE', dkey .. ':attempts', RETENTION)
  if replay ~= '' then redis.call('HINCRBY', PREFIX .. 'replay:' .. replay, 'enqueued', 1) end
  return 'ok'
end

-- Disables an endpoint, cancels its pending deliveries and tells the business.
local function disable_endpoint(ep, reason, cancel_reason, emit_id)
  local epkey = PREFIX .. 'ep:' .. ep
  local f = redis.call('HMGET', epkey, 'disabled', 'business_id')
  if not f[2] or f[1] == '1' then return false end
  redis.call('HSET', epkey, 'disabled', '1', 'disabled_reason', reason, 'disabled_at', NOW)
  for _, did in ipairs(redis.call('SMEMBERS', epkey .. ':pending')) do
    close_delivery(PREFIX .. 'dlv:' .. did, did, ep, 'cancelled', cancel_reason)
  end
  operational_event(emit_id, 'hookgate.endpoint.disabled', f[2],
                    {endpoint_id = ep, reason = reason, disabled_at = NOW_ISO})
  return true
end
"""


def _script(body: str) -> str:
    # The body runs as a function so that whichever `return` ends it, the counters are
    # written after it.
    return (
        _HEADER
        + _COMMON
        + "local function main()\n"
        + body
        + "\nend\nlocal result = main()\nflush_counts()\nreturn result\n"
    )


# KEYS: registered types hash.
# ARGV+: idem_ttl_ms, the idempotency key prefix (keys.idempotency), then two per event:
#        its fields, space-separated (check_custom_type 0|1, event_id, type, business_id,
#        fingerprint or '-', only_endpoint or '-', 'k' followed by the idempotency key or '_'
#        when none; none of them can hold a space), and its body. Two arguments per event
#        rather than nine: redis-py packs every argument in Python, which was a quarter of
#        the gateway's time on batches.
# Stores a group of events (a group commit, a batch) in one call; each event on its own is
# as atomic as the call. Returns kind, payload pairs. Idempotency keys are built here from
# their prefix (hookgate runs on one Redis primary, never Redis Cluster).
INGEST_MANY = _script(r"""
local idem_ttl, idem_prefix = tonumber(ARGV[12]), ARGV[13]
local out, seen = {}, {}
for a = 14, #ARGV, 2 do
  local check, event_id, etype, business_id, fingerprint, only_ep, idem = string.match(
    ARGV[a], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
  if only_ep == '-' then only_ep = '' end
  local key = string.sub(idem, 1, 1) == 'k' and idem_prefix .. string.sub(idem, 2)
  local prior = key and redis.call('GET', key)
  if prior then
    out[#out + 1] = 'duplicate'
    out[#out + 1] = prior
  elseif check == '1' and redis.call('HEXISTS', KEYS[1], etype) == 0 then
    out[#out + 1] = 'unknown_type'
    out[#out + 1] = ''
  else
    local made = ingest_event(event_id, ARGV[a + 1], etype, business_id, only_ep, seen)
    if key then redis.call('SET', key, fingerprint .. '|' .. event_id, 'PX', idem_ttl) end
    out[#out + 1] = 'created'
    out[#out + 1] = table.concat(made, ',')
  end
end
return out
""")

# Starts one attempt of delivery `did` under arq job `job`: checks the job is the delivery's
# current one, closes deliveries whose endpoint or event is gone, and takes a slot of the
# endpoint's in-flight cap for `lease` ms (or, when the cap is full, re-defers the attempt by
# `busy_defer` ms under a new job). Returns {'go', body, url, secrets, headers, attempt,
# event_id, endpoint_id, chain, event_type} or {kind} for an attempt not to make.
_CLAIM_FN = r"""
local function claim_delivery(dkey, did, job, lease, busy_defer, default_cap)
  local d = redis.call('HMGET', dkey, 'status', 'job', 'endpoint_id', 'attempt', 'chain',
                       'event_type')
  if not d[1] then return {'gone'} end
  if d[1] ~= 'pending' or full_job(did, d[2]) ~= job then return {'stale'} end
  local event_id = 'evt_' .. string.sub(did, 5, 30)
  local epkey = PREFIX .. 'ep:' .. d[3]
  local ep = redis.call('HMGET', epkey, 'url', 'secrets', 'headers', 'max_in_flight', 'disabled')
  if not ep[1] then
    close_delivery(dkey, did, d[3], 'cancelled', 'endpoint_deleted')
    return {'cancelled'}
  end
  if ep[5] == '1' then
    close_delivery(dkey, did, d[3], 'cancelled', 'endpoint_disabled')
    return {'cancelled'}
  end
  local body = redis.call('GET', PREFIX .. 'evt:' .. event_id .. ':body')
  if not body then
    close_delivery(dkey, did, d[3], 'failed', 'event_expired')
    return {'failed'}
  end
  local inflight = epkey .. ':inflight'
  redis.call('ZREMRANGEBYSCORE', inflight, '-inf', NOW)
  local cap = tonumber(ep[4]) or default_cap
  if not redis.call('ZSCORE', inflight, did) and redis.call('ZCARD', inflight) >= cap then
    local k = redis.call('HINCRBY', dkey, 'redefers', 1)
    schedule(dkey, did, job_name(did, d[5], d[4], k), NOW + busy_defer, d[4])
    return {'busy'}
  end
  redis.call('ZADD', inflight, NOW + lease, did)
  redis.call('PEXPIRE', inflight, lease * 2)
  return {'go', body, ep[1], ep[2], ep[3] or '', d[4], event_id, d[3], d[5] or '0', d[6] or ''}
end
"""

# No KEYS (key names are built from ARGV, as arq itself does).
# ARGV+: in-progress prefix, retry prefix, in-progress timeout ms, how many, lease_ms,
#        busy_defer_ms (the least), default_cap, then the job ids arq's poll read.
# What arq's start of a job (four round trips: WATCH, EXISTS, ZSCORE, MULTI) plus its job
# read and hookgate's CLAIM do per job, for a whole poll in one atomic step. A job is taken
# when it is still queued, due and not in progress elsewhere. An attempt job that should send
# gets its in-progress key and comes back with its claim; one that should not (stale, its
# delivery closed, its endpoint busy: re-deferred) is ended here, as arq's finish would. Any
# other job (a replay batch) is marked in progress and comes back as {id, score} for arq.
# At most `how many` jobs are started.
TAKE_AND_CLAIM = _script(
    _CLAIM_FN
    + r"""
local inprog, retry, timeout = ARGV[12], ARGV[13], tonumber(ARGV[14])
local wanted, lease, busy, cap = tonumber(ARGV[15]), tonumber(ARGV[16]), tonumber(ARGV[17]),
  tonumber(ARGV[18])
local out, started = {}, 0
for i = 19, #ARGV do
  if started >= wanted then break end
  local id = ARGV[i]
  local score = redis.call('ZSCORE', ARQ_QUEUE, id)
  if score and tonumber(score) <= NOW and redis.call('EXISTS', inprog .. id) == 0 then
    local did = string.match(id, '^attempt:(dlv_[^:]+):')
    if did then
      -- spread re-deferrals of a busy endpoint over busy .. 3 * busy ms
      local c = claim_delivery(PREFIX .. 'dlv:' .. did, did, id, lease,
                               busy + (i * 97 + NOW) % (2 * busy), cap)
      if c[1] == 'go' then
        redis.call('SET', inprog .. id, '1', 'PX', timeout)
        started = started + 1
        table.insert(c, 1, id)
        out[#out + 1] = c
      else
        redis.call('DEL', ARQ_JOB .. id, retry .. id)
        redis.call('ZREM', ARQ_QUEUE, id)
      end
    else
      redis.call('SET', inprog .. id, '1', 'PX', timeout)
      started = started + 1
      out[#out + 1] = {id, score}
    end
  end
end
return out
"""
)

# Records one attempt (its log entry, the endpoint's health, metrics) and moves the delivery
# on: done, its next attempt scheduled, failed (emitting hookgate.delivery.exhausted), or its
# endpoint disabled (410, or failing for HOOKGATE_DISABLE_AFTER). Also ends the arq job that
# ran the attempt (what arq's finish_job does in its own round trip). Returns 'ok', 'stale'
# (the job was no longer the delivery's current one: only the log entry is kept) or 'gone'.
_FINISH_FN = r"""
local function finish_attempt(dkey, akey, did, job, record, outcome, next_at, bucket, latency,
                                emit_exhausted, emit_disabled, inprog, retry)
  redis.call('DEL', ARQ_JOB .. job, inprog .. job, retry .. job)
  redis.call('ZREM', ARQ_QUEUE, job)
  local d = redis.call('HMGET', dkey, 'status', 'job', 'endpoint_id', 'attempt', 'chain',
                       'event_type', 'business_id')
  if not d[1] then return 'gone' end
  local ep = d[3]
  local epkey = PREFIX .. 'ep:' .. ep
  redis.call('ZREM', epkey .. ':inflight', did)
  redis.call('RPUSH', akey, record)
  redis.call('PEXPIRE', akey, RETENTION)
  redis.call('PEXPIRE', dkey, RETENTION)
  redis.call('HSET', dkey, 'updated_at', NOW, 'attempts', redis.call('LLEN', akey))
  local ok = outcome == 'succeeded'
  count(ok and 'attempts_success' or 'attempts_failure', 1)
  count('latency_bucket:' .. bucket, 1)
  count('latency_sum', tonumber(latency))
  -- endpoint health: hourly outcome counts for 48 h, the failing streak
  local stats = epkey .. ':stats'
  local hour = math.floor(NOW / 3600000)
  redis.call('HINCRBY', stats, hour .. (ok and ':ok' or ':fail'), 1)
  redis.call('HDEL', stats, (hour - 48) .. ':ok', (hour - 48) .. ':fail')
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
  elseif outcome == 'failed' then
    close_delivery(dkey, did, ep, 'failed', 'retries_exhausted')
    if string.sub(d[6] or '', 1, 9) ~= 'hookgate.' then
      operational_event(emit_exhausted, 'hookgate.delivery.exhausted', d[7],
        {delivery_id = did, event_id = 'evt_' .. string.sub(did, 5, 30), endpoint_id = ep,
         event_type = d[6], attempts = redis.call('LLEN', akey)})
    end
  elseif outcome == 'retry' then
    local n = tonumber(d[4]) + 1
    schedule(dkey, did, job_name(did, d[5], n, 0), next_at, n)
  elseif outcome == 'gone' then
    disable_endpoint(ep, 'endpoint answered 410 Gone', 'endpoint_gone', emit_disabled)
  end
  if failing_since and DISABLE_AFTER > 0 and NOW - failing_since >= DISABLE_AFTER then
    disable_endpoint(ep, 'no successful delivery for ' .. DISABLE_AFTER_TEXT,
                     'endpoint_disabled', emit_disabled)
  end
  return 'ok'
end
"""

# No KEYS (built from the prefix).
# ARGV+: arq in-progress prefix, arq retry prefix, then two per attempt: its fields,
#        space-separated (delivery_id, job_id, outcome: succeeded|retry|failed|gone,
#        next_at_ms, latency_bucket, latency_seconds, then the ids of the operational events
#        it may emit, exhausted and disabled, or '-' when none can be due), and its log
#        entry (JSON).
# The outcomes of several attempts, each its own atomic step as above, in one call (the
# worker's attempts that end together share it). Returns one state per attempt.
FINISH_MANY = _script(
    _FINISH_FN
    + r"""
local states = {}
for a = 14, #ARGV, 2 do
  local did, job, outcome, next_at, bucket, latency, emit_exhausted, emit_disabled =
    string.match(ARGV[a], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
  local dkey = PREFIX .. 'dlv:' .. did
  states[#states + 1] = finish_attempt(dkey, dkey .. ':attempts', did, job, ARGV[a + 1],
    outcome, tonumber(next_at), bucket, latency, emit_exhausted, emit_disabled, ARGV[12],
    ARGV[13])
end
return states
"""
)

# KEYS: delivery key.  ARGV+: delivery_id
# A pending delivery whose job no longer exists (an expired arq job, or one arq gave up on
# after repeated worker crashes) gets a new job for the same attempt.
RESCUE = _script(r"""
local did = ARGV[12]
local d = redis.call('HMGET', KEYS[1], 'status', 'job', 'attempt', 'chain')
if d[1] ~= 'pending' then
  redis.call('ZREM', DUE, did)
  return 'closed'
end
if d[2] and d[2] ~= '' and redis.call('EXISTS', ARQ_JOB .. full_job(did, d[2])) == 1 then
  return 'queued'
end
local k = redis.call('HINCRBY', KEYS[1], 'redefers', 1)
schedule(KEYS[1], did, job_name(did, d[4], d[3] or '1', k), NOW, d[3] or '1')
return 'rescued'
""")

# KEYS: delivery key.  ARGV+: delivery_id
REPLAY = _script(r"""
return replay_delivery(ARGV[12], '', nil, false)
""")

# KEYS: endpoint key.  ARGV+: endpoint_id, reason, emit_id
DISABLE = _script(r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
if disable_endpoint(ARGV[12], ARGV[13], 'endpoint_disabled', ARGV[14]) then return 'ok' end
return 'already'
""")

# KEYS: endpoint key, endpoint pending set.  ARGV+: endpoint_id, reason
# Cancels every pending delivery of an endpoint (on delete).
CANCEL_ENDPOINT = _script(r"""
local ep, reason = ARGV[12], ARGV[13]
local pending = redis.call('SMEMBERS', KEYS[2])
for _, did in ipairs(pending) do
  close_delivery(PREFIX .. 'dlv:' .. did, did, ep, 'cancelled', reason)
end
return #pending
""")

# KEYS: replay key, its to-do list, its lock.  ARGV+: replay_id, batch size, next job id
# Replays the next batch of a bulk replay and queues the job for the batch after it, or marks
# the replay fully enqueued. One script, so a crash cannot drop a batch half-way.
REPLAY_BATCH = _script(r"""
local replay, size, next_job = ARGV[12], tonumber(ARGV[13]), ARGV[14]
local r = redis.call('HMGET', KEYS[1], 'created_at', 'filter')
local started, only_failed = tonumber(r[1]), r[2] ~= 'all'
local batch = redis.call('LRANGE', KEYS[2], 0, size - 1)
for _, did in ipairs(batch) do
  local result = replay_delivery(did, replay, started, only_failed)
  if result ~= 'ok' and result ~= 'already' then
    redis.call('HINCRBY', KEYS[1], 'skipped', 1)
  end
end
redis.call('LTRIM', KEYS[2], #batch, -1)
if redis.call('LLEN', KEYS[2]) > 0 then
  redis.call('SET', ARQ_JOB .. next_job, arq_job('replay_batch', replay), 'PX', JOB_EXPIRY)
  redis.call('ZADD', ARQ_QUEUE, NOW, next_job)
  return 'more'
end
redis.call('HSET', KEYS[1], 'state', 'enqueued')
redis.call('DEL', KEYS[3])
return 'done'
""")

# KEYS: replay lock, replay hash, replay todo list (both already written, seen by no one yet)
# ARGV+: replay id, lock ttl ms, first batch job id
# Makes a prepared bulk replay the endpoint's running one, or returns the one already
# running (the caller then drops what it prepared). The lock only ever points at a replay
# whose hash and todo list are complete, so whoever reads it sees the real `matched`.
REPLAY_START = _script(r"""
local replay, ttl, job = ARGV[12], tonumber(ARGV[13]), ARGV[14]
local running = redis.call('GET', KEYS[1])
if running then return {0, running} end
if redis.call('LLEN', KEYS[3]) > 0 then
  redis.call('SET', KEYS[1], replay, 'PX', ttl)
  redis.call('SET', ARQ_JOB .. job, arq_job('replay_batch', replay), 'PX', JOB_EXPIRY)
  redis.call('ZADD', ARQ_QUEUE, NOW, job)
else
  redis.call('HSET', KEYS[2], 'state', 'enqueued')
end
return {1, replay}
""")
