/* Engine.IO v4 server sessions: handshake, long-polling, WebSocket with upgrade, server-driven
 * heartbeat, bounded outgoing queues of shared buffers, deferred close.
 *
 * Sessions live in a slot table (slots[], gens[] generations, due[] next deadline) and a sid
 * hash chained through the sessions; handles are generation << 32 | slot, so a stale handle is
 * simply not found (a live session keeps its slot's generation, so finding it by handle reads
 * slots[] and the session only). Each session keeps a ring of references to shared
 * sb_eio_buf_t packets, inside the session while it holds at most SB_EIO_MIN_QCAP of them.
 * Closing only marks the session and lists it in pending[]; settle() runs the app's on_close,
 * wakes the attached conns and frees the session when the outermost call returns (depth 0).
 * Time only enters through `now` arguments: tick() scans due[] and runs what is due. See the
 * design note in eio.h for how the HTTP layer drives all this. */
#include "gateway/eio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "switchboard/error.h"

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
    sb_eio_buf_t *pkt_ping, *pkt_noop, *pkt_close, *pkt_probe, *pkt_ok; /* shared constants */
};

static const char R_PARSE[] = "parse error"; /* compared by address */

static const char CT_TEXT[] = "text/plain; charset=UTF-8";
static const char CT_HTML[] = "text/html";
static const char CT_JSON[] = "application/json";

/* ================================================================ buffers */

sb_eio_buf_t *sb_eio_buf_create(size_t headroom, const void *src, size_t len) {
    if (len > UINT32_MAX || headroom > 4096) return NULL;
    sb_eio_buf_t *b = malloc(sizeof *b + headroom + len + 1);
    if (!b) return NULL;
    b->refs = 1;
    b->len = (uint32_t)len;
    b->data = b->mem + headroom;
    if (src && len) memcpy(b->data, src, len);
    b->data[len] = '\0';
    return b;
}

sb_eio_buf_t *sb_eio_buf_ref(sb_eio_buf_t *b) {
    b->refs++;
    return b;
}

void sb_eio_buf_unref(sb_eio_buf_t *b) {
    if (b && --b->refs == 0) free(b);
}

/* ================================================================ codec */

int sb_eio_split_payload(const char *buf, size_t len,
                         int (*fn)(void *ud, const char *pkt, size_t n), void *ud) {
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && buf[i] != '\x1e') continue;
        int rc = fn(ud, buf + start, i - start);
        if (rc) return rc;
        start = i + 1;
    }
    return 0;
}

/* Base64 alphabet with at most two trailing "="; unpadded input is accepted, as Node's
 * decoder does. */
static int sb_eio_is_base64(const char *s, size_t n) {
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '=') {
            if (++pad > 2) return 0;
            continue;
        }
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/';
        if (!ok || pad) return 0;
    }
    return 1;
}

int sb_eio_decode_packet(const char *buf, size_t len, sb_eio_packet_t *out) {
    if (!buf || len == 0) return SB_EINVAL;
    char t = buf[0];
    if ((t < '0' || t > '6') && t != 'b') return SB_EINVAL;
    out->type = t;
    out->data = buf + 1;
    out->len = len - 1;
    if (t == 'b' && !sb_eio_is_base64(out->data, out->len)) return SB_EINVAL;
    return SB_OK;
}

int sb_eio_random_id(char *sid) {
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[15];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return SB_ERR;
        got += (size_t)n;
    }
    for (int i = 0, o = 0; i < 15; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        sid[o++] = b64[v >> 18 & 63];
        sid[o++] = b64[v >> 12 & 63];
        sid[o++] = b64[v >> 6 & 63];
        sid[o++] = b64[v & 63];
    }
    sid[SB_EIO_SID_LEN] = '\0';
    return SB_OK;
}

/* ================================================================ server */

void sb_eio_config_default(sb_eio_config_t *cfg) {
    *cfg = (sb_eio_config_t){
        .ping_interval_ms = 25000,
        .ping_timeout_ms = 20000,
        .upgrade_timeout_ms = 10000,
        .close_grace_ms = 30000,
        .max_payload = 1000000,
        .max_queue_bytes = 1u << 20,
        .max_queue_packets = 1024,
        .max_sessions = 200000,
        .headroom = 0,
    };
}

static sb_eio_id_t sb_eio_id(const sb_eio_server_t *srv, const sb_eio_session_t *s) {
    (void)srv;
    return (sb_eio_id_t)s->gen << 32 | s->slot;
}

static sb_eio_buf_t *sb_eio_const(const sb_eio_server_t *srv, const char *s) {
    return sb_eio_buf_create(srv->cfg.headroom, s, strlen(s));
}

sb_eio_server_t *sb_eio_create(const sb_eio_config_t *cfg, const sb_eio_io_cb_t *io) {
    sb_eio_server_t *srv = calloc(1, sizeof *srv);
    if (!srv) return NULL;
    if (cfg) srv->cfg = *cfg;
    else sb_eio_config_default(&srv->cfg);
    if (srv->cfg.max_queue_packets < 2) srv->cfg.max_queue_packets = 2;
    if (io) srv->io = *io;
    srv->pkt_ping = sb_eio_const(srv, "2");
    srv->pkt_noop = sb_eio_const(srv, "6");
    srv->pkt_close = sb_eio_const(srv, "1");
    srv->pkt_probe = sb_eio_const(srv, "3probe");
    srv->pkt_ok = sb_eio_const(srv, "ok");
    if (!srv->pkt_ping || !srv->pkt_noop || !srv->pkt_close || !srv->pkt_probe || !srv->pkt_ok) {
        sb_eio_free(srv);
        return NULL;
    }
    return srv;
}

