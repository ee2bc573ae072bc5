--[[ FINISH_MANY: the outcomes of several attempts (the worker's attempts that end together),
  each its own atomic step as lib/finish.lua describes, in one call.

  KEYS        none (each attempt's keys are built from its delivery id)
  ARGV[1..5]  the common arguments (scripts.py)
  ARGV[6]     retention of the audit log (ms), for the entry of an endpoint it disables
  ARGV[7..]   two per attempt: its fields, space-separated (delivery_id, job_id, outcome:
              succeeded|retry|failed|gone, next_at_ms, latency_bucket, latency_seconds, then
              the ids of the operational events it may emit, exhausted and disabled, or '-'
              when none can be due), then its log entry (JSON)
  Returns     per attempt: 'ok', 'stale' or 'gone', followed, space-separated, by the jobs
              its outcome made due now (an ordering key's next delivery), if any
]]
--@include lib/finish.lua

local function main()
  local states = {}
  local audit_retention = tonumber(ARGV[6])
  for a = 7, #ARGV, 2 do
    local did, job, outcome, next_at, bucket, latency, emit_exhausted, emit_disabled =
      string.match(ARGV[a], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
    local before = #PROMOTED
    local state = finish_attempt(key_delivery(did), key_delivery_attempts(did), did,
      job, ARGV[a + 1], outcome, tonumber(next_at), bucket, latency, emit_exhausted,
      emit_disabled, audit_retention)
    for p = before + 1, #PROMOTED do state = state .. ' ' .. PROMOTED[p] end
    states[#states + 1] = state
  end
  return states
end

return with_counts(main())
