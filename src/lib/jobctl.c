/* Job-control actions (include/switchboard/jobctl.h has the design): retry, retry all dead,
 * cancel, delete, pause / resume. The C side reads the record and builds the new one; one Lua
 * script (SB_ACT_LUA) checks the record is unchanged and applies the action with its lists,
 * indices, history, status message and audit event. On "changed" the action is decided again
 * from a fresh read, up to SB_ACT_TRIES times. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jobctl_lua.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/events.h"
#include "switchboard/fmt.h"
#include "switchboard/job.h"
#include "switchboard/jobctl.h"
#include "switchboard/json.h"

#define SB_ACT_TRIES 16

const char *const sb_jobctl_states[] = {"queued", "processing", "retrying", "done", "error",
                                        "dead", "cancelled", NULL};

int sb_jobctl_state_valid(const char *s) {
    for (int i = 0; s && sb_jobctl_states[i]; i++)
        if (!strcmp(s, sb_jobctl_states[i])) return 1;
    return 0;
}

/* KEYS / ARGV of the action script, by name. */
enum {
    SB_ACT_K_RECORD, SB_ACT_K_JOBS, SB_ACT_K_DEAD, SB_ACT_K_CANCELLED, SB_ACT_K_HISTORY,
    SB_ACT_K_PAUSED, SB_ACT_K_USER, SB_ACT_K_AUDIT, SB_ACT_NKEYS
};
enum {
    SB_ACT_A_ACTION = SB_ACT_NKEYS, /* retry | cancel | delete | pause | resume */
    SB_ACT_A_PREFIX,   /* agent:{type}: */
    SB_ACT_A_ID,       /* job id ('' for type actions) */
    SB_ACT_A_OLD,      /* the record the action was computed from ('' = none) */
    SB_ACT_A_NEW,      /* the record to write */
    SB_ACT_A_BY,       /* who acts */
    SB_ACT_A_NOW_MS,
    SB_ACT_A_TS,       /* ISO time */
    SB_ACT_A_CHANNEL,  /* status channel */
    SB_ACT_A_MESSAGE,  /* status message ('' = none) */
    SB_ACT_A_TTL,      /* record TTL */
    SB_ACT_A_QUEUED_ONLY, /* cancel: '1' = only a queued job (a user's own cancel) */
    SB_ACT_A_EV_ID, SB_ACT_A_EV_TYPE, SB_ACT_A_EV_DATA, SB_ACT_A_EV_MAXLEN,
    SB_ACT_ARGC
};

