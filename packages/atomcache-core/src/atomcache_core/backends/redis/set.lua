local ttl = tonumber(ARGV[2])
local token = ARGV[3]
local count = (#KEYS - 2) / 2
local since, holder
if string.sub(token, -1) == '!' then  -- a revoked token (never handed out, but refused)
  token = string.sub(token, 1, -2)
end
if token ~= '' then
  holder = redis.call('GET', KEYS[2])
  if holder and holder ~= token and holder ~= token .. '!' then return 0 end
  -- a lock that vanished (evicted, expired) is no newer owner: the checks below decide
  since = tonumber(string.match(token, ':(%d+)$'))
end
since = since or now()
local refused = holder == token .. '!'
local current = redis.call('GET', KEYS[1])
if current and not refused then
  local current_since, stamps = unwrap(current)
  if ARGV[4] == 'nx' and (not current_since or live(current_since, stamps)) then return 0 end
  refused = token ~= '' and current_since ~= nil and current_since >= since
end
for i = 1, count do
  if refused then break end
  local stamp = redis.call('GET', KEYS[2 + count + i])
  refused = stamp ~= false and (not string.match(stamp, '^%d+$') or tonumber(stamp) >= since)
end
if refused then
  if holder then redis.call('DEL', KEYS[2]) end
  return 2
end
local parts = {'\0S', string.format('%.0f', since), ':', count, ':'}
for i = 1, count do
  local stamp_key = KEYS[2 + count + i]
  parts[#parts + 1] = #stamp_key .. ':' .. stamp_key
end
parts[#parts + 1] = ARGV[1]
redis.call('SET', KEYS[1], table.concat(parts), 'PX', ttl)
for i = 1, count do
  local tag_key, stamp_key = KEYS[2 + i], KEYS[2 + count + i]
  -- forget up to two members whose entries are gone, so tag sets stay small
  for _, member in ipairs(redis.call('SRANDMEMBER', tag_key, 2)) do
    if redis.call('EXISTS', member) == 0 then redis.call('SREM', tag_key, member) end
  end
  redis.call('SADD', tag_key, KEYS[1])
  if redis.call('PTTL', tag_key) < ttl then redis.call('PEXPIRE', tag_key, ttl) end
  if redis.call('EXISTS', stamp_key) == 0 then
    -- a new stamp, older than this value: only computations begun before it are refused
    redis.call('SET', stamp_key, string.format('%.0f', since - 1), 'PX', ttl)
  elseif redis.call('PTTL', stamp_key) < ttl then
    redis.call('PEXPIRE', stamp_key, ttl)
  end
end
if holder then redis.call('DEL', KEYS[2]) end
return 1
