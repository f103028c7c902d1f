/* Engine.IO v4 server session machine (and v3, when allowed), independent of any transport
 * library.
 *
 * DESIGN NOTE — how the HTTP layer drives it
 * -------------------------------------------
 * This module owns every Engine.IO session (sid, heartbeat, upgrade, outgoing queue) and knows
 * the wire format; the HTTP layer (libwebsockets on libuv) owns sockets and timers and knows
 * nothing of Engine.IO. Everything is single-threaded: call it from the loop thread only.
 * Files: eio.c (server, sessions, deadlines, deferred close), eio_http.c (handshake and
 * long-polling), eio_ws.c (WebSocket and upgrade), eio_queue.c (outgoing queues),
 * eio_codec.c (buffers, payload/packet codec); eio_internal.h is private to them.
 *
 *  1. Every request under /socket.io/ (after CORS / OPTIONS, which are the HTTP layer's job):
 *     fill an sb_eio_req_t from the query (EIO, transport, sid), the method, whether it is a
 *     WebSocket upgrade, and for POST the complete body (reject bodies larger than
 *     sb_eio_max_payload() with 413 while reading), then call sb_eio_http().
 *       - reply.status != 0: answer now with status / content_type / body, done.
 *       - reply.status == 0 (SB_EIO_HOLD): a poll GET is held. Keep the request open (lws:
 *         lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0)); when the wake callback names this conn,
 *         call sb_eio_poll_pull() from the writeable callback; it answers 1 with the reply.
 *       - WebSocket (req.websocket = 1, called when the upgrade is ESTABLISHED; sb_eio_check()
 *         may be used before, at FILTER time, to refuse with the error reply): status 101 means
 *         the conn is attached to session reply.id. On each writeable callback call
 *         sb_eio_ws_pull(): 1 = send that buffer as one text frame and request writeable again,
 *         0 = nothing to send, SB_EIO_CLOSE = close the WebSocket. Each complete received
 *         message goes to sb_eio_ws_frame().
 *  2. wake(ud, conn): "conn has something to do" — call lws_callback_on_writable(conn). It is
 *     called when data is queued for an idle conn and when its session closes. It is never
 *     called for a conn after sb_eio_detach() returned for it.
 *  3. When a conn goes away (lws CLOSED / CLOSED_HTTP, client abort), call sb_eio_detach(). The
 *     conn pointer must stay valid until then (it is only compared and handed back to wake).
 *  4. Timers: sb_eio_tick(now) sends pings, closes sessions whose pong is late, cancels
 *     stalled upgrades and frees closed sessions; it returns the earliest deadline left. The
 *     HTTP layer keeps one timer armed for that deadline, and re-arms it when the schedule
 *     callback announces an earlier one (a new session, a probe), so every deadline fires on
 *     time, not on a periodic tick. Cost per tick: two passes over a compact int64 array of
 *     deadlines (50k sessions: ~50 µs each) plus work for the due ones; the HTTP layer spaces
 *     ticks a few ms apart at least so that dense deadlines share one.
 *
 * References: the HTTP layer never holds a session pointer. It holds an sb_eio_id_t handle
 * (slot index + generation); a handle of a freed session is detected (calls return
 * SB_ENOTFOUND, or the error reply / SB_EIO_CLOSE), so a use-after-free is impossible. Buffers
 * handed out (sb_eio_buf_t) carry one reference the caller owns and must sb_eio_buf_unref().
 *
 * Re-entrancy: callbacks (wake, the app callbacks) may call back into this module. A session
 * closed from inside a call (slow consumer, parse error) is only marked; the app's on_close,
 * the wakes and the free happen when the outermost call returns (like hiredis's deferred free),
 * so fan-out loops never see rooms or sessions change under them. sb_eio_batch_begin/end
 * extend that window over a loop of sends.
 *
 * CORS (HTTP layer): on /socket.io/ answer OPTIONS with 204 and, on every response,
 *   Access-Control-Allow-Origin: <request Origin> (or the configured one), Vary: Origin,
 *   Access-Control-Allow-Credentials: true, Access-Control-Allow-Methods: GET, POST, OPTIONS,
 *   Access-Control-Allow-Headers: <Access-Control-Request-Headers> (at least content-type),
 *   and Cache-Control: no-store on poll responses.
 *
 * Memory: sb_eio_session_t is 160 bytes on x86-64 (sid and the outgoing ring's first 4
 * entries inline; sb_eio_session_size()), plus 20 bytes of per-slot tables (slots, gens, due)
 * and a hash bucket; a ring grown by a burst is malloc'd and freed once drained. Measured
 * with glibc mallinfo2 over 50k sessions: 176 bytes of heap per idle session; 704 bytes per
 * Socket.IO-connected socket including its own `user:` room. */
