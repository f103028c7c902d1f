/* Presence routes (SPEC §3 /agent-status/…, §5): heartbeat, offline, lists, one agent, stats,
 * assign and release, on top of the presence library (include/switchboard/presence.h).
 *
 * Each route validates what it can without Redis (ids, department ids, status, the body) and
 * then sends ONE presence command. Every command is described by an sb_pres_op_t: a builder
 * that appends the command to a batch from what the request holds (route parameters, the
 * parsed body in req->doc, the verified claims), and an answer that turns the reply into the
 * HTTP response. The builder re-reads the request, so sb_api_eval can send the same op again
 * as EVAL when Redis answers NOSCRIPT (script cache flushed, or a fresh Redis after a restart).
 *
 * Identity comes only from the token: the agent id is `sub`, and name, email, department_id
 * and department are the token's claims; a body's agent fields are ignored. The request is
 * held (reference-counted) while its Redis command is in flight, and a reply that arrives
 * after the client left touches nothing but the request (see http.h). Answers follow seed 004:
 * {"success":true,"message":…,"data":…}; errors use the gateway's error shape. */
#include <stdio.h>
#include <string.h>
#include "gateway/api.h"
#include "gateway/gateway.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/json.h"
#include "switchboard/log.h"
#include "switchboard/presence.h"

typedef struct sb_pres_op sb_pres_op_t;

/* One presence command: how to build it from the request, and how to answer its reply. */
struct sb_pres_op {
    const char *what; /* for log lines: "heartbeat", "assign"… */
    sb_api_build_fn build;
    void (*answer)(sb_req_t *req, const redisReply *reply);
    sb_aredis_cb cb; /* the reply callback: sb_pres_reply(reply, req, this op) */
};

/* ---- sending and receiving -------------------------------------------------------------- */

/* Sends op; answers 500/503 itself when that fails. */
static void sb_pres_send(sb_req_t *req, const sb_pres_op_t *op) {
    int rc = sb_api_eval(req, op->build, op->cb);
    if (rc != SB_OK && rc != SB_EREDIS)
        sb_req_error(req, 500, "internal", "could not build the %s command", op->what);
}

/* The common reply path: client gone → nothing; no reply → 503; a Redis error → 503; else
 * the op's answer. Releases the request's reference. */
static void sb_pres_reply(redisReply *reply, sb_req_t *req, const sb_pres_op_t *op) {
    if (sb_req_gone(req)) {
        /* nobody to answer; the command ran (or not) as for any lost client */
    } else if (!reply) {
        sb_req_unavailable(req);
    } else if (reply->type == REDIS_REPLY_ERROR) {
        sb_error("gateway", "presence %s: redis answered %s", op->what, reply->str);
        sb_req_error(req, 503, "redis_unavailable", "Redis refused the %s command", op->what);
    } else {
        op->answer(req, reply);
    }
    sb_req_release(req);
}

/* Answers {"success":true,"message":message,"data":data}; data is consumed. */
static void sb_pres_ok(sb_req_t *req, const char *message, cJSON *data) {
    cJSON *o = cJSON_CreateObject();
    if (!o || !data || !cJSON_AddBoolToObject(o, "success", 1) ||
        !cJSON_AddStringToObject(o, "message", message)) {
        cJSON_Delete(o);
        cJSON_Delete(data);
        sb_req_error(req, 500, "internal", "out of memory");
        return;
    }
    cJSON_AddItemToObject(o, "data", data);
    sb_req_json(req, 200, o);
    cJSON_Delete(o);
}

static void sb_pres_bad_reply(sb_req_t *req, const char *what, int rc) {
    if (rc == SB_ENOMEM) {
        sb_req_error(req, 500, "internal", "out of memory");
        return;
    }
    sb_error("gateway", "presence %s: unexpected reply from redis", what);
    sb_req_error(req, 500, "internal", "unexpected answer from Redis to %s", what);
}

/* ---- validation ------------------------------------------------------------------------- */

/* Parses the body into req->doc (sb_api_body_json: duplicate names refused). An absent body
 * is fine unless required. Returns 0, or -1 after answering 400. */
