-- Execution-time statistics of metrics:agent:{type}:execution_times (src/lib/metrics.c; also
-- loaded by the clients' metrics summary). KEYS: 1 the sorted set. ARGV: the histogram's upper
-- bounds (ms), ascending. Returns {count, sum, p95, p50, max, histogram counts...} as strings;
-- one more bucket than bounds counts what is above the last.
local n = redis.call('ZCARD', KEYS[1])
local out = {tostring(n), '0', '0', '0', '0'}
if n > 0 then
  local sum = 0
  local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 2, #all, 2 do sum = sum + tonumber(all[i]) end
  out[2] = tostring(sum)
  out[3] = all[2 * (math.ceil(0.95 * n))]
  out[4] = all[2 * (math.ceil(0.50 * n))]
  out[5] = all[#all]
end
local lo = '-inf'
for i = 1, #ARGV do
  out[#out + 1] = tostring(redis.call('ZCOUNT', KEYS[1], lo, ARGV[i]))
  lo = '(' .. ARGV[i]
end
out[#out + 1] = tostring(redis.call('ZCOUNT', KEYS[1], lo, '+inf'))
return out
