local revoked = 0
for i = 1, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if holder and string.sub(holder, -1) ~= '!' then
    redis.call('SET', KEYS[i], holder .. '!', 'KEEPTTL')
    revoked = revoked + 1
  end
end
return revoked
