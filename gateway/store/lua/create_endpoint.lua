--[[ CREATE_ENDPOINT: stores a new endpoint, unless its business already has as many as a
  business may have: the count and the write are one step, so concurrent creates never pass
  the limit. A business above the limit (from before it was set) keeps its endpoints.

  KEYS[1]     the endpoint (hash)
  KEYS[2]     its business's endpoints (set)
  ARGV[1..5]  the common arguments (scripts.py)
  ARGV[6]     endpoint id
  ARGV[7]     business id
  ARGV[8]     how many endpoints a business may have
  ARGV[9..]   the endpoint's fields: name, value, name, value, …
  Returns     {1, endpoints the business has now} when stored, {0, endpoints it has} when not
]]

local function main()
  local have = redis.call('SCARD', KEYS[2])
  if have >= tonumber(ARGV[8]) then return {0, have} end
  redis.call('HSET', KEYS[1], unpack(ARGV, 9))
  redis.call('SADD', KEYS[2], ARGV[6])
  redis.call('SADD', KEY_ENDPOINTS, ARGV[6])
  redis.call('SADD', KEY_BUSINESSES, ARGV[7])
  return {1, have + 1}
end

return main()
