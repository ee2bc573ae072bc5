--[[ LISTEN_SESSION: a business's listen session of one name, stored now when it has none (or
  the endpoint it named was deleted). Finding and storing are one step, so two clients opening
  the same session at once get one endpoint; a new one counts against the business's endpoint
  limit, as CREATE_ENDPOINT counts. Opening a session restarts its expiry, as a connection
  does: one opened to be connected to is not deleted in between.

  KEYS[1]     the new endpoint (hash)
  KEYS[2]     its business's endpoints (set)
  KEYS[3]     its business's listen sessions (hash: name → endpoint id)
  ARGV[1..5]  the common arguments (scripts.py)
  ARGV[6]     the new endpoint's id
  ARGV[7]     business id
  ARGV[8]     how many endpoints a business may have
  ARGV[9]     session name
  ARGV[10..]  the new endpoint's fields: name, value, name, value, …
  Returns     {'found', endpoint id}, {'created', endpoint id}, or {'limit', how many
              endpoints the business has} when it has as many as it may
]]

local function main()
  local found = redis.call('HGET', KEYS[3], ARGV[9])
  if found and redis.call('HGET', key_endpoint(found), 'kind') == LISTEN_KIND then
    redis.call('ZADD', KEY_LISTEN_SESSIONS, NOW, found)
    return {'found', found}
  end
  local have = redis.call('SCARD', KEYS[2])
  if have >= tonumber(ARGV[8]) then return {'limit', tostring(have)} end
  redis.call('HSET', KEYS[1], unpack(ARGV, 10))
  redis.call('SADD', KEYS[2], ARGV[6])
  redis.call('SADD', KEY_ENDPOINTS, ARGV[6])
  redis.call('SADD', KEY_BUSINESSES, ARGV[7])
  redis.call('HSET', KEYS[3], ARGV[9], ARGV[6])
  redis.call('ZADD', KEY_LISTEN_SESSIONS, NOW, ARGV[6])
  return {'created', ARGV[6]}
end

return main()
