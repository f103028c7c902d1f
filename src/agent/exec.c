/* The --exec handler: any program is an agent. The job record goes to its stdin, its stdout
 * is the result, a non-zero exit is a failure with stderr as the message.
 *
 * The child runs `/bin/sh -c CMD` in its own process group so a timeout or a shutdown kills
 * everything it started. One poll() loop feeds stdin and drains stdout/stderr (so a program
 * that writes before it reads cannot deadlock us), each capped at SB_EXEC_MAX_OUTPUT. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "handlers.h"
#include "switchboard/clock.h"
#include "switchboard/json.h"

#define SB_EXEC_MAX_OUTPUT (1 << 20)
#define SB_EXEC_POLL_MS 100

typedef struct {
    char *data;
    size_t len, cap;
    int over;  /* more than SB_EXEC_MAX_OUTPUT arrived */
} sb_buf_t;

static void sb_buf_append(sb_buf_t *b, const char *p, size_t n) {
    if (b->len + n > SB_EXEC_MAX_OUTPUT) {
        b->over = 1;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            b->over = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

extern char **environ;

/* The child's environment: ours plus SB_JOB_ID, SB_JOB_TYPE, SB_ATTEMPT. NULL on ENOMEM. */
static char **sb_exec_env(const sb_job_t *job, int attempt) {
    size_t n = 0;
    while (environ[n]) n++;
    char **envp = calloc(n + 4, sizeof *envp);
    if (!envp) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "SB_JOB_ID=", 10) && strncmp(environ[i], "SB_JOB_TYPE=", 12) &&
            strncmp(environ[i], "SB_ATTEMPT=", 11))
            envp[k++] = environ[i];
    size_t mine = k;
    if (asprintf(&envp[k++], "SB_JOB_ID=%s", job->job_id ? job->job_id : "") < 0 ||
        asprintf(&envp[k++], "SB_JOB_TYPE=%s", job->type ? job->type : "") < 0 ||
        asprintf(&envp[k++], "SB_ATTEMPT=%d", attempt) < 0) {
        for (size_t i = mine; i < k - 1; i++) free(envp[i]);
        free(envp);
        return NULL;
    }
    envp[k] = NULL;
    return envp;
}

static void sb_exec_env_free(char **envp) {
    if (!envp) return;
    size_t n = 0;
    while (envp[n]) n++;
    for (size_t i = n - 3; i < n; i++) free(envp[i]); /* the three we added come last */
    free(envp);
}

/* Starts the child; fills fds[0]=its stdin (write end), fds[1]=stdout, fds[2]=stderr. */
static pid_t sb_exec_spawn(const char *cmd, const sb_job_t *job, int attempt, int fds[3]) {
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) < 0) return -1;
    if (pipe2(out, O_CLOEXEC) < 0) goto close_in;
    if (pipe2(err, O_CLOEXEC) < 0) goto close_out;
    /* Everything the child needs is prepared here: between fork and exec a threaded
     * process may only make async-signal-safe calls (no malloc, no setenv). */
    char **envp = sb_exec_env(job, attempt);
    char sh[] = "sh", dash_c[] = "-c", *cmd_copy = strdup(cmd);
    char *const argv[] = {sh, dash_c, cmd_copy, NULL};
    pid_t pid = envp && cmd_copy ? fork() : -1;
    if (pid == 0) {
        setpgid(0, 0);
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        signal(SIGPIPE, SIG_DFL);
        execve("/bin/sh", argv, envp);
        _exit(127);
    }
    sb_exec_env_free(envp);
    free(cmd_copy);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        close(err[0]);
        return -1;
    }
    setpgid(pid, pid); /* also from the parent: no race with an early kill */
    fds[0] = in[1];
    fds[1] = out[0];
    fds[2] = err[0];
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    return pid;
close_out:
    close(out[0]);
    close(out[1]);
close_in:
    close(in[0]);
    close(in[1]);
    return -1;
}

/* Why the loop stopped early, if it did. */
typedef enum { SB_EXEC_RAN, SB_EXEC_TIMEOUT, SB_EXEC_CANCELED, SB_EXEC_TOO_BIG } sb_exec_end_t;

