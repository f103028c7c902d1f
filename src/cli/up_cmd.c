/* `switchboard up`: the whole system on one machine for a first run.
 *
 * A small supervisor: it starts a private redis-server (unix socket and AOF under
 * SB_DATA_DIR) unless Redis was configured, then a gateway and an agent, each a child process
 * in its own process group so that Ctrl-C reaches only us and the shutdown order is ours:
 * gateway and agent first (they finish their jobs), Redis last. A child that dies is started
 * again with backoff. Signals are taken with sigtimedwait() in this one thread: no handlers,
 * no shared state.
 *
 * One `up` per data directory: a lock (flock on DATA_DIR/up.lock, held for our lifetime) is
 * taken before anything in it is touched, so a second `up` cannot start a second redis-server
 * on the same files and socket. The gateway reports the port it listens on through a pipe
 * (SB_READY_FD); the banner waits for it, so it prints the real URL (--port 0 too), and a
 * gateway that cannot listen stops `up` with exit 1. Development mode mints admin tokens, so
 * we listen on 127.0.0.1 unless --bind says otherwise. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "cli/cli.h"
#include "switchboard/switchboard.h"

#define SB_UP_MAXARGS 16
#define SB_UP_BACKOFF_MIN_MS 500
#define SB_UP_BACKOFF_MAX_MS 30000
#define SB_UP_STABLE_MS 60000 /* a child that ran this long gets its backoff reset */
#define SB_UP_READY_MS 30000  /* how long the first gateway may take to listen */

typedef struct {
    const char *name;
    const char *path;             /* program; searched in PATH when it has no '/' */
    const char *argv[SB_UP_MAXARGS]; /* NULL-terminated; strings live in sb_up_t or are literals */
    pid_t pid;                    /* 0 when not running */
    int64_t started_ms;
    int backoff_ms;
    int64_t restart_at_ms;        /* 0: not scheduled */
    int ready_fd;                 /* > 0: write end of the ready pipe, passed as SB_READY_FD */
} sb_child_t;

typedef struct {
    sb_child_t child[3];          /* redis (optional), gateway, agent */
    int first;                    /* 0 with a private Redis, 1 without */
    char exe[PATH_MAX];
    char dir[PATH_MAX];
    char sock[PATH_MAX + 16];
    char url[PATH_MAX + 32];
    char conc[16];
    char metrics_port[16];        /* the agent's --metrics-port */
    int grace_s;
    int fatal;                    /* a child refused its configuration: stop, do not retry */
    char secret[128];             /* JWT secret the gateway was given */
    int dev;                      /* the gateway runs in development mode (mints tokens) */
    int lock_fd;                  /* DATA_DIR/up.lock, flock'd while we run; -1 before */
    const char *bind;             /* where the gateway listens */
    int port;                     /* the port it listens on (known once it is ready) */
} sb_up_t;

enum { SB_UP_REDIS, SB_UP_GATEWAY, SB_UP_AGENT };

static void sb_up_exec_child(const sb_child_t *c, pid_t parent) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* `up` killed: children stop too */
    if (getppid() != parent) _exit(127);
    if (c->ready_fd > 0) { /* the only descriptor of ours a child keeps across exec */
        char fd[16];
        snprintf(fd, sizeof fd, "%d", c->ready_fd);
        if (fcntl(c->ready_fd, F_SETFD, 0) != 0 || setenv("SB_READY_FD", fd, 1) != 0) _exit(127);
    }
    /* exec* take char *const[] for historical reasons; they do not modify the strings */
    if (strchr(c->path, '/')) execv(c->path, (char *const *)c->argv);
    else execvp(c->path, (char *const *)c->argv);
    _exit(127);
}

static int sb_up_start(sb_child_t *c) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) sb_up_exec_child(c, parent);
    if (pid < 0) {
        sb_error("up", "cannot start %s: %s", c->name, strerror(errno));
        return -1;
    }
    c->pid = pid;
    c->started_ms = sb_mono_ms();
    c->restart_at_ms = 0;
    return 0;
}

