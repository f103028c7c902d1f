/* Unit tests of room membership (src/gateway/socketio/rooms.c): join / leave / idempotence, rooms
 * freed when empty, name limits, members in many rooms, integrity after thousands of random
 * leaves (every member seen exactly once by the fan-out walk), a 50k-member room and the walk
 * over room names by prefix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/socketio/rooms.h"
#include "switchboard/error.h"

static void count_cb(void *ud, uint64_t id) {
    (void)id;
    (*(uint32_t *)ud)++;
}

static void count_cb_any(void *ud, const char *name) {
    (void)name;
    (*(uint32_t *)ud)++;
}

static void count_name_cb(void *ud, const char *name) {
    assert_int_equal(strncmp(name, "user:", 5), 0);
    (*(uint32_t *)ud)++;
}

static void test_join_leave(void **state) {
    (void)state;
    sb_rooms_t *r = sb_rooms_create();
    sb_rooms_member_t a, b;
    sb_rooms_member_init(&a, 1);
    sb_rooms_member_init(&b, 2);
    assert_int_equal(sb_rooms_join(r, &a, "user:PK"), 0);
    assert_int_equal(sb_rooms_join(r, &a, "user:PK"), 0); /* idempotent */
    assert_int_equal(sb_rooms_join(r, &b, "user:PK"), 0);
    assert_int_equal(sb_rooms_join(r, &b, "admins"), 0);
    assert_int_equal(sb_rooms_size(r, "user:PK"), 2);
    assert_int_equal(sb_rooms_size(r, "admins"), 1);
    assert_int_equal(sb_rooms_count(r), 2);
    assert_true(sb_rooms_has(r, &a, "user:PK"));
    assert_false(sb_rooms_has(r, &a, "admins"));
    assert_int_equal(sb_rooms_leave(r, &a, "admins"), SB_ENOTFOUND);
    assert_int_equal(sb_rooms_leave(r, &a, "nowhere"), SB_ENOTFOUND);
    assert_int_equal(sb_rooms_leave(r, &a, "user:PK"), 0);
    assert_int_equal(sb_rooms_size(r, "user:PK"), 1);
    uint32_t n = 0;
    assert_int_equal(sb_rooms_each(r, "user:PK", count_cb, &n), 1);
    assert_int_equal(n, 1);
    sb_rooms_leave_all(r, &b);
    assert_int_equal(sb_rooms_count(r), 0); /* empty rooms are freed */
    assert_int_equal(sb_rooms_size(r, "user:PK"), 0);
    assert_int_equal(sb_rooms_each(r, "user:PK", count_cb, &n), 0);
    sb_rooms_leave_all(r, &a);
    sb_rooms_free(r);
}

static void test_names(void **state) {
    (void)state;
    sb_rooms_t *r = sb_rooms_create();
    sb_rooms_member_t a;
    sb_rooms_member_init(&a, 1);
    char long_name[SB_ROOMS_NAME_MAX + 2];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_int_equal(sb_rooms_join(r, &a, ""), SB_EINVAL);
    assert_int_equal(sb_rooms_join(r, &a, long_name), SB_EINVAL);
    long_name[SB_ROOMS_NAME_MAX] = '\0';
    assert_int_equal(sb_rooms_join(r, &a, long_name), 0);
    assert_int_equal(sb_rooms_size(r, long_name), 1);
    assert_int_equal(sb_rooms_size(r, ""), 0);
    /* names that differ only after a common prefix are different rooms */
    assert_int_equal(sb_rooms_join(r, &a, "user:a"), 0);
    assert_int_equal(sb_rooms_join(r, &a, "user:ab"), 0);
    assert_int_equal(sb_rooms_size(r, "user:a"), 1);
    assert_int_equal(sb_rooms_count(r), 3);
    sb_rooms_leave_all(r, &a);
    sb_rooms_free(r);
}

typedef struct seen {
    uint8_t *hits;
    uint32_t n;
} seen_t;

static void seen_cb(void *ud, uint64_t id) {
    seen_t *s = ud;
    s->hits[id]++;
    s->n++;
}

