/* Integration test of sb_aredis_eval (src/gateway/aredis.c) on a real libuv loop against a
 * private redis-server: EVALSHA first; after SCRIPT FLUSH the NOSCRIPT answer makes it build
 * the call again as EVAL, once, and the callback runs exactly once with the script's reply;
 * with the script cached, one EVALSHA only; a script error is handed over as is (no retry);
 * and the loop closes with no handle left (uv_loop_close == 0). */
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
#include "sb_test_expect.h"
#include "sb_test_redis.h"
#include "switchboard/error.h"

static sb_test_redis_t g_redis;

typedef struct {
    sb_script_t script;
    int builds[2];   /* builder calls per mode (EVALSHA, EVAL) */
    int calls;       /* callback calls */
    char answer[64]; /* the reply: the string, or "ERR..." */
    uv_loop_t *loop;
} call_t;

static int build(sb_batch_t *b, sb_script_mode_t mode, void *priv) {
    call_t *c = priv;
    c->builds[mode]++;
    const char *argv[] = {"k", "hello"};
    return sb_batch_add_script(b, &c->script, mode, 1, 2, argv, NULL);
}

static void done(redisReply *reply, void *priv) {
    call_t *c = priv;
    c->calls++;
    snprintf(c->answer, sizeof c->answer, "%s",
             !reply ? "(null)" : reply->type == REDIS_REPLY_STRING ? reply->str
             : reply->type == REDIS_REPLY_ERROR                  ? "ERR"
                                                                 : "?");
    uv_stop(c->loop);
}

static void up(void *ud) { uv_stop(ud); }

/* Runs one sb_aredis_eval to its callback. */
static void run(sb_aredis_t *ar, call_t *c) {
    memset(c->builds, 0, sizeof c->builds);
    c->calls = 0;
    assert_int_equal(sb_aredis_eval(ar, build, done, c), SB_OK);
    uv_run(c->loop, UV_RUN_DEFAULT);
    assert_int_equal(c->calls, 1);
}

static void test_noscript_fallback(void **state) {
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    assert_non_null(r);
    sb_aredis_t *ar = sb_aredis_create(&loop, &g_redis.addr, "test");
    assert_non_null(ar);
    sb_aredis_hook_t hook = {0};
    sb_aredis_on_up(ar, &hook, up, &loop);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(sb_aredis_up(ar));
    sb_aredis_on_up_remove(&hook);

    call_t c = {.loop = &loop};
    sb_script_init(&c.script, "return ARGV[1] .. '/' .. KEYS[1]");
    freeReplyObject(sb_redis_cmd(r, "SCRIPT FLUSH"));
    freeReplyObject(sb_redis_cmd(r, "CONFIG RESETSTAT"));
    run(ar, &c); /* unknown: EVALSHA, NOSCRIPT, EVAL */
    assert_string_equal(c.answer, "hello/k");
    assert_int_equal(c.builds[SB_SCRIPT_EVALSHA], 1);
    assert_int_equal(c.builds[SB_SCRIPT_EVAL], 1);
    assert_int_equal(sb_cmdstat_calls(r, "evalsha"), 1);
    assert_int_equal(sb_cmdstat_calls(r, "eval"), 1);

    run(ar, &c); /* cached now: one EVALSHA */
    assert_string_equal(c.answer, "hello/k");
    assert_int_equal(c.builds[SB_SCRIPT_EVALSHA], 1);
    assert_int_equal(c.builds[SB_SCRIPT_EVAL], 0);

    freeReplyObject(sb_redis_cmd(r, "SCRIPT FLUSH"));
    run(ar, &c); /* flushed between calls: the fallback again */
    assert_string_equal(c.answer, "hello/k");
    assert_int_equal(c.builds[SB_SCRIPT_EVAL], 1);
    assert_int_equal(sb_cmdstat_calls(r, "eval"), 2);

    call_t bad = {.loop = &loop};
    sb_script_init(&bad.script, "return redis.error_reply('nope')");
    freeReplyObject(sb_redis_cmd(r, "SCRIPT FLUSH"));
    run(ar, &bad); /* NOSCRIPT then EVAL, whose error is the answer: no third try */
    assert_string_equal(bad.answer, "ERR");
    assert_int_equal(bad.builds[SB_SCRIPT_EVALSHA], 1);
    assert_int_equal(bad.builds[SB_SCRIPT_EVAL], 1);
    run(ar, &bad); /* cached: its error straight from EVALSHA */
    assert_string_equal(bad.answer, "ERR");
    assert_int_equal(bad.builds[SB_SCRIPT_EVAL], 0);

    sb_aredis_close(ar);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    sb_redis_free(r);
}

static int setup(void **state) {
    (void)state;
    return sb_test_redis_start(&g_redis);
}

static int teardown(void **state) {
    (void)state;
    sb_test_redis_stop(&g_redis);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_noscript_fallback)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
