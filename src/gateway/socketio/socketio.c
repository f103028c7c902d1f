/* Socket.IO on libwebsockets: polling requests, WebSocket connections, auth, heartbeat timer,
 * counters (see socketio.h for the design).
 *
 * Banners: life cycle · auth and connect · polling (HTTP) · WebSocket · emitting and metrics.
 * Time given to the core is the monotonic clock in ms. */
#include <stddef.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/catchup.h"
#include "gateway/socketio/eio.h"
#include "gateway/gateway.h"
#include "gateway/http.h"
#include "gateway/interop.h"
#include "gateway/ratemap.h"
#include "gateway/replay.h"
#include "gateway/socketio/sio.h"
#include "gateway/socketio/socketio.h"
#include "gateway/subscriber.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/job.h"
#include "gateway/jwt_cache.h"
#include "switchboard/log.h"

/* The core's deadlines (pings, timeouts) fire on one timer armed for the earliest; ticks are
 * at least this many ms apart, so that dense deadlines (many sessions) share one pass. */
#define SB_SOCKETIO_TICK_MIN_MS 4
#define SB_SOCKETIO_CORS_MAX 1024
#define SB_SOCKETIO_BURST 64             /* packets framed into one write at most */
#define SB_SOCKETIO_BURST_BYTES 65536    /* ... and about this many bytes */
/* A WebSocket whose session closed while output is still pending (lws's unsent tail, or a full
 * kernel buffer) gets this long to take it; a client that stopped reading never does, so the
 * connection is then reset (sb_socketio_ws_kill) rather than left waiting for a writeable
 * callback. */
#define SB_SOCKETIO_CLOSE_WAIT_S 3

struct sb_socketio {
    sb_gateway_t *gw;
    sb_eio_server_t *eio;
    sb_sio_t *sio;
    sb_subscriber_t *sub;
    sb_catchup_t *catchup; /* replays to connected users after a subscription gap */
    sb_replays_t *replays; /* replays to sockets that just connected; the catch-up reads */
    sb_interop_t *interop; /* records moved forward by seed-style agents' status messages */
    uv_timer_t tick;       /* heartbeats, timeouts, frees of closed sessions */
    int tick_running;
    uv_prepare_t flush;    /* writes the WebSockets woken during the loop turn, before the poll */
    sb_socketio_ws_t *flush_head;
    sb_socketio_ws_t *kill_head;  /* closed with output pending: reset when their wait is over */
    int64_t armed_at;      /* when the tick timer fires (INT64_MAX: stopped) */
    sb_ratemap_t *connects_user; /* Socket.IO CONNECTs per user (SIO_CONNECT_RATE) */
    sb_ratemap_t *connects_ip;   /* Engine.IO sessions per client address (SIO_CONNECT_RATE_IP) */
    unsigned long long ws_opened, polling_opened, auth_refused, connect_limited;
};

/* The message a client over a connect rate limit gets (CONNECT_ERROR, or the handshake's
 * Engine.IO error with status 429). */
#define SB_SOCKETIO_LIMITED "too many connections, retry later"

/* Metrics label of every /socket.io/ HTTP request (the handler is never called by routes.c). */
static const sb_api_route_t sb_r_socketio = {"/socket.io/", NULL, 0};

static sb_socketio_t *sb_socketio_of(struct lws *wsi) {
    sb_gateway_t *gw = lws_context_user(lws_get_context(wsi));
    return gw ? gw->sio : NULL;
}

/* ================================================================ life cycle */

/* The core's wake: conn (a wsi) has something to send. An attached WebSocket joins the flush
 * list, written directly from the prepare handle once this loop turn's emits are queued
 * (several emits, one write); anything else (a held polling GET, a WebSocket being closed by
 * its peer) asks lws for a writeable callback. */
