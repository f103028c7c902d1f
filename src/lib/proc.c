/* The process runner behind every --exec handler: see include/switchboard/proc.h.
 *
 * Everything the child needs (argv, envp) is prepared before fork(): between fork and exec a
 * threaded process may only make async-signal-safe calls (no malloc, no setenv). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include "switchboard/clock.h"
#include "switchboard/proc.h"

#define SB_PROC_POLL_MS 100

typedef struct {
    char *data;
    size_t len, cap, max;
    int over; /* more than max arrived */
} sb_pbuf_t;

static void sb_pbuf_append(sb_pbuf_t *b, const char *p, size_t n) {
    if (b->len + n > b->max) {
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

/* 1 if environment entry e sets a name one of extra also sets. */
static int sb_proc_env_replaced(const char *e, const char *const *extra) {
    const char *eq = strchr(e, '=');
    size_t n = eq ? (size_t)(eq - e) + 1 : strlen(e);
    for (size_t i = 0; extra && extra[i]; i++)
        if (strncmp(e, extra[i], n) == 0) return 1;
    return 0;
}

/* Our environment with extra entries replacing their names. The array is malloc'd; its
 * strings are borrowed. NULL on ENOMEM. */
static char **sb_proc_env(const char *const *extra) {
    size_t n = 0, x = 0;
    while (environ[n]) n++;
    while (extra && extra[x]) x++;
    char **envp = calloc(n + x + 1, sizeof *envp);
    if (!envp) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!sb_proc_env_replaced(environ[i], extra)) envp[k++] = environ[i];
    for (size_t i = 0; i < x; i++) envp[k++] = (char *)extra[i];
    envp[k] = NULL;
    return envp;
}

static void sb_close_pair(int p[2]) {
    close(p[0]);
    close(p[1]);
}

/* Starts the child; fills fds[0]=its stdin (write end), fds[1]=stdout, fds[2]=stderr. */
static pid_t sb_proc_spawn(const sb_proc_opts_t *o, int fds[3]) {
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) < 0) return -1;
    if (pipe2(out, O_CLOEXEC) < 0) {
        sb_close_pair(in);
        return -1;
    }
    if (pipe2(err, O_CLOEXEC) < 0) {
        sb_close_pair(in);
        sb_close_pair(out);
        return -1;
    }
    char **envp = sb_proc_env(o->env);
    char sh[] = "sh", dash_c[] = "-c", *cmd_copy = strdup(o->cmd);
    char *const argv[] = {sh, dash_c, cmd_copy, NULL};
    pid_t parent = getpid();
    pid_t pid = envp && cmd_copy ? fork() : -1;
    if (pid == 0) {
        setpgid(0, 0);
        if (o->die_with_parent) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) _exit(127); /* the parent died before prctl */
        }
        if (o->reset_signals) {
            sigset_t none;
            sigemptyset(&none);
            sigprocmask(SIG_SETMASK, &none, NULL);
        }
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        signal(SIGPIPE, SIG_DFL);
        execve("/bin/sh", argv, envp);
        _exit(127);
    }
    int saved = errno;
    free(envp);
    free(cmd_copy);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        close(err[0]);
        errno = saved;
        return -1;
    }
    setpgid(pid, pid); /* also from the parent: no race with an early kill */
    fds[0] = in[1];
    fds[1] = out[0];
    fds[2] = err[0];
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    return pid;
}

static int sb_canceled(const atomic_int *cancel) { return cancel && atomic_load(cancel); }

/* Feeds input and collects output until both outputs close, the deadline, cancel or overflow. */
static sb_proc_end_t sb_proc_pump(int fds[3], const sb_proc_opts_t *o, sb_pbuf_t *out,
                                  sb_pbuf_t *err, int64_t deadline) {
    size_t sent = 0;
    char chunk[65536];
    for (;;) {
        if (fds[0] >= 0 && sent == o->input_len) {
            close(fds[0]);
            fds[0] = -1;
        }
        if (fds[1] < 0 && fds[2] < 0) return SB_PROC_EXITED;
        if (sb_canceled(o->cancel)) return SB_PROC_CANCELED;
        if (sb_mono_ms() >= deadline) return SB_PROC_TIMEOUT;
        if (out->over || err->over) return SB_PROC_TOO_BIG;
        struct pollfd p[3] = {{fds[0], POLLOUT, 0}, {fds[1], POLLIN, 0}, {fds[2], POLLIN, 0}};
        if (poll(p, 3, SB_PROC_POLL_MS) < 0 && errno != EINTR) return SB_PROC_EXITED;
        if (fds[0] >= 0 && (p[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = write(fds[0], o->input + sent, o->input_len - sent);
            if (n > 0) sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR) sent = o->input_len; /* gone */
        }
        for (int i = 1; i < 3; i++) {
            if (fds[i] < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(fds[i], chunk, sizeof chunk);
            if (n > 0) sb_pbuf_append(i == 1 ? out : err, chunk, (size_t)n);
            else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(fds[i]);
                fds[i] = -1;
            }
        }
    }
}

/* Waits for the child; one that outlives its closed pipes is killed at the deadline or on
 * cancel. Returns the wait status. */
static int sb_proc_reap(pid_t pid, int64_t deadline, const atomic_int *cancel) {
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) return status;
        if (r == 0 && (sb_canceled(cancel) || sb_mono_ms() >= deadline)) {
            kill(-pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
            return status;
        }
        sb_sleep_ms(5, NULL);
    }
}

sb_proc_end_t sb_proc_run(const sb_proc_opts_t *o, sb_proc_result_t *res) {
    memset(res, 0, sizeof *res);
    int fds[3];
    pid_t pid = sb_proc_spawn(o, fds);
    if (pid < 0) {
        res->spawn_errno = errno;
        return res->end = SB_PROC_NOSTART;
    }
    size_t max = o->max_output ? o->max_output : SB_PROC_MAX_OUTPUT;
    sb_pbuf_t out = {.max = max}, err = {.max = max};
    res->end = sb_proc_pump(fds, o, &out, &err, sb_mono_ms() + o->timeout_ms);
    if (res->end != SB_PROC_EXITED) kill(-pid, SIGKILL);
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0) close(fds[i]);
    res->status = sb_proc_reap(pid, sb_mono_ms() + o->timeout_ms, o->cancel);
    res->out = out.data;
    res->out_len = out.len;
    res->err = err.data;
    res->err_len = err.len;
    return res->end;
}

void sb_proc_result_close(sb_proc_result_t *res) {
    if (!res) return;
    free(res->out);
    free(res->err);
    res->out = res->err = NULL;
    res->out_len = res->err_len = 0;
}

char *sb_proc_env_entry(const char *name, const char *value) {
    size_t n = strlen(name) + (value ? strlen(value) : 0) + 2;
    char *e = malloc(n);
    if (e) snprintf(e, n, "%s=%s", name, value ? value : "");
    return e;
}

void sb_proc_err_tail(const sb_proc_result_t *res, char *dst, size_t len) {
    size_t n = res->err_len;
    while (n > 0 && (res->err[n - 1] == '\n' || res->err[n - 1] == ' ')) n--;
    size_t start = n > len - 1 ? n - (len - 1) : 0;
    snprintf(dst, len, "%.*s", (int)(n - start), res->err ? res->err + start : "");
}
