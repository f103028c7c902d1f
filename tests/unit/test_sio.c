/* Unit tests of the Socket.IO v5 layer (src/gateway/socketio/sio.c) over the Engine.IO machine:
 * packet decoding and encoding (JSON escaping), CONNECT accepted / refused, rooms joined, client
 * events, DISCONNECT, garbage, connect timeout, fan-out with one shared buffer, slow consumers
 * dropped by a room emit; Socket.IO v2 over Engine.IO v3 (sb_sio_connect_v2, its error
 * packet). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/socketio/sio.h"
#include "sb_fake_http.h"
#include "switchboard/error.h"
#include "switchboard/json.h"

/* ------------------------------------------------------------------ codec */

static void expect_decode(const char *in, int type, const char *nsp, int64_t id,
                          const char *data) {
    sb_sio_packet_t p;
    assert_int_equal(sb_sio_decode(in, strlen(in), &p), 0);
    assert_int_equal(p.type, type);
    assert_int_equal(p.nsp_len, strlen(nsp));
    assert_memory_equal(p.nsp, nsp, p.nsp_len);
    assert_true(p.id == id);
    if (data) {
        char *text = sb_json_print(p.data);
        assert_string_equal(text, data);
        free(text);
    } else {
        assert_null(p.data);
    }
    sb_sio_packet_close(&p);
}

static void test_decode_valid(void **state) {
    (void)state;
    expect_decode("0", SB_SIO_CONNECT, "/", -1, NULL);
    expect_decode("0{\"token\":\"abc\"}", SB_SIO_CONNECT, "/", -1, "{\"token\":\"abc\"}");
    expect_decode("0/admin,", SB_SIO_CONNECT, "/admin", -1, NULL);
    expect_decode("1", SB_SIO_DISCONNECT, "/", -1, NULL);
    expect_decode("2[\"hello\",{\"a\":1}]", SB_SIO_EVENT, "/", -1, "[\"hello\",{\"a\":1}]");
    expect_decode("213[\"ev\"]", SB_SIO_EVENT, "/", 13, "[\"ev\"]");
    expect_decode("2/chat,7[\"m\"]", SB_SIO_EVENT, "/chat", 7, "[\"m\"]");
    expect_decode("3[]", SB_SIO_ACK, "/", -1, "[]");
    expect_decode("44{\"message\":\"x\"}", SB_SIO_CONNECT_ERROR, "/", 4,
                  "{\"message\":\"x\"}");
    expect_decode("4\"nope\"", SB_SIO_CONNECT_ERROR, "/", -1, "\"nope\"");
    expect_decode("51-[\"up\",{\"_placeholder\":true,\"num\":0}]", SB_SIO_BINARY_EVENT, "/", -1,
                  "[\"up\",{\"_placeholder\":true,\"num\":0}]");
    sb_sio_packet_t p;
    assert_int_equal(sb_sio_decode("52-/x,9[\"a\"]", 12, &p), 0);
    assert_int_equal(p.attachments, 2);
    sb_sio_packet_close(&p);
}

static void test_decode_invalid(void **state) {
    (void)state;
    static const char *const bad[] = {
        "", "7", "9[]", "2", "2{}", "2[]", "2\"x\"", "1{}", "0\"str\"", "0[1]", "2[\"a\"",
        "5-[\"a\"]", "5x-[\"a\"]", "51[\"a\"]", "3{}", "2[\"a\"]x", "21234567890123456[\"a\"]",
        "599999-[\"a\"]", "2/nsp", "0{\"a\":1}}", "\xff", "3", "31", "61-",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sb_sio_packet_t p;
        assert_int_equal(sb_sio_decode(bad[i], strlen(bad[i]), &p), SB_EINVAL);
        assert_null(p.data);
    }
    char deep[300];
    memset(deep, '[', sizeof deep);
    deep[0] = '2';
    sb_sio_packet_t p;
    assert_int_equal(sb_sio_decode(deep, sizeof deep, &p), SB_EINVAL);
}

static void test_encode(void **state) {
    (void)state;
    sb_eio_buf_t *b = sb_sio_encode_event(0, "rebalance:done", "{\"jobId\":\"1-a\"}", 15);
    assert_string_equal(b->data, "42[\"rebalance:done\",{\"jobId\":\"1-a\"}]");
    assert_int_equal(b->len, strlen(b->data));
    sb_eio_buf_unref(b);
    b = sb_sio_encode_event(16, "we\"ird\\\n\x01é", NULL, 0);
    assert_string_equal(b->data, "42[\"we\\\"ird\\\\\\u000a\\u0001é\"]");
    assert_true(b->data == b->mem + 16);
    /* what we encode decodes back to the same event name */
    sb_sio_packet_t p;
    assert_int_equal(sb_sio_decode(b->data + 1, b->len - 1, &p), 0);
    assert_string_equal(cJSON_GetArrayItem(p.data, 0)->valuestring, "we\"ird\\\n\x01é");
    sb_sio_packet_close(&p);
    sb_eio_buf_unref(b);
    b = sb_sio_encode(0, SB_SIO_CONNECT_ERROR, "/admin", -1, "{\"message\":\"m\"}", 15);
    assert_string_equal(b->data, "44/admin,{\"message\":\"m\"}");
    sb_eio_buf_unref(b);
    b = sb_sio_encode(0, SB_SIO_ACK, "/", 12, "[]", 2);
    assert_string_equal(b->data, "4312[]");
    sb_eio_buf_unref(b);
    b = sb_sio_encode(0, SB_SIO_DISCONNECT, NULL, -1, NULL, 0);
    assert_string_equal(b->data, "41");
    sb_eio_buf_unref(b);
    /* data escaping is cJSON's: a payload with quotes and control characters round-trips */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", "bad \"thing\"\n\t</script>");
    char *text = sb_json_print(o);
    b = sb_sio_encode_event(0, "rebalance:error", text, strlen(text));
    assert_int_equal(sb_sio_decode(b->data + 1, b->len - 1, &p), 0);
    assert_string_equal(sb_json_str(cJSON_GetArrayItem(p.data, 1), "error"),
                        "bad \"thing\"\n\t</script>");
    sb_sio_packet_close(&p);
    sb_eio_buf_unref(b);
    free(text);
    cJSON_Delete(o);
}

