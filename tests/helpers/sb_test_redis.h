/* Test helper: a private redis-server per test binary.
 *
 * sb_test_redis_start() forks redis-server on a unix socket in a fresh mktemp directory (no
 * persistence unless asked), waits until it answers PING, and fills an sb_redis_addr_t for
 * it. sb_test_redis_stop() kills it and removes the directory. Restart keeps the directory,
 * so with AOF on the data survives. */
#ifndef SB_TEST_REDIS_H
#define SB_TEST_REDIS_H

#include <sys/types.h>
#include "switchboard/config.h"
#include "switchboard/redis.h"

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
/* FLUSHALL. */
void sb_test_redis_flush(sb_test_redis_t *t);

#endif
