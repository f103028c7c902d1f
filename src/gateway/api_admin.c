/* Job control over HTTP (issue 18, SPEC §3): the admin routes under /admin/ and the owner's
 * POST /{type}/{jobId}/cancel. Route list in the README.
 *
 * How it works. The work is the library's (jobctl.h: compare-and-set Lua scripts, history,
 * audit events); its calls block on an sb_redis_t, and the gateway is one libuv loop that must
 * never block. So a handler checks its input on the loop thread, copies it into its request's
 * context (req->ctx.admin, api_ctx.h), takes a reference on the request (sb_req_hold) and
 * queues the call with uv_queue_work. On libuv's thread pool the call takes a connection from
 * the gateway's small pool (admin.c: mutex-guarded idle list, connected on demand, socket
 * timeout), runs, and puts the connection back; a call that lost its connection (a stale pooled
 * connection after a Redis restart) reconnects and runs once more (every jobctl action is
 * safe to repeat). Back on the loop thread the answer is sent unless the client has left
 * (sb_req_gone: the answer would be dropped; the action itself stands), the query's JSON is
 * freed and the reference released (sb_req_release frees the request if the connection went
 * first). Shutdown waits for queued work: uv_run returns only when it is done.
 *
 * Answers: 200 with the library's JSON (list, counts, detail) or {"success":true,...} for an
 * action; 400 bad input (changes nothing); 404 naming the unknown job id; 409 "conflict" with
 * the job's "state" when the state refuses the action; 503 when Redis is unavailable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/admin.h"
#include "gateway/admin_feed.h"
#include "gateway/admin_views.h"
#include "gateway/api.h"
#include "gateway/gateway.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/log.h"
#include "switchboard/metrics.h"

#define SB_ADMIN_LIST_DEFAULT 50
#define SB_ADMIN_RETRY_DEFAULT 100

typedef enum {
    SB_ADM_LIST, SB_ADM_SEARCH, SB_ADM_COUNTS, SB_ADM_COUNTS_ALL, SB_ADM_DETAIL, SB_ADM_RETRY,
    SB_ADM_RETRY_DEAD, SB_ADM_CANCEL, SB_ADM_DELETE, SB_ADM_PAUSE, SB_ADM_RESUME, SB_ADM_PAUSED,
    SB_ADM_WORKERS, SB_ADM_EVENTS, SB_ADM_METRICS
} sb_adm_op_t;

/* ---- on the thread pool ---------------------------------------------------------------- */

/* 1 when want is "" (no filter) or v is the string want. */
static int sb_adm_str_is(const cJSON *v, const char *want) {
    return !want[0] || (cJSON_IsString(v) && !strcmp(v->valuestring, want));
}

/* The owner's publicKey in a job detail ({"job":{"user":{"publicKey":…}}}), or NULL. */
static const cJSON *sb_adm_owner(const cJSON *detail) {
    const cJSON *job = cJSON_GetObjectItem(detail, "job");
    return cJSON_GetObjectItem(cJSON_GetObjectItem(job, "user"), "publicKey");
}

/* A search by id: the job's detail as a one-entry listing, or an empty one. */
static int sb_adm_search(sb_redis_t *r, const sb_api_admin_ctx_t *c, cJSON **out) {
    cJSON *detail = NULL, *doc = cJSON_CreateObject();
    cJSON *jobs = cJSON_AddArrayToObject(doc, "jobs");
    int rc = sb_jobctl_detail(r, c->type, c->id, &detail);
    if (!jobs || (rc != 0 && rc != SB_ENOTFOUND)) {
        cJSON_Delete(doc);
        cJSON_Delete(detail);
        return jobs ? rc : SB_ENOMEM;
    }
    if (detail) {
        cJSON_DeleteItemFromObject(detail, "history");
        cJSON_DeleteItemFromObject(detail, "failure");
        if (!sb_adm_str_is(cJSON_GetObjectItem(detail, "state"), c->state) ||
            !sb_adm_str_is(sb_adm_owner(detail), c->user))
            cJSON_Delete(detail);
        else
            cJSON_AddItemToArray(jobs, detail);
    }
    cJSON_AddNullToObject(doc, "next");
    *out = doc;
    return 0;
}

/* GET /agent/{type}/metrics with queue shards: the summary over every shard (c->limit days),
 * the route's document plus "days". */
