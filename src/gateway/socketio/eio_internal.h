/* Engine.IO internals shared by the eio*.c files, and by nothing else (the contract for other
 * modules is eio.h). The module is split by noun:
 *   eio.c         the server: slot table, sid hash, session open/free, deadlines, deferred
 *                 close, incoming packet dispatch, tick, accessors
 *   eio_queue.c   a session's outgoing ring of shared buffers (limits, join for polling)
 *   eio_http.c    HTTP requests: checks, handshake, long-polling GET / POST
 *   eio_ws.c      the WebSocket transport: attach, upgrade probe, frames in and out
 *   eio_codec.c   pure parts: shared buffers, payload split, packet decode, random sids
 * Names: sb_eio_* is eio.h's API, sb__eio_* is private to these files, statics are file-local. */
#ifndef SB_GATEWAY_EIO_INTERNAL_H
#define SB_GATEWAY_EIO_INTERNAL_H

#include <stdint.h>

#include "gateway/socketio/eio.h"

enum { ST_OPEN = 1, ST_CLOSING = 2 };

enum {
    F_WS = 1 << 0,          /* the active transport is the WebSocket (ws_conn) */
    F_PROBING = 1 << 1,     /* ws_conn is an upgrade probe; polling is still active */
    F_PROBED = 1 << 2,      /* `2probe` was received on the probe */
    F_PROBE_REPLY = 1 << 3, /* `3probe` still to be sent on the probe */
    F_NOOP = 1 << 4,        /* answer the held GET with `6` */
    F_GRACEFUL = 1 << 5,    /* closing: deliver what is queued first */
    F_NOTIFIED = 1 << 6,    /* closing: app on_close has run, conns were woken */
    F_PENDING = 1 << 7,     /* listed in srv->pending */
    F_PEER_CLOSE = 1 << 8,  /* closing: the client sent `1` (a held GET gets `6`) */
    F_EIO3 = 1 << 9,        /* Engine.IO v3 session (eio.h): client pings, `<len>:` payloads */
};

#define SB_EIO_MIN_QCAP 4u /* ring entries kept when drained */
#define SB_EIO_NEVER INT64_MAX

typedef struct sb_eio_session {
    char sid[SB_EIO_SID_LEN + 1];
    uint8_t state;      /* ST_OPEN / ST_CLOSING */
    uint16_t flags;     /* F_* */
    uint32_t slot;      /* index in the slot table */
    uint32_t hnext;     /* next session in the sid hash chain: slot + 1, 0 = end */
    const char *reason; /* why it is closing (static string) */
    int64_t ping_due;   /* when to send the next ping (NEVER while awaiting the pong) */
    int64_t alive_until; /* close with "ping timeout" when no packet arrived by then */
    int64_t aux_until;  /* upgrade deadline while probing; free deadline while closing */
    int64_t app_due;    /* application timer, 0 = none */
    void *poll_conn;    /* the held poll GET, NULL when none */
    void *ws_conn;      /* the WebSocket (active or probe), NULL when none */
    void *app;          /* application layer's per-session data (sio.c) */
    sb_eio_buf_t **q;   /* outgoing ring, qcap entries (power of 2): q_small or malloc'd */
    uint32_t qcap, qhead, qlen;
    uint32_t qbytes;    /* sum of the queued packets' lengths */
    uint32_t gen;       /* generation of its slot (gens[slot]) */
    uint32_t post_tag;  /* the POST whose body is arriving (sb__eio_conn_tag), 0 when none:
                         * 32 bits in what was padding, to keep the session's size */
    sb_eio_buf_t *q_small[SB_EIO_MIN_QCAP]; /* the ring until a burst needs more */
} sb_eio_session_t;

struct sb_eio_server {
    sb_eio_config_t cfg;
    sb_eio_io_cb_t io;
    sb_eio_app_cb_t app;
    sb_eio_session_t **slots; /* cap entries, NULL = free */
    uint32_t *gens;           /* generation of each slot, never 0 */
    int64_t *due;             /* next deadline of each slot, NEVER when free */
    uint32_t cap, hw;         /* slots allocated; high-water mark of slots used */
    uint32_t *free_slots, nfree;
    uint32_t count;           /* live sessions (open or closing) */
    uint32_t nopen;           /* open sessions */
    uint32_t *buckets, nbuckets; /* sid hash: slot + 1 heads, nbuckets a power of 2 */
    sb_eio_id_t *pending;     /* sessions to settle at depth 0 */
    uint32_t npending, cappending;
    int depth;                /* nesting of public calls / batches */
    int64_t now;              /* latest time seen */
    int64_t armed;            /* earliest deadline the HTTP layer was told of (schedule) */
    int ticking;              /* inside sb_eio_tick: no schedule calls */
    sb_eio_buf_t *pkt_ping, *pkt_noop, *pkt_close, *pkt_probe, *pkt_ok; /* shared constants */
    sb_eio_buf_t *pkt_pong;   /* v3: the answer to a client ping */
};

/* Close reason of a packet that did not parse; compared by address. */
extern const char sb__eio_r_parse[];

static inline sb_eio_id_t sb__eio_id(const sb_eio_server_t *srv, const sb_eio_session_t *s) {
    (void)srv;
    return (sb_eio_id_t)s->gen << 32 | s->slot;
}

