/* Unit tests of the pure parts of libswitchboard: config, URLs, ids, keys, records, status
 * messages, JSON limits, clock (formatting checked against gmtime_r + strftime), the log line
 * format, backoff schedule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "cli/settings.h"
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
    expect_config_error("REDIS_TLS_CA", "/nonexistent/ca.pem", "rediss://");
    expect_config_error("REDIS_URL", "http://h", "REDIS_URL");
    expect_config_error("REDIS_URL", "redis://h:0", "port");
    expect_config_error("LOG_LEVEL", "loud", "LOG_LEVEL");
    expect_config_error("JOB_TYPE", "Bad Type", "JOB_TYPE");
    /* JOB_TYPES: every name valid, at least one */
    expect_config_error("JOB_TYPES", "Bad*Type", "JOB_TYPES='Bad*Type'");
    expect_config_error("JOB_TYPES", "rebalance,Report", "JOB_TYPES='rebalance,Report'");
    expect_config_error("JOB_TYPES", "", "JOB_TYPES=''");
    expect_config_error("JOB_TYPES", " , ", "JOB_TYPES");
    expect_config_error("JOB_TYPES", "a23456789012345678901234567890123", "JOB_TYPES");
    setenv("JOB_TYPES", "rebalance, report,a2345678901234567890123456789012", 1);
    sb_config_t ok;
    char okerr[256];
    char *okargv[] = {"x", NULL};
    assert_int_equal(sb_config_load(&ok, 1, okargv, okerr, sizeof okerr), SB_OK);
    sb_config_close(&ok);
    char *flagargv[] = {"x", "--job-types", "x!", NULL}; /* the flag is checked too */
    assert_int_equal(sb_config_load(&ok, 3, flagargv, okerr, sizeof okerr), SB_EINVAL);
    assert_non_null(strstr(okerr, "JOB_TYPES"));
    sb_config_close(&ok);
    unsetenv("JOB_TYPES");
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

/* A verb takes only its own flags; another verb's environment variable is not even read. */
static void test_config_only_the_verbs_settings(void **state) {
    (void)state;
    sb_config_t cfg;
    char err[256] = "";
    char *argv[] = {"token", "--role", "user", "--concurrency", "8", NULL};
    assert_int_equal(sb_config_load_only(&cfg, 5, argv, "role public-key", err, sizeof err),
                     SB_EINVAL);
    assert_non_null(strstr(err, "--concurrency is not an option of this command"));
    sb_config_close(&cfg);
    setenv("CONCURRENCY", "not-a-number", 1);
    setenv("JOB_TYPES", "Bad*Type", 1);
    assert_int_equal(sb_config_load_only(&cfg, 3, argv, "role public-key", err, sizeof err),
                     SB_OK);
    assert_string_equal(cfg.role, "user");
    assert_int_equal(cfg.concurrency, 1); /* the default: CONCURRENCY is the agent's */
    sb_config_close(&cfg);
    char *agent[] = {"agent", NULL};
    assert_int_equal(sb_config_load_only(&cfg, 1, agent, "concurrency", err, sizeof err),
                     SB_EINVAL); /* the verb that reads it refuses the bad value */
    assert_non_null(strstr(err, "CONCURRENCY='not-a-number'"));
    sb_config_close(&cfg);
    unsetenv("CONCURRENCY");
    unsetenv("JOB_TYPES");
    char *bind[] = {"up", "--bind", "0.0.0.0", NULL};
    assert_int_equal(sb_config_load_only(&cfg, 3, bind, "bind port", err, sizeof err), SB_OK);
    assert_int_equal(cfg.bind_explicit, 1);
    sb_config_close(&cfg);
    assert_int_equal(sb_config_load_only(&cfg, 1, bind, "bind port", err, sizeof err), SB_OK);
    assert_int_equal(cfg.bind_explicit, 0);
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
    assert_int_equal(sb_redis_url_parse("rediss://u:p@cache.example:6380/2", &a, err, sizeof err), 0);
    assert_int_equal(a.tls.enabled, 1);
    assert_string_equal(a.host, "cache.example");
    assert_int_equal(a.port, 6380);
    assert_int_equal(a.db, 2);
    assert_int_equal(sb_redis_url_parse("redis://h", &a, err, sizeof err), 0);
    assert_int_equal(a.tls.enabled, 0);
    sb_redis_addr_free(&a);
}