#ifndef SB_GATEWAY_EIO_H
#define SB_GATEWAY_EIO_H

#include <stddef.h>
#include <stdint.h>

#define SB_EIO_SID_LEN 20 /* 15 random bytes, base64url */

/* Handle of a session: generation << 32 | slot. 0 is never a valid handle. */
typedef uint64_t sb_eio_id_t;

typedef struct sb_eio_server sb_eio_server_t;

/* ---- shared, refcounted, immutable packet buffers --------------------------------------- */

/* One encoded Engine.IO packet (e.g. `42["ev",{}]`), or a joined polling payload. Encoded
 * once, shared by every recipient. `headroom` spare bytes precede data (the HTTP layer may
 * write a frame header there, e.g. LWS_PRE for lws_write; single-threaded, so sharing is
 * safe). data[len] is a NUL for convenience. */
typedef struct sb_eio_buf {
    uint32_t refs;  /* owners; freed when it drops to 0 */
    uint32_t len;   /* bytes at data */
    char *data;     /* headroom bytes into mem */
    uint8_t binary; /* 1: the raw bytes of a binary message (sb_eio_send_binary): a binary
                       WebSocket frame, `b` + base64 in a polling payload; 0: a text packet */
    char mem[];
} sb_eio_buf_t;

/* Allocates a buffer of len bytes (+ headroom, + NUL) with refs = 1, copying src when non-NULL.
 * Returns NULL on allocation failure or len > UINT32_MAX. */
sb_eio_buf_t *sb_eio_buf_create(size_t headroom, const void *src, size_t len);
sb_eio_buf_t *sb_eio_buf_ref(sb_eio_buf_t *b); /* +1, returns b */
void sb_eio_buf_unref(sb_eio_buf_t *b);         /* -1, frees at 0; accepts NULL */

/* ---- configuration and callbacks ---------------------------------------------------------- */

typedef struct sb_eio_config {
    int ping_interval_ms;     /* 25000 */
    int ping_timeout_ms;      /* 20000 */
    int upgrade_timeout_ms;   /* 10000: a probing WebSocket must send `5` by then */
    int close_grace_ms;       /* 30000: how long a closed polling session waits for its GET */
    size_t max_payload;       /* 1000000: largest POST body / WebSocket message accepted */
    size_t max_queue_bytes;   /* 1 MiB: queued outgoing bytes before the session is dropped
                                 (one packet alone in the queue may be larger) */
    uint32_t max_queue_packets; /* 1024: queued outgoing packets before it is dropped */
    uint32_t max_sessions;    /* 200000: handshakes beyond it get 503 */
    size_t headroom;          /* spare bytes before every buffer handed out (LWS_PRE) */
    int allow_eio3;           /* 1: also accept Engine.IO v3 handshakes (EIO=3), see below */
} sb_eio_config_t;

/* Engine.IO v3 (allow_eio3; socket.io-client v2, as socket.io's allowEIO3). A session opened
 * with EIO=3 keeps v3 for its life; the differences are all inside this module:
 *   - polling payloads are `<length>:<packet>` with the length in UTF-16 code units (no \x1e);
 *     a POST may also be a binary payload (XHR2: per packet a 0 string / 1 binary byte, the
 *     length as digit bytes, 0xFF, the packet), told apart by its first byte (0x00 / 0x01
 *     against an ASCII digit). Responses are always string payloads: the server never sends
 *     binary, so `b64=1` changes nothing.
 *   - binary messages are `b4<base64>` in text, and `\x04<bytes>` in a binary WebSocket frame
 *     or payload packet; both reach on_message with binary = 1 (data without the type).
 *   - heartbeat reversed: the client pings (`2`), the server answers `3` at once and never
 *     pings; the session closes ("ping timeout") pingInterval + pingTimeout after the last
 *     client ping (other packets do not count, as in the reference). A client `3` closes it
 *     ("invalid heartbeat direction").
 *   - the open packet, the upgrade probe (`2probe` / `3probe` / `5`) and error replies are the
 *     same as v4. */

