/* The agent's Lua scripts and the argument lists they take. Every script names its KEYS and
 * ARGV at the top (`local k_proc, ... = unpack(KEYS)`), in the order of the enums of
 * agent_int.h, and the C side fills argument lists by those enum names, never by position. */
#include <stdlib.h>
#include <string.h>
#include "agent_int.h"
#include "jobctl_lua.h"
#include "switchboard/clock.h"
#include "switchboard/metrics.h"
#include "switchboard/utf8.h"

/* The terminal transition of a job, guarded by its presence in our processing list, and
 * optionally the take of the next job (as SB_TAKE_LUA does), so that a worker under load
 * spends one script call and one round trip per job. KEYS / ARGV: SB__FIN_K_* / SB__FIN_A_*.
 * Returns 1 if applied, 0 if the id was no longer ours (already finished or recovered); with a
 * take, {that, id, record or nil or an error} when a job was taken (as SB_TAKE_LUA), else
 * {that}. */
#define SB_FINISH_FN \
    SB_LUA_FORGET SB_LUA_HISTORY \
    "local function finish_op(k, a)\n" \
    "local k_proc, k_record, k_target, k_counter, k_exec, k_failure, k_audit, k_jobs, k_paused,\n" \
    "  k_done, k_history = unpack(KEYS, k + 1, k + 11)\n" \
    "local id, record, channel, message, mode, exec_ms, failure, exec_bound, metrics_ttl,\n" \
    "  record_ttl, ev_id, ev_type, ev_ts, ev_data, ev_maxlen, take_prefix, prefix, now_ms,\n" \
    "  dead_ttl, dead_max, by, ts, detail = unpack(ARGV, a + 1, a + 23)\n" \
    /* the dead list: at most dead_max ids, and none whose record has expired at its old end */ \
    "local function trim_dead()\n" \
    "  while redis.call('LLEN', k_target) > tonumber(dead_max) do\n" \
    "    local x = redis.call('RPOP', k_target)\n" \
    "    forget(prefix, x, redis.call('GET', prefix .. 'job:' .. x))\n" \
    "  end\n" \
    "  for _ = 1, 10 do\n" \
    "    local x = redis.call('LINDEX', k_target, -1)\n" \
    "    if not x or redis.call('EXISTS', prefix .. 'job:' .. x) == 1 then break end\n" \
    "    redis.call('RPOP', k_target)\n" \
    "    forget(prefix, x, false)\n" \
    "  end\n" \
    "end\n" \
    "local function finish()\n" \
    "if redis.call('LREM', k_proc, 1, id) == 0 then return 0 end\n" \
    "if record ~= '' then\n" \
    "  local ttl = mode == 'error' and dead_ttl or record_ttl\n" \
    "  redis.call('SET', k_record, record, 'EX', ttl)\n" \
    "  history(k_history, ttl, mode == 'requeue' and 'queued' or mode, by, ts, detail)\n" \
    "end\n" \
    "if mode == 'requeue' then\n" \
    "  redis.call('RPUSH', k_target, id)\n" \
    "else\n" \
    "  if redis.call('INCR', k_counter) == 1 then redis.call('EXPIRE', k_counter, metrics_ttl) end\n" \
    "  if mode == 'done' then\n" \
    "    redis.call('ZADD', k_exec, exec_ms, id)\n" \
    "    redis.call('ZADD', k_done, now_ms, id)\n" \
    "    redis.call('EXPIRE', k_exec, metrics_ttl)\n" \
    /* over the bound by 10 %: evict the excess at random in one go (amortised) */ \
    "    local card, cap = redis.call('ZCARD', k_exec), tonumber(exec_bound)\n" \
    "    if card > cap + cap / 10 then\n" \
    "      redis.call('ZREM', k_exec, unpack(redis.call('ZRANDMEMBER', k_exec, card - cap)))\n" \
    "    end\n" \
    "  else\n" \
    "    redis.call('LPUSH', k_target, id)\n" \
    "    redis.call('SET', k_failure, failure, 'EX', dead_ttl)\n" \
    "    trim_dead()\n" \
    "  end\n" \
    "end\n" \
    "if message ~= '' then redis.call('PUBLISH', channel, message) end\n" \
    /* event bus audit trail (SPEC §7): job.completed / job.failed */ \
    "if mode ~= 'requeue' and ev_data ~= '' then\n" \
    "  redis.call('XADD', k_audit, 'MAXLEN', '~', ev_maxlen, '*', 'event_id', ev_id,\n" \
    "             'event_type', ev_type, 'timestamp', ev_ts, 'data', ev_data)\n" \
    "end\n" \
    "return 1\n" \
    "end\n" \
    "local applied = finish()\n" \
    "if take_prefix == '' then return applied end\n" \
    "if redis.call('EXISTS', k_paused) == 1 then return {applied, 'paused'} end\n" \
    "local next_id = redis.call('LMOVE', k_jobs, k_proc, 'RIGHT', 'LEFT')\n" \
    "if not next_id then return {applied} end\n" \
    "return {applied, next_id, redis.pcall('GET', take_prefix .. next_id)}\n" \
    "end\n"