/* Waits until the private Redis answers (or dies). */
static int sb_up_wait_redis(sb_up_t *u) {
    sb_redis_addr_t addr = {.unix_path = u->sock};
    sb_redis_t *r = sb_redis_create(&addr, "up");
    char err[128];
    int ok = 0;
    int64_t deadline = sb_mono_ms() + 10000;
    while (r && !ok && sb_mono_ms() < deadline &&
           waitpid(u->child[SB_UP_REDIS].pid, NULL, WNOHANG) == 0) {
        ok = sb_redis_connect(r, err, sizeof err) == SB_OK;
        if (!ok) sb_sleep_ms(20, NULL);
    }
    sb_redis_free(r);
    if (!ok) sb_error("up", "redis-server did not start (installed? log in %s)", u->dir);
    return ok ? 0 : -1;
}

/* Development JWT secret: JWT_SECRET when given, else one kept in DATA_DIR/dev-jwt-secret
 * (made from getrandom on first use, so tokens survive a restart). Exported to the children. */
static int sb_up_secret(const sb_config_t *cfg, char *secret, size_t len) {
    if (cfg->jwt_secret && *cfg->jwt_secret) {
        snprintf(secret, len, "%s", cfg->jwt_secret);
        return 0;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/dev-jwt-secret", cfg->data_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        int ok = fgets(secret, (int)len, f) != NULL;
        fclose(f);
        secret[strcspn(secret, "\n")] = '\0';
        if (ok && *secret) return setenv("JWT_SECRET", secret, 1);
    }
    unsigned char rnd[24];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd || len < 2 * sizeof rnd + 1) return -1;
    for (size_t i = 0; i < sizeof rnd; i++) snprintf(secret + 2 * i, 3, "%02x", rnd[i]);
    f = fopen(path, "w");
    if (f) {
        fchmod(fileno(f), 0600);
        fprintf(f, "%s\n", secret);
        fclose(f);
    }
    return setenv("JWT_SECRET", secret, 1);
}

/* Passes the settings given to `up` (as flags or environment) on to the gateway and agent
 * through their environment, so `up --port 4000` serves where its banner says. */
static void sb_up_export(const sb_up_t *u, const sb_config_t *cfg) {
    char num[16];
    snprintf(num, sizeof num, "%d", cfg->port);
    setenv("PORT", num, 1);
    snprintf(num, sizeof num, "%d", cfg->shutdown_grace);
    setenv("SHUTDOWN_GRACE", num, 1);
    snprintf(num, sizeof num, "%d", cfg->queue_shards);
    setenv("QUEUE_SHARDS", num, 1);
    setenv("BIND", u->bind, 1);
    if (cfg->job_types) setenv("JOB_TYPES", cfg->job_types, 1);
    if (cfg->web_dir) setenv("WEB_DIR", cfg->web_dir, 1);
    if (cfg->redis.cluster) setenv("REDIS_CLUSTER", cfg->redis.cluster, 1);
    setenv("LOG_FORMAT", cfg->log_format == SB_LOG_JSON ? "json" : "text", 1);
}

/* Takes DATA_DIR/up.lock (flock, held while we run; the children do not inherit it). Returns
 * 0, or -1 having said why (another `up` holds it) with nothing in the directory touched. */
static int sb_up_lock(sb_up_t *u, const char *dir) {
    char path[PATH_MAX + 16], pid[32] = "";
    snprintf(path, sizeof path, "%s/up.lock", dir);
    u->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (u->lock_fd >= 0 && flock(u->lock_fd, LOCK_EX | LOCK_NB) == 0) {
        if (ftruncate(u->lock_fd, 0) == 0) dprintf(u->lock_fd, "%ld\n", (long)getpid());
        return 0;
    }
    if (u->lock_fd < 0 || errno != EWOULDBLOCK) {
        sb_error("up", "cannot lock %s: %s", path, strerror(errno));
    } else {
        ssize_t n = read(u->lock_fd, pid, sizeof pid - 1);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        sb_error("up", "%s is in use by another `switchboard up` (pid %s): stop it first, or "
                 "give this one another --data-dir", dir, *pid ? pid : "?");
    }
    if (u->lock_fd >= 0) close(u->lock_fd);
    u->lock_fd = -1;
    return -1;
}