/* ------------------------------------------------------------------ the namespace */

typedef struct app {
    int connects, disconnects, events;
    char last_event[64];
    int64_t last_ack;
    char last_nsp[32];
    int last_natt;
    int last_auth_token; /* the CONNECT's auth payload had a token */
    char last_att[16]; /* the first attachment's bytes */
    char reason[64];
    sb_sio_t *sio;
    int replay; /* emit "replay" from on_connect */
} app_t;

typedef struct fixture {
    sb_eio_server_t *eio;
    sb_sio_t *sio;
    fake_http_t http;
    app_t app;
} fixture_t;

static int fake_auth(void *ud, const char *token, sb_sio_identity_t *who, char *err,
                     size_t errlen) {
    (void)ud;
    if (!token) {
        snprintf(err, errlen, "missing token");
        return -1;
    }
    const char *key = strncmp(token, "good-", 5) == 0 ? token + 5 : NULL;
    if (!key) {
        snprintf(err, errlen, "invalid \"token\"");
        return -1;
    }
    snprintf(who->public_key, sizeof who->public_key, "%s", key);
    snprintf(who->user_id, sizeof who->user_id, "u-%s", key);
    snprintf(who->role, sizeof who->role, "%s", strcmp(key, "boss") == 0 ? "admin" : "user");
    return 0;
}

static void on_connect(void *ud, sb_eio_id_t id, const char *nsp, const sb_sio_identity_t *who,
                       const cJSON *auth) {
    app_t *a = ud;
    a->connects++;
    snprintf(a->last_nsp, sizeof a->last_nsp, "%s", nsp);
    a->last_auth_token = auth && cJSON_GetObjectItem(auth, "token") != NULL;
    if (a->replay) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "user", who->public_key);
        assert_int_equal(sb_sio_emit(a->sio, id, "replay", o), 0);
        cJSON_Delete(o);
    }
}

static void on_event(void *ud, sb_eio_id_t id, const sb_sio_event_t *ev) {
    (void)id;
    app_t *a = ud;
    a->events++;
    snprintf(a->last_event, sizeof a->last_event, "%s", ev->name);
    snprintf(a->last_nsp, sizeof a->last_nsp, "%s", ev->nsp);
    a->last_ack = ev->ack_id;
    a->last_natt = ev->natt;
    memset(a->last_att, 0, sizeof a->last_att);
    if (ev->natt) memcpy(a->last_att, ev->attachments[0].data, ev->attachments[0].len % 16);
}

static void on_disconnect(void *ud, sb_eio_id_t id, const char *reason) {
    (void)id;
    app_t *a = ud;
    a->disconnects++;
    snprintf(a->reason, sizeof a->reason, "%s", reason);
}

static fixture_t *fixture_new_sio(const sb_eio_config_t *cfg, const sb_sio_config_t *scfg,
                                  int with_events) {
    fixture_t *f = calloc(1, sizeof *f);
    sb_eio_io_cb_t io = {fake_wake, &f->http};
    f->eio = sb_eio_create(cfg, &io);
    sb_sio_callbacks_t cb = {fake_auth, on_connect, with_events ? on_event : NULL, on_disconnect,
                             &f->app};
    f->sio = sb_sio_create(f->eio, &cb, scfg);
    assert_non_null(f->sio);
    f->app.sio = f->sio;
    return f;
}

static fixture_t *fixture_new(const sb_eio_config_t *cfg) {
    return fixture_new_sio(cfg, NULL, 1);
}