/* TLS settings: copied with the address, checked against it (rediss:// needed, no unix
 * socket, certificate and key together, readable files), each error naming the setting. */
static void test_config_tls(void **state) {
    (void)state;
    sb_config_t cfg;
    char err[256] = "";
    char *argv[] = {"x", "--redis-url", "rediss://127.0.0.1:6390", "--redis-tls-ca", "/dev/null",
                    "--redis-tls-sni", "redis.internal", "--redis-tls-insecure", NULL};
    assert_int_equal(sb_config_load(&cfg, 8, argv, err, sizeof err), SB_OK);
    assert_int_equal(cfg.redis.tls.enabled, 1);
    assert_string_equal(cfg.redis.tls.ca_file, "/dev/null");
    assert_int_equal(cfg.redis.tls.insecure, 1);
    sb_redis_addr_t copy;
    assert_int_equal(sb_redis_addr_copy(&copy, &cfg.redis), SB_OK);
    assert_string_equal(copy.tls.sni, "redis.internal");
    assert_ptr_not_equal(copy.tls.sni, cfg.redis.tls.sni);
    sb_redis_addr_free(&copy);
    sb_config_close(&cfg);
    char *nokey[] = {"x", "--redis-url", "rediss://h", "--redis-tls-cert", "/dev/null", NULL};
    assert_int_equal(sb_config_load(&cfg, 5, nokey, err, sizeof err), SB_EINVAL);
    assert_non_null(strstr(err, "REDIS_TLS_KEY"));
    sb_config_close(&cfg);
    char *noca[] = {"x", "--redis-url", "rediss://h", "--redis-tls-ca", "/nonexistent", NULL};
    assert_int_equal(sb_config_load(&cfg, 5, noca, err, sizeof err), SB_EINVAL);
    assert_non_null(strstr(err, "REDIS_TLS_CA='/nonexistent'"));
    sb_config_close(&cfg);
    char *plain[] = {"x", "--redis-url", "redis://h", "--redis-tls-insecure", NULL};
    assert_int_equal(sb_config_load(&cfg, 4, plain, err, sizeof err), SB_EINVAL);
    assert_non_null(strstr(err, "rediss://"));
    sb_config_close(&cfg);
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

/* Decimal numbers are what printf("%lld") writes, for the edges and a sweep of magnitudes. */
static void test_fmt_numbers(void **state) {
    (void)state;
    long long edge[] = {0, 1, -1, 9, 10, -10, 99, 100, 2147483647LL, -2147483648LL,
                        9223372036854775807LL, -9223372036854775807LL - 1};
    char got[SB_FMT_INT_LEN + 1], want[32];
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        snprintf(want, sizeof want, "%lld", edge[i]);
        assert_string_equal(sb_fmt_llz(got, edge[i]), want);
        assert_int_equal(sb_fmt_ll(got, edge[i]), strlen(want));
    }
    for (long long v = 1; v > 0 && v < 922337203685477580LL; v = v * 7 + 3) {
        snprintf(want, sizeof want, "%lld", -v);
        assert_string_equal(sb_fmt_llz(got, -v), want);
        snprintf(want, sizeof want, "%lld", v);
        assert_string_equal(sb_fmt_llz(got, v), want);
    }
}

/* The writer's text for the JSON text doc (parsed with sb_json_parse); caller frees. */
static char *writer_text(const char *doc) {
    cJSON *tree = sb_json_parse(doc, strlen(doc));
    assert_non_null(tree);
    sb_jw_t w;
    sb_jw_init(&w);
    sb_jw_value(&w, tree);
    size_t len = 0;
    char *got = sb_jw_take(&w, &len);
    assert_non_null(got);
    assert_int_equal(len, strlen(got));
    cJSON_Delete(tree);
    return got;
}

/* The JSON writer prints what cJSON_PrintUnformatted prints wherever cJSON's numbers read
 * back exactly, every number exactly where cJSON's do not, and its errors stick. */