/* Back to the ring inside the session (empty), freeing a malloc'd one. */
static void sb_eio_q_release(sb_eio_session_t *s) {
    if (s->q != s->q_small) free(s->q);
    s->q = s->q_small;
    s->qcap = SB_EIO_MIN_QCAP;
    s->qhead = 0;
}

static void sb_eio_q_clear(sb_eio_session_t *s) {
    for (uint32_t i = 0; i < s->qlen; i++)
        sb_eio_buf_unref(s->q[(s->qhead + i) & (s->qcap - 1)]);
    s->qhead = s->qlen = s->qbytes = 0;
}

void sb_eio_free(sb_eio_server_t *srv) {
    if (!srv) return;
    for (uint32_t i = 0; i < srv->hw; i++) {
        sb_eio_session_t *s = srv->slots[i];
        if (!s) continue;
        if (!(s->flags & F_NOTIFIED) && srv->app.on_close)
            srv->app.on_close(srv->app.ud, sb_eio_id(srv, s), "server shutdown");
        sb_eio_q_clear(s);
        sb_eio_q_release(s);
        free(s);
    }
    free(srv->slots);
    free(srv->gens);
    free(srv->due);
    free(srv->free_slots);
    free(srv->buckets);
    free(srv->pending);
    sb_eio_buf_unref(srv->pkt_ping);
    sb_eio_buf_unref(srv->pkt_noop);
    sb_eio_buf_unref(srv->pkt_close);
    sb_eio_buf_unref(srv->pkt_probe);
    sb_eio_buf_unref(srv->pkt_ok);
    free(srv);
}

void sb_eio_set_app(sb_eio_server_t *srv, const sb_eio_app_cb_t *app) {
    srv->app = *app;
}

const sb_eio_config_t *sb_eio_config(const sb_eio_server_t *srv) { return &srv->cfg; }
size_t sb_eio_max_payload(const sb_eio_server_t *srv) { return srv->cfg.max_payload; }
uint32_t sb_eio_count(const sb_eio_server_t *srv) { return srv->nopen; }

/* ================================================================ slot table and sid hash */

static sb_eio_session_t *sb_eio_get(const sb_eio_server_t *srv, sb_eio_id_t id) {
    uint32_t slot = (uint32_t)id, gen = (uint32_t)(id >> 32);
    if (slot >= srv->hw) return NULL;
    sb_eio_session_t *s = srv->slots[slot];
    return s && s->gen == gen ? s : NULL;
}

static uint32_t sb_eio_hash(const char *sid, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)sid[i]) * 16777619u;
    return h;
}

static sb_eio_session_t *sb_eio_lookup(const sb_eio_server_t *srv, const char *sid) {
    size_t n = strnlen(sid, SB_EIO_SID_LEN + 1);
    if (n != SB_EIO_SID_LEN || !srv->nbuckets) return NULL;
    uint32_t i = srv->buckets[sb_eio_hash(sid, n) & (srv->nbuckets - 1)];
    while (i) {
        sb_eio_session_t *s = srv->slots[i - 1];
        if (memcmp(s->sid, sid, SB_EIO_SID_LEN) == 0) return s;
        i = s->hnext;
    }
    return NULL;
}

static void sb_eio_hash_insert(sb_eio_server_t *srv, sb_eio_session_t *s) {
    uint32_t *head = &srv->buckets[sb_eio_hash(s->sid, SB_EIO_SID_LEN) & (srv->nbuckets - 1)];
    s->hnext = *head;
    *head = s->slot + 1;
}

static void sb_eio_hash_remove(sb_eio_server_t *srv, sb_eio_session_t *s) {
    uint32_t *link = &srv->buckets[sb_eio_hash(s->sid, SB_EIO_SID_LEN) & (srv->nbuckets - 1)];
    while (*link && *link != s->slot + 1) link = &srv->slots[*link - 1]->hnext;
    if (*link) *link = s->hnext;
}

/* Doubles the bucket array (keeps load <= 1) and rehashes. */
static int sb_eio_hash_grow(sb_eio_server_t *srv) {
    uint32_t n = srv->nbuckets ? srv->nbuckets * 2 : 64;
    uint32_t *b = calloc(n, sizeof *b);
    if (!b) return SB_ENOMEM;
    free(srv->buckets);
    srv->buckets = b;
    srv->nbuckets = n;
    for (uint32_t i = 0; i < srv->hw; i++)
        if (srv->slots[i]) sb_eio_hash_insert(srv, srv->slots[i]);
    return SB_OK;
}

static int sb_eio_slots_grow(sb_eio_server_t *srv) {
    uint32_t n = srv->cap ? srv->cap * 2 : 64;
    sb_eio_session_t **sl = realloc(srv->slots, n * sizeof *sl);
    if (sl) srv->slots = sl;
    uint32_t *g = realloc(srv->gens, n * sizeof *g);
    if (g) srv->gens = g;
    int64_t *d = realloc(srv->due, n * sizeof *d);
    if (d) srv->due = d;
    uint32_t *f = realloc(srv->free_slots, n * sizeof *f);
    if (f) srv->free_slots = f;
    if (!sl || !g || !d || !f) return SB_ENOMEM;
    srv->cap = n;
    return SB_OK;
}