/* Members in several rooms, removed in a scrambled order: after each step the walk must see
 * exactly the members still in the room, once each. */
static void test_integrity_random_leaves(void **state) {
    (void)state;
    enum { N = 3000, ROOMS = 7 };
    sb_rooms_t *r = sb_rooms_create();
    sb_rooms_member_t *m = calloc(N, sizeof *m);
    char name[32];
    for (uint32_t i = 0; i < N; i++) {
        sb_rooms_member_init(&m[i], i);
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "room%u", (i + (uint32_t)k * 3) % ROOMS);
            assert_int_equal(sb_rooms_join(r, &m[i], name), 0);
        }
    }
    uint8_t *gone = calloc(N, 1);
    seen_t s = {calloc(N, 1), 0};
    uint32_t x = 12345;
    for (uint32_t step = 0; step < N; step++) {
        x = x * 1103515245u + 12345u;
        uint32_t i = (x >> 8) % N;
        while (gone[i]) i = (i + 1) % N;
        if (step % 2) sb_rooms_leave_all(r, &m[i]);
        else
            while (m[i].n) { /* leave one room at a time by name */
                for (int k = 0; k < ROOMS; k++) {
                    snprintf(name, sizeof name, "room%d", k);
                    if (sb_rooms_has(r, &m[i], name)) break;
                }
                assert_int_equal(sb_rooms_leave(r, &m[i], name), 0);
            }
        gone[i] = 1;
        if (step % 97) continue;
        for (int k = 0; k < ROOMS; k++) {
            snprintf(name, sizeof name, "room%d", k);
            memset(s.hits, 0, N);
            s.n = 0;
            uint32_t n = sb_rooms_each(r, name, seen_cb, &s);
            assert_int_equal(n, s.n);
            for (uint32_t j = 0; j < N; j++) {
                assert_true(s.hits[j] <= 1);
                if (gone[j]) assert_int_equal(s.hits[j], 0);
                else assert_int_equal(s.hits[j], sb_rooms_has(r, &m[j], name));
            }
        }
    }
    assert_int_equal(sb_rooms_count(r), 0);
    for (uint32_t i = 0; i < N; i++) sb_rooms_leave_all(r, &m[i]);
    free(s.hits);
    free(gone);
    free(m);
    sb_rooms_free(r);
}

static void test_big_room(void **state) {
    (void)state;
    enum { N = 50000 };
    sb_rooms_t *r = sb_rooms_create();
    sb_rooms_member_t *m = calloc(N, sizeof *m);
    char name[32];
    for (uint32_t i = 0; i < N; i++) {
        sb_rooms_member_init(&m[i], i);
        assert_int_equal(sb_rooms_join(r, &m[i], "admins"), 0);
        snprintf(name, sizeof name, "user:%u", i);
        assert_int_equal(sb_rooms_join(r, &m[i], name), 0);
    }
    assert_int_equal(sb_rooms_count(r), N + 1);
    uint32_t n = 0;
    assert_int_equal(sb_rooms_each(r, "admins", count_cb, &n), N);
    assert_int_equal(sb_rooms_size(r, "user:49999"), 1);
    for (uint32_t i = 0; i < N; i += 2) sb_rooms_leave_all(r, &m[i]);
    assert_int_equal(sb_rooms_size(r, "admins"), N / 2);
    n = 0; /* the rooms user:* by name, emptied ones gone */
    assert_int_equal(sb_rooms_each_name(r, "user:", count_name_cb, &n), N / 2);
    assert_int_equal(n, N / 2);
    n = 0;
    assert_int_equal(sb_rooms_each_name(r, "", count_cb_any, &n), N / 2 + 1);
    assert_int_equal(sb_rooms_count(r), N / 2 + 1);
    for (uint32_t i = 0; i < N; i++) sb_rooms_leave_all(r, &m[i]);
    free(m);
    sb_rooms_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_leave),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_integrity_random_leaves),
        cmocka_unit_test(test_big_room),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
