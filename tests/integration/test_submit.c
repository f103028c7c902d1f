/* Integration tests of the submission script's group commit (submit.h, scripts/lua/submit.lua)
 * against a real redis-server: a group of jobs from several users, some over their rate limit,
 * gets exactly the answers and leaves exactly the state that the same jobs submitted one by
 * one do; a group whose queue write fails leaves no job half written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sb_test_redis.h"
#include "switchboard/switchboard.h"

static sb_test_redis_t srv;

static int setup(void **state) {
    (void)state;
    return sb_test_redis_reset(&srv);
}

static long long integer(sb_redis_t *r, const char *fmt, const char *a) {
    redisReply *rep = sb_redis_cmd(r, fmt, a);
    assert_non_null(rep);
    long long n = rep->type == REDIS_REPLY_INTEGER ? rep->integer
                  : rep->type == REDIS_REPLY_STRING ? atoll(rep->str)
                                                     : -1;
    freeReplyObject(rep);
    return n;
}

enum { LIMIT = 3, JOBS = 14 };
/* who submits, in order: u3 starts at its limit, u2 one below it (see prefill) */
static const char *const who[JOBS] = {"u1", "u2", "u1", "u3", "u4", "u1", "u2",
                                      "u1", "u4", "u4", "u4", "u1", "u3", "u2"};

static void job_of(sb_submit_t *q, const char *type, int i, char *id, size_t idlen) {
    snprintf(id, idlen, "1700000000000-%08x", (unsigned)i + 1);
    *q = (sb_submit_t){.type = type, .job_id = id, .public_key = who[i], .record_json = "{}",
                       .now_ms = sb_now_ms(), .rate_user = who[i], .limit = LIMIT,
                       .window_s = 60};
}

/* The same window state for type: u2 has LIMIT - 1 entries, u3 LIMIT. */
static void prefill(sb_redis_t *r, const sb_script_t *s, const char *type) {
    const char *users[] = {"u2", "u2", "u3", "u3", "u3"};
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) {
        sb_submit_t q = {.type = type, .now_ms = sb_now_ms(), .rate_user = users[i],
                         .limit = LIMIT, .window_s = 60};
        sb_rate_result_t res;
        assert_int_equal(sb_submit_run(r, s, &q, &res), 0);
        assert_true(res.allowed);
    }
}

/* Runs calls as one script call (EVAL). Returns the reply (caller frees). */
static redisReply *run_group(sb_redis_t *r, const sb_script_t *s, sb_submit_call_t **calls,
                             size_t n) {
    sb_batch_t *b = sb_batch_create();
    assert_non_null(b);
    assert_int_equal(sb_submit_add(b, s, SB_SCRIPT_EVAL, calls, n), 0);
    redisReply *rep = NULL;
    assert_int_equal(sb_redis_pipeline(r, b, &rep), 0);
    sb_batch_free(b);
    return rep;
}

static void test_group_decides_as_one_by_one(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    sb_script_t s;
    sb_submit_script_init(&s);
    prefill(r, &s, "seq");
    prefill(r, &s, "grp");
    sb_rate_result_t one[JOBS], grp[JOBS];
    sb_submit_call_t *calls[JOBS];
    char ids[JOBS][SB_JOB_ID_LEN];
    for (int i = 0; i < JOBS; i++) {
        sb_submit_t q;
        job_of(&q, "seq", i, ids[i], sizeof ids[i]);
        assert_int_equal(sb_submit_run(r, &s, &q, &one[i]), 0);
        job_of(&q, "grp", i, ids[i], sizeof ids[i]);
        assert_int_equal(sb_submit_prepare(&q, &calls[i]), 0);
    }
    redisReply *rep = run_group(r, &s, calls, JOBS);
    int admitted = 0;
    for (int i = 0; i < JOBS; i++) {
        assert_int_equal(sb_submit_result(rep, (size_t)i, JOBS, &grp[i]), 0);
        assert_int_equal(grp[i].allowed, one[i].allowed);
        assert_int_equal(grp[i].remaining, one[i].remaining);
        /* retry: the oldest entry's age, read a few ms apart */
        assert_true(llabs(grp[i].retry_ms - one[i].retry_ms) < 5000);
        admitted += grp[i].allowed;
        char key[SB_KEY_LEN];
        snprintf(key, sizeof key, "agent:grp:job:%s", ids[i]);
        assert_int_equal(integer(r, "EXISTS %s", key), grp[i].allowed);
        snprintf(key, sizeof key, "agent:grp:hist:%s", ids[i]);
        assert_int_equal(integer(r, "LLEN %s", key), grp[i].allowed ? 4 : 0);
        sb_submit_call_free(calls[i]);
    }
    freeReplyObject(rep);
    /* u1 5 jobs: 3 in; u2 3: 1 in; u3 2: none; u4 4: 3 in */
    assert_int_equal(admitted, 7);
    /* the same queue order, indices, counters and windows */
    redisReply *a = sb_redis_cmd(r, "LRANGE agent:seq:jobs 0 -1");
    redisReply *b = sb_redis_cmd(r, "LRANGE agent:grp:jobs 0 -1");
    assert_int_equal(a->elements, 7);
    assert_int_equal(b->elements, a->elements);
    for (size_t i = 0; i < a->elements; i++)
        assert_string_equal(a->element[i]->str, b->element[i]->str);
    freeReplyObject(a);
    freeReplyObject(b);
    const char *users[] = {"u1", "u2", "u3", "u4"};
    for (size_t u = 0; u < 4; u++) {
        char k1[SB_KEY_LEN], k2[SB_KEY_LEN];
        snprintf(k1, sizeof k1, "metrics:agent:seq:rate:%s", users[u]);
        snprintf(k2, sizeof k2, "metrics:agent:grp:rate:%s", users[u]);
        assert_int_equal(integer(r, "ZCARD %s", k1), integer(r, "ZCARD %s", k2));
        assert_true(integer(r, "PTTL %s", k2) > 0);
        snprintf(k1, sizeof k1, "agent:seq:user:%s", users[u]);
        snprintf(k2, sizeof k2, "agent:grp:user:%s", users[u]);
        assert_int_equal(integer(r, "ZCARD %s", k1), integer(r, "ZCARD %s", k2));
    }
    assert_int_equal(integer(r, "ZCARD %s", "agent:grp:index"), 7);
    char k1[SB_KEY_LEN], k2[SB_KEY_LEN];
    const char *names[] = {"jobs", "rate_hits", "rate_blocked"};
    for (size_t i = 0; i < 3; i++) {
        assert_non_null(sb_metrics_counter_key(k1, sizeof k1, "seq", names[i], sb_now_ms()));
        assert_non_null(sb_metrics_counter_key(k2, sizeof k2, "grp", names[i], sb_now_ms()));
        assert_int_equal(integer(r, "GET %s", k1), integer(r, "GET %s", k2));
        assert_true(integer(r, "TTL %s", k2) > 0);
    }
    sb_redis_free(r);
}