/* Fills cfg with the defaults above (headroom 0). */
void sb_eio_config_default(sb_eio_config_t *cfg);

/* Transport-side callbacks (the HTTP layer). */
typedef struct sb_eio_io_cb {
    void (*wake)(void *ud, void *conn); /* request a writeable callback for conn */
    void *ud;
    /* Optional: a deadline earlier than any pending when sb_eio_tick last returned (or than
     * the last schedule) appeared: call sb_eio_tick at `at` (re-arm the timer). Not called
     * from inside sb_eio_tick, whose return value says the same. */
    void (*schedule)(void *ud, int64_t at);
} sb_eio_io_cb_t;

/* Application-side callbacks (Socket.IO, sio.c, installs these with sb_eio_set_app). */
typedef struct sb_eio_app_cb {
    void (*on_open)(void *ud, sb_eio_id_t id, int64_t now);
    /* A message packet (`4...`): data without the type byte, not NUL-terminated; binary is 1
     * for a binary message: data is then its bytes (a binary WebSocket frame as received, a
     * polling `b` packet decoded from base64). */
    void (*on_message)(void *ud, sb_eio_id_t id, const char *data, size_t len, int binary,
                       int64_t now);
    /* The session closed; sends to it are ignored from now on. reason is a static string. */
    void (*on_close)(void *ud, sb_eio_id_t id, const char *reason);
    void (*on_timer)(void *ud, sb_eio_id_t id, int64_t now); /* sb_eio_set_timer deadline */
    void *ud;
} sb_eio_app_cb_t;

/* Creates a server. cfg NULL = defaults; io may be NULL (tests poll). Returns NULL on
 * allocation failure. Free with sb_eio_free. */
sb_eio_server_t *sb_eio_create(const sb_eio_config_t *cfg, const sb_eio_io_cb_t *io);
/* Frees every session and the server; accepts NULL. Sends nothing and wakes no conn; the
 * app's on_close runs once, reason "server shutdown", for sessions it was not yet told of. */
void sb_eio_free(sb_eio_server_t *srv);
void sb_eio_set_app(sb_eio_server_t *srv, const sb_eio_app_cb_t *app);
const sb_eio_config_t *sb_eio_config(const sb_eio_server_t *srv);
size_t sb_eio_max_payload(const sb_eio_server_t *srv);
uint32_t sb_eio_count(const sb_eio_server_t *srv); /* open sessions */

/* ---- HTTP requests ------------------------------------------------------------------------ */

enum { SB_EIO_GET = 1, SB_EIO_POST = 2, SB_EIO_OTHER = 3 };
enum { SB_EIO_HOLD = 0 };    /* reply.status: keep the GET open, wait for wake */
/* reply.status of a WebSocket the reference accepts and then closes at once (engine.io's
 * onWebSocket: `transport=polling` on an upgrade, a second WebSocket for a session already
 * upgraded or upgrading): complete the upgrade, then send a Close frame. */
enum { SB_EIO_UPGRADE_CLOSE = 1 };
enum { SB_EIO_CLOSE = -100 }; /* sb_eio_ws_pull: close the WebSocket */

/* Engine.IO error codes of the HTTP error body {"code":N,"message":...}. */
enum {
    SB_EIO_ERR_TRANSPORT = 0, /* Transport unknown */
    SB_EIO_ERR_SID = 1,       /* Session ID unknown */
    SB_EIO_ERR_METHOD = 2,    /* Bad handshake method */
    SB_EIO_ERR_BAD = 3,       /* Bad request */
    SB_EIO_ERR_FORBIDDEN = 4, /* Forbidden */
    SB_EIO_ERR_VERSION = 5,   /* Unsupported protocol version */
};

