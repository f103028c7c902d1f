/* `switchboard gateway`: start-up, the event loop, and shutdown.
 *
 * Builds the libuv loop, the async Redis command connection (which connects and reconnects
 * on its own: the gateway starts and stays up while Redis is down, answering 503), and the
 * libwebsockets context on the same loop (foreign loop + LWS_SERVER_OPTION_LIBUV), plus
 * Socket.IO (socketio.c) and live presence for admins (presence_watch.c). SIGTERM or SIGINT
 * closes Redis (pending requests are answered 503), stops the presence timer and the
 * subscriber, starts destroying the lws context
 * and closes our handles; uv_run then returns once libuv has nothing left, a second
 * lws_context_destroy() frees what lws kept for that moment (the foreign-loop protocol), and
 * the process exits 0 (1 if a handle was left open). lws's own log lines are routed through
 * sb_log.
 *
 * Start-up fails (exit 1) when the port cannot be bound: lws is asked to fail rather than run
 * without a listener. Port 0 takes a free port; the `listening on` line names the real one,
 * and when SB_READY_FD names a pipe (set by `switchboard up`) the port is written to it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libwebsockets.h>
#include "cli/cli.h"
#include "gateway/gateway.h"
#include "gateway/submit_group.h"
#include "gateway/http.h"
#include "gateway/admin.h"
#include "gateway/admin_feed.h"
#include "gateway/presence_watch.h"
#include "gateway/socketio/socketio.h"
#include "gateway/static.h"
#include "gateway/tls.h"
#include "switchboard/clock.h"
#include "gateway/jwt_cache.h"
#include "switchboard/error.h"
#include "switchboard/fmt.h"
#include "switchboard/log.h"
#include "switchboard/submit.h"

#define SB_GW_TOKEN_CACHE_SLOTS 1024 /* verified bearer tokens kept (jwt_cache.h) */
#define SB_GW_TX_CHUNK (64 * 1024)    /* largest piece lws sends of a buffered answer */

int sb_gateway_type_known(const sb_gateway_t *gw, const char *type) {
    const char *list = gw->cfg->job_types ? gw->cfg->job_types : "";
    size_t tlen = strlen(type);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',') p++;
        size_t n = strcspn(p, ", ");
        if (n == tlen && n && strncmp(p, type, n) == 0) return 1;
        p += n;
    }
    return 0;
}

static void sb_lws_log(int level, const char *line) {
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
    sb_log(level & LLL_ERR ? SB_LOG_ERROR : SB_LOG_WARN, "lws", "%.*s", (int)n, line);
}

/* The I/O poll phase bracket (gateway.h): libuv runs prepare handles right before it polls
 * and check handles right after. */
static void sb_gw_io_begin(uv_prepare_t *h) { ((sb_gateway_t *)h->data)->in_io_poll = 1; }
static void sb_gw_io_end(uv_check_t *h) { ((sb_gateway_t *)h->data)->in_io_poll = 0; }

void sb_gateway_io_watch(sb_gateway_t *gw) {
    uv_prepare_init(gw->loop, &gw->io_begin);
    uv_check_init(gw->loop, &gw->io_end);
    gw->io_begin.data = gw->io_end.data = gw;
    uv_prepare_start(&gw->io_begin, sb_gw_io_begin);
    uv_check_start(&gw->io_end, sb_gw_io_end);
}

typedef struct {
    sb_gateway_t *gw;
    uv_signal_t sigterm, sigint, sighup; /* SIGHUP: reload the TLS certificate (tls.h) */
} sb_gw_signals_t;

static void sb_gw_sighup_cb(uv_signal_t *h, int signum) {
    (void)signum;
    sb_gateway_t *gw = ((sb_gw_signals_t *)h->data)->gw;
    if (!gw->stopping) sb_gw_tls_reload(gw->lws, gw->cfg);
}