/* A queue key of the wrong type: the script stops at the group's LPUSH, before any record. */
static void test_group_all_or_nothing(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    sb_script_t s;
    sb_submit_script_init(&s);
    redisReply *x = sb_redis_cmd(r, "SET agent:grp:jobs not-a-list");
    freeReplyObject(x);
    sb_submit_call_t *calls[3];
    char ids[3][SB_JOB_ID_LEN];
    for (int i = 0; i < 3; i++) {
        sb_submit_t q;
        job_of(&q, "grp", i, ids[i], sizeof ids[i]);
        q.rate_user = NULL;
        assert_int_equal(sb_submit_prepare(&q, &calls[i]), 0);
    }
    redisReply *rep = run_group(r, &s, calls, 3);
    sb_rate_result_t res;
    assert_int_equal(sb_submit_result(rep, 0, 3, &res), SB_EPROTO);
    freeReplyObject(rep);
    for (int i = 0; i < 3; i++) {
        char key[SB_KEY_LEN];
        snprintf(key, sizeof key, "agent:grp:job:%s", ids[i]);
        assert_int_equal(integer(r, "EXISTS %s", key), 0);
        snprintf(key, sizeof key, "agent:grp:hist:%s", ids[i]);
        assert_int_equal(integer(r, "EXISTS %s", key), 0);
        sb_submit_call_free(calls[i]);
    }
    assert_int_equal(integer(r, "EXISTS %s", "agent:grp:index"), 0);
    sb_redis_free(r);
}

/* AUDIT_EVENTS=0 (no_audit): the job is written whole, its history says when, and no
 * job.created entry is appended; by default one is. */
static void test_no_audit_skips_the_stream(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    sb_script_t s;
    sb_submit_script_init(&s);
    char id[SB_JOB_ID_LEN], key[SB_KEY_LEN];
    sb_submit_t q;
    sb_rate_result_t res;
    job_of(&q, "grp", 0, id, sizeof id);
    q.no_audit = 1;
    assert_int_equal(sb_submit_run(r, &s, &q, &res), 0);
    assert_true(res.allowed);
    snprintf(key, sizeof key, "agent:grp:job:%s", id);
    assert_int_equal(integer(r, "EXISTS %s", key), 1);
    assert_int_equal(integer(r, "EXISTS %s", "agent:stream:job.created"), 0);
    redisReply *h = sb_redis_cmd(r, "LINDEX agent:grp:hist:%s 2", id); /* 'at' */
    assert_non_null(h);
    assert_int_equal(h->type, REDIS_REPLY_STRING);
    assert_true(h->len >= 20 && h->str[4] == '-' && h->str[10] == 'T');
    freeReplyObject(h);
    job_of(&q, "grp", 1, id, sizeof id);
    assert_int_equal(sb_submit_run(r, &s, &q, &res), 0);
    assert_int_equal(integer(r, "XLEN %s", "agent:stream:job.created"), 1);
    sb_redis_free(r);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    if (sb_test_redis_start(&srv) != 0) {
        fprintf(stderr, "could not start redis-server\n");
        return 1;
    }
    sb_log_set_level(SB_LOG_ERROR);
    struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_group_decides_as_one_by_one, setup),
        cmocka_unit_test_setup(test_group_all_or_nothing, setup),
        cmocka_unit_test_setup(test_no_audit_skips_the_stream, setup),
    };
    int rc = sb_test_run("submit", tests, sizeof tests / sizeof tests[0]);
    sb_test_redis_stop(&srv);
    return rc;
}
