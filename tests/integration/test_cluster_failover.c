/* Failover tests of both Redis Cluster clients against a real cluster of three masters with
 * one replica each on loopback: a master is killed (SIGKILL) and its replica takes over.
 *  - async (the gateway's, aredis.h over acluster.c): its home node is killed; home moves to a
 *    live node, the slot map is reloaded there and the owner's on-up hook runs again, and a
 *    key of the dead master's slots is readable again once the replica took over;
 *  - blocking (sb_redis_t over cluster_client.c): a write acknowledged by a replica (WAIT 1,
 *    pipelined behind the SET so it goes to the same node) survives the kill of its master:
 *    sb_redis_ensure + GET find it on the promoted replica.
 * Waiting is for events (a reply, a hook) or for a state polled against a generous deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "gateway/aredis.h"
#include "sb_test_cluster.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/log.h"

#define DEADLINE_MS 40000

static sb_test_cluster_t cl = {.masters = 3, .replicas = 1};

/* 1 when server i is a master with at least one replica connected. */
static int has_replica(int i) {
    sb_redis_t *d = sb_test_cluster_node(&cl, i);
    redisReply *rep = d ? sb_redis_cmd(d, "ROLE") : NULL;
    int yes = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 3 &&
              !strcmp(rep->element[0]->str, "master") && rep->element[2]->elements > 0;
    if (rep) freeReplyObject(rep);
    sb_redis_free(d);
    return yes;
}

/* Fills key with prefix:N for the first N whose master is server m; fails the test when none. */
static void key_on(const char *prefix, int m, char *key, size_t len) {
    for (int i = 0; i < 10000; i++) {
        snprintf(key, len, "%s:%d", prefix, i);
        if (sb_test_cluster_master_of(&cl, key) == m) return;
    }
    fail_msg("server %d serves no slot", m);
}

/* ---- async ------------------------------------------------------------------------------------ */

typedef struct {
    uv_loop_t loop;
    uv_timer_t deadline;
    int ups;          /* on-up hook runs */
    int replies;
    int want_ups, want_replies;
    char answer[64];
} actx_t;

static void stop_cb(uv_timer_t *t) { uv_stop(t->loop); }

static void maybe_stop(actx_t *x) {
    if (x->ups >= x->want_ups && x->replies >= x->want_replies) uv_stop(&x->loop);
}

static void up_cb(void *ud) {
    actx_t *x = ud;
    x->ups++;
    maybe_stop(x);
}

static void reply_cb(redisReply *reply, void *priv) {
    actx_t *x = priv;
    snprintf(x->answer, sizeof x->answer, "%s",
             !reply ? "(null)" : reply->str ? reply->str : "(other)");
    x->replies++;
    maybe_stop(x);
}

static void run_until(actx_t *x, int ups, int replies, int ms) {
    x->want_ups = ups;
    x->want_replies = replies;
    if (x->ups >= ups && x->replies >= replies) return;
    uv_timer_start(&x->deadline, stop_cb, (uint64_t)ms, 0);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&x->deadline);
}

/* Sends one command; 0 with the reply in x->answer, or SB_EREDIS when it could not be sent. */
static int send1(actx_t *x, sb_aredis_t *ar, const char *fmt, const char *a, const char *b) {
    sb_batch_t *batch = sb_batch_create();
    assert_int_equal(sb_batch_add(batch, fmt, a, b), SB_OK);
    int n = x->replies, rc = sb_aredis_send(ar, batch, reply_cb, x);
    sb_batch_free(batch);
    if (rc == SB_OK) run_until(x, 0, n + 1, 10000);
    return rc;
}

static void test_async_home_killed(void **state) {
    (void)state;
    actx_t x = {0};
    assert_int_equal(uv_loop_init(&x.loop), 0);
    uv_timer_init(&x.loop, &x.deadline);
    sb_aredis_t *ar = sb_aredis_create(&x.loop, &cl.addr, "test");
    sb_aredis_hook_t hook = {0};
    sb_aredis_on_up(ar, &hook, up_cb, &x);
    run_until(&x, 1, 0, 10000);
    assert_int_equal(x.ups, 1);
    /* a key of the home node's slots (home is the first seed) */
    char key[32];
    int home = 0;
    key_on("ak", home, key, sizeof key);
    assert_int_equal(send1(&x, ar, "SET %s %s", key, "kept"), SB_OK);
    assert_string_equal(x.answer, "OK");
    sb_redis_t *d = sb_test_cluster_node(&cl, home);
    redisReply *w = sb_redis_cmd(d, "WAIT 1 5000"); /* on the replica before the crash */
    assert_int_equal(w->integer, 1);
    freeReplyObject(w);
    sb_redis_free(d);

    sb_test_cluster_kill(&cl, home);
    run_until(&x, 2, 0, DEADLINE_MS); /* home moved, map reloaded, hooks ran again */
    assert_int_equal(x.ups, 2);
    int64_t deadline = sb_mono_ms() + DEADLINE_MS;
    int found = 0;
    while (!found && sb_mono_ms() < deadline) { /* until the replica took over */
        found = send1(&x, ar, "GET %s%s", key, "") == SB_OK && !strcmp(x.answer, "kept");
        if (!found) {
            uv_timer_start(&x.deadline, stop_cb, 200, 0);
            uv_run(&x.loop, UV_RUN_DEFAULT);
        }
    }
    assert_true(found);
    sb_aredis_close(ar);
    uv_close((uv_handle_t *)&x.deadline, NULL);
    uv_run(&x.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&x.loop), 0);
}

/* ---- blocking --------------------------------------------------------------------------------- */

static void test_blocking_master_killed(void **state) {
    (void)state;
    char err[256], key[32];
    sb_redis_t *r = sb_redis_create(&cl.addr, "test");
    assert_int_equal(sb_redis_connect(r, err, sizeof err), SB_OK);
    int m = -1;
    for (int i = 0; i < cl.n && m < 0; i++)
        if (cl.pid[i] > 0 && has_replica(i)) m = i;
    assert_true(m >= 0);
    key_on("bk", m, key, sizeof key);
    sb_batch_t *b = sb_batch_create();
    assert_int_equal(sb_batch_add(b, "SET %s kept", key), SB_OK);
    assert_int_equal(sb_batch_add(b, "WAIT 1 5000"), SB_OK); /* keyless: follows the SET */
    redisReply *rep[2];
    assert_int_equal(sb_redis_pipeline(r, b, rep), SB_OK);
    assert_int_equal(rep[1]->type, REDIS_REPLY_INTEGER);
    assert_int_equal(rep[1]->integer, 1);
    sb_replies_free(rep, 2);
    sb_batch_free(b);

    sb_test_cluster_kill(&cl, m);
    int64_t deadline = sb_mono_ms() + DEADLINE_MS;
    int found = 0;
    while (!found && sb_mono_ms() < deadline) {
        assert_int_equal(sb_redis_ensure(r, NULL), SB_OK);
        redisReply *g = sb_redis_cmd(r, "GET %s", key);
        found = g && g->type == REDIS_REPLY_STRING && !strcmp(g->str, "kept");
        if (g) freeReplyObject(g);
        if (!found) sb_sleep_ms(100, NULL);
    }
    assert_true(found);
    sb_redis_free(r);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    if (sb_test_cluster_start(&cl) != 0) return 1;
    sb_log_set_level(SB_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_async_home_killed),
        cmocka_unit_test(test_blocking_master_killed),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sb_test_cluster_stop(&cl);
    return rc;
}
