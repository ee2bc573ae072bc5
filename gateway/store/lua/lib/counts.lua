-- Counters of the metrics hash, added up over the script call and written once at its end: a
-- call recording a hundred attempts writes each counter once. A script that counts (directly
-- or through a helper) ends with `return with_counts(main())`; the loader checks it does.
local COUNTS = {}

local function count(field, n)
  COUNTS[field] = (COUNTS[field] or 0) + n
end

local function flush_counts()
  for field, n in pairs(COUNTS) do
    if field == 'latency_sum' then
      redis.call('HINCRBYFLOAT', KEY_METRICS, field, string.format('%.6f', n))
    else
      redis.call('HINCRBY', KEY_METRICS, field, n)
    end
  end
end

-- The reply is computed first (every `return` of main ends up here), then the counts written.
local function with_counts(reply)
  flush_counts()
  return reply
end