static void test_json_writer(void **state) {
    (void)state;
    static const char *const same[] = {
        "{}", "[]", "null", "true", "0", "-0", "1", "-17", "999999999999999",
        "-999999999999999", "1e300", "-1e-300", "0.1", "2.5", "123.456", "1e21", "5e-324",
        "2.2250738585072014e-308", "123456789.123456789", "4503599627370497", "1e999", "-1e999",
        "\"\"", "\"a\\\"b\\\\c\\/d\"",
        "\"\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f\\u00e9\\ud83d\\ude00\"",
        "{\"a\":[1,2.5,{\"b\":null,\"c\":[true,false]}],\"\\u0000k\":\"v\"}",
        "[[[[[[[[[[\"deep\"]]]]]]]]]]"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        cJSON *doc = sb_json_parse(same[i], strlen(same[i]));
        assert_non_null(doc);
        char *want = cJSON_PrintUnformatted(doc);
        char *got = writer_text(same[i]);
        assert_string_equal(got, want);
        free(got);
        free(want);
        cJSON_Delete(doc);
    }
    /* where cJSON's 15 digits only read back approximately, the writer's read back exactly */
    static const char *const exact[][2] = {
        {"0.30000000000000004", "0.30000000000000004"},
        {"9007199254740993", "9007199254740992"}, /* the double it reads as: 2^53 */
        {"1.7976931348623157e308", "1.7976931348623157e+308"},
        {"-1.7976931348623157e308", "-1.7976931348623157e+308"},
        {"{\"amount\":1000,\"fee\":20.000000000000004}",
         "{\"amount\":1000,\"fee\":20.000000000000004}"},
        {"[1.0000000000000002,0.7999999999999999]", "[1.0000000000000002,0.7999999999999999]"}};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
        cJSON *doc = sb_json_parse(exact[i][0], strlen(exact[i][0]));
        char *lossy = cJSON_PrintUnformatted(doc);
        assert_string_not_equal(lossy, exact[i][1]); /* why the writer departs from cJSON */
        char *got = writer_text(exact[i][0]);
        assert_string_equal(got, exact[i][1]);
        free(got);
        free(lossy);
        cJSON_Delete(doc);
    }
    /* whole numbers below 2^63 as their exact digits (cJSON: "1e+15", "1e+18") */
    static const char *const whole[][2] = {
        {"1000000000000000", "1000000000000000"},
        {"1e18", "1000000000000000000"},
        {"-4611686018427387904", "-4611686018427387904"},
        {"24444444444444441", "24444444444444440"}, /* the double it reads as */
        {"9223372036854775807", "9.223372036854776e+18"}}; /* 2^63: not below it */
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        char *got = writer_text(whole[i][0]);
        assert_string_equal(got, whole[i][1]);
        assert_true(strtod(got, NULL) == strtod(whole[i][0], NULL));
        free(got);
    }
    double dmax = strtod("1.7976931348623157e308", NULL);
    char *text = writer_text("1.7976931348623157e308");
    assert_true(strtod(text, NULL) == dmax); /* finite, the same double: not infinity */
    free(text);
    /* the deepest document sb_json_parse accepts, printed alone and inside a record */
    char deep[2 * SB_JSON_MAX_DEPTH + 1];
    memset(deep, '[', SB_JSON_MAX_DEPTH);
    memset(deep + SB_JSON_MAX_DEPTH, ']', SB_JSON_MAX_DEPTH);
    deep[2 * SB_JSON_MAX_DEPTH] = '\0';
    cJSON *ddoc = sb_json_parse(deep, strlen(deep));
    assert_non_null(ddoc);
    char *dtext = sb_json_print(ddoc);
    assert_string_equal(dtext, deep);
    sb_user_t du = {.public_key = "PK"};
    char *drec = sb_job_record_text("t", "1-a", &du, ddoc, 0);
    assert_non_null(drec);
    assert_non_null(strstr(drec, deep));
    free(drec);
    free(dtext);
    cJSON_Delete(ddoc);
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
    sb_status_t full = {.job_id = "1-a", .status = "error", .user_id = "P\"K", .result = result,
                        .timestamp = "2024-11-11T10:30:00.000Z", .error = "bad\n",
                        .details = "retrying", .attempts = 3};
    msg = sb_status_build(&full);
    assert_string_equal(msg, "{\"jobId\":\"1-a\",\"status\":\"error\",\"userId\":\"P\\\"K\","
                             "\"timestamp\":\"2024-11-11T10:30:00.000Z\",\"result\":{\"fee\":20},"
                             "\"error\":\"bad\\n\",\"details\":\"retrying\",\"attempts\":3,"
                             "\"recorded\":true}");
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