static int sb_adm_metrics(sb_redis_t *r, const sb_api_admin_ctx_t *c, cJSON **out) {
    sb_metrics_summary_t sum;
    int rc = sb_metrics_summary(r, c->type, c->limit, sb_now_ms(), &sum);
    if (rc != SB_OK) return rc;
    *out = sb_metrics_summary_json(&sum);
    if (*out) cJSON_AddNumberToObject(*out, "days", c->limit);
    return *out ? SB_OK : SB_ENOMEM;
}

static int sb_adm_call(sb_redis_t *r, sb_api_admin_ctx_t *c, const sb_gateway_t *gw) {
    const char *types = gw->cfg->job_types; /* read-only after start */
    const char *owner = c->owner[0] ? c->owner : NULL;
    sb_jobctl_query_t q = {c->type, c->state[0] ? c->state : NULL, c->user[0] ? c->user : NULL,
                           c->cursor, c->limit};
    switch (c->op) {
    case SB_ADM_LIST: return sb_jobctl_list(r, &q, &c->out);
    case SB_ADM_SEARCH: return sb_adm_search(r, c, &c->out);
    case SB_ADM_COUNTS: return sb_jobctl_counts(r, c->type, &c->out);
    case SB_ADM_COUNTS_ALL: return sb_admin_counts_all(r, types, sb_now_ms(), &c->out);
    case SB_ADM_WORKERS: return sb_admin_workers(r, &gw->presence, &c->out);
    case SB_ADM_EVENTS: return sb_admin_events(r, &c->out);
    case SB_ADM_METRICS: return sb_adm_metrics(r, c, &c->out);
    case SB_ADM_DETAIL: return sb_jobctl_detail(r, c->type, c->id, &c->out);
    case SB_ADM_RETRY: return sb_jobctl_retry(r, c->type, c->id, c->by, &c->res);
    case SB_ADM_RETRY_DEAD: return sb_jobctl_retry_dead(r, c->type, c->by, c->limit, &c->n);
    case SB_ADM_CANCEL: return sb_jobctl_cancel(r, c->type, c->id, c->by, owner, &c->res);
    case SB_ADM_DELETE: return sb_jobctl_delete(r, c->type, c->id, c->by, &c->res);
    case SB_ADM_PAUSE: return sb_jobctl_pause(r, c->type, c->by, 1, &c->n);
    case SB_ADM_RESUME: return sb_jobctl_pause(r, c->type, c->by, 0, &c->n);
    default: break;
    }
    int rc = sb_jobctl_paused(r, c->type); /* SB_ADM_PAUSED */
    if (rc < 0) return rc;
    c->n = rc;
    return 0;
}

static void sb_adm_work(uv_work_t *w) {
    sb_req_t *req = w->data;
    sb_api_admin_ctx_t *c = &req->ctx.admin;
    sb_redis_t *r = sb_admin_take(c->admin, c->err, sizeof c->err);
    if (!r) {
        c->rc = SB_EREDIS;
        return;
    }
    c->rc = sb_adm_call(r, c, req->gw);
    if (c->rc == SB_EREDIS && sb_redis_connect(r, c->err, sizeof c->err) == 0)
        c->rc = sb_adm_call(r, c, req->gw);
    sb_admin_put(c->admin, r);
}

/* ---- back on the loop thread ------------------------------------------------------------- */

/* {"success":false,"error":"conflict","message","state"}: 409 naming the state. */
static void sb_adm_conflict(sb_req_t *req, const sb_api_admin_ctx_t *c, const char *action) {
    char msg[200];
    snprintf(msg, sizeof msg, "job %s is %s: it cannot be %s", c->id, c->res.state, action);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddFalseToObject(doc, "success");
    cJSON_AddStringToObject(doc, "error", "conflict");
    cJSON_AddStringToObject(doc, "message", msg);
    cJSON_AddStringToObject(doc, "state", c->res.state);
    if (doc && cJSON_GetObjectItem(doc, "state")) sb_req_json(req, 409, doc);
    else sb_req_error(req, 500, "internal", "out of memory");
    cJSON_Delete(doc);
}

static const char *sb_adm_action_name(int op) {
    return op == SB_ADM_RETRY ? "retried" : op == SB_ADM_CANCEL ? "cancelled" : "deleted";
}