/* Returns {'ok', detail} | {'changed'} | {'conflict', state} | {'notfound'}. */
static const char SB_ACT_LUA[] =
    "local k_record, k_jobs, k_dead, k_cancelled, k_history, k_paused, k_user, k_audit =\n"
    "  unpack(KEYS)\n"
    "local action, prefix, id, old, new, by, now_ms, ts, channel, message, ttl, queued_only,\n"
    "  ev_id, ev_type, ev_data, ev_maxlen = unpack(ARGV)\n"
    SB_LUA_FORGET SB_LUA_HOLDER SB_LUA_CANCELLING SB_LUA_HISTORY
    "local function audit()\n"
    "  if ev_id == '' or ev_data == '' then return end\n" /* a pause's shards after the
                                                              first; cluster: written apart */
    "  redis.call('XADD', k_audit, 'MAXLEN', '~', ev_maxlen, '*', 'event_id', ev_id,\n"
    "             'event_type', ev_type, 'timestamp', ts, 'data', ev_data)\n"
    "end\n"
    /* removes id from its agent's processing list and tells that agent to stop it */
    "local function unhold()\n"
    "  local agent = holder(prefix, id)\n"
    "  if not agent then return false end\n"
    "  redis.call('LREM', prefix .. 'processing:' .. agent, 0, id)\n"
    "  redis.call('SADD', prefix .. 'cancel:' .. agent, id)\n"
    "  redis.call('EXPIRE', prefix .. 'cancel:' .. agent, 86400)\n"
    "  return agent\n"
    "end\n"
    "if action == 'pause' or action == 'resume' then\n"
    "  local was = redis.call('EXISTS', k_paused)\n"
    "  if action == 'pause' then redis.call('SET', k_paused, new)\n"
    "  else redis.call('DEL', k_paused) end\n"
    "  audit()\n"
    "  return {'ok', tostring(was)}\n"
    "end\n"
    "local cur = redis.call('GET', k_record)\n"
    "if (cur or '') ~= old then return {'changed'} end\n"
    "if action == 'retry' then\n"
    "  if cancelling(prefix, id) == 1 then return {'conflict', 'cancelling'} end\n"
    "  local was = redis.call('LREM', k_dead, 0, id) > 0 and 'dead' or 'cancelled'\n"
    "  redis.call('ZREM', k_cancelled, id)\n"
    "  redis.call('LREM', k_jobs, 0, id)\n"
    "  redis.call('LPUSH', k_jobs, id)\n"
    "  redis.call('SET', k_record, new, 'EX', ttl)\n"
    "  history(k_history, ttl, 'queued', by, ts, 'retried (was ' .. was .. ')')\n"
    "  audit()\n"
    "  return {'ok', was}\n"
    "end\n"
    "if action == 'cancel' then\n"
    "  local how = 'queued'\n"
    "  if redis.call('LREM', k_jobs, 0, id) == 0 then\n"
    "    if queued_only == '1' then return {'conflict', 'processing'} end\n"
    "    how = unhold() or 'unlisted'\n"
    "  end\n"
    "  redis.call('SET', k_record, new, 'EX', ttl)\n"
    "  redis.call('ZADD', k_cancelled, now_ms, id)\n"
    "  history(k_history, ttl, 'cancelled', by, ts,\n"
    "          how == 'queued' and 'cancelled while queued' or 'cancelled while held by ' .. how)\n"
    "  if message ~= '' then redis.call('PUBLISH', channel, message) end\n"
    "  audit()\n"
    "  return {'ok', how}\n"
    "end\n"
    "if action == 'delete' then\n"
    "  local n = redis.call('LREM', k_jobs, 0, id) + redis.call('LREM', k_dead, 0, id)\n"
    "  local agent = unhold()\n"
    "  if agent then n = n + 1 end\n"
    "  n = n + redis.call('EXISTS', k_record, k_history) + redis.call('ZREM', prefix .. 'index', id)\n"
    "  forget(prefix, id, cur)\n"
    "  if n == 0 then return {'notfound'} end\n"
    "  audit()\n"
    "  return {'ok', agent or ''}\n"
    "end\n"
    "return redis.error_reply('unknown action ' .. action)\n";

static sb_script_t sb_act_script; /* immutable after the first sb_script_init (same bytes) */
static pthread_once_t sb_act_once = PTHREAD_ONCE_INIT;
static void sb_act_init(void) { sb_script_init(&sb_act_script, SB_ACT_LUA); }

/* One action call: keys, arguments and the texts they point into. */
typedef struct {
    const char *type, *id, *by, *action;
    char queue[SB_QUEUE_LEN]; /* the shard (job.h): the id's, or the one a pause is at */
    int no_event;             /* 1: no audit event (a pause's shards after the first) */
    char prefix[SB_KEY_LEN], k_record[SB_KEY_LEN], k_jobs[SB_KEY_LEN], k_dead[SB_KEY_LEN],
        k_cancelled[SB_KEY_LEN], k_history[SB_KEY_LEN], k_paused[SB_KEY_LEN],
        k_user[SB_KEY_LEN], k_audit[SB_KEY_LEN], k_status[SB_KEY_LEN];
    char now[SB_FMT_INT_LEN + 1], ttl[SB_FMT_INT_LEN + 1], maxlen[SB_FMT_INT_LEN + 1];
    char ts[SB_ISO_LEN];
    int64_t now_ms;
} sb_act_t;

/* Fills the fixed keys for type / id, in the id's shard (without an id: shard). Returns 0,
 * SB_EINVAL, or SB_ENOTFOUND for an id of a shard this deployment does not have. */
