/* Unit tests of the pure parts of libswitchboard: config, URLs, ids, keys, records, status
 * messages, JSON limits, clock, backoff schedule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/switchboard.h"

static void test_config_defaults(void **state) {
    (void)state;
    unsetenv("REDIS_URL");
    unsetenv("PORT");
    sb_config_t cfg;
    char err[256];
    char *argv[] = {"x", NULL};
    assert_int_equal(sb_config_load(&cfg, 1, argv, err, sizeof err), SB_OK);
    assert_int_equal(cfg.port, 3001);
    assert_int_equal(cfg.agent_status_ttl, 300);
    assert_int_equal(cfg.heartbeat_interval, 180);
    assert_int_equal(cfg.max_attempts, 3);
    assert_string_equal(cfg.job_type, "rebalance");
    assert_string_equal(cfg.redis.host, "127.0.0.1");
    assert_int_equal(cfg.redis.port, 6379);
    sb_config_close(&cfg);
}

static void test_config_env_and_flags(void **state) {
    (void)state;
    setenv("PORT", "4000", 1);
    setenv("REDIS_URL", "redis://u:p%40ss@redis.example:6380/2", 1);
    sb_config_t cfg;
    char err[256];
    char *argv[] = {"x", "--concurrency", "4", "--exec=cat", "--wait", "pos1", NULL};
    assert_int_equal(sb_config_load(&cfg, 6, argv, err, sizeof err), SB_OK);
    assert_int_equal(cfg.port, 4000);
    assert_int_equal(cfg.concurrency, 4);
    assert_string_equal(cfg.exec_cmd, "cat");
    assert_int_equal(cfg.wait, 1);
    assert_int_equal(cfg.nargs, 1);
    assert_string_equal(cfg.args[0], "pos1");
    assert_string_equal(cfg.redis.host, "redis.example");
    assert_int_equal(cfg.redis.port, 6380);
    assert_int_equal(cfg.redis.db, 2);
    assert_string_equal(cfg.redis.user, "u");
    assert_string_equal(cfg.redis.password, "p@ss");
    sb_config_close(&cfg);
    unsetenv("PORT");
    unsetenv("REDIS_URL");
}

static void expect_config_error(const char *env, const char *value, const char *needle) {
    setenv(env, value, 1);
    sb_config_t cfg;
    char err[256] = "";
    char *argv[] = {"x", NULL};
    assert_int_equal(sb_config_load(&cfg, 1, argv, err, sizeof err), SB_EINVAL);
    assert_non_null(strstr(err, needle));
    sb_config_close(&cfg);
    unsetenv(env);
}

static void test_config_errors_name_the_setting(void **state) {
    (void)state;
    expect_config_error("PORT", "abc", "PORT='abc'");
    expect_config_error("PORT", "70000", "PORT");
    expect_config_error("REDIS_URL", "rediss://h:1", "TLS");
    expect_config_error("REDIS_URL", "http://h", "REDIS_URL");
    expect_config_error("REDIS_URL", "redis://h:0", "port");
    expect_config_error("LOG_LEVEL", "loud", "LOG_LEVEL");
    expect_config_error("JOB_TYPE", "Bad Type", "JOB_TYPE");
    sb_config_t cfg;
    char err[256];
    char *argv[] = {"x", "--nope", NULL};
    assert_int_equal(sb_config_load(&cfg, 2, argv, err, sizeof err), SB_EINVAL);
    assert_non_null(strstr(err, "--nope"));
    sb_config_close(&cfg);
    char *argv2[] = {"x", "--port", NULL};
    assert_int_equal(sb_config_load(&cfg, 2, argv2, err, sizeof err), SB_EINVAL);
    assert_non_null(strstr(err, "needs a value"));
    sb_config_close(&cfg);
}

static void test_redis_urls(void **state) {
    (void)state;
    sb_redis_addr_t a = {0};
    char err[128];
    assert_int_equal(sb_redis_url_parse("unix:///tmp/r.sock?db=3", &a, err, sizeof err), 0);
    assert_string_equal(a.unix_path, "/tmp/r.sock");
    assert_int_equal(a.db, 3);
    assert_int_equal(sb_redis_url_parse("redis://[::1]:7000", &a, err, sizeof err), 0);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 7000);
    assert_null(a.unix_path);
    assert_int_equal(sb_redis_url_parse("redis://localhost", &a, err, sizeof err), 0);
    assert_int_equal(a.port, 6379);
    assert_int_equal(sb_redis_url_parse("redis://h:1/99", &a, err, sizeof err), SB_EINVAL);
    assert_int_equal(sb_redis_url_parse("unix://relative", &a, err, sizeof err), SB_EINVAL);
    free(a.host);
    free(a.unix_path);
    free(a.user);
    free(a.password);
}

/* A pool hands each byte out once, wipes it, refills when it runs out, and its ids are
 * distinct (16 random bytes: a repeat means a byte was handed out twice). */