/* The duplicate member name of a JSON text, or NULL. */
static void expect_duplicate(const char *text, const char *want) {
    cJSON *doc = sb_json_parse(text, strlen(text));
    assert_non_null(doc);
    const char *dup = sb_json_duplicate_key(doc);
    if (want) assert_string_equal(dup, want);
    else assert_null(dup);
    cJSON_Delete(doc);
}

/* want: the member named, or NULL when no string holds U+0000. */
static void expect_nul(const char *text, size_t len, const char *want) {
    char member[16] = "unset";
    cJSON *doc = sb_json_parse(text, len);
    assert_non_null(doc);
    cJSON_Delete(doc);
    int found = sb_json_nul_member(text, len, member, sizeof member);
    assert_int_equal(found, want != NULL);
    if (want) assert_string_equal(member, want);
}

static void test_json_nul_member(void **state) {
    (void)state;
#define NUL_CASE(text, want) expect_nul(text, sizeof text - 1, want)
    NUL_CASE("{\"priority\":\"high\\u0000x\"}", "priority");
    NUL_CASE("{\"a\":1,\"p\\u0000q\":1}", "p\\u0000q"); /* the name itself */
    NUL_CASE("{\"a\":{\"b\":1},\"tags\":[\"x\",[\"y\\u0000\"]]}", "tags");
    NUL_CASE("{\"a\":[{\"b\":1},\"\\u0000\"]}", "a"); /* after a nested object: still a */
    NUL_CASE("{\"note\":\"x\0y\"}", "note");              /* a raw NUL byte */
    NUL_CASE("[\"\\u0000\"]", "");
    NUL_CASE("\"\\u0000\"", "");
    NUL_CASE("{\"a very long member name\":\"\\u0000\"}", "a very long mem"); /* cut to fit */
    NUL_CASE("{\"a\":\"\\\\u0000\"}", NULL);   /* an escaped backslash, then text "u0000" */
    NUL_CASE("{\"a\":\"\\u00001\",\"b\":2}", "a");
    NUL_CASE("{\"a\":\"\\u0001\\u1000\\\"\\u0000\"}", "a");
    NUL_CASE("{\"a\":\"\\u0001\",\"b\":\"\\\"x\",\"c\":{\"d\":[1,\"\\u00e9\"]}}", NULL);
    NUL_CASE("{\"k:\\\"\":\"v\"}", NULL);
#undef NUL_CASE
}