static void sb_socketio_wake(void *ud, void *conn) {
    sb_socketio_t *io = ud;
    struct lws *wsi = conn;
    sb_http_conn_t *c = lws_wsi_user(wsi);
    sb_socketio_ws_t *ws = c ? &c->ws : NULL;
    if (!ws || !ws->attached || ws->peer_closing || !io->tick_running) {
        lws_callback_on_writable(wsi);
        return;
    }
    if (ws->flush_prev) return; /* already listed */
    ws->flush_wsi = wsi;
    ws->flush_next = io->flush_head;
    if (io->flush_head) io->flush_head->flush_prev = &ws->flush_next;
    ws->flush_prev = &io->flush_head;
    io->flush_head = ws;
}

static void sb_socketio_flush_unlink(sb_socketio_ws_t *ws) {
    if (!ws->flush_prev) return;
    *ws->flush_prev = ws->flush_next;
    if (ws->flush_next) ws->flush_next->flush_prev = ws->flush_prev;
    ws->flush_next = NULL;
    ws->flush_prev = NULL;
}

static int sb_socketio_ws_send(sb_socketio_t *io, struct lws *wsi, sb_socketio_ws_t *ws,
                               int direct);

/* Before the loop polls: every WebSocket woken since the last turn is written now, outside
 * lws's writeable callback (see sb_socketio_ws_send), which saves the POLLOUT round trip —
 * on lws's libuv backend ~4 epoll_ctl and an empty callback per send. */
static void sb_socketio_flush_cb(uv_prepare_t *h) {
    sb_socketio_t *io = h->data;
    while (io->flush_head) {
        sb_socketio_ws_t *ws = io->flush_head;
        sb_socketio_flush_unlink(ws);
        sb_socketio_ws_send(io, ws->flush_wsi, ws, 1);
    }
}

static void sb_socketio_tick_cb(uv_timer_t *t);

static void sb_socketio_kill_unlink(sb_socketio_ws_t *ws) {
    if (!ws->kill_prev) return;
    *ws->kill_prev = ws->kill_next;
    if (ws->kill_next) ws->kill_next->kill_prev = ws->kill_prev;
    ws->kill_next = NULL;
    ws->kill_prev = NULL;
}

/* The earliest reset deadline of the kill list (INT64_MAX: empty). The list holds only the
 * few connections dropped as slow consumers in the last seconds. */
static int64_t sb_socketio_kill_next(const sb_socketio_t *io) {
    int64_t at = INT64_MAX;
    for (const sb_socketio_ws_t *ws = io->kill_head; ws; ws = ws->kill_next)
        if (ws->kill_at < at) at = ws->kill_at;
    return at;
}

/* Arms the tick timer for the earlier of the core's deadline at (INT64_MAX: none) and the
 * kill list's; with neither, stops it. */
static void sb_socketio_arm(sb_socketio_t *io, int64_t at, int64_t now) {
    if (!io->tick_running) return;
    int64_t kill_at = sb_socketio_kill_next(io);
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
    sb_socketio_arm(io, at, sb_mono_ms());
}

/* Resets the connections of the kill list whose wait is over: SO_LINGER 0 (the kernel drops
 * the unsent bytes and answers RST once lws closes the socket) and shut both ways, which lws
 * sees at once on its poll (a read of 0, a failing write) and closes; CLOSED detaches it. */
static void sb_socketio_kill_due(sb_socketio_t *io, int64_t now) {
    for (sb_socketio_ws_t *ws = io->kill_head, *next; ws; ws = next) {
        next = ws->kill_next;
        if (ws->kill_at > now) continue;
        sb_socketio_kill_unlink(ws);
        int fd = (int)lws_get_socket_fd(ws->kill_wsi);
        struct linger reset = {1, 0};
        if (fd < 0) continue;
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
        (void)shutdown(fd, SHUT_RDWR);
        const char *sid = ws->attached ? sb_eio_sid(io->eio, ws->id) : NULL;
        sb_info("gateway", "socket.io session %s: connection reset, its client read nothing "
                "for %d s", sid ? sid : "(closed)", SB_SOCKETIO_CLOSE_WAIT_S);
    }
}

