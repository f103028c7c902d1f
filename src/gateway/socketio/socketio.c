/* Socket.IO on libwebsockets: life cycle, the heartbeat timer, auth, the polling transport,
 * emitting and counters (see socketio.h for the design; the WebSocket transport is in
 * socketio_ws.c, what both share in socketio_internal.h).
 *
 * The core's deadlines (pings, timeouts) and the WebSocket kill list's resets fire on one
 * timer armed for the earliest of them. Banners: life cycle · auth and connect · polling
 * (HTTP) · emitting and metrics. Time given to the core is the monotonic clock in ms. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/http.h"
#include "gateway/socketio/socketio_internal.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/job.h"
#include "gateway/jwt_cache.h"
#include "switchboard/log.h"

/* The core's deadlines (pings, timeouts) fire on one timer armed for the earliest; ticks are
 * at least this many ms apart, so that dense deadlines (many sessions) share one pass. */
#define SB_SOCKETIO_TICK_MIN_MS 4
#define SB_SOCKETIO_CORS_MAX 1024

/* Metrics label of every /socket.io/ HTTP request (the handler is never called by routes.c). */
static const sb_api_route_t sb_r_socketio = {"/socket.io/", NULL, 0};

/* ================================================================ life cycle */

static void sb_socketio_tick_cb(uv_timer_t *t);

/* Arms the tick timer for the earlier of the core's deadline at (INT64_MAX: none) and the
 * kill list's; with neither, stops it. */
void sb__socketio_arm(sb_socketio_t *io, int64_t at, int64_t now) {
    if (!io->tick_running) return;
    int64_t kill_at = sb__socketio_kill_next(io);
    if (kill_at < at) at = kill_at;
    io->armed_at = at;
    if (at == INT64_MAX) {
        uv_timer_stop(&io->tick);
        return;
    }
    int64_t delay = at > now ? at - now : 0;
    if (delay < SB_SOCKETIO_TICK_MIN_MS) delay = SB_SOCKETIO_TICK_MIN_MS;
    uv_update_time(io->tick.loop); /* the loop's cached time may be a whole turn old */
    uv_timer_start(&io->tick, sb_socketio_tick_cb, (uint64_t)delay, 0);
}

/* The core has a deadline earlier than the armed one (a new session, a probe). */
static void sb_socketio_schedule(void *ud, int64_t at) {
    sb_socketio_t *io = ud;
    sb__socketio_arm(io, at, sb_mono_ms());
}

static void sb_socketio_tick_cb(uv_timer_t *t) {
    sb_socketio_t *io = t->data;
    int64_t now = sb_mono_ms();
    int64_t next = sb_eio_tick(io->eio, now);
    if (io->kill_head) sb__socketio_kill_due(io, now);
    sb__socketio_arm(io, next, now);
}

static int sb_socketio_auth(void *ud, const char *token, sb_sio_identity_t *who, char *err,
                            size_t errlen);
static void sb_socketio_on_connect(void *ud, sb_eio_id_t id, const char *nsp,
                                   const sb_sio_identity_t *who, const cJSON *auth);
static void sb_socketio_on_disconnect(void *ud, sb_eio_id_t id, const char *reason);

/* The status subscription is back after a gap: catch the connected users up. */
static void sb_socketio_on_gap(void *ud, int64_t since_ms) {
    sb_socketio_t *io = ud;
    sb_catchup_start(io->catchup, since_ms);
}

/* A status message whose publisher did not record it: move the record forward. */
static void sb_socketio_on_foreign(void *ud, const char *type, const sb_status_t *st) {
    sb_socketio_t *io = ud;
    int rc = sb_interop_advance(io->interop, type, st);
    if (rc != SB_OK)
        sb_debug("gateway", "job %s: record not moved to %s (%d)", st->job_id, st->status, rc);
}

/* A live status went to room user:{user_id}: pending replays leave that job out. */
static void sb_socketio_on_status(void *ud, const char *user_id, const char *job_id) {
    sb_socketio_t *io = ud;
    sb_replays_live(io->replays, user_id, job_id);
}