/* Takes a free slot for s. Returns 0 or SB_ENOMEM. */
static int sb_eio_slot_take(sb_eio_server_t *srv, sb_eio_session_t *s) {
    if (srv->count + 1 > srv->nbuckets && sb_eio_hash_grow(srv)) return SB_ENOMEM;
    if (srv->nfree) {
        s->slot = srv->free_slots[--srv->nfree];
    } else {
        if (srv->hw == srv->cap && sb_eio_slots_grow(srv)) return SB_ENOMEM;
        s->slot = srv->hw++;
        srv->gens[s->slot] = 1;
    }
    srv->slots[s->slot] = s;
    s->gen = srv->gens[s->slot];
    srv->due[s->slot] = SB_EIO_NEVER;
    srv->count++;
    sb_eio_hash_insert(srv, s);
    return SB_OK;
}

static void sb_eio_session_free(sb_eio_server_t *srv, sb_eio_session_t *s) {
    uint32_t slot = s->slot;
    sb_eio_hash_remove(srv, s);
    if (s->state == ST_OPEN) srv->nopen--;
    srv->slots[slot] = NULL;
    srv->due[slot] = SB_EIO_NEVER;
    if (++srv->gens[slot] == 0) srv->gens[slot] = 1;
    srv->free_slots[srv->nfree++] = slot;
    srv->count--;
    sb_eio_q_clear(s);
    sb_eio_q_release(s);
    free(s);
}

/* ================================================================ timers */

static int64_t sb_eio_min(int64_t a, int64_t b) { return a < b ? a : b; }

static void sb_eio_update_due(sb_eio_server_t *srv, sb_eio_session_t *s) {
    int64_t d = s->aux_until;
    if (s->state == ST_OPEN) {
        d = sb_eio_min(d, sb_eio_min(s->ping_due, s->alive_until));
        if (s->app_due) d = sb_eio_min(d, s->app_due);
    }
    srv->due[s->slot] = d;
}

/* Any packet from the client proves it is alive (as in the reference). */
static void sb_eio_heard(sb_eio_server_t *srv, sb_eio_session_t *s, int64_t now) {
    s->alive_until = now + srv->cfg.ping_interval_ms + srv->cfg.ping_timeout_ms;
    sb_eio_update_due(srv, s);
}

/* ================================================================ deferred close */

static void sb_eio_enter(sb_eio_server_t *srv) { srv->depth++; }
static void sb_eio_settle_pending(sb_eio_server_t *srv);
static void sb_eio_leave(sb_eio_server_t *srv) {
    if (--srv->depth == 0 && srv->npending) sb_eio_settle_pending(srv);
}

void sb_eio_batch_begin(sb_eio_server_t *srv) { sb_eio_enter(srv); }
void sb_eio_batch_end(sb_eio_server_t *srv) { sb_eio_leave(srv); }

/* Lists s for settling at depth 0. On allocation failure the session is settled by tick(). */
static void sb_eio_defer(sb_eio_server_t *srv, sb_eio_session_t *s) {
    if (s->flags & F_PENDING) return;
    if (srv->npending == srv->cappending) {
        uint32_t n = srv->cappending ? srv->cappending * 2 : 16;
        sb_eio_id_t *p = realloc(srv->pending, n * sizeof *p);
        if (!p) {
            srv->due[s->slot] = 0;
            return;
        }
        srv->pending = p;
        srv->cappending = n;
    }
    s->flags |= F_PENDING;
    srv->pending[srv->npending++] = sb_eio_id(srv, s);
}

/* Marks s closing; the rest happens in settle(). */
static void sb_eio_mark_closed(sb_eio_server_t *srv, sb_eio_session_t *s, int graceful,
                               const char *reason) {
    if (s->state != ST_OPEN) return;
    s->state = ST_CLOSING;
    srv->nopen--;
    s->reason = reason;
    if (graceful) s->flags |= F_GRACEFUL;
    s->aux_until = srv->now + srv->cfg.close_grace_ms;
    sb_eio_update_due(srv, s);
    sb_eio_defer(srv, s);
}

static void sb_eio_wake(sb_eio_server_t *srv, void *conn) {
    if (conn && srv->io.wake) srv->io.wake(srv->io.ud, conn);
}

/* A closing session: tell the app once, wake its conns once, free it when nothing is left
 * to deliver through a conn. */
static void sb_eio_settle(sb_eio_server_t *srv, sb_eio_session_t *s) {
    if (!(s->flags & F_NOTIFIED)) {
        s->flags |= F_NOTIFIED;
        if (!(s->flags & F_GRACEFUL)) sb_eio_q_clear(s);
        if (srv->app.on_close) srv->app.on_close(srv->app.ud, sb_eio_id(srv, s), s->reason);
        sb_eio_wake(srv, s->poll_conn);
        sb_eio_wake(srv, s->ws_conn);
    }
    /* WebSocket sessions wait for the HTTP layer to detach; a polling session with nothing
     * more to say and no GET to answer is done. */
    if (!s->poll_conn && !s->ws_conn && (s->qlen == 0 || (s->flags & F_WS)))
        sb_eio_session_free(srv, s);
}

static void sb_eio_settle_pending(sb_eio_server_t *srv) {
    srv->depth++;
    while (srv->npending) {
        sb_eio_session_t *s = sb_eio_get(srv, srv->pending[--srv->npending]);
        if (!s) continue;
        s->flags &= ~F_PENDING;
        if (s->state == ST_CLOSING) sb_eio_settle(srv, s);
    }
    srv->depth--;
}

