/* The gateway's asynchronous Redis modules on a real libuv loop against a real redis-server:
 * aredis (connect, a command round trip, a lost connection and the reconnection with its
 * on-up hooks, hooks removed while they run or after the connection closed), the subscriber
 * (SUBSCRIBE delivery of status messages and watched channels, watches ended while messages
 * are in flight, resubscription after a lost connection) and the presence watch freed while
 * its subscriber lives on. Every test runs its own loop, waits on events (a counter reaching
 * a value, with a 10 s guard) and ends with uv_loop_close(loop) == 0: nothing leaked a handle.
 * Under ASan a callback reaching a freed owner fails the test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "gateway/aredis.h"
#include "gateway/gateway.h"
#include "gateway/presence_watch.h"
#include "gateway/socketio/socketio.h"
#include "gateway/subscriber.h"
#include "sb_test_redis.h"
#include "switchboard/switchboard.h"

static sb_test_redis_t srv;

/* ---- a loop that runs until a counter reaches a value ----------------------------------- */

typedef struct {
    uv_loop_t loop;
    uv_timer_t guard; /* fails a wait that takes more than 10 s */
    int expired;
} tloop_t;

static void guard_cb(uv_timer_t *t) { ((tloop_t *)t->data)->expired = 1; }

static void tloop_init(tloop_t *t) {
    memset(t, 0, sizeof *t);
    assert_int_equal(uv_loop_init(&t->loop), 0);
    uv_timer_init(&t->loop, &t->guard);
    t->guard.data = t;
}

/* Runs the loop until *counter >= want. */
static void run_until(tloop_t *t, const int *counter, int want) {
    t->expired = 0;
    uv_timer_start(&t->guard, guard_cb, 10000, 0);
    while (*counter < want && !t->expired) uv_run(&t->loop, UV_RUN_ONCE);
    uv_timer_stop(&t->guard);
    assert_false(t->expired);
}

/* Lets every closing handle finish and checks that none is left. */
static void tloop_close(tloop_t *t) {
    uv_close((uv_handle_t *)&t->guard, NULL);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&t->loop), 0);
}

static sb_redis_t *client(void) {
    sb_redis_t *r = sb_test_redis_client(&srv);
    assert_non_null(r);
    return r;
}

/* Runs a command on a blocking client and returns its integer reply. */
static long long int_cmd(const char *fmt, const char *a, const char *b) {
    sb_redis_t *r = client();
    redisReply *rep = sb_redis_cmd(r, fmt, a, b);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    long long v = rep->integer;
    freeReplyObject(rep);
    sb_redis_free(r);
    return v;
}

/* Closes the connections of every client of that type (normal, pubsub) but the caller's. */
static void client_kill(const char *type) {
    assert_true(int_cmd("CLIENT KILL TYPE %s SKIPME %s", type, "yes") >= 1);
}

/* ---- aredis ------------------------------------------------------------------------------ */

typedef struct {
    int runs;      /* times the hook ran */
    int order;     /* value of seq when it last ran */
    int *seq;      /* shared sequence counter */
    sb_aredis_hook_t hook;
    sb_aredis_hook_t *remove; /* a hook this one removes when it runs (may be itself) */
} hook_t;

static void hook_fn(void *ud) {
    hook_t *h = ud;
    h->runs++;
    h->order = ++*h->seq;
    if (h->remove) sb_aredis_on_up_remove(h->remove);
}

typedef struct {
    int calls;
    int nulls;
    char last[64];
} reply_t;

static void reply_cb(redisReply *reply, void *priv) {
    reply_t *r = priv;
    r->calls++;
    if (!reply) {
        r->nulls++;
        return;
    }
    snprintf(r->last, sizeof r->last, "%s", reply->str ? reply->str : "");
}

static void send_cmds(sb_aredis_t *ar, const char *cmd1, const char *cmd2, reply_t *r) {
    sb_batch_t *b = sb_batch_create();
    assert_non_null(b);
    assert_int_equal(sb_batch_add(b, cmd1), SB_OK);
    if (cmd2) assert_int_equal(sb_batch_add(b, cmd2), SB_OK);
    assert_int_equal(sb_aredis_send(ar, b, reply_cb, r), SB_OK);
    sb_batch_free(b);
}

