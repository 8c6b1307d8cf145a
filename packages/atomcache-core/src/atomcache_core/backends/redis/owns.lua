local function owns(holder)
  if not holder then return false end
  if holder == ARGV[1] or holder == ARGV[1] .. '!' then return true end
  return ARGV[2] == 'prefix' and string.sub(holder, 1, #ARGV[1] + 1) == ARGV[1] .. ':'
end
