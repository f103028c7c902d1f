/* Test helper: a private redis-server per test binary.
 *
 * sb_test_redis_start() forks redis-server on a unix socket in a fresh mktemp directory (no
 * persistence unless asked), waits until it answers PING, and fills an sb_redis_addr_t for
 * it. sb_test_redis_stop() kills it and removes the directory. Restart keeps the directory,
 * so with AOF on the data survives. sb_test_redis_reset() is every test's setup and teardown;
 * sb_test_run() runs a binary's tests, filtered or reversed on request. */
#ifndef SB_TEST_REDIS_H
#define SB_TEST_REDIS_H

#include <sys/types.h>
#include "switchboard/config.h"
#include "switchboard/redis.h"

struct CMUnitTest; /* cmocka.h */

typedef struct {
    pid_t pid;
    char dir[256];
    char sock[300];
    int aof;               /* appendonly yes when set before start */
    sb_redis_addr_t addr;  /* points at sock */
    char url[320];         /* unix:///... for child processes */
} sb_test_redis_t;

/* Returns 0, or -1 (the test should fail). */
int sb_test_redis_start(sb_test_redis_t *t);
void sb_test_redis_stop(sb_test_redis_t *t);
/* Kills (SIGKILL) and starts again on the same socket and directory. */
int sb_test_redis_restart(sb_test_redis_t *t);
/* A connected client (test owns it), or NULL. */
sb_redis_t *sb_test_redis_client(sb_test_redis_t *t);
/* FLUSHALL. Returns 0, or -1 (printed on stderr) when Redis did not answer OK. */
int sb_test_redis_flush(sb_test_redis_t *t);
/* Puts the server back as it started, for a test's setup and teardown: FLUSHALL, SCRIPT FLUSH
 * and the configuration tests change (notify-keyspace-events, busy-reply-threshold) back to
 * the defaults, and removes a snapshot a test saved (dump.rdb), so that no test depends on what
 * ran before it. Returns 0, or -1 (printed on
 * stderr; cmocka then fails the test). */
int sb_test_redis_reset(sb_test_redis_t *t);
/* Runs tests (n of them) as cmocka group `name`, after two environment switches for checking
 * that tests do not depend on their order: SB_TEST_FILTER=PATTERN runs only the tests whose name
 * matches (cmocka_set_test_filter: `*` and `?` wildcards), SB_TEST_ORDER=reverse runs them last
 * to first. Returns cmocka's result (0: all passed). tests is reordered in place. */
int sb_test_run(const char *name, struct CMUnitTest *tests, size_t n);

#endif