typedef struct sb_eio_req {
    int method;            /* SB_EIO_GET / POST / OTHER */
    int websocket;         /* 1: this is a WebSocket upgrade */
    const char *eio;       /* query EIO ("4", or "3" with allow_eio3), NULL when absent */
    const char *transport; /* query transport ("polling" / "websocket"), NULL when absent */
    const char *sid;       /* query sid, NULL when absent (handshake) */
    const char *body;      /* POST body (complete), may be NULL when body_len is 0 */
    size_t body_len;
} sb_eio_req_t;

typedef struct sb_eio_reply {
    int status;               /* HTTP status, 101 for an accepted WebSocket, 0 = hold */
    const char *content_type; /* static string, NULL when there is no body */
    sb_eio_buf_t *body;       /* owned by the caller (unref); NULL when none */
    sb_eio_id_t id;           /* the session concerned, 0 when none */
    int code;                 /* SB_EIO_ERR_* of an error reply ({"code":N,...}), else -1 */
} sb_eio_reply_t;

/* Validates a request without side effects, in the reference's order (verify, then the
 * handshake's checks). Returns 0 when sb_eio_http would accept it (a WebSocket it answers
 * SB_EIO_UPGRADE_CLOSE included), or the HTTP status of the error and fills *out with the
 * error reply (caller unrefs body). A refused WebSocket upgrade is answered as the
 * reference's abortUpgrade does: 400, `Connection: close`, text/html, the message of
 * out->code as the body (sb_eio_error_message). */
int sb_eio_check(sb_eio_server_t *srv, const sb_eio_req_t *req, sb_eio_reply_t *out);

/* Handles one request; conn identifies the HTTP request / WebSocket (compared and passed to
 * wake, never dereferenced; required, non-NULL, except for a polling handshake or a POST).
 * Always fills *out (see the design note) and returns out->status.
 *   handshake GET      -> 200 with the open packet (plus anything already queued)
 *   GET with sid       -> 200 with queued packets, or 0 = held (conn attached to the session)
 *   POST with sid      -> 200 "ok"; 400 on a parse error (session closed), 413 too large
 *   WebSocket          -> 101, conn attached (new websocket-only session, or an upgrade probe);
 *                         SB_EIO_UPGRADE_CLOSE (nothing attached) where the reference accepts
 *                         the WebSocket only to close it
 *   errors             -> 400 / 403 / 503 with {"code":N,"message":...}
 * A second GET while one is held is answered 400 (code 3) and closes the session, whose held
 * GET is then answered `1` (the reference answers the overlap 500/409 and closes too); so does
 * a second POST while one's body arrives (sb_eio_post_begin); a
 * client close (POST `1`) answers the held GET `6` (noop), as the reference does.
 * Returns -SB_ENOMEM-ish 500 replies only on allocation failure. */
int sb_eio_http(sb_eio_server_t *srv, const sb_eio_req_t *req, void *conn, int64_t now,
                sb_eio_reply_t *out);

/* A POST with sid whose headers are in and whose body is still to come: marks conn as the
 * session's active POST and returns the session's handle; the caller calls sb_eio_detach(id,
 * conn) when the POST's body is in (before sb_eio_http) or when the request goes away. A
 * second POST while one is active closes the session (the spec: "a client MUST NOT have more
 * than one active POST request. Should it happen, the server MUST return an HTTP 400 error
 * status and close the session"; its held GET is answered `1`) and gets 0: sb_eio_http then
 * answers it 400 (code 1). 0 too, with nothing marked, for a request that names no open
 * polling session (sb_eio_http refuses it later). */
sb_eio_id_t sb_eio_post_begin(sb_eio_server_t *srv, const sb_eio_req_t *req, void *conn,
                              int64_t now);

/* For a held poll GET (after wake): returns 1 and fills *out with the reply to send (the GET
 * is then detached: one response per GET), or 0 when there is still nothing to send. A
 * handle or conn that is no longer known gets 1 with a 400 code 1 reply. */
int sb_eio_poll_pull(sb_eio_server_t *srv, sb_eio_id_t id, void *conn, sb_eio_reply_t *out);

/* For a WebSocket conn on writeable: returns 1 with *out = one packet to send as a text frame
 * (caller unrefs; request writeable again), 0 when nothing is queued, SB_EIO_CLOSE when the
 * WebSocket must be closed (session over, or a failed upgrade probe). */