/* Fills io (zeroed by the caller) without its timers: the Engine.IO server (configured by
 * o), Socket.IO over it or o->app, the per-address connect limit. Returns 0, or -1 with
 * nothing left behind (io is the caller's to free). */
static int sb_socketio_init(sb_socketio_t *io, sb_gateway_t *gw, const sb_socketio_opts_t *o) {
    io->gw = gw;
    snprintf(io->path, sizeof io->path, "%s", o->path);
    io->burst = o->burst;
    sb_eio_config_t cfg = o->eio;
    cfg.headroom = LWS_PRE;
    sb_eio_io_cb_t wake = {sb__socketio_wake, io, sb_socketio_schedule};
    io->eio = sb_eio_create(&cfg, &wake);
    if (io->eio && o->sio) io->sio = sb_sio_create(io->eio, o->sio, o->sio_cfg);
    else if (io->eio && o->app) sb_eio_set_app(io->eio, o->app);
    io->connects_ip = sb_ratemap_create(gw->cfg->sio_connect_rate_ip, 60 * 1000, 0);
    if (!io->eio || (o->sio && !io->sio) || !io->connects_ip) {
        sb_ratemap_free(io->connects_ip);
        sb_sio_free(io->sio);
        sb_eio_free(io->eio);
        return -1;
    }
    return 0;
}

/* Starts the heartbeat timer and the flush handle on the gateway's loop. */
static void sb_socketio_start(sb_socketio_t *io) {
    uv_timer_init(io->gw->loop, &io->tick);
    io->tick.data = io;
    io->tick_running = 1;
    sb__socketio_arm(io, sb_eio_tick(io->eio, sb_mono_ms()), sb_mono_ms());
    uv_prepare_init(io->gw->loop, &io->flush);
    io->flush.data = io;
    uv_prepare_start(&io->flush, sb__socketio_flush_cb);
    uv_unref((uv_handle_t *)&io->flush); /* keeps nothing alive */
}

sb_socketio_t *sb_socketio_create(sb_gateway_t *gw) {
    sb_socketio_opts_t o = {.path = "/socket.io/"};
    sb_eio_config_default(&o.eio);
    if (gw->cfg->sio_ping_interval_ms > 0) o.eio.ping_interval_ms = gw->cfg->sio_ping_interval_ms;
    if (gw->cfg->sio_ping_timeout_ms > 0) o.eio.ping_timeout_ms = gw->cfg->sio_ping_timeout_ms;
    if (gw->cfg->sio_max_payload > 0) o.eio.max_payload = (size_t)gw->cfg->sio_max_payload;
    o.eio.allow_eio3 = gw->cfg->sio_allow_eio3;
    sb_sio_config_t sio_cfg = {.connect_timeout_ms = gw->cfg->sio_connect_timeout_ms};
    sb_socketio_t *io = calloc(1, sizeof *io);
    sb_sio_callbacks_t cb = {.auth = sb_socketio_auth, .on_connect = sb_socketio_on_connect,
                             .on_disconnect = sb_socketio_on_disconnect, .ud = io};
    o.sio = &cb;
    o.sio_cfg = &sio_cfg;
    if (!io || sb_socketio_init(io, gw, &o) != 0) {
        free(io);
        return NULL;
    }
    io->sub = sb_subscriber_create(gw->loop, &gw->cfg->redis, gw->cfg->job_types, io->sio);
    io->replays =
        io->sub ? sb_replays_create(gw->loop, gw->redis, io->sio, gw->cfg->job_types) : NULL;
    io->catchup = io->replays ? sb_catchup_create(gw->loop, io->replays, io->sio) : NULL;
    io->interop = sb_interop_create(gw->redis);
    io->connects_user = sb_ratemap_create(gw->cfg->sio_connect_rate, 60 * 1000, 0);
    if (!io->catchup || !io->connects_user || !io->interop) {
        sb_interop_free(io->interop);
        sb_ratemap_free(io->connects_user);
        sb_catchup_close(io->catchup);
        sb_replays_free(io->replays);
        sb_subscriber_close(io->sub);
        sb_sio_free(io->sio);
        sb_eio_free(io->eio);
        sb_ratemap_free(io->connects_ip);
        free(io);
        return NULL;
    }
    sb_subscriber_on_gap(io->sub, sb_socketio_on_gap, io);
    sb_subscriber_on_status(io->sub, sb_socketio_on_status, io);
    sb_subscriber_on_foreign(io->sub, sb_socketio_on_foreign, io);
    sb_socketio_start(io);
    return io;
}

