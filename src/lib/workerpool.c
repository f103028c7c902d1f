/* The --worker process pool: see include/switchboard/workerpool.h.
 *
 * Each process is an sb_wproc_t: the watchdog's pid (= process group, from sb_proc_spawn),
 * our ends of its three pipes, a buffer for the reply line being read and one for the
 * stderr line being read. A run is one poll() loop over the three pipes: write the job line,
 * read stdout up to the first newline (the reply), log complete stderr lines, and wake every
 * SB_WP_POLL_MS to look at the deadline and the cancel flag.
 *
 * Before a job is sent, the process is checked: stderr left from the last job is logged, and
 * a process that died meanwhile or printed something nobody asked for is restarted first, so
 * a job is never charged for what happened between jobs. After a break (exit, bad line,
 * timeout, cancel) the group is SIGKILLed, reaped, and a fresh process started at once, so
 * the next job finds it warm.
 *
 * An exit is reported with the shell's own status: stdout reaching EOF is followed by a short
 * wait (SB_WP_EXIT_WAIT_MS) for the watchdog, which ends the way the shell ended. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "switchboard/clock.h"
#include "switchboard/json.h"
#include "switchboard/log.h"
#include "switchboard/proc.h"
#include "switchboard/utf8.h"
#include "switchboard/workerpool.h"

#define SB_WP_POLL_MS 100      /* poll() wakes this often for the deadline and cancel */
#define SB_WP_EXIT_WAIT_MS 500 /* stdout closed: time the process gets to exit by itself */

typedef struct {
    pid_t pid;                   /* watchdog = process group; 0 when not running */
    int fd[3];                   /* its stdin (ours to write), stdout, stderr; -1 closed */
    char *line;                  /* stdout bytes read and not yet taken as a reply */
    size_t len, cap;
    char err[SB_WORKER_LOG_LINE]; /* the stderr line being read */
    size_t err_len;
    const char *job_id;          /* job running now (for the log), NULL between jobs */
    int busy;                    /* taken by a sb_workerpool_run */
    int index;
} sb_wproc_t;

struct sb_workerpool {
    sb_workerpool_opts_t o;      /* cmd/env/log_name point at the copies below */
    char *cmd, *log_name;
    char **env;                  /* NULL-terminated copy */
    pthread_mutex_t mu;
    pthread_cond_t idle;         /* signalled when a process is given back */
    unsigned long long starts;
    int n;
    sb_wproc_t procs[];
};

void sb_workerpool_opts_init(sb_workerpool_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->procs = 1;
    o->max_line = SB_WORKER_MAX_LINE;
    o->grace_ms = 30000;
}

/* ---- stderr to the log ------------------------------------------------------------------- */

static void sb_wp_log_err_line(const sb_workerpool_t *p, sb_wproc_t *w) {
    size_t n = w->err_len;
    while (n > 0 && (w->err[n - 1] == '\r' || w->err[n - 1] == '\n')) n--;
    sb_info(p->o.log_name, "handler %d (pid %d) job %s: %.*s", w->index, (int)w->pid,
            w->job_id ? w->job_id : "-", (int)n, w->err);
    w->err_len = 0;
}

/* Splits stderr bytes into log lines (a line longer than the buffer is logged in pieces). */
static void sb_wp_err_bytes(const sb_workerpool_t *p, sb_wproc_t *w, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (b[i] == '\n') {
            sb_wp_log_err_line(p, w);
            continue;
        }
        w->err[w->err_len++] = b[i];
        if (w->err_len == sizeof w->err) sb_wp_log_err_line(p, w);
    }
}