static void sb_socketio_tick_cb(uv_timer_t *t) {
    sb_socketio_t *io = t->data;
    int64_t now = sb_mono_ms();
    int64_t next = sb_eio_tick(io->eio, now);
    if (io->kill_head) sb_socketio_kill_due(io, now);
    sb_socketio_arm(io, next, now);
}

static int sb_socketio_auth(void *ud, const char *token, sb_sio_identity_t *who, char *err,
                            size_t errlen);
static void sb_socketio_on_connect(void *ud, sb_eio_id_t id, const sb_sio_identity_t *who);
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

sb_socketio_t *sb_socketio_create(sb_gateway_t *gw) {
    sb_socketio_t *io = calloc(1, sizeof *io);
    if (!io) return NULL;
    io->gw = gw;
    sb_eio_config_t cfg;
    sb_eio_config_default(&cfg);
    cfg.headroom = LWS_PRE;
    if (gw->cfg->sio_ping_interval_ms > 0) cfg.ping_interval_ms = gw->cfg->sio_ping_interval_ms;
    if (gw->cfg->sio_ping_timeout_ms > 0) cfg.ping_timeout_ms = gw->cfg->sio_ping_timeout_ms;
    if (gw->cfg->sio_max_payload > 0) cfg.max_payload = (size_t)gw->cfg->sio_max_payload;
    cfg.allow_eio3 = gw->cfg->sio_allow_eio3;
    sb_sio_config_t sio_cfg = {.connect_timeout_ms = gw->cfg->sio_connect_timeout_ms};
    sb_eio_io_cb_t wake = {sb_socketio_wake, io, sb_socketio_schedule};
    sb_sio_callbacks_t cb = {.auth = sb_socketio_auth, .on_connect = sb_socketio_on_connect,
                             .on_disconnect = sb_socketio_on_disconnect, .ud = io};
    io->eio = sb_eio_create(&cfg, &wake);
    io->sio = io->eio ? sb_sio_create(io->eio, &cb, &sio_cfg) : NULL;
    io->sub = io->sio ? sb_subscriber_create(gw->loop, &gw->cfg->redis, gw->cfg->job_types,
                                             io->sio)
                      : NULL;
    io->replays =
        io->sub ? sb_replays_create(gw->loop, gw->redis, io->sio, gw->cfg->job_types) : NULL;
    io->catchup = io->replays ? sb_catchup_create(gw->loop, io->replays, io->sio) : NULL;
    io->interop = sb_interop_create(gw->redis);
    io->connects_user = sb_ratemap_create(gw->cfg->sio_connect_rate, 60 * 1000, 0);
    io->connects_ip = sb_ratemap_create(gw->cfg->sio_connect_rate_ip, 60 * 1000, 0);
    if (!io->catchup || !io->connects_user || !io->connects_ip || !io->interop) {
        sb_interop_free(io->interop);
        sb_ratemap_free(io->connects_user);
        sb_ratemap_free(io->connects_ip);
        sb_catchup_close(io->catchup);
        sb_replays_free(io->replays);
        sb_subscriber_close(io->sub);
        sb_sio_free(io->sio);
        sb_eio_free(io->eio);
        free(io);
        return NULL;
    }
    sb_subscriber_on_gap(io->sub, sb_socketio_on_gap, io);
    sb_subscriber_on_status(io->sub, sb_socketio_on_status, io);
    sb_subscriber_on_foreign(io->sub, sb_socketio_on_foreign, io);
    uv_timer_init(gw->loop, &io->tick);
    io->tick.data = io;
    io->tick_running = 1;
    sb_socketio_arm(io, sb_eio_tick(io->eio, sb_mono_ms()), sb_mono_ms());
    uv_prepare_init(gw->loop, &io->flush);
    io->flush.data = io;
    uv_prepare_start(&io->flush, sb_socketio_flush_cb);
    uv_unref((uv_handle_t *)&io->flush); /* keeps nothing alive */
    return io;
}

