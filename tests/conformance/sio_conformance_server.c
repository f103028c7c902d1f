/* sio-conformance-server: the server the official protocol test suites are written against
 * (socketio/engine.io-protocol and socketio/socket.io-protocol, directory test-suite/; see
 * run-official.sh), built from the gateway's own HTTP layer (http.c) and Engine.IO /
 * Socket.IO core (socketio/): it has no protocol code of its own, only the suites' handlers.
 *
 *   /engine.io/  plain Engine.IO: every message is echoed (text as text, binary as binary)
 *   /socket.io/  Socket.IO with namespaces "/" and "/custom": on connect each emits "auth"
 *                with the CONNECT's auth payload ({} when none); "message" is answered with
 *                "message-back" and the same arguments, "message-with-ack" with an ack of
 *                them, binary attachments included; other namespaces are refused
 *
 * Both with pingInterval 300 ms, pingTimeout 200 ms and maxPayload 1000000, as the suites
 * expect. Usage: sio-conformance-server [--port N] (default 3000, 0: a free port). It prints
 * "listening on PORT" once it listens, answers 404 elsewhere, and stops on SIGINT / SIGTERM.
 * Test-only (tests/CMakeLists.txt): the gateway itself is a push server that serves none of
 * these handlers. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libwebsockets.h>
#include <uv.h>

#include "gateway/gateway.h"
#include "gateway/http.h"
#include "gateway/socketio/socketio.h"
#include "switchboard/error.h"
#include "switchboard/fmt.h"
#include "switchboard/json.h"

#define CONF_DEFAULT_PORT 3000
#define CONF_AUTH_DELAY_MS 50 /* see conf_auth_emit_t */

typedef struct conf {
    sb_gateway_t gw;
    sb_socketio_t *engine; /* /engine.io/ */
    sb_socketio_t *sio;    /* /socket.io/ */
    uv_signal_t sigint, sigterm;
} conf_t;

/* ================================================================ /engine.io/: echo */

static void conf_echo(void *ud, sb_eio_id_t id, const char *data, size_t len, int binary,
                      int64_t now) {
    (void)now;
    sb_eio_server_t *eio = sb_socketio_eio(((conf_t *)ud)->engine);
    if (binary) sb_eio_send_binary(eio, id, data, len);
    else sb_eio_send_text(eio, id, data, len);
}

/* ================================================================ /socket.io/ */

/* Everyone is let in (the suites send no token, or one to be echoed). */
static int conf_auth(void *ud, const char *token, sb_sio_identity_t *who, char *err,
                     size_t errlen) {
    (void)ud, (void)token, (void)err, (void)errlen;
    snprintf(who->public_key, sizeof who->public_key, "conformance");
    snprintf(who->role, sizeof who->role, "user");
    return 0;
}

/* Sends [head, args...] (head NULL: [args...]) as an event or an ack, attachments along. */
static void conf_send(conf_t *c, sb_eio_id_t id, const char *nsp, int type, int64_t ack_id,
                      const char *head, cJSON *args, const sb_sio_attachment_t *att, int natt) {
    if (head) cJSON_InsertItemInArray(args, 0, cJSON_CreateString(head));
    char *json = sb_json_print(args);
    if (json) sb_sio_send(sb_socketio_sio(c->sio), id, nsp, type, ack_id, json, strlen(json),
                          att, natt);
    free(json);
}

/* The "auth" event of a socket that just connected, sent CONF_AUTH_DELAY_MS after its
 * CONNECT reply. The suite waits for one message at a time, and its client (ws 8.5) emits
 * every frame of one read at once: when the CONNECT reply and the event arrive in the same
 * read, the test misses the event. The reference server writes them back to back and loses
 * that race now and then (its 26-30/32); the delay makes the frames reach the client in two
 * reads. It changes nothing else: the event is the one the reference emits. */
typedef struct conf_auth_emit {
    uv_timer_t timer;
    conf_t *c;
    sb_eio_id_t id;
    const char *nsp; /* "/" or a conf_namespaces entry (static) */
    cJSON *args;     /* ["auth", <the CONNECT's auth or {}>] */
} conf_auth_emit_t;

static void conf_auth_free(uv_handle_t *h) {
    conf_auth_emit_t *e = h->data;
    cJSON_Delete(e->args);
    free(e);
}

static void conf_auth_due(uv_timer_t *t) {
    conf_auth_emit_t *e = t->data;
    conf_send(e->c, e->id, e->nsp, SB_SIO_EVENT, -1, NULL, e->args, NULL, 0);
    uv_close((uv_handle_t *)t, conf_auth_free);
}

static void conf_on_connect(void *ud, sb_eio_id_t id, const char *nsp,
                            const sb_sio_identity_t *who, const cJSON *auth) {
    (void)who;
    conf_t *c = ud;
    conf_auth_emit_t *e = calloc(1, sizeof *e);
    cJSON *args = cJSON_CreateArray(), *name = cJSON_CreateString("auth");
    cJSON *copy = auth ? cJSON_Duplicate(auth, 1) : cJSON_CreateObject();
    if (!e || !args || !name || !copy) { /* out of memory: no event */
        free(e);
        cJSON_Delete(args);
        cJSON_Delete(name);
        cJSON_Delete(copy);
        return;
    }
    cJSON_AddItemToArray(args, name);
    cJSON_AddItemToArray(args, copy);
    *e = (conf_auth_emit_t){.c = c, .id = id, .nsp = nsp, .args = args};
    uv_timer_init(c->gw.loop, &e->timer);
    e->timer.data = e;
    uv_timer_start(&e->timer, conf_auth_due, CONF_AUTH_DELAY_MS, 0);
}

