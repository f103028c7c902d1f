/* Unit tests of the Sentinel helpers that need no server: the REDIS_SENTINELS list check
 * (host:port, [v6]:port, spaces, bad ports and empty entries refused), the +switch-master
 * payload parser (only the configured master's messages count), the READONLY test, the
 * settings' pairing rule (REDIS_SENTINELS without REDIS_SENTINEL_MASTER is refused), the
 * address copy carrying the Sentinel fields, and resolution failing with a reason (not a hang)
 * when no Sentinel listens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include "cli/settings.h"
#include "switchboard/error.h"
#include "switchboard/sentinel.h"

static void test_list_check(void **state) {
    (void)state;
    char err[256];
    assert_int_equal(sb_sentinel_list_check("127.0.0.1:26379", err, sizeof err), SB_OK);
    assert_int_equal(sb_sentinel_list_check("a:1, b:2 ,[::1]:26379", err, sizeof err), SB_OK);
    assert_int_equal(sb_sentinel_list_check("", err, sizeof err), SB_EINVAL);
    assert_int_equal(sb_sentinel_list_check("a:1,,b:2", err, sizeof err), SB_EINVAL);
    assert_int_equal(sb_sentinel_list_check("a", err, sizeof err), SB_EINVAL);
    assert_int_equal(sb_sentinel_list_check("a:0", err, sizeof err), SB_EINVAL);
    assert_int_equal(sb_sentinel_list_check("a:1,b:70000", err, sizeof err), SB_EINVAL);
    assert_non_null(strstr(err, "b:70000"));
}

static void test_switch_parse(void **state) {
    (void)state;
    char host[64];
    int port = 0;
    assert_int_equal(sb_sentinel_switch_parse("mymaster 10.0.0.1 6379 10.0.0.2 6380", "mymaster",
                                              host, sizeof host, &port), 1);
    assert_string_equal(host, "10.0.0.2");
    assert_int_equal(port, 6380);
    assert_int_equal(sb_sentinel_switch_parse("other 10.0.0.1 6379 10.0.0.2 6380", "mymaster",
                                              host, sizeof host, &port), 0);
    assert_int_equal(sb_sentinel_switch_parse("mymaster 10.0.0.1 6379", "mymaster", host,
                                              sizeof host, &port), 0);
    assert_int_equal(sb_sentinel_switch_parse(NULL, "mymaster", host, sizeof host, &port), 0);
}

static void test_readonly(void **state) {
    (void)state;
    redisReply ro = {.type = REDIS_REPLY_ERROR, .str = "READONLY You can't write against a "
                                                       "read only replica."};
    redisReply other = {.type = REDIS_REPLY_ERROR, .str = "ERR nope"};
    redisReply status = {.type = REDIS_REPLY_STATUS, .str = "READONLY"};
    assert_int_equal(sb_sentinel_readonly(&ro), 1);
    assert_int_equal(sb_sentinel_readonly(&other), 0);
    assert_int_equal(sb_sentinel_readonly(&status), 0);
    assert_int_equal(sb_sentinel_readonly(NULL), 0);
}

static int load(const char *sentinels, const char *master, char *err, size_t errlen) {
    char *argv[8] = {"job"};
    int argc = 1;
    if (sentinels) argv[argc++] = "--redis-sentinels", argv[argc++] = (char *)sentinels;
    if (master) argv[argc++] = "--redis-sentinel-master", argv[argc++] = (char *)master;
    sb_config_t cfg;
    int rc = sb_config_load(&cfg, argc, argv, err, errlen);
    sb_config_close(&cfg);
    return rc;
}

static void test_settings_pairing(void **state) {
    (void)state;
    char err[512];
    unsetenv("REDIS_SENTINELS");
    unsetenv("REDIS_SENTINEL_MASTER");
    assert_int_equal(load("127.0.0.1:26379", "m", err, sizeof err), SB_OK);
    assert_int_equal(load("127.0.0.1:26379", NULL, err, sizeof err), SB_EINVAL);
    assert_non_null(strstr(err, "REDIS_SENTINEL_MASTER"));
    assert_int_equal(load(NULL, "m", err, sizeof err), SB_EINVAL);
    assert_int_equal(load("nope", "m", err, sizeof err), SB_EINVAL);
    assert_non_null(strstr(err, "REDIS_SENTINELS='nope'"));
}

static void test_copy_and_unreachable(void **state) {
    (void)state;
    sb_redis_addr_t a, b, t;
    sb_redis_addr_init(&a);
    a.sentinels = strdup("127.0.0.1:1");
    a.sentinel_master = strdup("m");
    a.sentinel_password = strdup("pw");
    assert_int_equal(sb_redis_addr_copy(&b, &a), SB_OK);
    assert_string_equal(b.sentinels, "127.0.0.1:1");
    assert_string_equal(b.sentinel_master, "m");
    assert_string_equal(b.sentinel_password, "pw");
    assert_int_equal(sb_sentinel_enabled(&b), 1);
    char err[512];
    assert_int_equal(sb_sentinel_resolve(&b, &t, err, sizeof err), SB_EREDIS);
    assert_non_null(strstr(err, "no Sentinel gave a reachable master 'm'"));
    assert_non_null(strstr(err, "127.0.0.1:1"));
    sb_redis_addr_free(&a);
    sb_redis_addr_free(&b);
    assert_null(b.sentinels);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_check),
        cmocka_unit_test(test_switch_parse),
        cmocka_unit_test(test_readonly),
        cmocka_unit_test(test_settings_pairing),
        cmocka_unit_test(test_copy_and_unreachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
