--[[ REPLAY: a new attempt chain for one delivery (lib/replay.lua).

  KEYS[1]     the delivery
  ARGV[1..5]  the common arguments (scripts.py)
  ARGV[6]     delivery id
  Returns     'ok', 'gone', 'pending', 'endpoint_deleted' or 'endpoint_disabled'
]]
--@include lib/replay.lua

return with_counts(replay_delivery(ARGV[6], '', nil, false))
