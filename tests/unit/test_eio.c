/* Unit tests of the Engine.IO v4 session machine (src/gateway/socketio/eio*.c), driven with byte
 * strings, a fake HTTP layer (sb_fake_http.h) and a fake clock: handshake, errors, polling, payload
 * splitting, the upgrade, heartbeats, limits, slow consumers, garbage, stale handles; and v3
 * (allow_eio3): its payload codec, framing, client heartbeat and upgrade. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/socketio/eio.h"
#include "sb_fake_http.h"
#include "switchboard/error.h"
#include "switchboard/json.h"

/* The application side: records messages and closes. */
typedef struct app_rec {
    char msgs[8][64];
    int binary[8];
    int nmsgs;
    int closes;
    char reason[64];
} app_rec_t;

static void app_message(void *ud, sb_eio_id_t id, const char *data, size_t len, int binary,
                        int64_t now) {
    (void)id, (void)now;
    app_rec_t *a = ud;
    if (a->nmsgs < 8) {
        snprintf(a->msgs[a->nmsgs], 64, "%.*s", (int)len, data);
        a->binary[a->nmsgs++] = binary;
    }
}

static void app_close(void *ud, sb_eio_id_t id, const char *reason) {
    (void)id;
    app_rec_t *a = ud;
    a->closes++;
    snprintf(a->reason, sizeof a->reason, "%s", reason);
}

typedef struct fixture {
    sb_eio_server_t *srv;
    fake_http_t http;
    app_rec_t app;
} fixture_t;

static fixture_t *fixture_new(const sb_eio_config_t *cfg) {
    fixture_t *f = calloc(1, sizeof *f);
    sb_eio_io_cb_t io = {fake_wake, &f->http};
    f->srv = sb_eio_create(cfg, &io);
    assert_non_null(f->srv);
    sb_eio_app_cb_t app = {NULL, app_message, app_close, NULL, &f->app};
    sb_eio_set_app(f->srv, &app);
    return f;
}

static void fixture_free(fixture_t *f) {
    sb_eio_free(f->srv);
    free(f);
}

static int setup(void **state) {
    *state = fixture_new(NULL);
    return 0;
}

static int teardown(void **state) {
    fixture_free(*state);
    return 0;
}

/* ------------------------------------------------------------------ handshake and errors */

static void test_handshake(void **state) {
    fixture_t *f = *state;
    sb_eio_req_t req = fake_req(SB_EIO_GET, "polling", NULL);
    sb_eio_reply_t r;
    assert_int_equal(sb_eio_http(f->srv, &req, NULL, 1000, &r), 200);
    assert_string_equal(r.content_type, "text/plain; charset=UTF-8");
    assert_true(r.id != 0);
    char body[512];
    fake_body(&r, body, sizeof body);
    assert_int_equal(body[0], '0');
    cJSON *open = sb_json_parse(body + 1, strlen(body + 1));
    assert_non_null(open);
    const char *sid = sb_json_str(open, "sid");
    assert_non_null(sid);
    assert_int_equal(strlen(sid), SB_EIO_SID_LEN);
    assert_string_equal(sb_eio_sid(f->srv, r.id), sid);
    char *upgrades = sb_json_print(sb_json_obj(open, "upgrades"));
    assert_string_equal(upgrades, "[\"websocket\"]");
    free(upgrades);
    double v;
    assert_int_equal(sb_json_num(open, "pingInterval", &v), 0);
    assert_true(v == 25000);
    assert_int_equal(sb_json_num(open, "pingTimeout", &v), 0);
    assert_true(v == 20000);
    assert_int_equal(sb_json_num(open, "maxPayload", &v), 0);
    assert_true(v == 1000000);
    cJSON_Delete(open);
    assert_int_equal(sb_eio_count(f->srv), 1);

    char sid2[SB_EIO_SID_LEN + 1];
    assert_true(fake_handshake(f->srv, 1000, sid2) != 0);
    assert_string_not_equal(sid2, sb_eio_sid(f->srv, r.id));
    assert_int_equal(sb_eio_count(f->srv), 2);
}

static void expect_error(fixture_t *f, sb_eio_req_t req, int status, const char *body) {
    sb_eio_reply_t r;
    char out[128];
    assert_int_equal(sb_eio_check(f->srv, &req, &r), status);
    sb_eio_buf_unref(r.body);
    assert_int_equal(sb_eio_http(f->srv, &req, NULL, 0, &r), status);
    assert_string_equal(r.content_type, "application/json");
    assert_string_equal(fake_body(&r, out, sizeof out), body);
}

static void test_http_errors(void **state) {
    fixture_t *f = *state;
    expect_error(f, fake_req(SB_EIO_GET, "carrier-pigeon", NULL), 400,
                 "{\"code\":0,\"message\":\"Transport unknown\"}");
    expect_error(f, fake_req(SB_EIO_GET, NULL, NULL), 400,
                 "{\"code\":0,\"message\":\"Transport unknown\"}");
    expect_error(f, fake_req(SB_EIO_GET, "polling", "AAAAAAAAAAAAAAAAAAAA"), 400,
                 "{\"code\":1,\"message\":\"Session ID unknown\"}");
    expect_error(f, fake_req(SB_EIO_GET, "polling", "short"), 400,
                 "{\"code\":1,\"message\":\"Session ID unknown\"}");
    expect_error(f, fake_req(SB_EIO_POST, "polling", NULL), 400,
                 "{\"code\":2,\"message\":\"Bad handshake method\"}");
    expect_error(f, fake_req(SB_EIO_POST, "polling", "AAAAAAAAAAAAAAAAAAAA"), 400,
                 "{\"code\":1,\"message\":\"Session ID unknown\"}");
    sb_eio_req_t ws_no_upgrade = fake_req(SB_EIO_GET, "websocket", NULL);
    ws_no_upgrade.websocket = 0;
    expect_error(f, ws_no_upgrade, 400, "{\"code\":3,\"message\":\"Bad request\"}");
    sb_eio_req_t v3 = fake_req(SB_EIO_GET, "polling", NULL);
    v3.eio = "3";
    expect_error(f, v3, 400, "{\"code\":5,\"message\":\"Unsupported protocol version\"}");
    v3.eio = NULL;
    expect_error(f, v3, 400, "{\"code\":5,\"message\":\"Unsupported protocol version\"}");
    sb_eio_reply_t r;
    assert_int_equal(sb_eio_error_reply(f->srv, SB_EIO_ERR_FORBIDDEN, 403, &r), 403);
    char out[128];
    assert_string_equal(fake_body(&r, out, sizeof out), "{\"code\":4,\"message\":\"Forbidden\"}");
    assert_int_equal(sb_eio_count(f->srv), 0);
}

/* ------------------------------------------------------------------ polling */

static void test_polling_post_split(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1];
    assert_true(fake_handshake(f->srv, 0, sid));
    const char body[] = "4hello\x1e" "4wor\"ld\x1e" "6\x1e" "bAQID";
    assert_int_equal(fake_post(f->srv, sid, body, sizeof body - 1, 10), 200);
    assert_int_equal(f->app.nmsgs, 3);
    assert_string_equal(f->app.msgs[0], "hello");
    assert_string_equal(f->app.msgs[1], "wor\"ld");
    assert_string_equal(f->app.msgs[2], "\x01\x02\x03"); /* decoded from base64 */
    assert_int_equal(f->app.binary[2], 1);
    assert_int_equal(f->app.closes, 0);
}