static void conf_on_event(void *ud, sb_eio_id_t id, const sb_sio_event_t *ev) {
    int back = strcmp(ev->name, "message") == 0;
    int ack = strcmp(ev->name, "message-with-ack") == 0 && ev->ack_id >= 0;
    if (!back && !ack) return;
    cJSON *args = cJSON_Duplicate(ev->args, 1);
    if (!args) return;
    cJSON_DeleteItemFromArray(args, 0); /* the name */
    if (back)
        conf_send(ud, id, ev->nsp, SB_SIO_EVENT, -1, "message-back", args, ev->attachments,
                  ev->natt);
    else
        conf_send(ud, id, ev->nsp, SB_SIO_ACK, ev->ack_id, NULL, args, ev->attachments,
                  ev->natt);
    cJSON_Delete(args);
}

/* ================================================================ HTTP elsewhere */

/* http.c hands every request outside the Engine.IO paths to the gateway's routes; here there
 * are none. */
void sb_api_dispatch(sb_req_t *req) {
    sb_req_error(req, 404, "not_found", "only /engine.io/ and /socket.io/ are served here");
}

/* ================================================================ life cycle */

static const char *const conf_namespaces[] = {"/custom", NULL};

static int conf_endpoints(conf_t *c) {
    sb_socketio_opts_t o = {.path = "/engine.io/"};
    sb_eio_config_default(&o.eio);
    o.eio.ping_interval_ms = 300;
    o.eio.ping_timeout_ms = 200;
    o.burst = 1; /* one packet a write, as engine.io (see sb_socketio_opts_t) */
    sb_eio_app_cb_t echo = {.on_message = conf_echo, .ud = c};
    o.app = &echo;
    c->engine = sb_socketio_create_with(&c->gw, &o);
    sb_sio_callbacks_t cb = {.auth = conf_auth, .on_connect = conf_on_connect,
                             .on_event = conf_on_event, .ud = c};
    sb_sio_config_t sio_cfg = {.connect_timeout_ms = 1000, .namespaces = conf_namespaces};
    o.path = "/socket.io/";
    o.app = NULL;
    o.sio = &cb;
    o.sio_cfg = &sio_cfg;
    c->sio = c->engine ? sb_socketio_create_with(&c->gw, &o) : NULL;
    return c->sio ? 0 : -1;
}

static void conf_stop(uv_signal_t *h, int signum) {
    (void)signum;
    conf_t *c = h->data;
    if (c->gw.stopping) return;
    c->gw.stopping = 1;
    sb_socketio_stop(c->engine);
    sb_socketio_stop(c->sio);
    lws_context_destroy(c->gw.lws); /* first stage; lws finishes after its handles close */
    uv_close((uv_handle_t *)&c->gw.io_begin, NULL);
    uv_close((uv_handle_t *)&c->gw.io_end, NULL);
    uv_close((uv_handle_t *)&c->sigint, NULL);
    uv_close((uv_handle_t *)&c->sigterm, NULL);
}

static int conf_args(int argc, char **argv, int *port) {
    long v = CONF_DEFAULT_PORT;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc &&
            sb_fmt_parse_long(argv[++i], 0, 65535, &v) == SB_OK)
            continue;
        fprintf(stderr, "usage: sio-conformance-server [--port N]   (default %d; 0: a free "
                "port)\n", CONF_DEFAULT_PORT);
        return strcmp(argv[i], "--help") == 0 ? 1 : 2;
    }
    *port = (int)v;
    return 0;
}

int main(int argc, char **argv) {
    static char loopback[] = "127.0.0.1";
    sb_config_t cfg;
    conf_t c;
    uv_loop_t loop;
    int port, rc = conf_args(argc, argv, &port);
    if (rc) return rc == 1 ? 0 : 2;
    memset(&cfg, 0, sizeof cfg);
    memset(&c, 0, sizeof c);
    cfg.port = port;
    cfg.bind = loopback;
    signal(SIGPIPE, SIG_IGN);
    lws_set_log_level(LLL_ERR, NULL);
    uv_loop_init(&loop);
    c.gw.cfg = &cfg;
    c.gw.loop = &loop;
    if (conf_endpoints(&c) != 0 || !(c.gw.lws = sb_gateway_lws_create(&c.gw, &port)) ||
        port < 0) {
        fprintf(stderr, "sio-conformance-server: cannot listen on 127.0.0.1:%d\n", cfg.port);
        return 1;
    }
    sb_gateway_io_watch(&c.gw);
    uv_signal_init(&loop, &c.sigint);
    uv_signal_init(&loop, &c.sigterm);
    c.sigint.data = c.sigterm.data = &c;
    uv_signal_start(&c.sigint, conf_stop, SIGINT);
    uv_signal_start(&c.sigterm, conf_stop, SIGTERM);
    printf("listening on %d\n", port);
    fflush(stdout);
    uv_run(&loop, UV_RUN_DEFAULT);
    lws_context_destroy(c.gw.lws); /* foreign loop: completes the destroy started on a signal */
    uv_run(&loop, UV_RUN_DEFAULT);
    sb_socketio_free(c.sio);
    sb_socketio_free(c.engine);
    return uv_loop_close(&loop) == 0 ? 0 : 1;
}