static void fixture_free(fixture_t *f) {
    sb_sio_free(f->sio);
    sb_eio_free(f->eio);
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

/* A WebSocket session on conns[i] that sent `connect` (e.g. `40{"token":"good-k"}`). */
static sb_eio_id_t ws_connect(fixture_t *f, int i, const char *connect, char *reply,
                              size_t n) {
    void *ws = &f->http.conns[i];
    sb_eio_id_t id = fake_ws_session(f->eio, ws, 0);
    assert_true(id);
    assert_int_equal(fake_ws_send(f->eio, id, ws, connect, 1), 0);
    if (reply) fake_ws_pull(f->eio, id, ws, reply, n);
    return id;
}

static void test_connect_ok(void **state) {
    fixture_t *f = *state;
    f->app.replay = 1;
    char out[256];
    sb_eio_id_t id = ws_connect(f, 0, "40{\"token\":\"good-PK1\"}", out, sizeof out);
    cJSON *o = sb_json_parse(out + 2, strlen(out + 2));
    assert_memory_equal(out, "40", 2);
    assert_non_null(o);
    assert_string_equal(sb_json_str(o, "sid"), sb_sio_sid(f->sio, id));
    assert_string_not_equal(sb_sio_sid(f->sio, id), sb_eio_sid(f->eio, id));
    cJSON_Delete(o);
    /* the replay emitted from on_connect comes right after the CONNECT reply */
    assert_int_equal(fake_ws_pull(f->eio, id, &f->http.conns[0], out, sizeof out), 1);
    assert_string_equal(out, "42[\"replay\",{\"user\":\"PK1\"}]");
    assert_int_equal(f->app.connects, 1);
    assert_int_equal(sb_sio_count(f->sio), 1);
    assert_int_equal(sb_rooms_size(sb_sio_rooms(f->sio), "user:PK1"), 1);
    assert_int_equal(sb_rooms_size(sb_sio_rooms(f->sio), "admins"), 0);
    assert_string_equal(sb_sio_identity(f->sio, id)->user_id, "u-PK1");
    /* the admin joins admins too */
    sb_eio_id_t admin = ws_connect(f, 1, "40{\"token\":\"good-boss\"}", out, sizeof out);
    assert_memory_equal(out, "40{\"sid\":", 9);
    assert_int_equal(sb_rooms_size(sb_sio_rooms(f->sio), "admins"), 1);
    assert_int_equal(sb_rooms_size(sb_sio_rooms(f->sio), "user:boss"), 1);
    /* engine closes: socket leaves its rooms */
    sb_eio_detach(f->eio, admin, &f->http.conns[1]);
    assert_int_equal(f->app.disconnects, 1);
    assert_string_equal(f->app.reason, "transport close");
    assert_int_equal(sb_rooms_size(sb_sio_rooms(f->sio), "admins"), 0);
    assert_int_equal(sb_sio_count(f->sio), 1);
}

static void test_connect_refused(void **state) {
    fixture_t *f = *state;
    char out[256];
    sb_eio_id_t id = ws_connect(f, 0, "40{\"token\":\"forged\"}", out, sizeof out);
    assert_string_equal(out, "44{\"message\":\"invalid \\\"token\\\"\"}");
    assert_int_equal(sb_sio_count(f->sio), 0);
    assert_int_equal(sb_rooms_count(sb_sio_rooms(f->sio)), 0);
    assert_null(sb_sio_identity(f->sio, id));
    assert_int_equal(sb_sio_emit(f->sio, id, "x", NULL), SB_ENOTFOUND);
    ws_connect(f, 1, "40", out, sizeof out);
    assert_string_equal(out, "44{\"message\":\"missing token\"}");
    ws_connect(f, 2, "40{\"token\":42}", out, sizeof out);
    assert_string_equal(out, "44{\"message\":\"missing token\"}");
    ws_connect(f, 3, "40/admin,{\"token\":\"good-a\"}", out, sizeof out);
    assert_string_equal(out, "44/admin,{\"message\":\"Invalid namespace\"}");
    assert_int_equal(f->app.connects, 0);
}

static void test_connect_over_polling(void **state) {
    fixture_t *f = *state;
    char sid[SB_EIO_SID_LEN + 1], out[256];
    sb_eio_id_t id = fake_handshake(f->eio, 0, sid);
    const char body[] = "40{\"token\":\"good-P\"}";
    assert_int_equal(fake_post(f->eio, sid, body, sizeof body - 1, 1), 200);
    assert_int_equal(sb_sio_emit_room_json(f->sio, "user:P", "rebalance:created",
                                           "{\"jobId\":\"1-a\"}", 15), 1);
    assert_int_equal(fake_get(f->eio, sid, &f->http.conns[0], 2, out, sizeof out), 200);
    assert_memory_equal(out, "40{\"sid\":\"", 9);
    assert_non_null(strstr(out, "\x1e" "42[\"rebalance:created\",{\"jobId\":\"1-a\"}]"));
    assert_true(sb_sio_identity(f->sio, id) != NULL);
}

static void test_client_events_and_disconnect(void **state) {
    fixture_t *f = *state;
    void *ws = &f->http.conns[0];
    char out[256];
    sb_eio_id_t id = fake_ws_session(f->eio, ws, 0);
    fake_ws_send(f->eio, id, ws, "40{\"token\":\"good-E\"}", 1);
    fake_ws_pull(f->eio, id, ws, out, sizeof out);
    fake_ws_send(f->eio, id, ws, "42[\"ping:app\",{\"x\":1}]", 2);
    assert_int_equal(f->app.events, 1);
    assert_string_equal(f->app.last_event, "ping:app");
    assert_true(f->app.last_ack == -1);
    fake_ws_send(f->eio, id, ws, "427[\"with-ack\"]", 3);
    assert_string_equal(f->app.last_event, "with-ack");
    assert_true(f->app.last_ack == 7);
    assert_int_equal(sb_sio_ack(f->sio, id, 7, "[{\"ok\":true}]", 13), 0);
    assert_int_equal(fake_ws_pull(f->eio, id, ws, out, sizeof out), 1);
    assert_string_equal(out, "437[{\"ok\":true}]");
    assert_int_equal(sb_sio_ack(f->sio, id, -1, "[]", 2), SB_EINVAL);
    fake_ws_send(f->eio, id, ws, "42[12]", 3);          /* numeric name: ignored */
    fake_ws_send(f->eio, id, ws, "43[]", 3);            /* ack: ignored */
    /* a binary event reaches on_event once its attachment is in */
    fake_ws_send(f->eio, id, ws, "451-9[\"b\",{\"_placeholder\":true,\"num\":0}]", 3);
    assert_int_equal(f->app.events, 2);
    assert_int_equal(sb_eio_ws_frame(f->eio, id, ws, "\x01\x02", 2, 1, 3), 0);
    assert_int_equal(f->app.events, 3);
    assert_string_equal(f->app.last_event, "b");
    assert_string_equal(f->app.last_nsp, "/");
    assert_true(f->app.last_ack == 9);
    assert_int_equal(f->app.last_natt, 1);
    assert_string_equal(f->app.last_att, "\x01\x02");
    /* nobody handles this one: its ack id is answered with an error at once */
    fake_ws_send(f->eio, id, ws, "428[12]", 3);
    assert_int_equal(fake_ws_pull(f->eio, id, ws, out, sizeof out), 1);
    assert_string_equal(out, "438[{\"error\":\"client events are not supported\"}]");
    assert_int_equal(f->app.events, 3);
    assert_int_equal(fake_ws_send(f->eio, id, ws, "41", 4), 0);
    assert_int_equal(f->app.disconnects, 1);
    assert_string_equal(f->app.reason, "client namespace disconnect");
    assert_int_equal(sb_rooms_count(sb_sio_rooms(f->sio)), 0);
    assert_int_equal(sb_sio_count(f->sio), 0);
    /* the engine session stays, and can connect again */
    fake_ws_send(f->eio, id, ws, "40{\"token\":\"good-E\"}", 5);
    assert_int_equal(f->app.connects, 2);
    assert_int_equal(sb_sio_count(f->sio), 1);
    /* server-side disconnect */
    assert_int_equal(sb_sio_disconnect(f->sio, id, 1), 0);
    while (fake_ws_pull(f->eio, id, ws, out, sizeof out) == 1) continue;
    assert_string_equal(out, "");
    assert_int_equal(sb_eio_queued(f->eio, id), 0);
    assert_int_equal(fake_ws_pull(f->eio, id, ws, out, sizeof out), SB_EIO_CLOSE);
}

/* Packets the session's state does not allow close the connection, as socket.io does: an
 * EVENT before CONNECT, a second CONNECT, an EVENT to a namespace not connected, an EVENT
 * after DISCONNECT (issue #22). */
/* Namespaces of the allow-list beside "/": connect, events, binary acks out, disconnect; a
 * namespace not listed is refused, an event to a namespace left closes the session. */
static void test_namespaces_and_binary(void **state) {
    (void)state;
    static const char *const nsps[] = {"/custom", NULL};
    sb_sio_config_t scfg = {.namespaces = nsps};
    fixture_t *f = fixture_new_sio(NULL, &scfg, 1);
    void *ws = &f->http.conns[0];
    char out[256];
    sb_eio_id_t id = fake_ws_session(f->eio, ws, 0);
    fake_ws_send(f->eio, id, ws, "40/custom,{\"token\":\"good-C\"}", 1);
    assert_int_equal(fake_ws_pull(f->eio, id, ws, out, sizeof out), 1);
    assert_memory_equal(out, "40/custom,{\"sid\":\"", 17);
    assert_string_equal(f->app.last_nsp, "/custom");
    assert_int_equal(f->app.last_auth_token, 1);
    assert_int_equal(sb_sio_count(f->sio), 0);                 /* "/" counts only its own */
    assert_int_equal(sb_rooms_count(sb_sio_rooms(f->sio)), 0); /* and has the rooms */
    fake_ws_send(f->eio, id, ws, "40{\"token\":\"good-C\"}", 1); /* "/" too, same session */
    assert_int_equal(fake_ws_pull(f->eio, id, ws, out, sizeof out), 1);
    assert_memory_equal(out, "40{\"sid\":\"", 9);
    assert_int_equal(sb_sio_count(f->sio), 1);
    fake_ws_send(f->eio, id, ws, "40/random", 1);
    assert_int_equal(fake_ws_pull(f->eio, id, ws, out, sizeof out), 1);
    assert_string_equal(out, "44/random,{\"message\":\"Invalid namespace\"}");
    fake_ws_send(f->eio, id, ws, "42/custom,3[\"m\",1]", 2);
    assert_string_equal(f->app.last_nsp, "/custom");
    assert_true(f->app.last_ack == 3);
    sb_sio_attachment_t att[2] = {{"\x01\x02", 2}, {"", 0}};
    assert_int_equal(sb_sio_send(f->sio, id, "/custom", SB_SIO_ACK, 3, "[1]", 3, att, 2), 0);
    assert_int_equal(fake_ws_pull(f->eio, id, ws, out, sizeof out), 1);
    assert_string_equal(out, "462-/custom,3[1]");
    sb_eio_buf_t *b = NULL;
    assert_int_equal(sb_eio_ws_pull(f->eio, id, ws, &b), 1);
    assert_int_equal(b->binary, 1);
    assert_memory_equal(b->data, "\x01\x02", 2);
    sb_eio_buf_unref(b);
    assert_int_equal(sb_eio_ws_pull(f->eio, id, ws, &b), 1);
    assert_int_equal(b->binary && b->len == 0, 1);
    sb_eio_buf_unref(b);
    assert_int_equal(sb_sio_send(f->sio, id, "/random", SB_SIO_EVENT, -1, "[\"x\"]", 5, NULL, 0),
                     SB_ENOTFOUND);
    assert_int_equal(sb_sio_send(f->sio, id, NULL, SB_SIO_ACK, -1, "[]", 2, NULL, 0), SB_EINVAL);
    fake_ws_send(f->eio, id, ws, "41/custom,", 3);
    assert_int_equal(sb_sio_count(f->sio), 1); /* "/" stays */
    assert_int_equal(f->app.disconnects, 0);   /* on_disconnect is "/"'s */
    fake_ws_send(f->eio, id, ws, "42/custom,[\"m\"]", 4);
    assert_int_equal(f->app.disconnects, 1);
    assert_string_equal(f->app.reason, "invalid state");
    fixture_free(f);
}

/* A fresh fixture (with or without on_event) and a WebSocket session connected to "/" on
 * its conns[0]; *id gets the session. */
static fixture_t *connected_fixture(int with_events, sb_eio_id_t *id) {
    fixture_t *f = fixture_new_sio(NULL, NULL, with_events);
    char out[256];
    *id = fake_ws_session(f->eio, &f->http.conns[0], 0);
    fake_ws_send(f->eio, *id, &f->http.conns[0], "40{\"token\":\"good-B\"}", 1);
    fake_ws_pull(f->eio, *id, &f->http.conns[0], out, sizeof out);
    return f;
}

/* The session was closed as a parse error; frees f. */
static void expect_parse_error(fixture_t *f) {
    assert_int_equal(f->app.disconnects, 1);
    assert_string_equal(f->app.reason, "parse error");
    fixture_free(f);
}

/* A push server (no on_event): a binary event's attachments are counted and dropped and its
 * ack id answered with the error; text before they are in, a binary message nothing waits
 * for, or a placeholder naming no attachment close the session (socket.io-parser throws). */
static void test_binary_without_handler(void **state) {
    (void)state;
    sb_eio_id_t id;
    fixture_t *f = connected_fixture(0, &id);
    void *ws = &f->http.conns[0];
    char out[256];
    fake_ws_send(f->eio, id, ws, "452-9[\"b\",{\"_placeholder\":true,\"num\":0},"
                                 "{\"_placeholder\":true,\"num\":1}]", 2);
    assert_int_equal(sb_eio_ws_frame(f->eio, id, ws, "\x01", 1, 1, 2), 0);
    assert_int_equal(fake_ws_pull(f->eio, id, ws, out, sizeof out), 0); /* one more to come */
    assert_int_equal(sb_eio_ws_frame(f->eio, id, ws, "\x02", 1, 1, 2), 0);
    assert_int_equal(fake_ws_pull(f->eio, id, ws, out, sizeof out), 1);
    assert_string_equal(out, "439[{\"error\":\"client events are not supported\"}]");
    fake_ws_send(f->eio, id, ws, "451-[\"b\",{\"_placeholder\":true,\"num\":0}]", 3);
    fake_ws_send(f->eio, id, ws, "42[\"text\"]", 3); /* text while an attachment is due */
    expect_parse_error(f);
    f = connected_fixture(0, &id);
    assert_int_equal(sb_eio_ws_frame(f->eio, id, &f->http.conns[0], "\x01", 1, 1, 2), 0);
    expect_parse_error(f); /* an attachment nothing waits for */
    f = connected_fixture(1, &id); /* "illegal attachments", as socket.io-parser */
    fake_ws_send(f->eio, id, &f->http.conns[0],
                 "451-[\"b\",{\"_placeholder\":true,\"num\":1}]", 2);
    assert_int_equal(sb_eio_ws_frame(f->eio, id, &f->http.conns[0], "\x01", 1, 1, 2), 0);
    assert_int_equal(f->app.events, 0);
    expect_parse_error(f);
}

static void test_invalid_state_closes(void **state) {
    fixture_t *f = *state;
    static const char *const connected[] = {"40{\"token\":\"good-S\"}", "42/other,[\"ev\"]",
                                            "43/other,1[]", "41/other,"};
    char out[256];
    /* before any CONNECT */
    void *ws = &f->http.conns[0];
    sb_eio_id_t id = fake_ws_session(f->eio, ws, 0);
    fake_ws_send(f->eio, id, ws, "42[\"early\"]", 1);
    assert_int_equal(f->app.events, 0);
    assert_int_equal(sb_eio_is_open(f->eio, id), 0);
    while (fake_ws_pull(f->eio, id, ws, out, sizeof out) == 1) continue; /* the open packet */
    assert_int_equal(fake_ws_pull(f->eio, id, ws, out, sizeof out), SB_EIO_CLOSE);
    /* connected to "/": a second CONNECT, or anything for another namespace */
    for (size_t i = 0; i < sizeof connected / sizeof connected[0]; i++) {
        ws = &f->http.conns[1 + i];
        id = ws_connect(f, 1 + (int)i, "40{\"token\":\"good-S\"}", out, sizeof out);
        assert_memory_equal(out, "40{\"sid\":", 9);
        fake_ws_send(f->eio, id, ws, connected[i], 2);
        assert_int_equal(sb_eio_is_open(f->eio, id), 0);
    }
    assert_int_equal(f->app.connects, 4);
    assert_int_equal(f->app.disconnects, 4);
    /* after DISCONNECT */
    ws = &f->http.conns[8];
    id = ws_connect(f, 8, "40{\"token\":\"good-S\"}", out, sizeof out);
    fake_ws_send(f->eio, id, ws, "41", 2);
    assert_int_equal(sb_eio_is_open(f->eio, id), 1);
    fake_ws_send(f->eio, id, ws, "42[\"late\"]", 3);
    assert_int_equal(sb_eio_is_open(f->eio, id), 0);
    assert_int_equal(f->app.events, 0);
}

/* socket.io-protocol, Connection to a namespace: "If the server does not receive a CONNECT
 * packet first, then it MUST close the connection immediately", whatever comes instead. */
static void test_packet_before_connect_closes(void **state) {
    fixture_t *f = *state;
    static const char *const first[] = {"42[\"early\"]", "41", "431[]", "42/x,[\"a\"]",
                                        "451-[\"b\",{\"_placeholder\":true,\"num\":0}]"};
    char out[256];
    for (size_t i = 0; i < sizeof first / sizeof first[0]; i++) {
        void *ws = &f->http.conns[i];
        sb_eio_id_t id = fake_ws_session(f->eio, ws, 0);
        fake_ws_send(f->eio, id, ws, first[i], 1);
        assert_int_equal(sb_eio_is_open(f->eio, id), 0);
        while (fake_ws_pull(f->eio, id, ws, out, sizeof out) == 1) continue; /* open packet */
        assert_int_equal(fake_ws_pull(f->eio, id, ws, out, sizeof out), SB_EIO_CLOSE);
    }
    assert_int_equal(f->app.connects, 0);
    assert_int_equal(f->app.events, 0);
}

/* socket.io-protocol, Sending and receiving data: an EVENT's payload "MUST be a non-empty
 * array. If that's not the case, then the receiver MUST close the connection"; Acknowledgement:
 * an ACK's payload "MUST be an array". Each is sent on a session connected to "/". */
static void test_event_payload_must_be_array(void **state) {
    (void)state;
    static const char *const bad[] = {"42", "42[]", "42{}", "42\"x\"", "427[]", "421",
                                      "43{}", "431", "431\"x\"", "451-{}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sb_eio_id_t id;
        fixture_t *f = connected_fixture(1, &id);
        fake_ws_send(f->eio, id, &f->http.conns[0], bad[i], 2);
        if (sb_eio_is_open(f->eio, id)) fail_msg("still open after %s", bad[i]);
        assert_int_equal(f->app.events, 0);
        expect_parse_error(f);
    }
}

static void test_garbage_closes_session(void **state) {
    fixture_t *f = *state;
    static const char *const bad[] = {"4", "49", "42", "42{}", "40\"x\"", "4\xff",
                                      "42[\"a\"]]", "41{}"};
    char out[256];
    sb_eio_id_t keep = ws_connect(f, 15, "40{\"token\":\"good-K\"}", out, sizeof out);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *ws = &f->http.conns[i];
        sb_eio_id_t id = fake_ws_session(f->eio, ws, 0);
        fake_ws_send(f->eio, id, ws, bad[i], 1);
        assert_int_equal(fake_ws_pull(f->eio, id, ws, out, sizeof out), SB_EIO_CLOSE);
        sb_eio_detach(f->eio, id, ws);
        assert_null(sb_eio_sid(f->eio, id));
    }
    assert_non_null(sb_sio_identity(f->sio, keep));
    assert_int_equal(sb_eio_count(f->eio), 1);
}