int sb_eio_ws_pull(sb_eio_server_t *srv, sb_eio_id_t id, void *conn, sb_eio_buf_t **out);

/* One complete WebSocket message received on conn. binary: it was a binary frame. Returns 0,
 * SB_ENOTFOUND (unknown session/conn: close the WebSocket), or SB_EINVAL when the message was
 * garbage or too large (the session, or the probe, is closed; ws_pull will say SB_EIO_CLOSE). */
int sb_eio_ws_frame(sb_eio_server_t *srv, sb_eio_id_t id, void *conn, const char *data,
                    size_t len, int binary, int64_t now);

/* conn is gone. A held GET or the active WebSocket going away closes the session (as the
 * reference does); a probing WebSocket going away only cancels the upgrade; an active POST
 * (sb_eio_post_begin) going away or being handled is only forgotten. Idempotent; an unknown
 * id or conn is ignored. */
void sb_eio_detach(sb_eio_server_t *srv, sb_eio_id_t id, void *conn);

/* Runs the timers due at now (ms, any monotonic clock shared by all calls). Returns the
 * earliest deadline still pending (INT64_MAX when none), so the caller may sleep until it. */
int64_t sb_eio_tick(sb_eio_server_t *srv, int64_t now);

/* ---- used by the application layer ------------------------------------------------------ */

/* Queues packet b (a complete Engine.IO packet) on the session, taking one new reference.
 * Returns 0; SB_ENOTFOUND for an unknown or closing session (nothing queued); SB_ENOMEM; or
 * SB_ETIMEOUT when the packet would take the queue past max_queue_bytes / max_queue_packets:
 * the client is not reading, so the session is closed ("slow consumer") instead of growing.
 * A packet that finds the queue empty is always queued, whatever its size, so one event
 * larger than max_queue_bytes still reaches a client that reads. */
int sb_eio_send(sb_eio_server_t *srv, sb_eio_id_t id, sb_eio_buf_t *b);
/* Queues `4` + text (a message packet). Same returns as sb_eio_send. */
int sb_eio_send_text(sb_eio_server_t *srv, sb_eio_id_t id, const char *text, size_t len);
/* Queues a binary message of len bytes (copied): a binary frame on the WebSocket, `b` +
 * base64 on polling. Same returns as sb_eio_send. */
int sb_eio_send_binary(sb_eio_server_t *srv, sb_eio_id_t id, const void *data, size_t len);

/* Closes the session (deferred to the end of the outermost call). graceful: what is queued is
 * still delivered before `1` / the WebSocket close; otherwise it is dropped. Returns 0 or
 * SB_ENOTFOUND. */
int sb_eio_close(sb_eio_server_t *srv, sb_eio_id_t id, int graceful, const char *reason);

/* Sets (at > 0) or clears (at = 0) the session's application timer: on_timer fires once from
 * sb_eio_tick at or after at. Returns 0 or SB_ENOTFOUND. */
int sb_eio_set_timer(sb_eio_server_t *srv, sb_eio_id_t id, int64_t at);

/* Per-session pointer for the application layer (sio.c). NULL / SB_ENOTFOUND when unknown. */
void *sb_eio_app_data(const sb_eio_server_t *srv, sb_eio_id_t id);
int sb_eio_set_app_data(sb_eio_server_t *srv, sb_eio_id_t id, void *p);

/* The sid of an open session, or NULL. Valid until the session is freed. */
const char *sb_eio_sid(const sb_eio_server_t *srv, sb_eio_id_t id);
/* 1 while the session is open, 0 once it is closing or gone. */
int sb_eio_is_open(const sb_eio_server_t *srv, sb_eio_id_t id);
/* The session's Engine.IO protocol revision: 4, 3, or SB_ENOTFOUND. */
int sb_eio_protocol(const sb_eio_server_t *srv, sb_eio_id_t id);
/* 1 when the session's active transport is the WebSocket, 0 polling, SB_ENOTFOUND. */
int sb_eio_is_websocket(const sb_eio_server_t *srv, sb_eio_id_t id);
/* Queued outgoing packets of the session (0 when unknown). */
uint32_t sb_eio_queued(const sb_eio_server_t *srv, sb_eio_id_t id);