/* The agent's metrics port: --metrics-port, else one free now on the listen address (the
 * kernel's choice, asked once so that a restarted agent keeps it). */
static void sb_up_metrics_port(sb_up_t *u, const sb_config_t *cfg) {
    int port = cfg->metrics_port;
    if (port == 0) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int ok = fd >= 0 && inet_pton(AF_INET, u->bind, &sa.sin_addr) == 1 &&
                 bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
                 getsockname(fd, (struct sockaddr *)&sa, &len) == 0;
        if (fd >= 0) close(fd);
        port = ok ? ntohs(sa.sin_port) : 9101;
    }
    snprintf(u->metrics_port, sizeof u->metrics_port, "%d", port);
}

static int sb_up_prepare(sb_up_t *u, const sb_config_t *cfg) {
    ssize_t n = readlink("/proc/self/exe", u->exe, sizeof u->exe - 1);
    if (n <= 0) return -1;
    u->exe[n] = '\0';
    snprintf(u->conc, sizeof u->conc, "%d", cfg->concurrency);
    u->grace_s = cfg->shutdown_grace;
    u->first = cfg->redis_explicit ? SB_UP_GATEWAY : SB_UP_REDIS;
    if (mkdir(cfg->data_dir, 0700) < 0 && errno != EEXIST) {
        sb_error("up", "cannot create %s: %s", cfg->data_dir, strerror(errno));
        return -1;
    }
    if (sb_up_lock(u, cfg->data_dir) != 0) return -1;
    if (!realpath(cfg->data_dir, u->dir) || sb_up_secret(cfg, u->secret, sizeof u->secret) != 0)
        return -1;
    u->dev = cfg->dev_mode || !getenv("SB_DEV");
    if (!getenv("SB_DEV")) setenv("SB_DEV", "1", 1); /* the dashboard may mint tokens */
    u->bind = cfg->bind_explicit && cfg->bind ? cfg->bind : "127.0.0.1";
    sb_up_export(u, cfg);
    if (!cfg->redis_explicit) {
        snprintf(u->sock, sizeof u->sock, "%s/redis.sock", u->dir);
        snprintf(u->url, sizeof u->url, "unix://%s", u->sock);
        unlink(u->sock);
        u->child[SB_UP_REDIS] = (sb_child_t){
            .name = "redis-server", .path = "redis-server",
            .argv = {"redis-server", "--port", "0", "--unixsocket", u->sock, "--unixsocketperm",
                     "700", "--dir", u->dir, "--appendonly", "yes", "--save", "",
                     "--logfile", "redis.log", NULL}};
        setenv("REDIS_URL", u->url, 1); /* the children inherit it */
    }
    u->child[SB_UP_GATEWAY] = (sb_child_t){.name = "gateway", .path = u->exe,
                                           .argv = {"switchboard", "gateway", NULL}};
    u->child[SB_UP_AGENT] = (sb_child_t){.name = "agent", .path = u->exe,
                                         .argv = {"switchboard", "agent", "--concurrency", u->conc,
                                                  "--metrics-port", u->metrics_port, NULL}};
    sb_up_metrics_port(u, cfg);
    return 0;
}

/* A child exited: log it and schedule a restart unless we are stopping. */
static void sb_up_reaped(sb_up_t *u, pid_t pid, int status, int stopping) {
    for (int i = u->first; i < 3; i++) {
        sb_child_t *c = &u->child[i];
        if (c->pid != pid) continue;
        c->pid = 0;
        if (stopping) return;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 2) { /* usage / bad setting */
            sb_error("up", "%s refused its configuration (see above); stopping", c->name);
            u->fatal = 1;
            return;
        }
        int64_t ran = sb_mono_ms() - c->started_ms;
        c->backoff_ms = ran > SB_UP_STABLE_MS ? SB_UP_BACKOFF_MIN_MS
                        : c->backoff_ms ? (c->backoff_ms * 2 > SB_UP_BACKOFF_MAX_MS
                                           ? SB_UP_BACKOFF_MAX_MS : c->backoff_ms * 2)
                        : SB_UP_BACKOFF_MIN_MS;
        c->restart_at_ms = sb_mono_ms() + c->backoff_ms;
        sb_warn("up", "%s exited (%s %d); starting it again in %d ms", c->name,
                WIFSIGNALED(status) ? "signal" : "status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), c->backoff_ms);
    }
}