int sb_eio_close(sb_eio_server_t *srv, sb_eio_id_t id, int graceful, const char *reason) {
    sb_eio_session_t *s = sb_eio_get(srv, id);
    if (!s || s->state != ST_OPEN) return SB_ENOTFOUND;
    sb_eio_enter(srv);
    sb_eio_mark_closed(srv, s, graceful, reason ? reason : "server close");
    sb_eio_leave(srv);
    return SB_OK;
}

/* ================================================================ outgoing queue */

static int sb_eio_q_grow(sb_eio_session_t *s, uint32_t limit) {
    uint32_t n = s->qcap * 2;
    if (n > limit * 2) return SB_ENOMEM;
    sb_eio_buf_t **q = malloc(n * sizeof *q);
    if (!q) return SB_ENOMEM;
    for (uint32_t i = 0; i < s->qlen; i++) q[i] = s->q[(s->qhead + i) & (s->qcap - 1)];
    if (s->q != s->q_small) free(s->q);
    s->q = q;
    s->qcap = n;
    s->qhead = 0;
    return SB_OK;
}

static sb_eio_buf_t *sb_eio_q_pop(sb_eio_session_t *s) {
    sb_eio_buf_t *b = s->q[s->qhead];
    s->qhead = (s->qhead + 1) & (s->qcap - 1);
    s->qlen--;
    s->qbytes -= b->len;
    if (s->qlen == 0 && s->qcap > SB_EIO_MIN_QCAP) sb_eio_q_release(s); /* a burst's ring */
    return b;
}

/* The conn that carries the session's queue right now. */
static void *sb_eio_active_conn(const sb_eio_session_t *s) {
    return (s->flags & F_WS) ? s->ws_conn : s->poll_conn;
}

/* A packet joins the queue unless the queue would pass its limits: then the client is not
 * reading and the session is dropped. A packet that finds the queue empty always joins it,
 * however large: the client has read everything before it, so one big event (a large job
 * result) is delivered rather than taken for a slow consumer. */
static int sb_eio_q_push(sb_eio_server_t *srv, sb_eio_session_t *s, sb_eio_buf_t *b) {
    if (s->state != ST_OPEN) return SB_ENOTFOUND;
    if (s->qlen && (s->qlen + 1 > srv->cfg.max_queue_packets ||
                    (size_t)s->qbytes + b->len > srv->cfg.max_queue_bytes)) {
        sb_eio_mark_closed(srv, s, 0, "slow consumer");
        return SB_ETIMEOUT;
    }
    if (s->qlen == s->qcap && sb_eio_q_grow(s, srv->cfg.max_queue_packets)) return SB_ENOMEM;
    s->q[(s->qhead + s->qlen) & (s->qcap - 1)] = sb_eio_buf_ref(b);
    s->qlen++;
    s->qbytes += b->len;
    if (s->qlen == 1) sb_eio_wake(srv, sb_eio_active_conn(s));
    return SB_OK;
}

int sb_eio_send(sb_eio_server_t *srv, sb_eio_id_t id, sb_eio_buf_t *b) {
    sb_eio_session_t *s = sb_eio_get(srv, id);
    if (!s || !b) return SB_ENOTFOUND;
    sb_eio_enter(srv);
    int rc = sb_eio_q_push(srv, s, b);
    sb_eio_leave(srv);
    return rc;
}

int sb_eio_send_text(sb_eio_server_t *srv, sb_eio_id_t id, const char *text, size_t len) {
    sb_eio_session_t *s = sb_eio_get(srv, id);
    if (!s || s->state != ST_OPEN) return SB_ENOTFOUND;
    sb_eio_buf_t *b = sb_eio_buf_create(srv->cfg.headroom, NULL, len + 1);
    if (!b) return SB_ENOMEM;
    b->data[0] = '4';
    memcpy(b->data + 1, text, len);
    int rc = sb_eio_send(srv, id, b);
    sb_eio_buf_unref(b);
    return rc;
}

/* Joins queued packets (at most max_payload bytes, at least one packet) and `extra` into one
 * polling payload. A single packet is handed out as is, without copying. NULL on ENOMEM. */
static sb_eio_buf_t *sb_eio_q_join(sb_eio_server_t *srv, sb_eio_session_t *s,
                                   sb_eio_buf_t *extra) {
    uint32_t n = 0;
    size_t total = 0;
    while (n < s->qlen) {
        size_t len = s->q[(s->qhead + n) & (s->qcap - 1)]->len + (n ? 1 : 0);
        if (n && total + len > srv->cfg.max_payload) break;
        total += len;
        n++;
    }
    if (n < s->qlen) extra = NULL; /* more to come: `1` / `6` only after the last packet */
    if (n == 1 && !extra) return sb_eio_q_pop(s);
    if (n == 0 && extra) return sb_eio_buf_ref(extra);
    if (extra) total += 1 + extra->len;
    sb_eio_buf_t *out = sb_eio_buf_create(srv->cfg.headroom, NULL, total);
    if (!out) return NULL;
    char *p = out->data;
    for (uint32_t i = 0; i < n; i++) {
        sb_eio_buf_t *b = sb_eio_q_pop(s);
        if (i) *p++ = '\x1e';
        memcpy(p, b->data, b->len);
        p += b->len;
        sb_eio_buf_unref(b);
    }
    if (extra) {
        *p++ = '\x1e';
        memcpy(p, extra->data, extra->len);
    }
    return out;
}

/* ================================================================ replies */

