/* `switchboard gateway`: the process-wide state every gateway module shares.
 *
 * One libuv loop carries everything: libwebsockets (HTTP and WebSocket) on that loop as a
 * foreign loop, and hiredis async connections attached to it. The struct is created by
 * sb_cmd_gateway() (gateway.c), lives on its stack for the life of the process and is passed
 * to handlers through each request; it is never a global. */
#ifndef SB_GATEWAY_H
#define SB_GATEWAY_H

#include <uv.h>
#include "gateway/aredis.h"
#include "gateway/client_ip.h"
#include "gateway/stats.h"
#include "cli/settings.h"
#include "switchboard/presence.h"
#include "switchboard/random.h"
#include "switchboard/redis.h"

struct lws_context;
struct sb_jwt_cache;

typedef struct sb_gateway {
    const sb_config_t *cfg;
    sb_proxies_t proxies; /* TRUSTED_PROXIES, parsed (client_ip.h) */
    uv_loop_t *loop;
    struct lws_context *lws;
    sb_aredis_t *redis;        /* commands (the SUBSCRIBE connection is the subscriber's) */
    struct sb_socketio *sio;   /* Socket.IO at /socket.io/ (socketio.h) */
    sb_gw_stats_t stats;       /* counters behind /metrics */
    struct sb_static *web;     /* dashboard files, loaded at start-up (static.c) */
    sb_presence_ctx_t presence;/* presence scripts and settings (read-only after start) */
    struct sb_presence_watch *presence_watch; /* admins' live presence (presence_watch.h) */
    sb_script_t submit;        /* the job submission script (submit.h), SHA1 computed once */
    struct sb_submit_group *submits; /* this loop turn's POSTs, sent as one call (submit_group.h) */
    struct sb_admin *admin;    /* job control: blocking connections, paused state (admin.h) */
    struct sb_admin_feed *admin_feed; /* the console's live events to admins (admin_feed.h) */
    struct sb_jwt_cache *tokens; /* verified tokens (jwt_cache.h); NULL: verify every time */
    sb_rand_t rand;            /* random bytes for job, window-member and event ids (random.h) */
    int64_t started_ms;
    int stopping;              /* SIGTERM seen: new requests get 503 */
    /* libuv's I/O poll phase, bracketed by a prepare handle (just before it) and a check
     * handle (just after it): lws callbacks inside it come from socket events, and lws 4.1
     * hands over a request it had buffered behind the previous one (a pipelined request) from
     * its idle handler, outside it (http.c refuses such a request when it has a body). */
    uv_prepare_t io_begin;
    uv_check_t io_end;
    int in_io_poll;            /* 1 between io_begin and io_end */
} sb_gateway_t;

/* The lws context serving HTTP and WebSocket (http.c) on gw->loop with one vhost listening
 * on gw->cfg's bind and port (TLS when set); lws_context_user is gw. *port gets the port
 * bound (port 0: the kernel's pick), or -1 when it could not listen (the context, if any, is
 * then destroyed by the caller like a running one). NULL when lws fails. */
struct lws_context *sb_gateway_lws_create(sb_gateway_t *gw, int *port);
/* Starts the handles that bracket libuv's I/O poll phase (in_io_poll); closed by the caller
 * (io_begin, io_end) at shutdown. */
void sb_gateway_io_watch(sb_gateway_t *gw);

/* 1 if type is one of cfg->job_types (comma-separated). */
int sb_gateway_type_known(const sb_gateway_t *gw, const char *type);

#endif