static int sb_pres_body(sb_req_t *req, int required) {
    if (!req->body || !req->body_len) {
        if (!required) return 0;
        sb_req_error(req, 400, "invalid_json", "the body must be a JSON object");
        return -1;
    }
    if (sb_api_body_json(req) != 0) return -1;
    if (cJSON_IsObject(req->doc)) return 0;
    sb_req_error(req, 400, "invalid_json", "the body must be a JSON object");
    return -1;
}

/* A string member of the body that must be present and valid(). Returns it, or NULL after
 * answering 400 naming the field. */
static const char *sb_pres_field(sb_req_t *req, const char *name, int (*valid)(const char *),
                                 const char *rule) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req->doc, name);
    if (cJSON_IsString(v) && valid(v->valuestring)) return v->valuestring;
    sb_req_error(req, 400, "bad_request", "%s %s", name, rule);
    return NULL;
}

/* The caller as an agent: sub must be a valid agent id, department_id (when present) a
 * valid department id. Returns 0, or -1 after answering 400 naming the claim. */
static int sb_pres_caller_valid(sb_req_t *req) {
    const sb_claims_t *c = &req->claims;
    if (!sb_agent_id_valid(c->sub)) {
        sb_req_error(req, 400, "bad_request",
                     "the token's sub claim must be an agent id (a UUID or 1-128 characters of "
                     "[A-Za-z0-9._-])");
        return -1;
    }
    if (c->department_id && *c->department_id && !sb_presence_dept_valid(c->department_id)) {
        sb_req_error(req, 400, "bad_request",
                     "the token's department_id claim must be 1-128 characters of "
                     "[A-Za-z0-9._:-]");
        return -1;
    }
    return 0;
}

/* The status of a heartbeat body: "online" when absent; NULL after answering 400. */
static const char *sb_pres_status(sb_req_t *req) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req->doc, "status");
    if (!v || cJSON_IsNull(v)) return "online";
    if (cJSON_IsString(v) && sb_presence_status_valid(v->valuestring)) return v->valuestring;
    sb_req_error(req, 400, "bad_request", "status must be online, busy or away");
    return NULL;
}

static const char *sb_pres_agent_param(sb_req_t *req) {
    const char *id = sb_route_param(&req->match, "agent_id");
    if (sb_agent_id_valid(id)) return id;
    sb_req_error(req, 400, "bad_request",
                 "agent_id must be a UUID or 1-128 characters of [A-Za-z0-9._-] starting and "
                 "ending with a letter or digit");
    return NULL;
}

/* ---- builders (re-read the validated request) -------------------------------------------- */

static int sb_build_heartbeat(sb_batch_t *b, sb_req_t *req, sb_script_mode_t mode) {
    const sb_claims_t *c = &req->claims;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(req->doc, "status");
    sb_presence_t p = {.agent_id = c->sub, .name = c->name, .email = c->email,
                       .department_id = c->department_id, .department = c->department,
                       .status = cJSON_IsString(st) ? st->valuestring : "online"};
    return sb_presence_heartbeat_cmd(b, &req->gw->presence, &p, sb_now_ms(), mode);
}

static int sb_build_offline(sb_batch_t *b, sb_req_t *req, sb_script_mode_t mode) {
    return sb_presence_offline_cmd(b, &req->gw->presence, req->claims.sub, sb_now_ms(), mode);
}

static int sb_build_list(sb_batch_t *b, sb_req_t *req, sb_script_mode_t mode) {
    return sb_presence_list_cmd(b, &req->gw->presence,
                                sb_route_param(&req->match, "department_id"), sb_now_ms(), mode);
}

static int sb_build_get(sb_batch_t *b, sb_req_t *req, sb_script_mode_t mode) {
    (void)mode;
    return sb_presence_get_cmd(b, sb_route_param(&req->match, "agent_id"));
}

static int sb_build_assign(sb_batch_t *b, sb_req_t *req, sb_script_mode_t mode) {
    return sb_presence_assign_cmd(b, &req->gw->presence, sb_json_str(req->doc, "department_id"),
                                  sb_now_ms(), mode);
}

static int sb_build_release(sb_batch_t *b, sb_req_t *req, sb_script_mode_t mode) {
    return sb_presence_release_cmd(b, &req->gw->presence, sb_json_str(req->doc, "agent_id"),
                                   mode);
}

/* ---- answers ------------------------------------------------------------------------------ */

