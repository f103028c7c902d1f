/* HTTP on libwebsockets: request intake, bodies, answers, reference counting (see http.h).
 *
 * The lws callback sees a request in three steps: LWS_CALLBACK_HTTP (request line and
 * headers: we copy what we need, because lws may recycle its header table), zero or more
 * HTTP_BODY chunks (kept up to 64 KiB; beyond that only counted, so the client still reads
 * a clean 413 on a kept-alive connection), then BODY_COMPLETION; requests without a body are
 * dispatched at once. Answers are queued by sb_req_send and written from HTTP_WRITEABLE,
 * one lws_write each (lws keeps any unsent tail and finishes it itself). Requests under
 * /socket.io/ go to socketio.c instead of the route table, and so do the WebSocket reasons
 * of connections upgraded there; LWS_CALLBACK_WSI_DESTROY, the one callback every connection
 * gets with its data intact, detaches whatever is left.
 *
 * Two kinds of body lws 4.1 mishandles are refused at the header stage, answered at once with
 * `connection: close`, and the connection closed without reading the body: one sent with a
 * Transfer-Encoding (lws hands over the chunk framing and never reports the end: 411), and one
 * pipelined behind another request (lws hands over the wrong bytes, then reports the body's
 * end in a loop that never returns to libuv: 400). A request pipelined behind one with a body
 * is dealt with at BODY_COMPLETION (sb_http_body_done). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "gateway/gateway.h"
#include "gateway/http.h"
#include "switchboard/clock.h"
#include "switchboard/json.h"
#include "switchboard/log.h"
#include "switchboard/utf8.h"

/* ---- request objects ---------------------------------------------------------------------- */

static int64_t sb_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sb_req_free(sb_req_t *req) {
    req->gw->stats.in_flight--;
    if (!req->status) { /* never answered: the client left first (nginx's 499) */
        req->gw->stats.responses_orphaned++;
        sb_gw_stats_request(&req->gw->stats, req->route ? req->route->label : "unmatched",
                            req->method_name, 499, (double)(sb_now_us() - req->t0_us) / 1e6);
    }
    free(req->bearer);
    free(req->origin);
    free(req->acr_headers);
    free(req->body);
    free(req->out);
    sb_claims_close(&req->claims);
    cJSON_Delete(req->doc);
    free(req);
}

void sb_req_hold(sb_req_t *req) { req->refs++; }

void sb_req_release(sb_req_t *req) {
    if (req && --req->refs == 0) sb_req_free(req);
}

int sb_req_gone(const sb_req_t *req) { return req->wsi == NULL; }

/* Detaches the request from its connection (which drops its reference). A held request is
 * told first, while req->wsi is still the connection it was held on. */
static void sb_req_detach(sb_http_conn_t *conn) {
    sb_req_t *req = conn->req;
    conn->req = NULL;
    if (!req) return;
    void (*gone)(sb_req_t *) = req->gone;
    req->gone = NULL;
    req->pull = NULL;
    if (gone) gone(req);
    req->wsi = NULL;
    sb_req_release(req);
}

/* ---- answers ------------------------------------------------------------------------------ */

