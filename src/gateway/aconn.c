/* One asynchronous Redis connection on libuv, plain or TLS (see aconn.h for the design).
 *
 * States: HANDSHAKE (TCP connect, then TLS, driven by poll events) → UP → ENDED. Ending is one
 * function, sb_aconn_end: it closes the libuv handles (uv_close stops the poll at once, before
 * the fd is closed, so a new socket that gets the same fd number is never touched by this
 * poll), closes the socket, then runs every pending callback with NULL, the push callback
 * with NULL and the closed event. The struct itself is freed from the handles' close
 * callbacks, so a callback that ends or closes the connection leaves memory valid for the
 * code that called it, which checks the state after each callback.
 *
 * Commands wait in obuf[opos..olen) and their callbacks in a ring (q), one slot per command
 * (NULL cb: reply dropped); a subscribe adds one marker slot: the reply that reaches it turns
 * push mode on. */
#include <stdlib.h>
#include <string.h>
#include "gateway/aconn.h"
#include "switchboard/conn.h"
#include "switchboard/error.h"

#define SB_ACONN_READ_CHUNK 16384

typedef enum { SB_AC_HANDSHAKE, SB_AC_UP, SB_AC_ENDED } sb_ac_state_t;

typedef struct {
    sb_aconn_cb cb; /* NULL: drop the reply */
    void *priv;
    int push;       /* marker: the reply here starts push mode */
} sb_acall_slot_t;

struct sb_aconn {
    uv_poll_t poll;
    uv_prepare_t flush;       /* started while commands wait to be written */
    int open_handles;         /* the struct is freed when this reaches 0 */
    sb_ac_state_t state;
    sb_conn_t *conn;          /* NULL once ENDED */
    redisReader *reader;
    int events;               /* UV_READABLE | UV_WRITABLE the poll runs with */
    int hs_want;              /* HANDSHAKE: SB_CONN_WANT_READ / _WRITE */
    int write_want;           /* a write stopped: what it waits for (0: nothing waits) */
    int read_wants_write;     /* TLS: a read needs the socket writable first */
    char *obuf;               /* commands not written yet: obuf[opos..olen) */
    size_t opos, olen, ocap;
    sb_acall_slot_t *q;       /* ring of callbacks, one per reply to come */
    size_t qhead, qlen, qcap;
    int push;                 /* push mode: every reply goes to push_cb */
    int push_marked;          /* a push marker is in q */
    sb_aconn_cb push_cb;
    void *push_priv;
    sb_aconn_events_t ev;
    void *data;
};

static void sb_aconn_poll_cb(uv_poll_t *h, int status, int events);

/* ---- poll mask ---------------------------------------------------------------------------- */

/* The mask the state asks for; the poll is touched (epoll_ctl) only when it changes. */
static void sb_aconn_update_mask(sb_aconn_t *c) {
    int want;
    if (c->state == SB_AC_HANDSHAKE)
        want = c->hs_want == SB_CONN_WANT_READ ? UV_READABLE : UV_WRITABLE;
    else
        want = UV_READABLE | (c->write_want == SB_CONN_WANT_WRITE || c->read_wants_write
                                  ? UV_WRITABLE : 0);
    if (want == c->events) return;
    c->events = want;
    uv_poll_start(&c->poll, want, sb_aconn_poll_cb);
}

/* ---- ending ------------------------------------------------------------------------------- */

static void sb_aconn_released(uv_handle_t *h) {
    sb_aconn_t *c = h->data;
    if (--c->open_handles > 0) return;
    if (c->reader) redisReaderFree(c->reader);
    free(c->obuf);
    free(c->q);
    free(c);
}

static void sb_aconn_end(sb_aconn_t *c, const char *why, int notify) {
    if (c->state == SB_AC_ENDED) return;
    c->state = SB_AC_ENDED;
    uv_close((uv_handle_t *)&c->poll, sb_aconn_released);
    uv_close((uv_handle_t *)&c->flush, sb_aconn_released);
    char reason[256];
    snprintf(reason, sizeof reason, "%s", why); /* why may live in conn */
    sb_conn_free(c->conn);
    c->conn = NULL;
    while (c->qlen > 0) {
        sb_acall_slot_t s = c->q[c->qhead];
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
        if (s.cb) s.cb(NULL, s.priv);
    }
    if (c->push && c->push_cb) c->push_cb(NULL, c->push_priv);
    if (notify && c->ev.closed) c->ev.closed(c->data, reason);
}