static const char SB_FINISH_LUA[] = SB_FINISH_FN "return finish_op(0, 0)\n";

/* Takes the next job without blocking: moves its id into our processing list and reads its
 * record, in one round trip. KEYS / ARGV: SB__TAKE_*. Returns nil when the queue is empty,
 * else {id, record or nil (expired) or an error (the key holds something else: pcall, so that
 * the id taken is still returned and dead-lettered)}. */
static const char SB_TAKE_LUA[] =
    "local k_jobs, k_proc, k_paused = unpack(KEYS)\n"
    "local prefix = ARGV[1]\n"
    "if redis.call('EXISTS', k_paused) == 1 then return redis.status_reply('PAUSED') end\n"
    "local id = redis.call('LMOVE', k_jobs, k_proc, 'RIGHT', 'LEFT')\n"
    "if not id then return false end\n"
    "return {id, redis.pcall('GET', prefix .. id)}\n";

/* Redis server time in ms, for the lease scripts. */
#define SB_LUA_NOW_MS \
    "local function now_ms()\n" \
    "  local t = redis.call('TIME')\n" \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n" \
    "end\n"

/* Moves a dead agent's processing list back to the consuming end of the queue, oldest taken
 * ending rightmost (next out), and drops its lease entry. An agent with a lease entry is dead
 * when the lease has lapsed (and lease_ok); one without, when its presence key is gone (and
 * presence_ok). KEYS / ARGV: SB__REC_*. Returns {'lease' | 'presence', {moved ids}}, or -1
 * when the agent counts as alive. */
static const char SB_RECOVER_LUA[] =
    SB_LUA_NOW_MS
    "local k_proc, k_presence, k_jobs, k_leases = unpack(KEYS)\n"
    "local agent, lease_ok, presence_ok = unpack(ARGV)\n"
    "local deadline = redis.call('ZSCORE', k_leases, agent)\n"
    "local how = 'presence'\n"
    "if deadline then\n"
    "  if lease_ok ~= '1' or tonumber(deadline) >= now_ms() then return -1 end\n"
    "  how = 'lease'\n"
    "elseif presence_ok ~= '1' or redis.call('EXISTS', k_presence) == 1 then\n"
    "  return -1\n"
    "end\n"
    "local moved = {}\n"
    "while true do\n"
    "  local id = redis.call('LMOVE', k_proc, k_jobs, 'LEFT', 'RIGHT')\n"
    "  if not id then break end\n"
    "  moved[#moved + 1] = id\n"
    "end\n"
    "redis.call('ZREM', k_leases, agent)\n"
    "return {how, moved}\n";

/* Renews our lease to now + lease_ms (Redis time) and keeps the set alive. KEYS / ARGV:
 * SB__RENEW_*. Returns the ids operators asked us to stop (jobctl.h). */