static int sb_eio_reply(sb_eio_reply_t *out, int status, const char *ct, sb_eio_buf_t *body,
                        sb_eio_id_t id) {
    *out = (sb_eio_reply_t){.status = status, .content_type = ct, .body = body, .id = id};
    return status;
}

int sb_eio_error_reply(const sb_eio_server_t *srv, int code, int status, sb_eio_reply_t *out) {
    static const char *const messages[] = {"Transport unknown", "Session ID unknown",
                                           "Bad handshake method", "Bad request", "Forbidden",
                                           "Unsupported protocol version"};
    const char *msg = code >= 0 && code <= 5 ? messages[code] : "Bad request";
    char text[96];
    int n = snprintf(text, sizeof text, "{\"code\":%d,\"message\":\"%s\"}", code, msg);
    sb_eio_buf_t *b = sb_eio_buf_create(srv->cfg.headroom, text, (size_t)n);
    return sb_eio_reply(out, b ? status : 500, b ? CT_JSON : NULL, b, 0);
}

/* What a poll GET may be answered with now: NULL = hold. */
static sb_eio_buf_t *sb_eio_poll_ready(sb_eio_server_t *srv, sb_eio_session_t *s) {
    if (s->state == ST_CLOSING)
        return (s->flags & F_WS) ? sb_eio_buf_ref(srv->pkt_close)
                                 : sb_eio_q_join(srv, s, srv->pkt_close);
    if (s->flags & F_NOOP) {
        s->flags &= ~F_NOOP;
        return sb_eio_buf_ref(srv->pkt_noop);
    }
    if (s->qlen && !(s->flags & F_WS)) return sb_eio_q_join(srv, s, NULL);
    return NULL;
}

/* Answers the GET held on s if there is something to say; returns 1 when *out was filled. */
static int sb_eio_poll_answer(sb_eio_server_t *srv, sb_eio_session_t *s, sb_eio_reply_t *out) {
    sb_eio_buf_t *body = sb_eio_poll_ready(srv, s);
    if (!body) return 0;
    s->poll_conn = NULL;
    if (s->state == ST_CLOSING) sb_eio_defer(srv, s); /* may be freeable now */
    sb_eio_reply(out, 200, CT_TEXT, body, sb_eio_id(srv, s));
    return 1;
}

/* ================================================================ incoming packets */

typedef struct sb_eio_rx {
    sb_eio_server_t *srv;
    sb_eio_session_t *s;
    int64_t now;
} sb_eio_rx_t;

static void sb_eio_on_pong(sb_eio_server_t *srv, sb_eio_session_t *s, int64_t now) {
    s->ping_due = now + srv->cfg.ping_interval_ms;
    sb_eio_update_due(srv, s);
}

/* One packet on the active transport. Returns 0 to go on, 1 when the session closed. */
static int sb_eio_on_packet(void *ud, const char *pkt, size_t n) {
    sb_eio_rx_t *rx = ud;
    sb_eio_server_t *srv = rx->srv;
    sb_eio_session_t *s = rx->s;
    sb_eio_packet_t p;
    if (s->state != ST_OPEN) return 1;
    if (sb_eio_decode_packet(pkt, n, &p)) {
        sb_eio_mark_closed(srv, s, 0, R_PARSE);
        return 1;
    }
    sb_eio_heard(srv, s, rx->now);
    switch (p.type) {
    case '1': sb_eio_mark_closed(srv, s, 0, "transport close"); return 1;
    case '2': sb_eio_mark_closed(srv, s, 0, "invalid heartbeat direction"); return 1;
    case '3': sb_eio_on_pong(srv, s, rx->now); break;
    case '4':
    case 'b':
        if (srv->app.on_message)
            srv->app.on_message(srv->app.ud, sb_eio_id(srv, s), p.data, p.len, p.type == 'b',
                                rx->now);
        break;
    default: break; /* open, upgrade, noop: ignored, as the reference does */
    }
    return s->state == ST_OPEN ? 0 : 1;
}

/* ================================================================ HTTP requests */

static int sb_eio_transport_ok(const char *t) {
    return t && (strcmp(t, "polling") == 0 || strcmp(t, "websocket") == 0);
}

/* The checks of the reference's verify() and handshake(), in its order. Returns 0 or the
 * error status with *out filled. *found gets the session when the request names one. */
static int sb_eio_verify(sb_eio_server_t *srv, const sb_eio_req_t *req, sb_eio_reply_t *out,
                         sb_eio_session_t **found) {
    *found = NULL;
    if (!sb_eio_transport_ok(req->transport))
        return sb_eio_error_reply(srv, SB_EIO_ERR_TRANSPORT, 400, out);
    int ws_transport = strcmp(req->transport, "websocket") == 0;
    if ((req->websocket != 0) != ws_transport)
        return sb_eio_error_reply(srv, SB_EIO_ERR_BAD, 400, out);
    if (req->sid) {
        sb_eio_session_t *s = sb_eio_lookup(srv, req->sid);
        /* a closing polling session still takes one GET, to deliver its last packets */
        if (!s || (s->state != ST_OPEN && (req->websocket || req->method != SB_EIO_GET)))
            return sb_eio_error_reply(srv, SB_EIO_ERR_SID, 400, out);
        if (!req->websocket && ((s->flags & F_WS) || req->method == SB_EIO_OTHER))
            return sb_eio_error_reply(srv, SB_EIO_ERR_BAD, 400, out);
        if (req->websocket && (s->ws_conn || (s->flags & F_WS)))
            return sb_eio_error_reply(srv, SB_EIO_ERR_BAD, 400, out);
        *found = s;
        return 0;
    }
    if (req->method != SB_EIO_GET) return sb_eio_error_reply(srv, SB_EIO_ERR_METHOD, 400, out);
    if (!req->eio || strcmp(req->eio, "4") != 0)
        return sb_eio_error_reply(srv, SB_EIO_ERR_VERSION, 400, out);
    if (srv->nopen >= srv->cfg.max_sessions) {
        sb_eio_error_reply(srv, SB_EIO_ERR_BAD, 503, out);
        return out->status;
    }
    return 0;
}