static int sb_act_init_keys(sb_act_t *a, const char *type, const char *id, const char *by,
                            const char *action, int shard) {
    memset(a, 0, sizeof *a);
    if (!sb_job_type_valid(type) || !by || !*by || strlen(by) > 256 ||
        (id && !sb_job_id_valid(id)))
        return SB_EINVAL;
    *a = (sb_act_t){.type = type, .id = id ? id : "", .by = by, .action = action,
                    .now_ms = sb_now_ms()};
    if (!(id ? sb_queue_of_job(a->queue, type, id) : sb_queue_name(a->queue, type, shard)))
        return SB_ENOTFOUND;
    const char *q = a->queue;
    sb_key_prefix(a->prefix, sizeof a->prefix, q);
    sb_key(a->k_record, sizeof a->k_record, SB_KEY_JOB, q, a->id);
    sb_key(a->k_jobs, sizeof a->k_jobs, SB_KEY_JOBS, q, NULL);
    sb_key(a->k_dead, sizeof a->k_dead, SB_KEY_DEAD, q, NULL);
    sb_key(a->k_cancelled, sizeof a->k_cancelled, SB_KEY_CANCELLED, q, NULL);
    sb_key(a->k_history, sizeof a->k_history, SB_KEY_HISTORY, q, a->id);
    sb_key(a->k_paused, sizeof a->k_paused, SB_KEY_PAUSED, q, NULL);
    sb_key(a->k_status, sizeof a->k_status, SB_KEY_STATUS, q, NULL);
    char ev[64];
    snprintf(ev, sizeof ev, "%s.%s", id ? "job" : "queue",
             !strcmp(action, "retry") ? "retried" : !strcmp(action, "cancel") ? "cancelled"
             : !strcmp(action, "delete") ? "deleted" : !strcmp(action, "pause") ? "paused"
             : "resumed");
    sb_events_key(a->k_audit, sizeof a->k_audit, ev);
    sb_fmt_llz(a->now, a->now_ms);
    sb_fmt_llz(a->ttl, SB_JOB_TTL);
    sb_fmt_llz(a->maxlen, SB_EVENTS_AUDIT_MAXLEN);
    sb_iso8601(a->now_ms, a->ts);
    return SB_OK;
}

/* The audit event's envelope for the action ({jobId?, type, userId?, by}). */
static int sb_act_event(const sb_act_t *a, const char *user, sb_envelope_t *e, char **data) {
    cJSON *x = cJSON_CreateObject();
    if (!x || !cJSON_AddStringToObject(x, "by", a->by)) {
        cJSON_Delete(x);
        return SB_ENOMEM;
    }
    const char *stream_type = strrchr(a->k_audit, ':') + 1; /* agent:stream:{event type} */
    int rc = sb_events_job_envelope(e, data, stream_type, a->type, a->id[0] ? a->id : NULL,
                                    user, x, NULL);
    cJSON_Delete(x);
    return rc;
}

