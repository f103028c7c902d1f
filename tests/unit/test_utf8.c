/* Unit tests of utf8.h: the edge cases of Unicode Table 3-7 one by one, every sequence of up
 * to three bytes and every four-byte sequence with a lead F0..F7 checked against glibc's iconv
 * (an independent strict decoder) as the reference; repair with U+FFFD; JSON trees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/utf8.h"

static int valid(const char *s) { return sb_utf8_valid(s, strlen(s)); }

static void test_utf8_edges(void **state) {
    (void)state;
    const char *good[] = {
        "", "plain ascii", "\x7f", "\xc2\x80", "\xdf\xbf", "caf\xc3\xa9",
        "\xe0\xa0\x80",          /* U+0800, the first three-byte code point */
        "\xed\x9f\xbf",          /* U+D7FF, just below the surrogates */
        "\xee\x80\x80",          /* U+E000, just above them */
        "\xef\xbf\xbf",          /* U+FFFF */
        "\xf0\x90\x80\x80",      /* U+10000 */
        "\xf4\x8f\xbf\xbf",      /* U+10FFFF, the last code point */
        "\xf0\x9f\x98\x80 emoji after eight ascii bytes \xe2\x82\xac",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_true(valid(good[i]));
    const char *bad[] = {
        "\x80", "\xbf", "abc\x80",           /* stray continuation bytes */
        "\xc0\x80", "\xc1\xbf",              /* overlong two-byte (C0 80 is "modified" NUL) */
        "\xe0\x80\x80", "\xe0\x9f\xbf",      /* overlong three-byte */
        "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf", /* overlong four-byte */
        "\xed\xa0\x80", "\xed\xbf\xbf",      /* surrogates U+D800, U+DFFF */
        "\xed\xa0\xbd\xed\xb8\x80",          /* a CESU-8 surrogate pair */
        "\xf4\x90\x80\x80",                  /* U+110000 */
        "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80", "\xfe", "\xff",
        "\xc3", "\xe2\x82", "\xf0\x9f\x98",  /* truncated */
        "\xc3(", "\xe2\x28\xa1", "\xf0\x9f\x28\x80", /* bad continuation */
        "12345678\xc3",                      /* truncated after the eight-byte ASCII path */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(valid(bad[i]));
    }
    assert_true(sb_utf8_valid("a\0b", 3)); /* U+0000 is UTF-8; C-string callers refuse it */
    assert_true(sb_utf8_valid(NULL, 0));
    assert_false(sb_utf8_valid("\xe2\x82\xac", 2)); /* the length is what counts */
}

/* iconv's verdict: 1 when the whole of s converts from UTF-8. */
static int iconv_valid(iconv_t cd, const unsigned char *s, size_t len) {
    char out[32];
    char *in = (char *)s, *o = out;
    size_t il = len, ol = sizeof out;
    iconv(cd, NULL, NULL, NULL, NULL);
    return iconv(cd, &in, &il, &o, &ol) != (size_t)-1 && il == 0;
}

static void check_against_iconv(iconv_t cd, const unsigned char *s, size_t len) {
    int want = iconv_valid(cd, s, len);
    if (sb_utf8_valid((const char *)s, len) != want)
        fail_msg("%zu bytes %02x %02x %02x %02x: iconv says %d", len, s[0], len > 1 ? s[1] : 0,
                 len > 2 ? s[2] : 0, len > 3 ? s[3] : 0, want);
}

static void test_utf8_against_iconv(void **state) {
    (void)state;
    iconv_t cd = iconv_open("UTF-32LE", "UTF-8");
    assert_true(cd != (iconv_t)-1);
    unsigned char s[4];
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (unsigned char)a;
        check_against_iconv(cd, s, 1);
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            check_against_iconv(cd, s, 2);
            if (a < 0xe0 || a > 0xef) continue; /* three-byte leads; others fail at byte 1-2 */
            for (unsigned c = 0; c < 256; c++) {
                s[2] = (unsigned char)c;
                check_against_iconv(cd, s, 3);
            }
        }
    }
    for (unsigned a = 0xf0; a < 0xf8; a++) /* four-byte leads, continuation bytes varied */
        for (unsigned b = 0x70; b < 0xd0; b++)
            for (unsigned c = 0x70; c < 0xd0; c += 7)
                for (unsigned d = 0x70; d < 0xd0; d += 3) {
                    s[0] = (unsigned char)a, s[1] = (unsigned char)b;
                    s[2] = (unsigned char)c, s[3] = (unsigned char)d;
                    check_against_iconv(cd, s, 4);
                }
    iconv_close(cd);
}

#define V(s) sb_utf8_valid((s), sizeof(s) - 1)

