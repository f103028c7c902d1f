/* The gateway's route tables and dispatch: match, refuse (404/405/413/503), authenticate,
 * authorise, then run the row's handler.
 *
 * Two tables: API routes, served under /api/v1 and /api (SPEC §3), and root routes for
 * probes and scraping. A row's data is an sb_api_route_t shared by both tables where a
 * route appears in both, so its metrics label (and series) is the same. To add a route,
 * add an sb_api_route_t and a row. */
#include <stdio.h>
#include <string.h>
#include "gateway/api.h"
#include "gateway/gateway.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/job.h"
#include "switchboard/json.h"
#include "gateway/jwt_cache.h"
#include "switchboard/utf8.h"

#define SB_ANY_ROLE (SB_ROLE_USER | SB_ROLE_AGENT | SB_ROLE_ADMIN)
#define SB_AGENT_ROLES (SB_ROLE_AGENT | SB_ROLE_ADMIN)

static const sb_api_route_t sb_r_job_create = {"/agent/{type}", sb_api_job_create, SB_ANY_ROLE};
static const sb_api_route_t sb_r_job_list = {"/agent/{type}/jobs", sb_api_job_list, SB_ANY_ROLE};
static const sb_api_route_t sb_r_job_metrics = {"/agent/{type}/metrics", sb_api_job_metrics,
                                                SB_ROLE_ADMIN};
static const sb_api_route_t sb_r_job_get = {"/agent/{type}/{jobId}", sb_api_job_get,
                                            SB_ANY_ROLE};
static const sb_api_route_t sb_r_rebalance_get = {"/rebalance/{jobId}", sb_api_job_get,
                                                  SB_ANY_ROLE};
static const sb_api_route_t sb_r_pres_heartbeat = {"/agent-status/heartbeat",
                                                   sb_api_presence_heartbeat, SB_AGENT_ROLES};
static const sb_api_route_t sb_r_pres_offline = {"/agent-status/offline", sb_api_presence_offline,
                                                 SB_AGENT_ROLES};
static const sb_api_route_t sb_r_pres_online = {"/agent-status/online", sb_api_presence_online,
                                                SB_ANY_ROLE};
static const sb_api_route_t sb_r_pres_dept = {"/agent-status/department/{department_id}",
                                              sb_api_presence_department, SB_ANY_ROLE};
static const sb_api_route_t sb_r_pres_agent = {"/agent-status/agent/{agent_id}",
                                               sb_api_presence_agent, SB_ANY_ROLE};
static const sb_api_route_t sb_r_pres_stats = {"/agent-status/stats", sb_api_presence_stats,
                                               SB_ROLE_ADMIN};
static const sb_api_route_t sb_r_pres_assign = {"/agent-status/assign", sb_api_presence_assign,
                                                SB_ROLE_ADMIN};
static const sb_api_route_t sb_r_pres_release = {"/agent-status/release",
                                                 sb_api_presence_release, SB_ROLE_ADMIN};
#define SB_ADMIN_ROUTE(name, path, fn) static const sb_api_route_t name = {path, fn, SB_ROLE_ADMIN}
SB_ADMIN_ROUTE(sb_r_adm_jobs, "/admin/jobs", sb_api_admin_jobs);
SB_ADMIN_ROUTE(sb_r_adm_job, "/admin/jobs/{type}/{jobId}", sb_api_admin_job);
SB_ADMIN_ROUTE(sb_r_adm_delete, "/admin/jobs/{type}/{jobId}", sb_api_admin_delete);
SB_ADMIN_ROUTE(sb_r_adm_retry, "/admin/jobs/{type}/{jobId}/retry", sb_api_admin_retry);
SB_ADMIN_ROUTE(sb_r_adm_cancel, "/admin/jobs/{type}/{jobId}/cancel", sb_api_admin_cancel);
SB_ADMIN_ROUTE(sb_r_adm_queues, "/admin/queues", sb_api_admin_queues);
SB_ADMIN_ROUTE(sb_r_adm_queue, "/admin/queues/{type}", sb_api_admin_queue);
SB_ADMIN_ROUTE(sb_r_adm_retry_dead, "/admin/queues/{type}/retry-dead", sb_api_admin_retry_dead);
SB_ADMIN_ROUTE(sb_r_adm_pause, "/admin/queues/{type}/pause", sb_api_admin_pause);
SB_ADMIN_ROUTE(sb_r_adm_resume, "/admin/queues/{type}/resume", sb_api_admin_resume);
SB_ADMIN_ROUTE(sb_r_adm_paused, "/admin/queues/{type}/paused", sb_api_admin_paused);
SB_ADMIN_ROUTE(sb_r_adm_workers, "/admin/workers", sb_api_admin_workers);
SB_ADMIN_ROUTE(sb_r_adm_events, "/admin/events", sb_api_admin_events);
static const sb_api_route_t sb_r_job_cancel = {"/{type}/{jobId}/cancel", sb_api_job_cancel,
                                               SB_ANY_ROLE};
