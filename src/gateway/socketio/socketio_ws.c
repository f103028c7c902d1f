/* Socket.IO's WebSocket transport on libwebsockets: the upgrade (checked by the core before the
 * 101, refusals answered with the Engine.IO error), fragments reassembled up to maxPayload,
 * and the sending side (see socketio.h for the design, socketio_internal.h for what it shares
 * with socketio.c).
 *
 * Sending: the core's wake puts a WebSocket on the flush list, written directly from a prepare
 * handle before the loop polls (several emits of a turn, one write), else from lws's writeable
 * callback. Bursts of queued packets are framed by us into one raw write; so is the Close
 * frame. A session that closes with output pending joins the kill list: the heartbeat timer
 * (socketio.c) resets the connection once SB_SOCKETIO_CLOSE_WAIT_S has passed.
 *
 * Banners: the flush list · the kill list · WebSocket. */
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/http.h"
#include "gateway/socketio/socketio_internal.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/log.h"

#define SB_SOCKETIO_BURST 64             /* packets framed into one write at most */
#define SB_SOCKETIO_BURST_BYTES 65536    /* ... and about this many bytes */

/* The endpoint serving the path of wsi's request (an upgrade, before ESTABLISHED: lws still
 * has the headers), else the gateway's first. */
static sb_socketio_t *sb_socketio_of(struct lws *wsi) {
    sb_gateway_t *gw = lws_context_user(lws_get_context(wsi));
    char path[64];
    sb_socketio_t *io = NULL;
    if (gw && lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) > 0)
        io = sb_socketio_at(gw, path);
    return io ? io : gw ? gw->sio : NULL;
}

/* ================================================================ the flush list */

/* The core's wake: conn (a wsi) has something to send. An attached WebSocket joins the flush
 * list, written directly from the prepare handle once this loop turn's emits are queued
 * (several emits, one write); anything else (a held polling GET, a WebSocket being closed by
 * its peer) asks lws for a writeable callback. */
void sb__socketio_wake(void *ud, void *conn) {
    sb_socketio_t *io = ud;
    struct lws *wsi = conn;
    sb_http_conn_t *c = lws_wsi_user(wsi);
    sb_socketio_ws_t *ws = c ? &c->ws : NULL;
    if (!ws || !ws->attached || ws->peer_closing || !io->tick_running) {
        lws_callback_on_writable(wsi);
        return;
    }
    if (ws->flush_prev) return; /* already listed */
    ws->flush_wsi = wsi;
    ws->flush_next = io->flush_head;
    if (io->flush_head) io->flush_head->flush_prev = &ws->flush_next;
    ws->flush_prev = &io->flush_head;
    io->flush_head = ws;
}

static void sb_socketio_flush_unlink(sb_socketio_ws_t *ws) {
    if (!ws->flush_prev) return;
    *ws->flush_prev = ws->flush_next;
    if (ws->flush_next) ws->flush_next->flush_prev = ws->flush_prev;
    ws->flush_next = NULL;
    ws->flush_prev = NULL;
}

static int sb_socketio_ws_send(sb_socketio_t *io, struct lws *wsi, sb_socketio_ws_t *ws,
                               int direct);

/* Before the loop polls: every WebSocket woken since the last turn is written now, outside
 * lws's writeable callback (see sb_socketio_ws_send), which saves the POLLOUT round trip —
 * on lws's libuv backend ~4 epoll_ctl and an empty callback per send. */
void sb__socketio_flush_cb(uv_prepare_t *h) {
    sb_socketio_t *io = h->data;
    while (io->flush_head) {
        sb_socketio_ws_t *ws = io->flush_head;
        sb_socketio_flush_unlink(ws);
        sb_socketio_ws_send(io, ws->flush_wsi, ws, 1);
    }
}

/* ================================================================ the kill list */

static void sb_socketio_kill_unlink(sb_socketio_ws_t *ws) {
    if (!ws->kill_prev) return;
    *ws->kill_prev = ws->kill_next;
    if (ws->kill_next) ws->kill_next->kill_prev = ws->kill_prev;
    ws->kill_next = NULL;
    ws->kill_prev = NULL;
}

/* The earliest reset deadline of the kill list (INT64_MAX: empty). The list holds only the
 * few connections dropped as slow consumers in the last seconds. */