/* A POST that delivers its packets is answered 200 with `ok` as its body (engine.io-protocol,
 * Sending data: "the server MUST return an HTTP 200 response, with the string ok"). */
static void test_post_answers_ok(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[64];
    assert_true(fake_handshake(f->srv, 0, sid));
    sb_eio_req_t req = fake_req(SB_EIO_POST, "polling", sid);
    req.body = "4hi";
    req.body_len = 3;
    sb_eio_reply_t r;
    assert_int_equal(sb_eio_http(f->srv, &req, NULL, 1, &r), 200);
    assert_string_equal(fake_body(&r, out, sizeof out), "ok");
    assert_string_equal(f->app.msgs[0], "hi");
}

/* Binary messages both ways on polling: a `b` packet whose body is not base64 closes the
 * session; sb_eio_send_binary goes out as `b` + base64, alone or beside text packets. */
static void test_polling_binary(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[256];
    sb_eio_id_t id = fake_handshake(f->srv, 0, sid);
    void *conn = &f->http.conns[1];
    assert_int_equal(fake_post(f->srv, sid, "bAQIDBA", 7, 5), 200); /* unpadded, as Node's */
    assert_int_equal(f->app.nmsgs, 1);
    assert_memory_equal(f->app.msgs[0], "\x01\x02\x03\x04", 5);
    assert_int_equal(sb_eio_send_binary(f->srv, id, "\x01\x02\x03\x04", 4), 0);
    assert_int_equal(fake_get(f->srv, sid, conn, 10, out, sizeof out), 200);
    assert_string_equal(out, "bAQIDBA==");
    assert_int_equal(sb_eio_send_text(f->srv, id, "hello", 5), 0);
    assert_int_equal(sb_eio_send_binary(f->srv, id, "", 0), 0);
    assert_int_equal(sb_eio_send_binary(f->srv, id, "\xff\xfe", 2), 0);
    assert_int_equal(fake_get(f->srv, sid, conn, 20, out, sizeof out), 200);
    assert_string_equal(out, "4hello\x1e" "b\x1e" "b//4=");
    assert_int_equal(fake_post(f->srv, sid, "b=A==", 5, 30), 400);
    assert_int_equal(f->app.closes, 1);
    assert_string_equal(f->app.reason, "parse error");
}