/* The session of a handle, NULL when it is stale or was never valid. */
static inline sb_eio_session_t *sb__eio_get(const sb_eio_server_t *srv, sb_eio_id_t id) {
    uint32_t slot = (uint32_t)id, gen = (uint32_t)(id >> 32);
    if (slot >= srv->hw) return NULL;
    sb_eio_session_t *s = srv->slots[slot];
    return s && s->gen == gen ? s : NULL;
}

static inline int64_t sb__eio_min(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- eio.c ---- */

/* Every public entry point brackets its work with enter/leave; closes requested inside are
 * settled (on_close, wakes, frees) when the outermost leave runs. */
static inline void sb__eio_enter(sb_eio_server_t *srv) { srv->depth++; }
void sb__eio_leave(sb_eio_server_t *srv);
/* The session with that sid (open or closing), or NULL. */
sb_eio_session_t *sb__eio_lookup(const sb_eio_server_t *srv, const char *sid);
/* The tag of an HTTP request's conn (never 0): the low 32 bits of its address, which no other
 * live conn shares but one a multiple of 4 GiB away. */
static inline uint32_t sb__eio_conn_tag(const void *conn) {
    uint32_t t = (uint32_t)(uintptr_t)conn;
    return t ? t : 1u;
}
/* New session on polling (ws_conn NULL) or on a WebSocket, Engine.IO v3 when v3 is set, its
 * open packet queued and the app told. NULL on failure (nothing left behind). */
sb_eio_session_t *sb__eio_session_open(sb_eio_server_t *srv, void *ws_conn, int v3,
                                       int64_t now);
/* Recomputes due[s->slot] from the session's deadlines. */
void sb__eio_update_due(sb_eio_server_t *srv, sb_eio_session_t *s);
/* Sets due[slot]; a deadline earlier than the armed one is announced (io.schedule). */
void sb__eio_set_due(sb_eio_server_t *srv, uint32_t slot, int64_t d);
/* A packet arrived from the client: it is alive. */
void sb__eio_heard(sb_eio_server_t *srv, sb_eio_session_t *s, int64_t now);
/* Lists s for settling at depth 0 (idempotent). */
void sb__eio_defer(sb_eio_server_t *srv, sb_eio_session_t *s);
/* Marks an open session closing; on_close, wakes and the free follow at depth 0. */
void sb__eio_mark_closed(sb_eio_server_t *srv, sb_eio_session_t *s, int graceful,
                         const char *reason);
/* Asks the HTTP layer for a writeable callback on conn (NULL: nothing). */
void sb__eio_wake(sb_eio_server_t *srv, void *conn);

/* Incoming packets: the state sb__eio_on_packet (an sb_eio_split_payload callback) works on. */
typedef struct sb__eio_rx {
    sb_eio_server_t *srv;
    sb_eio_session_t *s;
    int64_t now;
} sb__eio_rx_t;
/* One packet on the active transport. Returns 0 to go on, 1 when the session closed. */
int sb__eio_on_packet(void *ud, const char *pkt, size_t n);
/* The same for a v3 session (an sb_eio_split_payload3 callback; binary as it says). */
int sb__eio_on_packet3(void *ud, const char *pkt, size_t n, int binary);

/* ---- eio_queue.c ---- */

/* Queues one reference to b. 0, SB_ENOTFOUND (not open), SB_ENOMEM, or SB_ETIMEOUT (limits
 * passed: the session was marked closed as a slow consumer). Wakes the active conn. */
int sb__eio_q_push(sb_eio_server_t *srv, sb_eio_session_t *s, sb_eio_buf_t *b);
/* Takes the oldest packet (the caller owns its reference). The queue must not be empty. */
sb_eio_buf_t *sb__eio_q_pop(sb_eio_session_t *s);
/* Joins queued packets (at most max_payload bytes, at least one) and `extra` into one polling
 * payload. NULL on ENOMEM. */
sb_eio_buf_t *sb__eio_q_join(sb_eio_server_t *srv, sb_eio_session_t *s, sb_eio_buf_t *extra);
/* The polling payload of b alone: b itself (a new reference) for v4, `<len>:` + b for v3.
 * NULL on ENOMEM. */
sb_eio_buf_t *sb__eio_q_one(sb_eio_server_t *srv, sb_eio_session_t *s, sb_eio_buf_t *b);
void sb__eio_q_clear(sb_eio_session_t *s);   /* drops every queued reference */
void sb__eio_q_release(sb_eio_session_t *s); /* back to the inline ring (must be empty) */

/* ---- eio_http.c ---- */

/* Fills *out and returns status. */
int sb__eio_reply(sb_eio_reply_t *out, int status, const char *ct, sb_eio_buf_t *body,
                  sb_eio_id_t id);

/* ---- eio_ws.c ---- */

/* A WebSocket upgrade for an existing polling session: conn becomes its probe. Returns 101. */
int sb__eio_ws_attach(sb_eio_server_t *srv, sb_eio_session_t *s, void *conn, int64_t now,
                      sb_eio_reply_t *out);
/* The probe failed: forget its conn and wake it so its next pull says SB_EIO_CLOSE. */
void sb__eio_probe_fail(sb_eio_server_t *srv, sb_eio_session_t *s);

#endif