sb_socketio_t *sb_socketio_create_with(sb_gateway_t *gw, const sb_socketio_opts_t *o) {
    if (!o || !o->path || strlen(o->path) >= sizeof ((sb_socketio_t *)0)->path ||
        (!o->sio && !o->app))
        return NULL;
    sb_socketio_t *io = calloc(1, sizeof *io);
    if (!io || sb_socketio_init(io, gw, o) != 0) {
        free(io);
        return NULL;
    }
    sb_socketio_t **link = &gw->sio;
    while (*link) link = &(*link)->next;
    *link = io;
    sb_socketio_start(io);
    return io;
}

sb_eio_server_t *sb_socketio_eio(sb_socketio_t *io) { return io->eio; }
sb_sio_t *sb_socketio_sio(sb_socketio_t *io) { return io->sio; }

void sb_socketio_stop(sb_socketio_t *io) {
    if (!io || !io->tick_running) return;
    io->tick_running = 0;
    uv_close((uv_handle_t *)&io->tick, NULL);
    sb__socketio_ws_stop(io);
    uv_close((uv_handle_t *)&io->flush, NULL);
    sb_subscriber_close(io->sub);
    io->sub = NULL;
    sb_catchup_close(io->catchup); /* before the replays it sends through */
    io->catchup = NULL;
    sb_replays_free(io->replays);
    io->replays = NULL;
    sb_interop_free(io->interop);
    io->interop = NULL;
}

struct sb_subscriber *sb_socketio_subscriber(sb_socketio_t *io) { return io ? io->sub : NULL; }

void sb_socketio_free(sb_socketio_t *io) {
    if (!io) return;
    sb_socketio_stop(io);
    sb_sio_free(io->sio);
    sb_eio_free(io->eio);
    sb_ratemap_free(io->connects_user);
    sb_ratemap_free(io->connects_ip);
    free(io);
}

/* ================================================================ auth and connect */

/* The CONNECT auth payload's token, checked as the HTTP API checks a bearer token. */
static int sb_socketio_auth(void *ud, const char *token, sb_sio_identity_t *who, char *err,
                            size_t errlen) {
    sb_socketio_t *io = ud;
    sb_claims_t c;
    int rc = -1, limited = 0;
    if (!token || !*token) {
        snprintf(err, errlen, "missing token in the auth payload ({auth:{token}}; "
                                  "socket.io-client v2: {query:{token}})");
    } else if (sb_jwt_verify_cached(io->gw->tokens, token, io->gw->cfg->jwt_secret,
                                    sb_now_ms() / 1000, &c, err, errlen) == SB_OK) {
        /* the HTTP API's rules: any valid publicKey (SB_SIO_ID_MAX holds the longest); a sub
         * that is not usable as an id is as good as none */
        if (!sb_public_key_valid(c.public_key)) {
            snprintf(err, errlen, "the token carries no valid publicKey claim");
        } else if (!sb_ratemap_take(io->connects_user, c.public_key, 1, sb_mono_ms())) {
            snprintf(err, errlen, SB_SOCKETIO_LIMITED);
            io->connect_limited++;
            limited = 1;
        } else {
            snprintf(who->public_key, sizeof who->public_key, "%s", c.public_key);
            snprintf(who->user_id, sizeof who->user_id, "%s",
                     sb_public_key_valid(c.sub) ? c.sub : "");
            snprintf(who->role, sizeof who->role, "%s", sb_role_name(c.role));
            rc = 0;
        }
        sb_claims_close(&c);
    }
    if (rc && limited) { /* a storm of them: not one log line each */
        sb_debug("gateway", "socket.io connect of user %s refused: %s", who->public_key, err);
    } else if (rc) {
        io->auth_refused++;
        sb_info("gateway", "socket.io connect refused: %s", err);
    }
    return rc;
}