static const char SB_RENEW_LUA[] =
    SB_LUA_NOW_MS
    "local k_leases, k_cancel = unpack(KEYS)\n"
    "local agent, lease_ms, ttl = unpack(ARGV)\n"
    "redis.call('ZADD', k_leases, now_ms() + tonumber(lease_ms), agent)\n"
    "redis.call('EXPIRE', k_leases, ttl)\n"
    "return redis.call('SMEMBERS', k_cancel)\n";

/* An attempt's record and status message, and a history entry, only while the id is still in
 * our processing list (an operator's cancel or delete takes it out). KEYS / ARGV: SB__UPD_*.
 * Returns 1 if written, 0 if the job is not ours any more. */
#define SB_UPDATE_FN \
    "local function update_op(k, a)\n" \
    "local k_proc, k_record, k_history = unpack(KEYS, k + 1, k + 3)\n" \
    "local id, record, ttl, channel, message, status, by, ts, detail = unpack(ARGV, a + 1, a + 9)\n" \
    "if not redis.call('LPOS', k_proc, id) then return 0 end\n" \
    "redis.call('SET', k_record, record, 'EX', ttl)\n" \
    "redis.call('PUBLISH', channel, message)\n" \
    "history(k_history, ttl, status, by, ts, detail)\n" \
    "return 1\n" \
    "end\n"

/* A group of the workers' updates and finishes in one call (agent_commit.c), run in the order
 * given, each as its own script would run it. ARGV[1] is the number of calls; then each call's
 * kind ('u' update, 'f' finish) and its arguments; KEYS are each call's keys, call after call.
 * Each call runs under pcall, so that an error in one (a key of the wrong type) is its own
 * reply and leaves the others as they would be alone (a script is not rolled back: writes
 * before the error stay, as for a single call). Returns one reply a call, in order; but a
 * refusal of the server itself (READONLY on a demoted master, OOM, MASTERDOWN: Redis checks
 * them at a script's first write, so nothing of the group was written) is the whole call's
 * error reply, which the caller waits out and sends again, as for a single call. */
static const char SB_GROUP_LUA[] =
    SB_FINISH_FN SB_UPDATE_FN
    "local refusals = {READONLY = true, OOM = true, MASTERDOWN = true}\n"
    "local out, k, a = {}, 0, 1\n"
    "for i = 1, tonumber(ARGV[1]) do\n"
    "  local fn, nk, na = update_op, 3, 9\n"
    "  if ARGV[a + 1] == 'f' then fn, nk, na = finish_op, 11, 23 end\n"
    "  a = a + 1\n"
    "  local ok, res = pcall(fn, k, a)\n"
    "  if not ok and type(res) ~= 'table' then res = {err = tostring(res)} end\n"
    "  if not ok and refusals[string.match(tostring(res.err), '^%u+')] then\n"
    "    return redis.error_reply(res.err)\n"
    "  end\n"
    "  out[i] = res\n"
    "  k, a = k + nk, a + na\n"
    "end\n"
    "return out\n";

/* The agents whose lease has lapsed. KEYS / ARGV: SB__LAPSED_*. Returns their ids. */
static const char SB_LAPSED_LUA[] =
    SB_LUA_NOW_MS
    "local k_leases = KEYS[1]\n"
    "return redis.call('ZRANGEBYSCORE', k_leases, '-inf', '(' .. now_ms(), 'LIMIT', 0,\n"
    "                  tonumber(ARGV[1]))\n";

/* Compare-and-set of a record: writes the new text only if the key still holds the old, so a
 * recovery never overwrites a newer state written by the worker that took the job meanwhile.
 * KEYS / ARGV: SB__CAS_*. Returns 1 if written. */
static const char SB_RECORD_CAS_LUA[] =
    "local k_record = KEYS[1]\n"
    "local old, new = unpack(ARGV)\n"
    "if redis.call('GET', k_record) ~= old then return 0 end\n"
    "redis.call('SET', k_record, new, 'KEEPTTL')\n"
    "return 1\n";