int64_t sb__socketio_kill_next(const sb_socketio_t *io) {
    int64_t at = INT64_MAX;
    for (const sb_socketio_ws_t *ws = io->kill_head; ws; ws = ws->kill_next)
        if (ws->kill_at < at) at = ws->kill_at;
    return at;
}

/* Resets the connections of the kill list whose wait is over: SO_LINGER 0 (the kernel drops
 * the unsent bytes and answers RST once lws closes the socket) and shut both ways, which lws
 * sees at once on its poll (a read of 0, a failing write) and closes; CLOSED detaches it. */
void sb__socketio_kill_due(sb_socketio_t *io, int64_t now) {
    for (sb_socketio_ws_t *ws = io->kill_head, *next; ws; ws = next) {
        next = ws->kill_next;
        if (ws->kill_at > now) continue;
        sb_socketio_kill_unlink(ws);
        int fd = (int)lws_get_socket_fd(ws->kill_wsi);
        struct linger reset = {1, 0};
        if (fd < 0) continue;
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
        (void)shutdown(fd, SHUT_RDWR);
        const char *sid = ws->attached ? sb_eio_sid(io->eio, ws->id) : NULL;
        sb_info("gateway", "socket.io session %s: connection reset, its client read nothing "
                "for %d s", sid ? sid : "(closed)", SB_SOCKETIO_CLOSE_WAIT_S);
    }
}

/* The gateway stops: what is still on the flush list goes back to lws's writeable callbacks;
 * the kill list is dropped (lws closes every connection anyway). */
void sb__socketio_ws_stop(sb_socketio_t *io) {
    while (io->flush_head) {
        sb_socketio_ws_t *ws = io->flush_head;
        sb_socketio_flush_unlink(ws);
        lws_callback_on_writable(ws->flush_wsi);
    }
    while (io->kill_head) sb_socketio_kill_unlink(io->kill_head);
}

/* ================================================================ WebSocket */

int sb_socketio_ws_reason(enum lws_callback_reasons reason) {
    return reason == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION ||
           reason == LWS_CALLBACK_HTTP_CONFIRM_UPGRADE ||
           reason == LWS_CALLBACK_ESTABLISHED || reason == LWS_CALLBACK_RECEIVE ||
           reason == LWS_CALLBACK_SERVER_WRITEABLE || reason == LWS_CALLBACK_CLOSED ||
           reason == LWS_CALLBACK_WS_PEER_INITIATED_CLOSE;
}

/* Reads the upgrade request's path and query into an sb_eio_req_t (strings in bufs). */
typedef struct {
    char query[SB_HTTP_QUERY_MAX];
    char eio[8], transport[16], sid[64];
} sb_socketio_wsq_t;

static int sb_socketio_ws_request(const sb_socketio_t *io, struct lws *wsi,
                                  sb_socketio_wsq_t *q, sb_eio_req_t *r) {
    char path[64];
    if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0 ||
        !sb__socketio_serves(io, path))
        return -1;
    if (sb_http_query_join(wsi, q->query, sizeof q->query) != 0) return -1; /* refused */
    *r = (sb_eio_req_t){
        .method = SB_EIO_GET,
        .websocket = 1,
        .eio = sb__socketio_arg(q->query, "EIO", q->eio, sizeof q->eio),
        .transport = sb__socketio_arg(q->query, "transport", q->transport, sizeof q->transport),
        .sid = sb__socketio_arg(q->query, "sid", q->sid, sizeof q->sid),
    };
    return 0;
}

/* Writes a refusal of a WebSocket upgrade straight to the socket as engine.io's abortUpgrade
 * does (status, `connection: close`, the message as a text/html body); the caller then
 * returns -1 and lws closes the connection. */
static void sb_socketio_ws_refuse(struct lws *wsi, int status, const char *message) {
    char head[256];
    size_t len = strlen(message);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\ncontent-type: text/html\r\n"
                     "content-length: %zu\r\ncache-control: no-store\r\n"
                     "connection: close\r\n\r\n",
                     status, status == 429 ? "Too Many Requests"
                             : status == 503 ? "Service Unavailable" : "Bad Request", len);
    unsigned char *buf = n > 0 && (size_t)n < sizeof head ? malloc(LWS_PRE + (size_t)n + len)
                                                          : NULL;
    if (!buf) return;
    memcpy(buf + LWS_PRE, head, (size_t)n);
    memcpy(buf + LWS_PRE + n, message, len);
    (void)lws_write(wsi, buf + LWS_PRE, (size_t)n + len, LWS_WRITE_HTTP);
    free(buf);
}

