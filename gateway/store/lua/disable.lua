--[[ DISABLE: disables an endpoint, cancels its pending deliveries and emits
  hookgate.endpoint.disabled.

  KEYS[1]     the endpoint
  ARGV[1..5]  the common arguments (scripts.py)
  ARGV[6]     endpoint id
  ARGV[7]     reason
  ARGV[8]     id of the hookgate.endpoint.disabled event
  Returns     'ok', 'already' (it was disabled) or 'gone'
]]
--@include lib/endpoints.lua

local function main()
  if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
  if disable_endpoint(ARGV[6], ARGV[7], 'endpoint_disabled', ARGV[8]) then return 'ok' end
  return 'already'
end

return with_counts(main())
