--[[ AUDIT: appends one entry to the audit log (and to its business's stream).

  KEYS        none (the streams' names are keys.py's, from the prelude)
  ARGV[1..5]  the common arguments (scripts.py)
  ARGV[6]     retention of the audit log (ms)
  ARGV[7]     the entry's business, or '' for none
  ARGV[8..]   the entry's fields and values, alternating (gateway/core/audit.py FIELDS)
  Returns     the entry's id
]]
--@include lib/audit.lua

local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
return audit_append(tonumber(ARGV[6]), ARGV[7], fields)
