/* Unit tests of the RESP encoder behind sb_batch_addargv: for each input the bytes it appends
 * (sb_batch_cmd, NUL terminator included) must equal what hiredis's redisFormatCommandArgv
 * writes. Inputs: empty strings, binary arguments with NUL and CRLF, argument lengths and
 * argument counts on each side of a decimal digit boundary, the gateway's 23-argument EVALSHA,
 * lens NULL (strlen). Also the errors (argc <= 0, a NULL argument) leave the batch unchanged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/switchboard.h"

enum { MAXARGS = 1000 };

/* The i-th command of b is exactly want (len bytes), NUL-terminated. */
static void expect_cmd(const sb_batch_t *b, size_t i, const char *want, size_t want_len) {
    size_t len;
    const char *got = sb_batch_cmd(b, i, &len);
    assert_int_equal(len, want_len);
    assert_memory_equal(got, want, len);
    assert_int_equal(got[len], '\0');
}

/* Appends the command to a fresh batch and compares its bytes with hiredis's. */
static void expect_hiredis_bytes(int argc, const char **argv, const size_t *lens) {
    sb_batch_t *b = sb_batch_create();
    assert_non_null(b);
    assert_int_equal(sb_batch_addargv(b, argc, argv, lens), SB_OK);
    assert_int_equal(sb_batch_count(b), 1);
    char *want = NULL;
    int wlen = redisFormatCommandArgv(&want, argc, argv, lens);
    assert_true(wlen > 0);
    expect_cmd(b, 0, want, (size_t)wlen);
    redisFreeCommand(want);
    sb_batch_free(b);
}

/* n bytes cycling through every byte value, NUL, CR and LF included. */
static char *binary_bytes(size_t n, unsigned seed) {
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = (char)(unsigned char)(i * 7 + seed);
    return p;
}

static void test_simple_commands(void **state) {
    (void)state;
    const char *ping[] = {"PING"};
    expect_hiredis_bytes(1, ping, NULL);
    const char *set[] = {"SET", "key", "value"};
    expect_hiredis_bytes(3, set, NULL);
    const size_t setl[] = {3, 3, 5};
    expect_hiredis_bytes(3, set, setl);
    const size_t prefixes[] = {1, 2, 0}; /* lens shorter than the strings: only that much */
    expect_hiredis_bytes(3, set, prefixes);
}

static void test_empty_strings(void **state) {
    (void)state;
    const char *argv[] = {"", "", ""};
    expect_hiredis_bytes(1, argv, NULL);
    expect_hiredis_bytes(3, argv, NULL);
    const size_t lens[] = {0, 0, 0};
    expect_hiredis_bytes(3, argv, lens);
    const char *mixed[] = {"SET", "", "v"};
    expect_hiredis_bytes(3, mixed, NULL);
}

static void test_binary_arguments(void **state) {
    (void)state;
    const char *argv[] = {"SET", "k\0ey", "a\r\nb\0c\r\n", "\0", "\r\n", "$3\r\n*1\r\n"};
    const size_t lens[] = {3, 4, 8, 1, 2, 8};
    expect_hiredis_bytes(6, argv, lens);
    char *all = binary_bytes(256, 0);
    const char *av[] = {"SET", all};
    const size_t al[] = {3, 256};
    expect_hiredis_bytes(2, av, al);
    free(all);
}

static void test_length_digit_boundaries(void **state) {
    (void)state;
    static const size_t sizes[] = {0,    1,     9,     10,    11,    99,     100,   101,
                                   999,  1000,  1001,  9999,  10000, 65535,  65536, 65537,
                                   99999, 100000, 1000000};
    enum { N = sizeof sizes / sizeof sizes[0] };
    const char *argv[N + 1] = {"RPUSH"};
    size_t lens[N + 1] = {5};
    for (size_t i = 0; i < N; i++) {
        char *arg = binary_bytes(sizes[i], (unsigned)i);
        const char *one[] = {"SET", arg};
        const size_t onel[] = {3, sizes[i]};
        expect_hiredis_bytes(2, one, onel);
        argv[i + 1] = arg;
        lens[i + 1] = sizes[i];
    }
    expect_hiredis_bytes(N + 1, argv, lens); /* all in one command */
    for (size_t i = 0; i < N; i++) free((char *)argv[i + 1]);
}