static void test_json_duplicate_keys(void **state) {
    (void)state;
    expect_duplicate("{\"amount\":1000,\"amount\":-5,\"priority\":\"high\",\"priority\":{\"x\":1}}",
                     "amount");
    expect_duplicate("{\"a\":1,\"b\":{\"c\":[{\"d\":1,\"e\":2,\"d\":3}]}}", "d");
    expect_duplicate("[1,{\"x\":1},{\"x\":2},[{\"y\":{},\"y\":[]}]]", "y");
    expect_duplicate("{\"\":1,\"\":2}", "");
    expect_duplicate("{\"a\\u0000b\":1,\"a\":2}", "a"); /* cJSON's names end at a NUL */
    expect_duplicate("{\"a\":1,\"A\":2,\"b\":{\"a\":1},\"c\":[{\"a\":1},{\"a\":1}]}", NULL);
    expect_duplicate("{}", NULL);
    expect_duplicate("[]", NULL);
    expect_duplicate("\"a\"", NULL);
    assert_null(sb_json_duplicate_key(NULL));
    /* objects beyond the pairwise size: names sorted, the duplicate found wherever it is */
    char big[8192];
    for (int dup = 0; dup < 2; dup++) {
        size_t o = 0;
        o += (size_t)snprintf(big + o, sizeof big - o, "{\"inner\":{");
        for (int i = 0; i < 500; i++)
            o += (size_t)snprintf(big + o, sizeof big - o, "%s\"k%d\":%d", i ? "," : "", i, i);
        o += (size_t)snprintf(big + o, sizeof big - o, "%s}}", dup ? ",\"k250\":0" : "");
        assert_true(o < sizeof big);
        expect_duplicate(big, dup ? "k250" : NULL);
    }
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

/* ---- sb_iso8601 / sb_utc_date against gmtime_r + strftime ---------------------------------- */

/* The previous implementation, with the seconds floor-divided (it truncated, which only differs
 * for negative values that are not whole seconds, where it wrote `.-01Z`). */
static void ref_iso8601(int64_t unix_ms, char *buf) {
    time_t secs = (time_t)(unix_ms / 1000);
    int ms = (int)(unix_ms % 1000);
    if (ms < 0) {
        secs -= 1;
        ms += 1000;
    }
    struct tm tm;
    assert_non_null(gmtime_r(&secs, &tm));
    size_t n = strftime(buf, SB_ISO_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
    assert_true(n > 0);
    snprintf(buf + n, SB_ISO_LEN - n, ".%03dZ", ms);
}

/* Compares both functions with the reference for one value; counts and shows mismatches. */
static void check_clock_ms(int64_t unix_ms, int *bad) {
    char want[SB_ISO_LEN], got[SB_ISO_LEN], want_date[11], got_date[11];
    ref_iso8601(unix_ms, want);
    memset(got, 'x', sizeof got);
    sb_iso8601(unix_ms, got);
    snprintf(want_date, sizeof want_date, "%.*s", (int)(strchr(want, 'T') - want), want);
    memset(got_date, 'x', sizeof got_date);
    sb_utc_date(unix_ms, got_date);
    int ok = memchr(got, '\0', sizeof got) && strcmp(want, got) == 0 &&
             memchr(got_date, '\0', sizeof got_date) && strcmp(want_date, got_date) == 0;
    if (!ok && (*bad)++ < 10)
        print_error("unix_ms %lld: want %s %s, got %.*s %.*s\n", (long long)unix_ms, want,
                    want_date, (int)sizeof got, got, (int)sizeof got_date, got_date);
}

/* Around midnight of every day from 1900 to 2100, and at an odd time of day. */
static void sweep_days(int *bad) {
    const int64_t day = 86400000;
    for (int64_t d = -25567; d <= 47846; d++) { /* 1900-01-01 .. 2100-12-31 */
        check_clock_ms(d * day - 1, bad);
        check_clock_ms(d * day, bad);
        check_clock_ms(d * day + 1, bad);
        check_clock_ms(d * day + 45296789, bad); /* 12:34:56.789 */
    }
}

/* End of February, 1 March and New Year of every year from -1000 to 10000 (leap rules). */
static void sweep_years(int *bad) {
    const int64_t day = 86400000;
    for (int y = -1000; y <= 10000; y++) {
        struct tm tm = {.tm_year = y - 1900, .tm_mon = 1, .tm_mday = 28};
        int64_t feb28 = (int64_t)timegm(&tm) * 1000;
        for (int k = 0; k <= 2; k++) {
            check_clock_ms(feb28 + k * day - 1, bad);
            check_clock_ms(feb28 + k * day, bad);
        }
        struct tm jan1 = {.tm_year = y - 1900, .tm_mday = 1};
        int64_t ny = (int64_t)timegm(&jan1) * 1000;
        check_clock_ms(ny - 1, bad);
        check_clock_ms(ny, bad);
    }
}

/* Fixed-seed LCG values: up to year 9999, around now, and over the whole int64_t range. */
static void sweep_random(int *bad) {
    uint64_t x = 0x5eedc10cULL;
    for (int i = 0; i < 6000; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t r = x >> 11;
        switch (i % 3) {
        case 0: check_clock_ms((int64_t)(r % 253402300800000ULL), bad); break;
        case 1: check_clock_ms(1700000000000LL + (int64_t)(r % 1000000000000ULL), bad); break;
        default: check_clock_ms((int64_t)x, bad); break;
        }
    }
}

static void test_clock_matches_gmtime(void **state) {
    (void)state;
    char buf[SB_ISO_LEN], date[11];
    int bad = 0;
    sweep_days(&bad);
    sweep_years(&bad);
    sweep_random(&bad);
    const int64_t fixed[] = {0, 1, 999, 1000, -1, -999, -1000, -1001,
                             951782400000LL,             /* 2000-02-29 */
                             4107542400000LL,            /* 2100-03-01 */
                             253402300799999LL,          /* 9999-12-31T23:59:59.999 */
                             253402300800000LL,          /* 10000-01-01 */
                             -62167219200000LL - 1,      /* -1-12-31T23:59:59.999 */
                             INT64_MAX, INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) check_clock_ms(fixed[i], &bad);
    assert_int_equal(bad, 0);
    assert_string_equal(sb_iso8601(-1, buf), "1969-12-31T23:59:59.999Z");
    assert_string_equal(sb_iso8601(951868799999LL, buf), "2000-02-29T23:59:59.999Z");
    assert_string_equal(sb_iso8601(4107542400000LL, buf), "2100-03-01T00:00:00.000Z");
    assert_string_equal(sb_iso8601(253402300799999LL, buf), "9999-12-31T23:59:59.999Z");
    assert_string_equal(sb_iso8601(INT64_MIN, buf), "-292275055-05-16T16:47:04.192Z");
    assert_string_equal(sb_utc_date(-1, date), "1969-12-31");
    assert_string_equal(sb_utc_date(253402300800000LL, date), "10000-01-0"); /* cut to 10 */
}

/* ---- sb_log's line format ------------------------------------------------------------------ */

/* One line of each kind the format has, with stderr sent to a temporary file. */
static void write_log_lines(void) {
    static char msg[3000];
    memset(msg, 'm', sizeof msg - 1);
    sb_log_set_level(SB_LOG_INFO);
    sb_debug("gw", "below the level");
    sb_info("gw", "hello %d", 42);
    sb_warn("component13", "x");
    sb_error("gw", "%s", msg);              /* cut to 2046 characters and '\n' */
    sb_error("gw", "%.*s", 2045 - 40, msg); /* 40: the prefix; 2045 characters: whole */
    sb_error("gw", "%.*s", 2046 - 40, msg); /* whole */
    sb_error("gw", "%.*s", 2047 - 40, msg); /* cut to 2046 */
}

/* Runs write() with stderr sent to a temporary file; returns what it wrote (static buffer). */
static const char *capture_stderr(void (*write)(void)) {
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0 && dup2(fileno(tmp), 2) == 2);
    write();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    static char out[32768];
    rewind(tmp);
    size_t n = fread(out, 1, sizeof out - 1, tmp);
    fclose(tmp);
    out[n] = '\0';
    return out;
}

static void test_log_format(void **state) {
    (void)state;
    char *out = (char *)capture_stderr(write_log_lines);
    char *line[6];
    size_t len[6];
    char *p = out;
    for (int i = 0; i < 6; i++) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        line[i] = p;
        len[i] = (size_t)(nl - p) + 1;
        int64_t ms;
        char ts[SB_ISO_LEN];
        snprintf(ts, sizeof ts, "%.24s", p);
        assert_int_equal(sb_iso8601_parse(ts, &ms), SB_OK);
        p = nl + 1;
    }
    assert_string_equal(p, "");
    assert_memory_equal(line[0] + 24, " info  gw       hello 42\n", len[0] - 24);
    assert_int_equal(len[0], 24 + 25);
    assert_memory_equal(line[1] + 24, " warn  component13 x\n", len[1] - 24);
    assert_int_equal(len[1], 24 + 21);
    assert_memory_equal(line[2] + 24, " error gw       mmm", 19);
    const size_t lens[] = {2047, 2046, 2047, 2047}; /* with the '\n' */
    for (int i = 2; i < 6; i++) {
        assert_int_equal(len[i], lens[i - 2]);
        assert_int_equal(line[i][len[i] - 2], 'm');
    }
}