static void sb_up_reap_all(sb_up_t *u, int stopping) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) sb_up_reaped(u, pid, status, stopping);
}

static int sb_up_running(const sb_up_t *u, int from, int to) {
    int n = 0;
    for (int i = from; i <= to; i++) n += u->child[i].pid > 0;
    return n;
}

/* Sends SIGTERM to children [from, to] and waits up to wait_ms, then SIGKILLs the rest. */
static void sb_up_stop_range(sb_up_t *u, int from, int to, int wait_ms) {
    for (int i = from; i <= to; i++)
        if (u->child[i].pid > 0) kill(u->child[i].pid, SIGTERM);
    int64_t deadline = sb_mono_ms() + wait_ms;
    while (sb_up_running(u, from, to) && sb_mono_ms() < deadline) {
        sb_up_reap_all(u, 1);
        sb_sleep_ms(20, NULL);
    }
    for (int i = from; i <= to; i++)
        if (u->child[i].pid > 0) kill(u->child[i].pid, SIGKILL);
    while (sb_up_running(u, from, to) && waitpid(-1, NULL, 0) > 0) sb_up_reap_all(u, 1);
    for (int i = from; i <= to; i++) u->child[i].pid = 0;
}

/* A development token for the banner; malloc'd, NULL on failure. */
static char *sb_up_token(const sb_up_t *u, const char *role, const char *pk) {
    char err[128];
    int64_t now = sb_now_ms() / 1000;
    sb_claims_t c = {.sub = (char *)pk, .public_key = (char *)pk, .role = sb_role_parse(role),
                     .exp = now + 7 * 86400};
    return sb_jwt_mint(&c, u->secret, now, err, sizeof err);
}

/* Starts the gateway and waits until it listens: it writes its port into the ready pipe.
 * Returns 0 (u->port set, and exported so that a restarted gateway takes the same one), or -1
 * having said why: it exited without listening (port taken, bad setting) or took too long. */
static int sb_up_start_gateway(sb_up_t *u) {
    sb_child_t *c = &u->child[SB_UP_GATEWAY];
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    c->ready_fd = fds[1];
    int rc = sb_up_start(c);
    close(fds[1]);
    c->ready_fd = 0;
    char buf[16];
    size_t got = 0;
    int64_t deadline = sb_mono_ms() + SB_UP_READY_MS;
    while (rc == 0 && got < sizeof buf - 1 && !memchr(buf, '\n', got) && sb_mono_ms() < deadline) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (poll(&p, 1, 200) <= 0) continue;
        ssize_t n = read(fds[0], buf + got, sizeof buf - 1 - got);
        if (n <= 0) break; /* end of file: the gateway exited without listening */
        got += (size_t)n;
    }
    close(fds[0]);
    buf[got] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    long port;
    if (rc == 0 && sb_fmt_parse_long(buf, 1, 65535, &port) == SB_OK) {
        u->port = (int)port;
        setenv("PORT", buf, 1);
        return 0;
    }
    if (rc == 0) sb_error("up", "the gateway did not start listening (see above: port taken?)");
    return -1;
}

/* The dashboard's URL: the listen address, or this host's loopback when it listens on all. */
static void sb_up_url(const sb_up_t *u, char *buf, size_t len) {
    snprintf(buf, len, "http://%s:%d/", strcmp(u->bind, "0.0.0.0") ? u->bind : "127.0.0.1",
             u->port);
}