static void test_aredis_round_trip(void **state) {
    (void)state;
    tloop_t t;
    tloop_init(&t);
    int seq = 0;
    hook_t up = {.seq = &seq};
    sb_aredis_t *ar = sb_aredis_create(&t.loop, &srv.addr, "test");
    assert_non_null(ar);
    sb_aredis_on_up(ar, &up.hook, hook_fn, &up);
    sb_batch_t *b = sb_batch_create();
    assert_int_equal(sb_batch_add(b, "PING"), SB_OK);
    assert_int_equal(sb_aredis_send(ar, b, reply_cb, NULL), SB_EREDIS); /* not connected yet */
    sb_batch_free(b);
    run_until(&t, &up.runs, 1);
    assert_true(sb_aredis_up(ar));
    reply_t r = {0};
    send_cmds(ar, "SET aredis:k hello", "GET aredis:k", &r);
    run_until(&t, &r.calls, 1);
    assert_int_equal(r.nulls, 0);
    assert_string_equal(r.last, "hello"); /* the batch's last reply */
    assert_int_equal(sb_aredis_reconnects(ar), 0);
    sb_aredis_close(ar);
    sb_aredis_on_up_remove(&up.hook); /* after close: a no-op */
    tloop_close(&t);
    assert_int_equal(up.runs, 1);
}

/* CLIENT KILL drops the connection with a command in flight: its callback gets NULL, the
 * client reconnects by itself and runs its on-up hooks again, in the order they were added. */
static void test_aredis_reconnect_runs_hooks(void **state) {
    (void)state;
    tloop_t t;
    tloop_init(&t);
    int seq = 0;
    hook_t h[6];
    sb_aredis_t *ar = sb_aredis_create(&t.loop, &srv.addr, "test");
    for (int i = 0; i < 6; i++) { /* more than the 4 slots the hooks once had */
        h[i] = (hook_t){.seq = &seq};
        sb_aredis_on_up(ar, &h[i].hook, hook_fn, &h[i]);
    }
    run_until(&t, &h[5].runs, 1);
    for (int i = 0; i < 6; i++) assert_int_equal(h[i].order, i + 1);
    reply_t r = {0};
    send_cmds(ar, "BLPOP aredis:never 0", NULL, &r); /* never answered */
    uv_run(&t.loop, UV_RUN_NOWAIT);                 /* written */
    client_kill("normal");
    run_until(&t, &r.calls, 1);
    assert_int_equal(r.nulls, 1);
    run_until(&t, &h[5].runs, 2);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(h[i].runs, 2);
        assert_int_equal(h[i].order, 7 + i);
    }
    assert_true(sb_aredis_up(ar));
    assert_int_equal(sb_aredis_reconnects(ar), 1);
    reply_t r2 = {0};
    send_cmds(ar, "ECHO back", NULL, &r2);
    run_until(&t, &r2.calls, 1);
    assert_string_equal(r2.last, "back");
    sb_aredis_close(ar);
    tloop_close(&t);
}

/* The server itself dies (SIGKILL) and comes back on the same socket: the hooks run again;
 * hooks removed while the hooks run (itself, the next one) are skipped from then on. */
static void test_aredis_server_restart(void **state) {
    (void)state;
    tloop_t t;
    tloop_init(&t);
    int seq = 0;
    hook_t a = {.seq = &seq}, b = {.seq = &seq}, c = {.seq = &seq};
    sb_aredis_t *ar = sb_aredis_create(&t.loop, &srv.addr, "test");
    sb_aredis_on_up(ar, &a.hook, hook_fn, &a);
    sb_aredis_on_up(ar, &b.hook, hook_fn, &b);
    sb_aredis_on_up(ar, &c.hook, hook_fn, &c);
    run_until(&t, &c.runs, 1);
    a.remove = &b.hook; /* next time: a removes b (the next to run), c removes itself */
    c.remove = &c.hook;
    assert_int_equal(sb_test_redis_restart(&srv), 0);
    run_until(&t, &c.runs, 2);
    assert_int_equal(a.runs, 2);
    assert_int_equal(b.runs, 1);
    assert_int_equal(sb_aredis_reconnects(ar), 1);
    assert_int_equal(sb_test_redis_restart(&srv), 0);
    run_until(&t, &a.runs, 3);
    assert_int_equal(b.runs, 1);
    assert_int_equal(c.runs, 2);
    sb_aredis_close(ar);
    sb_aredis_on_up_remove(&a.hook);
    tloop_close(&t);
}

/* ---- subscriber -------------------------------------------------------------------------- */

static int deny_auth(void *ud, const char *token, sb_sio_identity_t *who, char *err,
                     size_t errlen) {
    (void)ud, (void)token, (void)who;
    snprintf(err, errlen, "no");
    return SB_EINVAL;
}

typedef struct {
    sb_eio_server_t *eio;
    sb_sio_t *sio;
    sb_subscriber_t *sub;
    int gaps;     /* on_gap calls: the subscription is confirmed */
    int statuses; /* on_status calls: a status message was forwarded */
    char last_job[64];
} subfix_t;