int sb_eio_check(sb_eio_server_t *srv, const sb_eio_req_t *req, sb_eio_reply_t *out) {
    sb_eio_session_t *s;
    return sb_eio_verify(srv, req, out, &s);
}

static sb_eio_buf_t *sb_eio_open_packet(sb_eio_server_t *srv, const sb_eio_session_t *s) {
    char text[256];
    int n = snprintf(text, sizeof text,
                     "0{\"sid\":\"%s\",\"upgrades\":[%s],\"pingInterval\":%d,"
                     "\"pingTimeout\":%d,\"maxPayload\":%zu}",
                     s->sid, (s->flags & F_WS) ? "" : "\"websocket\"",
                     srv->cfg.ping_interval_ms, srv->cfg.ping_timeout_ms, srv->cfg.max_payload);
    return sb_eio_buf_create(srv->cfg.headroom, text, (size_t)n);
}

/* New session on polling (ws_conn NULL) or on a WebSocket. NULL on failure. */
static sb_eio_session_t *sb_eio_session_open(sb_eio_server_t *srv, void *ws_conn, int64_t now) {
    sb_eio_session_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->q = s->q_small;
    s->qcap = SB_EIO_MIN_QCAP;
    do {
        if (sb_eio_random_id(s->sid)) {
            free(s);
            return NULL;
        }
    } while (sb_eio_lookup(srv, s->sid));
    if (sb_eio_slot_take(srv, s)) {
        free(s);
        return NULL;
    }
    s->state = ST_OPEN;
    srv->nopen++;
    if (ws_conn) {
        s->flags = F_WS;
        s->ws_conn = ws_conn;
    }
    s->ping_due = now + srv->cfg.ping_interval_ms;
    s->alive_until = now + srv->cfg.ping_interval_ms + srv->cfg.ping_timeout_ms;
    s->aux_until = SB_EIO_NEVER;
    sb_eio_update_due(srv, s);
    sb_eio_buf_t *open = sb_eio_open_packet(srv, s);
    int rc = open ? sb_eio_q_push(srv, s, open) : SB_ENOMEM;
    sb_eio_buf_unref(open);
    if (rc) {
        sb_eio_session_free(srv, s);
        return NULL;
    }
    if (srv->app.on_open) srv->app.on_open(srv->app.ud, sb_eio_id(srv, s), now);
    return s;
}

static int sb_eio_handshake(sb_eio_server_t *srv, const sb_eio_req_t *req, void *conn,
                            int64_t now, sb_eio_reply_t *out) {
    sb_eio_session_t *s = sb_eio_session_open(srv, req->websocket ? conn : NULL, now);
    if (!s) return sb_eio_reply(out, 500, NULL, NULL, 0);
    sb_eio_id_t id = sb_eio_id(srv, s);
    if (req->websocket) return sb_eio_reply(out, 101, NULL, NULL, id);
    sb_eio_buf_t *body = s->state == ST_OPEN ? sb_eio_q_join(srv, s, NULL) : NULL;
    if (!body) return sb_eio_reply(out, 500, NULL, NULL, id);
    return sb_eio_reply(out, 200, CT_TEXT, body, id);
}

static int sb_eio_get_req(sb_eio_server_t *srv, sb_eio_session_t *s, void *conn,
                          sb_eio_reply_t *out) {
    if (s->poll_conn) {
        sb_eio_mark_closed(srv, s, 0, "transport error"); /* overlap from client */
        return sb_eio_error_reply(srv, SB_EIO_ERR_BAD, 400, out);
    }
    s->poll_conn = conn;
    if ((s->flags & F_PROBED) && s->qlen == 0) s->flags |= F_NOOP; /* fast upgrade */
    if (sb_eio_poll_answer(srv, s, out)) return out->status;
    return sb_eio_reply(out, SB_EIO_HOLD, NULL, NULL, sb_eio_id(srv, s));
}

static int sb_eio_post_req(sb_eio_server_t *srv, sb_eio_session_t *s, const sb_eio_req_t *req,
                           int64_t now, sb_eio_reply_t *out) {
    if (req->body_len > srv->cfg.max_payload) {
        sb_eio_mark_closed(srv, s, 0, "transport error");
        sb_eio_error_reply(srv, SB_EIO_ERR_BAD, 413, out);
        return out->status;
    }
    sb_eio_rx_t rx = {srv, s, now};
    sb_eio_id_t id = sb_eio_id(srv, s);
    sb_eio_split_payload(req->body ? req->body : "", req->body_len, sb_eio_on_packet, &rx);
    if (s->state != ST_OPEN && s->reason == R_PARSE)
        return sb_eio_error_reply(srv, SB_EIO_ERR_BAD, 400, out);
    return sb_eio_reply(out, 200, CT_HTML, sb_eio_buf_ref(srv->pkt_ok), id);
}