/* admin:action to the admins' room (admin_feed.h): who did what, for every console. */
static void sb_adm_announce(sb_req_t *req, const sb_api_admin_ctx_t *c, const char *action) {
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "action", action);
    cJSON_AddStringToObject(doc, "type", c->type);
    if (c->op == SB_ADM_RETRY || c->op == SB_ADM_CANCEL || c->op == SB_ADM_DELETE) {
        cJSON_AddStringToObject(doc, "jobId", c->id);
        cJSON_AddStringToObject(doc, "previousState", c->res.state);
    } else if (c->op == SB_ADM_RETRY_DEAD) {
        cJSON_AddNumberToObject(doc, "count", c->n);
    } else { /* pause / resume: whether it was not already so */
        cJSON_AddBoolToObject(doc, "changed", c->n != 0);
    }
    cJSON_AddStringToObject(doc, "by", c->by);
    char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    if (text) sb_admin_feed_action(req->gw->admin_feed, text, strlen(text));
    cJSON_free(text);
    cJSON_Delete(doc);
}

/* An action on one job: 200, 404 naming it, or 409 naming its state. */
static void sb_adm_answer_action(sb_req_t *req, const sb_api_admin_ctx_t *c) {
    if (c->res.outcome == SB_JOBCTL_NOTFOUND) {
        sb_req_error(req, 404, "not_found", "job %s of type %s not found", c->id, c->type);
        return;
    }
    if (c->res.outcome == SB_JOBCTL_CONFLICT) {
        sb_adm_conflict(req, c, sb_adm_action_name(c->op));
        return;
    }
    char body[400];
    int n = snprintf(body, sizeof body,
                     "{\"success\":true,\"jobId\":\"%s\",\"type\":\"%s\",\"action\":\"%s\","
                     "\"previousState\":\"%s\"}",
                     c->id, c->type, sb_adm_action_name(c->op), c->res.state);
    sb_info("gateway", "job %s of type %s %s by %s", c->id, c->type, sb_adm_action_name(c->op),
            c->by);
    sb_adm_announce(req, c, sb_adm_action_name(c->op));
    sb_req_send(req, 200, "application/json", body, (size_t)n, NULL);
}

static void sb_adm_answer_ok(sb_req_t *req, sb_api_admin_ctx_t *c) {
    char body[200];
    int n = 0;
    switch (c->op) {
    case SB_ADM_RETRY:
    case SB_ADM_CANCEL:
    case SB_ADM_DELETE: sb_adm_answer_action(req, c); return;
    case SB_ADM_RETRY_DEAD:
        n = snprintf(body, sizeof body, "{\"success\":true,\"type\":\"%s\",\"retried\":%d}",
                     c->type, c->n);
        sb_adm_announce(req, c, "retried-dead");
        break;
    case SB_ADM_PAUSE:
    case SB_ADM_RESUME:
        sb_admin_set_paused(c->admin, c->type, c->op == SB_ADM_PAUSE);
        sb_adm_announce(req, c, c->op == SB_ADM_PAUSE ? "paused" : "resumed");
        n = snprintf(body, sizeof body,
                     "{\"success\":true,\"type\":\"%s\",\"paused\":%s,\"changed\":%s}", c->type,
                     c->op == SB_ADM_PAUSE ? "true" : "false", c->n ? "true" : "false");
        break;
    case SB_ADM_PAUSED:
        sb_admin_set_paused(c->admin, c->type, c->n);
        n = snprintf(body, sizeof body, "{\"type\":\"%s\",\"paused\":%s}", c->type,
                     c->n ? "true" : "false");
        break;
    default:
        if (c->op == SB_ADM_COUNTS)
            sb_admin_set_paused(c->admin, c->type,
                                cJSON_IsTrue(cJSON_GetObjectItem(c->out, "paused")));
        sb_req_json(req, 200, c->out);
        return;
    }
    sb_req_send(req, 200, "application/json", body, (size_t)n, NULL);
}