void sb_aconn_close(sb_aconn_t *c) {
    if (c) sb_aconn_end(c, "closed", 0);
}

/* ---- replies ------------------------------------------------------------------------------ */

/* Hands one reply to its callback (or the push callback). */
static void sb_aconn_deliver(sb_aconn_t *c, redisReply *reply) {
    if (!c->push && c->qlen > 0) {
        sb_acall_slot_t s = c->q[c->qhead];
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
        if (s.push) c->push = 1, c->push_marked = 0;
        else if (s.cb) s.cb(reply, s.priv);
    }
    if (c->push && c->push_cb) c->push_cb(reply, c->push_priv);
}

/* Delivers every complete reply the reader holds. 0, or -1 when the connection ended. */
static int sb_aconn_dispatch(sb_aconn_t *c) {
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            char why[160];
            snprintf(why, sizeof why, "protocol error: %s", c->reader->errstr);
            sb_aconn_end(c, why, 1);
            return -1;
        }
        if (!reply) return 0;
        sb_aconn_deliver(c, reply);
        freeReplyObject(reply);
        if (c->state == SB_AC_ENDED) return -1;
    }
}

/* One read (plain: as hiredis did), then more while TLS holds decrypted bytes. */
static void sb_aconn_read(sb_aconn_t *c) {
    char buf[SB_ACONN_READ_CHUNK];
    int want;
    c->read_wants_write = 0;
    do {
        ssize_t n = sb_conn_read(c->conn, buf, sizeof buf, &want);
        if (n < 0) {
            sb_aconn_end(c, sb_conn_error(c->conn), 1);
            return;
        }
        if (n == 0) {
            c->read_wants_write = want == SB_CONN_WANT_WRITE;
            sb_aconn_update_mask(c);
            return;
        }
        redisReaderFeed(c->reader, buf, (size_t)n);
        if (sb_aconn_dispatch(c) != 0) return;
    } while (sb_conn_pending(c->conn) > 0);
}

/* ---- writing ------------------------------------------------------------------------------ */

/* Writes what waits until done or the socket is full (then polls for what it waits for). */
static void sb_aconn_write(sb_aconn_t *c) {
    int want = 0;
    while (c->opos < c->olen) {
        ssize_t n = sb_conn_write(c->conn, c->obuf + c->opos, c->olen - c->opos, &want);
        if (n < 0) {
            sb_aconn_end(c, sb_conn_error(c->conn), 1);
            return;
        }
        if (n == 0) break;
        c->opos += (size_t)n;
    }
    if (c->opos == c->olen) c->opos = c->olen = 0, want = 0;
    c->write_want = want;
    sb_aconn_update_mask(c);
}

/* Before the loop blocks: write what this loop turn queued. */
static void sb_aconn_flush_cb(uv_prepare_t *p) {
    sb_aconn_t *c = p->data;
    uv_prepare_stop(p);
    if (c->state == SB_AC_UP && !c->write_want) sb_aconn_write(c);
}

/* ---- connecting ---------------------------------------------------------------------------- */

static void sb_aconn_handshake(sb_aconn_t *c, int status) {
    char err[256];
    int rc = sb_conn_handshake(c->conn, &c->hs_want, err, sizeof err);
    if (rc == 1 && status < 0) snprintf(err, sizeof err, "%s", uv_strerror(status));
    if (rc == 1 && status >= 0) {
        sb_aconn_update_mask(c);
        return;
    }
    if (rc != SB_OK) {
        sb_aconn_end(c, err, 1);
        return;
    }
    c->state = SB_AC_UP;
    sb_aconn_update_mask(c);
    if (c->ev.connected) c->ev.connected(c->data);
    if (c->state == SB_AC_UP && c->olen > 0) uv_prepare_start(&c->flush, sb_aconn_flush_cb);
}

static void sb_aconn_poll_cb(uv_poll_t *h, int status, int events) {
    sb_aconn_t *c = h->data;
    if (c->state == SB_AC_HANDSHAKE) {
        sb_aconn_handshake(c, status);
        return;
    }
    if (c->state != SB_AC_UP) return;
    if (status < 0) {
        /* POLLERR (e.g. reset): libuv stopped the poll. A read delivers what came before the
         * error and finds the reason; if it does not, the poll's error is the reason. */
        c->events = 0;
        sb_aconn_read(c);
        if (c->state == SB_AC_UP) sb_aconn_end(c, uv_strerror(status), 1);
        return;
    }
    if ((events & UV_READABLE) || c->read_wants_write) sb_aconn_read(c);
    if (c->state == SB_AC_UP && c->write_want &&
        ((events & UV_WRITABLE) || c->write_want == SB_CONN_WANT_READ))
        sb_aconn_write(c);
}