static void test_connect_timeout(void **state) {
    fixture_t *f = *state;
    void *ws = &f->http.conns[0];
    sb_eio_id_t id = fake_ws_session(f->eio, ws, 0);
    sb_eio_id_t ok = ws_connect(f, 1, "40{\"token\":\"good-T\"}", NULL, 0);
    sb_eio_tick(f->eio, 44999); /* pings both */
    fake_ws_send(f->eio, ok, &f->http.conns[1], "3", 44999);
    char out[64];
    assert_int_equal(fake_ws_pull(f->eio, id, ws, out, sizeof out), 1); /* ping */
    fake_ws_send(f->eio, id, ws, "3", 44999);
    sb_eio_tick(f->eio, 45000);
    assert_int_equal(fake_ws_pull(f->eio, id, ws, out, sizeof out), SB_EIO_CLOSE);
    assert_non_null(sb_eio_sid(f->eio, ok));
}

/* Several sockets of one user get the very same buffer; others get nothing. */
static void test_room_fanout_shares_buffer(void **state) {
    fixture_t *f = *state;
    char out[256];
    sb_eio_id_t ids[3];
    for (int i = 0; i < 3; i++) {
        ids[i] = ws_connect(f, i, "40{\"token\":\"good-U\"}", out, sizeof out);
        assert_memory_equal(out, "40", 2);
    }
    sb_eio_id_t other = ws_connect(f, 3, "40{\"token\":\"good-V\"}", out, sizeof out);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "jobId", "1731304200000-a7f3e2c1");
    cJSON_AddStringToObject(o, "status", "processing");
    assert_int_equal(sb_sio_emit_room(f->sio, "user:U", "rebalance:processing", o), 3);
    cJSON_Delete(o);
    assert_int_equal(sb_sio_emit_room(f->sio, "user:nobody", "x", NULL), 0);
    sb_eio_buf_t *got[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sb_eio_ws_pull(f->eio, ids[i], &f->http.conns[i], &got[i]), 1);
        assert_ptr_equal(got[i], got[0]);
    }
    assert_int_equal(got[0]->refs, 3);
    assert_string_equal(got[0]->data, "42[\"rebalance:processing\",{\"jobId\":"
                                      "\"1731304200000-a7f3e2c1\",\"status\":\"processing\"}]");
    for (int i = 0; i < 3; i++) sb_eio_buf_unref(got[i]);
    assert_int_equal(fake_ws_pull(f->eio, other, &f->http.conns[3], out, sizeof out), 0);
}