/* Feeds input and collects output until both outputs close, the deadline, cancel or overflow. */
static sb_exec_end_t sb_exec_pump(int fds[3], const char *input, size_t inlen, sb_buf_t *out,
                                  sb_buf_t *err, int64_t deadline, const atomic_int *cancel) {
    size_t sent = 0;
    char chunk[65536];
    for (;;) {
        if (fds[0] >= 0 && sent == inlen) {
            close(fds[0]);
            fds[0] = -1;
        }
        if (fds[1] < 0 && fds[2] < 0) return SB_EXEC_RAN;
        if (atomic_load(cancel)) return SB_EXEC_CANCELED;
        if (sb_mono_ms() >= deadline) return SB_EXEC_TIMEOUT;
        if (out->over || err->over) return SB_EXEC_TOO_BIG;
        struct pollfd p[3] = {{fds[0], POLLOUT, 0}, {fds[1], POLLIN, 0}, {fds[2], POLLIN, 0}};
        if (poll(p, 3, SB_EXEC_POLL_MS) < 0 && errno != EINTR) return SB_EXEC_RAN;
        if (fds[0] >= 0 && (p[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = write(fds[0], input + sent, inlen - sent);
            if (n > 0) sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR) sent = inlen; /* reader gone */
        }
        for (int i = 1; i < 3; i++) {
            if (fds[i] < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(fds[i], chunk, sizeof chunk);
            if (n > 0) sb_buf_append(i == 1 ? out : err, chunk, (size_t)n);
            else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(fds[i]);
                fds[i] = -1;
            }
        }
    }
}

/* Last line-ish part of stderr, trimmed, for the error message. */
static void sb_exec_tail(const sb_buf_t *err, char *dst, size_t len) {
    size_t n = err->len;
    while (n > 0 && (err->data[n - 1] == '\n' || err->data[n - 1] == ' ')) n--;
    size_t start = n > len - 1 ? n - (len - 1) : 0;
    snprintf(dst, len, "%.*s", (int)(n - start), err->data ? err->data + start : "");
}

static sb_handler_rc_t sb_exec_verdict(int status, sb_exec_end_t end, const sb_buf_t *out,
                                       const sb_buf_t *err, const sb_exec_opts_t *o,
                                       sb_handler_out_t *res) {
    if (end == SB_EXEC_CANCELED) return SB_HANDLER_CANCELED;
    if (end == SB_EXEC_TIMEOUT) {
        snprintf(res->error, sizeof res->error, "handler timed out after %d s", o->timeout_s);
        return SB_HANDLER_RETRY;
    }
    if (end == SB_EXEC_TOO_BIG) {
        snprintf(res->error, sizeof res->error, "handler output exceeds %d bytes",
                 SB_EXEC_MAX_OUTPUT);
        return SB_HANDLER_RETRY;
    }
    if (WIFSIGNALED(status)) {
        snprintf(res->error, sizeof res->error, "handler killed by signal %d", WTERMSIG(status));
        return SB_HANDLER_RETRY;
    }
    if (WEXITSTATUS(status) != 0) {
        if (err->len) sb_exec_tail(err, res->error, sizeof res->error);
        else snprintf(res->error, sizeof res->error, "handler exited with status %d",
                      WEXITSTATUS(status));
        snprintf(res->details, sizeof res->details, "exit status %d", WEXITSTATUS(status));
        return SB_HANDLER_RETRY;
    }
    size_t n = out->len;
    while (n > 0 && (out->data[n - 1] == '\n' || out->data[n - 1] == ' ' || out->data[n - 1] == '\r'))
        n--;
    if (n == 0) return SB_HANDLER_OK; /* empty stdout: result null */
    res->result = sb_json_parse(out->data, n);
    if (!res->result) {
        snprintf(res->error, sizeof res->error, "handler printed invalid JSON on stdout");
        return SB_HANDLER_RETRY;
    }
    return SB_HANDLER_OK;
}

/* Waits for the child; one that outlives its closed pipes is killed at the deadline or on
 * cancel. Returns the wait status. */
static int sb_exec_reap(pid_t pid, int64_t deadline, const atomic_int *cancel) {
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) return status;
        if (r == 0 && (atomic_load(cancel) || sb_mono_ms() >= deadline)) {
            kill(-pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
            return status;
        }
        sb_sleep_ms(5, NULL);
    }
}

sb_handler_rc_t sb_handler_exec(const sb_job_t *job, int attempt, const atomic_int *cancel,
                                sb_handler_out_t *res, void *user) {
    const sb_exec_opts_t *o = user;
    char *input = sb_json_print(job->root);
    int fds[3];
    pid_t pid = input ? sb_exec_spawn(o->cmd, job, attempt, fds) : -1;
    if (pid < 0) {
        free(input);
        snprintf(res->error, sizeof res->error, "could not start handler: %s", strerror(errno));
        return SB_HANDLER_RETRY;
    }
    sb_buf_t out = {0}, err = {0};
    sb_exec_end_t end = sb_exec_pump(fds, input, strlen(input), &out, &err,
                                     sb_mono_ms() + (int64_t)o->timeout_s * 1000, cancel);
    free(input);
    if (end != SB_EXEC_RAN) kill(-pid, SIGKILL);
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0) close(fds[i]);
    int status = sb_exec_reap(pid, sb_mono_ms() + (int64_t)o->timeout_s * 1000, cancel);
    sb_handler_rc_t rc = sb_exec_verdict(status, end, &out, &err, o, res);
    free(out.data);
    free(err.data);
    return rc;
}