static const sb_api_route_t sb_r_healthz = {"/healthz", sb_api_healthz, 0};
static const sb_api_route_t sb_r_readyz = {"/readyz", sb_api_readyz, 0};
static const sb_api_route_t sb_r_metrics = {"/metrics", sb_api_prometheus, 0};
static const sb_api_route_t sb_r_dev_info = {"/dev/token", sb_api_dev_info, 0};
static const sb_api_route_t sb_r_dev_token = {"/dev/token", sb_api_dev_token, 0};
/* dashboard files: one label for all, so /metrics has no series per file name */
static const sb_api_route_t sb_r_static = {"/web", sb_api_static, 0};

/* Literal rows before overlapping parameter rows: the first match wins. */
static const sb_route_t sb_api_routes[] = {
    {SB_HTTP_POST, "/agent/{type}", &sb_r_job_create},
    {SB_HTTP_GET, "/agent/{type}/jobs", &sb_r_job_list},
    {SB_HTTP_GET, "/agent/{type}/metrics", &sb_r_job_metrics},
    {SB_HTTP_GET, "/agent/{type}/{jobId}", &sb_r_job_get},
    {SB_HTTP_GET, "/rebalance/{jobId}", &sb_r_rebalance_get},
    {SB_HTTP_POST, "/agent-status/heartbeat", &sb_r_pres_heartbeat},
    {SB_HTTP_POST, "/agent-status/offline", &sb_r_pres_offline},
    {SB_HTTP_GET, "/agent-status/online", &sb_r_pres_online},
    {SB_HTTP_GET, "/agent-status/department/{department_id}", &sb_r_pres_dept},
    {SB_HTTP_GET, "/agent-status/agent/{agent_id}", &sb_r_pres_agent},
    {SB_HTTP_GET, "/agent-status/stats", &sb_r_pres_stats},
    {SB_HTTP_POST, "/agent-status/assign", &sb_r_pres_assign},
    {SB_HTTP_POST, "/agent-status/release", &sb_r_pres_release},
    {SB_HTTP_GET, "/admin/jobs", &sb_r_adm_jobs},
    {SB_HTTP_GET, "/admin/jobs/{type}/{jobId}", &sb_r_adm_job},
    {SB_HTTP_DELETE, "/admin/jobs/{type}/{jobId}", &sb_r_adm_delete},
    {SB_HTTP_POST, "/admin/jobs/{type}/{jobId}/retry", &sb_r_adm_retry},
    {SB_HTTP_POST, "/admin/jobs/{type}/{jobId}/cancel", &sb_r_adm_cancel},
    {SB_HTTP_GET, "/admin/queues", &sb_r_adm_queues},
    {SB_HTTP_GET, "/admin/queues/{type}", &sb_r_adm_queue},
    {SB_HTTP_POST, "/admin/queues/{type}/retry-dead", &sb_r_adm_retry_dead},
    {SB_HTTP_POST, "/admin/queues/{type}/pause", &sb_r_adm_pause},
    {SB_HTTP_POST, "/admin/queues/{type}/resume", &sb_r_adm_resume},
    {SB_HTTP_GET, "/admin/queues/{type}/paused", &sb_r_adm_paused},
    {SB_HTTP_GET, "/admin/workers", &sb_r_adm_workers},
    {SB_HTTP_GET, "/admin/events", &sb_r_adm_events},
    {SB_HTTP_POST, "/{type}/{jobId}/cancel", &sb_r_job_cancel},
    {SB_HTTP_GET, "/healthz", &sb_r_healthz},
    {SB_HTTP_GET, "/readyz", &sb_r_readyz},
    {SB_HTTP_GET, "/metrics", &sb_r_metrics},
    {SB_HTTP_GET, "/dev/token", &sb_r_dev_info},
    {SB_HTTP_POST, "/dev/token", &sb_r_dev_token},
};

