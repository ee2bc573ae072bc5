-- The audit log: every entry goes to one stream, and to its business's stream under the same
-- id (a reader of one business then reads only its own entries). Both are trimmed to the
-- audit retention as entries are added (MINID ~: whole stream nodes, so cheap; readers skip
-- what is older but not yet trimmed), and a business's stream expires once its newest entry
-- is past retention. Field names and order: gateway/core/audit.py FIELDS.
local function audit_append(retention, business_id, fields)
  local oldest = string.format('%d', math.max(0, NOW - retention))
  local id = redis.call('XADD', KEY_AUDIT, 'MINID', '~', oldest, '*', unpack(fields))
  if business_id ~= '' then
    local key = key_audit_business(business_id)
    local copied = redis.pcall('XADD', key, 'MINID', '~', oldest, id, unpack(fields))
    if type(copied) == 'table' and copied.err then
      -- its newest id is ahead of the log's (only if the log was deleted by hand): the entry
      -- still lands, under an id of its own
      redis.call('XADD', key, 'MINID', '~', oldest, '*', unpack(fields))
    end
    redis.call('PEXPIRE', key, retention)
  end
  return id
end

-- hookgate's own action on an endpoint (actor "system"), as gateway/core/audit.py SYSTEM.
local function audit_system(retention, business_id, action, targets, detail)
  return audit_append(retention, business_id or '', {
    'actor_kind', 'system', 'actor_id', 'system', 'actor_name', 'hookgate',
    'business_id', business_id or '', 'client', '', 'action', action, 'targets', targets,
    'outcome', 'success', 'status', '', 'detail', detail})
end