/* A record reply (heartbeat, get, assign, release). Returns the record (caller's), or NULL
 * after answering: status/code/why when there is none (nil), 500 for anything unexpected. */
static cJSON *sb_pres_record(sb_req_t *req, const redisReply *reply, const char *what, int status,
                             const char *code, const char *why) {
    cJSON *rec = NULL;
    int rc = sb_presence_record_reply(reply, &rec);
    if (rc == SB_ENOTFOUND) sb_req_error(req, status, code, "%s", why);
    else if (rc != SB_OK) sb_pres_bad_reply(req, what, rc);
    return rec;
}

static void sb_answer_heartbeat(sb_req_t *req, const redisReply *reply) {
    cJSON *rec = sb_pres_record(req, reply, "heartbeat", 500, "internal", "no record stored");
    if (rec) sb_pres_ok(req, "Heartbeat updated successfully", rec);
}

static void sb_answer_offline(sb_req_t *req, const redisReply *reply) {
    int was = 0;
    cJSON *d = NULL;
    if (sb_presence_offline_reply(reply, &was) != SB_OK) {
        sb_pres_bad_reply(req, "offline", SB_EPROTO);
        return;
    }
    if ((d = cJSON_CreateObject())) {
        cJSON_AddStringToObject(d, "agent_id", req->claims.sub);
        cJSON_AddStringToObject(d, "status", "offline");
        cJSON_AddBoolToObject(d, "was_online", was);
    }
    sb_info("gateway", "agent %s marked offline%s", req->claims.sub, was ? "" : " (was not online)");
    sb_pres_ok(req, "Agent marked offline", d);
}

static void sb_answer_list(sb_req_t *req, const redisReply *reply) {
    const char *dept = sb_route_param(&req->match, "department_id");
    cJSON *agents = NULL, *d = NULL;
    int rc = sb_presence_list_reply(reply, &agents);
    if (rc != SB_OK) {
        sb_pres_bad_reply(req, "list", rc);
        return;
    }
    if ((d = cJSON_CreateObject())) {
        if (dept) cJSON_AddStringToObject(d, "department_id", dept);
        cJSON_AddNumberToObject(d, "count", cJSON_GetArraySize(agents));
        cJSON_AddItemToObject(d, "agents", agents);
    } else {
        cJSON_Delete(agents);
    }
    sb_pres_ok(req, dept ? "Department agents retrieved" : "Online agents retrieved", d);
}

static void sb_answer_stats(sb_req_t *req, const redisReply *reply) {
    cJSON *stats = NULL;
    int rc = sb_presence_stats_reply(reply, &stats);
    if (rc != SB_OK) {
        sb_pres_bad_reply(req, "stats", rc);
        return;
    }
    sb_pres_ok(req, "Department statistics retrieved", stats);
}

/* "agent {id} is offline" into buf. */
static const char *sb_pres_offline_why(char *buf, size_t len, const char *id) {
    snprintf(buf, len, "agent %s is offline", id ? id : "");
    return buf;
}

static void sb_answer_get(sb_req_t *req, const redisReply *reply) {
    char why[SB_AGENT_ID_MAX + 32];
    sb_pres_offline_why(why, sizeof why, sb_route_param(&req->match, "agent_id"));
    cJSON *rec = sb_pres_record(req, reply, "get", 404, "not_found", why);
    if (rec) sb_pres_ok(req, "Agent status retrieved", rec);
}

static void sb_answer_assign(sb_req_t *req, const redisReply *reply) {
    char why[SB_PRESENCE_DEPT_MAX + 64];
    const char *dept = sb_json_str(req->doc, "department_id");
    snprintf(why, sizeof why, "no online agent of department %s has free capacity", dept);
    cJSON *rec = sb_pres_record(req, reply, "assign", 409, "no_agent_available", why);
    if (!rec) return;
    sb_info("gateway", "chat assigned: department=%s agent=%s", dept, sb_json_str(rec, "agent_id"));
    sb_pres_ok(req, "Agent assigned", rec);
}

static void sb_answer_release(sb_req_t *req, const redisReply *reply) {
    char why[SB_AGENT_ID_MAX + 32];
    sb_pres_offline_why(why, sizeof why, sb_json_str(req->doc, "agent_id"));
    cJSON *rec = sb_pres_record(req, reply, "release", 404, "not_found", why);
    if (rec) sb_pres_ok(req, "Chat released", rec);
}