static void sb_socketio_on_connect(void *ud, sb_eio_id_t id, const char *nsp,
                                   const sb_sio_identity_t *who, const cJSON *auth) {
    (void)nsp; /* only "/" is served; the token was checked by the auth callback */
    sb_socketio_t *io = ud;
    sb_debug("gateway", "socket.io connect: user=%s role=%s", who->public_key, who->role);
    int rc = SB_OK;
    if (strcmp(who->role, "admin") == 0 &&
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(auth, "console")))
        rc = sb_sio_join(io->sio, id, SB_SOCKETIO_ROOM_CONSOLE);
    if (rc != SB_OK)
        sb_warn("gateway", "an admin socket of %s gets no console feed (%d)", who->public_key, rc);
    rc = io->replays ? sb_replays_socket(io->replays, id, sb_now_ms()) : SB_OK;
    if (rc != SB_OK)
        sb_warn("gateway", "no replay for a socket of user %s (%d)", who->public_key, rc);
}

/* The socket left "/": its pending replay goes; a slow consumer is worth a warning. */
static void sb_socketio_on_disconnect(void *ud, sb_eio_id_t id, const char *reason) {
    sb_socketio_t *io = ud;
    if (io->replays) sb_replays_forget(io->replays, id);
    if (strcmp(reason, "slow consumer") != 0) return;
    const sb_sio_identity_t *who = sb_sio_identity(io->sio, id);
    const char *sid = sb_eio_sid(io->eio, id);
    sb_warn("gateway",
            "socket.io session %s (user %s) dropped: slow consumer (it stopped reading; its "
            "queue passed %zu bytes or %u packets)",
            sid ? sid : "?", who ? who->public_key : "?", sb_eio_config(io->eio)->max_queue_bytes,
            (unsigned)sb_eio_config(io->eio)->max_queue_packets);
}

/* ================================================================ polling (HTTP) */

int sb__socketio_serves(const sb_socketio_t *io, const char *path) {
    size_t n = strlen(io->path);
    return !strcmp(path, io->path) ||
           (n > 1 && strlen(path) == n - 1 && !strncmp(path, io->path, n - 1));
}

sb_socketio_t *sb_socketio_at(struct sb_gateway *gw, const char *path) {
    sb_socketio_t *io = gw->sio;
    while (io && !sb__socketio_serves(io, path)) io = io->next;
    return io;
}

/* The endpoint of an HTTP request under one of the gateway's Engine.IO paths. */
static sb_socketio_t *sb_socketio_of_req(const sb_req_t *req) {
    return sb_socketio_at(req->gw, req->path);
}

/* Copies header h (custom name when h < 0) into a malloc'd string, or NULL. */
static char *sb_socketio_hdr(struct lws *wsi, int h, const char *custom) {
    char buf[512];
    int n = custom ? lws_hdr_custom_copy(wsi, buf, sizeof buf, custom, (int)strlen(custom))
                   : lws_hdr_copy(wsi, buf, sizeof buf, (enum lws_token_indexes)h);
    return n > 0 ? strdup(buf) : NULL;
}

static void sb_socketio_gone(sb_req_t *req);

/* A POST's headers are in: the core learns of it, so that a second POST of the session while
 * this one's body arrives is refused (sb_eio_post_begin). The request forgets it when it runs
 * (sb_socketio_post_end) or goes away before (gone; sb_http_refuse calls it too). */
static void sb_socketio_post_begin(sb_socketio_t *io, sb_req_t *req) {
    char sid[64];
    sb_eio_req_t r = {.method = SB_EIO_POST,
                      .sid = sb__socketio_arg(req->query, "sid", sid, sizeof sid)};
    sb_eio_id_t id = sb_eio_post_begin(io->eio, &r, req->wsi, sb_mono_ms());
    if (!id) return;
    req->hold_id = id;
    req->gone = sb_socketio_gone;
}

/* The POST's body is in (or it is answered without it): no longer an active POST. */
static void sb_socketio_post_end(sb_req_t *req) {
    if (!req->gone) return;
    req->gone = NULL;
    sb_socketio_gone(req);
    req->hold_id = 0;
}