static void test_polling_hold_and_wake(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[256];
    sb_eio_id_t id = fake_handshake(f->srv, 0, sid);
    void *conn = &f->http.conns[1];
    assert_int_equal(fake_get(f->srv, sid, conn, 10, out, sizeof out), SB_EIO_HOLD);
    sb_eio_reply_t r;
    assert_int_equal(sb_eio_poll_pull(f->srv, id, conn, &r), 0); /* still nothing */
    assert_int_equal(f->http.nwoken, 0);
    assert_int_equal(sb_eio_send_text(f->srv, id, "2[\"a\"]", 6), 0);
    assert_int_equal(sb_eio_send_text(f->srv, id, "2[\"b\"]", 6), 0);
    assert_int_equal(f->http.nwoken, 1); /* one wake for the first packet only */
    assert_ptr_equal(f->http.woken[0], conn);
    assert_int_equal(sb_eio_poll_pull(f->srv, id, conn, &r), 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(fake_body(&r, out, sizeof out), "42[\"a\"]\x1e" "42[\"b\"]");
    /* the GET was answered: the next one is held again, a stale pull gets code 1 */
    assert_int_equal(sb_eio_poll_pull(f->srv, id, conn, &r), 1);
    assert_int_equal(r.status, 400);
    sb_eio_buf_unref(r.body);
    assert_int_equal(fake_get(f->srv, sid, conn, 20, out, sizeof out), SB_EIO_HOLD);
    /* queued before the GET: answered at once */
    sb_eio_detach(f->srv, id, &f->http.conns[9]); /* unknown conn: ignored */
    assert_int_equal(f->app.closes, 0);
}

static void test_polling_overlap_closes(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[256];
    sb_eio_id_t id = fake_handshake(f->srv, 0, sid);
    void *c1 = &f->http.conns[1], *c2 = &f->http.conns[2];
    assert_int_equal(fake_get(f->srv, sid, c1, 10, out, sizeof out), SB_EIO_HOLD);
    assert_int_equal(fake_get(f->srv, sid, c2, 10, out, sizeof out), 400);
    assert_string_equal(out, "{\"code\":3,\"message\":\"Bad request\"}");
    assert_int_equal(f->app.closes, 1);
    assert_true(fake_was_woken(&f->http, c1));
    sb_eio_reply_t r;
    assert_int_equal(sb_eio_poll_pull(f->srv, id, c1, &r), 1);
    assert_string_equal(fake_body(&r, out, sizeof out), "1");
    /* the session is gone now */
    assert_null(sb_eio_sid(f->srv, id));
    assert_int_equal(fake_get(f->srv, sid, c1, 20, out, sizeof out), 400);
    assert_int_equal(sb_eio_count(f->srv), 0);
}

/* A second POST while one's body is still arriving gets 400 and closes the session, whose held
 * GET is answered `1` (engine.io-protocol, Sending data; engine.io's "data request overlap").
 * A POST handled, or gone before its body was in, is forgotten: the next one is welcome. */
static void test_polling_post_overlap_closes(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[256];
    sb_eio_id_t id = fake_handshake(f->srv, 0, sid);
    void *get = &f->http.conns[1], *p1 = &f->http.conns[2], *p2 = &f->http.conns[3];
    sb_eio_req_t post = fake_req(SB_EIO_POST, "polling", sid);
    post.body = "4a";
    post.body_len = 2;
    sb_eio_reply_t r;
    /* one at a time: begun, handled, begun again on another connection, gone, begun again */
    assert_true(sb_eio_post_begin(f->srv, &post, p1, 1) == id);
    sb_eio_detach(f->srv, id, p1);
    assert_int_equal(sb_eio_http(f->srv, &post, p1, 1, &r), 200);
    sb_eio_buf_unref(r.body);
    assert_true(sb_eio_post_begin(f->srv, &post, p2, 2) == id);
    sb_eio_detach(f->srv, id, p2); /* the client went away mid-body */
    assert_true(sb_eio_post_begin(f->srv, &post, p1, 3) == id);
    assert_true(sb_eio_post_begin(f->srv, &post, p1, 3) == id); /* the same request again */
    assert_int_equal(f->app.closes, 0);
    assert_non_null(sb_eio_sid(f->srv, id));
    /* a second while p1's body arrives */
    assert_int_equal(fake_get(f->srv, sid, get, 4, out, sizeof out), SB_EIO_HOLD);
    assert_true(sb_eio_post_begin(f->srv, &post, p2, 5) == 0);
    assert_int_equal(f->app.closes, 1);
    assert_string_equal(f->app.reason, "transport error");
    assert_true(fake_was_woken(&f->http, get));
    assert_int_equal(sb_eio_poll_pull(f->srv, id, get, &r), 1);
    assert_string_equal(fake_body(&r, out, sizeof out), "1");
    assert_int_equal(sb_eio_http(f->srv, &post, p2, 6, &r), 400);
    assert_string_equal(fake_body(&r, out, sizeof out), "{\"code\":1,\"message\":\"Session ID unknown\"}");
    sb_eio_detach(f->srv, id, p1);
    assert_int_equal(sb_eio_http(f->srv, &post, p1, 7, &r), 400);
    sb_eio_buf_unref(r.body);
    assert_int_equal(f->app.nmsgs, 1);
    /* nothing is marked for what sb_eio_http refuses anyway */
    sb_eio_req_t unknown = fake_req(SB_EIO_POST, "polling", "AAAAAAAAAAAAAAAAAAAA");
    assert_true(sb_eio_post_begin(f->srv, &unknown, p1, 8) == 0);
    assert_true(sb_eio_post_begin(f->srv, &post, p1, 8) == 0); /* closed */
}

static void test_polling_payload_cap(void **state) {
    (void)state;
    sb_eio_config_t cfg;
    sb_eio_config_default(&cfg);
    cfg.max_payload = 100;
    fixture_t *f = fixture_new(&cfg);
    char sid[SB_EIO_SID_LEN + 1], out[512];
    sb_eio_id_t id = fake_handshake(f->srv, 0, sid);
    char big[60];
    memset(big, 'x', sizeof big);
    for (int i = 0; i < 3; i++) assert_int_equal(sb_eio_send_text(f->srv, id, big, 60), 0);
    assert_int_equal(fake_get(f->srv, sid, &f->http.conns[0], 1, out, sizeof out), 200);
    assert_int_equal(strlen(out), 61); /* one packet per response: two would exceed 100 */
    assert_int_equal(sb_eio_queued(f->srv, id), 2);
    fixture_free(f);
}

static void test_graceful_close_polling(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[256];
    sb_eio_id_t id = fake_handshake(f->srv, 0, sid);
    assert_int_equal(sb_eio_send_text(f->srv, id, "1", 1), 0);
    assert_int_equal(sb_eio_close(f->srv, id, 1, "forced close"), 0);
    assert_int_equal(f->app.closes, 1);
    assert_int_equal(sb_eio_send_text(f->srv, id, "x", 1), SB_ENOTFOUND);
    assert_int_equal(fake_get(f->srv, sid, &f->http.conns[0], 1, out, sizeof out), 200);
    assert_string_equal(out, "41\x1e" "1");
    assert_null(sb_eio_sid(f->srv, id));
}

/* The client closes with a POST of `1`: its held GET is answered `6` (noop), as the reference
 * does, not `1` (issue #22). */
static void test_client_close_answers_held_get_noop(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[256];
    sb_eio_id_t id = fake_handshake(f->srv, 0, sid);
    void *conn = &f->http.conns[1];
    assert_int_equal(fake_get(f->srv, sid, conn, 10, out, sizeof out), SB_EIO_HOLD);
    assert_int_equal(fake_post(f->srv, sid, "1", 1, 20), 200);
    assert_int_equal(f->app.closes, 1);
    assert_string_equal(f->app.reason, "transport close");
    assert_true(fake_was_woken(&f->http, conn));
    sb_eio_reply_t r;
    assert_int_equal(sb_eio_poll_pull(f->srv, id, conn, &r), 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(fake_body(&r, out, sizeof out), "6");
    assert_null(sb_eio_sid(f->srv, id));
}

/* ------------------------------------------------------------------ WebSocket and upgrade */

static void test_upgrade_sequence(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[256];
    sb_eio_id_t id = fake_handshake(f->srv, 0, sid);
    void *poll = &f->http.conns[1], *ws = &f->http.conns[2];
    assert_int_equal(fake_get(f->srv, sid, poll, 10, out, sizeof out), SB_EIO_HOLD);
    sb_eio_req_t req = fake_req(SB_EIO_GET, "websocket", sid);
    sb_eio_reply_t r;
    assert_int_equal(sb_eio_http(f->srv, &req, ws, 20, &r), 101);
    assert_true(r.id == id);
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 0);
    /* a second probe while one is running is accepted only to be closed (engine.io's
     * onWebSocket: "transport has already been trying to upgrade"); the check lets it on */
    assert_int_equal(sb_eio_check(f->srv, &req, &r), 0);
    assert_int_equal(sb_eio_http(f->srv, &req, &f->http.conns[3], 20, &r), SB_EIO_UPGRADE_CLOSE);
    assert_null(r.body);
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 0); /* the probe goes on */
    assert_int_equal(fake_ws_send(f->srv, id, ws, "2probe", 30), 0);
    assert_true(fake_was_woken(&f->http, ws));
    assert_true(fake_was_woken(&f->http, poll));
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 1);
    assert_string_equal(out, "3probe");
    assert_int_equal(sb_eio_poll_pull(f->srv, id, poll, &r), 1);
    assert_string_equal(fake_body(&r, out, sizeof out), "6");
    assert_int_equal(sb_eio_is_websocket(f->srv, id), 0);
    /* data queued while still polling goes over the WebSocket once upgraded */
    assert_int_equal(sb_eio_send_text(f->srv, id, "2[\"x\"]", 6), 0);
    assert_int_equal(fake_ws_send(f->srv, id, ws, "5", 40), 0);
    assert_int_equal(sb_eio_is_websocket(f->srv, id), 1);
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 1);
    assert_string_equal(out, "42[\"x\"]");
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 0);
    /* polling is over for this session */
    assert_int_equal(fake_get(f->srv, sid, poll, 50, out, sizeof out), 400);
    assert_string_equal(out, "{\"code\":3,\"message\":\"Bad request\"}");
    assert_int_equal(fake_ws_send(f->srv, id, ws, "4hi", 60), 0);
    assert_string_equal(f->app.msgs[0], "hi");
    /* so is a WebSocket for the upgraded session, and one saying transport=polling */
    assert_int_equal(sb_eio_http(f->srv, &req, &f->http.conns[3], 60, &r), SB_EIO_UPGRADE_CLOSE);
    sb_eio_req_t polling_ws = fake_req(SB_EIO_GET, "polling", sid);
    polling_ws.websocket = 1;
    assert_int_equal(sb_eio_http(f->srv, &polling_ws, &f->http.conns[3], 60, &r),
                     SB_EIO_UPGRADE_CLOSE);
    polling_ws.sid = NULL;
    assert_int_equal(sb_eio_http(f->srv, &polling_ws, &f->http.conns[3], 60, &r),
                     SB_EIO_UPGRADE_CLOSE);
    polling_ws.sid = "AAAAAAAAAAAAAAAAAAAA"; /* an unknown sid is refused first, as verify() */
    assert_int_equal(sb_eio_http(f->srv, &polling_ws, &f->http.conns[3], 60, &r), 400);
    assert_int_equal(r.code, SB_EIO_ERR_SID);
    sb_eio_buf_unref(r.body);
    assert_string_equal(sb_eio_error_message(r.code), "Session ID unknown");
    assert_int_equal(sb_eio_ws_pull(f->srv, id, ws, &r.body), 0); /* the upgraded one goes on */
    /* the client closes the WebSocket: the session ends, the handle goes stale */
    sb_eio_detach(f->srv, id, ws);
    assert_int_equal(f->app.closes, 1);
    assert_string_equal(f->app.reason, "transport close");
    assert_null(sb_eio_sid(f->srv, id));
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), SB_EIO_CLOSE);
    assert_int_equal(sb_eio_send_text(f->srv, id, "x", 1), SB_ENOTFOUND);
}

