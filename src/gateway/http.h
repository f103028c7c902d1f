/* HTTP requests of the gateway on libwebsockets: one sb_req_t per request, its body, its
 * answer, and the lws protocol callback that drives them.
 *
 * Lifetime: a request is reference-counted. The connection holds one reference until the
 * answer is written or the connection closes; every Redis call in flight holds one more
 * (sb_req_hold before sending, sb_req_release in the callback). When the connection closes
 * first, req->wsi becomes NULL and answers are dropped, so a late Redis reply never touches
 * a freed connection. The answer is built whole (status line, headers, body) into one buffer
 * and written with a single lws_write from the writeable callback. */
#ifndef SB_GATEWAY_HTTP_H
#define SB_GATEWAY_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include <libwebsockets.h>
#include "gateway/api_ctx.h"
#include "gateway/socketio/socketio.h"
#include "switchboard/jwt.h"
#include "switchboard/redis.h"
#include "gateway/router.h"

#define SB_HTTP_BODY_MAX (64 * 1024)       /* larger bodies get 413 */
#define SB_HTTP_BODY_DRAIN_MAX (8 << 20)   /* beyond this a 413'd body is not even read */
#define SB_HTTP_HEADER_MAX 32768      /* lws's header buffer: all headers of a request */
#define SB_HTTP_AUTH_MAX (SB_JWT_MAX_LEN + 64) /* longer Authorization headers get 431 */
#define SB_HTTP_BODY_DEADLINE_S 30 /* a body not complete this long after its headers: 408 */
#define SB_HTTP_PATH_MAX 1024
#define SB_HTTP_QUERY_MAX 1024

struct sb_gateway;
typedef struct sb_req sb_req_t;

/* A route's handler: answers req now or later (after a Redis reply). */
typedef void (*sb_api_handler_fn)(sb_req_t *req);

/* Appends a handler's Redis call to b in mode, re-reading what it needs from req (route
 * parameters, req->doc, claims, req->ctx): it may run twice (sb_api_eval in api.h).
 * Returns 0 or a SB_E* code. */
typedef int (*sb_api_build_fn)(sb_batch_t *b, sb_req_t *req, sb_script_mode_t mode);

/* What a route table row's `data` points to. */
typedef struct {
    const char *label;         /* metrics label: the full pattern, e.g. "/api/agent/{type}" */
    sb_api_handler_fn handler;
    int roles;                 /* sb_role_t mask allowed; 0 = no token needed */
} sb_api_route_t;

struct sb_req {
    struct sb_gateway *gw;
    struct lws *wsi;            /* NULL once the connection has gone: answers are dropped */
    int refs;                   /* connection + Redis calls in flight */
    int method;                 /* sb_http_method_t */
    const char *method_name;    /* static */
    char path[SB_HTTP_PATH_MAX];
    char query[SB_HTTP_QUERY_MAX]; /* "a=1&b=2", decoded by lws */
    int query_too_long;            /* the query did not fit: refused with 414 */
    char *bearer;               /* Authorization bearer token, or NULL */
    int auth_too_long;          /* Authorization longer than SB_HTTP_AUTH_MAX: 431 */
    char if_none_match[48];     /* If-None-Match (ETag revalidation), "" when absent/too long */
    const char *cache_control;  /* static value for the answer; NULL = "no-store" */
    long long content_length;   /* -1 when absent */
    int content_length_bad;     /* Content-Length repeated, empty or not 1*DIGIT: refused */
    int json_body;              /* Content-Type is application/json (parameters allowed) */
    char *body;                 /* the request body (NUL-terminated), NULL when empty */
    size_t body_len;
    int body_too_large;         /* more than SB_HTTP_BODY_MAX arrived: answer 413 */
    sb_route_match_t match;     /* parameters of the matched route */
    const sb_api_route_t *route;/* NULL until matched */
    sb_claims_t claims;         /* the verified token (routes with roles) */
    cJSON *doc;                 /* the parsed body (sb_api_body_json), freed with the request */
    sb_api_ctx_t ctx;           /* the handler's own state across its Redis calls (api_ctx.h) */
    sb_api_build_fn eval_build; /* the builder of the script call in flight (sb_api_eval) */
    int64_t t0_us;              /* arrival, for the latency histogram */
    int in_dispatch;            /* in the route handler or pull, inside an lws callback: an
                                 * answer waits for HTTP_WRITEABLE instead of going out now */
    int dispatched;             /* the route ran (once per request, even when lws also
                                 * reports a body completion for a POST without a body) */
    int status;                 /* answer status, 0 until answered */
    unsigned char *out;         /* LWS_PRE + answer bytes, until written */
    size_t out_len;
    size_t body_max;            /* larger bodies get 413: SB_HTTP_BODY_MAX, or Socket.IO's
                                   maxPayload under /socket.io/ */
    char *origin;               /* Origin header (Socket.IO requests only, for CORS) or NULL */
    char *acr_headers;          /* Access-Control-Request-Headers (idem) or NULL */
    /* A handler that holds the request open for a later answer (a Socket.IO long-poll) sets
     * these: pull runs on writeable before an answer is looked for, so it may sb_req_send;
     * gone runs once when the connection goes away first. Both are cleared on answering.
     * gone may also be set at the header stage (a Socket.IO POST, while its body arrives):
     * a refusal before the handler runs calls it too. */
    void (*pull)(sb_req_t *req);
    void (*gone)(sb_req_t *req);
    uint64_t hold_id;           /* the holding handler's handle (an Engine.IO session) */
};