void sb_socketio_stop(sb_socketio_t *io) {
    if (!io || !io->tick_running) return;
    io->tick_running = 0;
    uv_close((uv_handle_t *)&io->tick, NULL);
    /* what is still listed goes back to lws's writeable callbacks */
    while (io->flush_head) {
        sb_socketio_ws_t *ws = io->flush_head;
        sb_socketio_flush_unlink(ws);
        lws_callback_on_writable(ws->flush_wsi);
    }
    while (io->kill_head) sb_socketio_kill_unlink(io->kill_head); /* lws closes them all */
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

static void sb_socketio_on_connect(void *ud, sb_eio_id_t id, const sb_sio_identity_t *who) {
    sb_socketio_t *io = ud;
    sb_debug("gateway", "socket.io connect: user=%s role=%s", who->public_key, who->role);
    int rc = io->replays ? sb_replays_socket(io->replays, id, sb_now_ms()) : SB_OK;
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

int sb_socketio_path(const char *path) {
    return !strcmp(path, "/socket.io/") || !strcmp(path, "/socket.io");
}

/* Copies header h (custom name when h < 0) into a malloc'd string, or NULL. */
static char *sb_socketio_hdr(struct lws *wsi, int h, const char *custom) {
    char buf[512];
    int n = custom ? lws_hdr_custom_copy(wsi, buf, sizeof buf, custom, (int)strlen(custom))
                   : lws_hdr_copy(wsi, buf, sizeof buf, (enum lws_token_indexes)h);
    return n > 0 ? strdup(buf) : NULL;
}

void sb_socketio_request_headers(sb_req_t *req, struct lws *wsi) {
    sb_socketio_t *io = req->gw->sio;
    if (io) req->body_max = sb_eio_max_payload(io->eio);
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
    sb_socketio_t *io = req->gw->sio;
    sb_eio_reply_t r;
    if (!io || !req->wsi) return;
    if (sb_eio_poll_pull(io->eio, req->hold_id, req->wsi, &r) == 1) sb_socketio_answer(req, &r);
}

/* The connection of a held GET went away: the core closes the session (as the reference). */
static void sb_socketio_gone(sb_req_t *req) {
    sb_socketio_t *io = req->gw->sio;
    if (io && req->wsi) sb_eio_detach(io->eio, req->hold_id, req->wsi);
}

static const char *sb_socketio_arg(const char *query, const char *name, char *buf,
                                   size_t len) {
    return sb_query_get(query, name, buf, len) ? buf : NULL;
}

/* A new Engine.IO v3 session (socket.io-client v2) is connected to "/" at once, with the token
 * of its handshake's query (sb_sio_connect_v2); a v4 session's query token is never read. */
static void sb_socketio_connect_v2(sb_socketio_t *io, sb_eio_id_t id, const char *query) {
    char token[SB_HTTP_QUERY_MAX];
    if (sb_eio_protocol(io->eio, id) == 3)
        sb_sio_connect_v2(io->sio, id, sb_socketio_arg(query, "token", token, sizeof token));
}

/* An Engine.IO error answer {"code","message"} built by the core. */
static void sb_socketio_error(sb_req_t *req, int code, int status) {
    sb_eio_reply_t r;
    sb_eio_error_reply(req->gw->sio->eio, code, status, &r);
    r.status = status;
    sb_socketio_answer(req, &r);
}

/* 1 when the client address of wsi may open one more Engine.IO session now (taken). */
static int sb_socketio_ip_allowed(sb_socketio_t *io, struct lws *wsi) {
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
    sb_socketio_t *io = req->gw->sio;
    req->route = &sb_r_socketio;
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
        .eio = sb_socketio_arg(req->query, "EIO", eio, sizeof eio),
        .transport = sb_socketio_arg(req->query, "transport", transport, sizeof transport),
        .sid = sb_socketio_arg(req->query, "sid", sid, sizeof sid),
        .body = req->body,
        .body_len = req->body_len,
    };
    if (!r.sid && r.method == SB_EIO_GET && !sb_socketio_ip_allowed(io, req->wsi)) {
        sb_socketio_refuse_limited(req);
        return;
    }
    sb_eio_reply_t out;
    int status = sb_eio_http(io->eio, &r, req->wsi, sb_mono_ms(), &out);
    if (status == 200 && !r.sid) {
        io->polling_opened++;
        sb_socketio_connect_v2(io, out.id, req->query); /* its answer comes on the next GET */
    }
    if (status != SB_EIO_HOLD) {
        sb_socketio_answer(req, &out);
        return;
    }
    req->hold_id = out.id;
    req->pull = sb_socketio_pull;
    req->gone = sb_socketio_gone;
}

/* ================================================================ WebSocket */

int sb_socketio_ws_reason(enum lws_callback_reasons reason) {
    return reason == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION ||
           reason == LWS_CALLBACK_HTTP_CONFIRM_UPGRADE ||
           reason == LWS_CALLBACK_ESTABLISHED || reason == LWS_CALLBACK_RECEIVE ||
           reason == LWS_CALLBACK_SERVER_WRITEABLE || reason == LWS_CALLBACK_CLOSED ||
           reason == LWS_CALLBACK_WS_PEER_INITIATED_CLOSE;
}

/* Reads the upgrade request's path and query into an sb_eio_req_t (strings in bufs). */
typedef struct {
    char query[SB_HTTP_QUERY_MAX];
    char eio[8], transport[16], sid[64];
} sb_socketio_wsq_t;

static int sb_socketio_ws_request(struct lws *wsi, sb_socketio_wsq_t *q, sb_eio_req_t *r) {
    char path[64];
    if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0 || !sb_socketio_path(path))
        return -1;
    if (sb_http_query_join(wsi, q->query, sizeof q->query) != 0) return -1; /* refused */
    *r = (sb_eio_req_t){
        .method = SB_EIO_GET,
        .websocket = 1,
        .eio = sb_socketio_arg(q->query, "EIO", q->eio, sizeof q->eio),
        .transport = sb_socketio_arg(q->query, "transport", q->transport, sizeof q->transport),
        .sid = sb_socketio_arg(q->query, "sid", q->sid, sizeof q->sid),
    };
    return 0;
}

