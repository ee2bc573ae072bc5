-- Exact names or `family.*`; an empty subscription takes every type but hookgate's own,
-- which go only to endpoints that ask for them (and so can never feed on themselves).
local function matches(types, etype)
  if types == '' then return string.sub(etype, 1, 9) ~= 'hookgate.' end
  for p in string.gmatch(types, '%S+') do
    if p == etype then return true end
    if string.sub(p, -2) == '.*' then
      local stem = string.sub(p, 1, -2)
      if string.sub(etype, 1, #stem) == stem then return true end
    end
  end
  return false
end