static const struct {
    int code;
    const char *reason;
} sb_reasons[] = {
    {200, "OK"},          {202, "Accepted"},           {204, "No Content"},
    {304, "Not Modified"},
    {400, "Bad Request"}, {401, "Unauthorized"},       {403, "Forbidden"},
    {404, "Not Found"},   {405, "Method Not Allowed"}, {409, "Conflict"},
    {408, "Request Timeout"}, {411, "Length Required"}, {414, "URI Too Long"},
    {413, "Payload Too Large"}, {415, "Unsupported Media Type"}, {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"}, {500, "Internal Server Error"},
    {501, "Not Implemented"}, {503, "Service Unavailable"}, {505, "HTTP Version Not Supported"},
};

/* lws leaves the reason phrase empty for codes it does not know (202, 429): we write the
 * status line ourselves. */
static const char *sb_http_reason(int code) {
    for (size_t i = 0; i < sizeof sb_reasons / sizeof sb_reasons[0]; i++)
        if (sb_reasons[i].code == code) return sb_reasons[i].reason;
    return "Unknown";
}

/* Writes req's answer (lws keeps what the socket does not take and sends it itself) and ends
 * the transaction: the connection stays open for the next request (keep-alive), or closes —
 * returns -1 to close it now — after a body too large to drain, when lws says so, or when the
 * connection is marked close_after (then once lws has sent the answer's tail). */
static int sb_http_write_answer(struct lws *wsi, sb_http_conn_t *conn, sb_req_t *req) {
    int drain_close = req->content_length > SB_HTTP_BODY_DRAIN_MAX;
    int n = lws_write(wsi, req->out + LWS_PRE, req->out_len, LWS_WRITE_HTTP);
    sb_req_detach(conn);
    if (n < 0 || drain_close) return -1;
    if (conn->close_after) {
        if (!lws_partial_buffered(wsi)) return -1;
        lws_callback_on_writable(wsi); /* HTTP_WRITEABLE closes once the tail is out */
        return 0;
    }
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* Writes an answer made outside lws's callbacks (in a Redis reply) at once, instead of asking
 * for HTTP_WRITEABLE: with lws on libuv that round costs several epoll_ctl calls and a loop
 * turn. Returns 1 when the request is done with (it may have been freed), 0 to leave it to
 * HTTP_WRITEABLE (lws still holds an earlier answer's tail). A connection that must close
 * after the answer (`connection: close`, HTTP/1.0, close_after) is closed here and now, with
 * nothing left unsent: no connection is being serviced by lws at this point, which is what
 * LWS_TO_KILL_SYNC asks. (LWS_TO_KILL_ASYNC would wait for lws's next timer check, seconds
 * later, and HTTP_WRITEABLE does not come while lws holds a request pipelined behind a body.) */
static int sb_req_write_now(sb_req_t *req) {
    struct lws *wsi = req->wsi;
    sb_http_conn_t *conn = lws_wsi_user(wsi);
    if (!conn || conn->req != req || lws_partial_buffered(wsi)) return 0;
    if (sb_http_write_answer(wsi, conn, req) < 0)
        lws_set_timeout(wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_SYNC);
    return 1;
}

static void sb_req_send_bytes(sb_req_t *req, int status, const char *content_type,
                              const char *body, size_t len, const char *extra_headers) {
    if (req->status) return;
    sb_gateway_t *gw = req->gw;
    req->status = status;
    req->pull = NULL;
    req->gone = NULL;
    sb_gw_stats_request(&gw->stats, req->route ? req->route->label : "unmatched",
                        req->method_name, status, (double)(sb_now_us() - req->t0_us) / 1e6);
    if (status == 503) gw->stats.redis_unavailable++;
    if (!req->wsi) {
        gw->stats.responses_orphaned++;
        return;
    }
    char head[1280], clen[48] = "";
    if (status != 304) /* a 304 has no body, and its length would describe the 200's */
        snprintf(clen, sizeof clen, "content-length: %zu\r\n", len);
    sb_http_conn_t *conn = lws_wsi_user(req->wsi);
    int hlen = snprintf(head, sizeof head,
                        "HTTP/1.1 %d %s\r\ncontent-type: %s\r\n%s"
                        "cache-control: %s\r\n%s%s\r\n",
                        status, sb_http_reason(status), content_type, clen,
                        req->cache_control ? req->cache_control : "no-store",
                        conn && conn->close_after ? "connection: close\r\n" : "",
                        extra_headers ? extra_headers : "");
    if (hlen < 0 || (size_t)hlen >= sizeof head) hlen = 0;
    req->out = malloc(LWS_PRE + (size_t)hlen + len);
    if (!req->out || !hlen) {
        sb_error("gateway", "cannot build the answer to %s %s: closing", req->method_name,
                 req->path);
        lws_set_timeout(req->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
        return;
    }
    if (req->method == SB_HTTP_HEAD) len = 0; /* the GET's headers, Content-Length included */
    memcpy(req->out + LWS_PRE, head, (size_t)hlen);
    if (len) memcpy(req->out + LWS_PRE + hlen, body, len);
    req->out_len = (size_t)hlen + len;
    if (!req->in_dispatch && sb_req_write_now(req)) return;
    lws_callback_on_writable(req->wsi);
}

/* JSON answers carry data read from Redis (job records, presence), which anyone with access
 * to Redis may have written: JSON that is not valid UTF-8 goes out repaired, each invalid
 * sequence replaced by U+FFFD (utf8.h), so that every client reads the same valid JSON. */
void sb_req_send(sb_req_t *req, int status, const char *content_type, const char *body,
                 size_t len, const char *extra_headers) {
    static const char oom[] = "{\"success\":false,\"error\":\"internal\"}";
    char *repaired = NULL;
    if (!req->status && !strncmp(content_type, "application/json", 16) &&
        !sb_utf8_valid(body, len)) {
        sb_warn("gateway", "the answer to %s %s held bytes that are not UTF-8: sent repaired",
                req->method_name, req->path);
        repaired = sb_utf8_repair(body, len, &len);
        status = repaired ? status : 500;
        body = repaired ? repaired : oom;
        len = repaired ? len : sizeof oom - 1;
    }
    sb_req_send_bytes(req, status, content_type, body, len, extra_headers);
    free(repaired);
}

void sb_req_json(sb_req_t *req, int status, const cJSON *body) {
    char *text = sb_json_print(body);
    if (!text) {
        sb_req_send(req, 500, "application/json", "{\"success\":false,\"error\":\"internal\"}",
                    36, NULL);
        return;
    }
    sb_req_send(req, status, "application/json", text, strlen(text), NULL);
    free(text);
}

/* {"success":false,"error":code,"message":msg}, malloc'd; NULL when out of memory. */
static char *sb_http_error_json(const char *code, const char *msg) {
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddBoolToObject(o, "success", 0);
        cJSON_AddStringToObject(o, "error", code);
        cJSON_AddStringToObject(o, "message", msg);
    }
    char *text = o ? sb_json_print(o) : NULL;
    cJSON_Delete(o);
    return text;
}

__attribute__((format(printf, 5, 0)))
static void sb_req_verror(sb_req_t *req, int status, const char *headers, const char *code,
                          const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    char *text = sb_http_error_json(code, msg);
    if (text) sb_req_send(req, status, "application/json", text, strlen(text), headers);
    else sb_req_send(req, 500, "application/json", "{\"success\":false,\"error\":\"internal\"}",
                     36, NULL);
    free(text);
}

void sb_req_error(sb_req_t *req, int status, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sb_req_verror(req, status, NULL, code, fmt, ap);
    va_end(ap);
}

void sb_req_error_h(sb_req_t *req, int status, const char *headers, const char *code,
                    const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sb_req_verror(req, status, headers, code, fmt, ap);
    va_end(ap);
}

void sb_req_unavailable(sb_req_t *req) {
    sb_req_error(req, 503, "redis_unavailable",
                 "Redis is unavailable; nothing was changed, try again shortly");
}

int sb_req_query(const sb_req_t *req, const char *name, char *buf, size_t len) {
    return sb_query_get(req->query, name, buf, len);
}

int sb_query_get(const char *query, const char *name, char *buf, size_t len) {
    size_t nlen = strlen(name);
    for (const char *p = query; *p;) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        if (plen > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            snprintf(buf, len, "%.*s", (int)(plen - nlen - 1), p + nlen + 1);
            return 1;
        }
        if (plen == nlen && strncmp(p, name, nlen) == 0) {
            snprintf(buf, len, "%s", "");
            return 1;
        }
        p += plen + (amp ? 1 : 0);
    }
    return 0;
}

/* ---- intake ------------------------------------------------------------------------------- */

static const struct {
    enum lws_token_indexes token;
    int method;
    const char *name;
} sb_method_tokens[] = {
    {WSI_TOKEN_GET_URI, SB_HTTP_GET, "GET"},          {WSI_TOKEN_POST_URI, SB_HTTP_POST, "POST"},
    {WSI_TOKEN_PUT_URI, SB_HTTP_PUT, "PUT"},          {WSI_TOKEN_DELETE_URI, SB_HTTP_DELETE, "DELETE"},
    {WSI_TOKEN_PATCH_URI, SB_HTTP_PATCH, "PATCH"},    {WSI_TOKEN_OPTIONS_URI, SB_HTTP_OPTIONS, "OPTIONS"},
    {WSI_TOKEN_HEAD_URI, SB_HTTP_HEAD, "HEAD"},
};

static void sb_req_method(sb_req_t *req, struct lws *wsi) {
    req->method_name = "OTHER";
    for (size_t i = 0; i < sizeof sb_method_tokens / sizeof sb_method_tokens[0]; i++)
        if (lws_hdr_total_length(wsi, sb_method_tokens[i].token) > 0) {
            req->method = sb_method_tokens[i].method;
            req->method_name = sb_method_tokens[i].name;
            return;
        }
}

/* Copies header h into a malloc'd string, or NULL when absent or longer than max. */
static char *sb_hdr_dup(struct lws *wsi, enum lws_token_indexes h, int max) {
    int n = lws_hdr_total_length(wsi, h);
    if (n <= 0 || n > max) return NULL;
    char *s = malloc((size_t)n + 1);
    if (s && lws_hdr_copy(wsi, s, n + 1, h) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

int sb_http_query_join(struct lws *wsi, char *out, size_t len) {
    size_t o = 0;
    char frag[SB_HTTP_QUERY_MAX];
    out[0] = '\0';
    for (int i = 0;; i++) {
        if (lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i) < 0) {
            if (lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i) <= 0) return 0; /* end */
            break; /* a fragment longer than frag */
        }
        int w = snprintf(out + o, len - o, "%s%s", o ? "&" : "", frag);
        if (w < 0 || (size_t)w >= len - o) break;
        o += (size_t)w;
    }
    out[0] = '\0';
    return -1;
}

#define SB_HTTP_CL_BAD (-2) /* sb_req_content_length: a framing the request cannot have */

/* The request's Content-Length: -1 when absent, SB_HTTP_CL_BAD when it is given twice (lws
 * keeps each repeat of a header as one more fragment of it, and would read the first), empty,
 * or anything but 1*DIGIT (lws reads "0x2f" as 0 and the body as the next request) — RFC
 * 9112 §6.3: such framing is an unrecoverable error, answered 400 and closed. */
static long long sb_req_content_length(struct lws *wsi) {
    char v[32];
    int n = lws_hdr_copy_fragment(wsi, v, sizeof v, WSI_TOKEN_HTTP_CONTENT_LENGTH, 0);
    if (n < 0 && lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, 0) <= 0)
        return -1; /* absent */
    if (n < 0 || lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, 1) > 0)
        return SB_HTTP_CL_BAD;
    const char *d = v;
    while (*d == ' ' || *d == '\t') d++;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    int digits = n - (int)(d - v);
    if (digits <= 0 || digits > 18) return SB_HTTP_CL_BAD;
    long long len = 0;
    for (int i = 0; i < digits; i++) {
        if (d[i] < '0' || d[i] > '9') return SB_HTTP_CL_BAD;
        len = len * 10 + (d[i] - '0');
    }
    return len;
}