/* Runs the script once. Returns 0 with *rep (caller frees), or an SB_E* code. */
static int sb_act_call(sb_redis_t *r, sb_act_t *a, const char *old, const char *new_rec,
                       const char *message, const char *user, int queued_only,
                       redisReply **rep) {
    sb_envelope_t e;
    char *data = NULL;
    *rep = NULL;
    int rc = sb_act_event(a, user, &e, &data);
    if (rc != SB_OK) return rc;
    if (user) sb_key(a->k_user, sizeof a->k_user, SB_KEY_USER, a->queue, user);
    int apart = sb_key_style() == SB_KEYS_CLUSTER; /* the audit stream is in another slot */
    const char *argv[SB_ACT_ARGC] = {
        [SB_ACT_K_RECORD] = a->k_record, [SB_ACT_K_JOBS] = a->k_jobs, [SB_ACT_K_DEAD] = a->k_dead,
        [SB_ACT_K_CANCELLED] = a->k_cancelled, [SB_ACT_K_HISTORY] = a->k_history,
        [SB_ACT_K_PAUSED] = a->k_paused, [SB_ACT_K_USER] = a->k_user[0] ? a->k_user : a->k_record, /* unused; one slot */
        [SB_ACT_K_AUDIT] = apart ? a->k_record : a->k_audit,
        [SB_ACT_A_ACTION] = a->action, [SB_ACT_A_PREFIX] = a->prefix, [SB_ACT_A_ID] = a->id,
        [SB_ACT_A_OLD] = old ? old : "", [SB_ACT_A_NEW] = new_rec ? new_rec : "",
        [SB_ACT_A_BY] = a->by, [SB_ACT_A_NOW_MS] = a->now, [SB_ACT_A_TS] = a->ts,
        [SB_ACT_A_CHANNEL] = a->k_status, [SB_ACT_A_MESSAGE] = message ? message : "",
        [SB_ACT_A_TTL] = a->ttl, [SB_ACT_A_QUEUED_ONLY] = queued_only ? "1" : "0",
        [SB_ACT_A_EV_ID] = a->no_event ? "" : e.event_id, [SB_ACT_A_EV_TYPE] = e.event_type,
        [SB_ACT_A_EV_DATA] = apart ? "" : data, [SB_ACT_A_EV_MAXLEN] = a->maxlen};
    pthread_once(&sb_act_once, sb_act_init);
    *rep = sb_redis_eval(r, &sb_act_script, SB_ACT_NKEYS, SB_ACT_ARGC, argv, NULL);
    if (apart && !a->no_event && *rep && (*rep)->type == REDIS_REPLY_ARRAY && (*rep)->elements >= 1 &&
        (*rep)->element[0]->type == REDIS_REPLY_STRING && !strcmp((*rep)->element[0]->str, "ok"))
        sb_events_audit_apart(r, e.event_type, &e);
    free(data);
    if (!*rep) return SB_EREDIS;
    if ((*rep)->type == REDIS_REPLY_ARRAY && (*rep)->elements >= 1 &&
        (*rep)->element[0]->type == REDIS_REPLY_STRING)
        return SB_OK;
    freeReplyObject(*rep);
    *rep = NULL;
    return SB_EPROTO;
}

/* Reads the outcome of a script reply into res. Returns 1 when the record changed. */
static int sb_act_outcome(const redisReply *rep, sb_jobctl_result_t *res) {
    const char *what = rep->element[0]->str;
    const char *arg = rep->elements > 1 && rep->element[1]->type == REDIS_REPLY_STRING
                          ? rep->element[1]->str : "";
    if (!strcmp(what, "changed")) return 1;
    res->outcome = !strcmp(what, "ok") ? SB_JOBCTL_OK
                   : !strcmp(what, "conflict") ? SB_JOBCTL_CONFLICT : SB_JOBCTL_NOTFOUND;
    if (res->outcome == SB_JOBCTL_CONFLICT) snprintf(res->state, sizeof res->state, "%s", arg);
    return 0;
}

/* GET of the record: 0 with *text (malloc'd, NULL when missing), or an SB_E* code. */
static int sb_act_read(sb_redis_t *r, const sb_act_t *a, char **text) {
    *text = NULL;
    redisReply *rep = sb_redis_cmd(r, "GET %s", a->k_record);
    if (!rep) return SB_EREDIS;
    int rc = SB_OK;
    if (rep->type == REDIS_REPLY_STRING) rc = (*text = strndup(rep->str, rep->len)) ? SB_OK : SB_ENOMEM;
    else if (rep->type != REDIS_REPLY_NIL) rc = SB_EPROTO;
    freeReplyObject(rep);
    return rc;
}

/* What an action decides from the record read: the new record and status message (both
 * malloc'd or NULL), or an outcome that ends the action without a script call. */
typedef struct {
    sb_jobctl_outcome_t outcome; /* OK: call the script; else the answer */
    char state[SB_JOBCTL_STATE_LEN];
    char *record, *message;
    char user[SB_PUBKEY_MAX + 1];
    int queued_only;
} sb_act_plan_t;

typedef void (*sb_act_plan_fn)(const sb_act_t *a, sb_job_t *job, const char *owner,
                               sb_act_plan_t *p);

