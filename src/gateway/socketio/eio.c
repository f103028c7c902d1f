/* Engine.IO v4 (and v3) server sessions: the server object, its slot table and sid hash, session
 * open/free, deadlines (heartbeat, upgrade, close grace), deferred close, incoming packet
 * dispatch, tick and accessors. The transports are in eio_http.c (handshake, long-polling)
 * and eio_ws.c (WebSocket, upgrade), the outgoing queue in eio_queue.c, the pure codec in
 * eio_codec.c; eio_internal.h shares the structs between them.
 *
 * Sessions live in a slot table (slots[], gens[] generations, due[] next deadline) and a sid
 * hash chained through the sessions; handles are generation << 32 | slot, so a stale handle is
 * simply not found (a live session keeps its slot's generation, so finding it by handle reads
 * slots[] and the session only). Closing only marks the session and lists it in pending[];
 * settle() runs the app's on_close, wakes the attached conns and frees the session when the
 * outermost call returns (depth 0). Time only enters through `now` arguments: tick() scans
 * due[] and runs what is due. See the design note in eio.h for how the HTTP layer drives all
 * this. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/socketio/eio_internal.h"
#include "switchboard/error.h"

const char sb__eio_r_parse[] = "parse error";

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
    srv->armed = SB_EIO_NEVER;
    srv->pkt_ping = sb_eio_const(srv, "2");
    srv->pkt_noop = sb_eio_const(srv, "6");
    srv->pkt_close = sb_eio_const(srv, "1");
    srv->pkt_probe = sb_eio_const(srv, "3probe");
    srv->pkt_ok = sb_eio_const(srv, "ok");
    srv->pkt_pong = sb_eio_const(srv, "3");
    if (!srv->pkt_ping || !srv->pkt_noop || !srv->pkt_close || !srv->pkt_probe || !srv->pkt_ok ||
        !srv->pkt_pong) {
        sb_eio_free(srv);
        return NULL;
    }
    return srv;
}

void sb_eio_free(sb_eio_server_t *srv) {
    if (!srv) return;
    for (uint32_t i = 0; i < srv->hw; i++) {
        sb_eio_session_t *s = srv->slots[i];
        if (!s) continue;
        if (!(s->flags & F_NOTIFIED) && srv->app.on_close)
            srv->app.on_close(srv->app.ud, sb__eio_id(srv, s), "server shutdown");
        sb__eio_q_clear(s);
        sb__eio_q_release(s);
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
    sb_eio_buf_unref(srv->pkt_pong);
    free(srv);
}

void sb_eio_set_app(sb_eio_server_t *srv, const sb_eio_app_cb_t *app) {
    srv->app = *app;
}

const sb_eio_config_t *sb_eio_config(const sb_eio_server_t *srv) { return &srv->cfg; }
size_t sb_eio_max_payload(const sb_eio_server_t *srv) { return srv->cfg.max_payload; }
uint32_t sb_eio_count(const sb_eio_server_t *srv) { return srv->nopen; }

/* ================================================================ slot table and sid hash */

static uint32_t sb_eio_hash(const char *sid, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)sid[i]) * 16777619u;
    return h;
}

sb_eio_session_t *sb__eio_lookup(const sb_eio_server_t *srv, const char *sid) {
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
    sb__eio_q_clear(s);
    sb__eio_q_release(s);
    free(s);
}

/* ================================================================ timers */

void sb__eio_set_due(sb_eio_server_t *srv, uint32_t slot, int64_t d) {
    srv->due[slot] = d;
    if (d >= srv->armed || srv->ticking) return;
    srv->armed = d;
    if (srv->io.schedule) srv->io.schedule(srv->io.ud, d);
}

void sb__eio_update_due(sb_eio_server_t *srv, sb_eio_session_t *s) {
    int64_t d = s->aux_until;
    if (s->state == ST_OPEN) {
        d = sb__eio_min(d, sb__eio_min(s->ping_due, s->alive_until));
        if (s->app_due) d = sb__eio_min(d, s->app_due);
    }
    sb__eio_set_due(srv, s->slot, d);
}

/* Any packet from the client proves it is alive (as in the reference). */
void sb__eio_heard(sb_eio_server_t *srv, sb_eio_session_t *s, int64_t now) {
    s->alive_until = now + srv->cfg.ping_interval_ms + srv->cfg.ping_timeout_ms;
    sb__eio_update_due(srv, s);
}

/* ================================================================ deferred close */

static void sb_eio_settle_pending(sb_eio_server_t *srv);

void sb__eio_leave(sb_eio_server_t *srv) {
    if (--srv->depth == 0 && srv->npending) sb_eio_settle_pending(srv);
}