void sb__scripts_init(sb__scripts_t *s) {
    sb_script_init(&s->finish, SB_FINISH_LUA);
    sb_script_init(&s->take, SB_TAKE_LUA);
    sb_script_init(&s->recover, SB_RECOVER_LUA);
    sb_script_init(&s->cas, SB_RECORD_CAS_LUA);
    sb_script_init(&s->renew, SB_RENEW_LUA);
    sb_script_init(&s->lapsed, SB_LAPSED_LUA);
    sb_script_init(&s->group, SB_GROUP_LUA);
}

/* The scripts' Lua names these counts (finish_op, update_op, SB_GROUP_LUA) */
_Static_assert(SB__FIN_NKEYS == 11 && SB__FIN_NARGS == 23, "finish_op unpacks 11 keys, 23 args");
_Static_assert(SB__UPD_NKEYS == 3 && SB__UPD_ARGC - SB__UPD_NKEYS == 9,
               "update_op unpacks 3 keys, 9 args");

static const char *const sb_finish_mode_names[] = {
    [SB__FINISH_DONE] = "done", [SB__FINISH_ERROR] = "error", [SB__FINISH_REQUEUE] = "requeue"};

/* Event bus audit trail: the envelope of the job.completed / job.failed event of a finish
 * ({jobId, type, userId?, agentId, attempts?, durationMs | error}). Returns its data text
 * (malloc'd; e points at it) or NULL, in which case no event is written. */
static char *sb_finish_audit(const sb_agent_t *a, const char *id, const sb__finish_t *f,
                             sb_envelope_t *e) {
    int done = f->mode == SB__FINISH_DONE;
    cJSON *x = cJSON_CreateObject();
    char *data = NULL, shown[SB_JOB_ID_LEN * 3];
    sb_utf8_sanitize(shown, sizeof shown, id); /* a bad record's id may be any bytes */
    if (x) {
        cJSON_AddStringToObject(x, "agentId", a->id);
        if (f->attempts > 0) cJSON_AddNumberToObject(x, "attempts", f->attempts);
        if (done) cJSON_AddNumberToObject(x, "durationMs", (double)f->exec_ms);
        if (f->error) cJSON_AddStringToObject(x, "error", f->error);
    }
    if (x) sb_events_job_envelope(e, &data, done ? SB_EVENT_JOB_COMPLETED : SB_EVENT_JOB_FAILED,
                                  a->type, shown, f->user, x, NULL);
    cJSON_Delete(x);
    return data;
}

#define K(i) args->argv[(i)]
#define A(i) args->argv[SB__FIN_NKEYS + (i)]