static void write_json_lines(void) {
    static char msg[3000];
    memset(msg, 'm', sizeof msg - 1);
    sb_log_set_level(SB_LOG_INFO);
    sb_log_set_format(SB_LOG_JSON);
    sb_debug("gw", "below the level");
    sb_info("agent", "job %s done in %d ms", "j1", 12);
    sb_warn("gw", "quote \" backslash \\ newline \n bad \xff byte");
    sb_error("gw", "%s", msg);
    sb_log_set_format(SB_LOG_TEXT);
}

/* LOG_FORMAT=json: one JSON object a line with time, level, component, instance, message; the
 * message escaped, made valid UTF-8, cut when long; the instance id the same on every line. */
static void test_log_json(void **state) {
    (void)state;
    sb_log_format_t f = SB_LOG_TEXT;
    assert_int_equal(sb_log_format_parse("json", &f), SB_OK);
    assert_int_equal(f, SB_LOG_JSON);
    assert_int_equal(sb_log_format_parse("JSON", &f), SB_EINVAL);
    assert_int_equal(sb_log_format_parse("", &f), SB_EINVAL);
    assert_int_equal(f, SB_LOG_JSON);
    const char *out = capture_stderr(write_json_lines);
    const char *want_level[] = {"info", "warn", "error"};
    const char *want_msg[] = {"job j1 done in 12 ms",
                              "quote \" backslash \\ newline \n bad \xef\xbf\xbd byte", NULL};
    const char *p = out;
    for (int i = 0; i < 3; i++) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        cJSON *o = cJSON_ParseWithLength(p, (size_t)(nl - p));
        assert_non_null(o);
        int64_t ms;
        assert_int_equal(sb_iso8601_parse(cJSON_GetObjectItem(o, "time")->valuestring, &ms),
                         SB_OK);
        assert_string_equal(cJSON_GetObjectItem(o, "level")->valuestring, want_level[i]);
        assert_string_equal(cJSON_GetObjectItem(o, "component")->valuestring,
                            i ? "gw" : "agent");
        assert_string_equal(cJSON_GetObjectItem(o, "instance")->valuestring, sb_log_instance());
        const char *m = cJSON_GetObjectItem(o, "message")->valuestring;
        if (want_msg[i]) assert_string_equal(m, want_msg[i]);
        else assert_true(strlen(m) > 1000 && strspn(m, "m") == strlen(m)); /* cut, whole JSON */
        cJSON_Delete(o);
        p = nl + 1;
    }
    assert_string_equal(p, "");
    assert_int_equal(strlen(sb_log_instance()), SB_LOG_INSTANCE_LEN - 1);
    assert_int_equal(strspn(sb_log_instance(), "0123456789abcdef"), SB_LOG_INSTANCE_LEN - 1);
}