/* Reads what stderr has (never blocks). Returns 0, or -1 at EOF / error (fd closed). */
static int sb_wp_drain_err(const sb_workerpool_t *p, sb_wproc_t *w) {
    char buf[4096];
    while (w->fd[2] >= 0) {
        struct pollfd pf = {w->fd[2], POLLIN, 0};
        if (poll(&pf, 1, 0) <= 0) return 0;
        ssize_t r = read(w->fd[2], buf, sizeof buf);
        if (r > 0) {
            sb_wp_err_bytes(p, w, buf, (size_t)r);
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (w->err_len) sb_wp_log_err_line(p, w);
        close(w->fd[2]);
        w->fd[2] = -1;
        return -1;
    }
    return -1;
}

/* ---- starting and stopping one process ---------------------------------------------------- */

static void sb_wp_close_fds(sb_wproc_t *w) {
    for (int i = 0; i < 3; i++)
        if (w->fd[i] >= 0) {
            close(w->fd[i]);
            w->fd[i] = -1;
        }
}

/* Starts process w. Returns 0, or -1 with errno set (w left not running). */
static int sb_wp_start(sb_workerpool_t *p, sb_wproc_t *w) {
    sb_proc_opts_t po = {.cmd = p->cmd, .env = (const char *const *)p->env,
                         .die_with_parent = 1, .reset_signals = 1};
    pid_t pid = sb_proc_spawn(&po, w->fd);
    if (pid < 0) {
        w->pid = 0;
        w->fd[0] = w->fd[1] = w->fd[2] = -1;
        return -1;
    }
    w->pid = pid;
    w->len = w->err_len = 0;
    pthread_mutex_lock(&p->mu);
    p->starts++;
    pthread_mutex_unlock(&p->mu);
    sb_debug(p->o.log_name, "handler %d started (pid %d): %s", w->index, (int)pid, p->cmd);
    return 0;
}

/* Waits up to ms for w to exit by itself; fills *status. Returns 1 if it did, else 0. */
static int sb_wp_wait_exit(sb_wproc_t *w, int ms, int *status) {
    int64_t deadline = sb_mono_ms() + ms;
    for (;;) {
        pid_t r = waitpid(w->pid, status, WNOHANG);
        if (r == w->pid || (r < 0 && errno != EINTR)) return 1;
        if (sb_mono_ms() >= deadline) return 0;
        sb_sleep_ms(5, NULL);
    }
}

/* Kills w's process group and reaps it (unless it was reaped already: pid 0), logs what is
 * left on its stderr and closes the pipes; w is then not running. */
static void sb_wp_kill(const sb_workerpool_t *p, sb_wproc_t *w) {
    if (w->pid > 0) {
        kill(-w->pid, SIGKILL);
        int status;
        while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR) {}
    }
    sb_wp_drain_err(p, w);
    sb_wp_close_fds(w);
    w->pid = 0;
}

/* Ends w after a break and starts a fresh one; says so in the log. */
static void sb_wp_restart(sb_workerpool_t *p, sb_wproc_t *w, const char *why) {
    sb_warn(p->o.log_name, "handler %d (pid %d) restarted: %s", w->index, (int)w->pid, why);
    sb_wp_kill(p, w);
    if (sb_wp_start(p, w) < 0)
        sb_error(p->o.log_name, "cannot restart handler %d: %s (tried again with the next job)",
                 w->index, strerror(errno));
}

/* "exited with status 3" / "was killed by signal 9" for a wait status. */
static void sb_wp_describe_exit(int status, char *buf, size_t len) {
    if (WIFSIGNALED(status)) snprintf(buf, len, "was killed by signal %d", WTERMSIG(status));
    else snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
}

/* ---- the pool ----------------------------------------------------------------------------- */

static char **sb_wp_copy_env(const char *const *env) {
    size_t n = 0;
    while (env && env[n]) n++;
    char **c = calloc(n + 1, sizeof *c);
    for (size_t i = 0; c && i < n; i++)
        if (!(c[i] = strdup(env[i]))) {
            for (size_t j = 0; j < i; j++) free(c[j]);
            free(c);
            return NULL;
        }
    return c;
}

static void sb_wp_free_env(char **env) {
    for (size_t i = 0; env && env[i]; i++) free(env[i]);
    free(env);
}

static const char *sb_wp_check(const sb_workerpool_opts_t *o) {
    if (!o->cmd || !o->cmd[0]) return "--worker needs a command";
    if (o->procs < 1 || o->procs > SB_WORKER_MAX_PROCS) return "worker processes must be 1..1024";
    if (o->grace_ms < 0) return "grace period must be >= 0";
    return NULL;
}