/* The state a record says (jobctl.h), without Redis: error = dead, queued with an error and
 * attempts = retrying. */
static const char *sb_act_state(const sb_job_t *job) {
    const char *s = job->status ? job->status : "unknown";
    if (!strcmp(s, "error")) return "dead";
    if (!strcmp(s, "queued") && job->attempts > 0 &&
        cJSON_GetObjectItemCaseSensitive(job->root, "error"))
        return "retrying";
    return s;
}

static void sb_plan_retry(const sb_act_t *a, sb_job_t *job, const char *owner, sb_act_plan_t *p) {
    (void)owner;
    const char *st = sb_act_state(job);
    if (strcmp(st, "dead") && strcmp(st, "cancelled")) {
        p->outcome = SB_JOBCTL_CONFLICT;
        snprintf(p->state, sizeof p->state, "%s", st);
        return;
    }
    cJSON *err = cJSON_DetachItemFromObjectCaseSensitive(job->root, "error");
    if (err) cJSON_AddItemToObject(job->root, "lastError", err);
    cJSON_DeleteItemFromObjectCaseSensitive(job->root, "details");
    sb_job_set_attempts(job, 0);
    sb_job_set_status(job, "queued", a->now_ms);
    sb_json_set_str(job->root, "retriedBy", a->by);
    p->record = sb_json_print(job->root);
}

static void sb_plan_cancel(const sb_act_t *a, sb_job_t *job, const char *owner, sb_act_plan_t *p) {
    const char *st = sb_act_state(job);
    if (owner && strcmp(owner, job->public_key)) {
        p->outcome = SB_JOBCTL_NOTFOUND;
        return;
    }
    if (strcmp(st, "queued") && strcmp(st, "processing") && strcmp(st, "retrying")) {
        p->outcome = SB_JOBCTL_CONFLICT;
        snprintf(p->state, sizeof p->state, "%s", st);
        return;
    }
    p->queued_only = owner != NULL;
    sb_job_set_status(job, "cancelled", a->now_ms);
    sb_json_set_str(job->root, "cancelledBy", a->by);
    p->record = sb_json_print(job->root);
    sb_status_t msg = {.job_id = a->id, .status = "cancelled", .user_id = job->public_key,
                       .timestamp = a->ts, .attempts = job->attempts};
    char details[300];
    snprintf(details, sizeof details, "cancelled by %s", a->by);
    msg.details = details;
    p->message = sb_status_build(&msg);
}

/* Runs one job action: read, plan, apply; again while the record changes under us. */
static int sb_act_run(sb_redis_t *r, sb_act_t *a, const char *owner, sb_act_plan_fn plan,
                      sb_jobctl_result_t *res) {
    memset(res, 0, sizeof *res);
    for (int tries = 0; tries < SB_ACT_TRIES; tries++) {
        char *old = NULL;
        int rc = sb_act_read(r, a, &old);
        if (rc != SB_OK) return rc;
        sb_act_plan_t p = {.outcome = SB_JOBCTL_OK};
        sb_job_t job = {0};
        char why[128], was[SB_JOBCTL_STATE_LEN] = "";
        if (!old) {
            p.outcome = SB_JOBCTL_NOTFOUND;
        } else if (sb_job_parse(old, strlen(old), &job, why, sizeof why) != SB_OK) {
            p.outcome = SB_JOBCTL_CONFLICT;
            snprintf(p.state, sizeof p.state, "unreadable");
        } else {
            snprintf(p.user, sizeof p.user, "%s", job.public_key);
            snprintf(was, sizeof was, "%s", sb_act_state(&job)); /* plan() changes job */
            plan(a, &job, owner, &p);
            if (p.outcome == SB_JOBCTL_OK && !p.record) rc = SB_ENOMEM;
        }
        redisReply *rep = NULL;
        int changed = 0;
        if (rc == SB_OK && p.outcome == SB_JOBCTL_OK) {
            rc = sb_act_call(r, a, old, p.record, p.message, p.user, p.queued_only, &rep);
            if (rc == SB_OK) changed = sb_act_outcome(rep, res);
            if (rc == SB_OK && !changed && res->outcome == SB_JOBCTL_OK &&
                !strcmp(a->action, "cancel"))
                snprintf(res->agent, sizeof res->agent, "%s",
                         rep->elements > 1 && strcmp(rep->element[1]->str, "queued") &&
                                 strcmp(rep->element[1]->str, "unlisted")
                             ? rep->element[1]->str : "");
            snprintf(res->state, sizeof res->state, "%s", was);
            if (rep && res->outcome == SB_JOBCTL_CONFLICT)
                snprintf(res->state, sizeof res->state, "%s", rep->element[1]->str);
        } else if (rc == SB_OK) {
            res->outcome = p.outcome;
            snprintf(res->state, sizeof res->state, "%s", p.state);
        }
        if (rep) freeReplyObject(rep);
        sb_job_close(&job);
        free(old);
        free(p.record);
        free(p.message);
        if (rc != SB_OK || !changed) return rc;
    }
    return SB_ETIMEOUT;
}