static void on_gap(void *ud, int64_t since_ms) {
    subfix_t *f = ud;
    assert_true(since_ms <= sb_now_ms());
    f->gaps++;
}

static void on_status(void *ud, const char *user_id, const char *job_id) {
    subfix_t *f = ud;
    assert_string_equal(user_id, "user1");
    snprintf(f->last_job, sizeof f->last_job, "%s", job_id);
    f->statuses++;
}

static void subfix_open(subfix_t *f, tloop_t *t) {
    memset(f, 0, sizeof *f);
    sb_sio_callbacks_t cb = {.auth = deny_auth, .ud = f};
    f->eio = sb_eio_create(NULL, NULL);
    f->sio = sb_sio_create(f->eio, &cb, NULL);
    f->sub = sb_subscriber_create(&t->loop, &srv.addr, "t1", f->sio);
    assert_non_null(f->sub);
    sb_subscriber_on_gap(f->sub, on_gap, f);
    sb_subscriber_on_status(f->sub, on_status, f);
}

static void subfix_close(subfix_t *f) {
    sb_subscriber_close(f->sub);
    sb_sio_free(f->sio);
    sb_eio_free(f->eio);
}

static void publish_status(const char *job_id) {
    char msg[160];
    snprintf(msg, sizeof msg, "{\"jobId\":\"%s\",\"status\":\"processing\",\"userId\":\"user1\"}",
             job_id);
    assert_int_equal(int_cmd("PUBLISH %s %s", "agent:t1:status", msg), 1);
}

typedef struct {
    int calls;
    char last[64];
    sb_subscriber_watch_t w;
} watcher_t;

static void watch_fn(void *ud, const redisReply *msg) {
    watcher_t *w = ud;
    w->calls++;
    snprintf(w->last, sizeof w->last, "%s", msg->element[2]->str);
}

static void test_subscriber_delivers(void **state) {
    (void)state;
    tloop_t t;
    tloop_init(&t);
    subfix_t f;
    subfix_open(&f, &t);
    watcher_t *w[6];
    char channels[6][16];
    for (int i = 0; i < 6; i++) { /* more than the 4 slots the watches once had */
        w[i] = calloc(1, sizeof *w[i]);
        snprintf(channels[i], sizeof channels[i], "watch:%d", i);
        sb_subscriber_watch(f.sub, &w[i]->w, channels[i], watch_fn, w[i]);
    }
    run_until(&t, &f.gaps, 1); /* subscribed to everything in one command */
    publish_status("job-1");
    run_until(&t, &f.statuses, 1);
    assert_string_equal(f.last_job, "job-1");
    assert_int_equal(sb_subscriber_stats(f.sub)->forwarded, 1);
    for (int i = 0; i < 6; i++) assert_int_equal(int_cmd("PUBLISH %s %s", channels[i], "hi"), 1);
    run_until(&t, &w[5]->calls, 1);
    for (int i = 0; i < 6; i++) assert_string_equal(w[i]->last, "hi");
    /* watch 2 ends and its owner is freed while a message for it is on its way */
    assert_int_equal(int_cmd("PUBLISH %s %s", channels[2], "late"), 1);
    sb_subscriber_unwatch(&w[2]->w);
    sb_subscriber_unwatch(&w[2]->w); /* idempotent */
    free(w[2]);
    w[2] = NULL;
    /* UNSUBSCRIBE is written now, so redis reads it before the next client's command: nobody
     * else listens to the channel */
    uv_run(&t.loop, UV_RUN_NOWAIT);
    assert_int_equal(int_cmd("PUBLISH %s %s", channels[2], "gone"), 0);
    publish_status("job-2"); /* after "late" on the same connection */
    run_until(&t, &f.statuses, 2);
    /* a watch added while connected is subscribed at once */
    watcher_t *late = calloc(1, sizeof *late);
    sb_subscriber_watch(f.sub, &late->w, "watch:late", watch_fn, late);
    uv_run(&t.loop, UV_RUN_NOWAIT);
    assert_int_equal(int_cmd("PUBLISH %s %s", "watch:late", "yes"), 1);
    run_until(&t, &late->calls, 1);
    subfix_close(&f);
    for (int i = 0; i < 6; i++) {
        if (w[i]) sb_subscriber_unwatch(&w[i]->w); /* after close: a no-op */
        free(w[i]);
    }
    sb_subscriber_unwatch(&late->w);
    free(late);
    tloop_close(&t);
}

/* The SUBSCRIBE connection is killed: the subscriber reconnects, subscribes again to the
 * status channels and the watched ones, and reports the gap. */
