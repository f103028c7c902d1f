/* A private Redis Cluster for C tests: see sb_test_cluster.h. */
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "sb_test_cluster.h"
#include "switchboard/clock.h"
#include "switchboard/cluster.h"

#define SB_TEST_CLUSTER_WAIT_MS 30000

/* 1 when port is free on 127.0.0.1 right now (bind succeeds). */
static int sb_port_free(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

/* A port the kernel gives (bind to 0) whose cluster bus port (+10000) is free too. */
static int sb_pick_port(void) {
    for (int tries = 0; tries < 200; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof sa;
        int port = -1;
        if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
            getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
            port = ntohs(sa.sin_port);
        if (fd >= 0) close(fd);
        if (port > 0 && port < 55000 && sb_port_free(port + 10000)) return port;
    }
    return -1;
}

static pid_t sb_spawn(const char *const *argv) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test binary */
    execvp(argv[0], (char *const *)argv);
    _exit(127);
}

static int sb_start_server(sb_test_cluster_t *t, int i) {
    const char *bin = getenv("SB_REDIS_SERVER");
    char port[16], conf[340], dir[300];
    snprintf(port, sizeof port, "%d", t->port[i]);
    snprintf(dir, sizeof dir, "%s/%d", t->dir, t->port[i]);
    snprintf(conf, sizeof conf, "%s/nodes.conf", dir);
    if (mkdir(dir, 0700) != 0) return -1;
    const char *argv[] = {bin ? bin : "redis-server", "--port", port, "--bind", "127.0.0.1",
                          "--cluster-enabled", "yes", "--cluster-config-file", conf,
                          "--cluster-node-timeout", "2000", "--dir", dir, "--save", "",
                          "--appendonly", "no", "--loglevel", "warning", NULL};
    t->pid[i] = sb_spawn(argv);
    return t->pid[i] > 0 ? 0 : -1;
}

/* The server answers PING (bounded wait). */
static int sb_wait_ping(const sb_test_cluster_t *t, int i) {
    int64_t deadline = sb_mono_ms() + 10000;
    while (sb_mono_ms() < deadline) {
        sb_redis_t *r = sb_test_cluster_node(t, i);
        redisReply *rep = r ? sb_redis_cmd(r, "PING") : NULL;
        int ok = rep && rep->type == REDIS_REPLY_STATUS;
        if (rep) freeReplyObject(rep);
        sb_redis_free(r);
        if (ok) return 0;
        sb_sleep_ms(20, NULL);
    }
    fprintf(stderr, "test cluster: server on port %d does not answer\n", t->port[i]);
    return -1;
}

static int sb_create(const sb_test_cluster_t *t) {
    char addrs[SB_TEST_CLUSTER_MAX][32], reps[8];
    const char *argv[SB_TEST_CLUSTER_MAX + 8];
    const char *cli = getenv("SB_REDIS_CLI");
    int k = 0;
    argv[k++] = cli ? cli : "redis-cli";
    argv[k++] = "--cluster";
    argv[k++] = "create";
    for (int i = 0; i < t->n; i++) {
        snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", t->port[i]);
        argv[k++] = addrs[i];
    }
    snprintf(reps, sizeof reps, "%d", t->replicas);
    argv[k++] = "--cluster-replicas";
    argv[k++] = reps;
    argv[k++] = "--cluster-yes";
    argv[k] = NULL;
    pid_t pid = sb_spawn(argv);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "test cluster: redis-cli --cluster create failed (status %d)\n", status);
        return -1;
    }
    return 0;
}

/* 1 when server i says cluster_state:ok and its CLUSTER SLOTS covers every slot with the
 * expected number of masters. */
static int sb_node_ready(const sb_test_cluster_t *t, int i) {
    sb_redis_t *r = sb_test_cluster_node(t, i);
    redisReply *info = r ? sb_redis_cmd(r, "CLUSTER INFO") : NULL;
    redisReply *slots = r ? sb_redis_cmd(r, "CLUSTER SLOTS") : NULL;
    int ok = info && info->type == REDIS_REPLY_STRING && strstr(info->str, "cluster_state:ok") &&
             slots && slots->type == REDIS_REPLY_ARRAY;
    long long covered = 0;
    for (size_t j = 0; ok && j < slots->elements; j++)
        covered += slots->element[j]->element[1]->integer -
                   slots->element[j]->element[0]->integer + 1;
    for (size_t j = 0; ok && j < slots->elements; j++) /* every replica known too */
        ok = (int)slots->element[j]->elements == 3 + t->replicas;
    if (info) freeReplyObject(info);
    if (slots) freeReplyObject(slots);
    sb_redis_free(r);
    return ok && covered == 16384;
}

