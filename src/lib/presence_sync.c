/* Blocking presence calls for the CLI, the agent runtime and tests: each builds the same one
 * command the gateway sends (presence.c), runs it on an sb_redis_t, re-sends it as EVAL if the
 * server answers NOSCRIPT, and parses the reply with presence_reply.c. */
#include <stdlib.h>
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/presence.h"

typedef enum {
    SB_P_HEARTBEAT, SB_P_OFFLINE, SB_P_LIST, SB_P_GET, SB_P_ASSIGN, SB_P_RELEASE, SB_P_EXPIRE,
    SB_P_SWEEP,
} sb_presence_op_t;

/* Everything any presence command needs; each op reads the fields it uses. */
typedef struct {
    sb_presence_op_t op;
    const sb_presence_t *p;  /* heartbeat */
    const char *id;          /* agent id, department id (list, assign) or cursor (sweep) */
    int count;               /* sweep */
    int64_t now_ms;
} sb_presence_req_t;

static int sb_presence_req_cmd(sb_batch_t *b, const sb_presence_ctx_t *c,
                               const sb_presence_req_t *q, sb_script_mode_t m) {
    switch (q->op) {
    case SB_P_HEARTBEAT: return sb_presence_heartbeat_cmd(b, c, q->p, q->now_ms, m);
    case SB_P_OFFLINE: return sb_presence_offline_cmd(b, c, q->id, q->now_ms, m);
    case SB_P_LIST: return sb_presence_list_cmd(b, c, q->id, q->now_ms, m);
    case SB_P_GET: return sb_presence_get_cmd(b, q->id);
    case SB_P_ASSIGN: return sb_presence_assign_cmd(b, c, q->id, q->now_ms, m);
    case SB_P_RELEASE: return sb_presence_release_cmd(b, c, q->id, m);
    case SB_P_EXPIRE: return sb_presence_expire_cmd(b, c, q->id, q->now_ms, m);
    case SB_P_SWEEP: return sb_presence_sweep_cmd(b, c, q->id, q->count, q->now_ms, m);
    }
    return SB_EINVAL;
}

/* Builds q in mode m and runs it. Returns 0 with *rep (caller frees), or an error. */
static int sb_presence_send(sb_redis_t *r, const sb_presence_ctx_t *c, const sb_presence_req_t *q,
                            sb_script_mode_t m, redisReply **rep) {
    sb_batch_t *b = sb_batch_create();
    int rc = b ? sb_presence_req_cmd(b, c, q, m) : SB_ENOMEM;
    if (rc == SB_OK) rc = sb_redis_pipeline(r, b, rep);
    sb_batch_free(b);
    return rc;
}

/* Runs q: EVALSHA first, EVAL when the script is unknown. *rep is the caller's to free. */
static int sb_presence_run(sb_redis_t *r, const sb_presence_ctx_t *c, const sb_presence_req_t *q,
                           redisReply **rep) {
    int rc = sb_presence_send(r, c, q, SB_SCRIPT_EVALSHA, rep);
    if (rc == SB_OK && sb_reply_is_noscript(*rep)) {
        freeReplyObject(*rep);
        *rep = NULL;
        rc = sb_presence_send(r, c, q, SB_SCRIPT_EVAL, rep);
    }
    return rc;
}

/* Runs q and hands a record reply to sb_presence_record_reply. */
static int sb_presence_run_record(sb_redis_t *r, const sb_presence_ctx_t *c,
                                  const sb_presence_req_t *q, cJSON **record) {
    redisReply *rep = NULL;
    if (record) *record = NULL;
    int rc = sb_presence_run(r, c, q, &rep);
    if (rc == SB_OK) rc = sb_presence_record_reply(rep, record);
    if (rep) freeReplyObject(rep);
    return rc;
}

int sb_presence_heartbeat(sb_redis_t *r, const sb_presence_ctx_t *ctx, const sb_presence_t *p,
                          int64_t now_ms, cJSON **record) {
    sb_presence_req_t q = {.op = SB_P_HEARTBEAT, .p = p, .now_ms = now_ms};
    return sb_presence_run_record(r, ctx, &q, record);
}

int sb_presence_get(sb_redis_t *r, const char *agent_id, cJSON **record) {
    sb_presence_req_t q = {.op = SB_P_GET, .id = agent_id};
    return sb_presence_run_record(r, NULL, &q, record);
}