static void test_upgrade_with_get_held_at_upgrade(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[256];
    sb_eio_id_t id = fake_handshake(f->srv, 0, sid);
    void *poll = &f->http.conns[1], *ws = &f->http.conns[2];
    sb_eio_req_t req = fake_req(SB_EIO_GET, "websocket", sid);
    sb_eio_reply_t r;
    assert_int_equal(sb_eio_http(f->srv, &req, ws, 1, &r), 101);
    assert_int_equal(fake_ws_send(f->srv, id, ws, "2probe", 2), 0);
    /* a GET arriving after the probe is answered with a noop at once (fast upgrade) */
    assert_int_equal(fake_get(f->srv, sid, poll, 3, out, sizeof out), 200);
    assert_string_equal(out, "6");
    assert_int_equal(fake_get(f->srv, sid, poll, 3, out, sizeof out), 200);
    assert_string_equal(out, "6");
    assert_int_equal(fake_ws_send(f->srv, id, ws, "5", 4), 0);
    assert_int_equal(sb_eio_is_websocket(f->srv, id), 1);
    assert_int_equal(f->app.closes, 0);
}

static void test_upgrade_probe_failures(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[256];
    sb_eio_id_t id = fake_handshake(f->srv, 0, sid);
    void *ws = &f->http.conns[2];
    sb_eio_req_t req = fake_req(SB_EIO_GET, "websocket", sid);
    sb_eio_reply_t r;
    /* garbage on the probe closes the probe only */
    assert_int_equal(sb_eio_http(f->srv, &req, ws, 1, &r), 101);
    assert_int_equal(fake_ws_send(f->srv, id, ws, "4nope", 2), SB_EINVAL);
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), SB_EIO_CLOSE);
    assert_int_equal(sb_eio_is_websocket(f->srv, id), 0);
    /* a probe that never finishes is dropped after upgradeTimeout */
    assert_int_equal(sb_eio_http(f->srv, &req, ws, 10, &r), 101);
    assert_int_equal(fake_ws_send(f->srv, id, ws, "2probe", 11), 0);
    sb_eio_tick(f->srv, 10 + 10000);
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), SB_EIO_CLOSE);
    /* the probe's conn going away only cancels the upgrade */
    assert_int_equal(sb_eio_http(f->srv, &req, ws, 10020, &r), 101);
    sb_eio_detach(f->srv, id, ws);
    assert_int_equal(f->app.closes, 0);
    assert_non_null(sb_eio_sid(f->srv, id));
    assert_int_equal(fake_post(f->srv, sid, "3", 1, 10030), 200);
}

static void test_websocket_only(void **state) {
    fixture_t *f = *state;
    void *ws = &f->http.conns[0];
    sb_eio_req_t req = fake_req(SB_EIO_GET, "websocket", NULL);
    sb_eio_reply_t r;
    char out[256];
    assert_int_equal(sb_eio_http(f->srv, &req, ws, 0, &r), 101);
    assert_true(fake_was_woken(&f->http, ws));
    assert_int_equal(fake_ws_pull(f->srv, r.id, ws, out, sizeof out), 1);
    assert_non_null(strstr(out, "\"upgrades\":[]"));
    assert_int_equal(sb_eio_is_websocket(f->srv, r.id), 1);
    assert_int_equal(fake_ws_send(f->srv, r.id, ws, "4abc", 1), 0);
    assert_int_equal(sb_eio_ws_frame(f->srv, r.id, ws, "\x01\x02", 2, 1, 1), 0);
    assert_int_equal(f->app.nmsgs, 2);
    assert_int_equal(f->app.binary[1], 1);
    sb_eio_buf_t *b = NULL; /* a binary message goes out as it is, marked binary */
    assert_int_equal(sb_eio_send_binary(f->srv, r.id, "\x01\x02", 2), 0);
    assert_int_equal(sb_eio_ws_pull(f->srv, r.id, ws, &b), 1);
    assert_int_equal(b->binary, 1);
    assert_int_equal(b->len, 2);
    assert_memory_equal(b->data, "\x01\x02", 2);
    sb_eio_buf_unref(b);
    assert_int_equal(sb_eio_close(f->srv, r.id, 0, "bye"), 0);
    assert_int_equal(fake_ws_pull(f->srv, r.id, ws, out, sizeof out), SB_EIO_CLOSE);
    sb_eio_detach(f->srv, r.id, ws);
    assert_null(sb_eio_sid(f->srv, r.id));
}

/* ------------------------------------------------------------------ heartbeat */

static void test_heartbeat_ping_pong_and_timeout(void **state) {
    fixture_t *f = *state;
    char out[64];
    void *ws = &f->http.conns[0];
    sb_eio_id_t id = fake_ws_session(f->srv, ws, 0);
    assert_true(id);
    assert_int_equal(sb_eio_tick(f->srv, 24999), 25000);
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 0);
    sb_eio_tick(f->srv, 25000);
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 1);
    assert_string_equal(out, "2");
    assert_int_equal(fake_ws_send(f->srv, id, ws, "3", 30000), 0); /* pong */
    sb_eio_tick(f->srv, 54999);
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 0);
    sb_eio_tick(f->srv, 55000); /* next ping, pingInterval after the pong */
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 1);
    assert_string_equal(out, "2");
    sb_eio_tick(f->srv, 74999);
    assert_int_equal(f->app.closes, 0);
    sb_eio_tick(f->srv, 75000); /* no pong within pingTimeout */
    assert_int_equal(f->app.closes, 1);
    assert_string_equal(f->app.reason, "ping timeout");
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), SB_EIO_CLOSE);
    sb_eio_detach(f->srv, id, ws);
    assert_int_equal(sb_eio_tick(f->srv, 80000), INT64_MAX);
}

/* The schedule callback: the HTTP layer's one timer is told of every deadline earlier than
 * the armed one, and tick returns the exact next deadline (no periodic tick, issue #22). */
static int64_t scheduled[8];
static int nscheduled;
static void fake_schedule(void *ud, int64_t at) {
    (void)ud;
    if (nscheduled < 8) scheduled[nscheduled++] = at;
}

static void test_deadlines_scheduled_exactly(void **state) {
    (void)state;
    fake_http_t http = {0};
    sb_eio_io_cb_t io = {fake_wake, &http, fake_schedule};
    sb_eio_server_t *srv = sb_eio_create(NULL, &io);
    nscheduled = 0;
    char sid[SB_EIO_SID_LEN + 1], out[64];
    sb_eio_id_t a = fake_ws_session(srv, &http.conns[0], 1000);
    assert_int_equal(nscheduled, 1);
    assert_true(scheduled[0] == 26000); /* its first ping */
    fake_ws_session(srv, &http.conns[1], 2000); /* later: nothing to announce */
    assert_int_equal(nscheduled, 1);
    assert_true(sb_eio_tick(srv, 25999) == 26000);
    assert_true(sb_eio_tick(srv, 26000) == 27000); /* a pinged; b's ping next */
    assert_int_equal(fake_ws_pull(srv, a, &http.conns[0], out, sizeof out), 1);
    assert_string_equal(out, "2");
    assert_true(sb_eio_tick(srv, 27000) == 46000); /* a's pong is due by 26000 + 20000 */
    /* a polling session probing an upgrade: its upgrade deadline is earlier, announced */
    fake_handshake(srv, 30000, sid);
    sb_eio_req_t req = fake_req(SB_EIO_GET, "websocket", sid);
    req.websocket = 1;
    sb_eio_reply_t r;
    nscheduled = 0;
    assert_int_equal(sb_eio_http(srv, &req, &http.conns[2], 30000, &r), 101);
    assert_int_equal(nscheduled, 1);
    assert_true(scheduled[0] == 40000);
    sb_eio_free(srv);
}

