/* Socket.IO at /socket.io/ on the gateway: the glue between libwebsockets (http.c) and the
 * transport-independent Engine.IO / Socket.IO core (eio.h, sio.h).
 *
 * Polling: http.c hands every request under /socket.io/ to sb_socketio_request() as an
 * ordinary sb_req_t (bodies up to maxPayload, CORS headers captured). The answer is either
 * immediate, or the GET is held: the request keeps a pull hook that runs on writeable after
 * the core's wake, and a gone hook that detaches it from its session when the client leaves.
 * WebSocket: the upgrade arrives on protocols[0] (no subprotocol); the per-connection data
 * holds the session handle and a reassembly buffer for fragmented messages. Outgoing packets
 * stay in the core's bounded per-session queue (a slow consumer is dropped there); each
 * writeable callback sends exactly one of them with one lws_write. The eio "conn" of both
 * transports is the wsi itself, detached at the latest on LWS_CALLBACK_WSI_DESTROY, so the
 * core never wakes a freed connection.
 *
 * Around the core it runs: the auth callback (the token of the CONNECT auth payload, checked
 * like the HTTP API's), the heartbeat timer (sb_eio_tick), the status subscriber
 * (subscriber.c) and the replay of recent job states on connect (replay.c). */
#ifndef SB_GATEWAY_SOCKETIO_H
#define SB_GATEWAY_SOCKETIO_H

#include <stddef.h>
#include <stdint.h>
#include <libwebsockets.h>
#include "gateway/socketio/eio.h"
#include "gateway/socketio/sio.h"
#include "switchboard/prom.h"

#define SB_SOCKETIO_RX_BUFFER 1024 /* lws per-WebSocket receive buffer (protocol rx_buffer_size) */

struct sb_gateway;
typedef struct sb_req sb_req_t;
typedef struct sb_socketio sb_socketio_t;

/* Per-WebSocket state, embedded in lws's per-connection data (zeroed by lws). */
typedef struct sb_socketio_ws {
    uint64_t id;   /* the Engine.IO session (sb_eio_id_t), 0 when not attached */
    struct sb_socketio *io; /* the endpoint it was attached to (set with id) */
    char *rx;      /* a message being reassembled from fragments (owned), or NULL */
    size_t rx_len;
    uint8_t attached;     /* 1 between ESTABLISHED and the detach */
    uint8_t peer_closing; /* the client sent a close frame: only lws writes from now on */
    uint16_t close_code;  /* code of the Close frame the server sends (0: 1000, normal) */
    /* the flush list (socketio_ws.c): woken this loop turn, written directly before the poll */
    struct lws *flush_wsi;
    struct sb_socketio_ws *flush_next, **flush_prev; /* flush_prev non-NULL while listed */
    /* the kill list (socketio_ws.c): closed with output pending, reset at kill_at (monotonic ms) */
    struct lws *kill_wsi;
    int64_t kill_at;
    struct sb_socketio_ws *kill_next, **kill_prev; /* kill_prev non-NULL while listed */
} sb_socketio_ws_t;

/* Creates the Engine.IO server, the Socket.IO namespace, the heartbeat timer and the status
 * subscriber on gw's loop. Returns NULL on allocation failure (nothing left behind). */
sb_socketio_t *sb_socketio_create(struct sb_gateway *gw);
/* An Engine.IO endpoint beside (or instead of) the gateway's, without its job system: the
 * conformance server (tests/conformance) serves its Engine.IO echo and its Socket.IO test
 * namespaces this way. */
typedef struct sb_socketio_opts {
    const char *path;              /* served at, e.g. "/engine.io/" (fewer than 32 bytes) */
    sb_eio_config_t eio;           /* its settings (headroom is set here) */
    const sb_sio_callbacks_t *sio; /* Socket.IO over it with these callbacks and sio_cfg ... */
    const sb_sio_config_t *sio_cfg;
    const sb_eio_app_cb_t *app;    /* ... or, sio NULL, this bare Engine.IO application */
    /* Packets framed into one WebSocket write at most (0: the gateway's burst). 1 writes each
     * packet on its own, as engine.io does: the official suites' client (ws 8.5) emits every
     * frame of one read at once, and their tests, which wait for one message at a time, miss
     * the ones that came in the same read. */
    int burst;
} sb_socketio_opts_t;