void sb_socketio_request_headers(sb_req_t *req, struct lws *wsi) {
    sb_socketio_t *io = sb_socketio_of_req(req);
    if (io) req->body_max = sb_eio_max_payload(io->eio);
    if (io && req->method == SB_HTTP_POST) sb_socketio_post_begin(io, req);
    req->origin = sb_socketio_hdr(wsi, WSI_TOKEN_ORIGIN, NULL);
    req->acr_headers = sb_socketio_hdr(wsi, -1, "access-control-request-headers:");
}

/* 1 for characters a header value may carry as is (no CR/LF/control bytes). */
static int sb_socketio_header_safe(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return 0;
    return 1;
}

/* CORS headers for a polling response (preflight: also methods and headers). */
static void sb_socketio_cors(const sb_req_t *req, int preflight, char *out, size_t len) {
    int n = 0;
    out[0] = '\0';
    if (req->origin && sb_socketio_header_safe(req->origin))
        n = snprintf(out, len,
                     "access-control-allow-origin: %s\r\nvary: Origin\r\n"
                     "access-control-allow-credentials: true\r\n",
                     req->origin);
    else
        n = snprintf(out, len, "access-control-allow-origin: *\r\n");
    if (n < 0 || (size_t)n >= len || !preflight) return;
    const char *ah = req->acr_headers && sb_socketio_header_safe(req->acr_headers)
                         ? req->acr_headers
                         : "content-type";
    snprintf(out + n, len - (size_t)n,
             "access-control-allow-methods: GET, POST, OPTIONS\r\n"
             "access-control-allow-headers: %s\r\naccess-control-max-age: 86400\r\n",
             ah);
}

/* Sends the core's reply (status != 0) with CORS headers and releases its body. */
static void sb_socketio_answer(sb_req_t *req, sb_eio_reply_t *r) {
    char cors[SB_SOCKETIO_CORS_MAX];
    sb_socketio_cors(req, 0, cors, sizeof cors);
    sb_req_send(req, r->status, r->content_type ? r->content_type : "text/plain; charset=UTF-8",
                r->body ? r->body->data : "", r->body ? r->body->len : 0, cors);
    sb_eio_buf_unref(r->body);
    r->body = NULL;
}

/* Writeable on a held GET (after the core's wake): answer if the core has something. */
static void sb_socketio_pull(sb_req_t *req) {
    sb_socketio_t *io = sb_socketio_of_req(req);
    sb_eio_reply_t r;
    if (!io || !req->wsi) return;
    if (sb_eio_poll_pull(io->eio, req->hold_id, req->wsi, &r) == 1) sb_socketio_answer(req, &r);
}

/* The connection of a held GET went away: the core closes the session (as the reference). */
static void sb_socketio_gone(sb_req_t *req) {
    sb_socketio_t *io = sb_socketio_of_req(req);
    if (io && req->wsi) sb_eio_detach(io->eio, req->hold_id, req->wsi);
}

const char *sb__socketio_arg(const char *query, const char *name, char *buf,
                                   size_t len) {
    return sb_query_get(query, name, buf, len) ? buf : NULL;
}

void sb__socketio_connect_v2(sb_socketio_t *io, sb_eio_id_t id, const char *query) {
    char token[SB_HTTP_QUERY_MAX];
    if (sb_eio_protocol(io->eio, id) == 3)
        sb_sio_connect_v2(io->sio, id, sb__socketio_arg(query, "token", token, sizeof token));
}

/* An Engine.IO error answer {"code","message"} built by the core. */
static void sb_socketio_error(sb_req_t *req, int code, int status) {
    sb_eio_reply_t r;
    sb_eio_error_reply(sb_socketio_of_req(req)->eio, code, status, &r);
    r.status = status;
    sb_socketio_answer(req, &r);
}

