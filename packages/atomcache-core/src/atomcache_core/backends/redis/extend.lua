if owns(redis.call('GET', KEYS[1])) then return redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 0