static void test_random_pool(void **state) {
    (void)state;
    sb_rand_t pool;
    sb_rand_init(&pool);
    enum { N = 3 * SB_RAND_POOL / 16 + 5 };
    static unsigned char ids[N][16];
    for (int i = 0; i < N; i++) {
        size_t before = pool.pos;
        assert_int_equal(sb_random_bytes(&pool, ids[i], 16), 0);
        assert_true(pool.pos >= 16 && pool.pos <= SB_RAND_POOL);
        assert_true(before == SB_RAND_POOL || pool.pos == before + 16);
        for (size_t k = 0; k < pool.pos; k++) assert_int_equal(pool.buf[k], 0); /* wiped */
        for (int j = 0; j < i; j++) assert_memory_not_equal(ids[i], ids[j], 16);
    }
    char id[SB_JOB_ID_LEN];
    assert_int_equal(sb_job_id_new(id, &pool), 0);
    assert_true(sb_job_id_valid(id));
    unsigned char big[SB_RAND_POOL]; /* over a quarter of the pool: straight from the kernel */
    size_t pos = pool.pos;
    assert_int_equal(sb_random_bytes(&pool, big, sizeof big), 0);
    assert_int_equal(pool.pos, pos);
    sb_rand_close(&pool);
    for (size_t k = 0; k < SB_RAND_POOL; k++) assert_int_equal(pool.buf[k], 0);
}

static void test_random_ids(void **state) {
    (void)state;
    char hex[33], uuid[SB_EVENT_ID_LEN], uuid2[SB_EVENT_ID_LEN];
    const unsigned char bytes[] = {0x00, 0x0f, 0xa5, 0xff};
    sb_hex_encode(hex, bytes, sizeof bytes);
    assert_string_equal(hex, "000fa5ff");
    assert_int_equal(sb_random_hex(NULL, hex, 16), 0);
    assert_int_equal(strlen(hex), 32);
    assert_int_equal(strspn(hex, "0123456789abcdef"), 32);
    assert_int_equal(sb_uuid_v4(uuid, NULL), 0);
    assert_int_equal(sb_uuid_v4(uuid2, NULL), 0);
    assert_string_not_equal(uuid, uuid2);
    assert_int_equal(strlen(uuid), 36); /* 8-4-4-4-12, version 4, RFC 4122 variant */
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) assert_int_equal(uuid[i], '-');
        else assert_non_null(strchr("0123456789abcdef", uuid[i]));
    }
    assert_int_equal(uuid[14], '4');
    assert_non_null(strchr("89ab", uuid[19]));
}

static void test_job_ids(void **state) {
    (void)state;
    char id[SB_JOB_ID_LEN], id2[SB_JOB_ID_LEN];
    assert_int_equal(sb_job_id_new(id, NULL), 0);
    assert_int_equal(sb_job_id_new(id2, NULL), 0);
    assert_true(sb_job_id_valid(id));
    assert_string_not_equal(id, id2);
    const char *dash = strchr(id, '-');
    assert_non_null(dash);
    assert_int_equal(strlen(dash + 1), 8);
    assert_true(sb_job_id_valid("1731304200000-a7f3e2k")); /* the seeds' example */
    assert_false(sb_job_id_valid("1731304200000-A7F3"));
    assert_false(sb_job_id_valid("-abc"));
    assert_false(sb_job_id_valid("12345678901234567-abc"));
    assert_false(sb_job_id_valid("1-"));
    assert_false(sb_job_id_valid("1-abc/../x"));
    assert_false(sb_job_id_valid("1-abcdefghijabcdefghijabcdefghijabc")); /* 33 chars */
    assert_true(sb_job_id_valid("1-abcdefghijabcdefghijabcdefghijab"));   /* 32 chars */
    assert_false(sb_job_id_valid(NULL));
}