static void sb_adm_answer(sb_req_t *req, sb_api_admin_ctx_t *c) {
    if (c->rc == 0) sb_adm_answer_ok(req, c);
    else if (c->rc == SB_ENOTFOUND)
        sb_req_error(req, 404, "not_found", "job %s of type %s not found", c->id, c->type);
    else if (c->rc == SB_EINVAL)
        sb_req_error(req, 400, "bad_request", "the request names no valid job or type");
    else if (c->rc == SB_ETIMEOUT)
        sb_req_error(req, 503, "busy", "job %s kept changing; try again", c->id);
    else if (c->rc == SB_EREDIS)
        sb_req_error(req, 503, "redis_unavailable", "Redis is unavailable%s%s",
                     c->err[0] ? ": " : "", c->err);
    else
        sb_req_error(req, 503, "redis_unavailable", "Redis refused the operation");
}

static void sb_adm_done(uv_work_t *w, int status) {
    sb_req_t *req = w->data;
    sb_api_admin_ctx_t *c = &req->ctx.admin;
    if (status != 0) c->rc = SB_ECANCELED;
    if (!sb_req_gone(req)) sb_adm_answer(req, c); /* else counted as 499 on release */
    cJSON_Delete(c->out);
    c->out = NULL;
    sb_req_release(req);
}

/* Queues the call that req->ctx.admin describes. */
static void sb_adm_queue(sb_req_t *req, int op) {
    sb_api_admin_ctx_t *c = &req->ctx.admin;
    const sb_claims_t *cl = &req->claims;
    c->op = op;
    c->admin = req->gw->admin;
    snprintf(c->by, sizeof c->by, "%s:%.256s", sb_role_name(cl->role),
             cl->sub ? cl->sub : cl->public_key ? cl->public_key : "?");
    if (!c->admin) {
        sb_req_error(req, 503, "unavailable", "job control is unavailable (out of memory)");
        return;
    }
    c->work.data = req;
    sb_req_hold(req);
    if (uv_queue_work(req->gw->loop, &c->work, sb_adm_work, sb_adm_done) != 0) {
        sb_req_release(req);
        sb_req_error(req, 503, "unavailable", "could not queue the operation");
    }
}

/* ---- input ------------------------------------------------------------------------------ */

/* {type} and, when with_id, {jobId} into the context. 0, or -1 after answering 400/404. */
static int sb_adm_target(sb_req_t *req, int with_id) {
    sb_api_admin_ctx_t *c = &req->ctx.admin;
    const char *type = sb_api_type(req);
    if (!type) return -1;
    snprintf(c->type, sizeof c->type, "%s", type);
    if (!with_id) return 0;
    const char *id = sb_route_param(&req->match, "jobId");
    if (!id || !sb_job_id_valid(id)) {
        sb_req_error(req, 400, "bad_request", "malformed job id");
        return -1;
    }
    snprintf(c->id, sizeof c->id, "%s", id);
    return 0;
}

/* Copies query parameter name into buf (len bytes). 0 (absent: ""), -1 after answering 400. */
static int sb_adm_query_str(sb_req_t *req, const char *name, char *buf, size_t len) {
    char v[SB_HTTP_QUERY_MAX];
    buf[0] = '\0';
    if (!sb_req_query(req, name, v, sizeof v)) return 0;
    if (!*v || strlen(v) >= len) {
        sb_req_error(req, 400, "bad_request", "%s must be 1 to %zu characters", name, len - 1);
        return -1;
    }
    memcpy(buf, v, strlen(v) + 1);
    return 0;
}

/* GET /admin/jobs?type=&state=&user=&id=&limit=&cursor= */
void sb_api_admin_jobs(sb_req_t *req) {
    sb_api_admin_ctx_t *c = &req->ctx.admin;
    if (sb_adm_query_str(req, "type", c->type, sizeof c->type) != 0 ||
        sb_adm_query_str(req, "state", c->state, sizeof c->state) != 0 ||
        sb_adm_query_str(req, "user", c->user, sizeof c->user) != 0 ||
        sb_adm_query_str(req, "id", c->id, sizeof c->id) != 0)
        return;
    if (!c->type[0] || !sb_job_type_valid(c->type)) {
        sb_req_error(req, 400, "bad_request", "type is required and must match [a-z][a-z0-9_-]{0,31}");
        return;
    }
    if (!sb_gateway_type_known(req->gw, c->type)) {
        sb_req_error(req, 404, "not_found", "unknown job type '%s'", c->type);
        return;
    }
    if (c->state[0] && !sb_jobctl_state_valid(c->state)) {
        sb_req_error(req, 400, "bad_request", "unknown state '%s'", c->state);
        return;
    }
    if (c->id[0] && !sb_job_id_valid(c->id)) {
        sb_req_error(req, 400, "bad_request", "malformed job id");
        return;
    }
    int limit = sb_api_int_param(req, "limit", SB_ADMIN_LIST_DEFAULT, 1, SB_JOBCTL_LIST_MAX);
    int cursor = limit < 0 ? -1 : sb_api_int_param(req, "cursor", 0, 0, 999999999);
    if (limit < 0 || cursor < 0) return;
    c->limit = limit;
    c->cursor = cursor;
    sb_adm_queue(req, c->id[0] ? SB_ADM_SEARCH : SB_ADM_LIST);
}