/* 1 when the client address of wsi may open one more Engine.IO session now (taken). */
int sb__socketio_ip_allowed(sb_socketio_t *io, struct lws *wsi) {
    char ip[SB_CLIENT_IP_MAX]; /* behind TRUSTED_PROXIES: from X-Forwarded-For (client_ip.h) */
    if (!wsi || !*sb_gw_client_ip(io->gw, wsi, ip, sizeof ip)) return 1;
    if (sb_ratemap_take(io->connects_ip, ip, 1, sb_mono_ms())) return 1;
    io->connect_limited++;
    sb_debug("gateway", "engine.io handshake from %s refused: %s", ip, SB_SOCKETIO_LIMITED);
    return 0;
}

/* 429 with the Engine.IO error shape (code 3, "Bad request" in the reference) and a message
 * saying why, plus Retry-After: the time one more session takes to be allowed. */
static void sb_socketio_refuse_limited(sb_req_t *req) {
    static const char body[] = "{\"code\":3,\"message\":\"" SB_SOCKETIO_LIMITED "\"}";
    char hdrs[SB_SOCKETIO_CORS_MAX + 64];
    int rate = req->gw->cfg->sio_connect_rate_ip, n;
    sb_socketio_cors(req, 0, hdrs, SB_SOCKETIO_CORS_MAX);
    n = (int)strlen(hdrs);
    snprintf(hdrs + n, sizeof hdrs - (size_t)n, "retry-after: %d\r\n",
             rate > 0 && rate < 60 ? (60 + rate - 1) / rate : 1);
    sb_req_send(req, 429, "application/json", body, sizeof body - 1, hdrs);
}

void sb_socketio_request(sb_req_t *req) {
    sb_socketio_t *io = sb_socketio_of_req(req);
    req->route = &sb_r_socketio;
    sb_socketio_post_end(req);
    if (req->method == SB_HTTP_OPTIONS) {
        char cors[SB_SOCKETIO_CORS_MAX];
        sb_socketio_cors(req, 1, cors, sizeof cors);
        sb_req_send(req, 204, "text/plain", "", 0, cors);
        return;
    }
    if (!io) {
        sb_req_error(req, 503, "unavailable", "Socket.IO is not running");
        return;
    }
    if (req->gw->stopping) {
        sb_socketio_error(req, SB_EIO_ERR_BAD, 503);
        return;
    }
    if (req->body_too_large) {
        sb_socketio_error(req, SB_EIO_ERR_BAD, 413);
        return;
    }
    char eio[8], transport[16], sid[64];
    sb_eio_req_t r = {
        .method = req->method == SB_HTTP_GET    ? SB_EIO_GET
                  : req->method == SB_HTTP_POST ? SB_EIO_POST
                                                : SB_EIO_OTHER,
        .eio = sb__socketio_arg(req->query, "EIO", eio, sizeof eio),
        .transport = sb__socketio_arg(req->query, "transport", transport, sizeof transport),
        .sid = sb__socketio_arg(req->query, "sid", sid, sizeof sid),
        .body = req->body,
        .body_len = req->body_len,
    };
    if (!r.sid && r.method == SB_EIO_GET && !sb__socketio_ip_allowed(io, req->wsi)) {
        sb_socketio_refuse_limited(req);
        return;
    }
    sb_eio_reply_t out;
    int status = sb_eio_http(io->eio, &r, req->wsi, sb_mono_ms(), &out);
    if (status == 200 && !r.sid) {
        io->polling_opened++;
        sb__socketio_connect_v2(io, out.id, req->query); /* its answer comes on the next GET */
    }
    if (status != SB_EIO_HOLD) {
        sb_socketio_answer(req, &out);
        return;
    }
    req->hold_id = out.id;
    req->pull = sb_socketio_pull;
    req->gone = sb_socketio_gone;
}

/* ================================================================ emitting and metrics */

int sb_socketio_emit_room(sb_socketio_t *io, const char *room, const char *event,
                          const char *json, size_t len) {
    return sb_sio_emit_room_json(io->sio, room, event, json, len);
}

int sb_socketio_emit_admins(sb_socketio_t *io, const char *event, const char *json,
                            size_t len) {
    return sb_socketio_emit_room(io, "admins", event, json, len);
}