/* Writes a refusal of a WebSocket upgrade (status, JSON body, `connection: close`) straight
 * to the socket; the caller then returns -1 and lws closes the connection. */
static void sb_socketio_ws_refuse(struct lws *wsi, int status, const char *body, size_t len) {
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                     "content-length: %zu\r\ncache-control: no-store\r\n"
                     "connection: close\r\n\r\n",
                     status, status == 429 ? "Too Many Requests"
                             : status == 503 ? "Service Unavailable" : "Bad Request", len);
    unsigned char *buf = n > 0 && (size_t)n < sizeof head ? malloc(LWS_PRE + (size_t)n + len)
                                                          : NULL;
    if (!buf) return;
    memcpy(buf + LWS_PRE, head, (size_t)n);
    memcpy(buf + LWS_PRE + n, body, len);
    (void)lws_write(wsi, buf + LWS_PRE, (size_t)n + len, LWS_WRITE_HTTP);
    free(buf);
}

/* lws's HTTP_CONFIRM_UPGRADE (headers still readable, nothing answered yet): an upgrade the
 * core refuses (bad EIO, unknown or missing transport, unknown sid, polling on an upgrade, a
 * second WebSocket for a session) is answered as the reference's abortUpgrade does, 400 with
 * the Engine.IO error, instead of a bare TCP close; so are a stopping gateway (503) and the
 * per-address connect limit (429). Returns -1 after answering (lws closes), 0 to go on. */