/* sb_act_init_keys for an action on job id: 0 to go on, 1 when answered already (an id of no
 * shard of ours: NOTFOUND), or an error. */
static int sb_act_begin(sb_act_t *a, const char *type, const char *id, const char *by,
                        const char *action, sb_jobctl_result_t *res) {
    memset(res, 0, sizeof *res);
    int rc = id ? sb_act_init_keys(a, type, id, by, action, 0) : SB_EINVAL;
    if (rc != SB_ENOTFOUND) return rc;
    res->outcome = SB_JOBCTL_NOTFOUND;
    return 1;
}

int sb_jobctl_retry(sb_redis_t *r, const char *type, const char *id, const char *by,
                    sb_jobctl_result_t *res) {
    sb_act_t a;
    int rc = sb_act_begin(&a, type, id, by, "retry", res);
    return rc ? (rc == 1 ? SB_OK : rc) : sb_act_run(r, &a, NULL, sb_plan_retry, res);
}

int sb_jobctl_cancel(sb_redis_t *r, const char *type, const char *id, const char *by,
                     const char *owner, sb_jobctl_result_t *res) {
    sb_act_t a;
    int rc = sb_act_begin(&a, type, id, by, "cancel", res);
    return rc ? (rc == 1 ? SB_OK : rc) : sb_act_run(r, &a, owner, sb_plan_cancel, res);
}

int sb_jobctl_delete(sb_redis_t *r, const char *type, const char *id, const char *by,
                     sb_jobctl_result_t *res) {
    sb_act_t a;
    int rc = sb_act_begin(&a, type, id, by, "delete", res);
    if (rc == 1) return SB_OK;
    for (int tries = 0; rc == SB_OK && tries < SB_ACT_TRIES; tries++) {
        char *old = NULL, why[128];
        if ((rc = sb_act_read(r, &a, &old)) != SB_OK) break;
        sb_job_t job = {0};
        const char *user = old && sb_job_parse(old, strlen(old), &job, why, sizeof why) == SB_OK
                               ? job.public_key : NULL;
        if (job.root) snprintf(res->state, sizeof res->state, "%s", sb_act_state(&job));
        redisReply *rep = NULL;
        rc = sb_act_call(r, &a, old, NULL, NULL, user, 0, &rep);
        int changed = rc == SB_OK && sb_act_outcome(rep, res);
        if (rc == SB_OK && !changed && res->outcome == SB_JOBCTL_OK && rep->elements > 1)
            snprintf(res->agent, sizeof res->agent, "%s", rep->element[1]->str);
        if (rep) freeReplyObject(rep);
        sb_job_close(&job);
        free(old);
        if (!changed) return rc;
    }
    return rc ? rc : SB_ETIMEOUT;
}