int sb_socketio_emit_console(sb_socketio_t *io, const char *event, const char *json,
                             size_t len) {
    return sb_socketio_emit_room(io, SB_SOCKETIO_ROOM_CONSOLE, event, json, len);
}

/* The Socket.IO families of /metrics: one row each, read from a snapshot of the counters. */
typedef struct {
    double connections, sessions, polling_opened, ws_opened, auth_refused;
    double received, forwarded, dropped, deliveries, subscriber_up, catchup_users;
    double connect_limited, replay_limited;
} sb_socketio_numbers_t;

static const struct {
    const char *name, *type, *help;
    size_t offset; /* into sb_socketio_numbers_t */
    int needs_sub; /* only when the subscriber exists */
} sb_socketio_families[] = {
#define SB_N(f) offsetof(sb_socketio_numbers_t, f)
    {"gateway_socketio_connections", "gauge",
     "Open Socket.IO connections (sockets connected to the main namespace).", SB_N(connections), 0},
    {"gateway_engineio_sessions", "gauge", "Open Engine.IO sessions (connected or not yet).",
     SB_N(sessions), 0},
    {"gateway_engineio_opened_total", "counter", "Engine.IO sessions opened by a polling handshake.",
     SB_N(polling_opened), 0},
    {"gateway_websocket_opened_total", "counter",
     "WebSocket connections accepted (new sessions and upgrades).", SB_N(ws_opened), 0},
    {"gateway_socketio_auth_refused_total", "counter",
     "Socket.IO CONNECTs refused for a bad or missing token.", SB_N(auth_refused), 0},
    {"gateway_socketio_connect_limited_total", "counter",
     "Socket.IO CONNECTs and Engine.IO handshakes refused by the connect rate limits.",
     SB_N(connect_limited), 0},
    {"gateway_socketio_replay_limited_total", "counter",
     "Replays on connect not run: the user had spent its replay budget.", SB_N(replay_limited), 0},
    {"gateway_status_messages_received_total", "counter",
     "Messages read from the status and event channels.", SB_N(received), 1},
    {"gateway_status_messages_forwarded_total", "counter",
     "Valid status / event messages emitted to their Socket.IO room.", SB_N(forwarded), 1},
    {"gateway_status_messages_dropped_total", "counter",
     "Invalid status / event messages dropped (bad JSON or missing field).", SB_N(dropped), 1},
    {"gateway_socketio_deliveries_total", "counter",
     "Packets queued to sockets by forwarded messages.", SB_N(deliveries), 1},
    {"gateway_subscriber_connected", "gauge", "1 while the SUBSCRIBE connection to Redis is up.",
     SB_N(subscriber_up), 1},
    {"gateway_catchup_users_total", "counter",
     "Users sent a catch-up replay after a gap in the status subscription.", SB_N(catchup_users), 1},
#undef SB_N
};

void sb_socketio_render(const sb_socketio_t *io, sb_prom_t *p) {
    if (!io) return;
    const sb_subscriber_stats_t *st = io->sub ? sb_subscriber_stats(io->sub) : NULL;
    sb_socketio_numbers_t n = {
        .connections = sb_sio_count(io->sio), .sessions = sb_eio_count(io->eio),
        .polling_opened = (double)io->polling_opened, .ws_opened = (double)io->ws_opened,
        .auth_refused = (double)io->auth_refused,
        .connect_limited = (double)io->connect_limited,
        .replay_limited = (double)sb_replays_limited(io->replays)};
    if (st) {
        n.received = (double)st->received;
        n.forwarded = (double)st->forwarded;
        n.dropped = (double)st->dropped;
        n.deliveries = (double)st->deliveries;
        n.subscriber_up = sb_subscriber_up(io->sub);
        n.catchup_users = (double)sb_catchup_users(io->catchup);
    }
    for (size_t i = 0; i < sizeof sb_socketio_families / sizeof sb_socketio_families[0]; i++) {
        if (sb_socketio_families[i].needs_sub && !st) continue;
        sb_prom_single(p, sb_socketio_families[i].name, sb_socketio_families[i].type,
                       sb_socketio_families[i].help,
                       *(const double *)((const char *)&n + sb_socketio_families[i].offset));
    }
}