/* Unit tests of the route matcher (404 / 405 + Allow / parameters / API prefixes) and of the
 * Prometheus text writer (escaping, numbers, histogram lines). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/router.h"
#include "switchboard/switchboard.h"

static const sb_route_t table[] = {
    {SB_HTTP_POST, "/agent/{type}", "create"},
    {SB_HTTP_GET, "/agent/{type}/jobs", "list"},
    {SB_HTTP_GET, "/agent/{type}/{jobId}", "get"},
    {SB_HTTP_GET, "/rebalance/{jobId}", "rebalance"},
    {SB_HTTP_GET, "/healthz", "healthz"},
    {SB_HTTP_DELETE, "/healthz", "healthz-delete"},
};
#define N (sizeof table / sizeof table[0])

static const char *route_of(int method, const char *path, sb_route_rc_t want,
                            sb_route_match_t *m) {
    assert_int_equal(sb_route_match(table, N, method, path, m), want);
    return m->route ? m->route->data : NULL;
}

static void test_match_params(void **state) {
    (void)state;
    sb_route_match_t m;
    assert_string_equal(route_of(SB_HTTP_POST, "/agent/rebalance", SB_ROUTE_FOUND, &m), "create");
    assert_string_equal(sb_route_param(&m, "type"), "rebalance");
    assert_null(sb_route_param(&m, "jobId"));
    assert_string_equal(route_of(SB_HTTP_GET, "/agent/rebalance/1731304200000-a7f3e2c1",
                                 SB_ROUTE_FOUND, &m), "get");
    assert_string_equal(sb_route_param(&m, "type"), "rebalance");
    assert_string_equal(sb_route_param(&m, "jobId"), "1731304200000-a7f3e2c1");
    assert_int_equal(m.nparams, 2);
    assert_string_equal(route_of(SB_HTTP_GET, "/rebalance/x", SB_ROUTE_FOUND, &m), "rebalance");
}

static void test_literal_row_first(void **state) {
    (void)state;
    sb_route_match_t m;
    assert_string_equal(route_of(SB_HTTP_GET, "/agent/report/jobs", SB_ROUTE_FOUND, &m), "list");
    assert_int_equal(m.nparams, 1);
}

static void test_not_found(void **state) {
    (void)state;
    sb_route_match_t m;
    const char *paths[] = {"/", "", "agent/x", "/agent", "/agent/x/y/z", "/agent//jobs",
                           "/agent/x/", "/healthz/", "/HEALTHZ", "//healthz", "/nope"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        assert_null(route_of(SB_HTTP_GET, paths[i], SB_ROUTE_NOT_FOUND, &m));
        assert_int_equal(m.allowed, 0);
    }
    assert_int_equal(sb_route_match(table, N, SB_HTTP_GET, NULL, &m), SB_ROUTE_NOT_FOUND);
    char long_seg[400];
    memset(long_seg, 'a', sizeof long_seg);
    memcpy(long_seg, "/rebalance/", 11);
    long_seg[sizeof long_seg - 1] = '\0';
    assert_null(route_of(SB_HTTP_GET, long_seg, SB_ROUTE_NOT_FOUND, &m));
    char deep[200] = "";
    for (int i = 0; i < 20; i++) strcat(deep, "/a");
    assert_null(route_of(SB_HTTP_GET, deep, SB_ROUTE_NOT_FOUND, &m));
}

static void test_bad_method(void **state) {
    (void)state;
    sb_route_match_t m;
    char buf[64];
    assert_null(route_of(SB_HTTP_GET, "/agent/rebalance", SB_ROUTE_BAD_METHOD, &m));
    assert_int_equal(m.allowed, SB_HTTP_POST);
    assert_string_equal(sb_http_methods_str(m.allowed, buf, sizeof buf), "POST");
    assert_null(route_of(SB_HTTP_PUT, "/healthz", SB_ROUTE_BAD_METHOD, &m));
    assert_string_equal(sb_http_methods_str(m.allowed, buf, sizeof buf), "GET, DELETE");
    assert_null(route_of(SB_HTTP_POST, "/agent/x/jobs", SB_ROUTE_BAD_METHOD, &m));
    assert_int_equal(m.allowed, SB_HTTP_GET);
    assert_int_equal(m.nparams, 0);
    assert_string_equal(route_of(SB_HTTP_DELETE, "/healthz", SB_ROUTE_FOUND, &m),
                        "healthz-delete");
    assert_int_equal(m.allowed, SB_HTTP_GET | SB_HTTP_DELETE);
}

static void test_api_prefixes_and_methods(void **state) {
    (void)state;
    assert_string_equal(sb_route_api_path("/api/v1/agent/x"), "/agent/x");
    assert_string_equal(sb_route_api_path("/api/agent/x"), "/agent/x");
    assert_string_equal(sb_route_api_path("/api/v1"), "/");
    assert_string_equal(sb_route_api_path("/api/v2/agent"), "/v2/agent");
    assert_null(sb_route_api_path("/apix/agent"));
    assert_null(sb_route_api_path("/healthz"));
    assert_int_equal(sb_http_method_parse("GET"), SB_HTTP_GET);
    assert_int_equal(sb_http_method_parse("OPTIONS"), SB_HTTP_OPTIONS);
    assert_int_equal(sb_http_method_parse("get"), 0);
    assert_int_equal(sb_http_method_parse(NULL), 0);
}

/* ---- Prometheus text ------------------------------------------------------------------------ */

