--[[ TAKE_AND_CLAIM: what arq's start of a job (four round trips: WATCH, EXISTS, ZSCORE, MULTI)
  plus its job read and hookgate's claim do per job, for a whole poll in one atomic step. A
  job is taken when it is still queued, due and not in progress elsewhere. An attempt job
  that should send gets its in-progress key and comes back with its claim (lib/claim.lua);
  one that should not (stale, its delivery closed, its endpoint busy: re-deferred) is ended
  here, as arq's finish would. Any other job (a replay batch) is marked in progress and comes
  back for arq to run. At most ARGV[7] jobs are started.

  KEYS        none: arq's keys are built from the job ids, as arq itself does
  ARGV[1..5]  the common arguments (scripts.py)
  ARGV[6]     in-progress timeout, ms (arq's)
  ARGV[7]     how many jobs to start, at most
  ARGV[8]     lease of an endpoint slot, ms
  ARGV[9]     busy deferral, ms (the least: spread over 1-3 times this)
  ARGV[10]    in-flight cap of endpoints that set none
  ARGV[11]    in-flight cap no endpoint goes above, whatever it set
  ARGV[12]    offline deferral of a listen session's attempt, ms (the least: spread over 1-3
              times this)
  ARGV[13..]  the job ids arq's poll read
  Returns     per started job: {job_id, 'go', claim...} for an attempt, {job_id, score} for a
              job arq runs
]]
--@include lib/claim.lua

local function main()
  local timeout, wanted = tonumber(ARGV[6]), tonumber(ARGV[7])
  local lease, busy, cap = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
  local max_cap, offline = tonumber(ARGV[11]), tonumber(ARGV[12])
  local out, started = {}, 0
  for i = 13, #ARGV do
    if started >= wanted then break end
    local id = ARGV[i]
    local score = redis.call('ZSCORE', ARQ_QUEUE, id)
    local free = score and tonumber(score) <= NOW
      and redis.call('EXISTS', ARQ_IN_PROGRESS_KEY .. id) == 0
    if free then
      local did = delivery_of(id)
      if did then
        -- spread re-deferrals of a busy endpoint over busy .. 3 * busy ms (and likewise those
        -- of a listen session no client is connected to)
        local c = claim_delivery(key_delivery(did), did, id, lease,
                                 busy + (i * 97 + NOW) % (2 * busy), cap, max_cap,
                                 offline + (i * 97 + NOW) % (2 * offline))
        if c[1] == 'go' then
          redis.call('SET', ARQ_IN_PROGRESS_KEY .. id, '1', 'PX', timeout)
          started = started + 1
          table.insert(c, 1, id)
          out[#out + 1] = c
        else
          end_job(id)
        end
      else
        redis.call('SET', ARQ_IN_PROGRESS_KEY .. id, '1', 'PX', timeout)
        started = started + 1
        out[#out + 1] = {id, score}
      end
    end
  end
  return out
end

return with_counts(main())