/* A tick that comes late (a stalled loop) pings a client whose ping was due instead of
 * dropping it for a pong it was never asked for. */
static void test_late_tick_pings_before_timing_out(void **state) {
    fixture_t *f = *state;
    char out[64];
    void *ws = &f->http.conns[0];
    sb_eio_id_t id = fake_ws_session(f->srv, ws, 0);
    while (fake_ws_pull(f->srv, id, ws, out, sizeof out) == 1) continue;
    sb_eio_tick(f->srv, 50000); /* ping due at 25000, liveness at 45000: both passed */
    assert_int_equal(f->app.closes, 0);
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 1);
    assert_string_equal(out, "2");
    sb_eio_tick(f->srv, 70000); /* no pong within pingTimeout of the ping: dropped */
    assert_int_equal(f->app.closes, 1);
    assert_string_equal(f->app.reason, "ping timeout");
}

static void test_polling_ping_timeout_answers_held_get(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[64];
    sb_eio_id_t id = fake_handshake(f->srv, 0, sid);
    void *poll = &f->http.conns[0];
    sb_eio_tick(f->srv, 25000);
    assert_int_equal(fake_get(f->srv, sid, poll, 25001, out, sizeof out), 200);
    assert_string_equal(out, "2");
    assert_int_equal(fake_get(f->srv, sid, poll, 25002, out, sizeof out), SB_EIO_HOLD);
    sb_eio_tick(f->srv, 45000);
    assert_string_equal(f->app.reason, "ping timeout");
    assert_true(fake_was_woken(&f->http, poll));
    sb_eio_reply_t r;
    assert_int_equal(sb_eio_poll_pull(f->srv, id, poll, &r), 1);
    assert_string_equal(fake_body(&r, out, sizeof out), "1");
    assert_null(sb_eio_sid(f->srv, id));
}

static void test_client_ping_ends_session(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1];
    assert_true(fake_handshake(f->srv, 0, sid));
    assert_int_equal(fake_post(f->srv, sid, "2", 1, 10), 200);
    assert_int_equal(f->app.closes, 1);
    assert_string_equal(f->app.reason, "invalid heartbeat direction");
    void *ws = &f->http.conns[0];
    sb_eio_id_t id = fake_ws_session(f->srv, ws, 0);
    assert_int_equal(fake_ws_send(f->srv, id, ws, "2probe", 10), 0); /* not a probe conn */
    assert_int_equal(f->app.closes, 2);
}

/* ------------------------------------------------------------------ limits and garbage */

static void test_max_payload(void **state) {
    (void)state;
    sb_eio_config_t cfg;
    sb_eio_config_default(&cfg);
    cfg.max_payload = 16;
    fixture_t *f = fixture_new(&cfg);
    char sid[SB_EIO_SID_LEN + 1], big[17];
    memset(big, '4', sizeof big);
    sb_eio_id_t id = fake_handshake(f->srv, 0, sid);
    assert_int_equal(sb_eio_max_payload(f->srv), 16);
    assert_int_equal(fake_post(f->srv, sid, big, 16, 1), 200);
    assert_int_equal(fake_post(f->srv, sid, big, 17, 1), 413);
    assert_int_equal(f->app.closes, 1);
    assert_null(sb_eio_sid(f->srv, id));
    void *ws = &f->http.conns[0];
    id = fake_ws_session(f->srv, ws, 0);
    assert_int_equal(sb_eio_ws_frame(f->srv, id, ws, big, 17, 0, 1), SB_EINVAL);
    assert_int_equal(f->app.closes, 2);
    fixture_free(f);
}

static void test_slow_consumer_dropped(void **state) {
    (void)state;
    sb_eio_config_t cfg;
    sb_eio_config_default(&cfg);
    cfg.max_queue_packets = 8;
    cfg.max_queue_bytes = 1000;
    fixture_t *f = fixture_new(&cfg);
    void *ws = &f->http.conns[0];
    sb_eio_id_t id = fake_ws_session(f->srv, ws, 0);
    for (int i = 0; i < 8; i++) assert_int_equal(sb_eio_send_text(f->srv, id, "x", 1), 0);
    assert_int_equal(sb_eio_send_text(f->srv, id, "x", 1), SB_ETIMEOUT);
    assert_string_equal(f->app.reason, "slow consumer");
    assert_int_equal(sb_eio_send_text(f->srv, id, "x", 1), SB_ENOTFOUND);
    char out[16];
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), SB_EIO_CLOSE);
    sb_eio_detach(f->srv, id, ws);
    /* by bytes */
    id = fake_ws_session(f->srv, ws, 0);
    char big[600] = {0};
    memset(big, 'y', sizeof big - 1);
    assert_int_equal(sb_eio_send_text(f->srv, id, big, 599), 0);
    assert_int_equal(sb_eio_send_text(f->srv, id, big, 599), SB_ETIMEOUT);
    assert_int_equal(f->app.closes, 2);
    fixture_free(f);
}

/* One packet larger than the whole byte limit is delivered when it finds the queue empty (the
 * client has read everything before it); behind another packet it is a slow consumer. */
static void test_big_packet_into_empty_queue(void **state) {
    (void)state;
    sb_eio_config_t cfg;
    sb_eio_config_default(&cfg);
    cfg.max_queue_bytes = 1000;
    fixture_t *f = fixture_new(&cfg);
    void *ws = &f->http.conns[0];
    sb_eio_id_t id = fake_ws_session(f->srv, ws, 0);
    char huge[3000];
    memset(huge, 'z', sizeof huge);
    assert_int_equal(sb_eio_send_text(f->srv, id, huge, sizeof huge), 0);
    sb_eio_buf_t *b = NULL;
    assert_int_equal(sb_eio_ws_pull(f->srv, id, ws, &b), 1);
    assert_int_equal(b->len, 1 + sizeof huge);
    sb_eio_buf_unref(b);
    assert_int_equal(sb_eio_send_text(f->srv, id, huge, sizeof huge), 0); /* empty again */
    assert_int_equal(f->app.closes, 0);
    assert_int_equal(sb_eio_send_text(f->srv, id, "x", 1), SB_ETIMEOUT); /* behind it: over */
    assert_string_equal(f->app.reason, "slow consumer");
    assert_int_equal(sb_eio_is_open(f->srv, id), 0);
    sb_eio_detach(f->srv, id, ws);
    id = fake_ws_session(f->srv, ws, 0);
    assert_int_equal(sb_eio_is_open(f->srv, id), 1);
    assert_int_equal(sb_eio_send_text(f->srv, id, "x", 1), 0);
    assert_int_equal(sb_eio_send_text(f->srv, id, huge, sizeof huge), SB_ETIMEOUT);
    assert_int_equal(f->app.closes, 2);
    sb_eio_detach(f->srv, id, ws);
    fixture_free(f);
}

