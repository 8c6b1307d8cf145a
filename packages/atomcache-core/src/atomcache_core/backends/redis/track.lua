local since = tonumber(string.match(ARGV[1], ':(%d+)$')) or now()
local ttl = tonumber(ARGV[2])
for i = 1, #KEYS do
  if not redis.call('SET', KEYS[i], string.format('%.0f', since - 1), 'NX', 'PX', ttl) then
    if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
return #KEYS