void sb_eio_batch_begin(sb_eio_server_t *srv) { sb__eio_enter(srv); }
void sb_eio_batch_end(sb_eio_server_t *srv) { sb__eio_leave(srv); }

/* Lists s for settling at depth 0. On allocation failure the session is settled by tick(). */
void sb__eio_defer(sb_eio_server_t *srv, sb_eio_session_t *s) {
    if (s->flags & F_PENDING) return;
    if (srv->npending == srv->cappending) {
        uint32_t n = srv->cappending ? srv->cappending * 2 : 16;
        sb_eio_id_t *p = realloc(srv->pending, n * sizeof *p);
        if (!p) {
            sb__eio_set_due(srv, s->slot, 0);
            return;
        }
        srv->pending = p;
        srv->cappending = n;
    }
    s->flags |= F_PENDING;
    srv->pending[srv->npending++] = sb__eio_id(srv, s);
}

/* Marks s closing; the rest happens in settle(). */
void sb__eio_mark_closed(sb_eio_server_t *srv, sb_eio_session_t *s, int graceful,
                         const char *reason) {
    if (s->state != ST_OPEN) return;
    s->state = ST_CLOSING;
    srv->nopen--;
    s->reason = reason;
    if (graceful) s->flags |= F_GRACEFUL;
    s->aux_until = srv->now + srv->cfg.close_grace_ms;
    sb__eio_update_due(srv, s);
    sb__eio_defer(srv, s);
}

void sb__eio_wake(sb_eio_server_t *srv, void *conn) {
    if (conn && srv->io.wake) srv->io.wake(srv->io.ud, conn);
}

/* A closing session: tell the app once, wake its conns once, free it when nothing is left
 * to deliver through a conn. */
static void sb_eio_settle(sb_eio_server_t *srv, sb_eio_session_t *s) {
    if (!(s->flags & F_NOTIFIED)) {
        s->flags |= F_NOTIFIED;
        if (!(s->flags & F_GRACEFUL)) sb__eio_q_clear(s);
        if (srv->app.on_close) srv->app.on_close(srv->app.ud, sb__eio_id(srv, s), s->reason);
        sb__eio_wake(srv, s->poll_conn);
        sb__eio_wake(srv, s->ws_conn);
    }
    /* WebSocket sessions wait for the HTTP layer to detach; a polling session with nothing
     * more to say and no GET to answer is done. */
    if (!s->poll_conn && !s->ws_conn && (s->qlen == 0 || (s->flags & F_WS)))
        sb_eio_session_free(srv, s);
}

static void sb_eio_settle_pending(sb_eio_server_t *srv) {
    srv->depth++;
    while (srv->npending) {
        sb_eio_session_t *s = sb__eio_get(srv, srv->pending[--srv->npending]);
        if (!s) continue;
        s->flags &= ~F_PENDING;
        if (s->state == ST_CLOSING) sb_eio_settle(srv, s);
    }
    srv->depth--;
}

int sb_eio_close(sb_eio_server_t *srv, sb_eio_id_t id, int graceful, const char *reason) {
    sb_eio_session_t *s = sb__eio_get(srv, id);
    if (!s || s->state != ST_OPEN) return SB_ENOTFOUND;
    sb__eio_enter(srv);
    sb__eio_mark_closed(srv, s, graceful, reason ? reason : "server close");
    sb__eio_leave(srv);
    return SB_OK;
}

/* ================================================================ incoming packets */

static void sb_eio_on_pong(sb_eio_server_t *srv, sb_eio_session_t *s, int64_t now) {
    s->ping_due = now + srv->cfg.ping_interval_ms;
    sb__eio_update_due(srv, s);
}

/* A `b` packet's base64 (polling): the app gets its bytes, as from a binary WebSocket frame. */
static int sb_eio_on_base64(sb_eio_server_t *srv, sb_eio_session_t *s, const sb_eio_packet_t *p,
                            int64_t now) {
    char *bytes;
    size_t len;
    int rc = sb_eio_base64_decode(p->data, p->len, &bytes, &len);
    if (rc) {
        sb__eio_mark_closed(srv, s, 0, rc == SB_EINVAL ? sb__eio_r_parse : "server error");
        return 1;
    }
    if (srv->app.on_message)
        srv->app.on_message(srv->app.ud, sb__eio_id(srv, s), bytes, len, 1, now);
    free(bytes);
    return s->state == ST_OPEN ? 0 : 1;
}

/* v3: the client pings, the server answers at once; the session lives pingInterval +
 * pingTimeout past each ping (the reference's resetPingTimeout for protocol 3). */
static void sb_eio_on_ping3(sb_eio_server_t *srv, sb_eio_session_t *s, int64_t now) {
    sb__eio_heard(srv, s, now);
    sb__eio_q_push(srv, s, srv->pkt_pong);
}