static void sb_gw_signal_cb(uv_signal_t *h, int signum) {
    sb_gw_signals_t *s = h->data;
    sb_gateway_t *gw = s->gw;
    if (gw->stopping) return;
    gw->stopping = 1;
    sb_info("gateway", "received %s: shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    sb_aredis_close(gw->redis); /* pending replies (replays too) get NULL now */
    gw->redis = NULL;
    sb_submit_group_stop(gw->submits); /* a group still open: 503, Redis is gone */
    sb_presence_watch_stop(gw->presence_watch);
    sb_admin_stop(gw->admin);
    sb_admin_feed_stop(gw->admin_feed);
    sb_socketio_stop(gw->sio);
    lws_context_destroy(gw->lws); /* first stage; lws finishes after its handles close */
    uv_close((uv_handle_t *)&gw->io_begin, NULL);
    uv_close((uv_handle_t *)&gw->io_end, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sighup, NULL);
}

/* Loads the dashboard files from WEB_DIR (or the default next to the executable). A missing
 * folder is logged and leaves the page answering 404; only running out of memory fails. */
static int sb_gw_web_load(sb_gateway_t *gw) {
    char dir[4096];
    const char *d = gw->cfg->web_dir && *gw->cfg->web_dir
                        ? gw->cfg->web_dir
                        : sb_static_default_dir(dir, sizeof dir);
    gw->web = sb_static_load(d ? d : "web");
    if (!gw->web) return -1;
    if (sb_static_has_index(gw->web))
        sb_info("gateway", "dashboard: %zu files from %s", sb_static_count(gw->web), d);
    else
        sb_warn("gateway", "dashboard: no index.html in %s (set WEB_DIR): / answers 404",
                d ? d : "web");
    return 0;
}

static const struct lws_protocols sb_gw_protocols[] = {
    /* rx_buffer_size: lws gives every WebSocket a receive buffer of this size; Socket.IO
     * clients send small packets (bigger ones arrive in pieces and are reassembled), so a
     * small one saves ~4 KiB per connection. tx_packet_size: without it lws sends what the
     * socket did not take at once in rx_buffer_size pieces, one syscall per KiB of a large
     * answer; it sizes no buffer */
    {"http", sb_http_callback, sizeof(sb_http_conn_t), SB_SOCKETIO_RX_BUFFER, 0, NULL,
     SB_GW_TX_CHUNK},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* No lws validity (idle ping / hangup) timers: Engine.IO has its own heartbeat, and lws keeps
 * those timers in one sorted list, re-inserted on every write of every connection (O(n) each
 * with n connections: the top cost of a fan-out to 10k sockets before this). */
static const lws_retry_bo_t sb_gw_no_validity = {.secs_since_valid_ping = 0,
                                                 .secs_since_valid_hangup = 0};

/* The lws context on our loop, then its one vhost, which listens. A vhost that cannot bind
 * is refused (FAIL_UPON_UNABLE_TO_BIND) while the context stays whole: a context whose own
 * creation fails on a foreign loop is torn down by lws before libuv has closed its handles.
 * *port: the port the vhost got (port 0: the kernel's pick), or -1 when it could not listen. */
struct lws_context *sb_gateway_lws_create(sb_gateway_t *gw, int *port) {
    struct lws_context_creation_info info;
    void *loops[1] = {gw->loop};
    memset(&info, 0, sizeof info);
    info.port = gw->cfg->port;
    info.iface = gw->cfg->bind && strcmp(gw->cfg->bind, "0.0.0.0") && *gw->cfg->bind
                     ? gw->cfg->bind
                     : NULL;
    info.protocols = sb_gw_protocols;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DISABLE_IPV6 |
                   LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.foreign_loops = loops;
    info.user = gw;
    info.pcontext = &gw->lws; /* lws sets it to NULL once the context is wholly destroyed */
    /* room for every header of a request at once: an Authorization longer than a token may
     * be (SB_JWT_MAX_LEN) still fits, so it gets 431 rather than a silent close */
    info.max_http_header_data = SB_HTTP_HEADER_MAX;
    info.keepalive_timeout = 30;
    info.retry_and_idle_policy = &sb_gw_no_validity;
    sb_gw_tls_info(gw->cfg, &info); /* OpenSSL global init for the context */
    struct lws_context *lws = lws_create_context(&info);
    *port = -1;
    if (!lws) return NULL;
    /* FALLBACK: a request line lws cannot parse comes to http.c as raw bytes, for a JSON
     * refusal instead of lws's HTML 403 */
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DISABLE_IPV6 |
                   LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND |
                   LWS_SERVER_OPTION_FALLBACK_TO_APPLY_LISTEN_ACCEPT_CONFIG;
    info.vhost_name = "default";
    sb_gw_tls_info(gw->cfg, &info); /* the vhost's certificate and key */
    struct lws_vhost *vh = lws_create_vhost(lws, &info);
    if (vh && lws_get_vhost_listen_port(vh) > 0) *port = lws_get_vhost_listen_port(vh);
    return lws;
}

/* Tells the process that started us (SB_READY_FD: a pipe from `switchboard up`) that we
 * listen, and on which port. */
static void sb_gw_ready(int port) {
    const char *fd_text = getenv("SB_READY_FD");
    long fd;
    if (!fd_text || sb_fmt_parse_long(fd_text, 3, 1 << 20, &fd) != SB_OK) return;
    char line[16];
    int n = snprintf(line, sizeof line, "%d\n", port);
    if (write((int)fd, line, (size_t)n) != n)
        sb_warn("gateway", "cannot report the port on SB_READY_FD %ld", fd);
    close((int)fd);
    unsetenv("SB_READY_FD");
}

static void sb_gw_listening(const sb_gateway_t *gw, int port) {
    const sb_config_t *cfg = gw->cfg;
    const char *bind = cfg->bind && *cfg->bind ? cfg->bind : "0.0.0.0";
    char where[300];
    sb_info("gateway", "listening on %s://%s:%d (job types: %s; redis %s)",
            sb_gw_tls_wanted(cfg) ? "https" : "http", bind, port, cfg->job_types, sb_redis_addr_str(&cfg->redis, where, sizeof where));
    if (cfg->dev_mode && !sb_cli_loopback(bind))
        sb_warn("gateway", "WARNING: development mode is reachable from other hosts on %s:%d: "
                "anyone who can connect can mint admin tokens (POST /api/v1/dev/token). Use "
                "--bind 127.0.0.1, or turn development mode off (SB_DEV=0)", bind, port);
    sb_gw_ready(port);
}

int sb_cmd_gateway(sb_config_t *cfg) {
    if (!cfg->jwt_secret || !*cfg->jwt_secret) {
        sb_error("gateway", "bad setting JWT_SECRET: it must be set (the HS256 key of tokens)");
        return SB_EXIT_USAGE;
    }
    char err[512];
    sb_proxies_t proxies;
    if ((sb_gw_tls_wanted(cfg) && sb_gw_tls_check(cfg, err, sizeof err) != 0) ||
        sb_proxies_parse(&proxies, cfg->trusted_proxies, err, sizeof err) != 0) {
        sb_error("gateway", "%s", err);
        return SB_EXIT_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);
    sb_cli_warn_eviction(cfg, "gateway");
    lws_set_log_level(LLL_ERR | LLL_WARN, sb_lws_log);
    uv_loop_t loop;
    uv_loop_init(&loop);
    sb_gateway_t gw;
    memset(&gw, 0, sizeof gw);
    gw.cfg = cfg;
    gw.proxies = proxies;
    gw.loop = &loop;
    gw.started_ms = sb_now_ms();
    sb_presence_init(&gw.presence, cfg->agent_status_ttl, cfg->max_chats);
    sb_submit_script_init(&gw.submit);
    sb_rand_init(&gw.rand);
    gw.tokens = sb_jwt_cache_create(SB_GW_TOKEN_CACHE_SLOTS);
    gw.redis = sb_gw_web_load(&gw) == 0 ? sb_aredis_create(&loop, &cfg->redis, "commands")
                                        : NULL;
    gw.sio = gw.redis ? sb_socketio_create(&gw) : NULL;
    int port = -1;
    gw.lws = gw.sio ? sb_gateway_lws_create(&gw, &port) : NULL;
    if (!gw.lws || port < 0) {
        sb_error("gateway", "cannot listen on %s:%d (see the lws error above: port taken?)",
                 cfg->bind ? cfg->bind : "0.0.0.0", cfg->port);
        sb_aredis_close(gw.redis);
        sb_socketio_stop(gw.sio);
        if (gw.lws) lws_context_destroy(gw.lws); /* no listener: the foreign-loop teardown */
        uv_run(&loop, UV_RUN_DEFAULT);
        if (gw.lws) lws_context_destroy(gw.lws);
        sb_socketio_free(gw.sio);
        uv_loop_close(&loop);
        sb_static_free(gw.web);
        sb_jwt_cache_free(gw.tokens);
        sb_rand_close(&gw.rand);
        return SB_EXIT_FAIL;
    }
    sb_gateway_io_watch(&gw);
    gw.submits = sb_submit_group_create(&loop, &gw.redis, &gw.submit);
    gw.admin = sb_admin_create(&loop, cfg);
    gw.presence_watch = sb_presence_watch_create(&gw);
    gw.admin_feed = cfg->admin_feed ? sb_admin_feed_create(&gw) : NULL; /* ADMIN_FEED=0: off */
    if (!gw.presence_watch)
        sb_warn("gateway", "presence events to admins are off (out of memory)");
    sb_gw_signals_t sig = {.gw = &gw};
    uv_signal_init(&loop, &sig.sigterm);
    uv_signal_init(&loop, &sig.sigint);
    uv_signal_init(&loop, &sig.sighup);
    sig.sigterm.data = sig.sigint.data = sig.sighup.data = &sig;
    uv_signal_start(&sig.sighup, sb_gw_sighup_cb, SIGHUP);
    uv_signal_start(&sig.sigterm, sb_gw_signal_cb, SIGTERM);
    uv_signal_start(&sig.sigint, sb_gw_signal_cb, SIGINT);
    sb_gw_listening(&gw, port);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (gw.lws) { /* foreign loop: the second call completes the destroy started on SIGTERM */
        lws_context_destroy(gw.lws);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    sb_presence_watch_free(gw.presence_watch);
    sb_submit_group_free(gw.submits);
    sb_admin_free(gw.admin);
    sb_admin_feed_free(gw.admin_feed);
    sb_socketio_free(gw.sio); /* lws has closed every connection: no conn is left attached */
    int rc = uv_loop_close(&loop);
    sb_static_free(gw.web);
    sb_jwt_cache_free(gw.tokens);
    sb_rand_close(&gw.rand);
    if (rc) sb_error("gateway", "stopped with handles still open (uv_loop_close: %s)",
                     uv_strerror(rc));
    else sb_info("gateway", "stopped");
    return rc ? SB_EXIT_FAIL : SB_EXIT_OK;
}
