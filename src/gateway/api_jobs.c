/* Job routes (SPEC §3): create, read, list, metrics summary.
 *
 * POST /agent/{type} validates everything it can without Redis first (bad input changes
 * nothing), then makes one round trip: the submission script (submit.h, by EVALSHA; the POSTs
 * of one loop turn share one call, submit_group.h, each job decided as if alone) checks
 * and records the rate limit and, when allowed, writes the record, queues the id, indexes it
 * under the user, counts it, appends the job.created audit event and PUBLISHes the
 * `{type}:created` notification on agent:{type}:events:
 *   {"event":"rebalance:created","room":"user:{publicKey}","data":{"jobId":"…"}}
 * so the Socket.IO layer of every gateway can emit it to the user's room. A job is therefore
 * either fully queued and announced, or not at all; a refused request writes only the rate
 * counters. With REDIS_WAIT_REPLICAS=N the queued job is answered 202 only after WAIT N
 * (sent on the same connection right after the script's reply, so it covers the job's writes)
 * confirms N replicas hold it; fewer in REDIS_WAIT_TIMEOUT_MS is a 503 whose job may still
 * exist and run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/api.h"
#include "gateway/gateway.h"
#include "gateway/submit_group.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/job.h"
#include "switchboard/json.h"
#include "switchboard/jsonw.h"
#include "switchboard/log.h"
#include "switchboard/metrics.h"
#include "switchboard/ratelimit.h"
#include "switchboard/submit.h"

#define SB_LIST_DEFAULT 20
#define SB_LIST_MAX 100

/* ---- payload validation ------------------------------------------------------------------- */

/* Returns NULL when payload is acceptable, else the sentence for the 400. */
typedef const char *(*sb_payload_check_fn)(const cJSON *payload);

static const char *sb_check_rebalance(const cJSON *p) {
    double amount;
    const cJSON *prio = cJSON_GetObjectItemCaseSensitive(p, "priority");
    if (sb_json_num(p, "amount", &amount) != SB_OK || !(amount > 0))
        return "amount must be a finite number greater than 0";
    if (prio && !(cJSON_IsString(prio) && (!strcmp(prio->valuestring, "low") ||
                                           !strcmp(prio->valuestring, "medium") ||
                                           !strcmp(prio->valuestring, "high"))))
        return "priority must be low, medium or high";
    return NULL;
}

/* Types without a row accept any JSON object. */
static const struct {
    const char *type;
    sb_payload_check_fn check;
} sb_payload_checks[] = {{"rebalance", sb_check_rebalance}};

static const char *sb_payload_check(const char *type, const cJSON *payload) {
    if (!cJSON_IsObject(payload)) return "the body must be a JSON object";
    for (size_t i = 0; i < sizeof sb_payload_checks / sizeof sb_payload_checks[0]; i++)
        if (!strcmp(type, sb_payload_checks[i].type)) return sb_payload_checks[i].check(payload);
    return NULL;
}

/* The caller's publicKey, or NULL after answering 403 (a token without one owns nothing). */
static const char *sb_api_owner(sb_req_t *req) {
    if (sb_public_key_valid(req->claims.public_key)) return req->claims.public_key;
    sb_req_error(req, 403, "forbidden", "the token carries no valid publicKey claim");
    return NULL;
}

/* ---- POST /agent/{type} --------------------------------------------------------------------- */

/* The user the window counts: the token's sub when usable, else its publicKey. */
static const char *sb_job_rate_user(const sb_req_t *req) {
    return sb_public_key_valid(req->claims.sub) ? req->claims.sub : req->claims.public_key;
}

/* Prepares the submission script call for the job in req->ctx.submit (submit.h). Returns 0,
 * SB_EINVAL for a user id too long, else an internal error. */
