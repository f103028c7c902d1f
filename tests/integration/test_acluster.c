/* Integration test of the gateway's async client on Redis Cluster (src/gateway/acluster.c,
 * reached through aredis.h as the gateway does) on a real libuv loop against a real
 * three-master cluster on loopback: the on-up hook runs once the slot map is in; batches go to
 * the node serving their key (values written through it are found on that node alone, over
 * every master); scripts run on their key's node, with the EVALSHA -> EVAL fallback on a node
 * that never saw them; ASK is followed while a slot migrates and MOVED after (the reply is the
 * value, not the redirect); SUBSCRIBE sees a PUBLISH made on every node; and the loop closes
 * with no handle left. */
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
#include "switchboard/cluster.h"
#include "switchboard/error.h"
#include "switchboard/log.h"

static sb_test_cluster_t cl;

typedef struct {
    uv_loop_t loop;
    uv_timer_t deadline;
    sb_aredis_t *ar;
    int calls;         /* callbacks run */
    int want;          /* the loop stops when calls reaches it */
    char answer[128];  /* the last reply as text */
    int messages;      /* pub/sub messages seen */
    char seen[8][32];  /* their payloads */
} ctx_t;

static void stop_cb(uv_timer_t *t) { uv_stop(t->loop); }

/* Runs the loop until x->calls reaches want (10 s at most). */
static void run_until(ctx_t *x, int want) {
    x->want = want;
    if (x->calls >= want) return;
    uv_timer_start(&x->deadline, stop_cb, 10000, 0);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    uv_timer_stop(&x->deadline);
    assert_int_equal(x->calls, want);
}

static void reply_cb(redisReply *reply, void *priv) {
    ctx_t *x = priv;
    snprintf(x->answer, sizeof x->answer, "%s",
             !reply                                  ? "(null)"
             : reply->type == REDIS_REPLY_STRING ||
                       reply->type == REDIS_REPLY_STATUS ||
                       reply->type == REDIS_REPLY_ERROR ? reply->str
             : reply->type == REDIS_REPLY_INTEGER    ? "(integer)"
                                                     : "(other)");
    if (++x->calls >= x->want) uv_stop(&x->loop);
}

static void up_cb(void *ud) {
    ctx_t *x = ud;
    if (++x->calls >= x->want) uv_stop(&x->loop);
}

static void start(ctx_t *x, sb_aredis_hook_t *hook) {
    memset(x, 0, sizeof *x);
    assert_int_equal(uv_loop_init(&x->loop), 0);
    uv_timer_init(&x->loop, &x->deadline);
    x->ar = sb_aredis_create(&x->loop, &cl.addr, "test");
    assert_non_null(x->ar);
    sb_aredis_on_up(x->ar, hook, up_cb, x);
    run_until(x, 1);
    assert_true(sb_aredis_up(x->ar));
}

static void finish(ctx_t *x) {
    sb_aredis_close(x->ar);
    uv_close((uv_handle_t *)&x->deadline, NULL);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&x->loop), 0);
}

/* Sends one command and waits for its reply (in x->answer). */
static void send1(ctx_t *x, const char *fmt, const char *a, const char *b) {
    sb_batch_t *batch = sb_batch_create();
    assert_int_equal(sb_batch_add(batch, fmt, a, b), SB_OK);
    int n = x->calls;
    assert_int_equal(sb_aredis_send(x->ar, batch, reply_cb, x), SB_OK);
    sb_batch_free(batch);
    run_until(x, n + 1);
}

static int setup(void **state) {
    (void)state;
    return sb_test_cluster_flush(&cl);
}

