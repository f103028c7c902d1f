/* Unit tests of the keyed token buckets (src/gateway/ratemap.c) on a fake clock: a burst then
 * refusals, the refill, keys independent of each other, a debt charged after the fact, no
 * limit at burst 0, entries of refilled buckets swept away, and failing open past max_keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>

#include "gateway/ratemap.h"

static void test_burst_then_refill(void **state) {
    (void)state;
    sb_ratemap_t *m = sb_ratemap_create(3, 60000, 0); /* 3 a minute: one per 20 s */
    assert_non_null(m);
    for (int i = 0; i < 3; i++) assert_int_equal(sb_ratemap_take(m, "alice", 1, 1000), 1);
    assert_int_equal(sb_ratemap_take(m, "alice", 1, 1000), 0);
    assert_int_equal(sb_ratemap_take(m, "alice", 1, 20999), 0); /* 0.99 token: not yet */
    assert_int_equal(sb_ratemap_take(m, "alice", 1, 21000), 1); /* exactly one back */
    assert_int_equal(sb_ratemap_take(m, "alice", 1, 21000), 0);
    assert_int_equal(sb_ratemap_take(m, "bob", 1, 21000), 1); /* keys are independent */
    sb_ratemap_free(m);
}

static void test_debt(void **state) {
    (void)state;
    sb_ratemap_t *m = sb_ratemap_create(1000, 60000, 0);
    assert_int_equal(sb_ratemap_take(m, "u", 0, 0), 1);
    sb_ratemap_charge(m, "u", 1500, 0); /* learned afterwards: 500 in debt */
    assert_int_equal(sb_ratemap_take(m, "u", 0, 0), 0);
    assert_int_equal(sb_ratemap_take(m, "u", 0, 30000), 0); /* back to exactly 0 */
    assert_int_equal(sb_ratemap_take(m, "u", 0, 30060), 1);
    sb_ratemap_charge(m, "u", 1e9, 30060); /* a debt is capped at one period */
    assert_int_equal(sb_ratemap_take(m, "u", 0, 30060 + 120001), 1);
    sb_ratemap_free(m);
}

static void test_unlimited(void **state) {
    (void)state;
    sb_ratemap_t *m = sb_ratemap_create(0, 60000, 0);
    for (int i = 0; i < 10000; i++) assert_int_equal(sb_ratemap_take(m, "x", 1, 0), 1);
    sb_ratemap_charge(m, "x", 1e9, 0);
    assert_int_equal(sb_ratemap_keys(m), 0);
    sb_ratemap_free(m);
    assert_null(sb_ratemap_create(10, 0, 0));
    sb_ratemap_free(NULL);
}

static void test_sweep_and_overflow(void **state) {
    (void)state;
    char key[32];
    sb_ratemap_t *m = sb_ratemap_create(2, 1000, 100);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "10.0.0.%d", i);
        assert_int_equal(sb_ratemap_take(m, key, 1, 0), 1);
    }
    assert_int_equal(sb_ratemap_keys(m), 100);
    /* full: a new key is allowed without an entry, and counted */
    assert_int_equal(sb_ratemap_take(m, "new", 1, 0), 1);
    assert_int_equal(sb_ratemap_overflows(m), 1);
    /* once every bucket has refilled, takes sweep the entries away, two chains each */
    for (int i = 0; i < 64; i++) sb_ratemap_take(m, "late", 1, 5000);
    assert_int_equal(sb_ratemap_keys(m), 1); /* only "late" is left */
    sb_ratemap_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refill),
        cmocka_unit_test(test_debt),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_sweep_and_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