/* Creates the endpoint o describes on gw's loop and appends it to gw's endpoints (gw->sio
 * and its chain: gw->sio when it is the first). The per-address connect limit is
 * gw->cfg's; gw->cfg and the lws context's user must be gw. Returns NULL on a bad o or on
 * allocation failure (nothing left behind). Stopped and freed like the gateway's, each of
 * them (sb_socketio_free does not unchain: free them all at the end). */
sb_socketio_t *sb_socketio_create_with(struct sb_gateway *gw, const sb_socketio_opts_t *o);
/* The endpoint's Engine.IO server and its Socket.IO layer (NULL for a bare one). */
sb_eio_server_t *sb_socketio_eio(sb_socketio_t *io);
sb_sio_t *sb_socketio_sio(sb_socketio_t *io);
/* Shutdown, first stage: stops the timer and the subscriber (their handles close during the
 * rest of uv_run). Sessions stay until lws has closed its connections. Accepts NULL. */
void sb_socketio_stop(sb_socketio_t *io);
/* Frees everything, once uv_run has returned and lws is destroyed. Accepts NULL. */
void sb_socketio_free(sb_socketio_t *io);

/* The endpoint serving path ("/socket.io/" or "/socket.io" for the gateway's), or NULL. */
sb_socketio_t *sb_socketio_at(struct sb_gateway *gw, const char *path);
/* Called by http.c when the request line of a /socket.io/ request has been read: sets the
 * body cap to maxPayload, copies the CORS request headers and tells the core of a POST
 * (sb_eio_post_begin: a second POST of a session while one's body arrives closes it). */
void sb_socketio_request_headers(sb_req_t *req, struct lws *wsi);
/* Serves a complete polling request (OPTIONS preflight, handshake, GET, POST). */
void sb_socketio_request(sb_req_t *req);

/* 1 for the lws reasons of the WebSocket side (filter, established, receive, writeable,
 * closed), which http.c forwards to sb_socketio_ws_callback. */
int sb_socketio_ws_reason(enum lws_callback_reasons reason);
/* Drives a Socket.IO WebSocket; ws may be NULL (then nothing is done). Also called on
 * LWS_CALLBACK_WSI_DESTROY for every connection. Returns what the lws callback returns. */
int sb_socketio_ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
                            sb_socketio_ws_t *ws, void *in, size_t len);

/* Emits event with data (JSON text, len bytes, trusted valid; NULL = no argument) to every
 * socket of room on this gateway. Returns the number of sockets or SB_ENOMEM. */
int sb_socketio_emit_room(sb_socketio_t *io, const char *room, const char *event,
                          const char *json, size_t len);
/* The same to room `admins` (presence events: agent:online / agent:offline / agent:status). */
int sb_socketio_emit_admins(sb_socketio_t *io, const char *event, const char *json,
                            size_t len);
/* Room of the admin sockets that asked for the operator console's feed (handshake auth
 * {"console": true}; admin_feed.h): other admin sockets (scripts, a fan-out of thousands) do
 * not pay for it. */
#define SB_SOCKETIO_ROOM_CONSOLE "admins:console"
/* The same to room SB_SOCKETIO_ROOM_CONSOLE (admin:jobs, admin:queues, admin:action). */
int sb_socketio_emit_console(sb_socketio_t *io, const char *event, const char *json,
                             size_t len);

/* The status subscriber (the process's one SUBSCRIBE connection), for other modules to watch
 * channels on (sb_subscriber_watch); NULL once stopped. */
struct sb_subscriber *sb_socketio_subscriber(sb_socketio_t *io);

/* Appends the Socket.IO families (connections, status messages) to p. */
void sb_socketio_render(const sb_socketio_t *io, sb_prom_t *p);

#endif