static int sb_eio_ws_req(sb_eio_server_t *srv, sb_eio_session_t *s, void *conn, int64_t now,
                         sb_eio_reply_t *out) {
    s->ws_conn = conn;
    s->flags |= F_PROBING;
    s->aux_until = now + srv->cfg.upgrade_timeout_ms;
    sb_eio_update_due(srv, s);
    return sb_eio_reply(out, 101, NULL, NULL, sb_eio_id(srv, s));
}

int sb_eio_http(sb_eio_server_t *srv, const sb_eio_req_t *req, void *conn, int64_t now,
                sb_eio_reply_t *out) {
    sb_eio_session_t *s;
    srv->now = now;
    if (sb_eio_verify(srv, req, out, &s)) return out->status;
    if (!conn && (req->websocket || (s && req->method == SB_EIO_GET))) /* nothing to hold */
        return sb_eio_error_reply(srv, SB_EIO_ERR_BAD, 400, out);
    sb_eio_enter(srv);
    int status;
    if (!s) status = sb_eio_handshake(srv, req, conn, now, out);
    else if (req->websocket) status = sb_eio_ws_req(srv, s, conn, now, out);
    else if (req->method == SB_EIO_GET) status = sb_eio_get_req(srv, s, conn, out);
    else status = sb_eio_post_req(srv, s, req, now, out);
    sb_eio_leave(srv);
    return status;
}

int sb_eio_poll_pull(sb_eio_server_t *srv, sb_eio_id_t id, void *conn, sb_eio_reply_t *out) {
    sb_eio_session_t *s = sb_eio_get(srv, id);
    if (!s || !conn || s->poll_conn != conn) {
        sb_eio_error_reply(srv, SB_EIO_ERR_SID, 400, out);
        return 1;
    }
    sb_eio_enter(srv);
    int rc = sb_eio_poll_answer(srv, s, out);
    sb_eio_leave(srv);
    return rc;
}

/* ================================================================ WebSocket */

/* The probe failed: forget its conn and wake it so its next pull says SB_EIO_CLOSE. */
static void sb_eio_probe_fail(sb_eio_server_t *srv, sb_eio_session_t *s) {
    void *conn = s->ws_conn;
    s->ws_conn = NULL;
    s->flags &= ~(F_PROBING | F_PROBED | F_PROBE_REPLY | F_NOOP);
    s->aux_until = s->state == ST_OPEN ? SB_EIO_NEVER : s->aux_until;
    sb_eio_update_due(srv, s);
    sb_eio_wake(srv, conn);
}

static void sb_eio_upgrade_done(sb_eio_server_t *srv, sb_eio_session_t *s) {
    s->flags = (uint16_t)((s->flags & ~(F_PROBING | F_PROBED | F_PROBE_REPLY)) | F_WS);
    s->aux_until = SB_EIO_NEVER;
    sb_eio_update_due(srv, s);
    if (s->poll_conn) { /* release the held GET; polling is over */
        s->flags |= F_NOOP;
        sb_eio_wake(srv, s->poll_conn);
    } else {
        s->flags &= ~F_NOOP;
    }
    if (s->qlen) sb_eio_wake(srv, s->ws_conn);
}

static int sb_eio_probe_frame(sb_eio_server_t *srv, sb_eio_session_t *s, const char *data,
                              size_t len, int binary) {
    if (!binary && len == 6 && memcmp(data, "2probe", 6) == 0 && !(s->flags & F_PROBED)) {
        s->flags |= F_PROBED | F_PROBE_REPLY;
        sb_eio_wake(srv, s->ws_conn);
        if (s->poll_conn) {
            s->flags |= F_NOOP;
            sb_eio_wake(srv, s->poll_conn);
        }
        return SB_OK;
    }
    if (!binary && len == 1 && data[0] == '5' && (s->flags & F_PROBED)) {
        sb_eio_upgrade_done(srv, s);
        return SB_OK;
    }
    sb_eio_probe_fail(srv, s);
    return SB_EINVAL;
}

int sb_eio_ws_frame(sb_eio_server_t *srv, sb_eio_id_t id, void *conn, const char *data,
                    size_t len, int binary, int64_t now) {
    sb_eio_session_t *s = sb_eio_get(srv, id);
    if (!s || !conn || s->ws_conn != conn) return SB_ENOTFOUND;
    if (s->state != ST_OPEN) return SB_OK; /* closing: drain, ignore input */
    srv->now = now;
    sb_eio_enter(srv);
    int rc = SB_OK;
    if (len > srv->cfg.max_payload) {
        if (s->flags & F_PROBING) sb_eio_probe_fail(srv, s);
        else sb_eio_mark_closed(srv, s, 0, "transport error");
        rc = SB_EINVAL;
    } else if (s->flags & F_PROBING) {
        rc = sb_eio_probe_frame(srv, s, data, len, binary);
    } else if (binary) {
        sb_eio_heard(srv, s, now);
        if (srv->app.on_message) srv->app.on_message(srv->app.ud, id, data, len, 1, now);
    } else {
        sb_eio_rx_t rx = {srv, s, now};
        sb_eio_on_packet(&rx, data, len);
        if (s->state != ST_OPEN && s->reason == R_PARSE) rc = SB_EINVAL;
    }
    sb_eio_leave(srv);
    return rc;
}