/* Never a row under /socket.io/: that path is the Engine.IO endpoint. */
static const sb_route_t sb_root_routes[] = {
    {SB_HTTP_GET, "/healthz", &sb_r_healthz},
    {SB_HTTP_GET, "/readyz", &sb_r_readyz},
    {SB_HTTP_GET, "/metrics", &sb_r_metrics},
    {SB_HTTP_GET, "/", &sb_r_static},
    {SB_HTTP_GET, "/web/{file}", &sb_r_static},
    {SB_HTTP_GET, "/vendor/{file}", &sb_r_static},
};

#define SB_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Verifies the bearer token and the role. Returns 0, or answers 401/403 and returns -1. */
static int sb_api_authorize(sb_req_t *req) {
    char err[160];
    if (req->auth_too_long) {
        sb_req_error(req, 431, "request_header_too_large",
                     "the Authorization header is longer than %d bytes", SB_HTTP_AUTH_MAX);
        return -1;
    }
    if (!req->bearer || !*req->bearer) {
        sb_req_error(req, 401, "unauthorized", "missing bearer token in the Authorization header");
        return -1;
    }
    if (sb_jwt_verify_cached(req->gw->tokens, req->bearer, req->gw->cfg->jwt_secret,
                             sb_now_ms() / 1000, &req->claims, err, sizeof err) != SB_OK) {
        sb_req_error(req, 401, "unauthorized", "%s", err);
        return -1;
    }
    if (!(req->claims.role & req->route->roles)) {
        sb_req_error(req, 403, "forbidden", "role %s may not use this route",
                     sb_role_name(req->claims.role));
        return -1;
    }
    return 0;
}

void sb_api_dispatch(sb_req_t *req) {
    const char *api = sb_route_api_path(req->path);
    /* HEAD runs the GET route; sb_req_send leaves the body out (RFC 9110 §9.3.2) */
    int method = req->method == SB_HTTP_HEAD ? SB_HTTP_GET : req->method;
    sb_route_rc_t rc = api ? sb_route_match(sb_api_routes, SB_COUNT(sb_api_routes), method, api,
                                            &req->match)
                           : sb_route_match(sb_root_routes, SB_COUNT(sb_root_routes), method,
                                            req->path, &req->match);
    if (rc == SB_ROUTE_NOT_FOUND) {
        sb_req_error(req, 404, "not_found", "no route for %s %s", req->method_name, req->path);
        return;
    }
    if (rc == SB_ROUTE_BAD_METHOD) {
        char allow[96], hdr[128];
        int mask = req->match.allowed;
        if (mask & SB_HTTP_GET) mask |= SB_HTTP_HEAD;
        snprintf(hdr, sizeof hdr, "allow: %s\r\n", sb_http_methods_str(mask, allow, sizeof allow));
        sb_req_error_h(req, 405, hdr, "method_not_allowed", "%s is not allowed here; use %s",
                       req->method_name, allow);
        return;
    }
    req->route = req->match.route->data;
    if (req->body_too_large) {
        sb_req_error(req, 413, "payload_too_large", "the request body exceeds %d bytes",
                     SB_HTTP_BODY_MAX);
        return;
    }
    if (req->gw->stopping) {
        sb_req_error(req, 503, "shutting_down", "the gateway is shutting down");
        return;
    }
    if (req->route->roles && sb_api_authorize(req) != 0) return;
    req->route->handler(req);
}

