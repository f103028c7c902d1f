/* A private redis-server for C tests: see sb_test_redis.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "sb_test_redis.h"
#include "switchboard/clock.h"

static int sb_test_redis_spawn(sb_test_redis_t *t) {
    const char *bin = getenv("SB_REDIS_SERVER");
    if (!bin) bin = "redis-server";
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        /* only async-signal-safe calls here: the test process may have threads */
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test binary */
        execlp(bin, bin, "--port", "0", "--unixsocket", t->sock, "--dir", t->dir, "--save", "",
               "--appendonly", t->aof ? "yes" : "no", "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    t->pid = pid;
    /* wait until it answers: an event (PING succeeds), bounded to 10 s */
    sb_redis_t *r = sb_redis_create(&t->addr, "test");
    char err[128];
    int64_t deadline = sb_mono_ms() + 10000;
    int ok = 0;
    while (!ok && sb_mono_ms() < deadline) {
        if (sb_redis_connect(r, err, sizeof err) == 0) {
            redisReply *rep = sb_redis_cmd(r, "PING");
            ok = rep && rep->type == REDIS_REPLY_STATUS;
            if (rep) freeReplyObject(rep);
        }
        if (!ok) sb_sleep_ms(10, NULL);
    }
    sb_redis_free(r);
    return ok ? 0 : -1;
}

int sb_test_redis_start(sb_test_redis_t *t) {
    snprintf(t->dir, sizeof t->dir, "/tmp/sb-test-XXXXXX");
    if (!mkdtemp(t->dir)) return -1;
    snprintf(t->sock, sizeof t->sock, "%s/redis.sock", t->dir);
    snprintf(t->url, sizeof t->url, "unix://%s", t->sock);
    memset(&t->addr, 0, sizeof t->addr);
    t->addr.unix_path = t->sock;
    return sb_test_redis_spawn(t);
}

static void sb_test_redis_kill(sb_test_redis_t *t) {
    if (t->pid > 0) {
        kill(t->pid, SIGKILL);
        waitpid(t->pid, NULL, 0);
        t->pid = 0;
    }
}

int sb_test_redis_restart(sb_test_redis_t *t) {
    sb_test_redis_kill(t);
    unlink(t->sock);
    return sb_test_redis_spawn(t);
}

void sb_test_redis_stop(sb_test_redis_t *t) {
    char cmd[300];
    sb_test_redis_kill(t);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    if (t->dir[0]) (void)!system(cmd);
}

sb_redis_t *sb_test_redis_client(sb_test_redis_t *t) {
    char err[128];
    sb_redis_t *r = sb_redis_create(&t->addr, "test");
    if (r && sb_redis_connect(r, err, sizeof err) != 0) {
        sb_redis_free(r);
        return NULL;
    }
    return r;
}

/* One command of a reset: a format with at most one %s, and its argument. */
typedef struct {
    const char *fmt;
    const char *arg;
} sb_test_cmd_t;

/* Runs each command of cmds (up to one with fmt NULL) on a new client; 0 when every reply is
 * OK, else -1 with the command and the reply on stderr. */
static int sb_test_redis_all_ok(sb_test_redis_t *t, const sb_test_cmd_t *cmds) {
    sb_redis_t *r = sb_test_redis_client(t);
    int rc = r ? 0 : -1;
    if (!r) fprintf(stderr, "test redis: cannot connect to %s\n", t->sock);
    for (const sb_test_cmd_t *c = cmds; r && c->fmt; c++) {
        redisReply *rep = sb_redis_cmd(r, c->fmt, c->arg);
        if (!rep || rep->type != REDIS_REPLY_STATUS || strcmp(rep->str, "OK") != 0) {
            fprintf(stderr, "test redis: %s (%s): %s\n", c->fmt, c->arg ? c->arg : "",
                    rep && rep->str ? rep->str : "no reply");
            rc = -1;
        }
        if (rep) freeReplyObject(rep);
    }
    sb_redis_free(r);
    return rc;
}

int sb_test_redis_flush(sb_test_redis_t *t) {
    static const sb_test_cmd_t cmds[] = {{"FLUSHALL", NULL}, {NULL, NULL}};
    return sb_test_redis_all_ok(t, cmds);
}

int sb_test_redis_reset(sb_test_redis_t *t) {
    static const sb_test_cmd_t cmds[] = {
        {"REPLICAOF NO ONE", NULL}, /* a master, as started */
        {"FLUSHALL", NULL},
        {"SCRIPT FLUSH", NULL},
        {"CONFIG SET notify-keyspace-events %s", ""}, /* the default: none */
        {"CONFIG SET busy-reply-threshold %s", "5000"},
        {NULL, NULL},
    };
    char dump[320];
    snprintf(dump, sizeof dump, "%s/dump.rdb", t->dir);
    unlink(dump); /* a test's SAVE: the next restart must not load it */
    return sb_test_redis_all_ok(t, cmds);
}

int sb_test_run(const char *name, struct CMUnitTest *tests, size_t n) {
    const char *filter = getenv("SB_TEST_FILTER");
    const char *order = getenv("SB_TEST_ORDER");
    if (filter && *filter) cmocka_set_test_filter(filter);
    if (order && !strcmp(order, "reverse")) {
        for (size_t i = 0; i < n / 2; i++) {
            struct CMUnitTest tmp = tests[i];
            tests[i] = tests[n - 1 - i];
            tests[n - 1 - i] = tmp;
        }
    }
    return _cmocka_run_group_tests(name, tests, n, NULL, NULL);
}
