/* Lua fragments shared by the job-control scripts (jobctl.c, jobctl_query.c) and the agent's
 * finish script (agent_scripts.c). Each defines local functions; `prefix` is agent:{type}:.
 * Private to src/lib. */
#ifndef SB_JOBCTL_LUA_H
#define SB_JOBCTL_LUA_H

/* state_of(text): the job's state and the decoded record (nil when not JSON). A failed
 * record is 'dead'; a queued one with an error and attempts made is 'retrying'. */
#define SB_LUA_STATE_OF \
    "local function state_of(text)\n" \
    "  local ok, rec = pcall(cjson.decode, text)\n" \
    "  if not ok or type(rec) ~= 'table' then return 'unknown', nil end\n" \
    "  local s = rec.status\n" \
    "  if s == 'error' then return 'dead', rec end\n" \
    "  if s == 'queued' and rec.error ~= nil and (tonumber(rec.attempts) or 0) > 0 then\n" \
    "    return 'retrying', rec\n" \
    "  end\n" \
    "  if type(s) ~= 'string' then return 'unknown', rec end\n" \
    "  return s, rec\n" \
    "end\n"

/* forget(prefix, id, text): removes every key and index entry of a job but its list entries
 * (the caller pops or LREMs those): record, history, failure record, the index zsets, and the
 * owner's zset when text (the record, or false) names the owner. */
#define SB_LUA_FORGET \
    "local function forget(prefix, id, text)\n" \
    "  redis.call('DEL', prefix .. 'job:' .. id, prefix .. 'hist:' .. id,\n" \
    "             prefix .. 'history:' .. id, 'metrics:' .. prefix .. 'failed:' .. id)\n" \
    "  redis.call('ZREM', prefix .. 'index', id)\n" \
    "  redis.call('ZREM', prefix .. 'done', id)\n" \
    "  redis.call('ZREM', prefix .. 'cancelled', id)\n" \
    "  if not text then return end\n" \
    "  local ok, rec = pcall(cjson.decode, text)\n" \
    "  if ok and type(rec) == 'table' and type(rec.user) == 'table' and\n" \
    "     type(rec.user.publicKey) == 'string' then\n" \
    "    redis.call('ZREM', prefix .. 'user:' .. rec.user.publicKey, id)\n" \
    "  end\n" \
    "end\n"

/* holder(prefix, id): the agent (with a lease entry) whose processing list holds id, or
 * false. */
#define SB_LUA_HOLDER \
    "local function holder(prefix, id)\n" \
    "  for _, agent in ipairs(redis.call('ZRANGE', prefix .. 'leases', 0, -1)) do\n" \
    "    if redis.call('LPOS', prefix .. 'processing:' .. agent, id) then return agent end\n" \
    "  end\n" \
    "  return false\n" \
    "end\n"

/* cancelling(prefix, id): 1 if an agent has been told to stop id and has not yet. */
#define SB_LUA_CANCELLING \
    "local function cancelling(prefix, id)\n" \
    "  for _, agent in ipairs(redis.call('ZRANGE', prefix .. 'leases', 0, -1)) do\n" \
    "    if redis.call('SISMEMBER', prefix .. 'cancel:' .. agent, id) == 1 then return 1 end\n" \
    "  end\n" \
    "  return 0\n" \
    "end\n"

/* history(k_history, ttl, status, by, at, detail): appends one entry to the job's history
 * list as four elements (one RPUSH: a list costs Redis a fraction of a new stream, which
 * preallocates a 4 KB node), keeps the last SB_HISTORY_MAXLEN entries (trimmed once 10 % over)
 * and gives the list ttl (s), the one the caller just gave the record. */
#define SB_LUA_HISTORY \
    "local function history(k_history, ttl, status, by, at, detail)\n" \
    "  if redis.call('RPUSH', k_history, status, by, at, detail) > 440 then\n" \
    "    redis.call('LTRIM', k_history, -400, -1)\n" \
    "  end\n" \
    "  if tonumber(ttl) > 0 then redis.call('EXPIRE', k_history, ttl) end\n" \
    "end\n"

#endif
