local token = ARGV[1] .. ':' .. string.format('%.0f', now())
if redis.call('SET', KEYS[1], token, 'NX', 'PX', ARGV[2]) then return token end
local holder = redis.call('GET', KEYS[1])
if holder and string.sub(holder, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then
  return (string.gsub(holder, '!$', ''))  -- revoked meanwhile: the fenced write refuses
end
return false