static void test_prom_numbers(void **state) {
    (void)state;
    char b[32];
    assert_string_equal(sb_prom_number(10, b, sizeof b), "10");
    assert_string_equal(sb_prom_number(0.005, b, sizeof b), "0.005");
    assert_string_equal(sb_prom_number(0.1, b, sizeof b), "0.1");
    assert_string_equal(sb_prom_number(-3, b, sizeof b), "-3");
    assert_string_equal(sb_prom_number(INFINITY, b, sizeof b), "+Inf");
    assert_string_equal(sb_prom_number(-INFINITY, b, sizeof b), "-Inf");
    assert_string_equal(sb_prom_number(NAN, b, sizeof b), "NaN");
    assert_string_equal(sb_prom_number(1e20, b, sizeof b), "1e+20");
    assert_true(strtod(sb_prom_number(1.0 / 3, b, sizeof b), NULL) == 1.0 / 3);
}

static void test_prom_text(void **state) {
    (void)state;
    sb_prom_t p;
    sb_prom_init(&p);
    sb_prom_family(&p, "x_total", "counter", "Help with \\ and\nnewline.");
    sb_prom_label_t l[2] = {{"a", "q\"uote\\back\nline"}, {"b", "2"}};
    sb_prom_sample(&p, "x_total", l, 2, 5);
    sb_prom_sample(&p, "x_total", NULL, 0, 1.5);
    double bounds[2] = {0.5, 1};
    unsigned long long cum[2] = {1, 3};
    sb_prom_label_t r[1] = {{"route", "/x"}};
    sb_prom_histogram(&p, "h_seconds", r, 1, bounds, cum, 2, 2.25, 4);
    sb_prom_single(&p, "up", "gauge", "One sample.", 1);
    size_t len;
    const char *text = sb_prom_text(&p, &len);
    const char *want =
        "# HELP x_total Help with \\\\ and\\nnewline.\n"
        "# TYPE x_total counter\n"
        "x_total{a=\"q\\\"uote\\\\back\\nline\",b=\"2\"} 5\n"
        "x_total 1.5\n"
        "h_seconds_bucket{route=\"/x\",le=\"0.5\"} 1\n"
        "h_seconds_bucket{route=\"/x\",le=\"1\"} 3\n"
        "h_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4\n"
        "h_seconds_sum{route=\"/x\"} 2.25\n"
        "h_seconds_count{route=\"/x\"} 4\n"
        "# HELP up One sample.\n"
        "# TYPE up gauge\n"
        "up 1\n";
    assert_string_equal(text, want);
    assert_int_equal(len, strlen(want));
    sb_prom_close(&p);
    sb_prom_close(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_params),
        cmocka_unit_test(test_literal_row_first),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_bad_method),
        cmocka_unit_test(test_api_prefixes_and_methods),
        cmocka_unit_test(test_prom_numbers),
        cmocka_unit_test(test_prom_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