static void test_routes_by_key(void **state) {
    (void)state;
    ctx_t x;
    sb_aredis_hook_t hook = {0};
    start(&x, &hook);
    char key[32], val[32];
    for (int i = 0; i < 60; i++) {
        snprintf(key, sizeof key, "ak:%d", i);
        snprintf(val, sizeof val, "v%d", i);
        send1(&x, "SET %s %s", key, val);
        assert_string_equal(x.answer, "OK");
    }
    for (int i = 0; i < 60; i += 5) {
        snprintf(key, sizeof key, "ak:%d", i);
        snprintf(val, sizeof val, "v%d", i);
        send1(&x, "GET %s%s", key, "");
        assert_string_equal(x.answer, val);
        assert_int_equal(sb_test_cluster_holders(&cl, key), 1);
    }
    for (int i = 0; i < cl.masters; i++) { /* every master got some */
        sb_redis_t *d = sb_test_cluster_node(&cl, i);
        redisReply *rep = sb_redis_cmd(d, "DBSIZE");
        assert_true(rep->integer > 0);
        freeReplyObject(rep);
        sb_redis_free(d);
    }
    finish(&x);
}

typedef struct {
    sb_script_t script;
    const char *key;
    ctx_t *x;
} script_call_t;

static void eval_cb(redisReply *reply, void *priv) {
    script_call_t *c = priv;
    reply_cb(reply, c->x);
}

static int build(sb_batch_t *b, sb_script_mode_t mode, void *priv) {
    script_call_t *c = priv;
    const char *argv[] = {c->key, "hello"};
    return sb_batch_add_script(b, &c->script, mode, 1, 2, argv, NULL);
}

static void test_scripts_on_their_node(void **state) {
    (void)state;
    ctx_t x;
    sb_aredis_hook_t hook = {0};
    start(&x, &hook);
    script_call_t c = {.x = &x};
    sb_script_init(&c.script, "redis.call('SET', KEYS[1], ARGV[1]); return ARGV[1] .. '/' .. "
                              "KEYS[1]");
    const char *keys[] = {"s:1", "s:2", "s:3", "s:4", "s:5", "s:6"};
    for (size_t i = 0; i < 6; i++) { /* each node sees the script first as NOSCRIPT */
        c.key = keys[i];
        int n = x.calls;
        assert_int_equal(sb_aredis_eval(x.ar, build, eval_cb, &c), SB_OK);
        run_until(&x, n + 1);
        char want[32];
        snprintf(want, sizeof want, "hello/%s", keys[i]);
        assert_string_equal(x.answer, want);
        assert_int_equal(sb_test_cluster_holders(&cl, keys[i]), 1);
    }
    finish(&x);
}

/* ---- resharding ------------------------------------------------------------------------------ */

static void test_ask_then_moved(void **state) {
    (void)state;
    const char *key = "async:migrating";
    ctx_t x;
    sb_aredis_hook_t hook = {0};
    start(&x, &hook);
    send1(&x, "SET %s %s", key, "here");
    assert_string_equal(x.answer, "OK");
    int from = sb_test_cluster_master_of(&cl, key), to = (from + 1) % cl.masters;
    assert_true(from >= 0);
    assert_int_equal(sb_test_cluster_migrate_key(&cl, key, from, to), 0);
    send1(&x, "GET %s%s", key, ""); /* from answers ASK: followed */
    assert_string_equal(x.answer, "here");
    assert_int_equal(sb_test_cluster_assign_slot(&cl, sb_cluster_keyslot(key, strlen(key)), to),
                     0);
    send1(&x, "GET %s%s", key, ""); /* from answers MOVED: followed */
    assert_string_equal(x.answer, "here");
    send1(&x, "SET %s %s", key, "there");
    assert_string_equal(x.answer, "OK");
    assert_int_equal(sb_test_cluster_master_of(&cl, key), to);
    assert_int_equal(sb_test_cluster_holders(&cl, key), 1);
    finish(&x);
}

/* A script over two keys of a slot in mid-migration, one key moved and one not: the node
 * answers TRYAGAIN (nothing ran); the router sends it again at its next tick, by when the
 * migration has finished (a timer moves the other key and the slot), and the caller sees the
 * script's answer, not the TRYAGAIN. */
typedef struct {
    int slot, from, to;
} migration_t;

static void finish_migration_cb(uv_timer_t *t) {
    migration_t *m = t->data;
    assert_int_equal(sb_test_cluster_migrate_key(&cl, "{tg}:b", m->from, m->to), 0);
    assert_int_equal(sb_test_cluster_assign_slot(&cl, m->slot, m->to), 0);
}