sb_workerpool_t *sb_workerpool_create(const sb_workerpool_opts_t *o, char *err, size_t errlen) {
    const char *bad = sb_wp_check(o);
    if (bad) {
        snprintf(err, errlen, "%s", bad);
        return NULL;
    }
    sb_workerpool_t *p = calloc(1, sizeof *p + (size_t)o->procs * sizeof(sb_wproc_t));
    if (p) {
        p->o = *o;
        p->cmd = strdup(o->cmd);
        p->log_name = strdup(o->log_name ? o->log_name : "worker");
        p->env = sb_wp_copy_env(o->env);
    }
    if (!p || !p->cmd || !p->log_name || !p->env) {
        if (p) {
            free(p->cmd);
            free(p->log_name);
            sb_wp_free_env(p->env);
        }
        free(p);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->o.cmd = p->cmd;
    p->o.log_name = p->log_name;
    p->o.env = (const char *const *)p->env;
    if (!p->o.max_line) p->o.max_line = SB_WORKER_MAX_LINE;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->idle, NULL);
    p->n = o->procs;
    for (int i = 0; i < p->n; i++) {
        p->procs[i].index = i;
        p->procs[i].fd[0] = p->procs[i].fd[1] = p->procs[i].fd[2] = -1;
        if (sb_wp_start(p, &p->procs[i]) < 0) {
            snprintf(err, errlen, "cannot start handler '%s': %s", o->cmd, strerror(errno));
            p->o.grace_ms = 0;
            sb_workerpool_free(p);
            return NULL;
        }
    }
    return p;
}

unsigned long long sb_workerpool_starts(const sb_workerpool_t *p) {
    pthread_mutex_lock((pthread_mutex_t *)&p->mu);
    unsigned long long n = p->starts;
    pthread_mutex_unlock((pthread_mutex_t *)&p->mu);
    return n;
}

pid_t sb_workerpool_pid(sb_workerpool_t *p, int i) {
    return i >= 0 && i < p->n ? p->procs[i].pid : 0;
}

static sb_wproc_t *sb_wp_acquire(sb_workerpool_t *p) {
    pthread_mutex_lock(&p->mu);
    for (;;) {
        for (int i = 0; i < p->n; i++)
            if (!p->procs[i].busy) {
                p->procs[i].busy = 1;
                pthread_mutex_unlock(&p->mu);
                return &p->procs[i];
            }
        pthread_cond_wait(&p->idle, &p->mu);
    }
}

static void sb_wp_release(sb_workerpool_t *p, sb_wproc_t *w) {
    pthread_mutex_lock(&p->mu);
    w->busy = 0;
    w->job_id = NULL;
    pthread_cond_signal(&p->idle);
    pthread_mutex_unlock(&p->mu);
}

/* ---- one job ------------------------------------------------------------------------------ */

/* Makes sure w runs and is quiet before a job: logs leftover stderr; restarts a process that
 * died or printed on stdout between jobs. Returns 0, or -1 when none could be started. */
static int sb_wp_ready(sb_workerpool_t *p, sb_wproc_t *w, int *restarted) {
    if (w->pid <= 0) {
        *restarted = 1;
        return sb_wp_start(p, w);
    }
    sb_wp_drain_err(p, w);
    int status;
    char why[128];
    struct pollfd pf = {w->fd[1], POLLIN, 0};
    if (waitpid(w->pid, &status, WNOHANG) == w->pid) {
        sb_wp_describe_exit(status, why, sizeof why);
        w->pid = 0; /* reaped: nothing to kill */
        sb_wp_close_fds(w);
        sb_warn(p->o.log_name, "handler %d %s between jobs: started again", w->index, why);
        *restarted = 1;
        return sb_wp_start(p, w);
    }
    if (poll(&pf, 1, 0) > 0) {
        *restarted = 1;
        sb_wp_restart(p, w, "it wrote on stdout between jobs (one line per job, only as the "
                            "answer)");
        return w->pid > 0 ? 0 : -1;
    }
    return 0;
}

/* The job line (JSON and a newline). malloc'd; NULL on ENOMEM. */
static char *sb_wp_job_line(const sb_worker_job_t *job, size_t *len) {
    cJSON *o = cJSON_CreateObject();
    cJSON *pl = job->payload ? cJSON_Duplicate(job->payload, 1) : cJSON_CreateNull();
    cJSON *us = job->user ? cJSON_Duplicate(job->user, 1) : cJSON_CreateNull();
    char *text = NULL;
    if (o && pl && us && cJSON_AddStringToObject(o, "jobId", job->job_id) &&
        cJSON_AddStringToObject(o, "type", job->type ? job->type : "") &&
        cJSON_AddItemToObject(o, "payload", pl) && (pl = NULL, 1) &&
        cJSON_AddItemToObject(o, "user", us) && (us = NULL, 1) &&
        cJSON_AddNumberToObject(o, "attempt", job->attempt))
        text = sb_json_print(o);
    cJSON_Delete(o);
    cJSON_Delete(pl);
    cJSON_Delete(us);
    if (!text) return NULL;
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (!line) {
        free(text);
        return NULL;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    *len = n + 1;
    return line;
}

/* How the I/O of a run ended. */
typedef enum { SB_WP_LINE, SB_WP_EOF, SB_WP_TOO_LONG, SB_WP_TIMEOUT, SB_WP_CANCEL } sb_wp_io_t;

/* Appends stdout bytes; SB_WP_LINE once a newline arrived, SB_WP_TOO_LONG past max_line. */
static int sb_wp_out_bytes(sb_workerpool_t *p, sb_wproc_t *w, const char *b, size_t n) {
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + n + 1) cap *= 2;
        char *d = realloc(w->line, cap);
        if (!d) return SB_WP_TOO_LONG;
        w->line = d;
        w->cap = cap;
    }
    memcpy(w->line + w->len, b, n);
    w->len += n;
    w->line[w->len] = '\0';
    char *nl = memchr(w->line, '\n', w->len);
    size_t upto = nl ? (size_t)(nl - w->line) : w->len;
    if (upto > p->o.max_line) return SB_WP_TOO_LONG;
    return nl ? SB_WP_LINE : -1;
}