/* The value of the unlabelled sample `name` in Prometheus text, or -1 when absent. */
static double prom_value(const char *text, const char *name) {
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, name, n) && p[n] == ' ') return strtod(p + n + 1, NULL);
    return -1;
}

/* process_* from /proc: present and plausible for this very process. */
static void test_prom_runtime(void **state) {
    (void)state;
    sb_prom_t p;
    sb_prom_init(&p);
    sb_prom_runtime(&p);
    const char *t = sb_prom_text(&p, NULL);
    assert_non_null(t);
    assert_true(prom_value(t, "process_resident_memory_bytes") > 1 << 20);
    assert_true(prom_value(t, "process_virtual_memory_bytes") >
                prom_value(t, "process_resident_memory_bytes"));
    assert_true(prom_value(t, "process_cpu_seconds_total") > 0);
    double fds = prom_value(t, "process_open_fds");
    int extra = dup(0); /* one more descriptor shows */
    sb_prom_t q;
    sb_prom_init(&q);
    sb_prom_runtime(&q);
    assert_true(fds >= 3);
    assert_true(prom_value(sb_prom_text(&q, NULL), "process_open_fds") == fds + 1);
    close(extra);
    sb_prom_close(&q);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    assert_true(prom_value(t, "process_max_fds") == (double)rl.rlim_cur);
    double start = prom_value(t, "process_start_time_seconds"), now = sb_now_ms() / 1000.0;
    assert_true(start > now - 600 && start <= now + 1);
    assert_non_null(strstr(t, "switchboard_build_info{version=\""));
    assert_non_null(strstr(t, sb_log_instance()));
    sb_prom_close(&p);
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
        cmocka_unit_test(test_config_tls),
        cmocka_unit_test(test_config_only_the_verbs_settings),
        cmocka_unit_test(test_redis_urls),         cmocka_unit_test(test_job_ids),
        cmocka_unit_test(test_random_ids),
        cmocka_unit_test(test_keys),               cmocka_unit_test(test_record_roundtrip),
        cmocka_unit_test(test_json_writer), cmocka_unit_test(test_fmt_numbers), cmocka_unit_test(test_random_pool),
        cmocka_unit_test(test_status_messages),    cmocka_unit_test(test_json_limits),
        cmocka_unit_test(test_json_duplicate_keys), cmocka_unit_test(test_json_nul_member),
        cmocka_unit_test(test_clock),              cmocka_unit_test(test_clock_matches_gmtime),
        cmocka_unit_test(test_log_format),         cmocka_unit_test(test_poll_backoff),
        cmocka_unit_test(test_log_json),           cmocka_unit_test(test_prom_runtime),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