static int sb_wait_ready(const sb_test_cluster_t *t) {
    int64_t deadline = sb_mono_ms() + SB_TEST_CLUSTER_WAIT_MS;
    for (int i = 0; i < t->n; i++)
        while (!sb_node_ready(t, i)) {
            if (sb_mono_ms() > deadline) {
                fprintf(stderr, "test cluster: node %d not ready in time\n", t->port[i]);
                return -1;
            }
            sb_sleep_ms(50, NULL);
        }
    return 0;
}

static int sb_test_cluster_up(sb_test_cluster_t *t) {
    if (t->masters <= 0) t->masters = 3;
    t->n = t->masters * (1 + t->replicas);
    if (t->n > SB_TEST_CLUSTER_MAX) return -1;
    snprintf(t->dir, sizeof t->dir, "/tmp/sb-cluster-XXXXXX");
    if (!mkdtemp(t->dir)) return -1;
    size_t off = 0;
    for (int i = 0; i < t->n; i++) {
        if ((t->port[i] = sb_pick_port()) < 0 || sb_start_server(t, i) != 0) return -1;
        if (i < t->masters)
            off += (size_t)snprintf(t->seeds + off, sizeof t->seeds - off, "%s127.0.0.1:%d",
                                    i ? "," : "", t->port[i]);
    }
    for (int i = 0; i < t->n; i++)
        if (sb_wait_ping(t, i) != 0) return -1;
    if (sb_create(t) != 0 || sb_wait_ready(t) != 0) return -1;
    sb_redis_addr_init(&t->addr);
    t->addr.cluster = t->seeds;
    return 0;
}

int sb_test_cluster_start(sb_test_cluster_t *t) {
    if (sb_test_cluster_up(t) == 0) return 0;
    fprintf(stderr, "could not start a redis cluster (%d masters, %d replica(s) each)\n",
            t->masters, t->replicas);
    sb_test_cluster_stop(t);
    return -1;
}

int sb_test_cluster_node_id(const sb_test_cluster_t *t, int i, char *id, size_t len) {
    sb_redis_t *r = sb_test_cluster_node(t, i);
    redisReply *rep = r ? sb_redis_cmd(r, "CLUSTER MYID") : NULL;
    int ok = rep && rep->type == REDIS_REPLY_STRING;
    if (ok) snprintf(id, len, "%s", rep->str);
    if (rep) freeReplyObject(rep);
    sb_redis_free(r);
    return ok ? 0 : -1;
}

/* EXISTS key on server i: its integer reply, or -1 when it answers something else (MOVED). */
static long long sb_exists_on(const sb_test_cluster_t *t, int i, const char *key) {
    sb_redis_t *r = t->pid[i] > 0 ? sb_test_cluster_node(t, i) : NULL;
    redisReply *rep = r ? sb_redis_cmd(r, "EXISTS %s", key) : NULL;
    long long n = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    if (rep) freeReplyObject(rep);
    sb_redis_free(r);
    return n;
}

int sb_test_cluster_master_of(const sb_test_cluster_t *t, const char *key) {
    for (int i = 0; i < t->n; i++)
        if (sb_exists_on(t, i, key) >= 0) return i;
    return -1;
}

int sb_test_cluster_holders(const sb_test_cluster_t *t, const char *key) {
    int n = 0;
    for (int i = 0; i < t->n; i++) n += sb_exists_on(t, i, key) == 1;
    return n;
}

int sb_test_cluster_run(const sb_test_cluster_t *t, int i, const char *fmt, const char *a,
                        const char *b) {
    sb_redis_t *r = sb_test_cluster_node(t, i);
    redisReply *rep = r ? sb_redis_cmd(r, fmt, a, b) : NULL;
    int ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (!ok) fprintf(stderr, "test cluster: %s on %d: %s\n", fmt, t->port[i],
                     rep ? rep->str : "no reply");
    if (rep) freeReplyObject(rep);
    sb_redis_free(r);
    return ok ? 0 : -1;
}