static void test_keys(void **state) {
    (void)state;
    char k[SB_KEY_LEN];
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_JOBS, "rebalance", NULL), "agent:rebalance:jobs");
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_JOB, "rebalance", "1-a"),
                        "agent:rebalance:job:1-a");
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_PROCESSING, "chat", "h-1-ab"),
                        "agent:chat:processing:h-1-ab");
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_DEAD, "rebalance", NULL), "agent:rebalance:dead");
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_USER, "rebalance", "PK"),
                        "agent:rebalance:user:PK");
    assert_string_equal(sb_key(k, sizeof k, SB_KEY_STATUS, "rebalance", NULL),
                        "agent:rebalance:status");
    char tiny[8];
    assert_null(sb_key(tiny, sizeof tiny, SB_KEY_JOBS, "rebalance", NULL));
    assert_true(sb_job_type_valid("rebalance"));
    assert_false(sb_job_type_valid("Rebalance"));
    assert_false(sb_job_type_valid("re:balance"));
}

/* The JSON writer prints what cJSON_PrintUnformatted prints, and its errors stick. */
static void test_json_writer(void **state) {
    (void)state;
    static const char *const docs[] = {
        "{}", "[]", "null", "true", "0", "-0", "1", "-17", "999999999999999", "1000000000000000",
        "-999999999999999", "1e300", "-1e-300", "0.1", "2.5", "1.7976931348623157e308",
        "123456789.123456789", "4503599627370497", "\"\"", "\"a\\\"b\\\\c\\/d\"",
        "\"\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f\\u00e9\\ud83d\\ude00\"",
        "{\"a\":[1,2.5,{\"b\":null,\"c\":[true,false]}],\"\\u0000k\":\"v\"}",
        "[[[[[[[[[[\"deep\"]]]]]]]]]]", "{\"amount\":1000,\"fee\":20.000000000000004}"};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        cJSON *doc = sb_json_parse(docs[i], strlen(docs[i]));
        assert_non_null(doc);
        char *want = cJSON_PrintUnformatted(doc);
        sb_jw_t w;
        sb_jw_init(&w);
        sb_jw_value(&w, doc);
        size_t len = 0;
        char *got = sb_jw_take(&w, &len);
        assert_non_null(got);
        assert_string_equal(got, want);
        assert_int_equal(len, strlen(want));
        free(got);
        free(want);
        cJSON_Delete(doc);
    }
    char small[8];
    sb_jw_t w;
    sb_jw_init_fixed(&w, small, sizeof small);
    sb_jw_str(&w, "1234567"); /* 9 bytes with its quotes: does not fit */
    sb_jw_lit(&w, "x");
    assert_null(sb_jw_finish(&w, NULL));
    sb_jw_init_fixed(&w, small, sizeof small);
    sb_jw_int(&w, -123456);
    size_t len = 0;
    assert_string_equal(sb_jw_finish(&w, &len), "-123456");
    assert_int_equal(len, 7);
    sb_jw_init(&w);
    for (int i = 0; i < 1000; i++) sb_jw_lit(&w, "0123456789");
    char *big = sb_jw_take(&w, &len);
    assert_int_equal(len, 10000);
    free(big);
}

static void test_record_roundtrip(void **state) {
    (void)state;
    cJSON *payload = cJSON_Parse("{\"amount\":1000,\"priority\":\"high\"}");
    sb_user_t u = {.public_key = "GXHEX", .id = "u-42"};
    char *json = sb_job_record_text("rebalance", "1-abc", &u, payload, 1731321000000LL);
    assert_string_equal(json, "{\"jobId\":\"1-abc\",\"type\":\"rebalance\",\"status\":\"queued\","
                              "\"user\":{\"publicKey\":\"GXHEX\",\"id\":\"u-42\"},\"payload\":"
                              "{\"amount\":1000,\"priority\":\"high\"},\"attempts\":0,\"createdAt\":"
                              "\"2024-11-11T10:30:00.000Z\",\"updatedAt\":\"2024-11-11T10:30:00.000Z\"}");
    sb_job_t job;
    char err[128];
    assert_int_equal(sb_job_parse(json, strlen(json), &job, err, sizeof err), 0);
    assert_string_equal(job.status, "queued");
    assert_string_equal(job.public_key, "GXHEX");
    assert_string_equal(job.type, "rebalance");
    assert_int_equal(job.attempts, 0);
    assert_string_equal(sb_json_str(job.root, "createdAt"), "2024-11-11T10:30:00.000Z");
    assert_int_equal(sb_job_set_status(&job, "processing", 1731321001000LL), 0);
    assert_string_equal(job.status, "processing");
    assert_string_equal(sb_json_str(job.root, "updatedAt"), "2024-11-11T10:30:01.000Z");
    sb_job_close(&job);
    free(json);
    cJSON_Delete(payload);
    assert_int_equal(sb_job_parse("{bad", 4, &job, err, sizeof err), SB_EINVAL);
    assert_null(job.root);
    const char *nouser = "{\"jobId\":\"1-a\",\"payload\":{}}";
    assert_int_equal(sb_job_parse(nouser, strlen(nouser), &job, err, sizeof err), SB_EINVAL);
    assert_non_null(strstr(err, "publicKey"));
}