static void test_valid_and_invalid(void **state) {
    (void)state;
    assert_true(V(""));
    assert_true(V("plain ascii"));
    assert_true(V("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")); /* é € 😀 */
    assert_true(V("\xed\x9f\xbf"));                            /* U+D7FF */
    assert_true(V("\xf4\x8f\xbf\xbf"));                        /* U+10FFFF */
    assert_false(V("\xff"));
    assert_false(V("\x80"));                 /* a lone continuation byte */
    assert_false(V("\xc0\x80"));             /* overlong NUL */
    assert_false(V("\xc1\xbf"));
    assert_false(V("\xe0\x80\x80"));         /* overlong */
    assert_false(V("\xed\xa0\x80"));         /* surrogate U+D800 */
    assert_false(V("\xf0\x80\x80\x80"));     /* overlong */
    assert_false(V("\xf4\x90\x80\x80"));     /* U+110000 */
    assert_false(V("\xf5\x80\x80\x80"));
    assert_false(V("\xe2\x82"));             /* truncated */
    assert_false(V("ok\xe2\x82" "x"));
}

static void test_sanitize(void **state) {
    (void)state;
    char out[64];
    assert_int_equal(sb_utf8_sanitize(out, sizeof out, "caf\xc3\xa9"), 5);
    assert_string_equal(out, "caf\xc3\xa9");
    /* one U+FFFD per byte that starts nothing, one per character that breaks off */
    sb_utf8_sanitize(out, sizeof out, "a\xff" "b\xe2\x82" "c\xf0\x9f\x98" "\xed\xa0\x80");
    assert_string_equal(out, "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd"
                             "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    assert_true(sb_utf8_valid(out, strlen(out)));
    /* full: cut at a character boundary, never inside one */
    char small[6];
    sb_utf8_sanitize(small, sizeof small, "ab\xff\xff");
    assert_string_equal(small, "ab\xef\xbf\xbd");
    char buf[8] = "x\xff\xfe\xfdyz";
    sb_utf8_sanitize_buf(buf, sizeof buf);
    assert_string_equal(buf, "x\xef\xbf\xbd\xef\xbf\xbd");
    char ok[8] = "fine";
    sb_utf8_sanitize_buf(ok, sizeof ok);
    assert_string_equal(ok, "fine");
}

static void test_json_trees(void **state) {
    (void)state;
    assert_true(sb_utf8_json_valid(NULL));
    cJSON *doc = cJSON_Parse("{\"a\":[1,\"caf\xc3\xa9\",{\"b\":null}],\"c\":\"d\"}");
    assert_non_null(doc);
    assert_true(sb_utf8_json_valid(doc));
    cJSON_AddStringToObject(cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "a"), 2), "k", "\xff");
    assert_false(sb_utf8_json_valid(doc)); /* a value deep inside */
    cJSON_Delete(doc);
    doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "bad\xc0\x80key", 1);
    assert_false(sb_utf8_json_valid(doc)); /* a key */
    cJSON_Delete(doc);
    cJSON *s = cJSON_CreateString("\xed\xa0\x80");
    assert_false(sb_utf8_json_valid(s));
    cJSON_Delete(s);
}

/* The repair of JSON text that holds invalid bytes is JSON with the same structure: every
 * ASCII byte (quotes, backslashes, brackets) stays where it was, even right after a sequence
 * that breaks off, and a NUL byte is kept. */
static void test_repair_of_json_text(void **state) {
    (void)state;
    const char text[] = "{\"n\":\"a\xe2\x82\",\"e\":\"\xff\\\"\",\"z\":\"\xed\xa0\x80\"}";
    size_t len = 0;
    char *out = sb_utf8_repair(text, sizeof text - 1, &len);
    assert_non_null(out);
    assert_true(sb_utf8_valid(out, len));
    assert_string_equal(out, "{\"n\":\"a\xef\xbf\xbd\",\"e\":\"\xef\xbf\xbd\\\"\","
                             "\"z\":\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"}");
    cJSON *doc = cJSON_Parse(out);
    assert_non_null(doc);
    assert_string_equal(cJSON_GetObjectItem(doc, "e")->valuestring, "\xef\xbf\xbd\"");
    cJSON_Delete(doc);
    free(out);
    out = sb_utf8_repair("a\0\xff", 3, &len); /* len-bounded: the NUL is data */
    assert_int_equal(len, 5);
    assert_memory_equal(out, "a\0\xef\xbf\xbd", 6);
    free(out);
    out = sb_utf8_repair("", 0, NULL);
    assert_string_equal(out, "");
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_edges),
        cmocka_unit_test(test_utf8_against_iconv),
        cmocka_unit_test(test_valid_and_invalid),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_json_trees),
        cmocka_unit_test(test_repair_of_json_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
