--[[ CANCEL_ENDPOINT: cancels every pending delivery of an endpoint (on delete).

  KEYS[1]     the endpoint
  KEYS[2]     its pending deliveries (set)
  ARGV[1..5]  the common arguments (scripts.py)
  ARGV[6]     endpoint id
  ARGV[7]     reason
  Returns     how many deliveries were cancelled
]]
--@include lib/deliveries.lua

local function main()
  local ep, reason = ARGV[6], ARGV[7]
  local pending = redis.call('SMEMBERS', KEYS[2])
  for _, did in ipairs(pending) do
    close_delivery(key_delivery(did), did, ep, 'cancelled', reason)
  end
  return #pending
end

return with_counts(main())
