-- Job submission: rate limit + atomic enqueue + announcement, for one job or a group of jobs
-- in one call (src/lib/submit.c, include/switchboard/submit.h). The one copy: the C build embeds
-- this file and the Python and Node clients (clients/) load it, so every producer runs the same
-- bytes (same SHA1).
-- Per job, job after job (KEYS 10 a job, ARGV 16 a job, in the same order):
-- KEYS: 1 rate window, 2 rate_hits, 3 rate_blocked, 4 record, 5 queue, 6 user index,
--       7 jobs counter, 8 audit stream, 9 all-jobs index, 10 the job's history list (jobctl.h).
-- ARGV: 1 limit (0: no rate limit), 2 window ms, 3 member suffix, 4 counter TTL,
--       5 job id ('': rate check only), 6 record, 7 job TTL, 8 created ms, 9 audit MAXLEN,
--       10 event_id, 11 event_type, 12 timestamp, 13 data ('': no audit entry), 14 channel ('': none), 15 message
--       (the {type}:created notification for the owner's Socket.IO room), 16 the owner (who,
--       in the history).
-- Returns three integers a job, in order: allowed 0|1, remaining (-1 without a limit),
-- retry_ms.
--
-- A group is decided exactly as its jobs would be one by one at the same instant (one TIME):
-- the rate decisions run first, in order, each seeing the window entries of the ones before;
-- then every allowed job is written. The queue's LPUSH (the one write a misconfigured
-- deployment could break: a key of another type) comes before any record, so a failing
-- script leaves no job half written, as for a single job. What can be counted once a call is:
-- TIME, each window's cleanup and PEXPIRE, the daily counters (INCRBY), the LPUSH of the queue
-- and the ZADD of the all-jobs index.
local NK, NA = 10, 16
local jobs = #KEYS / NK
local now, stamp
local counters, counter_ttl, counter_order = {}, {}, {}
local function count(key, ttl)
  if not counters[key] then
    counters[key], counter_ttl[key] = 0, ttl
    counter_order[#counter_order + 1] = key
  end
  counters[key] = counters[key] + 1
end
local function add(groups, order, key, ...)
  local g = groups[key]
  if not g then
    g = {}
    groups[key] = g
    order[#order + 1] = key
  end
  for _, v in ipairs({...}) do g[#g + 1] = v end
end

-- 1. rate decisions, in order
local out, allowed = {}, {}
local windows, expired = {}, {}
for j = 0, jobs - 1 do
  local k, a = j * NK, j * NA
  local limit = tonumber(ARGV[a + 1])
  local ok, remaining, retry = 1, -1, 0
  if limit > 0 then
    if not now then
      local t = redis.call('TIME')
      now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      stamp = t[1] .. t[2]
    end
    local key, win = KEYS[k + 1], tonumber(ARGV[a + 2])
    local seen = key .. ' ' .. win
    local n = windows[seen]
    if not n then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now - win)
      n = redis.call('ZCARD', key)
    end
    count(KEYS[k + 2], ARGV[a + 4])
    if n >= limit then
      count(KEYS[k + 3], ARGV[a + 4])
      local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      retry = win
      if oldest[2] then retry = tonumber(oldest[2]) + win - now end
      if retry < 1 then retry = 1 end
      ok, remaining = 0, 0
    else
      redis.call('ZADD', key, now, stamp .. '-' .. ARGV[a + 3])
      if not expired[seen] then
        redis.call('PEXPIRE', key, win)
        expired[seen] = true
      end
      n = n + 1
      remaining = limit - n
    end
    windows[seen] = n
  end
  out[#out + 1], out[#out + 2], out[#out + 3] = ok, remaining, retry
  allowed[j] = ok == 1 and ARGV[a + 5] ~= ''
end

-- 2. the queue first (in job order, as one LPUSH each would), then each job's own writes
local queues, queue_order, indices, index_order = {}, {}, {}, {}
for j = 0, jobs - 1 do
  if allowed[j] then add(queues, queue_order, KEYS[j * NK + 5], ARGV[j * NA + 5]) end
end
for _, key in ipairs(queue_order) do redis.call('LPUSH', key, unpack(queues[key])) end
for j = 0, jobs - 1 do
  if allowed[j] then
    local k, a = j * NK, j * NA
    local id, ttl = ARGV[a + 5], ARGV[a + 7]
    redis.call('SET', KEYS[k + 4], ARGV[a + 6], 'EX', ttl)
    redis.call('ZADD', KEYS[k + 6], ARGV[a + 8], id)
    redis.call('EXPIRE', KEYS[k + 6], ttl)
    count(KEYS[k + 7], ARGV[a + 4])
    if ARGV[a + 13] ~= '' then
      redis.call('XADD', KEYS[k + 8], 'MAXLEN', '~', ARGV[a + 9], '*', 'event_id', ARGV[a + 10],
                 'event_type', ARGV[a + 11], 'timestamp', ARGV[a + 12], 'data', ARGV[a + 13])
    end
    if ARGV[a + 14] ~= '' then redis.call('PUBLISH', ARGV[a + 14], ARGV[a + 15]) end
    add(indices, index_order, KEYS[k + 9], ARGV[a + 8], id)
    redis.call('RPUSH', KEYS[k + 10], 'queued', ARGV[a + 16], ARGV[a + 12], 'enqueued')
    redis.call('EXPIRE', KEYS[k + 10], ttl)
  end
end

-- 3. what is counted once a call
for _, key in ipairs(index_order) do redis.call('ZADD', key, unpack(indices[key])) end
for _, key in ipairs(counter_order) do
  local n = counters[key]
  if redis.call('INCRBY', key, n) == n then redis.call('EXPIRE', key, counter_ttl[key]) end
end
return out