/* lws's HTTP_CONFIRM_UPGRADE (headers still readable, nothing answered yet): an upgrade the
 * core refuses (unknown or missing transport, unknown sid, bad EIO) is answered as the
 * reference's abortUpgrade does, 400 with the Engine.IO error's message, instead of a bare
 * TCP close; so are a stopping gateway (503) and the per-address connect limit (429). (Where
 * engine.io accepts the WebSocket and closes it at once, so does the core: see ws_open.)
 * Returns -1 after answering (lws closes), 0 to go on. */
static int sb_socketio_ws_confirm(sb_socketio_t *io, struct lws *wsi) {
    sb_socketio_wsq_t q;
    sb_eio_req_t r;
    sb_eio_reply_t out = {0};
    if (!io || sb_socketio_ws_request(io, wsi, &q, &r) != 0) return 0; /* the filter refuses */
    if (io->gw->stopping) {
        sb_socketio_ws_refuse(wsi, 503, "the server is shutting down");
    } else if (!r.sid && !sb__socketio_ip_allowed(io, wsi)) {
        sb_socketio_ws_refuse(wsi, 429, SB_SOCKETIO_LIMITED);
    } else if (sb_eio_check(io->eio, &r, &out) == 0) {
        return 0;
    } else {
        sb_socketio_ws_refuse(wsi, out.status, sb_eio_error_message(out.code));
        sb_eio_buf_unref(out.body);
    }
    return -1;
}

/* Before the 101: refuse upgrades outside /socket.io/ and ones the core would refuse (those
 * were answered already at HTTP_CONFIRM_UPGRADE; this is the last guard). */
static int sb_socketio_ws_filter(sb_socketio_t *io, struct lws *wsi) {
    sb_socketio_wsq_t q;
    sb_eio_req_t r;
    sb_eio_reply_t out;
    if (!io || io->gw->stopping || sb_socketio_ws_request(io, wsi, &q, &r) != 0) return -1;
    if (sb_eio_check(io->eio, &r, &out) == 0) return 0;
    sb_eio_buf_unref(out.body);
    return -1;
}

static void sb_socketio_ws_close_frame(struct lws *wsi, int code);

/* ESTABLISHED: the core attaches the WebSocket; one engine.io accepts only to close it
 * (SB_EIO_UPGRADE_CLOSE) gets a Close frame (1000) at once. */
static int sb_socketio_ws_open(sb_socketio_t *io, struct lws *wsi, sb_socketio_ws_t *ws) {
    sb_socketio_wsq_t q;
    sb_eio_req_t r;
    sb_eio_reply_t out;
    if (!io || sb_socketio_ws_request(io, wsi, &q, &r) != 0) return -1;
    int status = sb_eio_http(io->eio, &r, wsi, sb_mono_ms(), &out);
    sb_eio_buf_unref(out.body);
    if (status == SB_EIO_UPGRADE_CLOSE) sb_socketio_ws_close_frame(wsi, LWS_CLOSE_STATUS_NORMAL);
    if (status != 101) return -1;
    ws->id = out.id;
    ws->attached = 1;
    ws->io = io;
    io->ws_opened++;
    if (!r.sid) sb__socketio_connect_v2(io, out.id, q.query);
    lws_callback_on_writable(wsi);
    return 0;
}

static void sb_socketio_ws_detach(sb_socketio_t *io, struct lws *wsi, sb_socketio_ws_t *ws) {
    sb_socketio_flush_unlink(ws);
    sb_socketio_kill_unlink(ws);
    free(ws->rx);
    ws->rx = NULL;
    ws->rx_len = 0;
    if (!ws->attached) return;
    ws->attached = 0;
    if (io) sb_eio_detach(io->eio, ws->id, wsi);
}