static void test_argument_count_boundaries(void **state) {
    (void)state;
    static const char *argv[MAXARGS];
    static size_t lens[MAXARGS];
    static char text[MAXARGS][8];
    for (int i = 0; i < MAXARGS; i++) {
        snprintf(text[i], sizeof text[i], "a%d", i);
        argv[i] = text[i];
        lens[i] = strlen(text[i]);
    }
    static const int counts[] = {1, 2, 9, 10, 11, 40, 99, 100, 101, 999, 1000};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        expect_hiredis_bytes(counts[i], argv, NULL);
        expect_hiredis_bytes(counts[i], argv, lens);
    }
}

/* Mixed sizes as the gateway sends them: a 23-argument EVALSHA of ~1.5 KB, lens NULL and not. */
static void test_gateway_evalsha(void **state) {
    (void)state;
    char *big = malloc(601);
    assert_non_null(big);
    memset(big, 'j', 600);
    big[600] = '\0';
    const char *argv[23] = {"EVALSHA", "0123456789abcdef0123456789abcdef01234567", "3",
                            "sb:job:1731321000123-abcd", "sb:queue:rebalance", "sb:jobs",
                            big};
    for (int i = 7; i < 23; i++) argv[i] = i % 2 ? "1731321000123" : "user-550e8400-e29b";
    expect_hiredis_bytes(23, argv, NULL);
    size_t lens[23];
    for (int i = 0; i < 23; i++) lens[i] = strlen(argv[i]);
    expect_hiredis_bytes(23, argv, lens);
    free(big);
}

/* Several commands in one batch, then reset and reuse: each keeps its own bytes. */
static void test_batch_of_several(void **state) {
    (void)state;
    sb_batch_t *b = sb_batch_create();
    assert_non_null(b);
    const char *argv[] = {"INCR", "a", "INCR", "bb", "INCR", "ccc"};
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 20; i++)
            assert_int_equal(sb_batch_addargv(b, 2, argv + 2 * (i % 3), NULL), SB_OK);
        assert_int_equal(sb_batch_add(b, "GET %s", "x"), SB_OK);
        assert_int_equal(sb_batch_count(b), 21);
        for (size_t i = 0; i < 20; i++) {
            char *want = NULL;
            int wlen = redisFormatCommandArgv(&want, 2, argv + 2 * (i % 3), NULL);
            expect_cmd(b, i, want, (size_t)wlen);
            redisFreeCommand(want);
        }
        static const char want_get[] = "*2\r\n$3\r\nGET\r\n$1\r\nx\r\n";
        expect_cmd(b, 20, want_get, sizeof want_get - 1);
        sb_batch_reset(b);
        assert_int_equal(sb_batch_count(b), 0);
    }
    sb_batch_free(b);
}

static void test_errors_leave_the_batch_unchanged(void **state) {
    (void)state;
    sb_batch_t *b = sb_batch_create();
    assert_non_null(b);
    const char *ok[] = {"PING"};
    assert_int_equal(sb_batch_addargv(b, 1, ok, NULL), SB_OK);
    assert_int_equal(sb_batch_addargv(b, 0, ok, NULL), SB_EINVAL);
    assert_int_equal(sb_batch_addargv(b, -1, ok, NULL), SB_EINVAL);
    assert_int_equal(sb_batch_addargv(b, 1, NULL, NULL), SB_EINVAL);
    const char *hole[] = {"SET", NULL, "v"};
    const size_t lens[] = {3, 0, 1};
    assert_int_equal(sb_batch_addargv(b, 3, hole, NULL), SB_EINVAL);
    assert_int_equal(sb_batch_addargv(b, 3, hole, lens), SB_EINVAL);
    const size_t huge[] = {3, SIZE_MAX - 8, 1};
    const char *set[] = {"SET", "k", "v"};
    assert_int_equal(sb_batch_addargv(b, 3, set, huge), SB_EINVAL);
    const size_t quarter = SIZE_MAX / 4; /* each fits, their sum does not */
    const size_t sum[] = {quarter, quarter, quarter, quarter, quarter, quarter};
    const char *six[] = {"a", "b", "c", "d", "e", "f"};
    assert_int_equal(sb_batch_addargv(b, 6, six, sum), SB_EINVAL);
    assert_int_equal(sb_batch_count(b), 1);
    static const char want[] = "*1\r\n$4\r\nPING\r\n";
    expect_cmd(b, 0, want, sizeof want - 1);
    sb_batch_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_commands),
        cmocka_unit_test(test_empty_strings),
        cmocka_unit_test(test_binary_arguments),
        cmocka_unit_test(test_length_digit_boundaries),
        cmocka_unit_test(test_argument_count_boundaries),
        cmocka_unit_test(test_gateway_evalsha),
        cmocka_unit_test(test_batch_of_several),
        cmocka_unit_test(test_errors_leave_the_batch_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
