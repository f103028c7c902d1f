-- Re-claims stream entries only if they are still in our pending list, resetting their idle
-- time (JUSTID: the delivery count stays) (src/lib/events_consumer.c and the clients'
-- event-bus consumers).
-- KEYS: 1 stream. ARGV: 1 group, 2 consumer, 3... entry ids.
-- Returns one integer per id: 1 if ours, else 0.
local out = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 0 or p[1][2] ~= ARGV[2] then out[#out + 1] = 0 else
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    out[#out + 1] = 1
  end
end
return out
