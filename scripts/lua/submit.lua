-- Job submission: rate limit + atomic enqueue + announcement in one call (src/lib/submit.c,
-- include/switchboard/submit.h). The one copy: the C build embeds this file and the Python and
-- Node clients (clients/) load it, so every producer runs the same bytes (same SHA1).
-- KEYS: 1 rate window, 2 rate_hits, 3 rate_blocked, 4 record, 5 queue, 6 user index,
--       7 jobs counter, 8 audit stream, 9 all-jobs index, 10 the job's history (jobctl.h).
-- ARGV: 1 limit (0: no rate limit), 2 window ms, 3 member suffix, 4 counter TTL,
--       5 job id ('': rate check only), 6 record, 7 job TTL, 8 created ms, 9 audit MAXLEN,
--       10 event_id, 11 event_type, 12 timestamp, 13 data, 14 channel ('': none), 15 message
--       (the {type}:created notification for the owner's Socket.IO room), 16 the owner (who,
--       in the history).
-- Returns {allowed 0|1, remaining (-1 without a limit), retry_ms}.
local function count(key)
  if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, ARGV[4]) end
end
local limit = tonumber(ARGV[1])
local remaining = -1
if limit > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local win = tonumber(ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)
  local n = redis.call('ZCARD', KEYS[1])
  count(KEYS[2])
  if n >= limit then
    count(KEYS[3])
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    local retry = win
    if oldest[2] then retry = tonumber(oldest[2]) + win - now end
    if retry < 1 then retry = 1 end
    return {0, 0, retry}
  end
  redis.call('ZADD', KEYS[1], now, t[1] .. t[2] .. '-' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], win)
  remaining = limit - n - 1
end
if ARGV[5] ~= '' then
  redis.call('LPUSH', KEYS[5], ARGV[5])
  redis.call('SET', KEYS[4], ARGV[6], 'EX', ARGV[7])
  redis.call('ZADD', KEYS[6], ARGV[8], ARGV[5])
  redis.call('EXPIRE', KEYS[6], ARGV[7])
  count(KEYS[7])
  redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[9], '*', 'event_id', ARGV[10],
             'event_type', ARGV[11], 'timestamp', ARGV[12], 'data', ARGV[13])
  if ARGV[14] ~= '' then redis.call('PUBLISH', ARGV[14], ARGV[15]) end
  redis.call('ZADD', KEYS[9], ARGV[8], ARGV[5])
  redis.call('XADD', KEYS[10], 'MAXLEN', '~', 100, '*', 'status', 'queued', 'by', ARGV[16],
             'at', ARGV[12], 'detail', 'enqueued')
  redis.call('EXPIRE', KEYS[10], ARGV[7])
end
return {1, remaining, 0}