int sb_eio_ws_pull(sb_eio_server_t *srv, sb_eio_id_t id, void *conn, sb_eio_buf_t **out) {
    *out = NULL;
    sb_eio_session_t *s = sb_eio_get(srv, id);
    if (!s || !conn || s->ws_conn != conn) return SB_EIO_CLOSE;
    if (s->flags & F_PROBING) {
        if (!(s->flags & F_PROBE_REPLY)) return s->state == ST_OPEN ? 0 : SB_EIO_CLOSE;
        s->flags &= ~F_PROBE_REPLY;
        *out = sb_eio_buf_ref(srv->pkt_probe);
        return 1;
    }
    if (s->qlen) {
        *out = sb_eio_q_pop(s);
        return 1;
    }
    return s->state == ST_OPEN ? 0 : SB_EIO_CLOSE;
}

void sb_eio_detach(sb_eio_server_t *srv, sb_eio_id_t id, void *conn) {
    sb_eio_session_t *s = sb_eio_get(srv, id);
    if (!s || !conn) return;
    sb_eio_enter(srv);
    if (s->poll_conn == conn) {
        s->poll_conn = NULL;
        sb_eio_mark_closed(srv, s, 0, "transport error"); /* poll closed prematurely */
    }
    if (s->ws_conn == conn) {
        if (s->flags & F_PROBING) {
            s->ws_conn = NULL;
            sb_eio_probe_fail(srv, s);
        } else {
            s->ws_conn = NULL;
            sb_eio_mark_closed(srv, s, 0, "transport close");
        }
    }
    if (s->state == ST_CLOSING) sb_eio_defer(srv, s);
    sb_eio_leave(srv);
}

/* ================================================================ tick */

static void sb_eio_run_timers(sb_eio_server_t *srv, sb_eio_session_t *s, int64_t now) {
    if (s->state == ST_CLOSING) { /* grace over: nobody came for the rest */
        if (s->aux_until <= now) {
            sb_eio_q_clear(s);
            s->poll_conn = s->ws_conn = NULL;
            s->aux_until = SB_EIO_NEVER;
        }
        sb_eio_defer(srv, s);
        return;
    }
    if (s->alive_until <= now) {
        sb_eio_mark_closed(srv, s, 0, "ping timeout");
        return;
    }
    if ((s->flags & F_PROBING) && s->aux_until <= now) sb_eio_probe_fail(srv, s);
    if (s->ping_due <= now) {
        s->ping_due = SB_EIO_NEVER;
        s->alive_until = now + srv->cfg.ping_timeout_ms;
        if (sb_eio_q_push(srv, s, srv->pkt_ping)) return;
    }
    if (s->app_due && s->app_due <= now) {
        s->app_due = 0;
        if (srv->app.on_timer) srv->app.on_timer(srv->app.ud, sb_eio_id(srv, s), now);
    }
    sb_eio_update_due(srv, s); /* sessions are only freed at depth 0, so s is still here */
}

int64_t sb_eio_tick(sb_eio_server_t *srv, int64_t now) {
    srv->now = now;
    sb_eio_enter(srv);
    for (uint32_t i = 0; i < srv->hw; i++)
        if (srv->due[i] <= now && srv->slots[i]) sb_eio_run_timers(srv, srv->slots[i], now);
    sb_eio_leave(srv);
    int64_t next = SB_EIO_NEVER;
    for (uint32_t i = 0; i < srv->hw; i++) next = sb_eio_min(next, srv->due[i]);
    return next;
}

/* ================================================================ accessors */

int sb_eio_set_timer(sb_eio_server_t *srv, sb_eio_id_t id, int64_t at) {
    sb_eio_session_t *s = sb_eio_get(srv, id);
    if (!s) return SB_ENOTFOUND;
    s->app_due = at > 0 ? at : 0;
    sb_eio_update_due(srv, s);
    return SB_OK;
}

void *sb_eio_app_data(const sb_eio_server_t *srv, sb_eio_id_t id) {
    sb_eio_session_t *s = sb_eio_get(srv, id);
    return s ? s->app : NULL;
}

int sb_eio_set_app_data(sb_eio_server_t *srv, sb_eio_id_t id, void *p) {
    sb_eio_session_t *s = sb_eio_get(srv, id);
    if (!s) return SB_ENOTFOUND;
    s->app = p;
    return SB_OK;
}

const char *sb_eio_sid(const sb_eio_server_t *srv, sb_eio_id_t id) {
    sb_eio_session_t *s = sb_eio_get(srv, id);
    return s ? s->sid : NULL;
}

int sb_eio_is_open(const sb_eio_server_t *srv, sb_eio_id_t id) {
    sb_eio_session_t *s = sb_eio_get(srv, id);
    return s && s->state == ST_OPEN;
}

int sb_eio_is_websocket(const sb_eio_server_t *srv, sb_eio_id_t id) {
    sb_eio_session_t *s = sb_eio_get(srv, id);
    if (!s) return SB_ENOTFOUND;
    return (s->flags & F_WS) ? 1 : 0;
}

uint32_t sb_eio_queued(const sb_eio_server_t *srv, sb_eio_id_t id) {
    sb_eio_session_t *s = sb_eio_get(srv, id);
    return s ? s->qlen : 0;
}

size_t sb_eio_session_size(void) { return sizeof(sb_eio_session_t); }

void sb_eio_foreach(sb_eio_server_t *srv, void (*fn)(void *ud, sb_eio_id_t id), void *ud) {
    sb_eio_enter(srv);
    for (uint32_t i = 0; i < srv->hw; i++) {
        sb_eio_session_t *s = srv->slots[i];
        if (s && s->state == ST_OPEN) fn(ud, sb_eio_id(srv, s));
    }
    sb_eio_leave(srv);
}