void sb__finish_args_init(sb__finish_args_t *args, const sb_agent_t *a, const sb__shard_t *sh,
                          const char *id, const sb__finish_t *f) {
    int64_t now = sb_now_ms();
    int requeue = f->mode == SB__FINISH_REQUEUE, done = f->mode == SB__FINISH_DONE;
    memset(args, 0, sizeof *args);
    sb_key(args->k_rec, sizeof args->k_rec, SB_KEY_JOB, sh->queue, id);
    sb_metrics_counter_key(args->k_cnt, sizeof args->k_cnt, sh->queue, done ? "done" : "failed",
                           now);
    sb_metrics_key(args->k_exec, sizeof args->k_exec, sh->queue, "execution_times", NULL);
    sb_metrics_key(args->k_fail, sizeof args->k_fail, sh->queue, "failed", id);
    sb_events_key(args->k_audit, sizeof args->k_audit,
                  done ? SB_EVENT_JOB_COMPLETED : SB_EVENT_JOB_FAILED);
    sb_fmt_llz(args->ms, f->exec_ms);
    sb_fmt_llz(args->bound, SB_METRICS_EXEC_MAX);
    sb_fmt_llz(args->mttl, SB_METRICS_TTL);
    sb_fmt_llz(args->jttl, SB_JOB_TTL);
    sb_fmt_llz(args->audit_max, SB_EVENTS_AUDIT_MAXLEN);
    if (!requeue && !a->o.no_audit) args->ev_data = sb_finish_audit(a, id, f, &args->ev);
    sb_key(args->k_hist, sizeof args->k_hist, SB_KEY_HISTORY, sh->queue, id);
    sb_fmt_llz(args->now, now);
    sb_fmt_llz(args->dttl, a->o.dead_retention_s);
    sb_fmt_llz(args->dmax, a->o.dead_max);
    sb_iso8601(now, args->ts);
    if (done) snprintf(args->detail, sizeof args->detail, "done in %lld ms", f->exec_ms);
    else if (requeue) snprintf(args->detail, sizeof args->detail, "put back on the queue");
    else snprintf(args->detail, sizeof args->detail, "%.200s", f->error ? f->error : "failed");
    sb_utf8_sanitize_buf(args->detail, sizeof args->detail);
    K(SB__FIN_K_PROC) = sh->k_proc;
    K(SB__FIN_K_RECORD) = args->k_rec;
    K(SB__FIN_K_TARGET) = requeue ? sh->k_jobs : sh->k_dead;
    K(SB__FIN_K_COUNTER) = args->k_cnt;
    K(SB__FIN_K_EXEC) = args->k_exec;
    K(SB__FIN_K_FAILURE) = args->k_fail;
    int cluster = sb_key_style() == SB_KEYS_CLUSTER; /* the audit stream: another slot */
    args->audit_apart = cluster && args->ev_data;     /* events.h */
    K(SB__FIN_K_AUDIT) = cluster ? args->k_rec : args->k_audit; /* a stand-in of one slot */
    K(SB__FIN_K_JOBS) = sh->k_jobs;
    K(SB__FIN_K_PAUSED) = sh->k_paused;
    K(SB__FIN_K_DONE) = sh->k_done;
    K(SB__FIN_K_HISTORY) = args->k_hist;
    A(SB__FIN_A_ID) = id;
    A(SB__FIN_A_RECORD) = f->record ? f->record : "";
    A(SB__FIN_A_CHANNEL) = a->k_status;
    A(SB__FIN_A_MESSAGE) = f->message ? f->message : "";
    A(SB__FIN_A_MODE) = sb_finish_mode_names[f->mode];
    A(SB__FIN_A_EXEC_MS) = args->ms;
    A(SB__FIN_A_FAILURE) = f->failure ? f->failure : "";
    A(SB__FIN_A_EXEC_BOUND) = args->bound;
    A(SB__FIN_A_METRICS_TTL) = args->mttl;
    A(SB__FIN_A_RECORD_TTL) = args->jttl;
    A(SB__FIN_A_EV_ID) = args->ev.event_id;
    A(SB__FIN_A_EV_TYPE) = args->ev.event_type ? args->ev.event_type : "";
    A(SB__FIN_A_EV_TS) = args->ev.timestamp;
    A(SB__FIN_A_EV_DATA) = args->ev_data && !args->audit_apart ? args->ev_data : "";
    A(SB__FIN_A_EV_MAXLEN) = args->audit_max;
    A(SB__FIN_A_TAKE_PREFIX) = "";
    A(SB__FIN_A_PREFIX) = sh->k_prefix;
    A(SB__FIN_A_NOW_MS) = args->now;
    A(SB__FIN_A_DEAD_TTL) = args->dttl;
    A(SB__FIN_A_DEAD_MAX) = args->dmax;
    A(SB__FIN_A_BY) = a->id;
    A(SB__FIN_A_TS) = args->ts;
    A(SB__FIN_A_DETAIL) = args->detail;
}

#undef K
#undef A

void sb__finish_args_close(sb__finish_args_t *args) {
    free(args->ev_data);
    args->ev_data = NULL;
}
