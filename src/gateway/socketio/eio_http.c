/* Engine.IO HTTP requests: the reference's checks (verify / handshake) in its order, the
 * handshake, and the long-polling transport (a GET is held until there is something to say;
 * a POST carries a payload of packets). A WebSocket upgrade is checked here and handed to
 * eio_ws.c. Replies carry shared buffers the caller unrefs. */
#include <stdio.h>
#include <string.h>

#include "gateway/socketio/eio_internal.h"
#include "switchboard/error.h"

static const char CT_TEXT[] = "text/plain; charset=UTF-8";
static const char CT_HTML[] = "text/html";
static const char CT_JSON[] = "application/json";

/* ================================================================ replies */

int sb__eio_reply(sb_eio_reply_t *out, int status, const char *ct, sb_eio_buf_t *body,
                  sb_eio_id_t id) {
    *out = (sb_eio_reply_t){.status = status, .content_type = ct, .body = body, .id = id,
                            .code = -1};
    return status;
}

const char *sb_eio_error_message(int code) {
    static const char *const messages[] = {"Transport unknown", "Session ID unknown",
                                           "Bad handshake method", "Bad request", "Forbidden",
                                           "Unsupported protocol version"};
    return code >= 0 && code <= 5 ? messages[code] : "Bad request";
}

int sb_eio_error_reply(const sb_eio_server_t *srv, int code, int status, sb_eio_reply_t *out) {
    char text[96];
    int n = snprintf(text, sizeof text, "{\"code\":%d,\"message\":\"%s\"}", code,
                     sb_eio_error_message(code));
    sb_eio_buf_t *b = sb_eio_buf_create(srv->cfg.headroom, text, (size_t)n);
    sb__eio_reply(out, b ? status : 500, b ? CT_JSON : NULL, b, 0);
    out->code = code;
    return out->status;
}

/* What a poll GET may be answered with now: NULL = hold. */
static sb_eio_buf_t *sb_eio_poll_ready(sb_eio_server_t *srv, sb_eio_session_t *s) {
    if (s->state == ST_CLOSING && (s->flags & F_PEER_CLOSE)) /* as the reference: noop */
        return sb__eio_q_one(srv, s, srv->pkt_noop);
    if (s->state == ST_CLOSING)
        return (s->flags & F_WS) ? sb__eio_q_one(srv, s, srv->pkt_close)
                                 : sb__eio_q_join(srv, s, srv->pkt_close);
    if (s->flags & F_NOOP) {
        s->flags &= ~F_NOOP;
        return sb__eio_q_one(srv, s, srv->pkt_noop);
    }
    if (s->qlen && !(s->flags & F_WS)) return sb__eio_q_join(srv, s, NULL);
    return NULL;
}

/* Answers the GET held on s if there is something to say; returns 1 when *out was filled. */
static int sb_eio_poll_answer(sb_eio_server_t *srv, sb_eio_session_t *s, sb_eio_reply_t *out) {
    sb_eio_buf_t *body = sb_eio_poll_ready(srv, s);
    if (!body) return 0;
    s->poll_conn = NULL;
    if (s->state == ST_CLOSING) sb__eio_defer(srv, s); /* may be freeable now */
    sb__eio_reply(out, 200, CT_TEXT, body, sb__eio_id(srv, s));
    return 1;
}

/* ================================================================ HTTP requests */

static int sb_eio_transport_ok(const char *t) {
    return t && (strcmp(t, "polling") == 0 || strcmp(t, "websocket") == 0);
}

/* 1 for a handshake asking for Engine.IO v3 while the server allows it. */
static int sb_eio_v3_req(const sb_eio_server_t *srv, const sb_eio_req_t *req) {
    return srv->cfg.allow_eio3 && req->eio && strcmp(req->eio, "3") == 0;
}