static void test_subscriber_resubscribes(void **state) {
    (void)state;
    tloop_t t;
    tloop_init(&t);
    subfix_t f;
    subfix_open(&f, &t);
    watcher_t w = {0};
    sb_subscriber_watch(f.sub, &w.w, "watch:x", watch_fn, &w);
    run_until(&t, &f.gaps, 1);
    client_kill("pubsub");
    run_until(&t, &f.gaps, 2);
    assert_true(sb_subscriber_up(f.sub));
    assert_int_equal(sb_subscriber_reconnects(f.sub), 1);
    publish_status("job-3");
    assert_int_equal(int_cmd("PUBLISH %s %s", "watch:x", "again"), 1);
    run_until(&t, &w.calls, 1);
    assert_int_equal(f.statuses, 1);
    assert_string_equal(w.last, "again");
    sb_subscriber_unwatch(&w.w);
    subfix_close(&f);
    tloop_close(&t);
}

/* ---- presence watch ---------------------------------------------------------------------- */

/* The presence watch is stopped and freed while the subscriber it watched through lives on
 * (its watches must end with it), then a presence event arrives on its channel. */
static void test_presence_watch_freed_before_subscriber(void **state) {
    (void)state;
    tloop_t t;
    tloop_init(&t);
    sb_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.redis = srv.addr;
    cfg.job_types = "t1";
    sb_gateway_t gw;
    memset(&gw, 0, sizeof gw);
    gw.cfg = &cfg;
    gw.loop = &t.loop;
    sb_presence_init(&gw.presence, 30, 1);
    gw.redis = sb_aredis_create(&t.loop, &srv.addr, "commands");
    gw.sio = sb_socketio_create(&gw);
    assert_non_null(gw.sio);
    gw.presence_watch = sb_presence_watch_create(&gw);
    assert_non_null(gw.presence_watch);
    subfix_t f = {0}; /* only its counters: the subscriber is socketio's */
    sb_subscriber_t *sub = sb_socketio_subscriber(gw.sio);
    sb_subscriber_on_gap(sub, on_gap, &f);
    watcher_t sync = {0}; /* a marker after the presence event on the same connection */
    sb_subscriber_watch(sub, &sync.w, "watch:sync", watch_fn, &sync);
    run_until(&t, &f.gaps, 1); /* agent:presence is subscribed too (same command) */
    /* the gateway's shutdown order (presence_watch.h), but the subscriber lives on */
    sb_aredis_close(gw.redis);
    gw.redis = NULL;
    sb_presence_watch_stop(gw.presence_watch);
    uv_run(&t.loop, UV_RUN_NOWAIT); /* its timer closes; UNSUBSCRIBE is written */
    sb_presence_watch_free(gw.presence_watch);
    gw.presence_watch = NULL;
    /* nobody listens on the channel any more; a watch left behind would hand this to the
     * freed watch (ASan: heap-use-after-free) */
    assert_int_equal(int_cmd("PUBLISH %s %s", SB_PRESENCE_CHANNEL,
                             "{\"event\":\"agent:online\",\"agent\":{\"agent_id\":\"a1\"}}"),
                     0);
    assert_int_equal(int_cmd("PUBLISH %s %s", "watch:sync", "after"), 1);
    run_until(&t, &sync.calls, 1);
    sb_subscriber_unwatch(&sync.w);
    sb_socketio_stop(gw.sio);
    uv_close((uv_handle_t *)&t.guard, NULL);
    uv_run(&t.loop, UV_RUN_DEFAULT);
    sb_socketio_free(gw.sio);
    assert_int_equal(uv_loop_close(&t.loop), 0);
}

/* Every test's setup and teardown: an empty server with default settings (the presence watch
 * turns keyspace notifications on). */
#define WITH_RESET(test) cmocka_unit_test_setup_teardown(test, reset, reset)
static int reset(void **state) {
    (void)state;
    return sb_test_redis_reset(&srv);
}

int main(void) {
    if (sb_test_redis_start(&srv) != 0) {
        fprintf(stderr, "could not start redis-server\n");
        return 1;
    }
    sb_log_set_level(SB_LOG_ERROR);
    struct CMUnitTest tests[] = {
        WITH_RESET(test_aredis_round_trip),
        WITH_RESET(test_aredis_reconnect_runs_hooks),
        WITH_RESET(test_aredis_server_restart),
        WITH_RESET(test_subscriber_delivers),
        WITH_RESET(test_subscriber_resubscribes),
        WITH_RESET(test_presence_watch_freed_before_subscriber),
    };
    int rc = sb_test_run("integration/test_aredis", tests, sizeof tests / sizeof tests[0]);
    sb_test_redis_stop(&srv);
    return rc;
}
