/* libFuzzer target for the Engine.IO / Socket.IO input paths.
 *
 * Each input is used twice: whole, by the pure decoders (payload split, v3 payload split,
 * Engine.IO packet, Socket.IO packet); then as a script that drives a fresh server (eio + sio):
 * a sequence of records `op len bytes...` where op picks an action (POST a body, send a
 * WebSocket frame, GET / pull, attach a probe, detach, advance the fake clock, emit to a room,
 * close, a v4 or v3 handshake). It must never crash, leak or trip a sanitizer, whatever the
 * bytes.
 *
 * Build: cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DSB_FUZZ=ON
 * Run:   build-fuzz/tests/fuzz/fuzz_eio -max_total_time=60 tests/fuzz/corpus/eio */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gateway/socketio/eio.h"
#include "gateway/socketio/sio.h"

typedef struct world {
    sb_eio_server_t *eio;
    sb_sio_t *sio;
    sb_eio_id_t poll_id, ws_id;
    char sid[SB_EIO_SID_LEN + 1];
    char conns[4];
    int64_t now;
} world_t;

static void no_wake(void *ud, void *conn) { (void)ud, (void)conn; }

static int auth(void *ud, const char *token, sb_sio_identity_t *who, char *err, size_t n) {
    (void)ud;
    if (!token || strncmp(token, "ok", 2) != 0) {
        strncpy(err, "no", n - 1);
        return -1;
    }
    strncpy(who->public_key, token, sizeof who->public_key - 1);
    strncpy(who->role, token[2] == 'a' ? "admin" : "user", sizeof who->role - 1);
    return 0;
}

static int count_pkt(void *ud, const char *pkt, size_t n) {
    sb_eio_packet_t p;
    (*(size_t *)ud) += sb_eio_decode_packet(pkt, n, &p) == 0;
    return 0;
}

static int count_pkt3(void *ud, const char *pkt, size_t n, int binary) {
    sb_eio_packet_t p;
    (*(size_t *)ud) += sb_eio_decode_packet3(pkt, n, binary, &p) == 0;
    return 0;
}

static void decoders(const uint8_t *data, size_t size) {
    const char *s = (const char *)data;
    size_t n = 0;
    sb_eio_split_payload(s, size, count_pkt, &n);
    sb_eio_split_payload3(s, size, count_pkt3, &n);
    sb_sio_packet_t p;
    if (sb_sio_decode(s, size, &p) == 0) sb_sio_packet_close(&p);
}

static void reply_done(sb_eio_reply_t *r) { sb_eio_buf_unref(r->body); }

/* v3: an Engine.IO v3 session (allow_eio3), connected to "/" with token "ok" as the HTTP layer
 * does for socket.io-client v2. */
static void op_handshake(world_t *w, int websocket, int v3) {
    sb_eio_req_t req = {.method = SB_EIO_GET, .eio = v3 ? "3" : "4",
                        .transport = websocket ? "websocket" : "polling", .websocket = websocket};
    sb_eio_reply_t r;
    sb_eio_http(w->eio, &req, websocket ? &w->conns[1] : NULL, w->now, &r);
    if (v3 && r.id) sb_sio_connect_v2(w->sio, r.id, "ok");
    if (websocket) w->ws_id = r.id;
    else if (r.id) {
        w->poll_id = r.id;
        memcpy(w->sid, sb_eio_sid(w->eio, r.id), SB_EIO_SID_LEN + 1);
    }
    reply_done(&r);
}

static void op_request(world_t *w, int method, int websocket, const char *body, size_t len) {
    sb_eio_req_t req = {.method = method, .eio = "4", .sid = w->sid, .body = body,
                        .body_len = len, .transport = websocket ? "websocket" : "polling",
                        .websocket = websocket};
    sb_eio_reply_t r;
    sb_eio_http(w->eio, &req, websocket ? &w->conns[2] : &w->conns[0], w->now, &r);
    reply_done(&r);
}

static void op_pull(world_t *w) {
    sb_eio_reply_t r;
    if (sb_eio_poll_pull(w->eio, w->poll_id, &w->conns[0], &r)) reply_done(&r);
    sb_eio_buf_t *b;
    for (int i = 1; i <= 2; i++) {
        sb_eio_id_t id = i == 1 ? w->ws_id : w->poll_id;
        while (sb_eio_ws_pull(w->eio, id, &w->conns[i], &b) == 1) sb_eio_buf_unref(b);
    }
}

static void run_op(world_t *w, uint8_t op, const char *arg, size_t len) {
    switch (op % 12) {
    case 0: op_request(w, SB_EIO_POST, 0, arg, len); break;
    case 1: sb_eio_ws_frame(w->eio, w->ws_id, &w->conns[1], arg, len, op & 0x10, w->now); break;
    case 2: sb_eio_ws_frame(w->eio, w->poll_id, &w->conns[2], arg, len, 0, w->now); break;
    case 3: op_request(w, SB_EIO_GET, 0, NULL, 0); break;
    case 4: op_request(w, SB_EIO_GET, 1, NULL, 0); break;
    case 5: op_pull(w); break;
    case 6: sb_eio_detach(w->eio, w->poll_id, &w->conns[op & 0x10 ? 2 : 0]); break;
    case 7: sb_eio_detach(w->eio, w->ws_id, &w->conns[1]); break;
    case 8: w->now += (int64_t)len * 1000; sb_eio_tick(w->eio, w->now); break;
    case 9: sb_sio_emit_room_json(w->sio, op & 0x10 ? "admins" : "user:ok", "e", "{}", 2); break;
    case 10: op_handshake(w, op & 0x10, op & 0x40); break;
    default: sb_eio_close(w->eio, op & 0x10 ? w->ws_id : w->poll_id, op & 0x20, "fuzz"); break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    decoders(data, size);

    sb_eio_config_t cfg;
    sb_eio_config_default(&cfg);
    cfg.max_payload = 4096;
    cfg.max_queue_packets = 8;
    cfg.max_queue_bytes = 2048;
    cfg.allow_eio3 = 1;
    world_t w = {.now = 0};
    sb_eio_io_cb_t io = {no_wake, NULL};
    w.eio = sb_eio_create(&cfg, &io);
    sb_sio_callbacks_t cb = {.auth = auth};
    w.sio = sb_sio_create(w.eio, &cb, NULL);
    op_handshake(&w, 0, 0);
    op_handshake(&w, 1, 0);
    size_t i = 0;
    while (i + 2 <= size) {
        uint8_t op = data[i], len = data[i + 1];
        i += 2;
        size_t n = len <= size - i ? len : size - i;
        run_op(&w, op, (const char *)data + i, n);
        i += n;
    }
    sb_sio_free(w.sio);
    sb_eio_free(w.eio);
    return 0;
}