/* The checks of the reference's verify(), onWebSocket() and handshake(), in its order.
 * Returns 0 or the error status with *out filled. *found gets the session when the request
 * names one; *close_ws is set for a WebSocket engine.io accepts and then closes at once (a
 * transport that takes no upgrade, a session upgraded or upgrading already). */
static int sb_eio_verify(sb_eio_server_t *srv, const sb_eio_req_t *req, sb_eio_reply_t *out,
                         sb_eio_session_t **found, int *close_ws) {
    *found = NULL;
    *close_ws = 0;
    if (!sb_eio_transport_ok(req->transport))
        return sb_eio_error_reply(srv, SB_EIO_ERR_TRANSPORT, 400, out);
    int ws_transport = strcmp(req->transport, "websocket") == 0;
    if (req->sid) {
        sb_eio_session_t *s = sb__eio_lookup(srv, req->sid);
        /* a closing polling session still takes one GET, to deliver its last packets */
        if (!s || (s->state != ST_OPEN && (req->websocket || req->method != SB_EIO_GET)))
            return sb_eio_error_reply(srv, SB_EIO_ERR_SID, 400, out);
        if (!req->websocket && (ws_transport || (s->flags & F_WS) || req->method == SB_EIO_OTHER))
            return sb_eio_error_reply(srv, SB_EIO_ERR_BAD, 400, out); /* transport mismatch */
        *close_ws = req->websocket && (!ws_transport || s->ws_conn || (s->flags & F_WS));
        *found = *close_ws ? NULL : s;
        return 0;
    }
    if (req->method != SB_EIO_GET) return sb_eio_error_reply(srv, SB_EIO_ERR_METHOD, 400, out);
    if (ws_transport && !req->websocket) return sb_eio_error_reply(srv, SB_EIO_ERR_BAD, 400, out);
    if (req->websocket && !ws_transport) { /* polling takes no upgrade */
        *close_ws = 1;
        return 0;
    }
    if (!req->eio || (strcmp(req->eio, "4") != 0 && !sb_eio_v3_req(srv, req)))
        return sb_eio_error_reply(srv, SB_EIO_ERR_VERSION, 400, out);
    if (srv->nopen >= srv->cfg.max_sessions) {
        sb_eio_error_reply(srv, SB_EIO_ERR_BAD, 503, out);
        return out->status;
    }
    return 0;
}

int sb_eio_check(sb_eio_server_t *srv, const sb_eio_req_t *req, sb_eio_reply_t *out) {
    sb_eio_session_t *s;
    int close_ws;
    return sb_eio_verify(srv, req, out, &s, &close_ws);
}

static int sb_eio_handshake(sb_eio_server_t *srv, const sb_eio_req_t *req, void *conn,
                            int64_t now, sb_eio_reply_t *out) {
    sb_eio_session_t *s =
        sb__eio_session_open(srv, req->websocket ? conn : NULL, sb_eio_v3_req(srv, req), now);
    if (!s) return sb__eio_reply(out, 500, NULL, NULL, 0);
    sb_eio_id_t id = sb__eio_id(srv, s);
    if (req->websocket) return sb__eio_reply(out, 101, NULL, NULL, id);
    sb_eio_buf_t *body = s->state == ST_OPEN ? sb__eio_q_join(srv, s, NULL) : NULL;
    if (!body) return sb__eio_reply(out, 500, NULL, NULL, id);
    return sb__eio_reply(out, 200, CT_TEXT, body, id);
}

static int sb_eio_get_req(sb_eio_server_t *srv, sb_eio_session_t *s, void *conn,
                          sb_eio_reply_t *out) {
    if (s->poll_conn) {
        sb__eio_mark_closed(srv, s, 0, "transport error"); /* overlap from client */
        return sb_eio_error_reply(srv, SB_EIO_ERR_BAD, 400, out);
    }
    s->poll_conn = conn;
    if ((s->flags & F_PROBED) && s->qlen == 0) s->flags |= F_NOOP; /* fast upgrade */
    if (sb_eio_poll_answer(srv, s, out)) return out->status;
    return sb__eio_reply(out, SB_EIO_HOLD, NULL, NULL, sb__eio_id(srv, s));
}

