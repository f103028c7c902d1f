/* UTF-8 validation and repair (utf8.h): the RFC 3629 edges (overlong forms, surrogates,
 * beyond U+10FFFF, truncated sequences), repair with U+FFFD, and JSON trees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "switchboard/utf8.h"

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_and_invalid),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_json_trees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