/* A text frame must be UTF-8: data or an event name that is not goes out repaired (U+FFFD),
 * to a room and to one socket alike, and the JSON around it is intact. */
static void test_emit_repairs_utf8(void **state) {
    fixture_t *f = *state;
    char out[256];
    sb_eio_id_t id = ws_connect(f, 0, "40{\"token\":\"good-W\"}", out, sizeof out);
    const char json[] = "{\"name\":\"Ann \xff\xe2\x82\"}";
    assert_int_equal(sb_sio_emit_room_json(f->sio, "user:W", "agent:st\xc0tus", json,
                                           sizeof json - 1), 1);
    assert_int_equal(fake_ws_pull(f->eio, id, &f->http.conns[0], out, sizeof out), 1);
    assert_string_equal(out, "42[\"agent:st\xef\xbf\xbdtus\",{\"name\":\"Ann "
                             "\xef\xbf\xbd\xef\xbf\xbd\"}]");
    assert_int_equal(sb_sio_emit_json(f->sio, id, "e", json, sizeof json - 1), 0);
    assert_int_equal(fake_ws_pull(f->eio, id, &f->http.conns[0], out, sizeof out), 1);
    assert_string_equal(out, "42[\"e\",{\"name\":\"Ann \xef\xbf\xbd\xef\xbf\xbd\"}]");
}