/* ---- the ops ------------------------------------------------------------------------------ */

static void sb_heartbeat_cb(redisReply *r, void *req);
static void sb_offline_cb(redisReply *r, void *req);
static void sb_list_cb(redisReply *r, void *req);
static void sb_stats_cb(redisReply *r, void *req);
static void sb_get_cb(redisReply *r, void *req);
static void sb_assign_cb(redisReply *r, void *req);
static void sb_release_cb(redisReply *r, void *req);

static const sb_pres_op_t sb_op_heartbeat = {"heartbeat", sb_build_heartbeat, sb_answer_heartbeat,
                                             sb_heartbeat_cb};
static const sb_pres_op_t sb_op_offline = {"offline", sb_build_offline, sb_answer_offline,
                                           sb_offline_cb};
static const sb_pres_op_t sb_op_list = {"list", sb_build_list, sb_answer_list, sb_list_cb};
static const sb_pres_op_t sb_op_stats = {"stats", sb_build_list, sb_answer_stats, sb_stats_cb};
static const sb_pres_op_t sb_op_get = {"get", sb_build_get, sb_answer_get, sb_get_cb};
static const sb_pres_op_t sb_op_assign = {"assign", sb_build_assign, sb_answer_assign,
                                          sb_assign_cb};
static const sb_pres_op_t sb_op_release = {"release", sb_build_release, sb_answer_release,
                                           sb_release_cb};

static void sb_heartbeat_cb(redisReply *r, void *req) { sb_pres_reply(r, req, &sb_op_heartbeat); }
static void sb_offline_cb(redisReply *r, void *req) { sb_pres_reply(r, req, &sb_op_offline); }
static void sb_list_cb(redisReply *r, void *req) { sb_pres_reply(r, req, &sb_op_list); }
static void sb_stats_cb(redisReply *r, void *req) { sb_pres_reply(r, req, &sb_op_stats); }
static void sb_get_cb(redisReply *r, void *req) { sb_pres_reply(r, req, &sb_op_get); }
static void sb_assign_cb(redisReply *r, void *req) { sb_pres_reply(r, req, &sb_op_assign); }
static void sb_release_cb(redisReply *r, void *req) { sb_pres_reply(r, req, &sb_op_release); }

/* ---- handlers (route table rows) ----------------------------------------------------------- */

void sb_api_presence_heartbeat(sb_req_t *req) {
    if (sb_pres_caller_valid(req) != 0 || sb_pres_body(req, 0) != 0 || !sb_pres_status(req))
        return;
    sb_pres_send(req, &sb_op_heartbeat);
}

void sb_api_presence_offline(sb_req_t *req) {
    if (sb_pres_caller_valid(req) != 0) return;
    sb_pres_send(req, &sb_op_offline);
}

void sb_api_presence_online(sb_req_t *req) { sb_pres_send(req, &sb_op_list); }

void sb_api_presence_department(sb_req_t *req) {
    if (!sb_presence_dept_valid(sb_route_param(&req->match, "department_id"))) {
        sb_req_error(req, 400, "bad_request",
                     "department_id must be 1-128 characters of [A-Za-z0-9._:-]");
        return;
    }
    sb_pres_send(req, &sb_op_list);
}

void sb_api_presence_agent(sb_req_t *req) {
    if (!sb_pres_agent_param(req)) return;
    sb_pres_send(req, &sb_op_get);
}

void sb_api_presence_stats(sb_req_t *req) { sb_pres_send(req, &sb_op_stats); }

void sb_api_presence_assign(sb_req_t *req) {
    if (sb_pres_body(req, 1) != 0 ||
        !sb_pres_field(req, "department_id", sb_presence_dept_valid,
                       "must be a string of 1-128 characters of [A-Za-z0-9._:-]"))
        return;
    sb_pres_send(req, &sb_op_assign);
}

void sb_api_presence_release(sb_req_t *req) {
    if (sb_pres_body(req, 1) != 0 ||
        !sb_pres_field(req, "agent_id", sb_agent_id_valid,
                       "must be a UUID or 1-128 characters of [A-Za-z0-9._-]"))
        return;
    sb_pres_send(req, &sb_op_release);
}
