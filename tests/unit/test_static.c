/* Unit tests of the dashboard's static files (src/gateway/static.c) on a temporary folder:
 * what is loaded (known extensions, safe names, regular files only, size cap, the vendored
 * socket.io client), the URLs it gets ("/" for index.html), paths refused before lookup
 * (traversal, encodings, backslashes), ETags that follow the content, and a missing folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/static.h"

static void write_file(const char *dir, const char *name, const char *text, size_t len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state) {
    char *dir = strdup("/tmp/sb-static-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char sub[512];
    write_file(dir, "index.html", "<!doctype html>", 15);
    write_file(dir, "app.js", "'use strict';", 13);
    write_file(dir, "style.css", "body{}", 6);
    write_file(dir, "package.json", "{}", 2);        /* not a served extension */
    write_file(dir, ".hidden.js", "x", 1);          /* leading dot */
    write_file(dir, "bad name.js", "x", 1);         /* unsafe character */
    char *big = calloc(1, SB_STATIC_FILE_MAX + 1);
    write_file(dir, "big.js", big, SB_STATIC_FILE_MAX + 1);
    free(big);
    snprintf(sub, sizeof sub, "%s/secret.js", dir);
    assert_int_equal(symlink("/etc/passwd", sub), 0); /* symlinks are not followed */
    snprintf(sub, sizeof sub, "%s/node_modules/socket.io-client/dist", dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", sub);
    assert_int_equal(system(cmd), 0);
    write_file(sub, "socket.io.min.js", "var io;", 7);
    *state = dir;
    return 0;
}

static int teardown(void **state) {
    rm_rf(*state);
    free(*state);
    return 0;
}

static void test_load_and_find(void **state) {
    sb_static_t *s = sb_static_load(*state);
    assert_non_null(s);
    assert_int_equal(sb_static_count(s), 5); /* index twice (/ and /web/index.html), js, css, vendor */
    assert_true(sb_static_has_index(s));
    const sb_static_file_t *f = sb_static_find(s, "/");
    assert_non_null(f);
    assert_string_equal(f->content_type, "text/html; charset=utf-8");
    assert_int_equal(f->len, 15);
    assert_memory_equal(f->data, "<!doctype html>", 15);
    assert_non_null(sb_static_find(s, "/web/index.html"));
    f = sb_static_find(s, "/web/app.js");
    assert_non_null(f);
    assert_string_equal(f->content_type, "text/javascript; charset=utf-8");
    assert_non_null(sb_static_find(s, "/web/style.css"));
    f = sb_static_find(s, "/vendor/socket.io.min.js");
    assert_non_null(f);
    assert_int_equal(f->len, 7);
    sb_static_free(s);
}

static void test_not_served(void **state) {
    sb_static_t *s = sb_static_load(*state);
    static const char *const paths[] = {
        "/web/package.json", "/web/.hidden.js", "/web/bad name.js", "/web/big.js",
        "/web/secret.js", "/web/node_modules/socket.io-client/dist/socket.io.min.js",
        "/index.html", "/web/", "/web", "/app.js", "/socket.io/", "/vendor/socket.io.js", ""};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        assert_null(sb_static_find(s, paths[i]));
    sb_static_free(s);
}

static void test_path_ok(void **state) {
    (void)state;
    assert_true(sb_static_path_ok("/"));
    assert_true(sb_static_path_ok("/web/app.js"));
    static const char *const bad[] = {"", "web/app.js", "/../etc/passwd", "/web/../x",
                                      "/..%2f..%2fetc/passwd", "/web/%2e%2e/x", "/web\\..\\x",
                                      "//etc/passwd", "/web/a..b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) assert_false(sb_static_path_ok(bad[i]));
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    assert_false(sb_static_path_ok(longp));
}

static void test_etag_follows_content(void **state) {
    sb_static_t *s = sb_static_load(*state);
    char first[40];
    snprintf(first, sizeof first, "%s", sb_static_find(s, "/web/app.js")->etag);
    assert_int_equal(first[0], '"');
    sb_static_free(s);
    write_file(*state, "app.js", "'use strict'; ", 14);
    s = sb_static_load(*state);
    assert_string_not_equal(first, sb_static_find(s, "/web/app.js")->etag);
    sb_static_free(s);
    write_file(*state, "app.js", "'use strict';", 13);
    s = sb_static_load(*state);
    assert_string_equal(first, sb_static_find(s, "/web/app.js")->etag);
    sb_static_free(s);
}

static void test_missing_dir(void **state) {
    (void)state;
    sb_static_t *s = sb_static_load("/nonexistent/sb-web");
    assert_non_null(s);
    assert_int_equal(sb_static_count(s), 0);
    assert_false(sb_static_has_index(s));
    assert_null(sb_static_find(s, "/"));
    sb_static_free(s);
    sb_static_free(NULL);
    char buf[4096];
    assert_non_null(sb_static_default_dir(buf, sizeof buf));
    assert_int_equal(buf[0], '/');
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_and_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_served, setup, teardown),
        cmocka_unit_test(test_path_ok),
        cmocka_unit_test_setup_teardown(test_etag_follows_content, setup, teardown),
        cmocka_unit_test(test_missing_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