static void test_slow_consumer_dropped_by_room_emit(void **state) {
    (void)state;
    sb_eio_config_t cfg;
    sb_eio_config_default(&cfg);
    cfg.max_queue_packets = 16;
    fixture_t *f = fixture_new(&cfg);
    char out[256];
    sb_eio_id_t reader = ws_connect(f, 0, "40{\"token\":\"good-S\"}", out, sizeof out);
    sb_eio_id_t stuck = ws_connect(f, 1, "40{\"token\":\"good-S\"}", out, sizeof out);
    for (int i = 0; i < 40; i++) {
        int n = sb_sio_emit_room_json(f->sio, "user:S", "tick", "{}", 2);
        assert_true(n >= 1);
        while (fake_ws_pull(f->eio, reader, &f->http.conns[0], out, sizeof out) == 1) continue;
    }
    assert_int_equal(sb_rooms_size(sb_sio_rooms(f->sio), "user:S"), 1);
    assert_int_equal(fake_ws_pull(f->eio, stuck, &f->http.conns[1], out, sizeof out),
                     SB_EIO_CLOSE);
    assert_string_equal(f->app.reason, "slow consumer");
    assert_non_null(sb_sio_identity(f->sio, reader));
    fixture_free(f);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* 20k sockets in one room: one encode, 20k references; no per-socket copy. */
static void test_fanout_many(void **state) {
    fixture_t *f = *state;
    enum { N = 20000 };
    char sid[SB_EIO_SID_LEN + 1];
    const char body[] = "40{\"token\":\"good-many\"}";
    for (int i = 0; i < N; i++) {
        assert_true(fake_handshake(f->eio, 0, sid));
        assert_int_equal(fake_post(f->eio, sid, body, sizeof body - 1, 0), 200);
    }
    assert_int_equal(sb_sio_count(f->sio), N);
    double t0 = now_s();
    assert_int_equal(sb_sio_emit_room_json(f->sio, "user:many", "e", "{\"k\":1}", 7), N);
    double dt = now_s() - t0;
    printf("fan-out to %d sockets: %.2f ms\n", N, dt * 1e3);
    t0 = now_s();
    sb_eio_tick(f->eio, 1000);
    printf("tick over %d sessions: %.3f ms\n", N, (now_s() - t0) * 1e3);
    printf("per connected socket: eio %zu + sio %zu bytes\n", sb_eio_session_size(),
           sb_sio_socket_size());
}

/* ------------------------------------------------------------------ Socket.IO v2 (EIO=3) */

static int setup_v3(void **state) {
    sb_eio_config_t cfg;
    sb_eio_config_default(&cfg);
    cfg.allow_eio3 = 1;
    *state = fixture_new(&cfg);
    return 0;
}

/* An Engine.IO v3 WebSocket session on conns[i], its open packet pulled. */
static sb_eio_id_t ws_session3(fixture_t *f, int i) {
    sb_eio_req_t req = fake_req(SB_EIO_GET, "websocket", NULL);
    req.eio = "3";
    sb_eio_reply_t r;
    char open[256];
    assert_int_equal(sb_eio_http(f->eio, &req, &f->http.conns[i], 0, &r), 101);
    assert_int_equal(fake_ws_pull(f->eio, r.id, &f->http.conns[i], open, sizeof open), 1);
    return r.id;
}

/* A v3 session on conns[0] connected (or refused) with the handshake's token; the answer
 * pulled into out. */
static sb_eio_id_t v2_connect(fixture_t *f, const char *token, char *out, size_t n) {
    sb_eio_id_t id = ws_session3(f, 0);
    assert_int_equal(sb_sio_connect_v2(f->sio, id, token), 0);
    assert_int_equal(fake_ws_pull(f->eio, id, &f->http.conns[0], out, n), 1);
    return id;
}

static void test_v2_connect_with_handshake_token(void **state) {
    fixture_t *f = *state;
    char out[256];
    sb_eio_id_t id = v2_connect(f, "good-PK2", out, sizeof out);
    assert_string_equal(out, "40"); /* protocol rev 4: no sid payload */
    assert_int_equal(f->app.connects, 1);
    assert_int_equal(sb_rooms_size(sb_sio_rooms(f->sio), "user:PK2"), 1);
    assert_non_null(sb_sio_sid(f->sio, id));
    assert_int_equal(sb_sio_connect_v2(f->sio, id, "good-PK3"), SB_EINVAL); /* connected */
    assert_int_equal(sb_sio_emit_room_json(f->sio, "user:PK2", "rebalance:done", "{}", 2), 1);
    assert_int_equal(fake_ws_pull(f->eio, id, &f->http.conns[0], out, sizeof out), 1);
    assert_string_equal(out, "42[\"rebalance:done\",{}]");
    /* the connect timeout was cleared (the client's ping keeps the v3 session alive) */
    assert_int_equal(fake_ws_send(f->eio, id, &f->http.conns[0], "2", 40000), 0);
    sb_eio_tick(f->eio, 45000 + 1);
    assert_int_equal(sb_eio_is_open(f->eio, id), 1);
}

static void test_v2_refused_with_v2_error_packet(void **state) {
    fixture_t *f = *state;
    char out[256];
    sb_eio_id_t id = v2_connect(f, "forged", out, sizeof out);
    assert_string_equal(out, "44\"invalid \\\"token\\\"\""); /* a JSON string, not an object */
    assert_null(sb_sio_identity(f->sio, id));
    assert_int_equal(sb_rooms_count(sb_sio_rooms(f->sio)), 0);
    /* a v2 session authenticates at the handshake only: a CONNECT's auth payload is not read */
    assert_int_equal(fake_ws_send(f->eio, id, &f->http.conns[0], "40{\"token\":\"good-K\"}", 1),
                     0);
    assert_int_equal(fake_ws_pull(f->eio, id, &f->http.conns[0], out, sizeof out), 1);
    assert_string_equal(out, "44\"missing token\"");
    assert_int_equal(fake_ws_send(f->eio, id, &f->http.conns[0], "40/admin,", 2), 0);
    assert_int_equal(fake_ws_pull(f->eio, id, &f->http.conns[0], out, sizeof out), 1);
    assert_string_equal(out, "44/admin,\"Invalid namespace\"");
    assert_int_equal(f->app.connects, 0);
    /* never connected: the connect timeout closes it */
    sb_eio_tick(f->eio, 45000);
    assert_int_equal(sb_eio_is_open(f->eio, id), 0);
}

static void test_v2_query_token_never_for_v4(void **state) {
    fixture_t *f = *state;
    char out[256];
    void *ws = &f->http.conns[0];
    sb_eio_id_t id = fake_ws_session(f->eio, ws, 0);
    assert_int_equal(sb_sio_connect_v2(f->sio, id, "good-PK4"), SB_EINVAL);
    assert_int_equal(fake_ws_pull(f->eio, id, ws, out, sizeof out), 0); /* nothing sent */
    assert_null(sb_sio_identity(f->sio, id));
    assert_int_equal(sb_sio_connect_v2(f->sio, 12345, "good-PK4"), SB_EINVAL); /* stale */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_valid),
        cmocka_unit_test(test_decode_invalid),
        cmocka_unit_test(test_encode),
        cmocka_unit_test_setup_teardown(test_connect_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_over_polling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_events_and_disconnect, setup, teardown),
        cmocka_unit_test(test_namespaces_and_binary),
        cmocka_unit_test(test_binary_without_handler),
        cmocka_unit_test_setup_teardown(test_invalid_state_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_closes_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_packet_before_connect_closes, setup, teardown),
        cmocka_unit_test(test_event_payload_must_be_array),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_fanout_shares_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emit_repairs_utf8, setup, teardown),
        cmocka_unit_test(test_slow_consumer_dropped_by_room_emit),
        cmocka_unit_test_setup_teardown(test_fanout_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v2_connect_with_handshake_token, setup_v3,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_v2_refused_with_v2_error_packet, setup_v3,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_v2_query_token_never_for_v4, setup_v3, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
