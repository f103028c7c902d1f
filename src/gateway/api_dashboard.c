/* Dashboard routes (SPEC §8): the page's static files, and development tokens.
 *
 * Static answers come from the set loaded at start-up (static.c): 200 with an ETag and
 * `cache-control: no-cache`, 304 when If-None-Match matches, 404 otherwise. The HTML gets a
 * Content-Security-Policy that allows only the gateway's own scripts, styles and
 * connections, so the page cannot be framed and runs no inline or third-party code.
 *
 * /dev/token exists only in development mode (SB_DEV=1, which `switchboard up` sets): GET
 * says so, POST {publicKey, role[, sub, name, email, department_id, department, ttl]} mints a
 * token signed with JWT_SECRET. Without development mode both answer the same 404 as any
 * unknown route, so a production gateway shows no trace of them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/api.h"
#include "gateway/gateway.h"
#include "gateway/static.h"
#include "switchboard/clock.h"
#include "switchboard/job.h"
#include "switchboard/json.h"
#include "switchboard/log.h"

#define SB_DEV_TTL_DEFAULT 86400
#define SB_DEV_TTL_MAX (7 * 86400)
#define SB_DEV_CLAIM_MAX 128 /* longest optional string claim */

/* ---- static files ------------------------------------------------------------------------- */

static const char sb_static_headers[] =
    "x-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\n";
static const char sb_static_html_headers[] =
    "x-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\n"
    "x-frame-options: DENY\r\n"
    "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'\r\n";

void sb_api_static(sb_req_t *req) {
    const sb_static_file_t *f = sb_static_find(req->gw->web, req->path);
    if (!f) {
        if (!strcmp(req->path, "/"))
            sb_req_error(req, 404, "not_found",
                         "the dashboard files were not found; set WEB_DIR to the web/ folder");
        else
            sb_req_error(req, 404, "not_found", "no route for %s %s", req->method_name,
                         req->path);
        return;
    }
    char headers[sizeof sb_static_html_headers + 64];
    snprintf(headers, sizeof headers, "etag: %s\r\n%s", f->etag,
             strncmp(f->content_type, "text/html", 9) ? sb_static_headers
                                                      : sb_static_html_headers);
    req->cache_control = "no-cache";
    if (!strcmp(req->if_none_match, f->etag))
        sb_req_send(req, 304, f->content_type, "", 0, headers);
    else
        sb_req_send(req, 200, f->content_type, f->data, f->len, headers);
}

/* ---- development tokens ------------------------------------------------------------------- */

/* 1 in development mode; else answers the 404 of an unknown route and returns 0. */
static int sb_dev_only(sb_req_t *req) {
    if (req->gw->cfg->dev_mode) return 1;
    sb_req_error(req, 404, "not_found", "no route for %s %s", req->method_name, req->path);
    return 0;
}

void sb_api_dev_info(sb_req_t *req) {
    static const char body[] =
        "{\"success\":true,\"devMode\":true,\"roles\":[\"user\",\"agent\",\"admin\"],"
        "\"ttl\":{\"default\":86400,\"max\":604800}}";
    if (sb_dev_only(req)) sb_req_send(req, 200, "application/json", body, sizeof body - 1, NULL);
}

/* Optional string claim name of doc: NULL when absent; *bad set when present but not a
 * string of 1..SB_DEV_CLAIM_MAX printable characters. */
static const char *sb_dev_claim(const cJSON *doc, const char *name, const char **bad) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, name);
    if (!v) return NULL;
    if (!cJSON_IsString(v) || !sb_public_key_valid(v->valuestring) ||
        strlen(v->valuestring) > SB_DEV_CLAIM_MAX) {
        if (!*bad) *bad = name;
        return NULL;
    }
    return v->valuestring;
}

/* Fills *c (pointers into doc) from the body. Returns NULL, or the 400 sentence. */
static const char *sb_dev_claims(const cJSON *doc, sb_claims_t *c, int64_t now_s) {
    const char *bad = NULL;
    double ttl = SB_DEV_TTL_DEFAULT;
    memset(c, 0, sizeof *c);
    c->role = sb_role_parse(sb_json_str(doc, "role"));
    if (c->role == SB_ROLE_NONE) return "role must be user, agent or admin";
    c->public_key = (char *)sb_json_str(doc, "publicKey");
    if (c->public_key ? !sb_public_key_valid(c->public_key) : c->role != SB_ROLE_AGENT)
        return "publicKey must be 1 to 128 printable characters without spaces";
    c->sub = (char *)sb_dev_claim(doc, "sub", &bad);
    c->name = (char *)sb_dev_claim(doc, "name", &bad);
    c->email = (char *)sb_dev_claim(doc, "email", &bad);
    c->department_id = (char *)sb_dev_claim(doc, "department_id", &bad);
    c->department = (char *)sb_dev_claim(doc, "department", &bad);
    if (bad) return "sub, name, email, department_id and department must be short strings "
                    "without spaces";
    if (cJSON_GetObjectItemCaseSensitive(doc, "ttl") &&
        (sb_json_num(doc, "ttl", &ttl) != 0 || ttl < 60 || ttl > SB_DEV_TTL_MAX))
        return "ttl must be a number of seconds from 60 to 604800";
    if (!c->sub) c->sub = c->public_key;
    c->exp = now_s + (int64_t)ttl;
    return NULL;
}

static cJSON *sb_dev_token_json(const char *token, const sb_claims_t *c) {
    char exp[SB_ISO_LEN];
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddBoolToObject(o, "success", 1);
    cJSON_AddStringToObject(o, "token", token);
    cJSON_AddStringToObject(o, "role", sb_role_name(c->role));
    if (c->public_key) cJSON_AddStringToObject(o, "publicKey", c->public_key);
    if (c->sub) cJSON_AddStringToObject(o, "sub", c->sub);
    cJSON_AddStringToObject(o, "expiresAt", sb_iso8601(c->exp * 1000, exp));
    return o;
}

void sb_api_dev_token(sb_req_t *req) {
    if (!sb_dev_only(req)) return;
    if (sb_api_body_json(req) != 0) return;
    if (!cJSON_IsObject(req->doc)) {
        sb_req_error(req, 400, "invalid_json", "the body must be a JSON object");
        return;
    }
    sb_claims_t c;
    char err[160];
    int64_t now = sb_now_ms() / 1000;
    const char *why = sb_dev_claims(req->doc, &c, now);
    if (why) {
        sb_req_error(req, 400, "bad_request", "%s", why);
        return;
    }
    char *token = sb_jwt_mint(&c, req->gw->cfg->jwt_secret, now, err, sizeof err);
    cJSON *o = token ? sb_dev_token_json(token, &c) : NULL;
    if (o) {
        sb_info("gateway", "dev token minted: role=%s user=%s", sb_role_name(c.role),
                c.public_key ? c.public_key : "-");
        sb_req_json(req, 200, o);
    } else {
        sb_req_error(req, 500, "internal", "could not mint the token: %s",
                     token ? "out of memory" : err);
    }
    cJSON_Delete(o);
    free(token);
}