static void test_garbage_closes_only_that_session(void **state) {
    fixture_t *f = *state;
    static const struct {
        const char *body;
        size_t len;
    } bad[] = {{"x", 1}, {"", 0}, {"\x1e\x1e", 2}, {"9", 1}, {"b!!!", 4}, {"4ok\x1e", 4},
               {"\xff\xfe", 2}, {"b A", 3}};
    char keep_sid[SB_EIO_SID_LEN + 1];
    sb_eio_id_t keep = fake_handshake(f->srv, 0, keep_sid);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char sid[SB_EIO_SID_LEN + 1];
        sb_eio_id_t id = fake_handshake(f->srv, 0, sid);
        assert_int_equal(fake_post(f->srv, sid, bad[i].body, bad[i].len, 1), 400);
        assert_null(sb_eio_sid(f->srv, id));
    }
    void *ws = &f->http.conns[0];
    sb_eio_id_t id = fake_ws_session(f->srv, ws, 0);
    assert_int_equal(sb_eio_ws_frame(f->srv, id, ws, "", 0, 0, 1), SB_EINVAL);
    assert_int_equal(sb_eio_ws_frame(f->srv, id, ws, "4", 1, 0, 1), SB_OK); /* closing: ignored */
    assert_non_null(sb_eio_sid(f->srv, keep));
    assert_int_equal(sb_eio_count(f->srv), 1);
    /* requests with odd query values */
    sb_eio_req_t req = fake_req(SB_EIO_OTHER, "polling", keep_sid);
    sb_eio_reply_t r;
    assert_int_equal(sb_eio_http(f->srv, &req, NULL, 1, &r), 400);
    sb_eio_buf_unref(r.body);
    assert_non_null(sb_eio_sid(f->srv, keep));
}

static void test_held_get_abort_closes(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[16];
    sb_eio_id_t id = fake_handshake(f->srv, 0, sid);
    assert_int_equal(fake_get(f->srv, sid, &f->http.conns[0], 1, out, sizeof out), SB_EIO_HOLD);
    sb_eio_detach(f->srv, id, &f->http.conns[0]);
    assert_int_equal(f->app.closes, 1);
    assert_null(sb_eio_sid(f->srv, id));
    sb_eio_detach(f->srv, id, &f->http.conns[0]); /* stale: ignored */
}

static void test_decode_packet(void **state) {
    (void)state;
    sb_eio_packet_t p;
    assert_int_equal(sb_eio_decode_packet("4abc", 4, &p), 0);
    assert_int_equal(p.type, '4');
    assert_int_equal(p.len, 3);
    assert_int_equal(sb_eio_decode_packet("6", 1, &p), 0);
    assert_int_equal(p.len, 0);
    assert_int_equal(sb_eio_decode_packet("bAAECAw==", 9, &p), 0);
    assert_int_equal(sb_eio_decode_packet("bAAE", 4, &p), 0); /* unpadded: tolerated */
    assert_int_equal(sb_eio_decode_packet("b", 1, &p), 0);
    assert_int_equal(sb_eio_decode_packet("bAA=E", 5, &p), SB_EINVAL);
    assert_int_equal(sb_eio_decode_packet("7", 1, &p), SB_EINVAL);
    assert_int_equal(sb_eio_decode_packet("", 0, &p), SB_EINVAL);
    assert_int_equal(sb_eio_decode_packet(NULL, 3, &p), SB_EINVAL);
}

static void test_memory_per_session(void **state) {
    (void)state;
    /* documented in eio.h: the struct stays small, with the first 4 ring entries inline
     * (no allocation for the ring until a burst needs more) */
    assert_true(sb_eio_session_size() <= 160);
    printf("sizeof session: %zu bytes\n", sb_eio_session_size());
}

static void test_random_id(void **state) {
    (void)state;
    char a[SB_EIO_SID_LEN + 1], b[SB_EIO_SID_LEN + 1];
    assert_int_equal(sb_eio_random_id(a), 0);
    assert_int_equal(sb_eio_random_id(b), 0);
    assert_int_equal(strlen(a), SB_EIO_SID_LEN);
    assert_string_not_equal(a, b);
    assert_null(strpbrk(a, "+/="));
}

/* ------------------------------------------------------------------ Engine.IO v3 (ALLOW_EIO3) */

/* Packets handed out by sb_eio_split_payload3, as "<binary>|<bytes>" text. */
typedef struct split3 {
    char pkts[8][64];
    int n, stop_at; /* stop_at: return 7 at that packet (1-based), 0 = never */
} split3_t;

static int split3_cb(void *ud, const char *pkt, size_t n, int binary) {
    split3_t *s = ud;
    if (s->n < 8) snprintf(s->pkts[s->n], 64, "%d|%.*s", binary, (int)n, pkt);
    return ++s->n == s->stop_at ? 7 : 0;
}

static void test_v3_utf16_len_and_prefix(void **state) {
    (void)state;
    char pre[SB_EIO_PREFIX3_MAX];
    assert_int_equal(sb_eio_utf16_len("abc", 3), 3);
    assert_int_equal(sb_eio_utf16_len("\xc3\xa9", 2), 1);         /* é: 2 bytes, 1 unit */
    assert_int_equal(sb_eio_utf16_len("\xe2\x82\xac", 3), 1);     /* €: 3 bytes, 1 unit */
    assert_int_equal(sb_eio_utf16_len("\xf0\x9f\x98\x80", 4), 2); /* 😀: a surrogate pair */
    assert_int_equal(sb_eio_prefix3("42[\"\xf0\x9f\x98\x80\"]", 10, pre), 2);
    assert_string_equal(pre, "8:");
    assert_int_equal(sb_eio_prefix3("", 0, pre), 2);
    assert_string_equal(pre, "0:");
}