void sb_api_admin_job(sb_req_t *req) {
    if (sb_adm_target(req, 1) == 0) sb_adm_queue(req, SB_ADM_DETAIL);
}

void sb_api_admin_retry(sb_req_t *req) {
    if (sb_adm_target(req, 1) == 0) sb_adm_queue(req, SB_ADM_RETRY);
}

void sb_api_admin_cancel(sb_req_t *req) {
    if (sb_adm_target(req, 1) == 0) sb_adm_queue(req, SB_ADM_CANCEL);
}

void sb_api_admin_delete(sb_req_t *req) {
    if (sb_adm_target(req, 1) == 0) sb_adm_queue(req, SB_ADM_DELETE);
}

void sb_api_admin_queues(sb_req_t *req) { sb_adm_queue(req, SB_ADM_COUNTS_ALL); }

/* GET /admin/workers: the presence list with each worker's jobs in hand (admin_views.h). */
void sb_api_admin_workers(sb_req_t *req) { sb_adm_queue(req, SB_ADM_WORKERS); }

/* GET /admin/events: the event bus's streams, groups and dead letters (admin_views.h). */
void sb_api_admin_events(sb_req_t *req) { sb_adm_queue(req, SB_ADM_EVENTS); }

void sb_api_admin_queue(sb_req_t *req) {
    if (sb_adm_target(req, 0) == 0) sb_adm_queue(req, SB_ADM_COUNTS);
}

/* POST /admin/queues/{type}/retry-dead?limit=N (1..SB_JOBCTL_RETRY_MAX, default 100) */
void sb_api_admin_retry_dead(sb_req_t *req) {
    if (sb_adm_target(req, 0) != 0) return;
    int limit = sb_api_int_param(req, "limit", SB_ADMIN_RETRY_DEFAULT, 1, SB_JOBCTL_RETRY_MAX);
    if (limit < 0) return;
    req->ctx.admin.limit = limit;
    sb_adm_queue(req, SB_ADM_RETRY_DEAD);
}

void sb_api_admin_pause(sb_req_t *req) {
    if (sb_adm_target(req, 0) == 0) sb_adm_queue(req, SB_ADM_PAUSE);
}

void sb_api_admin_resume(sb_req_t *req) {
    if (sb_adm_target(req, 0) == 0) sb_adm_queue(req, SB_ADM_RESUME);
}

void sb_api_admin_paused(sb_req_t *req) {
    if (sb_adm_target(req, 0) == 0) sb_adm_queue(req, SB_ADM_PAUSED);
}

/* POST /{type}/{jobId}/cancel: the owner cancels a queued job (an admin any queued or running
 * one). Another user's job is 404, as GET answers; a token without publicKey owns nothing. */
void sb_api_job_cancel(sb_req_t *req) {
    sb_api_admin_ctx_t *c = &req->ctx.admin;
    if (sb_adm_target(req, 1) != 0) return;
    if (req->claims.role != SB_ROLE_ADMIN) {
        const char *pk = req->claims.public_key;
        if (!pk || !*pk || strlen(pk) > SB_PUBKEY_MAX) {
            sb_req_error(req, 404, "not_found", "job %s of type %s not found", c->id, c->type);
            return;
        }
        snprintf(c->owner, sizeof c->owner, "%s", pk);
    }
    sb_adm_queue(req, SB_ADM_CANCEL);
}

void sb_api_admin_metrics(sb_req_t *req, int days) {
    if (sb_adm_target(req, 0) != 0) return;
    req->ctx.admin.limit = days;
    sb_adm_queue(req, SB_ADM_METRICS);
}