static int sb_socketio_ws_confirm(sb_socketio_t *io, struct lws *wsi) {
    static const char limited[] = "{\"code\":3,\"message\":\"" SB_SOCKETIO_LIMITED "\"}";
    sb_socketio_wsq_t q;
    sb_eio_req_t r;
    sb_eio_reply_t out = {0};
    if (!io || sb_socketio_ws_request(wsi, &q, &r) != 0) return 0; /* the filter refuses */
    if (io->gw->stopping) {
        sb_eio_error_reply(io->eio, SB_EIO_ERR_BAD, 503, &out);
        out.status = 503;
    } else if (!r.sid && !sb_socketio_ip_allowed(io, wsi)) {
        sb_socketio_ws_refuse(wsi, 429, limited, sizeof limited - 1);
        return -1;
    } else if (sb_eio_check(io->eio, &r, &out) == 0) {
        return 0;
    }
    if (out.body) sb_socketio_ws_refuse(wsi, out.status, out.body->data, out.body->len);
    sb_eio_buf_unref(out.body);
    return -1;
}

/* Before the 101: refuse upgrades outside /socket.io/ and ones the core would refuse (those
 * were answered already at HTTP_CONFIRM_UPGRADE; this is the last guard). */
static int sb_socketio_ws_filter(sb_socketio_t *io, struct lws *wsi) {
    sb_socketio_wsq_t q;
    sb_eio_req_t r;
    sb_eio_reply_t out;
    if (!io || io->gw->stopping || sb_socketio_ws_request(wsi, &q, &r) != 0) return -1;
    if (sb_eio_check(io->eio, &r, &out) == 0) return 0;
    sb_eio_buf_unref(out.body);
    return -1;
}

static int sb_socketio_ws_open(sb_socketio_t *io, struct lws *wsi, sb_socketio_ws_t *ws) {
    sb_socketio_wsq_t q;
    sb_eio_req_t r;
    sb_eio_reply_t out;
    if (!io || sb_socketio_ws_request(wsi, &q, &r) != 0) return -1;
    int status = sb_eio_http(io->eio, &r, wsi, sb_mono_ms(), &out);
    sb_eio_buf_unref(out.body);
    if (status != 101) return -1;
    ws->id = out.id;
    ws->attached = 1;
    io->ws_opened++;
    if (!r.sid) sb_socketio_connect_v2(io, out.id, q.query);
    lws_callback_on_writable(wsi);
    return 0;
}

static void sb_socketio_ws_detach(sb_socketio_t *io, struct lws *wsi, sb_socketio_ws_t *ws) {
    sb_socketio_flush_unlink(ws);
    sb_socketio_kill_unlink(ws);
    free(ws->rx);
    ws->rx = NULL;
    ws->rx_len = 0;
    if (!ws->attached) return;
    ws->attached = 0;
    if (io) sb_eio_detach(io->eio, ws->id, wsi);
}

/* A fragment of a message: reassembled up to maxPayload, then handed to the core whole. */
static int sb_socketio_ws_receive(sb_socketio_t *io, struct lws *wsi, sb_socketio_ws_t *ws,
                                  const char *in, size_t len) {
    if (!io || !ws->attached) return -1;
    int final = lws_is_final_fragment(wsi);
    const char *msg = in;
    size_t mlen = len;
    if (ws->rx || !final) {
        size_t max = sb_eio_max_payload(io->eio);
        char *b = ws->rx_len + len <= max ? realloc(ws->rx, ws->rx_len + len + 1) : NULL;
        if (!b) { /* beyond maxPayload (or no memory): close, as the reference does */
            sb_socketio_ws_detach(io, wsi, ws);
            lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
            return -1;
        }
        memcpy(b + ws->rx_len, in, len);
        ws->rx = b;
        ws->rx_len += len;
        if (!final) return 0;
        msg = ws->rx;
        mlen = ws->rx_len;
    }
    int rc = sb_eio_ws_frame(io->eio, ws->id, wsi, msg, mlen, lws_frame_is_binary(wsi),
                             sb_mono_ms());
    free(ws->rx);
    ws->rx = NULL;
    ws->rx_len = 0;
    if (rc == SB_ENOTFOUND) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, NULL, 0);
        return -1;
    }
    if (rc != SB_OK) { /* the core closed it (garbage, too large): pull says CLOSE */
        ws->close_code = mlen > sb_eio_max_payload(io->eio) ? LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE
                                                            : LWS_CLOSE_STATUS_PROTOCOL_ERR;
        lws_callback_on_writable(wsi);
    }
    return 0;
}