/* A decoded packet (rc: the decoder's result) on the active transport; raw: a `b` packet's
 * data is its bytes already (a v3 binary payload), not base64. */
static int sb_eio_dispatch(sb__eio_rx_t *rx, int rc, const sb_eio_packet_t *p, int raw) {
    sb_eio_server_t *srv = rx->srv;
    sb_eio_session_t *s = rx->s;
    int v3 = (s->flags & F_EIO3) != 0;
    if (rc) {
        sb__eio_mark_closed(srv, s, 0, sb__eio_r_parse);
        return 1;
    }
    if (!v3) sb__eio_heard(srv, s, rx->now); /* v3: only a ping proves it alive */
    switch (p->type) {
    case '1':
        s->flags |= F_PEER_CLOSE;
        sb__eio_mark_closed(srv, s, 0, "transport close");
        return 1;
    case '2':
        if (v3) sb_eio_on_ping3(srv, s, rx->now);
        else sb__eio_mark_closed(srv, s, 0, "invalid heartbeat direction");
        break;
    case '3':
        if (v3) sb__eio_mark_closed(srv, s, 0, "invalid heartbeat direction");
        else sb_eio_on_pong(srv, s, rx->now);
        break;
    case '4':
    case 'b':
        if (p->type == 'b' && !raw) return sb_eio_on_base64(srv, s, p, rx->now);
        if (srv->app.on_message)
            srv->app.on_message(srv->app.ud, sb__eio_id(srv, s), p->data, p->len,
                                p->type == 'b', rx->now);
        break;
    default: break; /* open, upgrade, noop: ignored, as the reference does */
    }
    return s->state == ST_OPEN ? 0 : 1;
}

int sb__eio_on_packet(void *ud, const char *pkt, size_t n) {
    sb__eio_rx_t *rx = ud;
    sb_eio_packet_t p;
    if (rx->s->state != ST_OPEN) return 1;
    return sb_eio_dispatch(rx, sb_eio_decode_packet(pkt, n, &p), &p, 0);
}