static void test_status_messages(void **state) {
    (void)state;
    cJSON *result = cJSON_Parse("{\"fee\":20}");
    sb_status_t st = {.job_id = "1-a", .status = "done", .user_id = "PK", .result = result,
                      .attempts = 2};
    char *msg = sb_status_build(&st);
    cJSON *root;
    sb_status_t back;
    char err[128];
    assert_int_equal(sb_status_parse(msg, strlen(msg), &root, &back, err, sizeof err), 0);
    assert_string_equal(back.job_id, "1-a");
    assert_string_equal(back.status, "done");
    assert_string_equal(back.user_id, "PK");
    assert_non_null(back.timestamp);
    assert_int_equal(back.attempts, 2);
    assert_non_null(back.result);
    cJSON_Delete(root);
    free(msg);
    cJSON_Delete(result);
    const char *bad[] = {"not json", "[]", "{\"jobId\":\"1-a\",\"status\":\"done\"}",
                         "{\"jobId\":\"1-a\",\"status\":\"queued\",\"userId\":\"x\"}",
                         "{\"jobId\":1,\"status\":\"done\",\"userId\":\"x\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sb_status_parse(bad[i], strlen(bad[i]), &root, &back, err, sizeof err),
                         SB_EINVAL);
        assert_null(root);
    }
}

static void test_json_limits(void **state) {
    (void)state;
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    assert_null(sb_json_parse(deep, sizeof deep));
    assert_null(sb_json_parse("{} trailing", 11));
    cJSON *ok = sb_json_parse("{\"a\":[1,2]}  \n", 14);
    assert_non_null(ok);
    double v;
    assert_int_equal(sb_json_num(ok, "a", &v), SB_EINVAL);
    cJSON_Delete(ok);
}

static void test_clock(void **state) {
    (void)state;
    char buf[SB_ISO_LEN], date[11];
    assert_string_equal(sb_iso8601(0, buf), "1970-01-01T00:00:00.000Z");
    assert_string_equal(sb_iso8601(1731321000123LL, buf), "2024-11-11T10:30:00.123Z");
    assert_string_equal(sb_utc_date(1731321000123LL, date), "2024-11-11");
    int64_t ms;
    assert_int_equal(sb_iso8601_parse("2024-11-11T10:30:00.123Z", &ms), 0);
    assert_int_equal(ms, 1731321000123LL);
    assert_int_equal(sb_iso8601_parse("2024-11-11T10:30:00Z", &ms), 0);
    assert_int_equal(ms, 1731321000000LL);
    assert_int_equal(sb_iso8601_parse("yesterday", &ms), SB_EINVAL);
}

static void test_poll_backoff(void **state) {
    (void)state;
    sb_poll_opts_t o = {500, 5000, 1.5};
    assert_int_equal(sb_poll_delay_ms(&o, 0), 0);
    assert_int_equal(sb_poll_delay_ms(&o, 1), 500);
    assert_int_equal(sb_poll_delay_ms(&o, 2), 750);
    assert_int_equal(sb_poll_delay_ms(&o, 3), 1125);
    assert_int_equal(sb_poll_delay_ms(&o, 50), 5000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),    cmocka_unit_test(test_config_env_and_flags),
        cmocka_unit_test(test_config_errors_name_the_setting),
        cmocka_unit_test(test_redis_urls),         cmocka_unit_test(test_job_ids),
        cmocka_unit_test(test_random_ids),
        cmocka_unit_test(test_keys),               cmocka_unit_test(test_record_roundtrip),
        cmocka_unit_test(test_json_writer), cmocka_unit_test(test_random_pool),
        cmocka_unit_test(test_status_messages),    cmocka_unit_test(test_json_limits),
        cmocka_unit_test(test_clock),              cmocka_unit_test(test_poll_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