/* Writes a WebSocket text frame header for len bytes at out; returns its length (2..10). */
static size_t sb_socketio_frame_header(unsigned char *out, size_t len) {
    out[0] = 0x81; /* FIN, text */
    if (len < 126) {
        out[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

/* Several queued packets framed by us into one buffer, written raw (LWS_WRITE_HTTP is sent
 * as is on a WebSocket): one syscall for a burst instead of one per packet. Takes the
 * references in pkts. Returns lws_write's result. */
static int sb_socketio_ws_write_batch(struct lws *wsi, sb_eio_buf_t **pkts, int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += pkts[i]->len + 10;
    unsigned char *buf = malloc(LWS_PRE + total), *o = buf ? buf + LWS_PRE : NULL;
    for (int i = 0; i < n; i++) {
        if (o) {
            o += sb_socketio_frame_header(o, pkts[i]->len);
            memcpy(o, pkts[i]->data, pkts[i]->len);
            o += pkts[i]->len;
        }
        sb_eio_buf_unref(pkts[i]);
    }
    int rc = buf ? lws_write(wsi, buf + LWS_PRE, (size_t)(o - (buf + LWS_PRE)), LWS_WRITE_HTTP)
                 : -1;
    free(buf);
    return rc;
}

/* Writes a Close frame with code, framed by us and written raw like the bursts (lws 4.1 has
 * no public LWS_WRITE_CLOSE, and sends no Close frame when a writeable callback returns -1: it
 * takes that as a failed write and kills the socket, whatever lws_close_reason said). Clients
 * then see the code instead of 1006. */
static void sb_socketio_ws_close_frame(struct lws *wsi, int code) {
    unsigned char buf[LWS_PRE + 4], *f = buf + LWS_PRE;
    f[0] = 0x88; /* FIN, close */
    f[1] = 2;
    f[2] = (unsigned char)(code >> 8);
    f[3] = (unsigned char)code;
    (void)lws_write(wsi, f, 4, LWS_WRITE_HTTP);
}

/* The session is over but the close waits for a writeable callback (output still pending):
 * bounds that wait, since a client that stopped reading never makes the socket writeable. The
 * connection joins the kill list; the tick resets it when its time is up (sb_socketio_kill_due).
 * Not an lws timeout: lws 4.1 on libuv runs a timeout only when its own timer next wakes (up to
 * ~20 s late), then still waits 5 s more to flush its unsent tail (measured: 16-20 s). */
static void sb_socketio_close_soon(sb_socketio_t *io, struct lws *wsi, sb_socketio_ws_t *ws) {
    if (ws->kill_prev) return; /* the first deadline holds */
    ws->kill_wsi = wsi;
    ws->kill_at = sb_mono_ms() + SB_SOCKETIO_CLOSE_WAIT_S * 1000;
    ws->kill_next = io->kill_head;
    if (io->kill_head) io->kill_head->kill_prev = &ws->kill_next;
    ws->kill_prev = &io->kill_head;
    io->kill_head = ws;
    if (ws->kill_at < io->armed_at) sb_socketio_arm(io, ws->kill_at, sb_mono_ms());
}

/* Sends what the core has queued: one lws_write per call, either one packet as a text frame
 * straight from its shared buffer, or a burst of up to SB_SOCKETIO_BURST packets
 * (SB_SOCKETIO_BURST_BYTES) framed into one buffer. A close is acted on once the queue ahead
 * of it has been written. Another writeable callback is asked for only when something is
 * left (the core wakes the connection when a packet lands in an empty queue).
 *
 * direct = 0: from lws's SERVER_WRITEABLE callback (returns -1 to close the connection).
 * direct = 1: from the flush, outside any callback, on one thread with lws: allowed while lws
 * holds no unsent tail of an earlier write (lws_partial_buffered; with one, it waits for a
 * writeable callback as before); a partial write is kept by lws, which finishes it on POLLOUT
 * before the next writeable callback, so the one-write-per-callback rule still holds. A close
 * or a write error is left to the writeable callback / lws's own close (returns 0); a close
 * waiting that way is bounded by SB_SOCKETIO_CLOSE_WAIT_S (sb_socketio_close_soon). */
static int sb_socketio_ws_send(sb_socketio_t *io, struct lws *wsi, sb_socketio_ws_t *ws,
                               int direct) {
    if (!io || !ws->attached) return direct ? 0 : -1;
    if (direct && (ws->peer_closing || lws_partial_buffered(wsi))) {
        if (!sb_eio_is_open(io->eio, ws->id)) sb_socketio_close_soon(io, wsi, ws);
        lws_callback_on_writable(wsi);
        return 0;
    }
    sb_eio_buf_t *pkts[SB_SOCKETIO_BURST];
    size_t bytes = 0;
    int n = 0, rc = 0;
    while (n < SB_SOCKETIO_BURST && bytes < SB_SOCKETIO_BURST_BYTES &&
           (rc = sb_eio_ws_pull(io->eio, ws->id, wsi, &pkts[n])) == 1)
        bytes += pkts[n++]->len;
    if (n == 0 && rc == SB_EIO_CLOSE) {
        if (direct) {
            sb_socketio_close_soon(io, wsi, ws);
            lws_callback_on_writable(wsi);
            return 0;
        }
        sb_socketio_ws_detach(io, wsi, ws);
        sb_socketio_ws_close_frame(wsi, ws->close_code ? ws->close_code : LWS_CLOSE_STATUS_NORMAL);
        return -1;
    }
    if (n == 0) return 0;
    int w;
    if (n == 1) {
        w = lws_write(wsi, (unsigned char *)pkts[0]->data, pkts[0]->len, LWS_WRITE_TEXT);
        sb_eio_buf_unref(pkts[0]);
    } else {
        w = sb_socketio_ws_write_batch(wsi, pkts, n);
    }
    if (w < 0) {
        if (!direct) return -1;
        lws_set_timeout(wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
        return 0;
    }
    /* more only if the burst stopped at its limits (rc 1) or a close waits behind it; an
     * emptied queue is woken again by the core when its next packet arrives. Asking anyway
     * costs a POLLOUT round (lws on libuv: uv_poll_start = epoll_ctl DEL + ADD, twice) and an
     * empty callback per send. */
    if (rc != 0) lws_callback_on_writable(wsi);
    return 0;
}

int sb_socketio_ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
                            sb_socketio_ws_t *ws, void *in, size_t len) {
    sb_socketio_t *io = sb_socketio_of(wsi);
    if (reason == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION) return sb_socketio_ws_filter(io, wsi);
    if (reason == LWS_CALLBACK_HTTP_CONFIRM_UPGRADE) return sb_socketio_ws_confirm(io, wsi);
    if (!ws)
        return reason == LWS_CALLBACK_CLOSED || reason == LWS_CALLBACK_WSI_DESTROY ||
                       reason == LWS_CALLBACK_WS_PEER_INITIATED_CLOSE
                   ? 0
                   : -1;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED: return sb_socketio_ws_open(io, wsi, ws);
    case LWS_CALLBACK_RECEIVE: return sb_socketio_ws_receive(io, wsi, ws, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE: return sb_socketio_ws_send(io, wsi, ws, 0);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: /* lws answers the close frame; no data after */
        ws->peer_closing = 1;
        sb_socketio_flush_unlink(ws);
        return 0;
    default: /* CLOSED, WSI_DESTROY */
        sb_socketio_ws_detach(io, wsi, ws);
        return 0;
    }
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
