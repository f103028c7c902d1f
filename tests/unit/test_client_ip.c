/* client_ip.c: TRUSTED_PROXIES parsing, CIDR matching (IPv4, IPv6, IPv4-mapped), and the
 * client address and scheme behind trusted proxies, including a client that forges its own
 * X-Forwarded-For. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include "gateway/client_ip.h"

static sb_proxies_t proxies(const char *list) {
    sb_proxies_t p;
    char err[256];
    assert_int_equal(sb_proxies_parse(&p, list, err, sizeof err), 0);
    return p;
}

static void test_parse(void **state) {
    (void)state;
    sb_proxies_t p;
    char err[256];
    assert_int_equal(sb_proxies_parse(&p, NULL, err, sizeof err), 0);
    assert_int_equal(p.n, 0);
    assert_int_equal(sb_proxies_parse(&p, " 10.0.0.0/8, ::1 ,192.168.1.7 fd00::/8", err, sizeof err), 0);
    assert_int_equal(p.n, 4);
    const char *bad[] = {"10.0.0.0/33", "10.0.0/8", "::1/129", "10.0.0.0/", "/8", "host.local",
                         "10.0.0.0/8x", "1.2.3.4/-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sb_proxies_parse(&p, bad[i], err, sizeof err), -1);
        assert_non_null(strstr(err, "bad setting TRUSTED_PROXIES"));
        assert_non_null(strstr(err, bad[i]));
        assert_int_equal(p.n, 0);
    }
}

static void test_match(void **state) {
    (void)state;
    sb_proxies_t p = proxies("10.0.0.0/8,172.16.0.0/12,192.168.1.7,fd00::/8");
    assert_true(sb_proxies_trusted(&p, "10.255.1.2"));
    assert_true(sb_proxies_trusted(&p, "172.31.255.255"));
    assert_false(sb_proxies_trusted(&p, "172.32.0.1"));
    assert_true(sb_proxies_trusted(&p, "192.168.1.7"));
    assert_false(sb_proxies_trusted(&p, "192.168.1.8"));
    assert_true(sb_proxies_trusted(&p, "fd12::1"));
    assert_false(sb_proxies_trusted(&p, "fe80::1"));
    assert_true(sb_proxies_trusted(&p, "::ffff:10.1.2.3")); /* IPv4-mapped */
    assert_false(sb_proxies_trusted(&p, "not-an-ip"));
    assert_false(sb_proxies_trusted(&p, ""));
    sb_proxies_t none = proxies("");
    assert_false(sb_proxies_trusted(&none, "10.0.0.1"));
    sb_proxies_t all = proxies("0.0.0.0/0");
    assert_true(sb_proxies_trusted(&all, "203.0.113.9"));
}

static void expect_ip(const sb_proxies_t *p, const char *peer, const char *xff, const char *want) {
    char out[SB_CLIENT_IP_MAX];
    assert_string_equal(sb_client_ip_resolve(p, peer, xff, out, sizeof out), want);
}

static void test_resolve(void **state) {
    (void)state;
    sb_proxies_t p = proxies("127.0.0.1,10.0.0.0/8");
    expect_ip(&p, "127.0.0.1", NULL, "127.0.0.1");                    /* no header */
    expect_ip(&p, "127.0.0.1", "203.0.113.5", "203.0.113.5");         /* one proxy */
    expect_ip(&p, "127.0.0.1", "203.0.113.5, 10.1.1.1", "203.0.113.5"); /* two proxies */
    /* the client forged an entry: only what the proxies appended counts */
    expect_ip(&p, "127.0.0.1", "1.1.1.1, 203.0.113.5", "203.0.113.5");
    /* an untrusted peer's header is ignored */
    expect_ip(&p, "198.51.100.7", "1.1.1.1", "198.51.100.7");
    sb_proxies_t none = proxies(NULL);
    expect_ip(&none, "127.0.0.1", "1.1.1.1", "127.0.0.1");
    /* garbage in the list: the last address a trusted hop vouched for */
    expect_ip(&p, "127.0.0.1", "evil, 10.2.2.2", "10.2.2.2");
    expect_ip(&p, "127.0.0.1", " , ", "127.0.0.1");
    expect_ip(&p, "127.0.0.1", "2001:db8::1", "2001:db8::1");
    /* every hop trusted: the leftmost */
    expect_ip(&p, "127.0.0.1", "10.0.0.9,10.0.0.8", "10.0.0.9");
}

static void test_proto(void **state) {
    (void)state;
    sb_proxies_t p = proxies("127.0.0.1");
    assert_string_equal(sb_client_proto_resolve(&p, "127.0.0.1", "https", 0), "https");
    assert_string_equal(sb_client_proto_resolve(&p, "127.0.0.1", "HTTP", 1), "http");
    assert_string_equal(sb_client_proto_resolve(&p, "127.0.0.1", "gopher", 0), "http");
    assert_string_equal(sb_client_proto_resolve(&p, "10.0.0.1", "https", 0), "http");
    assert_string_equal(sb_client_proto_resolve(&p, "10.0.0.1", NULL, 1), "https");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse), cmocka_unit_test(test_match),
        cmocka_unit_test(test_resolve), cmocka_unit_test(test_proto)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