int sb_presence_assign(sb_redis_t *r, const sb_presence_ctx_t *ctx, const char *department_id,
                       cJSON **record) {
    sb_presence_req_t q = {.op = SB_P_ASSIGN, .id = department_id, .now_ms = sb_now_ms()};
    return sb_presence_run_record(r, ctx, &q, record);
}

int sb_presence_release(sb_redis_t *r, const sb_presence_ctx_t *ctx, const char *agent_id,
                        cJSON **record) {
    sb_presence_req_t q = {.op = SB_P_RELEASE, .id = agent_id};
    return sb_presence_run_record(r, ctx, &q, record);
}

/* Runs q and hands an integer reply to sb_presence_offline_reply / expire_reply. */
static int sb_presence_run_flag(sb_redis_t *r, const sb_presence_ctx_t *c,
                                const sb_presence_req_t *q, int *flag) {
    redisReply *rep = NULL;
    int rc = sb_presence_run(r, c, q, &rep);
    if (rc == SB_OK) rc = sb_presence_offline_reply(rep, flag);
    if (rep) freeReplyObject(rep);
    return rc;
}

int sb_presence_offline(sb_redis_t *r, const sb_presence_ctx_t *ctx, const char *agent_id,
                        int64_t now_ms, int *was_online) {
    sb_presence_req_t q = {.op = SB_P_OFFLINE, .id = agent_id, .now_ms = now_ms};
    return sb_presence_run_flag(r, ctx, &q, was_online);
}

int sb_presence_expire(sb_redis_t *r, const sb_presence_ctx_t *ctx, const char *agent_id,
                       int *announced) {
    sb_presence_req_t q = {.op = SB_P_EXPIRE, .id = agent_id, .now_ms = sb_now_ms()};
    return sb_presence_run_flag(r, ctx, &q, announced);
}

int sb_presence_list(sb_redis_t *r, const sb_presence_ctx_t *ctx, const char *department_id,
                     cJSON **agents) {
    sb_presence_req_t q = {.op = SB_P_LIST, .id = department_id, .now_ms = sb_now_ms()};
    redisReply *rep = NULL;
    *agents = NULL;
    int rc = sb_presence_run(r, ctx, &q, &rep);
    if (rc == SB_OK) rc = sb_presence_list_reply(rep, agents);
    if (rep) freeReplyObject(rep);
    return rc;
}

int sb_presence_stats(sb_redis_t *r, const sb_presence_ctx_t *ctx, cJSON **stats) {
    cJSON *agents = NULL;
    *stats = NULL;
    int rc = sb_presence_list(r, ctx, NULL, &agents);
    if (rc != SB_OK) return rc;
    *stats = sb_presence_stats_build(agents);
    cJSON_Delete(agents);
    return *stats ? SB_OK : SB_ENOMEM;
}

int sb_presence_sweep(sb_redis_t *r, const sb_presence_ctx_t *ctx, char *cursor, int count,
                      int *retired) {
    sb_presence_req_t q = {.op = SB_P_SWEEP, .id = cursor, .count = count, .now_ms = sb_now_ms()};
    redisReply *rep = NULL;
    int rc = sb_presence_run(r, ctx, &q, &rep);
    if (rc == SB_OK) rc = sb_presence_sweep_reply(rep, cursor, 32, retired);
    if (rep) freeReplyObject(rep);
    return rc;
}

int sb_presence_notify_enable(sb_redis_t *r) {
    sb_batch_t *get = sb_batch_create(), *set = sb_batch_create();
    redisReply *rep = NULL, *setrep = NULL;
    int rc = get && set ? sb_presence_notify_get_cmd(get) : SB_ENOMEM;
    if (rc == SB_OK) rc = sb_redis_pipeline(r, get, &rep);
    if (rc == SB_OK) rc = sb_presence_notify_set_cmd(set, rep);
    if (rc == SB_OK) rc = sb_redis_pipeline(r, set, &setrep);
    if (rc == SB_OK && sb_reply_is_error(setrep)) rc = SB_EPROTO;
    if (rc == 1) rc = SB_OK; /* already on */
    if (rep) freeReplyObject(rep);
    if (setrep) freeReplyObject(setrep);
    sb_batch_free(get);
    sb_batch_free(set);
    return rc;
}