static int sb_job_submit_prepare(sb_req_t *req, sb_submit_call_t **call) {
    const char *type = sb_route_param(&req->match, "type");
    const sb_config_t *cfg = req->gw->cfg;
    sb_user_t user = {req->claims.public_key, req->claims.sub};
    int64_t now = sb_now_ms();
    const char *id = req->ctx.submit.job_id;
    char *json = sb_job_record_text(type, id, &user, req->doc, now);
    sb_submit_t q = {.type = type, .job_id = id, .public_key = user.public_key,
                     .record_json = json, .now_ms = now, .rate_user = sb_job_rate_user(req),
                     .limit = cfg->rate_limit, .window_s = cfg->rate_window,
                     .rand = &req->gw->rand, .no_audit = !cfg->audit_events};
    int rc = json ? sb_submit_prepare(&q, call) : SB_ENOMEM;
    free(json);
    return rc;
}

static void sb_job_answer_queued(sb_req_t *req, const char *type) {
    char body[160];
    const char *id = req->ctx.submit.job_id;
    int n = snprintf(body, sizeof body, "{\"jobId\":\"%s\",\"status\":\"queued\"}", id);
    req->gw->stats.jobs_created++;
    sb_info("gateway", "job queued: type=%s job=%s user=%s", type, id,
            req->claims.public_key);
    sb_req_send(req, 202, "application/json", body, (size_t)n, NULL);
}

static void sb_job_answer_limited(sb_req_t *req, const sb_rate_result_t *rate) {
    char hdr[64];
    long long secs = (rate->retry_ms + 999) / 1000;
    snprintf(hdr, sizeof hdr, "retry-after: %lld\r\n", secs);
    req->gw->stats.rate_limited++;
    sb_info("gateway", "rate limited: user=%s", req->claims.public_key);
    sb_req_error_h(req, 429, hdr, "rate_limited", "at most %d job requests per %d s; retry in %lld s",
                   req->gw->cfg->rate_limit, req->gw->cfg->rate_window, secs);
}

/* WAIT's answer: enough replicas hold the job (202), or not (503: it is on the master, which
 * may still run it, or lose it if it fails before a replica copies it). */
static void sb_job_replicated_cb(redisReply *reply, void *priv) {
    sb_req_t *req = priv;
    const char *type = sb_route_param(&req->match, "type");
    int want = req->gw->cfg->wait_replicas;
    long long got = reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
    if (sb_req_gone(req)) {
        /* counted as 499 on release */
    } else if (got >= want) {
        sb_job_answer_queued(req, type);
    } else {
        sb_warn("gateway", "job %s: queued but %lld of %d replicas confirmed it (WAIT)",
                req->ctx.submit.job_id, got < 0 ? 0 : got, want);
        sb_req_error(req, 503, "replicas_unavailable",
                     "the job %s was queued on the Redis master but only %lld of %d replicas "
                     "confirmed it within %d ms; it may still run: check GET /agent/%s/%s "
                     "before retrying", req->ctx.submit.job_id, got < 0 ? 0 : got, want,
                     req->gw->cfg->wait_timeout_ms, type, req->ctx.submit.job_id);
    }
    sb_req_release(req);
}

/* Sends WAIT on the connection that ran the script (on a cluster, the node of the job's slot:
 * the EXISTS of its record routes the batch there); answers the request when it cannot. */
static void sb_job_wait_replicas(sb_req_t *req) {
    sb_batch_t *b = sb_batch_create();
    char key[SB_KEY_LEN], queue[SB_QUEUE_LEN];
    int routed = sb_key_style() != SB_KEYS_CLUSTER ||
                 (b && sb_queue_of_job(queue, sb_route_param(&req->match, "type"),
                                       req->ctx.submit.job_id) &&
                  sb_key(key, sizeof key, SB_KEY_JOB, queue, req->ctx.submit.job_id) &&
                  sb_batch_add(b, "EXISTS %s", key) == SB_OK);
    if (b && (!routed || sb_batch_add(b, "WAIT %d %d", req->gw->cfg->wait_replicas,
                                      req->gw->cfg->wait_timeout_ms) != SB_OK)) {
        sb_batch_free(b);
        b = NULL;
    }
    sb_api_redis(req, b, sb_job_replicated_cb);
}