static void test_v3_split_string_payload(void **state) {
    (void)state;
    /* a ping, a message holding an emoji (8 units, 10 bytes), an empty packet (skipped),
     * a base64 binary message */
    static const char body[] = "1:28:42[\"\xf0\x9f\x98\x80\"]0:6:b4AQI=";
    split3_t s = {0};
    assert_int_equal(sb_eio_split_payload3(body, sizeof body - 1, split3_cb, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.pkts[0], "0|2");
    assert_string_equal(s.pkts[1], "0|42[\"\xf0\x9f\x98\x80\"]");
    assert_string_equal(s.pkts[2], "0|b4AQI=");
    /* the callback's non-zero value stops the split and is returned */
    split3_t stop = {.stop_at = 2};
    assert_int_equal(sb_eio_split_payload3(body, sizeof body - 1, split3_cb, &stop), 7);
    assert_int_equal(stop.n, 2);
}

static void test_v3_split_binary_payload(void **state) {
    (void)state;
    /* XHR2: the string packet "2" (length 1), then a binary message \x04\x01\xff (length 3),
     * then a 10-byte string packet (the length as two digit bytes) */
    static const char body[] = "\x00\x01\xff" "2"
                               "\x01\x03\xff" "\x04\x01\xff"
                               "\x00\x01\x00\xff" "4abcdefghi";
    split3_t s = {0};
    assert_int_equal(sb_eio_split_payload3(body, sizeof body - 1, split3_cb, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.pkts[0], "0|2");
    assert_memory_equal(s.pkts[1], "1|\x04\x01\xff", 5);
    assert_string_equal(s.pkts[2], "0|4abcdefghi");
}

static void test_v3_split_errors(void **state) {
    (void)state;
    static const struct {
        const char *body;
        size_t len;
    } bad[] = {
        {"", 0},                         /* an empty body */
        {"x:2", 3},                      /* no length */
        {":2", 2},                       /* no digits */
        {"2", 1},                        /* no colon */
        {"5:2", 3},                      /* the packet is cut short */
        {"1:\xf0\x9f\x98\x80", 6},       /* a surrogate pair straddles the length */
        {"12345678901:2", 13},           /* an absurd length */
        {"1:21", 4},                     /* trailing garbage: "1" is no length */
        {"\x02\x01\xff" "2", 4},         /* binary: marker neither 0 nor 1 */
        {"\x00\x05\xff" "2", 4},         /* binary: cut short */
        {"\x00\x01" "2", 3},             /* binary: no 0xFF */
        {"\x01\xff\x04", 3},             /* binary: no length digits */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        split3_t s = {0};
        assert_int_equal(sb_eio_split_payload3(bad[i].body, bad[i].len, split3_cb, &s),
                         SB_EINVAL);
    }
    split3_t s = {0};
    assert_int_equal(sb_eio_split_payload3(NULL, 3, split3_cb, &s), SB_EINVAL);
    assert_int_equal(s.n, 0);
}

static void test_v3_decode_packet(void **state) {
    (void)state;
    sb_eio_packet_t p;
    assert_int_equal(sb_eio_decode_packet3("4hi", 3, 0, &p), 0);
    assert_int_equal(p.type, '4');
    assert_int_equal(p.len, 2);
    assert_int_equal(sb_eio_decode_packet3("b4AQI=", 6, 0, &p), 0);
    assert_int_equal(p.type, 'b');
    assert_memory_equal(p.data, "AQI=", 4);
    assert_int_equal(sb_eio_decode_packet3("\x04\x01\x02", 3, 1, &p), 0);
    assert_int_equal(p.type, 'b');
    assert_int_equal(p.len, 2);
    assert_memory_equal(p.data, "\x01\x02", 2);
    assert_int_equal(sb_eio_decode_packet3("\x02", 1, 1, &p), SB_EINVAL);
    assert_int_equal(sb_eio_decode_packet3("b2AA", 4, 0, &p), SB_EINVAL);
    assert_int_equal(sb_eio_decode_packet3("b4!!", 4, 0, &p), SB_EINVAL);
    assert_int_equal(sb_eio_decode_packet3("bAQI=", 5, 0, &p), SB_EINVAL); /* v4's form */
    assert_int_equal(sb_eio_decode_packet3("", 0, 0, &p), SB_EINVAL);
}

static int setup_v3(void **state) {
    sb_eio_config_t cfg;
    sb_eio_config_default(&cfg);
    cfg.allow_eio3 = 1;
    *state = fixture_new(&cfg);
    return 0;
}

static sb_eio_req_t req3(int method, const char *transport, const char *sid) {
    sb_eio_req_t r = fake_req(method, transport, sid);
    r.eio = "3";
    return r;
}

/* A v3 polling handshake at now: checks the framing of the open packet; copies the sid. */
static sb_eio_id_t handshake3(fixture_t *f, int64_t now, char *sid) {
    sb_eio_req_t req = req3(SB_EIO_GET, "polling", NULL);
    sb_eio_reply_t r;
    char body[512];
    assert_int_equal(sb_eio_http(f->srv, &req, NULL, now, &r), 200);
    fake_body(&r, body, sizeof body);
    char *colon = strchr(body, ':');
    assert_non_null(colon);
    assert_int_equal(strtol(body, NULL, 10), strlen(colon + 1));
    assert_memory_equal(colon + 1, "0{\"sid\":\"", 9);
    memcpy(sid, colon + 10, SB_EIO_SID_LEN);
    sid[SB_EIO_SID_LEN] = '\0';
    assert_int_equal(sb_eio_protocol(f->srv, r.id), 3);
    return r.id;
}

static int post3(fixture_t *f, const char *sid, const char *body, size_t len, int64_t now) {
    sb_eio_req_t req = req3(SB_EIO_POST, "polling", sid);
    req.body = body;
    req.body_len = len;
    sb_eio_reply_t r;
    int status = sb_eio_http(f->srv, &req, NULL, now, &r);
    sb_eio_buf_unref(r.body);
    return status;
}

static int get3(fixture_t *f, const char *sid, int64_t now, char *out, size_t n) {
    sb_eio_req_t req = req3(SB_EIO_GET, "polling", sid);
    sb_eio_reply_t r;
    int status = sb_eio_http(f->srv, &req, &f->http.conns[1], now, &r);
    fake_body(&r, out, n);
    return status;
}

static void test_v3_refused_unless_allowed(void **state) {
    fixture_t *f = *state; /* default config: allow_eio3 0 */
    expect_error(f, req3(SB_EIO_GET, "polling", NULL), 400,
                 "{\"code\":5,\"message\":\"Unsupported protocol version\"}");
    expect_error(f, req3(SB_EIO_GET, "websocket", NULL), 400,
                 "{\"code\":5,\"message\":\"Unsupported protocol version\"}");
    assert_int_equal(sb_eio_count(f->srv), 0);
}

static void test_v3_polling_framing(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[512];
    sb_eio_id_t id = handshake3(f, 0, sid);
    /* a v4 handshake on the same server stays v4 */
    char sid4[SB_EIO_SID_LEN + 1];
    assert_int_equal(sb_eio_protocol(f->srv, fake_handshake(f->srv, 0, sid4)), 4);
    /* queued packets are length-prefixed in UTF-16 units, one packet alone too */
    assert_int_equal(sb_eio_send_text(f->srv, id, "0", 1), 0);
    assert_int_equal(get3(f, sid, 1, out, sizeof out), 200);
    assert_string_equal(out, "2:40");
    assert_int_equal(sb_eio_send_text(f->srv, id, "2[\"\xf0\x9f\x98\x80\"]", 9), 0);
    assert_int_equal(sb_eio_send_text(f->srv, id, "2[\"\xc3\xa9\"]", 7), 0);
    assert_int_equal(get3(f, sid, 2, out, sizeof out), 200);
    assert_string_equal(out, "8:42[\"\xf0\x9f\x98\x80\"]7:42[\"\xc3\xa9\"]");
    /* the client's ping is answered with a pong; its messages reach the app (binary ones as
     * their bytes: from base64 in a string payload, as they are in an XHR2 binary payload) */
    assert_int_equal(post3(f, sid, "1:25:4abcd6:b4AQI=", 18, 3), 200);
    assert_int_equal(post3(f, sid, "\x01\x03\xff\x04\x01\x02", 6, 3), 200);
    assert_int_equal(get3(f, sid, 4, out, sizeof out), 200);
    assert_string_equal(out, "1:3");
    assert_int_equal(f->app.nmsgs, 3);
    assert_string_equal(f->app.msgs[0], "abcd");
    assert_int_equal(f->app.binary[0], 0);
    assert_memory_equal(f->app.msgs[1], "\x01\x02", 2);
    assert_int_equal(f->app.binary[1], 1);
    assert_memory_equal(f->app.msgs[2], "\x01\x02", 2);
    assert_int_equal(f->app.binary[2], 1);
    /* a binary message goes out as engine.io-parser v2 writes it: `b4` + base64, prefixed */
    assert_int_equal(sb_eio_send_binary(f->srv, id, "\x01\x02\x03", 3), 0);
    assert_int_equal(sb_eio_send_text(f->srv, id, "x", 1), 0);
    assert_int_equal(get3(f, sid, 4, out, sizeof out), 200);
    assert_string_equal(out, "6:b4AQID2:4x");
    /* a held GET released by a graceful close: what is queued, then the close, framed */
    assert_int_equal(get3(f, sid, 5, out, sizeof out), SB_EIO_HOLD);
    assert_int_equal(sb_eio_send_text(f->srv, id, "2[1]", 4), 0);
    assert_int_equal(sb_eio_close(f->srv, id, 1, "bye"), 0);
    sb_eio_reply_t r;
    assert_int_equal(sb_eio_poll_pull(f->srv, id, &f->http.conns[1], &r), 1);
    assert_string_equal(fake_body(&r, out, sizeof out), "5:42[1]1:1");
}

static void test_v3_bad_payload_closes(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[256];
    sb_eio_id_t id = handshake3(f, 0, sid);
    assert_int_equal(post3(f, sid, "9:2", 3, 1), 400); /* cut short */
    assert_int_equal(f->app.closes, 1);
    assert_string_equal(f->app.reason, "parse error");
    assert_int_equal(sb_eio_is_open(f->srv, id), 0);
    /* the v4 form of a payload is garbage to a v3 session */
    handshake3(f, 0, sid);
    assert_int_equal(post3(f, sid, "2\x1e" "4x", 4, 1), 400);
    /* a pong from the client: wrong direction in v3 */
    handshake3(f, 0, sid);
    assert_int_equal(post3(f, sid, "1:3", 3, 1), 200);
    assert_string_equal(f->app.reason, "invalid heartbeat direction");
    assert_int_equal(get3(f, sid, 2, out, sizeof out), 400); /* nothing left: freed */
}

static void test_v3_heartbeat_from_client(void **state) {
    fixture_t *f = *state;
    char out[64];
    void *ws = &f->http.conns[0];
    sb_eio_req_t req = req3(SB_EIO_GET, "websocket", NULL);
    sb_eio_reply_t r;
    assert_int_equal(sb_eio_http(f->srv, &req, ws, 0, &r), 101);
    sb_eio_id_t id = r.id;
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 1);
    assert_memory_equal(out, "0{\"sid\":", 8); /* unframed on a WebSocket */
    /* the server never pings: its only deadline is pingInterval + pingTimeout */
    assert_int_equal(sb_eio_tick(f->srv, 25000), 45000);
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 0);
    /* a client ping is answered at once and moves the deadline */
    assert_int_equal(fake_ws_send(f->srv, id, ws, "2", 30000), 0);
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 1);
    assert_string_equal(out, "3");
    /* other packets do not count as life (the reference refreshes on a ping only) */
    assert_int_equal(fake_ws_send(f->srv, id, ws, "4late", 60000), 0);
    assert_int_equal(sb_eio_ws_frame(f->srv, id, ws, "\x04\x07", 2, 1, 61000), 0);
    assert_int_equal(f->app.binary[1], 1);
    assert_int_equal(f->app.msgs[1][0], 7);
    assert_int_equal(sb_eio_tick(f->srv, 74999), 75000);
    assert_int_equal(f->app.closes, 0);
    sb_eio_tick(f->srv, 75000);
    assert_int_equal(f->app.closes, 1);
    assert_string_equal(f->app.reason, "ping timeout");
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), SB_EIO_CLOSE);
    sb_eio_detach(f->srv, id, ws);
}