sb_aconn_t *sb_aconn_open(uv_loop_t *loop, const sb_redis_addr_t *addr,
                          const sb_aconn_events_t *events, void *data, char *err,
                          size_t errlen) {
    sb_aconn_t *c = calloc(1, sizeof *c);
    if (!c || !(c->reader = redisReaderCreate())) {
        snprintf(err, errlen, "out of memory");
        free(c);
        return NULL;
    }
    c->conn = sb_conn_open(addr, err, errlen);
    if (!c->conn || uv_poll_init(loop, &c->poll, sb_conn_fd(c->conn)) != 0) {
        if (c->conn) snprintf(err, errlen, "cannot poll the socket");
        sb_conn_free(c->conn);
        redisReaderFree(c->reader);
        free(c);
        return NULL;
    }
    uv_prepare_init(loop, &c->flush);
    c->poll.data = c->flush.data = c;
    c->open_handles = 2;
    c->ev = *events;
    c->data = data;
    c->hs_want = SB_CONN_WANT_WRITE; /* a connecting socket turns writable when connected */
    sb_aconn_update_mask(c);
    return c;
}

/* ---- sending ------------------------------------------------------------------------------- */

/* Room for len more bytes and n more slots. 0 or SB_ENOMEM (nothing changed that matters). */
static int sb_aconn_reserve(sb_aconn_t *c, size_t len, size_t n) {
    if (c->olen + len > c->ocap) {
        size_t cap = c->ocap ? c->ocap : 4096;
        while (cap < c->olen + len) cap *= 2;
        char *p = realloc(c->obuf, cap);
        if (!p) return SB_ENOMEM;
        c->obuf = p;
        c->ocap = cap;
    }
    if (c->qlen + n <= c->qcap) return SB_OK;
    size_t cap = c->qcap ? c->qcap : 16;
    while (cap < c->qlen + n) cap *= 2;
    sb_acall_slot_t *q = malloc(cap * sizeof *q);
    if (!q) return SB_ENOMEM;
    for (size_t i = 0; i < c->qlen; i++) q[i] = c->q[(c->qhead + i) % c->qcap];
    free(c->q);
    c->q = q;
    c->qhead = 0;
    c->qcap = cap;
    return SB_OK;
}

static void sb_aconn_slot(sb_aconn_t *c, sb_aconn_cb cb, void *priv, int push) {
    c->q[(c->qhead + c->qlen) % c->qcap] = (sb_acall_slot_t){cb, priv, push};
    c->qlen++;
}

/* Appends b's bytes and, per command, a slot (the last gets cb) or, for push, one marker. */
static int sb_aconn_queue(sb_aconn_t *c, const sb_batch_t *b, sb_aconn_cb cb, void *priv,
                          int push) {
    size_t n = sb_batch_count(b), total = 0, len;
    if (c->state == SB_AC_ENDED) return SB_EREDIS;
    if (n == 0) return SB_EINVAL;
    for (size_t i = 0; i < n; i++) sb_batch_cmd(b, i, &len), total += len;
    if (sb_aconn_reserve(c, total, push ? 1 : n) != SB_OK) return SB_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *cmd = sb_batch_cmd(b, i, &len);
        memcpy(c->obuf + c->olen, cmd, len);
        c->olen += len;
        if (!push) sb_aconn_slot(c, i + 1 == n ? cb : NULL, i + 1 == n ? priv : NULL, 0);
    }
    if (push && !c->push && !c->push_marked) {
        sb_aconn_slot(c, NULL, NULL, 1);
        c->push_marked = 1;
    }
    if (c->state == SB_AC_UP && !c->write_want) uv_prepare_start(&c->flush, sb_aconn_flush_cb);
    return SB_OK;
}

int sb_aconn_send(sb_aconn_t *c, const sb_batch_t *b, sb_aconn_cb cb, void *priv) {
    return sb_aconn_queue(c, b, cb, priv, 0);
}

int sb_aconn_subscribe(sb_aconn_t *c, const sb_batch_t *b, sb_aconn_cb cb, void *priv) {
    int rc = sb_aconn_queue(c, b, NULL, NULL, 1);
    if (rc == SB_OK) c->push_cb = cb, c->push_priv = priv;
    return rc;
}