/* The group's answer for this job (submit_group.h): queued (202), refused by the window
 * (429), Redis gone mid-call (503, outcome unknown), or Redis refused the script (503). A client
 * that left while the script was in flight gets no answer (counted as 499); its job is queued
 * whole or not at all like any other, and listed under its user. One that left before the call
 * was built is left out of it (SB_ECANCELED). */
static void sb_job_submitted(void *owner, int rc, const sb_rate_result_t *rate,
                             const redisReply *reply) {
    sb_req_t *req = owner;
    sb_api_submit_ctx_t *ctx = &req->ctx.submit;
    const char *type = sb_route_param(&req->match, "type");
    if (sb_req_gone(req) || rc == SB_ECANCELED) {
        /* counted as 499 on release; the job (if queued) is listed by GET /agent/{type}/jobs */
        if (rc == SB_OK && rate->allowed)
            sb_info("gateway", "job queued for a client that left: type=%s job=%s user=%s",
                    type, ctx->job_id, req->claims.public_key);
    } else if (rc == SB_OK && rate->allowed && req->gw->cfg->wait_replicas > 0) {
        sb_job_wait_replicas(req);
    } else if (rc == SB_OK && rate->allowed) {
        sb_job_answer_queued(req, type);
    } else if (rc == SB_OK) {
        sb_job_answer_limited(req, rate);
    } else if (rc == SB_EREDIS) {
        sb_warn("gateway", "job %s: redis went away during the submission; outcome unknown to "
                "the client", ctx->job_id);
        sb_req_error(req, 503, "redis_unavailable",
                     "Redis became unavailable while queuing the job; it may not have been "
                     "queued, check GET /agent/%s/jobs before retrying", type);
    } else {
        sb_error("gateway", "job %s: redis refused the submission script: %s", ctx->job_id,
                 reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "an unexpected reply");
        sb_req_error(req, 503, "redis_unavailable", "Redis refused the job; it was not queued");
    }
    sb_req_release(req);
}

static int sb_job_alive(void *owner) { return !sb_req_gone(owner); }

void sb_api_job_create(sb_req_t *req) {
    const char *type = sb_api_type(req);
    const char *owner = type ? sb_api_owner(req) : NULL;
    if (!owner) return;
    if (sb_api_body_json(req) != 0) return;
    const char *why = sb_payload_check(type, req->doc);
    if (why) {
        sb_req_error(req, 400, "bad_request", "%s", why);
        return;
    }
    if (sb_job_id_new_for(req->ctx.submit.job_id, &req->gw->rand, owner) != SB_OK) {
        sb_req_error(req, 500, "internal", "no random source for the job id");
        return;
    }
    sb_submit_call_t *call = NULL;
    int rc = sb_job_submit_prepare(req, &call);
    if (rc == SB_OK) {
        sb_req_hold(req); /* released by sb_job_submitted */
        /* outside the poll phase nothing would send the group before the loop blocks */
        rc = sb_submit_group_add(req->gw->submits, call, req, sb_job_alive, sb_job_submitted,
                                 !req->gw->in_io_poll);
        if (rc != SB_OK) sb_req_release(req);
    }
    if (rc == SB_EINVAL) sb_req_error(req, 400, "bad_request", "the token's user id is too long");
    else if (rc != SB_OK) sb_req_error(req, 500, "internal", "could not build the job");
}

/* ---- GET /agent/{type}/{jobId} and /rebalance/{jobId} ---------------------------------------- */