int sb__eio_on_packet3(void *ud, const char *pkt, size_t n, int binary) {
    sb__eio_rx_t *rx = ud;
    sb_eio_packet_t p;
    if (rx->s->state != ST_OPEN) return 1;
    return sb_eio_dispatch(rx, sb_eio_decode_packet3(pkt, n, binary, &p), &p, binary);
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
sb_eio_session_t *sb__eio_session_open(sb_eio_server_t *srv, void *ws_conn, int v3,
                                       int64_t now) {
    sb_eio_session_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->q = s->q_small;
    s->qcap = SB_EIO_MIN_QCAP;
    do {
        if (sb_eio_random_id(s->sid)) {
            free(s);
            return NULL;
        }
    } while (sb__eio_lookup(srv, s->sid));
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
    if (v3) s->flags |= F_EIO3;
    s->ping_due = v3 ? SB_EIO_NEVER : now + srv->cfg.ping_interval_ms; /* v3: the client pings */
    s->alive_until = now + srv->cfg.ping_interval_ms + srv->cfg.ping_timeout_ms;
    s->aux_until = SB_EIO_NEVER;
    sb__eio_update_due(srv, s);
    sb_eio_buf_t *open = sb_eio_open_packet(srv, s);
    int rc = open ? sb__eio_q_push(srv, s, open) : SB_ENOMEM;
    sb_eio_buf_unref(open);
    if (rc) {
        sb_eio_session_free(srv, s);
        return NULL;
    }
    if (srv->app.on_open) srv->app.on_open(srv->app.ud, sb__eio_id(srv, s), now);
    return s;
}

void sb_eio_detach(sb_eio_server_t *srv, sb_eio_id_t id, void *conn) {
    sb_eio_session_t *s = sb__eio_get(srv, id);
    if (!s || !conn) return;
    if (s->post_tag == sb__eio_conn_tag(conn) && s->poll_conn != conn && s->ws_conn != conn) {
        s->post_tag = 0; /* an active POST (sb_eio_post_begin): only forgotten */
        return;
    }
    sb__eio_enter(srv);
    if (s->poll_conn == conn) {
        s->poll_conn = NULL;
        sb__eio_mark_closed(srv, s, 0, "transport error"); /* poll closed prematurely */
    }
    if (s->ws_conn == conn) {
        if (s->flags & F_PROBING) {
            s->ws_conn = NULL;
            sb__eio_probe_fail(srv, s);
        } else {
            s->ws_conn = NULL;
            sb__eio_mark_closed(srv, s, 0, "transport close");
        }
    }
    if (s->state == ST_CLOSING) sb__eio_defer(srv, s);
    sb__eio_leave(srv);
}

/* ================================================================ tick */

static void sb_eio_run_timers(sb_eio_server_t *srv, sb_eio_session_t *s, int64_t now) {
    if (s->state == ST_CLOSING) { /* grace over: nobody came for the rest */
        if (s->aux_until <= now) {
            sb__eio_q_clear(s);
            s->poll_conn = s->ws_conn = NULL;
            s->aux_until = SB_EIO_NEVER;
        }
        sb__eio_defer(srv, s);
        return;
    }
    /* the ping first: it is always due before the liveness deadline of the same pong, and
     * a late tick (a stalled loop) must not drop a client that was never pinged */
    if (s->ping_due <= now) {
        s->ping_due = SB_EIO_NEVER;
        s->alive_until = now + srv->cfg.ping_timeout_ms;
        if (sb__eio_q_push(srv, s, srv->pkt_ping)) return;
    }
    if (s->alive_until <= now) {
        sb__eio_mark_closed(srv, s, 0, "ping timeout");
        return;
    }
    if ((s->flags & F_PROBING) && s->aux_until <= now) sb__eio_probe_fail(srv, s);
    if (s->app_due && s->app_due <= now) {
        s->app_due = 0;
        if (srv->app.on_timer) srv->app.on_timer(srv->app.ud, sb__eio_id(srv, s), now);
    }
    sb__eio_update_due(srv, s); /* sessions are only freed at depth 0, so s is still here */
}

int64_t sb_eio_tick(sb_eio_server_t *srv, int64_t now) {
    srv->now = now;
    srv->ticking++;
    sb__eio_enter(srv);
    for (uint32_t i = 0; i < srv->hw; i++)
        if (srv->due[i] <= now && srv->slots[i]) sb_eio_run_timers(srv, srv->slots[i], now);
    sb__eio_leave(srv);
    srv->ticking--;
    int64_t next = SB_EIO_NEVER;
    for (uint32_t i = 0; i < srv->hw; i++) next = sb__eio_min(next, srv->due[i]);
    srv->armed = next;
    return next;
}

/* ================================================================ accessors */

int sb_eio_set_timer(sb_eio_server_t *srv, sb_eio_id_t id, int64_t at) {
    sb_eio_session_t *s = sb__eio_get(srv, id);
    if (!s) return SB_ENOTFOUND;
    s->app_due = at > 0 ? at : 0;
    sb__eio_update_due(srv, s);
    return SB_OK;
}

void *sb_eio_app_data(const sb_eio_server_t *srv, sb_eio_id_t id) {
    sb_eio_session_t *s = sb__eio_get(srv, id);
    return s ? s->app : NULL;
}

int sb_eio_set_app_data(sb_eio_server_t *srv, sb_eio_id_t id, void *p) {
    sb_eio_session_t *s = sb__eio_get(srv, id);
    if (!s) return SB_ENOTFOUND;
    s->app = p;
    return SB_OK;
}

const char *sb_eio_sid(const sb_eio_server_t *srv, sb_eio_id_t id) {
    sb_eio_session_t *s = sb__eio_get(srv, id);
    return s ? s->sid : NULL;
}

int sb_eio_is_open(const sb_eio_server_t *srv, sb_eio_id_t id) {
    sb_eio_session_t *s = sb__eio_get(srv, id);
    return s && s->state == ST_OPEN;
}

int sb_eio_protocol(const sb_eio_server_t *srv, sb_eio_id_t id) {
    sb_eio_session_t *s = sb__eio_get(srv, id);
    if (!s) return SB_ENOTFOUND;
    return (s->flags & F_EIO3) ? 3 : 4;
}

int sb_eio_is_websocket(const sb_eio_server_t *srv, sb_eio_id_t id) {
    sb_eio_session_t *s = sb__eio_get(srv, id);
    if (!s) return SB_ENOTFOUND;
    return (s->flags & F_WS) ? 1 : 0;
}

uint32_t sb_eio_queued(const sb_eio_server_t *srv, sb_eio_id_t id) {
    sb_eio_session_t *s = sb__eio_get(srv, id);
    return s ? s->qlen : 0;
}

size_t sb_eio_session_size(void) { return sizeof(sb_eio_session_t); }

void sb_eio_foreach(sb_eio_server_t *srv, void (*fn)(void *ud, sb_eio_id_t id), void *ud) {
    sb__eio_enter(srv);
    for (uint32_t i = 0; i < srv->hw; i++) {
        sb_eio_session_t *s = srv->slots[i];
        if (s && s->state == ST_OPEN) fn(ud, sb__eio_id(srv, s));
    }
    sb__eio_leave(srv);
}