/* Writes the job line and reads until the reply's newline, the deadline or cancel. */
static sb_wp_io_t sb_wp_pump(sb_workerpool_t *p, sb_wproc_t *w, const char *in, size_t in_len,
                             int64_t deadline, const atomic_int *cancel) {
    size_t sent = 0;
    char buf[65536];
    for (;;) {
        if (cancel && atomic_load(cancel)) return SB_WP_CANCEL;
        int64_t left = deadline ? deadline - sb_mono_ms() : SB_WP_POLL_MS;
        if (left <= 0) return SB_WP_TIMEOUT;
        struct pollfd pf[3] = {{sent < in_len ? w->fd[0] : -1, POLLOUT, 0},
                               {w->fd[1], POLLIN, 0}, {w->fd[2], POLLIN, 0}};
        int rc = poll(pf, 3, left < SB_WP_POLL_MS ? (int)left : SB_WP_POLL_MS);
        if (rc < 0 && errno != EINTR) return SB_WP_EOF;
        if (pf[0].revents) {
            ssize_t n = write(w->fd[0], in + sent, in_len - sent);
            if (n > 0) sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR) return SB_WP_EOF; /* EPIPE */
        }
        if (pf[2].revents) sb_wp_drain_err(p, w);
        if (!pf[1].revents) continue;
        ssize_t n = read(w->fd[1], buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return SB_WP_EOF;
        int got = n > 0 ? sb_wp_out_bytes(p, w, buf, (size_t)n) : -1;
        if (got >= 0) return (sb_wp_io_t)got;
    }
}

/* Reads the reply line (w->line up to its newline) into res. Returns 0, or -1 with the
 * protocol break described in res->error. */
static int sb_wp_reply(sb_wproc_t *w, const char *job_id, sb_worker_result_t *res) {
    size_t n = (size_t)((char *)memchr(w->line, '\n', w->len) - w->line);
    int extra = w->len > n + 1;
    const char *bad = NULL;
    cJSON *o = NULL;
    if (!sb_utf8_valid(w->line, n)) bad = "printed a line that is not valid UTF-8";
    else if (!(o = sb_json_parse(w->line, n)) || !cJSON_IsObject(o))
        bad = "printed a line that is not a JSON object";
    else if (!sb_json_str(o, "jobId") || strcmp(sb_json_str(o, "jobId"), job_id) != 0)
        bad = "answered with another jobId";
    else if (extra) bad = "printed more than one line for one job";
    cJSON *result = o ? cJSON_DetachItemFromObjectCaseSensitive(o, "result") : NULL;
    const cJSON *error = o ? cJSON_GetObjectItemCaseSensitive(o, "error") : NULL;
    const cJSON *retry = o ? cJSON_GetObjectItemCaseSensitive(o, "retry") : NULL;
    if (!bad && !result && !cJSON_IsString(error))
        bad = "answered with neither \"result\" nor an \"error\" string";
    else if (!bad && result && error) bad = "answered with both \"result\" and \"error\"";
    else if (!bad && retry && !cJSON_IsBool(retry)) bad = "answered with a non-boolean \"retry\"";
    w->len = 0;
    if (bad) {
        snprintf(res->error, sizeof res->error, "handler process %s (protocol: one JSON line "
                 "{\"jobId\",\"result\"} or {\"jobId\",\"error\",\"retry\"} per job)", bad);
        cJSON_Delete(result);
        cJSON_Delete(o);
        return -1;
    }
    if (result) {
        res->end = SB_WORKER_OK;
        res->result = result;
    } else {
        res->end = cJSON_IsFalse(retry) ? SB_WORKER_FAIL : SB_WORKER_RETRY;
        snprintf(res->error, sizeof res->error, "%s", error->valuestring);
    }
    cJSON_Delete(o);
    return 0;
}

