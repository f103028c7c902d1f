/* Engine.IO outgoing queues: each session keeps a ring of references to shared sb_eio_buf_t
 * packets, inside the session while it holds at most SB_EIO_MIN_QCAP of them and malloc'd
 * while a burst needs more. The ring is bounded (max_queue_packets / max_queue_bytes): a
 * client that does not read is dropped as a slow consumer instead of growing it. Polling
 * drains it joined into one payload (sb__eio_q_join); the WebSocket pops one packet a frame. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/socketio/eio_internal.h"
#include "switchboard/error.h"

/* ================================================================ the ring */

/* Back to the ring inside the session (empty), freeing a malloc'd one. */
void sb__eio_q_release(sb_eio_session_t *s) {
    if (s->q != s->q_small) free(s->q);
    s->q = s->q_small;
    s->qcap = SB_EIO_MIN_QCAP;
    s->qhead = 0;
}

void sb__eio_q_clear(sb_eio_session_t *s) {
    for (uint32_t i = 0; i < s->qlen; i++)
        sb_eio_buf_unref(s->q[(s->qhead + i) & (s->qcap - 1)]);
    s->qhead = s->qlen = s->qbytes = 0;
}

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

sb_eio_buf_t *sb__eio_q_pop(sb_eio_session_t *s) {
    sb_eio_buf_t *b = s->q[s->qhead];
    s->qhead = (s->qhead + 1) & (s->qcap - 1);
    s->qlen--;
    s->qbytes -= b->len;
    if (s->qlen == 0 && s->qcap > SB_EIO_MIN_QCAP) sb__eio_q_release(s); /* a burst's ring */
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
int sb__eio_q_push(sb_eio_server_t *srv, sb_eio_session_t *s, sb_eio_buf_t *b) {
    if (s->state != ST_OPEN) return SB_ENOTFOUND;
    if (s->qlen && (s->qlen + 1 > srv->cfg.max_queue_packets ||
                    (size_t)s->qbytes + b->len > srv->cfg.max_queue_bytes)) {
        sb__eio_mark_closed(srv, s, 0, "slow consumer");
        return SB_ETIMEOUT;
    }
    if (s->qlen == s->qcap && sb_eio_q_grow(s, srv->cfg.max_queue_packets)) return SB_ENOMEM;
    s->q[(s->qhead + s->qlen) & (s->qcap - 1)] = sb_eio_buf_ref(b);
    s->qlen++;
    s->qbytes += b->len;
    if (s->qlen == 1) sb__eio_wake(srv, sb_eio_active_conn(s));
    return SB_OK;
}

int sb_eio_send(sb_eio_server_t *srv, sb_eio_id_t id, sb_eio_buf_t *b) {
    sb_eio_session_t *s = sb__eio_get(srv, id);
    if (!s || !b) return SB_ENOTFOUND;
    sb__eio_enter(srv);
    int rc = sb__eio_q_push(srv, s, b);
    sb__eio_leave(srv);
    return rc;
}

int sb_eio_send_text(sb_eio_server_t *srv, sb_eio_id_t id, const char *text, size_t len) {
    sb_eio_session_t *s = sb__eio_get(srv, id);
    if (!s || s->state != ST_OPEN) return SB_ENOTFOUND;
    sb_eio_buf_t *b = sb_eio_buf_create(srv->cfg.headroom, NULL, len + 1);
    if (!b) return SB_ENOMEM;
    b->data[0] = '4';
    memcpy(b->data + 1, text, len);
    int rc = sb_eio_send(srv, id, b);
    sb_eio_buf_unref(b);
    return rc;
}

int sb_eio_send_binary(sb_eio_server_t *srv, sb_eio_id_t id, const void *data, size_t len) {
    sb_eio_session_t *s = sb__eio_get(srv, id);
    if (!s || s->state != ST_OPEN) return SB_ENOTFOUND;
    sb_eio_buf_t *b = sb_eio_buf_create(srv->cfg.headroom, data, len);
    if (!b) return SB_ENOMEM;
    b->binary = 1;
    int rc = sb_eio_send(srv, id, b);
    sb_eio_buf_unref(b);
    return rc;
}

/* The bytes of b's own text in a polling payload: the packet, or for a binary message `b` +
 * base64 (v3: `b4` + base64, as engine.io-parser v2 writes it). */
static size_t sb_eio_q_text_len(const sb_eio_session_t *s, const sb_eio_buf_t *b) {
    if (!b->binary) return b->len;
    return ((s->flags & F_EIO3) ? 2 : 1) + sb_eio_base64_len(b->len);
}

/* What precedes packet b in a polling payload: v4 a \x1e separator (none before the first),
 * v3 its "<utf16 length>:" (base64 is ASCII: a unit a byte). Returns the bytes written to
 * pre. */
static size_t sb_eio_q_prefix(const sb_eio_session_t *s, const sb_eio_buf_t *b, int first,
                              char pre[SB_EIO_PREFIX3_MAX]) {
    if ((s->flags & F_EIO3) && b->binary) {
        int n = snprintf(pre, SB_EIO_PREFIX3_MAX, "%zu:", sb_eio_q_text_len(s, b));
        return n > 0 ? (size_t)n : 0;
    }
    if (s->flags & F_EIO3) return sb_eio_prefix3(b->data, b->len, pre);
    pre[0] = '\x1e';
    return first ? 0 : 1;
}

/* Appends b with its prefix at p; returns the end (a binary one's base64 is followed by a
 * NUL, which the next packet or the buffer's own NUL slot takes). */
static char *sb_eio_q_put(const sb_eio_session_t *s, char *p, const sb_eio_buf_t *b, int first) {
    char pre[SB_EIO_PREFIX3_MAX];
    size_t n = sb_eio_q_prefix(s, b, first, pre);
    memcpy(p, pre, n);
    p += n;
    if (!b->binary) {
        memcpy(p, b->data, b->len);
        return p + b->len;
    }
    size_t tag = (s->flags & F_EIO3) ? 2 : 1;
    memcpy(p, "b4", tag);
    return p + tag + sb_eio_base64_encode(p + tag, b->data, b->len);
}

sb_eio_buf_t *sb__eio_q_one(sb_eio_server_t *srv, sb_eio_session_t *s, sb_eio_buf_t *b) {
    if (!(s->flags & F_EIO3) && !b->binary) return sb_eio_buf_ref(b);
    char pre[SB_EIO_PREFIX3_MAX];
    sb_eio_buf_t *out = sb_eio_buf_create(
        srv->cfg.headroom, NULL, sb_eio_q_prefix(s, b, 1, pre) + sb_eio_q_text_len(s, b));
    if (out) sb_eio_q_put(s, out->data, b, 1);
    return out;
}

/* Joins queued packets (at most max_payload bytes, at least one packet) and `extra` into one
 * polling payload (v4: \x1e-separated, v3: each behind its length). A single v4 text packet
 * is handed out as is, without copying. NULL on ENOMEM. */
sb_eio_buf_t *sb__eio_q_join(sb_eio_server_t *srv, sb_eio_session_t *s, sb_eio_buf_t *extra) {
    char pre[SB_EIO_PREFIX3_MAX];
    uint32_t n = 0;
    size_t total = 0;
    while (n < s->qlen) {
        sb_eio_buf_t *b = s->q[(s->qhead + n) & (s->qcap - 1)];
        size_t len = sb_eio_q_text_len(s, b) + sb_eio_q_prefix(s, b, n == 0, pre);
        if (n && total + len > srv->cfg.max_payload) break;
        total += len;
        n++;
    }
    if (n < s->qlen) extra = NULL; /* more to come: `1` / `6` only after the last packet */
    if (n == 1 && !extra && !(s->flags & F_EIO3) && !s->q[s->qhead]->binary)
        return sb__eio_q_pop(s);
    if (n == 0 && extra) return sb__eio_q_one(srv, s, extra);
    if (extra) total += extra->len + sb_eio_q_prefix(s, extra, 0, pre);
    sb_eio_buf_t *out = sb_eio_buf_create(srv->cfg.headroom, NULL, total);
    if (!out) return NULL;
    char *p = out->data;
    for (uint32_t i = 0; i < n; i++) {
        sb_eio_buf_t *b = sb__eio_q_pop(s);
        p = sb_eio_q_put(s, p, b, i == 0);
        sb_eio_buf_unref(b);
    }
    if (extra) sb_eio_q_put(s, p, extra, 0);
    return out;
}