/* sb_jobctl_retry_dead on the dead list of one shard (queue). */
static int sb_retry_dead_shard(sb_redis_t *r, const char *type, const char *queue,
                               const char *by, int limit, int *retried) {
    char k_dead[SB_KEY_LEN];
    sb_key(k_dead, sizeof k_dead, SB_KEY_DEAD, queue, NULL);
    /* oldest first: the right end of the dead list */
    redisReply *ids = sb_redis_cmd(r, "LRANGE %s %d -1", k_dead, -limit);
    if (!ids) return SB_EREDIS;
    int rc = ids->type == REDIS_REPLY_ARRAY ? SB_OK : SB_EPROTO;
    for (size_t i = ids->type == REDIS_REPLY_ARRAY ? ids->elements : 0; rc == SB_OK && i-- > 0;) {
        const char *id = ids->element[i]->str;
        sb_jobctl_result_t res;
        if (!sb_job_id_valid(id)) { /* not one of ours: nothing to retry, just drop it */
            redisReply *rep = sb_redis_cmd(r, "LREM %s 0 %s", k_dead, id);
            if (rep) freeReplyObject(rep);
            continue;
        }
        rc = sb_jobctl_retry(r, type, id, by, &res);
        if (rc == SB_OK && res.outcome == SB_JOBCTL_OK) (*retried)++;
        else if (rc == SB_OK && res.outcome == SB_JOBCTL_NOTFOUND) { /* expired: a shell */
            redisReply *rep = sb_redis_cmd(r, "LREM %s 0 %s", k_dead, id);
            if (rep) freeReplyObject(rep);
        }
    }
    freeReplyObject(ids);
    return rc;
}

int sb_jobctl_retry_dead(sb_redis_t *r, const char *type, const char *by, int limit,
                         int *retried) {
    char q[SB_QUEUE_LEN];
    int rc = SB_OK;
    *retried = 0;
    if (!sb_job_type_valid(type) || limit < 1 || limit > SB_JOBCTL_RETRY_MAX) return SB_EINVAL;
    for (int s = 0; s < sb_queue_shards() && rc == SB_OK && *retried < limit; s++) {
        int n = 0;
        rc = sb_retry_dead_shard(r, type, sb_queue_name(q, type, s), by, limit - *retried, &n);
        *retried += n;
    }
    return rc;
}

/* Pauses or resumes one shard (its own paused key: the take scripts read it in its slot). */
static int sb_pause_shard(sb_redis_t *r, const char *type, int shard, const char *by,
                          int paused, int *changed) {
    sb_act_t a;
    int rc = sb_act_init_keys(&a, type, NULL, by, paused ? "pause" : "resume", shard);
    if (rc != SB_OK) return rc;
    a.no_event = shard > 0; /* one audit event for the type */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "by", by);
    cJSON_AddStringToObject(o, "at", a.ts);
    char *text = sb_json_print(o);
    cJSON_Delete(o);
    redisReply *rep = NULL;
    rc = text ? sb_act_call(r, &a, NULL, text, NULL, NULL, 0, &rep) : SB_ENOMEM;
    if (rc == SB_OK && changed)
        *changed |= rep->elements > 1 && !strcmp(rep->element[1]->str, paused ? "0" : "1");
    if (rep) freeReplyObject(rep);
    free(text);
    return rc;
}

int sb_jobctl_pause(sb_redis_t *r, const char *type, const char *by, int paused, int *changed) {
    int rc = SB_OK, any = 0;
    for (int s = 0; s < sb_queue_shards() && rc == SB_OK; s++)
        rc = sb_pause_shard(r, type, s, by, paused, &any);
    if (changed) *changed = any;
    return rc;
}

int sb_jobctl_paused(sb_redis_t *r, const char *type) {
    char k[SB_KEY_LEN];
    if (!sb_job_type_valid(type)) return SB_EINVAL;
    /* shard 0's key says (every shard's is written, shard 0's first) */
    redisReply *rep = sb_redis_cmd(r, "EXISTS %s", sb_key(k, sizeof k, SB_KEY_PAUSED, type, NULL));
    if (!rep) return SB_EREDIS;
    int rc = rep->type == REDIS_REPLY_INTEGER ? (rep->integer > 0) : SB_EPROTO;
    freeReplyObject(rep);
    return rc;
}
