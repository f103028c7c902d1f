/* A fake HTTP layer for the Engine.IO / Socket.IO unit tests: it records wake-ups and builds
 * requests the way the real libwebsockets layer will, so the machines are driven with plain
 * byte strings and a fake clock. Header-only (static functions), included by test_eio.c and
 * test_sio.c. Conns are just distinct addresses (&conns[i]). */
#ifndef SB_FAKE_HTTP_H
#define SB_FAKE_HTTP_H

#include <string.h>
#include "gateway/socketio/eio.h"

typedef struct fake_http {
    void *woken[64]; /* conns named by wake, in order */
    int nwoken;
    char conns[16];  /* &conns[i] are the conn identities */
} fake_http_t;

static inline void fake_wake(void *ud, void *conn) {
    fake_http_t *f = ud;
    if (f->nwoken < 64) f->woken[f->nwoken++] = conn;
}

static inline int fake_was_woken(const fake_http_t *f, void *conn) {
    for (int i = 0; i < f->nwoken; i++)
        if (f->woken[i] == conn) return 1;
    return 0;
}

static inline sb_eio_req_t fake_req(int method, const char *transport, const char *sid) {
    return (sb_eio_req_t){.method = method, .eio = "4", .transport = transport, .sid = sid,
                          .websocket = transport && strcmp(transport, "websocket") == 0};
}

/* Copies a reply body into out (NUL-terminated, truncated to n) and releases the reply. */
static inline const char *fake_body(sb_eio_reply_t *r, char *out, size_t n) {
    out[0] = '\0';
    if (r->body) {
        size_t len = r->body->len < n - 1 ? r->body->len : n - 1;
        memcpy(out, r->body->data, len);
        out[len] = '\0';
    }
    sb_eio_buf_unref(r->body);
    r->body = NULL;
    return out;
}

/* Polling handshake; copies the sid into sid (SB_EIO_SID_LEN + 1). Returns the handle. */
static inline sb_eio_id_t fake_handshake(sb_eio_server_t *srv, int64_t now, char *sid) {
    sb_eio_req_t req = fake_req(SB_EIO_GET, "polling", NULL);
    sb_eio_reply_t r;
    if (sb_eio_http(srv, &req, NULL, now, &r) != 200) return 0;
    char body[512];
    fake_body(&r, body, sizeof body);
    const char *p = strstr(body, "\"sid\":\"");
    if (!p) return 0;
    memcpy(sid, p + 7, SB_EIO_SID_LEN);
    sid[SB_EIO_SID_LEN] = '\0';
    return r.id;
}

/* POSTs body to the session; returns the status. */
static inline int fake_post(sb_eio_server_t *srv, const char *sid, const char *body, size_t len,
                     int64_t now) {
    sb_eio_req_t req = fake_req(SB_EIO_POST, "polling", sid);
    req.body = body;
    req.body_len = len;
    sb_eio_reply_t r;
    int status = sb_eio_http(srv, &req, NULL, now, &r);
    sb_eio_buf_unref(r.body);
    return status;
}

/* GET with sid on conn: returns the status (0 = held) and the body in out. */
static inline int fake_get(sb_eio_server_t *srv, const char *sid, void *conn, int64_t now, char *out,
                    size_t n) {
    sb_eio_req_t req = fake_req(SB_EIO_GET, "polling", sid);
    sb_eio_reply_t r;
    int status = sb_eio_http(srv, &req, conn, now, &r);
    fake_body(&r, out, n);
    return status;
}

/* Pulls one WebSocket frame into out; returns sb_eio_ws_pull's value. */
static inline int fake_ws_pull(sb_eio_server_t *srv, sb_eio_id_t id, void *conn, char *out, size_t n) {
    sb_eio_buf_t *b = NULL;
    int rc = sb_eio_ws_pull(srv, id, conn, &b);
    out[0] = '\0';
    if (b) {
        size_t len = b->len < n - 1 ? b->len : n - 1;
        memcpy(out, b->data, len);
        out[len] = '\0';
        sb_eio_buf_unref(b);
    }
    return rc;
}

/* Opens a WebSocket-only session on conn and pulls its open packet. Returns the handle. */
static inline sb_eio_id_t fake_ws_session(sb_eio_server_t *srv, void *conn, int64_t now) {
    sb_eio_req_t req = fake_req(SB_EIO_GET, "websocket", NULL);
    sb_eio_reply_t r;
    if (sb_eio_http(srv, &req, conn, now, &r) != 101) return 0;
    char open[256];
    if (fake_ws_pull(srv, r.id, conn, open, sizeof open) != 1 || open[0] != '0') return 0;
    return r.id;
}

static inline int fake_ws_send(sb_eio_server_t *srv, sb_eio_id_t id, void *conn, const char *text,
                        int64_t now) {
    return sb_eio_ws_frame(srv, id, conn, text, strlen(text), 0, now);
}

#endif