/* A fragment of a message: reassembled up to maxPayload, then handed to the core whole. */
static int sb_socketio_ws_receive(sb_socketio_t *io, struct lws *wsi, sb_socketio_ws_t *ws,
                                  const char *in, size_t len) {
    if (!io || !ws->attached) return -1;
    int final = lws_is_final_fragment(wsi);
    const char *msg = in;
    size_t mlen = len;
    if (ws->rx || !final) {
        size_t max = sb_eio_max_payload(io->eio);
        char *b = ws->rx_len + len <= max ? realloc(ws->rx, ws->rx_len + len + 1) : NULL;
        if (!b) { /* beyond maxPayload (or no memory): close, as the reference does */
            sb_socketio_ws_detach(io, wsi, ws);
            lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
            return -1;
        }
        memcpy(b + ws->rx_len, in, len);
        ws->rx = b;
        ws->rx_len += len;
        if (!final) return 0;
        msg = ws->rx;
        mlen = ws->rx_len;
    }
    int rc = sb_eio_ws_frame(io->eio, ws->id, wsi, msg, mlen, lws_frame_is_binary(wsi),
                             sb_mono_ms());
    free(ws->rx);
    ws->rx = NULL;
    ws->rx_len = 0;
    if (rc == SB_ENOTFOUND) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, NULL, 0);
        return -1;
    }
    if (rc != SB_OK) { /* the core closed it (garbage, too large): pull says CLOSE */
        ws->close_code = mlen > sb_eio_max_payload(io->eio) ? LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE
                                                            : LWS_CLOSE_STATUS_PROTOCOL_ERR;
        lws_callback_on_writable(wsi);
    }
    return 0;
}

/* Writes a WebSocket frame header for pkt (text, or binary) at out; returns its length
 * (2..10). */