/* ---- helpers shared by the handlers --------------------------------------------------------- */

int sb_api_redis(sb_req_t *req, sb_batch_t *b, sb_aredis_cb cb) {
    sb_req_hold(req);
    int rc = b ? sb_aredis_send(req->gw->redis, b, cb, req) : SB_ENOMEM;
    sb_batch_free(b);
    if (rc == SB_OK) return SB_OK;
    sb_req_unavailable(req);
    sb_req_release(req);
    return SB_EREDIS;
}

/* sb_aredis_eval's builder for sb_api_eval: the request's own, unless its client left. */
static int sb_api_eval_build(sb_batch_t *b, sb_script_mode_t mode, void *priv) {
    sb_req_t *req = priv;
    if (sb_req_gone(req)) return SB_ECANCELED; /* a NOSCRIPT retry nobody would hear */
    return req->eval_build(b, req, mode);
}

int sb_api_eval(sb_req_t *req, sb_api_build_fn build, sb_aredis_cb cb) {
    req->eval_build = build;
    int rc = sb_aredis_eval(req->gw->redis, sb_api_eval_build, cb, req);
    if (rc == SB_OK) sb_req_hold(req); /* cb runs from the loop, never before this */
    else if (rc == SB_EREDIS) sb_req_unavailable(req);
    return rc;
}

/* Answers 415 for a body that is not declared as JSON, 400 for one that is not UTF-8 (RFC
 * 8259 §8.1: it would go out in WebSocket text frames, which clients drop). Returns -1 after
 * answering, 0 when the body may be parsed. */
static int sb_api_body_acceptable(sb_req_t *req) {
    if (!req->body) return 0; /* absent: invalid_json below */
    if (!req->json_body) {
        sb_req_error(req, 415, "unsupported_media_type",
                     "send the body with Content-Type: application/json");
        return -1;
    }
    if (!sb_utf8_valid(req->body, req->body_len)) {
        sb_req_error(req, 400, "invalid_json", "the body is not valid UTF-8");
        return -1;
    }
    return 0;
}

int sb_api_body_json(sb_req_t *req) {
    char member[72];
    if (sb_api_body_acceptable(req) != 0) return -1;
    req->doc = req->body ? sb_json_parse(req->body, req->body_len) : NULL;
    if (!req->doc) {
        sb_req_error(req, 400, "invalid_json", "the body must be a JSON object");
        return -1;
    }
    const char *dup = sb_json_duplicate_key(req->doc);
    if (dup) {
        sb_req_error(req, 400, "bad_request",
                     "duplicate key \"%.64s\": a name may appear only once in an object", dup);
        return -1;
    }
    if (sb_json_nul_member(req->body, req->body_len, member, sizeof member)) {
        sb_req_error(req, 400, "bad_request",
                     "member \"%s\" holds \\u0000 (NUL), which no string may contain", member);
        return -1;
    }
    return 0;
}

int sb_api_int_param(sb_req_t *req, const char *name, int def, int min, int max) {
    char v[32];
    if (!sb_req_query(req, name, v, sizeof v)) return def;
    long n = 0;
    size_t len = strlen(v);
    for (size_t i = 0; i < len && len <= 9; i++) {
        if (v[i] < '0' || v[i] > '9') {
            len = 0;
            break;
        }
        n = n * 10 + (v[i] - '0');
    }
    if (len == 0 || len > 9 || n < min || n > max) {
        sb_req_error(req, 400, "bad_request", "%s must be an integer from %d to %d", name, min,
                     max);
        return -1;
    }
    return (int)n;
}

const char *sb_api_type(sb_req_t *req) {
    const char *type = sb_route_param(&req->match, "type");
    if (!type) return "rebalance"; /* /rebalance/{jobId} */
    if (!sb_job_type_valid(type)) {
        sb_req_error(req, 400, "bad_request", "type must match [a-z][a-z0-9_-]{0,31}");
        return NULL;
    }
    if (!sb_gateway_type_known(req->gw, type)) {
        sb_req_error(req, 404, "not_found", "unknown job type '%s'", type);
        return NULL;
    }
    return type;
}
