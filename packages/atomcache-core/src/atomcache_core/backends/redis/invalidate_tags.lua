local count = #KEYS / 2
local removed = 0
for i = 1, count do
  local members = redis.call('SMEMBERS', KEYS[i])
  for first = 1, #members, 500 do
    local last = math.min(first + 499, #members)
    removed = removed + redis.call('UNLINK', unpack(members, first, last))
  end
  redis.call('UNLINK', KEYS[i])
end
local stamp = string.format('%.0f', now())
for i = count + 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if redis.pcall('SET', KEYS[i], stamp, 'KEEPTTL').err then
      redis.call('DEL', KEYS[i])
    end
  end
end
return removed