static void sb_job_get_cb(redisReply *reply, void *priv) {
    sb_req_t *req = priv;
    sb_job_t job;
    char err[128];
    if (!reply) {
        sb_req_unavailable(req);
    } else if (reply->type != REDIS_REPLY_STRING) {
        sb_req_error(req, 404, "not_found", "job not found");
    } else if (sb_job_parse(reply->str, reply->len, &job, err, sizeof err) != SB_OK) {
        sb_warn("gateway", "job %s has a bad record: %s", sb_route_param(&req->match, "jobId"),
                err);
        sb_req_error(req, 500, "internal", "the job record is unreadable");
    } else {
        int mine = req->claims.public_key && !strcmp(job.public_key, req->claims.public_key);
        if (mine || req->claims.role == SB_ROLE_ADMIN)
            sb_req_send(req, 200, "application/json", reply->str, reply->len, NULL);
        else
            sb_req_error(req, 404, "not_found", "job not found"); /* never reveal existence */
        sb_job_close(&job);
    }
    sb_req_release(req);
}

void sb_api_job_get(sb_req_t *req) {
    const char *type = sb_api_type(req);
    if (!type) return;
    const char *id = sb_route_param(&req->match, "jobId");
    char key[SB_KEY_LEN], queue[SB_QUEUE_LEN];
    if (!sb_job_id_valid(id)) {
        sb_req_error(req, 400, "bad_request",
                     "jobId must match ^[0-9]{1,16}-[0-9a-z]{1,32}$, e.g. 1731304200000-a7f3e2c1");
        return;
    }
    if (!sb_queue_of_job(queue, type, id)) { /* the id names a shard we do not have */
        sb_req_error(req, 404, "not_found", "job not found");
        return;
    }
    sb_batch_t *b = sb_batch_create();
    if (b && sb_batch_add(b, "GET %s", sb_key(key, sizeof key, SB_KEY_JOB, queue, id)) != SB_OK) {
        sb_batch_free(b);
        b = NULL;
    }
    sb_api_redis(req, b, sb_job_get_cb);
}

/* ---- GET /agent/{type}/jobs?limit= ----------------------------------------------------------- */

static void sb_job_list_records_cb(redisReply *reply, void *priv) {
    sb_req_t *req = priv;
    cJSON *o = cJSON_CreateObject(), *jobs = cJSON_CreateArray();
    if (!reply) {
        sb_req_unavailable(req);
    } else if (!o || !jobs || reply->type != REDIS_REPLY_ARRAY) {
        sb_req_error(req, 500, "internal", "could not list the jobs");
    } else {
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *r = reply->element[i];
            cJSON *rec = r->type == REDIS_REPLY_STRING ? sb_json_parse(r->str, r->len) : NULL;
            if (rec) cJSON_AddItemToArray(jobs, rec); /* expired records are skipped */
        }
        cJSON_AddBoolToObject(o, "success", 1);
        cJSON_AddNumberToObject(o, "count", cJSON_GetArraySize(jobs));
        cJSON_AddItemToObject(o, "jobs", jobs);
        jobs = NULL;
        sb_req_json(req, 200, o);
    }
    cJSON_Delete(o);
    cJSON_Delete(jobs);
    sb_req_release(req);
}

/* MGETs the records of the ids in reply (a ZREVRANGE answer of the user's index, in the
 * user's queue shard with the records it lists). Returns the batch or NULL. */
static sb_batch_t *sb_job_list_mget(const char *queue, const redisReply *ids) {
    const char *argv[SB_LIST_MAX + 1];
    char keys[SB_LIST_MAX][SB_KEY_LEN];
    int argc = 1;
    argv[0] = "MGET";
    for (size_t i = 0; i < ids->elements && argc <= SB_LIST_MAX; i++) {
        const redisReply *e = ids->element[i];
        if (e->type != REDIS_REPLY_STRING || !sb_job_id_valid(e->str)) continue;
        if (sb_key(keys[argc - 1], SB_KEY_LEN, SB_KEY_JOB, queue, e->str))
            argv[argc] = keys[argc - 1], argc++;
    }
    sb_batch_t *b = sb_batch_create();
    if (b && sb_batch_addargv(b, argc, argv, NULL) != SB_OK) {
        sb_batch_free(b);
        return NULL;
    }
    return b;
}

