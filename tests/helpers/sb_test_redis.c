/* A private redis-server for C tests: see sb_test_redis.h. */
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

void sb_test_redis_flush(sb_test_redis_t *t) {
    sb_redis_t *r = sb_test_redis_client(t);
    redisReply *rep = r ? sb_redis_cmd(r, "FLUSHALL") : NULL;
    if (rep) freeReplyObject(rep);
    sb_redis_free(r);
}