int sb_test_cluster_migrate_key(const sb_test_cluster_t *t, const char *key, int from, int to) {
    char slot[16], from_id[64], to_id[64], port[16];
    snprintf(slot, sizeof slot, "%d", sb_cluster_keyslot(key, strlen(key)));
    snprintf(port, sizeof port, "%d", t->port[to]);
    if (sb_test_cluster_node_id(t, from, from_id, sizeof from_id) ||
        sb_test_cluster_node_id(t, to, to_id, sizeof to_id))
        return -1;
    if (sb_test_cluster_run(t, to, "CLUSTER SETSLOT %s IMPORTING %s", slot, from_id) ||
        sb_test_cluster_run(t, from, "CLUSTER SETSLOT %s MIGRATING %s", slot, to_id))
        return -1;
    return sb_test_cluster_run(t, from, "MIGRATE 127.0.0.1 %s %s 0 5000", port, key);
}

int sb_test_cluster_assign_slot(const sb_test_cluster_t *t, int slot, int to) {
    char s[16], to_id[64];
    snprintf(s, sizeof s, "%d", slot);
    if (sb_test_cluster_node_id(t, to, to_id, sizeof to_id)) return -1;
    for (int i = 0; i < t->masters; i++)
        if (sb_test_cluster_run(t, i, "CLUSTER SETSLOT %s NODE %s", s, to_id)) return -1;
    return 0;
}

pid_t sb_test_cluster_reshard(const sb_test_cluster_t *t, int from, int to, int nslots) {
    char from_id[64], to_id[64], at[32], n[16];
    const char *cli = getenv("SB_REDIS_CLI");
    if (sb_test_cluster_node_id(t, from, from_id, sizeof from_id) || sb_test_cluster_node_id(t, to, to_id, sizeof to_id))
        return -1;
    snprintf(at, sizeof at, "127.0.0.1:%d", t->port[from]);
    snprintf(n, sizeof n, "%d", nslots);
    const char *argv[] = {cli ? cli : "redis-cli", "--cluster", "reshard", at,
                          "--cluster-from", from_id, "--cluster-to", to_id, "--cluster-slots",
                          n, "--cluster-yes", "--cluster-pipeline", "10", NULL};
    return sb_spawn(argv);
}

void sb_test_cluster_kill(sb_test_cluster_t *t, int i) {
    if (t->pid[i] <= 0) return;
    kill(t->pid[i], SIGKILL);
    waitpid(t->pid[i], NULL, 0);
    t->pid[i] = 0;
}

void sb_test_cluster_stop(sb_test_cluster_t *t) {
    char cmd[300];
    for (int i = 0; i < t->n; i++) sb_test_cluster_kill(t, i);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    if (t->dir[0]) (void)!system(cmd);
}

sb_redis_t *sb_test_cluster_node(const sb_test_cluster_t *t, int i) {
    sb_redis_addr_t a;
    char err[128], host[] = "127.0.0.1";
    sb_redis_addr_init(&a);
    a.host = host;
    a.port = t->port[i];
    sb_redis_t *r = sb_redis_create(&a, "test");
    if (r && sb_redis_connect(r, err, sizeof err) != 0) {
        sb_redis_free(r);
        return NULL;
    }
    return r;
}

int sb_test_cluster_index(const sb_test_cluster_t *t, int port) {
    for (int i = 0; i < t->n; i++)
        if (t->port[i] == port) return i;
    return -1;
}

int sb_test_cluster_flush(const sb_test_cluster_t *t) {
    int rc = 0;
    for (int i = 0; i < t->n; i++) {
        if (t->pid[i] <= 0) continue; /* killed by the test */
        sb_redis_t *r = sb_test_cluster_node(t, i);
        redisReply *role = r ? sb_redis_cmd(r, "ROLE") : NULL;
        int master = role && role->type == REDIS_REPLY_ARRAY &&
                     !strcmp(role->element[0]->str, "master");
        redisReply *a = master ? sb_redis_cmd(r, "FLUSHALL") : NULL;
        redisReply *b = master ? sb_redis_cmd(r, "SCRIPT FLUSH") : NULL;
        if (!r || !role || (master && (!sb_reply_ok(a) || !sb_reply_ok(b)))) rc = -1;
        if (role) freeReplyObject(role);
        if (a) freeReplyObject(a);
        if (b) freeReplyObject(b);
        sb_redis_free(r);
    }
    return rc;
}
