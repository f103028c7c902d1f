/* Socket.IO glue internals shared by socketio.c and socketio_ws.c, and by nothing else (the
 * contract for other modules is socketio.h). The glue is split by transport:
 *   socketio.c     life cycle, the heartbeat timer (armed for the earliest deadline), auth
 *                  and connect, the polling transport (HTTP), emitting, metrics
 *   socketio_ws.c  the WebSocket transport: lws callbacks, the flush list (writes outside
 *                  the writeable callback), our own framing of bursts and Close frames, and
 *                  the kill list (slow consumers reset after SB_SOCKETIO_CLOSE_WAIT_S)
 * Names: sb_socketio_* is socketio.h's API, sb__socketio_* is private to these two files. */
#ifndef SB_GATEWAY_SOCKETIO_INTERNAL_H
#define SB_GATEWAY_SOCKETIO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "gateway/catchup.h"
#include "gateway/gateway.h"
#include "gateway/interop.h"
#include "gateway/ratemap.h"
#include "gateway/replay.h"
#include "gateway/socketio/eio.h"
#include "gateway/socketio/sio.h"
#include "gateway/socketio/socketio.h"
#include "gateway/subscriber.h"

/* A WebSocket whose session closed while output is still pending (lws's unsent tail, or a full
 * kernel buffer) gets this long to take it; a client that stopped reading never does, so the
 * connection is then reset (the kill list) rather than left waiting for a writeable
 * callback. */
#define SB_SOCKETIO_CLOSE_WAIT_S 3

/* The message a client over a connect rate limit gets (CONNECT_ERROR, or the handshake's
 * Engine.IO error with status 429). */
#define SB_SOCKETIO_LIMITED "too many connections, retry later"

struct sb_socketio {
    sb_gateway_t *gw;
    char path[32];         /* served at, e.g. "/socket.io/" (and without the last slash) */
    sb_socketio_t *next;   /* the gateway's next Engine.IO endpoint (sb_socketio_create_with) */
    int burst;             /* packets framed into one WebSocket write at most (0: the default) */
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

/* ---- socketio.c */

/* Arms the tick timer for the earlier of the core's deadline at (INT64_MAX: none) and the
 * kill list's; with neither, stops it. No-op once stopped. */
void sb__socketio_arm(sb_socketio_t *io, int64_t at, int64_t now);
/* Query parameter name of query copied into buf (len bytes); returns buf, or NULL if absent. */
const char *sb__socketio_arg(const char *query, const char *name, char *buf, size_t len);
/* 1 when the client address of wsi may open one more Engine.IO session now (taken); 0 (and
 * counted as connect_limited) when over SIO_CONNECT_RATE_IP. */
int sb__socketio_ip_allowed(sb_socketio_t *io, struct lws *wsi);
/* A new Engine.IO v3 session (socket.io-client v2) is connected to "/" at once with the token
 * of its handshake's query (sb_sio_connect_v2); a v4 session's query is never read. */
void sb__socketio_connect_v2(sb_socketio_t *io, sb_eio_id_t id, const char *query);

/* 1 when path is io's ("/x/" or "/x"). */
int sb__socketio_serves(const sb_socketio_t *io, const char *path);

/* ---- socketio_ws.c */

/* The core's wake callback (sb_eio_io_cb_t): conn (a wsi) has something to send. */
void sb__socketio_wake(void *ud, void *conn);
/* The prepare handle's callback: writes every WebSocket woken since the last loop turn. */
void sb__socketio_flush_cb(uv_prepare_t *h);
/* The earliest reset deadline of the kill list (INT64_MAX: empty). */
int64_t sb__socketio_kill_next(const sb_socketio_t *io);
/* Resets the connections of the kill list whose wait is over at now. */
void sb__socketio_kill_due(sb_socketio_t *io, int64_t now);
/* Empties the flush list (back to lws's writeable callbacks) and the kill list. */
void sb__socketio_ws_stop(sb_socketio_t *io);

#endif