/* 1 when a Content-Type value names application/json (any case; parameters such as
 * "; charset=utf-8" allowed after it). */
static int sb_http_media_json(const char *v) {
    static const char json[] = "application/json";
    while (*v == ' ' || *v == '\t') v++;
    if (strncasecmp(v, json, sizeof json - 1) != 0) return 0;
    v += sizeof json - 1;
    while (*v == ' ' || *v == '\t') v++;
    return *v == '\0' || *v == ';';
}

static void sb_req_headers(sb_req_t *req, struct lws *wsi) {
    char buf[32];
    size_t tlen;
    req->query_too_long = sb_http_query_join(wsi, req->query, sizeof req->query) != 0;
    req->auth_too_long = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION) > SB_HTTP_AUTH_MAX;
    char *auth = sb_hdr_dup(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, SB_HTTP_AUTH_MAX);
    const char *token = sb_jwt_bearer(auth, &tlen);
    if (token) req->bearer = strndup(token, tlen);
    free(auth);
    if (lws_hdr_copy(wsi, req->if_none_match, sizeof req->if_none_match,
                     WSI_TOKEN_HTTP_IF_NONE_MATCH) < 0)
        req->if_none_match[0] = '\0';
    req->content_length = sb_req_content_length(wsi);
    req->content_length_bad = req->content_length == SB_HTTP_CL_BAD;
    if (req->content_length_bad) req->content_length = -1;
    if (lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_CONTENT_TYPE) > 0)
        req->json_body = sb_http_media_json(buf);
}