static int sb_eio_post_req(sb_eio_server_t *srv, sb_eio_session_t *s, const sb_eio_req_t *req,
                           int64_t now, sb_eio_reply_t *out) {
    if (req->body_len > srv->cfg.max_payload) {
        sb__eio_mark_closed(srv, s, 0, "transport error");
        sb_eio_error_reply(srv, SB_EIO_ERR_BAD, 413, out);
        return out->status;
    }
    sb__eio_rx_t rx = {srv, s, now};
    sb_eio_id_t id = sb__eio_id(srv, s);
    const char *body = req->body ? req->body : "";
    if (!(s->flags & F_EIO3))
        sb_eio_split_payload(body, req->body_len, sb__eio_on_packet, &rx);
    else if (sb_eio_split_payload3(body, req->body_len, sb__eio_on_packet3, &rx) == SB_EINVAL)
        sb__eio_mark_closed(srv, s, 0, sb__eio_r_parse); /* the framing itself is wrong */
    if (s->state != ST_OPEN && s->reason == sb__eio_r_parse)
        return sb_eio_error_reply(srv, SB_EIO_ERR_BAD, 400, out);
    return sb__eio_reply(out, 200, CT_HTML, sb_eio_buf_ref(srv->pkt_ok), id);
}

sb_eio_id_t sb_eio_post_begin(sb_eio_server_t *srv, const sb_eio_req_t *req, void *conn,
                              int64_t now) {
    if (req->method != SB_EIO_POST || !req->sid || !conn) return 0;
    sb_eio_session_t *s = sb__eio_lookup(srv, req->sid);
    if (!s || s->state != ST_OPEN || (s->flags & F_WS)) return 0;
    uint32_t tag = sb__eio_conn_tag(conn);
    if (s->post_tag && s->post_tag != tag) {
        srv->now = now;
        sb__eio_enter(srv);
        sb__eio_mark_closed(srv, s, 0, "transport error"); /* data request overlap */
        sb__eio_leave(srv);
        return 0;
    }
    s->post_tag = tag;
    return sb__eio_id(srv, s);
}

int sb_eio_http(sb_eio_server_t *srv, const sb_eio_req_t *req, void *conn, int64_t now,
                sb_eio_reply_t *out) {
    sb_eio_session_t *s;
    int close_ws;
    srv->now = now;
    if (sb_eio_verify(srv, req, out, &s, &close_ws)) return out->status;
    if (close_ws) return sb__eio_reply(out, SB_EIO_UPGRADE_CLOSE, NULL, NULL, 0);
    if (!conn && (req->websocket || (s && req->method == SB_EIO_GET))) /* nothing to hold */
        return sb_eio_error_reply(srv, SB_EIO_ERR_BAD, 400, out);
    sb__eio_enter(srv);
    int status;
    if (!s) status = sb_eio_handshake(srv, req, conn, now, out);
    else if (req->websocket) status = sb__eio_ws_attach(srv, s, conn, now, out);
    else if (req->method == SB_EIO_GET) status = sb_eio_get_req(srv, s, conn, out);
    else status = sb_eio_post_req(srv, s, req, now, out);
    sb__eio_leave(srv);
    return status;
}

int sb_eio_poll_pull(sb_eio_server_t *srv, sb_eio_id_t id, void *conn, sb_eio_reply_t *out) {
    sb_eio_session_t *s = sb__eio_get(srv, id);
    if (!s || !conn || s->poll_conn != conn) {
        sb_eio_error_reply(srv, SB_EIO_ERR_SID, 400, out);
        return 1;
    }
    sb__eio_enter(srv);
    int rc = sb_eio_poll_answer(srv, s, out);
    sb__eio_leave(srv);
    return rc;
}