static size_t sb_socketio_frame_header(unsigned char *out, const sb_eio_buf_t *pkt) {
    size_t len = pkt->len;
    out[0] = pkt->binary ? 0x82 : 0x81; /* FIN, binary / text */
    if (len < 126) {
        out[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

/* Several queued packets framed by us into one buffer, written raw (LWS_WRITE_HTTP is sent
 * as is on a WebSocket): one syscall for a burst instead of one per packet. Takes the
 * references in pkts. Returns lws_write's result. */
static int sb_socketio_ws_write_batch(struct lws *wsi, sb_eio_buf_t **pkts, int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += pkts[i]->len + 10;
    unsigned char *buf = malloc(LWS_PRE + total), *o = buf ? buf + LWS_PRE : NULL;
    for (int i = 0; i < n; i++) {
        if (o) {
            o += sb_socketio_frame_header(o, pkts[i]);
            memcpy(o, pkts[i]->data, pkts[i]->len);
            o += pkts[i]->len;
        }
        sb_eio_buf_unref(pkts[i]);
    }
    int rc = buf ? lws_write(wsi, buf + LWS_PRE, (size_t)(o - (buf + LWS_PRE)), LWS_WRITE_HTTP)
                 : -1;
    free(buf);
    return rc;
}

/* Writes a Close frame with code, framed by us and written raw like the bursts (lws 4.1 has
 * no public LWS_WRITE_CLOSE, and sends no Close frame when a writeable callback returns -1: it
 * takes that as a failed write and kills the socket, whatever lws_close_reason said). Clients
 * then see the code instead of 1006. */
static void sb_socketio_ws_close_frame(struct lws *wsi, int code) {
    unsigned char buf[LWS_PRE + 4], *f = buf + LWS_PRE;
    f[0] = 0x88; /* FIN, close */
    f[1] = 2;
    f[2] = (unsigned char)(code >> 8);
    f[3] = (unsigned char)code;
    (void)lws_write(wsi, f, 4, LWS_WRITE_HTTP);
}

/* The session is over but the close waits for a writeable callback (output still pending):
 * bounds that wait, since a client that stopped reading never makes the socket writeable. The
 * connection joins the kill list; the tick resets it when its time is up (sb__socketio_kill_due).
 * Not an lws timeout: lws 4.1 on libuv runs a timeout only when its own timer next wakes (up to
 * ~20 s late), then still waits 5 s more to flush its unsent tail (measured: 16-20 s). */
static void sb_socketio_close_soon(sb_socketio_t *io, struct lws *wsi, sb_socketio_ws_t *ws) {
    if (ws->kill_prev) return; /* the first deadline holds */
    ws->kill_wsi = wsi;
    ws->kill_at = sb_mono_ms() + SB_SOCKETIO_CLOSE_WAIT_S * 1000;
    ws->kill_next = io->kill_head;
    if (io->kill_head) io->kill_head->kill_prev = &ws->kill_next;
    ws->kill_prev = &io->kill_head;
    io->kill_head = ws;
    if (ws->kill_at < io->armed_at) sb__socketio_arm(io, ws->kill_at, sb_mono_ms());
}

/* Sends what the core has queued: one lws_write per call, either one packet as a text frame
 * straight from its shared buffer, or a burst of up to SB_SOCKETIO_BURST packets
 * (SB_SOCKETIO_BURST_BYTES) framed into one buffer. A close is acted on once the queue ahead
 * of it has been written. Another writeable callback is asked for only when something is
 * left (the core wakes the connection when a packet lands in an empty queue).
 *
 * direct = 0: from lws's SERVER_WRITEABLE callback (returns -1 to close the connection).
 * direct = 1: from the flush, outside any callback, on one thread with lws: allowed while lws
 * holds no unsent tail of an earlier write (lws_partial_buffered; with one, it waits for a
 * writeable callback as before); a partial write is kept by lws, which finishes it on POLLOUT
 * before the next writeable callback, so the one-write-per-callback rule still holds. A close
 * or a write error is left to the writeable callback / lws's own close (returns 0); a close
 * waiting that way is bounded by SB_SOCKETIO_CLOSE_WAIT_S (sb_socketio_close_soon). */
static int sb_socketio_ws_send(sb_socketio_t *io, struct lws *wsi, sb_socketio_ws_t *ws,
                               int direct) {
    if (!io || !ws->attached) return direct ? 0 : -1;
    if (direct && (ws->peer_closing || lws_partial_buffered(wsi))) {
        if (!sb_eio_is_open(io->eio, ws->id)) sb_socketio_close_soon(io, wsi, ws);
        lws_callback_on_writable(wsi);
        return 0;
    }
    sb_eio_buf_t *pkts[SB_SOCKETIO_BURST];
    size_t bytes = 0;
    int n = 0, rc = 0;
    int burst = io->burst > 0 && io->burst < SB_SOCKETIO_BURST ? io->burst : SB_SOCKETIO_BURST;
    while (n < burst && bytes < SB_SOCKETIO_BURST_BYTES &&
           (rc = sb_eio_ws_pull(io->eio, ws->id, wsi, &pkts[n])) == 1)
        bytes += pkts[n++]->len;
    if (n == 0 && rc == SB_EIO_CLOSE) {
        if (direct) {
            sb_socketio_close_soon(io, wsi, ws);
            lws_callback_on_writable(wsi);
            return 0;
        }
        sb_socketio_ws_detach(io, wsi, ws);
        sb_socketio_ws_close_frame(wsi, ws->close_code ? ws->close_code : LWS_CLOSE_STATUS_NORMAL);
        return -1;
    }
    if (n == 0) return 0;
    int w;
    if (n == 1) {
        w = lws_write(wsi, (unsigned char *)pkts[0]->data, pkts[0]->len,
                      pkts[0]->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        sb_eio_buf_unref(pkts[0]);
    } else {
        w = sb_socketio_ws_write_batch(wsi, pkts, n);
    }
    if (w < 0) {
        if (!direct) return -1;
        lws_set_timeout(wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
        return 0;
    }
    /* more only if the burst stopped at its limits (rc 1) or a close waits behind it; an
     * emptied queue is woken again by the core when its next packet arrives. Asking anyway
     * costs a POLLOUT round (lws on libuv: uv_poll_start = epoll_ctl DEL + ADD, twice) and an
     * empty callback per send. */
    if (rc != 0) lws_callback_on_writable(wsi);
    return 0;
}

int sb_socketio_ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
                            sb_socketio_ws_t *ws, void *in, size_t len) {
    sb_socketio_t *io = ws && ws->io ? ws->io : sb_socketio_of(wsi);
    if (reason == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION) return sb_socketio_ws_filter(io, wsi);
    if (reason == LWS_CALLBACK_HTTP_CONFIRM_UPGRADE) return sb_socketio_ws_confirm(io, wsi);
    if (!ws)
        return reason == LWS_CALLBACK_CLOSED || reason == LWS_CALLBACK_WSI_DESTROY ||
                       reason == LWS_CALLBACK_WS_PEER_INITIATED_CLOSE
                   ? 0
                   : -1;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED: return sb_socketio_ws_open(io, wsi, ws);
    case LWS_CALLBACK_RECEIVE: return sb_socketio_ws_receive(io, wsi, ws, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE: return sb_socketio_ws_send(io, wsi, ws, 0);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: /* lws answers the close frame; no data after */
        ws->peer_closing = 1;
        sb_socketio_flush_unlink(ws);
        return 0;
    default: /* CLOSED, WSI_DESTROY */
        sb_socketio_ws_detach(io, wsi, ws);
        return 0;
    }
}