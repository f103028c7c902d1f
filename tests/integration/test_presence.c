/* Integration tests of presence (SPEC §5) against a real redis-server: heartbeats, lists by
 * department, one agent, stats, TTLs, expiry with a 1 s TTL, the published events (read on a
 * second, subscribed connection), keyspace expiry notifications and the fallback sweep, 1000
 * agents heartbeating from 8 threads, and concurrent assign never exceeding capacity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sb_test_expect.h"
#include "sb_test_redis.h"
#include "switchboard/switchboard.h"

static sb_test_redis_t srv;

/* ---- helpers ----------------------------------------------------------------------------- */

/* Every test's setup and teardown: an empty server with default settings (a test that
 * turns keyspace notifications on and fails half-way leaves them to nobody). */
#define WITH_RESET(test) cmocka_unit_test_setup_teardown(test, reset, reset)
static int reset(void **state) {
    (void)state;
    return sb_test_redis_reset(&srv);
}

static void beat(sb_redis_t *r, const sb_presence_ctx_t *ctx, const char *id, const char *dept,
                 const char *status) {
    sb_presence_t p = {.agent_id = id, .name = id, .email = "a@example.com",
                       .department_id = dept, .department = dept ? "Dept" : NULL,
                       .status = status};
    assert_int_equal(sb_presence_heartbeat(r, ctx, &p, sb_now_ms(), NULL), SB_OK);
}

static int has_agent(const cJSON *list, const char *id) {
    const cJSON *rec;
    cJSON_ArrayForEach(rec, list) if (!strcmp(sb_json_str(rec, "agent_id"), id)) return 1;
    return 0;
}

static double num(const cJSON *o, const char *name) {
    double v = -1;
    assert_int_equal(sb_json_num(o, name, &v), SB_OK);
    return v;
}

/* A subscribed client for channel; reads time out after 5 s. */
static sb_redis_t *subscriber(const char *channel) {
    sb_redis_t *sub = sb_test_redis_client(&srv);
    assert_non_null(sub);
    sb_expect_type(sub, REDIS_REPLY_ARRAY, "SUBSCRIBE %s", channel);
    sb_redis_set_timeout(sub, 5000);
    return sub;
}

/* Next pub/sub message on sub (fails the test after the read timeout). Caller frees. */
static redisReply *next_message(sb_redis_t *sub) {
    redisReply *msg = sb_redis_read(sub);
    if (!msg) fail_msg("no pub/sub message within the timeout");
    assert_int_equal(msg->type, REDIS_REPLY_ARRAY);
    return msg;
}

/* Next presence event: asserts its name and agent id; returns the parsed document. */
static cJSON *expect_event(sb_redis_t *sub, const char *event, const char *id) {
    redisReply *msg = next_message(sub);
    assert_int_equal(msg->elements, 3);
    cJSON *doc = NULL;
    const char *ev = NULL;
    assert_int_equal(sb_presence_event_parse(msg->element[2]->str, msg->element[2]->len, &doc,
                                             &ev), SB_OK);
    freeReplyObject(msg);
    assert_string_equal(ev, event);
    assert_string_equal(sb_json_str(sb_json_obj(doc, "agent"), "agent_id"), id);
    return doc;
}