/* The sentence for a run whose process must go (not a reply). */
static void sb_wp_break_msg(sb_wproc_t *w, sb_wp_io_t io, int timeout_ms, size_t max_line,
                            sb_worker_result_t *res) {
    int status;
    char how[128];
    switch (io) {
    case SB_WP_EOF:
        if (sb_wp_wait_exit(w, SB_WP_EXIT_WAIT_MS, &status)) {
            sb_wp_describe_exit(status, how, sizeof how);
            w->pid = 0; /* reaped */
            snprintf(res->error, sizeof res->error, "handler process %s while running the job",
                     how);
        } else {
            snprintf(res->error, sizeof res->error, "handler process closed its stdout while "
                     "running the job");
        }
        break;
    case SB_WP_TOO_LONG:
        snprintf(res->error, sizeof res->error, "handler process printed a line over %zu "
                 "bytes", max_line);
        break;
    case SB_WP_TIMEOUT:
        snprintf(res->error, sizeof res->error, "handler timed out after %d ms", timeout_ms);
        break;
    default:
        snprintf(res->error, sizeof res->error, "canceled: handler process restarted");
        res->end = SB_WORKER_CANCELED;
        break;
    }
}

sb_worker_end_t sb_workerpool_run(sb_workerpool_t *p, const sb_worker_job_t *job,
                                  int timeout_ms, const atomic_int *cancel,
                                  sb_worker_result_t *res) {
    memset(res, 0, sizeof *res);
    res->end = SB_WORKER_RETRY;
    size_t in_len = 0;
    char *in = sb_wp_job_line(job, &in_len);
    if (!in) {
        snprintf(res->error, sizeof res->error, "out of memory");
        return res->end;
    }
    sb_wproc_t *w = sb_wp_acquire(p);
    if (sb_wp_ready(p, w, &res->restarted) < 0) {
        snprintf(res->error, sizeof res->error, "cannot start handler process: %s",
                 strerror(errno));
    } else {
        w->job_id = job->job_id;
        int64_t deadline = timeout_ms > 0 ? sb_mono_ms() + timeout_ms : 0;
        sb_wp_io_t io = sb_wp_pump(p, w, in, in_len, deadline, cancel);
        if (io != SB_WP_LINE || sb_wp_reply(w, job->job_id, res) < 0) {
            if (io != SB_WP_LINE) sb_wp_break_msg(w, io, timeout_ms, p->o.max_line, res);
            sb_wp_drain_err(p, w);
            sb_wp_restart(p, w, res->error);
            res->restarted = 1;
        }
    }
    free(in);
    sb_wp_release(p, w);
    return res->end;
}

/* ---- shutdown ----------------------------------------------------------------------------- */

/* Waits until every process exited or the deadline, logging stderr meanwhile. */
static void sb_wp_wait_all(sb_workerpool_t *p, int64_t deadline) {
    for (;;) {
        int running = 0;
        for (int i = 0; i < p->n; i++) {
            sb_wproc_t *w = &p->procs[i];
            int status;
            if (w->pid <= 0) continue;
            sb_wp_drain_err(p, w);
            if (waitpid(w->pid, &status, WNOHANG) == w->pid) {
                sb_wp_drain_err(p, w);
                sb_wp_close_fds(w);
                w->pid = 0;
            } else {
                running++;
            }
        }
        if (!running || sb_mono_ms() >= deadline) return;
        sb_sleep_ms(10, NULL);
    }
}

void sb_workerpool_free(sb_workerpool_t *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++)
        if (p->procs[i].fd[0] >= 0) {
            close(p->procs[i].fd[0]);
            p->procs[i].fd[0] = -1;
        }
    sb_wp_wait_all(p, sb_mono_ms() + p->o.grace_ms);
    for (int i = 0; i < p->n; i++) {
        if (p->procs[i].pid > 0)
            sb_warn(p->o.log_name, "handler %d (pid %d) did not exit within %d ms of its stdin "
                    "closing: killed", i, (int)p->procs[i].pid, p->o.grace_ms);
        sb_wp_kill(p, &p->procs[i]);
        free(p->procs[i].line);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->idle);
    free(p->cmd);
    free(p->log_name);
    sb_wp_free_env(p->env);
    free(p);
}