static void sb_up_banner(const sb_up_t *u, const sb_config_t *cfg) {
    char *user = sb_up_token(u, "user", "demo-user"), *admin = sb_up_token(u, "admin", "demo-admin");
    char url[300];
    sb_up_url(u, url, sizeof url);
    printf("switchboard is up\n");
    if (u->first == SB_UP_REDIS) printf("  redis:     private redis-server, data in %s\n", u->dir);
    printf("  dashboard: %s  (sign in with a token below%s)\n", url,
           u->dev ? ", or mint one on the page" : "");
    if (u->dev && !sb_cli_loopback(u->bind))
        printf("  WARNING:   development mode listens on %s: anyone who can reach it can mint "
               "admin tokens\n", u->bind);
    printf("  agent:     rebalance, concurrency %d\n", cfg->concurrency);
    printf("  metrics:   %smetrics (gateway), http://%s:%s/metrics (agent)\n", url,
           strcmp(u->bind, "0.0.0.0") ? u->bind : "127.0.0.1", u->metrics_port);
    const char *cluster = getenv("REDIS_CLUSTER"); /* exported by sb_up_export */
    printf("  try:       %s=%s %s enqueue --wait '{\"amount\":1000}'\n",
           cluster ? "REDIS_CLUSTER" : "REDIS_URL",
           cluster ? cluster : getenv("REDIS_URL") ? getenv("REDIS_URL") : "redis://127.0.0.1:6379",
           u->exe);
    printf("  user token (demo-user, 7 days):\n    %s\n", user ? user : "?");
    printf("  admin token (demo-admin, 7 days):\n    %s\n", admin ? admin : "?");
    if (admin) printf("  console:   %s#token=%s&view=queues\n             (one click: the admin "
                      "console, signed in as demo-admin)\n", url, admin);
    printf("  e.g.       curl -H 'Authorization: Bearer <user token>' -H 'Content-Type: "
           "application/json' \\\n               -d '{\"amount\":1000}' "
           "%sapi/v1/agent/rebalance\n", url);
    printf("Ctrl-C stops everything.\n");
    free(user);
    free(admin);
    fflush(stdout);
}

int sb_cmd_up(sb_config_t *cfg) {
    sb_up_t u = {.lock_fd = -1};
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    if (sb_up_prepare(&u, cfg) != 0) {
        if (u.lock_fd >= 0) close(u.lock_fd);
        return SB_EXIT_FAIL;
    }
    if ((u.first == SB_UP_REDIS &&
         (sb_up_start(&u.child[SB_UP_REDIS]) != 0 || sb_up_wait_redis(&u) != 0)) ||
        sb_up_start_gateway(&u) != 0) {
        sb_up_stop_range(&u, SB_UP_GATEWAY, SB_UP_GATEWAY, 5000);
        if (u.first == SB_UP_REDIS) sb_up_stop_range(&u, SB_UP_REDIS, SB_UP_REDIS, 10000);
        close(u.lock_fd);
        sb_error("up", "could not start; stopped");
        return SB_EXIT_FAIL;
    }
    sb_up_start(&u.child[SB_UP_AGENT]);
    sb_up_banner(&u, cfg);
    for (;;) {
        struct timespec tick = {0, 200 * 1000000L};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGINT || sig == SIGTERM) break;
        sb_up_reap_all(&u, 0);
        if (u.fatal) break;
        if (u.first == SB_UP_REDIS && u.child[SB_UP_REDIS].pid == 0 &&
            u.child[SB_UP_REDIS].restart_at_ms && sb_mono_ms() >= u.child[SB_UP_REDIS].restart_at_ms) {
            unlink(u.sock);
            sb_up_start(&u.child[SB_UP_REDIS]);
        }
        for (int i = SB_UP_GATEWAY; i <= SB_UP_AGENT; i++)
            if (u.child[i].pid == 0 && u.child[i].restart_at_ms &&
                sb_mono_ms() >= u.child[i].restart_at_ms)
                sb_up_start(&u.child[i]);
    }
    sb_info("up", "stopping: gateway and agent first, then redis");
    sb_up_stop_range(&u, SB_UP_GATEWAY, SB_UP_AGENT, (u.grace_s + 5) * 1000);
    if (u.first == SB_UP_REDIS) sb_up_stop_range(&u, SB_UP_REDIS, SB_UP_REDIS, 10000);
    sb_info("up", "stopped");
    close(u.lock_fd);
    return u.fatal ? SB_EXIT_FAIL : SB_EXIT_OK;
}
