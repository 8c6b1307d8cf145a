local function unwrap(value)
  if string.sub(value, 1, 2) ~= '\0S' then return nil end
  local colon = string.find(value, ':', 3, true)
  local after = colon and string.find(value, ':', colon + 1, true)
  if not after then return nil end  -- not a wrapping: bytes planted under the key
  local since = tonumber(string.sub(value, 3, colon - 1))
  local count = tonumber(string.sub(value, colon + 1, after - 1))
  if not since or not count then return nil end
  local position, stamps = after + 1, {}
  for i = 1, count do
    local stop = string.find(value, ':', position, true)
    local length = stop and tonumber(string.sub(value, position, stop - 1))
    if not length then return nil end
    stamps[i] = string.sub(value, stop + 1, stop + length)
    position = stop + 1 + length
  end
  return since, stamps, position
end

local function live(since, stamps)
  for _, stamp_key in ipairs(stamps) do
    local stamp = redis.call('GET', stamp_key)
    if not stamp or not string.match(stamp, '^%d+$') or tonumber(stamp) >= since then
      return false
    end
  end
  return true
end

local function now()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000000 + tonumber(time[2])
end
