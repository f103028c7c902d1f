-- Re-claims a stream entry only if it is still in our pending list, resetting its idle time
-- (src/lib/events_consumer.c and the clients' event-bus consumers).
-- KEYS: 1 stream. ARGV: 1 group, 2 consumer, 3 entry id. Returns 1 if ours, else 0.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