/* 1 for a method whose request lws 4.1 reads a body for even without a Content-Length: all
 * that follows on the connection (a pipelined or the next kept-alive request). */
static int sb_req_reads_to_close(const sb_req_t *req) {
    return req->content_length < 0 &&
           (req->method == SB_HTTP_POST || req->method == SB_HTTP_PUT ||
            req->method == SB_HTTP_PATCH);
}

/* 1 when the request names a Transfer-Encoding other than identity (e.g. chunked). */
static int sb_req_transfer_coded(struct lws *wsi) {
    char te[64];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) <= 0) return 0;
    if (lws_hdr_copy(wsi, te, sizeof te, WSI_TOKEN_HTTP_TRANSFER_ENCODING) < 0) return 1;
    const char *v = te;
    size_t n = strlen(v);
    while (*v == ' ' || *v == '\t') v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    return !(n == 8 && strncasecmp(v, "identity", 8) == 0);
}

/* 1 when the connection must close after this request's answer, as the client asked
 * (RFC 9112 §9.6): a "close" option in Connection, or HTTP/1.0 without exactly
 * "Connection: keep-alive" (lws's own test, so that whenever lws would close the answer says
 * so too). */
static int sb_req_asks_close(struct lws *wsi) {
    char v[128], ver[16];
    int n = lws_hdr_copy(wsi, v, sizeof v, WSI_TOKEN_CONNECTION);
    if (n < 0) v[0] = '\0'; /* too long to be one lws reads either */
    int http10 = !(lws_hdr_copy(wsi, ver, sizeof ver, WSI_TOKEN_HTTP) > 7 && ver[5] == '1' &&
                   ver[7] == '1');
    if (http10 && strcasecmp(v, "keep-alive") != 0) return 1;
    for (char *save = NULL, *t = strtok_r(v, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ' || *t == '\t') t++;
        size_t len = strcspn(t, " \t");
        if (len == 5 && strncasecmp(t, "close", 5) == 0) return 1;
    }
    return 0;
}

/* Runs the route (or the Socket.IO polling transport) and lifts lws's idle timeout while
 * Redis answers (aredis has its own) or a long-poll is held (the Engine.IO heartbeat
 * bounds it). */
static void sb_req_run(sb_req_t *req) {
    struct lws *wsi = req->wsi;
    if (req->dispatched) return; /* "content-length: 0" runs it at once and at completion */
    req->dispatched = 1;
    req->in_dispatch = 1; /* answers made now go out from lws's own writeable callback */
    if (sb_socketio_at(req->gw, req->path)) sb_socketio_request(req);
    else sb_api_dispatch(req);
    req->in_dispatch = 0;
    if (!req->status && wsi) lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
}

/* Answers req at once with `connection: close` (lws allows a write in LWS_CALLBACK_HTTP) and
 * returns -1, so lws closes the connection without reading the body the request announced.
 * A tail the socket did not take at once is lost with the connection. */
static int sb_http_refuse(struct lws *wsi, sb_http_conn_t *conn, sb_req_t *req, int status,
                          const char *code, const char *message) {
    conn->close_after = 1;
    void (*gone)(sb_req_t *) = req->gone; /* a handler told of the headers (a Socket.IO POST) */
    req->gone = NULL;
    if (gone) gone(req);
    req->in_dispatch = 1; /* build the answer only: it is written just below */
    sb_req_error(req, status, code, "%s", message);
    req->in_dispatch = 0;
    if (req->out && !lws_partial_buffered(wsi)) (void)sb_http_write_answer(wsi, conn, req);
    return -1;
}

/* Refuses, at the header stage, a body lws 4.1 would mishandle (see the top of this file).
 * Returns -1 after answering, or 0. A request with a body that lws hands over outside libuv's
 * poll phase came from lws's buffer, not from the socket: it was pipelined. */
static int sb_http_refuse_body(struct lws *wsi, sb_http_conn_t *conn, sb_req_t *req) {
    if (req->query_too_long) /* its arguments cannot be read: none is better than some */
        return sb_http_refuse(wsi, conn, req, 414, "uri_too_long",
                              "the query string is longer than the gateway reads");
    if (req->content_length_bad)
        return sb_http_refuse(wsi, conn, req, 400, "bad_request",
                              "Content-Length must be given once, as a decimal number of bytes");
    if (sb_req_transfer_coded(wsi))
        return sb_http_refuse(wsi, conn, req, 411, "length_required",
                              "send the body with a Content-Length: Transfer-Encoding (e.g. "
                              "chunked) is not supported");
    if (req->content_length > 0 && !req->gw->in_io_poll)
        return sb_http_refuse(wsi, conn, req, 400, "bad_request",
                              "a request with a body may not be pipelined behind another "
                              "request; send it again on a new connection");
    return 0;
}

static int sb_http_begin(struct lws *wsi, sb_http_conn_t *conn, const char *path) {
    sb_gateway_t *gw = lws_context_user(lws_get_context(wsi));
    if (!conn) return -1;
    sb_req_detach(conn);
    conn->completions = 0;
    sb_req_t *req = calloc(1, sizeof *req);
    if (!req) return -1;
    req->gw = gw;
    req->wsi = wsi;
    req->refs = 1;
    req->t0_us = sb_now_us();
    gw->stats.in_flight++;
    conn->req = req;
    sb_req_method(req, wsi);
    if (snprintf(req->path, sizeof req->path, "%s", path ? path : "") >= (int)sizeof req->path)
        req->path[0] = '\0'; /* too long: matches nothing, 404 */
    sb_req_headers(req, wsi);
    req->body_max = SB_HTTP_BODY_MAX;
    if (sb_socketio_at(gw, req->path)) sb_socketio_request_headers(req, wsi);
    if (sb_http_refuse_body(wsi, conn, req) != 0) return -1;
    if (sb_req_reads_to_close(req) || sb_req_asks_close(wsi))
        conn->close_after = 1; /* answered with `connection: close`, then closed */
    if (req->content_length > SB_HTTP_BODY_DRAIN_MAX) {
        conn->close_after = 1; /* the body is not read */
        req->body_too_large = 1;
        sb_req_run(req); /* answers 413; the connection closes after the write */
        return 0;
    }
    if (req->content_length <= 0) sb_req_run(req);
    return 0;
}

static void sb_http_body(sb_req_t *req, const void *in, size_t len) {
    if (!len || !in || req->content_length < 0) return; /* no length: not its body (see above) */
    if (req->body_too_large || req->body_len + len > req->body_max) {
        req->body_too_large = 1;
        free(req->body);
        req->body = NULL;
        req->body_len += len; /* keep counting what was drained */
        return;
    }
    char *b = realloc(req->body, req->body_len + len + 1);
    if (!b) {
        req->body_too_large = 1;
        return;
    }
    memcpy(b + req->body_len, in, len);
    req->body = b;
    req->body_len += len;
    req->body[req->body_len] = '\0';
}

#define SB_STR2(x) #x
#define SB_STR(x) SB_STR2(x)

/* 1 when req's body is still arriving SB_HTTP_BODY_DEADLINE_S after its headers. lws gives a
 * body only a timeout between two pieces (re-armed by each), so a client sending a byte every
 * few seconds would hold the request open for ever; this bounds the whole. Checked as each
 * piece arrives: a client that stops sending altogether is closed by lws's own timeout. */
static int sb_http_body_late(const sb_req_t *req) {
    return !req->status && sb_now_us() - req->t0_us > (int64_t)SB_HTTP_BODY_DEADLINE_S * 1000000;
}

/* The body is complete: run the request. lws 4.1 reports the completion again while another
 * request waits in its buffer behind this one (RFC 9112 tells clients not to pipeline after a
 * non-idempotent request): once per loop turn until reading is paused, and it gives no
 * HTTP_WRITEABLE meanwhile. So on the first repeat the gateway stops reading, writes an answer
 * already built, and closes the connection once the answer is out (with `connection: close`
 * when it is not built yet); the client sends the rest again on a new connection. A further
 * repeat would mean lws is spinning: the connection is closed at once. Returns -1 to close. */
static int sb_http_body_done(struct lws *wsi, sb_http_conn_t *conn) {
    sb_req_t *req = conn->req;
    int n = ++conn->completions;
    if (n == 1) {
        if (req && !req->status) sb_req_run(req);
        return 0;
    }
    if (n > 2) return -1;
    conn->close_after = 1;
    lws_rx_flow_control(wsi, 0);
    if (req && req->out && !lws_partial_buffered(wsi)) return sb_http_write_answer(wsi, conn, req);
    return 0;
}

/* ---- what lws cannot parse as HTTP -------------------------------------------------------- */

/* lws 4.1 hands a connection whose first line names a method it does not know (garbage, the
 * HTTP/2 preface "PRI * HTTP/2.0", BREW, TRACE) to the raw-socket role on protocols[0], i.e.
 * here, with the bytes read so far (LWS_SERVER_OPTION_FALLBACK_TO_APPLY_LISTEN_ACCEPT_CONFIG;
 * without it lws answers an HTML 403 itself), and so it does with CONNECT. The gateway answers
 * a JSON refusal once, with `connection: close`, and closes. (What lws refuses later in the
 * request — an absolute URI, a path that climbs above the root — it answers with its own HTML
 * 403 and closes, with no callback to the application; headers larger than
 * max_http_header_data make it close without an answer.) */

/* The status, code and message for the first bytes of a connection that is not HTTP/1. */
static int sb_http_raw_refusal(const char *in, size_t len, const char **code, char *msg,
                               size_t msglen) {
    static const char h2[] = "PRI * HTTP/2.0";
    size_t m = 0;
    while (m < len && m < 16 && in[m] >= 'A' && in[m] <= 'Z') m++;
    if (len >= sizeof h2 - 1 && memcmp(in, h2, sizeof h2 - 1) == 0) {
        *code = "http_version_not_supported";
        snprintf(msg, msglen, "HTTP/2 is not served here; use HTTP/1.1");
        return 505;
    }
    if (m > 0 && m < len && in[m] == ' ' && memmem(in, len, " HTTP/1.", 8)) {
        *code = "not_implemented";
        snprintf(msg, msglen, "method %.*s is not implemented; use GET, HEAD, POST or OPTIONS",
                 (int)m, in);
        return 501;
    }
    *code = "bad_request";
    snprintf(msg, msglen, "the request is not HTTP/1.1");
    return 400;
}

/* The first bytes of a connection lws gave up parsing as HTTP: prepares the refusal and asks
 * for RAW_WRITEABLE, which writes it and closes. Returns -1 to close at once. */
static int sb_http_raw_rx(struct lws *wsi, sb_http_conn_t *conn, const void *in, size_t len) {
    const char *code;
    char msg[160], head[256];
    if (!conn) return -1;
    if (conn->raw_out) return 0; /* answered already: what follows is not read */
    int status = sb_http_raw_refusal(in ? in : "", in ? len : 0, &code, msg, sizeof msg);
    sb_gateway_t *gw = lws_context_user(lws_get_context(wsi));
    sb_gw_stats_request(&gw->stats, "unmatched", "OTHER", status, 0);
    char *body = sb_http_error_json(code, msg);
    if (!body) return -1;
    size_t blen = strlen(body);
    int hlen = snprintf(head, sizeof head,
                        "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                        "content-length: %zu\r\ncache-control: no-store\r\n"
                        "connection: close\r\n\r\n",
                        status, sb_http_reason(status), blen);
    conn->raw_out = malloc(LWS_PRE + (size_t)hlen + blen);
    if (conn->raw_out) {
        memcpy(conn->raw_out + LWS_PRE, head, (size_t)hlen);
        memcpy(conn->raw_out + LWS_PRE + hlen, body, blen);
        conn->raw_len = (size_t)hlen + blen;
        lws_callback_on_writable(wsi);
    }
    free(body);
    return conn->raw_out ? 0 : -1;
}

/* Writes the refusal prepared by sb_http_raw_rx, then closes once lws has sent it all. */
static int sb_http_raw_writeable(struct lws *wsi, sb_http_conn_t *conn) {
    if (!conn || !conn->raw_out) return -1;
    if (conn->raw_len) {
        int n = lws_write(wsi, conn->raw_out + LWS_PRE, conn->raw_len, LWS_WRITE_RAW);
        conn->raw_len = 0;
        if (n >= 0 && lws_partial_buffered(wsi)) {
            lws_callback_on_writable(wsi); /* lws sends the tail, then we are called again */
            return 0;
        }
    }
    return -1;
}

/* Writes the queued answer. Returns -1 to close the connection. */
static int sb_http_writeable(struct lws *wsi, sb_http_conn_t *conn) {
    sb_req_t *req = conn ? conn->req : NULL;
    if (!req && conn && conn->close_after) return -1; /* the answer's tail is out: close */
    if (req && !req->out && req->pull) {
        req->in_dispatch = 1; /* the answer pull makes is written just below */
        req->pull(req);
        req->in_dispatch = 0;
    }
    if (!req || !req->out) return 0;
    return sb_http_write_answer(wsi, conn, req);
}

int sb_http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len) {
    sb_http_conn_t *conn = user; /* NULL in some callbacks (e.g. CLOSED_HTTP) */
    if (sb_socketio_ws_reason(reason)) /* the WebSocket side: Socket.IO */
        return sb_socketio_ws_callback(wsi, reason, conn ? &conn->ws : NULL, in, len);
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return sb_http_begin(wsi, conn, in);
    case LWS_CALLBACK_HTTP_BODY:
        if (conn && conn->req) {
            if (sb_http_body_late(conn->req))
                return sb_http_refuse(wsi, conn, conn->req, 408, "request_timeout",
                                      "the request body did not arrive within "
                                      SB_STR(SB_HTTP_BODY_DEADLINE_S) " s of its headers");
            sb_http_body(conn->req, in, len);
            if (conn->req->body_len > SB_HTTP_BODY_DRAIN_MAX) return -1;
        }
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return conn ? sb_http_body_done(wsi, conn) : 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return sb_http_writeable(wsi, conn);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (conn) sb_req_detach(conn);
        return 0;
    case LWS_CALLBACK_RAW_ADOPT:
        return 0;
    case LWS_CALLBACK_RAW_RX:
        return sb_http_raw_rx(wsi, conn, in, len);
    case LWS_CALLBACK_RAW_WRITEABLE:
        return sb_http_raw_writeable(wsi, conn);
    case LWS_CALLBACK_WSI_DESTROY: /* the last word on every connection; user still intact */
        if (conn) {
            free(conn->raw_out);
            conn->raw_out = NULL;
            sb_req_detach(conn);
            sb_socketio_ws_callback(wsi, reason, &conn->ws, in, len);
        }
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}