/* Polls EXISTS until key is gone (the TTL ran out), at most 10 s. */
static void wait_gone(sb_redis_t *r, const char *id) {
    char key[SB_PRESENCE_KEY_LEN];
    sb_presence_key(key, sizeof key, id);
    int64_t deadline = sb_mono_ms() + 10000;
    while (sb_query_int(r, "EXISTS %s", key) == 1) {
        if (sb_mono_ms() > deadline) fail_msg("%s never expired", key);
        sb_sleep_ms(20, NULL);
    }
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_heartbeat_list_get_stats(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    sb_presence_ctx_t ctx;
    sb_presence_init(&ctx, 300, 5);
    const char *a = "550e8400-e29b-41d4-a716-446655440000";
    beat(r, &ctx, a, "d1", NULL);
    beat(r, &ctx, "550e8400-e29b-41d4-a716-446655440001", "d1", "busy");
    beat(r, &ctx, "550e8400-e29b-41d4-a716-446655440002", "d2", "away");
    beat(r, &ctx, "550e8400-e29b-41d4-a716-446655440003", NULL, "online");

    cJSON *all = NULL, *d1 = NULL, *rec = NULL, *stats = NULL;
    assert_int_equal(sb_presence_list(r, &ctx, NULL, &all), SB_OK);
    assert_int_equal(cJSON_GetArraySize(all), 4);
    assert_int_equal(sb_presence_list(r, &ctx, "d1", &d1), SB_OK);
    assert_int_equal(cJSON_GetArraySize(d1), 2);
    assert_true(has_agent(d1, a));
    assert_false(has_agent(d1, "550e8400-e29b-41d4-a716-446655440002"));

    assert_int_equal(sb_presence_get(r, a, &rec), SB_OK);
    assert_string_equal(sb_json_str(rec, "status"), "online");
    assert_string_equal(sb_json_str(rec, "department_id"), "d1");
    assert_string_equal(sb_json_str(rec, "email"), "a@example.com");
    assert_non_null(sb_json_str(rec, "last_heartbeat"));
    assert_true(num(rec, "current_chats") == 0 && num(rec, "max_chats") == 5);
    assert_int_equal(sb_presence_get(r, "6b0e8400-e29b-41d4-a716-446655440000", NULL),
                     SB_ENOTFOUND);
    assert_int_equal(sb_presence_get(r, "bad id", NULL), SB_EINVAL);
    cJSON *none = NULL;
    assert_int_equal(sb_presence_list(r, &ctx, "bad dept", &none), SB_EINVAL);
    assert_null(none);

    /* TTLs exactly per SPEC §5 */
    char key[SB_PRESENCE_KEY_LEN];
    long long ttl = sb_query_int(r, "TTL %s", sb_presence_key(key, sizeof key, a));
    assert_true(ttl > 290 && ttl <= 300);
    ttl = sb_query_int(r, "TTL %s", "agents:all");
    assert_true(ttl > 590 && ttl <= 600);
    ttl = sb_query_int(r, "TTL %s", "agents:dept:d1");
    assert_true(ttl > 590 && ttl <= 600);

    assert_int_equal(sb_presence_stats(r, &ctx, &stats), SB_OK);
    assert_true(num(stats, "total") == 4);
    const cJSON *by = sb_json_obj(stats, "by_status");
    assert_true(num(by, "online") == 2 && num(by, "busy") == 1 && num(by, "away") == 1);
    const cJSON *depts = sb_json_obj(stats, "departments");
    assert_int_equal(cJSON_GetArraySize(depts), 3);
    const cJSON *nodept = cJSON_GetArrayItem(depts, 0), *dd1 = cJSON_GetArrayItem(depts, 1);
    assert_string_equal(sb_json_str(nodept, "department_id"), "");
    assert_true(num(nodept, "total") == 1);
    assert_string_equal(sb_json_str(dd1, "department_id"), "d1");
    assert_true(num(dd1, "total") == 2 && num(dd1, "online") == 1 && num(dd1, "busy") == 1);
    assert_true(num(dd1, "max_chats") == 10);
    cJSON_Delete(all);
    cJSON_Delete(d1);
    cJSON_Delete(rec);
    cJSON_Delete(stats);
    sb_redis_free(r);
}

static void test_heartbeat_without_department_and_bad_input(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    sb_presence_ctx_t ctx;
    sb_presence_init(&ctx, 300, 5);
    const char *id = "9f0e8400-e29b-41d4-a716-446655440000";
    beat(r, &ctx, id, "", NULL);
    cJSON *rec = NULL;
    assert_int_equal(sb_presence_get(r, id, &rec), SB_OK);
    assert_string_equal(sb_json_str(rec, "department_id"), "");
    cJSON_Delete(rec);
    sb_expect_int(r, 1, "SISMEMBER agents:all %s", id);
    sb_expect_len(r, 0, "KEYS agents:dept:*");

    sb_presence_t bad = {.agent_id = "x*", .status = "online"};
    assert_int_equal(sb_presence_heartbeat(r, &ctx, &bad, sb_now_ms(), NULL), SB_EINVAL);
    bad.agent_id = id;
    bad.status = "gone";
    assert_int_equal(sb_presence_heartbeat(r, &ctx, &bad, sb_now_ms(), NULL), SB_EINVAL);
    bad.status = "away";
    bad.department_id = "a b";
    assert_int_equal(sb_presence_heartbeat(r, &ctx, &bad, sb_now_ms(), NULL), SB_EINVAL);
    sb_redis_free(r);
}

static void test_heartbeat_keeps_chats_and_changes_department(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    sb_presence_ctx_t ctx;
    sb_presence_init(&ctx, 300, 2);
    const char *id = "1a0e8400-e29b-41d4-a716-446655440000";
    beat(r, &ctx, id, "sales", NULL);
    cJSON *rec = NULL;
    assert_int_equal(sb_presence_assign(r, &ctx, "sales", &rec), SB_OK);
    assert_true(num(rec, "current_chats") == 1);
    cJSON_Delete(rec);
    beat(r, &ctx, id, "sales", "online"); /* must not reset current_chats */
    assert_int_equal(sb_presence_get(r, id, &rec), SB_OK);
    assert_true(num(rec, "current_chats") == 1 && num(rec, "max_chats") == 2);
    cJSON_Delete(rec);
    /* TTL kept by assign: still close to the full TTL, not -1 */
    char key[SB_PRESENCE_KEY_LEN];
    assert_true(sb_query_int(r, "TTL %s", sb_presence_key(key, sizeof key, id)) > 290);

    assert_int_equal(sb_presence_release(r, &ctx, id, &rec), SB_OK);
    assert_true(num(rec, "current_chats") == 0);
    cJSON_Delete(rec);
    assert_int_equal(sb_presence_release(r, &ctx, id, &rec), SB_OK);
    assert_true(num(rec, "current_chats") == 0); /* never below 0 */
    cJSON_Delete(rec);

    beat(r, &ctx, id, "support", NULL); /* moved: leaves the old department's set */
    sb_expect_int(r, 0, "SISMEMBER agents:dept:sales %s", id);
    sb_expect_int(r, 1, "SISMEMBER agents:dept:support %s", id);
    assert_int_equal(sb_presence_release(r, &ctx, "2b0e8400-e29b-41d4-a716-446655440000", NULL),
                     SB_ENOTFOUND);
    sb_redis_free(r);
}

static void test_expired_agent_is_not_listed_and_is_cleaned(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    sb_presence_ctx_t ctx, shortctx;
    sb_presence_init(&ctx, 300, 5);
    sb_presence_init(&shortctx, 1, 5);
    const char *gone = "3c0e8400-e29b-41d4-a716-446655440000";
    const char *live = "3c0e8400-e29b-41d4-a716-446655440001";
    beat(r, &shortctx, gone, "d1", NULL);
    beat(r, &ctx, live, "d1", NULL);
    sb_redis_t *sub = subscriber(SB_PRESENCE_CHANNEL);
    wait_gone(r, gone);
    /* the sets still name it until someone meets it */
    sb_expect_int(r, 1, "SISMEMBER agents:dept:d1 %s", gone);
    cJSON *list = NULL;
    assert_int_equal(sb_presence_list(r, &ctx, "d1", &list), SB_OK);
    assert_int_equal(cJSON_GetArraySize(list), 1);
    assert_false(has_agent(list, gone));
    cJSON_Delete(list);
    sb_expect_int(r, 0, "SISMEMBER agents:dept:d1 %s", gone);
    sb_expect_int(r, 0, "SISMEMBER agents:all %s", gone);
    sb_expect_int(r, 0, "HEXISTS agents:meta %s", gone);
    /* the list that met it announced it, with its department */
    cJSON *ev = expect_event(sub, "agent:offline", gone);
    assert_string_equal(sb_json_str(ev, "reason"), "expired");
    assert_string_equal(sb_json_str(sb_json_obj(ev, "agent"), "department_id"), "d1");
    cJSON_Delete(ev);
    assert_int_equal(sb_presence_get(r, gone, NULL), SB_ENOTFOUND);
    sb_redis_free(sub);
    sb_redis_free(r);
}

static void test_events_are_published_exactly(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    sb_presence_ctx_t ctx;
    sb_presence_init(&ctx, 300, 5);
    sb_redis_t *sub = subscriber(SB_PRESENCE_CHANNEL);
    const char *a = "4d0e8400-e29b-41d4-a716-446655440000";
    const char *b = "4d0e8400-e29b-41d4-a716-446655440001";
    beat(r, &ctx, a, "d1", NULL);
    beat(r, &ctx, a, "d1", NULL);   /* same status: no event */
    beat(r, &ctx, a, "d1", "busy"); /* status change */
    int was = -1;
    assert_int_equal(sb_presence_offline(r, &ctx, a, sb_now_ms(), &was), SB_OK);
    assert_int_equal(was, 1);
    assert_int_equal(sb_presence_offline(r, &ctx, a, sb_now_ms(), &was), SB_OK);
    assert_int_equal(was, 0); /* already offline: no second event */
    beat(r, &ctx, b, NULL, NULL);

    cJSON *ev = expect_event(sub, "agent:online", a);
    assert_string_equal(sb_json_str(sb_json_obj(ev, "agent"), "department_id"), "d1");
    assert_non_null(sb_json_str(ev, "timestamp"));
    cJSON_Delete(ev);
    ev = expect_event(sub, "agent:status", a);
    assert_string_equal(sb_json_str(ev, "previous_status"), "online");
    assert_string_equal(sb_json_str(sb_json_obj(ev, "agent"), "status"), "busy");
    cJSON_Delete(ev);
    ev = expect_event(sub, "agent:offline", a);
    assert_string_equal(sb_json_str(ev, "reason"), "explicit");
    assert_string_equal(sb_json_str(sb_json_obj(ev, "agent"), "department_id"), "d1");
    cJSON_Delete(ev);
    ev = expect_event(sub, "agent:online", b); /* nothing slipped in between */
    cJSON_Delete(ev);

    /* explicit offline cleaned every index */
    sb_expect_int(r, 0, "SISMEMBER agents:all %s", a);
    sb_expect_int(r, 0, "SISMEMBER agents:dept:d1 %s", a);
    sb_expect_int(r, 0, "HEXISTS agents:meta %s", a);
    sb_redis_free(sub);
    sb_redis_free(r);
}

static void test_keyspace_expiry_notification(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    sb_presence_ctx_t ctx;
    sb_presence_init(&ctx, 1, 5);
    sb_redis_t *cfg = sb_test_redis_client(&srv);
    sb_expect_ok(cfg, "CONFIG SET notify-keyspace-events Kl");
    assert_int_equal(sb_presence_notify_enable(r), SB_OK);
    redisReply *rep = sb_expect_reply(cfg, REDIS_REPLY_ARRAY, "CONFIG GET notify-keyspace-events");
    assert_int_equal(rep->elements, 2);
    const char *flags = rep->element[1]->str;
    assert_non_null(strchr(flags, 'K')); /* existing flags kept */
    assert_non_null(strchr(flags, 'l'));
    assert_non_null(strchr(flags, 'E'));
    assert_non_null(strchr(flags, 'x'));
    freeReplyObject(rep);
    assert_int_equal(sb_presence_notify_enable(r), SB_OK); /* idempotent */

    char chan[64];
    sb_redis_t *exp = subscriber(sb_presence_expired_channel(chan, sizeof chan, 0));
    sb_redis_t *sub = subscriber(SB_PRESENCE_CHANNEL);
    const char *id = "5e0e8400-e29b-41d4-a716-446655440000";
    beat(r, &ctx, id, "d9", NULL);
    cJSON_Delete(expect_event(sub, "agent:online", id));

    /* the expiry notification arrives by itself (active expiry), no polling of keys */
    char got[SB_AGENT_ID_MAX + 1] = "";
    int64_t deadline = sb_mono_ms() + 10000;
    while (!got[0] && sb_mono_ms() < deadline) {
        redisReply *msg = next_message(exp);
        sb_presence_expired_parse(msg, got, sizeof got);
        freeReplyObject(msg);
    }
    assert_string_equal(got, id);
    int announced = -1;
    assert_int_equal(sb_presence_expire(r, &ctx, got, &announced), SB_OK);
    assert_int_equal(announced, 1);
    assert_int_equal(sb_presence_expire(r, &ctx, got, &announced), SB_OK);
    assert_int_equal(announced, 0); /* a second gateway finds nothing to announce */
    cJSON *ev = expect_event(sub, "agent:offline", id);
    assert_string_equal(sb_json_str(ev, "reason"), "expired");
    assert_string_equal(sb_json_str(sb_json_obj(ev, "agent"), "department_id"), "d9");
    cJSON_Delete(ev);
    sb_expect_int(r, 0, "SISMEMBER agents:dept:d9 %s", id);

    /* an agent that came back before the notification was handled is left alone */
    beat(r, &ctx, id, "d9", NULL);
    assert_int_equal(sb_presence_expire(r, &ctx, id, &announced), SB_OK);
    assert_int_equal(announced, 0);
    sb_expect_ok(cfg, "CONFIG SET notify-keyspace-events %s", "");
    sb_redis_free(exp);
    sb_redis_free(sub);
    sb_redis_free(cfg);
    sb_redis_free(r);
}

static void test_fallback_sweep(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    sb_presence_ctx_t ctx, shortctx;
    sb_presence_init(&ctx, 300, 5);
    sb_presence_init(&shortctx, 1, 5);
    char id[64];
    for (int i = 0; i < 30; i++) {
        snprintf(id, sizeof id, "6f0e8400-e29b-41d4-a716-4466554400%02d", i);
        beat(r, i < 25 ? &shortctx : &ctx, id, i % 2 ? "odd" : "even", NULL);
    }
    sb_redis_t *sub = subscriber(SB_PRESENCE_CHANNEL);
    for (int i = 0; i < 25; i++) {
        snprintf(id, sizeof id, "6f0e8400-e29b-41d4-a716-4466554400%02d", i);
        wait_gone(r, id);
    }
    char cursor[32] = "0";
    int total = 0, retired = 0, pages = 0;
    do {
        assert_int_equal(sb_presence_sweep(r, &ctx, cursor, 7, &retired), SB_OK);
        total += retired;
        pages++;
    } while (strcmp(cursor, "0") != 0 && pages < 1000);
    assert_int_equal(total, 25);
    sb_expect_int(r, 5, "HLEN %s", "agents:meta");
    sb_expect_int(r, 5, "SCARD %s", "agents:all");
    for (int i = 0; i < 25; i++) {
        redisReply *msg = next_message(sub);
        assert_non_null(strstr(msg->element[2]->str, "agent:offline"));
        freeReplyObject(msg);
    }
    strcpy(cursor, "0");
    assert_int_equal(sb_presence_sweep(r, &ctx, cursor, 0, &retired), SB_OK);
    assert_int_equal(retired, 0); /* nothing twice */
    assert_int_equal(sb_presence_sweep(r, &ctx, "x", 0, &retired), SB_EINVAL);
    sb_redis_free(sub);
    sb_redis_free(r);
}

/* ---- concurrency --------------------------------------------------------------------------- */

#define HB_THREADS 8
#define HB_AGENTS 1000
static const char *const hb_status[] = {"online", "busy", "away"};

typedef struct {
    int first, n;
    const sb_presence_ctx_t *ctx;
    int failures;
} hb_job_t;

static void *hb_thread(void *arg) {
    hb_job_t *j = arg;
    sb_redis_t *r = sb_test_redis_client(&srv);
    for (int i = j->first; r && i < j->first + j->n; i++) {
        char id[64], dept[16];
        snprintf(id, sizeof id, "700e8400-e29b-41d4-a716-%012d", i);
        snprintf(dept, sizeof dept, "dept%d", i % 10);
        sb_presence_t p = {.agent_id = id, .name = "n", .department_id = dept,
                           .department = dept, .status = hb_status[i % 3]};
        for (int k = 0; k < 2; k++) /* twice: the second must not create anything new */
            if (sb_presence_heartbeat(r, j->ctx, &p, sb_now_ms(), NULL) != SB_OK) j->failures++;
    }
    if (!r) j->failures++;
    sb_redis_free(r);
    return NULL;
}

static void test_thousand_agents_concurrently(void **state) {
    (void)state;
    sb_presence_ctx_t ctx;
    sb_presence_init(&ctx, 300, 5);
    pthread_t th[HB_THREADS];
    hb_job_t jobs[HB_THREADS];
    for (int t = 0; t < HB_THREADS; t++) {
        jobs[t] = (hb_job_t){.first = t * (HB_AGENTS / HB_THREADS), .n = HB_AGENTS / HB_THREADS,
                             .ctx = &ctx};
        assert_int_equal(pthread_create(&th[t], NULL, hb_thread, &jobs[t]), 0);
    }
    for (int t = 0; t < HB_THREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(jobs[t].failures, 0);
    }
    sb_redis_t *r = sb_test_redis_client(&srv);
    cJSON *stats = NULL;
    assert_int_equal(sb_presence_stats(r, &ctx, &stats), SB_OK);
    assert_true(num(stats, "total") == HB_AGENTS);
    const cJSON *by = sb_json_obj(stats, "by_status");
    assert_true(num(by, "online") == 334 && num(by, "busy") == 333 && num(by, "away") == 333);
    const cJSON *depts = sb_json_obj(stats, "departments"), *d;
    assert_int_equal(cJSON_GetArraySize(depts), 10);
    cJSON_ArrayForEach(d, depts) assert_true(num(d, "total") == 100);
    cJSON_Delete(stats);
    sb_expect_int(r, HB_AGENTS, "HLEN %s", "agents:meta");
    sb_redis_free(r);
}

#define AS_THREADS 8
#define AS_AGENTS 12

typedef struct {
    const sb_presence_ctx_t *ctx;
    int assigned, errors;
} as_job_t;

static void *as_thread(void *arg) {
    as_job_t *j = arg;
    sb_redis_t *r = sb_test_redis_client(&srv);
    int rc = r ? SB_OK : SB_EREDIS;
    while (rc == SB_OK) {
        rc = sb_presence_assign(r, j->ctx, "sales", NULL);
        if (rc == SB_OK) j->assigned++;
    }
    if (rc != SB_ENOTFOUND) j->errors++;
    sb_redis_free(r);
    return NULL;
}

static void test_concurrent_assign_respects_capacity(void **state) {
    (void)state;
    sb_presence_ctx_t ctx;
    sb_presence_init(&ctx, 300, 5);
    sb_redis_t *r = sb_test_redis_client(&srv);
    int capacity = 0;
    for (int i = 0; i < AS_AGENTS; i++) {
        char id[64];
        snprintf(id, sizeof id, "800e8400-e29b-41d4-a716-%012d", i);
        sb_presence_t p = {.agent_id = id, .department_id = "sales", .department = "Sales",
                           .status = i == 0 ? "busy" : i == 1 ? "away" : "online",
                           .max_chats = 1 + i % 4};
        assert_int_equal(sb_presence_heartbeat(r, &ctx, &p, sb_now_ms(), NULL), SB_OK);
        if (i > 1) capacity += p.max_chats;
    }
    beat(r, &ctx, "900e8400-e29b-41d4-a716-446655440000", "other", NULL);

    /* least loaded first: the first pick is the lowest id among the empty ones */
    cJSON *rec = NULL;
    assert_int_equal(sb_presence_assign(r, &ctx, "sales", &rec), SB_OK);
    assert_string_equal(sb_json_str(rec, "agent_id"), "800e8400-e29b-41d4-a716-000000000002");
    cJSON_Delete(rec);
    assert_int_equal(sb_presence_release(r, &ctx, "800e8400-e29b-41d4-a716-000000000002", NULL),
                     SB_OK);

    pthread_t th[AS_THREADS];
    as_job_t jobs[AS_THREADS];
    for (int t = 0; t < AS_THREADS; t++) {
        jobs[t] = (as_job_t){.ctx = &ctx};
        assert_int_equal(pthread_create(&th[t], NULL, as_thread, &jobs[t]), 0);
    }
    int total = 0;
    for (int t = 0; t < AS_THREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(jobs[t].errors, 0);
        total += jobs[t].assigned;
    }
    assert_int_equal(total, capacity);
    cJSON *list = NULL;
    assert_int_equal(sb_presence_list(r, &ctx, "sales", &list), SB_OK);
    const cJSON *a;
    cJSON_ArrayForEach(a, list) {
        double cur = num(a, "current_chats"), max = num(a, "max_chats");
        const char *st = sb_json_str(a, "status");
        assert_true(cur <= max);
        assert_true(!strcmp(st, "online") ? cur == max : cur == 0);
    }
    cJSON_Delete(list);
    assert_int_equal(sb_presence_assign(r, &ctx, "sales", NULL), SB_ENOTFOUND);
    assert_int_equal(sb_presence_assign(r, &ctx, "nobody-here", NULL), SB_ENOTFOUND);
    assert_int_equal(sb_presence_assign(r, &ctx, "", NULL), SB_EINVAL);
    /* a chat ends: exactly one slot comes back */
    assert_int_equal(sb_presence_release(r, &ctx, "800e8400-e29b-41d4-a716-000000000005", NULL),
                     SB_OK);
    assert_int_equal(sb_presence_assign(r, &ctx, "sales", &rec), SB_OK);
    assert_string_equal(sb_json_str(rec, "agent_id"), "800e8400-e29b-41d4-a716-000000000005");
    cJSON_Delete(rec);
    assert_int_equal(sb_presence_assign(r, &ctx, "sales", NULL), SB_ENOTFOUND);
    sb_redis_free(r);
}

static void test_eval_fallback_after_script_flush(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&srv);
    sb_presence_ctx_t ctx;
    sb_presence_init(&ctx, 300, 5);
    sb_expect_ok(r, "SCRIPT FLUSH");
    /* the builder's EVALSHA form is refused with NOSCRIPT; the EVAL form works */
    sb_batch_t *b = sb_batch_create();
    assert_int_equal(sb_presence_list_cmd(b, &ctx, NULL, sb_now_ms(), SB_SCRIPT_EVALSHA), SB_OK);
    assert_int_equal(sb_presence_list_cmd(b, &ctx, NULL, sb_now_ms(), SB_SCRIPT_EVAL), SB_OK);
    redisReply *reps[2];
    assert_int_equal(sb_redis_pipeline(r, b, reps), SB_OK);
    assert_true(sb_reply_is_noscript(reps[0]));
    cJSON *list = NULL;
    assert_int_equal(sb_presence_list_reply(reps[1], &list), SB_OK);
    assert_int_equal(cJSON_GetArraySize(list), 0);
    cJSON_Delete(list);
    sb_replies_free(reps, 2);
    sb_batch_free(b);
    sb_redis_free(r);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN); /* a write to a dead Redis must fail, not kill us */
    if (sb_test_redis_start(&srv) != 0) {
        fprintf(stderr, "could not start redis-server\n");
        return 1;
    }
    sb_log_set_level(SB_LOG_ERROR);
    struct CMUnitTest tests[] = {
        WITH_RESET(test_heartbeat_list_get_stats),
        WITH_RESET(test_heartbeat_without_department_and_bad_input),
        WITH_RESET(test_heartbeat_keeps_chats_and_changes_department),
        WITH_RESET(test_expired_agent_is_not_listed_and_is_cleaned),
        WITH_RESET(test_events_are_published_exactly),
        WITH_RESET(test_keyspace_expiry_notification),
        WITH_RESET(test_fallback_sweep),
        WITH_RESET(test_thousand_agents_concurrently),
        WITH_RESET(test_concurrent_assign_respects_capacity),
        WITH_RESET(test_eval_fallback_after_script_flush),
    };
    int rc = sb_test_run("integration/test_presence", tests, sizeof tests / sizeof tests[0]);
    sb_test_redis_stop(&srv);
    return rc;
}