static void test_v3_upgrade(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[256];
    sb_eio_id_t id = handshake3(f, 0, sid);
    void *poll = &f->http.conns[1], *ws = &f->http.conns[2];
    assert_int_equal(get3(f, sid, 10, out, sizeof out), SB_EIO_HOLD);
    sb_eio_req_t req = req3(SB_EIO_GET, "websocket", sid);
    sb_eio_reply_t r;
    assert_int_equal(sb_eio_http(f->srv, &req, ws, 20, &r), 101);
    assert_int_equal(fake_ws_send(f->srv, id, ws, "2probe", 30), 0);
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 1);
    assert_string_equal(out, "3probe");
    assert_int_equal(sb_eio_poll_pull(f->srv, id, poll, &r), 1);
    assert_string_equal(fake_body(&r, out, sizeof out), "1:6"); /* the noop, framed */
    assert_int_equal(sb_eio_send_text(f->srv, id, "2[\"x\"]", 6), 0);
    assert_int_equal(fake_ws_send(f->srv, id, ws, "5", 40), 0);
    assert_int_equal(sb_eio_is_websocket(f->srv, id), 1);
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 1);
    assert_string_equal(out, "42[\"x\"]");
    /* pings go over the WebSocket now; a v4 binary frame (no type byte) is garbage */
    assert_int_equal(fake_ws_send(f->srv, id, ws, "2", 50), 0);
    assert_int_equal(fake_ws_pull(f->srv, id, ws, out, sizeof out), 1);
    assert_string_equal(out, "3");
    assert_int_equal(sb_eio_ws_frame(f->srv, id, ws, "\x01\x02", 2, 1, 60), SB_EINVAL);
    assert_string_equal(f->app.reason, "parse error");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_answers_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_polling_post_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_polling_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_polling_hold_and_wake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_polling_overlap_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_polling_post_overlap_closes, setup, teardown),
        cmocka_unit_test(test_polling_payload_cap),
        cmocka_unit_test_setup_teardown(test_graceful_close_polling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_close_answers_held_get_noop, setup, teardown),
        cmocka_unit_test(test_deadlines_scheduled_exactly),
        cmocka_unit_test_setup_teardown(test_late_tick_pings_before_timing_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_with_get_held_at_upgrade, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_probe_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_websocket_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_ping_pong_and_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_polling_ping_timeout_answers_held_get, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_client_ping_ends_session, setup, teardown),
        cmocka_unit_test(test_max_payload),
        cmocka_unit_test(test_slow_consumer_dropped),
        cmocka_unit_test(test_big_packet_into_empty_queue),
        cmocka_unit_test_setup_teardown(test_garbage_closes_only_that_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_get_abort_closes, setup, teardown),
        cmocka_unit_test(test_decode_packet),
        cmocka_unit_test(test_memory_per_session),
        cmocka_unit_test(test_random_id),
        cmocka_unit_test(test_v3_utf16_len_and_prefix),
        cmocka_unit_test(test_v3_split_string_payload),
        cmocka_unit_test(test_v3_split_binary_payload),
        cmocka_unit_test(test_v3_split_errors),
        cmocka_unit_test(test_v3_decode_packet),
        cmocka_unit_test_setup_teardown(test_v3_refused_unless_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v3_polling_framing, setup_v3, teardown),
        cmocka_unit_test_setup_teardown(test_v3_bad_payload_closes, setup_v3, teardown),
        cmocka_unit_test_setup_teardown(test_v3_heartbeat_from_client, setup_v3, teardown),
        cmocka_unit_test_setup_teardown(test_v3_upgrade, setup_v3, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