/* Calls fn for every open session (closes fn requests are deferred to the end). */
void sb_eio_foreach(sb_eio_server_t *srv, void (*fn)(void *ud, sb_eio_id_t id), void *ud);
/* sizeof the per-session struct (for the memory budget in docs and tests). */
size_t sb_eio_session_size(void);

/* Defers closes and frees across a loop of sends (fan-out); nests. */
void sb_eio_batch_begin(sb_eio_server_t *srv);
void sb_eio_batch_end(sb_eio_server_t *srv);

/* ---- codec (pure; exposed for the fuzzer and tests) ------------------------------------- */

/* Splits a polling payload on \x1e and calls fn for each packet (empty pieces included, so the
 * caller sees them as garbage). Stops early and returns fn's value when it is non-zero;
 * returns 0 otherwise. */
int sb_eio_split_payload(const char *buf, size_t len,
                         int (*fn)(void *ud, const char *pkt, size_t n), void *ud);

typedef struct sb_eio_packet {
    char type;        /* '0'..'6', or 'b' for a base64 binary message */
    const char *data; /* after the type byte; points into the input */
    size_t len;
} sb_eio_packet_t;

/* Decodes one text packet. Returns 0, or SB_EINVAL for an empty packet, an unknown type, or a
 * `b` packet whose body is not base64. Never reads beyond len. */
int sb_eio_decode_packet(const char *buf, size_t len, sb_eio_packet_t *out);

/* Engine.IO v3 payloads. sb_eio_split_payload3 calls fn for each packet of a POST body, a
 * string payload (`<utf16 length>:<packet>`..., empty packets skipped as the reference does)
 * or a binary one (first byte 0x00 / 0x01); binary is 1 for a binary packet (its first byte
 * is then the packet type as a number). Returns 0, fn's non-zero value (it stops there), or
 * SB_EINVAL when the framing is wrong (empty body, bad length, a packet cut short); packets
 * before the error were already handed to fn. Never reads beyond len. */
int sb_eio_split_payload3(const char *buf, size_t len,
                          int (*fn)(void *ud, const char *pkt, size_t n, int binary), void *ud);
/* Decodes one v3 packet: text as v4 except `b4<base64>` (type 'b', data the base64); binary
 * (binary = 1) must be a message, `\x04<bytes>` (type 'b', data the bytes). SB_EINVAL else. */
int sb_eio_decode_packet3(const char *buf, size_t len, int binary, sb_eio_packet_t *out);
/* Length in UTF-16 code units of UTF-8 text (a 4-byte sequence counts 2), as JavaScript's
 * String.length sees it. */
size_t sb_eio_utf16_len(const char *s, size_t n);
#define SB_EIO_PREFIX3_MAX 24 /* "<length>:" of a v3 payload entry, NUL included */
/* Writes "<utf16 length>:" of packet (len bytes) into out; returns its length. */
size_t sb_eio_prefix3(const char *pkt, size_t len, char out[SB_EIO_PREFIX3_MAX]);

/* Base64 (RFC 4648, padded) of len bytes at src written at out (room for
 * sb_eio_base64_len(len) + 1 bytes: a NUL follows); returns the length written, NUL left out. */
size_t sb_eio_base64_len(size_t len);
size_t sb_eio_base64_encode(char *out, const void *src, size_t len);
/* Decodes base64 text (padded or not, as sb_eio_decode_packet accepts) into a malloc'd
 * buffer (*out, *outlen; the caller frees). Returns 0, SB_EINVAL or SB_ENOMEM. */
int sb_eio_base64_decode(const char *s, size_t n, char **out, size_t *outlen);

/* The message of an Engine.IO error code ("Transport unknown", ...); "Bad request" for an
 * unknown code. Static. */
const char *sb_eio_error_message(int code);
/* Fills *out with the HTTP error reply for code (and status 400/403). Returns out->status. */
int sb_eio_error_reply(const sb_eio_server_t *srv, int code, int status, sb_eio_reply_t *out);

/* Fills sid (SB_EIO_SID_LEN + 1 bytes) with a random base64url id from getrandom(2). Returns
 * 0 or SB_ERR when the kernel gives no randomness. */
int sb_eio_random_id(char *sid);

#endif