static void sb_job_list_ids_cb(redisReply *reply, void *priv) {
    sb_req_t *req = priv;
    if (sb_req_gone(req)) {
        /* nobody to answer */
    } else if (!reply) {
        sb_req_unavailable(req);
    } else if (reply->type != REDIS_REPLY_ARRAY) {
        sb_req_error(req, 500, "internal", "could not list the jobs");
    } else if (reply->elements == 0) {
        static const char empty[] = "{\"success\":true,\"count\":0,\"jobs\":[]}";
        sb_req_send(req, 200, "application/json", empty, sizeof empty - 1, NULL);
    } else {
        char queue[SB_QUEUE_LEN];
        sb_queue_of_user(queue, sb_route_param(&req->match, "type"), req->claims.public_key);
        sb_api_redis(req, sb_job_list_mget(queue, reply), sb_job_list_records_cb);
    }
    sb_req_release(req);
}

void sb_api_job_list(sb_req_t *req) {
    const char *type = sb_api_type(req);
    const char *owner = type ? sb_api_owner(req) : NULL;
    if (!owner) return;
    int limit = sb_api_int_param(req, "limit", SB_LIST_DEFAULT, 1, SB_LIST_MAX);
    if (limit < 0) return;
    char key[SB_KEY_LEN], queue[SB_QUEUE_LEN];
    sb_batch_t *b = sb_batch_create();
    if (b && (!sb_queue_of_user(queue, type, owner) ||
              !sb_key(key, sizeof key, SB_KEY_USER, queue, owner) ||
              sb_batch_add(b, "ZREVRANGE %s 0 %d", key, limit - 1) != SB_OK)) {
        sb_batch_free(b);
        b = NULL;
    }
    sb_api_redis(req, b, sb_job_list_ids_cb);
}

/* ---- GET /agent/{type}/metrics?days= --------------------------------------------------------- */

static void sb_job_metrics_cb(redisReply *reply, void *priv) {
    sb_req_t *req = priv;
    sb_metrics_summary_t s;
    const sb_api_metrics_ctx_t *ctx = &req->ctx.metrics;
    int days = ctx->days;
    if (!reply) {
        sb_req_unavailable(req);
    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements != (size_t)sb_metrics_summary_count(days) ||
               sb_metrics_summary_parse(reply->element, days, ctx->now_ms, &s) != SB_OK) {
        sb_req_error(req, 500, "internal", "could not read the metrics");
    } else {
        cJSON *o = sb_metrics_summary_json(&s);
        if (o) cJSON_AddNumberToObject(o, "days", days);
        if (o) sb_req_json(req, 200, o);
        else sb_req_error(req, 500, "internal", "out of memory");
        cJSON_Delete(o);
    }
    sb_req_release(req);
}

void sb_api_job_metrics(sb_req_t *req) {
    const char *type = sb_api_type(req);
    if (!type) return;
    sb_api_metrics_ctx_t *ctx = &req->ctx.metrics;
    ctx->days = sb_api_int_param(req, "days", 7, 1, SB_METRICS_MAX_DAYS);
    if (ctx->days < 0) return;
    if (sb_queue_shards() > 1) { /* shards in several slots: not one batch */
        sb_api_admin_metrics(req, ctx->days);
        return;
    }
    ctx->now_ms = sb_now_ms(); /* names the days in the batch and in the parse */
    sb_batch_t *b = sb_batch_create();
    /* in MULTI so the replies (days + 1 per queue shard) arrive as one EXEC array */
    if (b && (sb_batch_add(b, "MULTI") != SB_OK ||
              sb_metrics_summary_batch(b, type, ctx->days, ctx->now_ms) != SB_OK ||
              sb_batch_add(b, "EXEC") != SB_OK)) {
        sb_batch_free(b);
        b = NULL;
    }
    sb_api_redis(req, b, sb_job_metrics_cb);
}