static int build2(sb_batch_t *b, sb_script_mode_t mode, void *priv) {
    script_call_t *c = priv;
    const char *argv[] = {"{tg}:a", "{tg}:b"};
    return sb_batch_add_script(b, &c->script, mode, 2, 2, argv, NULL);
}

static void test_tryagain_sent_again(void **state) {
    (void)state;
    ctx_t x;
    sb_aredis_hook_t hook = {0};
    start(&x, &hook);
    send1(&x, "SET %s %s", "{tg}:a", "A");
    send1(&x, "SET %s %s", "{tg}:b", "B");
    migration_t m = {sb_cluster_keyslot("{tg}", 4), sb_test_cluster_master_of(&cl, "{tg}:a"), 0};
    m.to = (m.from + 1) % cl.masters;
    assert_int_equal(sb_test_cluster_migrate_key(&cl, "{tg}:a", m.from, m.to), 0);
    script_call_t c = {.x = &x};
    sb_script_init(&c.script, "return redis.call('GET', KEYS[1]) .. redis.call('GET', KEYS[2])");
    uv_timer_t later;
    uv_timer_init(&x.loop, &later);
    later.data = &m;
    uv_timer_start(&later, finish_migration_cb, 300, 0);
    int n = x.calls;
    assert_int_equal(sb_aredis_eval(x.ar, build2, eval_cb, &c), SB_OK);
    run_until(&x, n + 1);
    assert_string_equal(x.answer, "AB");
    assert_int_equal(sb_test_cluster_master_of(&cl, "{tg}:a"), m.to);
    uv_close((uv_handle_t *)&later, NULL);
    finish(&x);
}

/* ---- pub/sub ---------------------------------------------------------------------------------- */

static void push_cb(redisReply *reply, void *priv) {
    ctx_t *x = priv;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        strcmp(reply->element[0]->str, "message"))
        return;
    snprintf(x->seen[x->messages++ % 8], sizeof x->seen[0], "%s", reply->element[2]->str);
    if (++x->calls >= x->want) uv_stop(&x->loop);
}

static void test_pubsub_across_nodes(void **state) {
    (void)state;
    ctx_t x;
    sb_aredis_hook_t hook = {0};
    start(&x, &hook);
    sb_batch_t *b = sb_batch_create();
    assert_int_equal(sb_batch_add(b, "SUBSCRIBE news"), SB_OK);
    assert_int_equal(sb_aredis_subscribe(x.ar, b, push_cb, &x), SB_OK);
    sb_batch_free(b);
    /* a PING on the same connection would not work in push mode: wait until the subscription
     * shows up on the servers instead */
    for (int tries = 0; tries < 200; tries++) {
        sb_redis_t *d = sb_test_cluster_node(&cl, 0);
        redisReply *rep = sb_redis_cmd(d, "PUBSUB NUMSUB news");
        long long n = rep && rep->type == REDIS_REPLY_ARRAY ? rep->element[1]->integer : 0;
        freeReplyObject(rep);
        sb_redis_free(d);
        if (n > 0) break;
        uv_run(&x.loop, UV_RUN_NOWAIT);
        uv_sleep(10);
    }
    int base = x.calls;
    for (int i = 0; i < cl.masters; i++) {
        char msg[16];
        snprintf(msg, sizeof msg, "m%d", i);
        assert_int_equal(sb_test_cluster_run(&cl, i, "PUBLISH news %s", msg, NULL), 0);
    }
    run_until(&x, base + cl.masters);
    assert_int_equal(x.messages, cl.masters);
    finish(&x);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    if (sb_test_cluster_start(&cl) != 0) return 1;
    sb_log_set_level(SB_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_routes_by_key, setup),
        cmocka_unit_test_setup(test_scripts_on_their_node, setup),
        cmocka_unit_test_setup(test_ask_then_moved, setup),
        cmocka_unit_test_setup(test_tryagain_sent_again, setup),
        cmocka_unit_test_setup(test_pubsub_across_nodes, setup),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sb_test_cluster_stop(&cl);
    return rc;
}