/* Per-connection data lws allocates (may be NULL in some callbacks, e.g. CLOSED_HTTP). The
 * same protocol serves HTTP and, after an upgrade on /socket.io/, the WebSocket (clients
 * without a subprotocol land on protocols[0]); lws gives the upgraded connection fresh,
 * zeroed data. */
typedef struct {
    sb_req_t *req;          /* the HTTP request being served on this connection, or NULL */
    int completions;        /* BODY_COMPLETION callbacks seen for the current request (lws
                             * repeats it, see sb_http_body_done in http.c) */
    int close_after;        /* the connection closes once the current answer is out (it
                             * carries `connection: close` when built after this is set): the
                             * client asked (Connection: close, HTTP/1.0), a request pipelined
                             * behind one with a body, a refused or unread body, a
                             * POST/PUT/PATCH without Content-Length (see http.c) */
    sb_socketio_ws_t ws;    /* Socket.IO WebSocket state (zero on plain HTTP) */
    unsigned char *raw_out; /* LWS_PRE + the JSON refusal of bytes lws could not parse as a
                             * request (see sb_http_raw_rx in http.c), until written; malloc'd,
                             * freed with the connection */
    size_t raw_len;
} sb_http_conn_t;

/* The lws protocol callback for HTTP (protocols[0]). */
int sb_http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len);

void sb_req_hold(sb_req_t *req);
void sb_req_release(sb_req_t *req); /* frees at zero references */
/* 1 when the client has gone (an answer would be dropped). */
int sb_req_gone(const sb_req_t *req);

/* Answers with status, content type and body (copied); extra_headers is "Name: value\r\n"
 * lines or NULL. A second answer to the same request is ignored. A JSON body (application/
 * json) that is not valid UTF-8 is sent repaired, each invalid sequence replaced by U+FFFD. */
void sb_req_send(sb_req_t *req, int status, const char *content_type, const char *body,
                 size_t len, const char *extra_headers);
/* Answers with the compact JSON of body (not consumed). */
void sb_req_json(sb_req_t *req, int status, const cJSON *body);
/* Answers {"success":false,"error":code,"message":<formatted>}. */
void sb_req_error(sb_req_t *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same with extra header lines (e.g. Retry-After, Allow). */
void sb_req_error_h(sb_req_t *req, int status, const char *headers, const char *code,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* 503 for Redis being unavailable. */
void sb_req_unavailable(sb_req_t *req);

/* Copies query parameter name into buf. Returns 1 if present, 0 if absent. */
int sb_req_query(const sb_req_t *req, const char *name, char *buf, size_t len);
/* The same over a joined query string "a=1&b=2". */
int sb_query_get(const char *query, const char *name, char *buf, size_t len);
/* Joins wsi's query arguments (lws keeps each as a %-decoded fragment) with '&' into out.
 * Returns 0, or -1 when they do not fit in len (out is then ""): such a request is refused
 * (414), never served as if it had no arguments. */
int sb_http_query_join(struct lws *wsi, char *out, size_t len);

/* Matches, authenticates and runs the route of a complete request (routes.c). */
void sb_api_dispatch(sb_req_t *req);

#endif
