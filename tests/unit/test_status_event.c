/* Unit tests of status event payloads (src/gateway/status_event.c): the direct writer gives
 * byte for byte the text sb_json_print prints for the object sb_status_event_payload builds — for
 * plain statuses, every escaped character, non-ASCII bytes, copied result / error / details
 * of every JSON type (null ones skipped) — and refuses a buffer too small at every size
 * instead of writing past it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/status_event.h"
#include "switchboard/error.h"
#include "switchboard/json.h"

/* The writer's text for src equals the printed object in any buffer 6 bytes longer than it
 * (cJSON_PrintPreallocated may ask for up to 5 spare bytes), and never in one too short. */
static void check_same(const char *src_json, const char *job_id, const char *status,
                       const char *ts) {
    cJSON *src = sb_json_parse(src_json, strlen(src_json));
    assert_non_null(src);
    cJSON *o = sb_status_event_payload(src, job_id, status, ts);
    assert_non_null(o);
    char *want = sb_json_print(o);
    assert_non_null(want);
    size_t n = strlen(want);
    char *buf = malloc(n + 64);
    assert_int_equal(sb_status_event_write(src, job_id, status, ts, buf, n + 64), (int)n);
    assert_string_equal(buf, want);
    for (size_t cap = n + 1; cap < n + 6; cap++) { /* tight: the text, or refused */
        int rc = sb_status_event_write(src, job_id, status, ts, buf, cap);
        if (rc != SB_ENOMEM) {
            assert_int_equal(rc, (int)n);
            assert_string_equal(buf, want);
        }
    }
    for (size_t cap = 0; cap <= n; cap++) { /* too small: refused, nothing past cap */
        char *small = malloc(cap ? cap : 1);
        assert_int_equal(sb_status_event_write(src, job_id, status, ts, small, cap), SB_ENOMEM);
        free(small);
    }
    free(buf);
    free(want);
    cJSON_Delete(o);
    cJSON_Delete(src);
}

static void test_plain(void **state) {
    (void)state;
    check_same("{\"jobId\":\"1-a\",\"status\":\"processing\",\"userId\":\"U\"}", "1-a",
               "processing", "2026-11-24T10:00:00.000Z");
    check_same("{}", "", "done", "");
}

static void test_escapes(void **state) {
    (void)state;
    char all[40];
    for (int i = 1; i < 32; i++) all[i - 1] = (char)i; /* every control character */
    strcpy(all + 31, "\"\\/\x7f");
    check_same("{}", all, "error", "t\"s\\");
    check_same("{}", "caf\xc3\xa9 \xe2\x82\xac \xff", "done", "\x01");
}

static void test_copied_values(void **state) {
    (void)state;
    check_same("{\"result\":{\"success\":true,\"fee\":20,\"remainingAmount\":980.5,"
               "\"processedAt\":\"x\",\"list\":[1,2.5e-7,-3,\"a\\nb\",null,false],"
               "\"nested\":{\"deep\":{\"x\":[]}},\"big\":12345678901234567890}}",
               "2-b", "done", "2026-11-24T10:00:00.000Z");
    check_same("{\"error\":\"boom \\\"quoted\\\"\\t\",\"details\":\"retry 1/3\"}", "3-c",
               "processing", "ts");
    check_same("{\"result\":null,\"error\":null,\"details\":null}", "4-d", "done", "ts");
    check_same("{\"result\":\"s\",\"error\":7,\"details\":{\"a\":1}}", "5-e", "error", "ts");
    check_same("{\"result\":0.1,\"error\":[],\"details\":{}}", "6-f", "error", "ts");
}

/* The attempts count an agent published reaches the client (issue #15), in both ways. */
static void test_attempts_forwarded(void **state) {
    (void)state;
    const char *src_json = "{\"jobId\":\"7-a\",\"status\":\"processing\",\"userId\":\"U\","
                           "\"details\":\"retry 2/3\",\"attempts\":2}";
    const char *want = "{\"jobId\":\"7-a\",\"status\":\"processing\",\"details\":\"retry "
                       "2/3\",\"attempts\":2,\"timestamp\":\"ts\"}";
    cJSON *src = sb_json_parse(src_json, strlen(src_json));
    char buf[256];
    assert_int_equal(sb_status_event_write(src, "7-a", "processing", "ts", buf, sizeof buf),
                     (int)strlen(want));
    assert_string_equal(buf, want);
    cJSON *o = sb_status_event_payload(src, "7-a", "processing", "ts");
    char *text = sb_json_print(o);
    assert_string_equal(text, want);
    free(text);
    cJSON_Delete(o);
    cJSON_Delete(src);
    check_same("{\"attempts\":null}", "8-b", "done", "ts");
}

static void test_large_result(void **state) {
    (void)state;
    size_t n = 20000;
    char *src = malloc(n + 32);
    int k = snprintf(src, n + 32, "{\"result\":\"");
    memset(src + k, 'x', n);
    strcpy(src + k + n, "\"}");
    cJSON *root = sb_json_parse(src, strlen(src));
    assert_non_null(root);
    char buf[2048];
    assert_int_equal(sb_status_event_write(root, "j", "done", "ts", buf, sizeof buf), SB_ENOMEM);
    cJSON_Delete(root);
    check_same(src, "j", "done", "ts"); /* a big enough buffer still takes it */
    free(src);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_copied_values),
        cmocka_unit_test(test_attempts_forwarded),
        cmocka_unit_test(test_large_result),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
