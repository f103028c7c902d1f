/* The process runner behind every --exec handler: see include/switchboard/proc.h.
 *
 * Process tree of one run:
 *
 *     agent -> watchdog (leader of a new process group) -> /bin/sh -c CMD -> what it starts
 *
 * The watchdog exists because PR_SET_PDEATHSIG reaches one process only: set on the shell, it
 * killed the shell and orphaned the program the shell had forked (dash forks even for
 * 'sleep 1; echo hi'). The watchdog instead gets SIGTERM when the agent dies (PR_SET_PDEATHSIG,
 * plus a getppid() check for an agent that died before the prctl) and answers with SIGKILL to
 * its whole group. Otherwise it waits for the shell (sigsuspend on SIGCHLD/SIGTERM, blocked in
 * between, so neither can be missed) and ends the way the shell ended: same exit code, or the
 * same signal re-raised with its default action. The agent therefore sees exactly the wait
 * status it would see from the shell. A timeout or a cancel in the agent kills the group
 * (kill(-pgid)), watchdog included. A cancel with a grace period (term_grace_ms) first sends
 * the watchdog SIGUSR1, which it answers with SIGTERM to the rest of its group (ignoring its
 * own copy), so the handler may clean up; SIGKILL to the group follows after the grace. The
 * watchdog keeps no descriptor, so the pipes close when the shell and its children close them.
 *
 * The child gets fds 0, 1, 2 (our pipes) and nothing else: every descriptor >= 3 is closed
 * (close_range, or a loop where that is missing), so the agent's Redis sockets and metrics
 * pipes do not leak into handlers. Our own pipe ends are O_CLOEXEC.
 *
 * Everything the child needs (argv, envp, the fd limit) is prepared before fork(): between
 * fork and exec a threaded process may only make async-signal-safe calls (no malloc, no
 * stdio, no setenv), and the watchdog, which never execs, keeps to that too.
 *
 * Output: stdout is the result, capped at max_output (over it, the run is killed: TOO_BIG);
 * of stderr only the last SB_PROC_ERR_TAIL bytes are kept, however much is written. One
 * deadline, timeout_ms from the start, covers the I/O and the wait for the exit. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include "switchboard/clock.h"
#include "switchboard/proc.h"

#define SB_PROC_POLL_MS 100 /* poll() wakes this often to look at the deadline and cancel */
#define SB_PROC_REAP_MS 5   /* outputs closed, child not yet exited: waitpid() this often */

/* ---- output buffers ---- */

typedef struct {
    char *data;     /* NUL-terminated, malloc'd (NULL until something arrives) */
    size_t len, cap;
    size_t max;     /* bytes kept at most */
    int keep_tail;  /* past max, drop the oldest bytes (stderr) rather than stop (stdout) */
    int over;       /* more than max arrived */
} sb_pbuf_t;

static void sb_pbuf_append(sb_pbuf_t *b, const char *p, size_t n) {
    if (b->len + n > b->max) {
        b->over = 1;
        if (!b->keep_tail) return;
        if (n >= b->max) { /* the chunk alone fills the tail */
            p += n - b->max;
            n = b->max;
            b->len = 0;
        } else {
            size_t drop = b->len + n - b->max;
            memmove(b->data, b->data + drop, b->len - drop);
            b->len -= drop;
        }
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

/* ---- environment ---- */

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

/* ---- the child side: async-signal-safe calls only, from fork() to execve() or _exit() ---- */

typedef struct {
    char *const *argv, *const *envp; /* for execve("/bin/sh") */
    int in, out, err;                /* pipe ends that become the shell's 0, 1, 2 */
    pid_t agent;                     /* our pid before fork: the parent-death check */
    int die_with_parent, reset_signals;
    int max_fd;                      /* close() loop bound where close_range() fails */
} sb_child_t;

/* The watchdog got SIGTERM: the agent is gone (its parent-death signal), or someone asks it
 * to end the run. Either way the group is killed. */
static volatile sig_atomic_t sb_watch_term;

static void sb_watch_on_term(int sig) {
    (void)sig;
    sb_watch_term = 1;
}

static void sb_watch_on_chld(int sig) { (void)sig; } /* only to end sigsuspend() */

/* The agent asks for a SIGTERM to the group (a cancel with a grace period). */
static volatile sig_atomic_t sb_watch_usr1;

static void sb_watch_on_usr1(int sig) {
    (void)sig;
    sb_watch_usr1 = 1;
}

/* SIGTERM to the group but the watchdog: its own copy is discarded, being ignored and
 * unblocked while sent (Linux keeps a blocked signal pending even when it is ignored). */
static void sb_watch_term_group(void) {
    struct sigaction ign = {.sa_handler = SIG_IGN}, on_term = {.sa_handler = sb_watch_on_term};
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigaction(SIGTERM, &ign, NULL);
    sigprocmask(SIG_UNBLOCK, &term, NULL);
    kill(0, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    sigaction(SIGTERM, &on_term, NULL);
}

static void sb_child_close_from(int lo, int max_fd) {
    if (close_range((unsigned)lo, ~0U, 0) == 0) return;
    for (int fd = lo; fd < max_fd; fd++) close(fd);
}

/* The pipes become 0, 1, 2 and every other descriptor is closed. They are first copied above
 * 2: a pipe end that is itself 0-2 (our stdin was closed) is neither overwritten by another
 * dup2 nor left O_CLOEXEC by a no-op dup2. */
static void sb_child_fds(const sb_child_t *c) {
    int in = fcntl(c->in, F_DUPFD, 3), out = fcntl(c->out, F_DUPFD, 3);
    int err = fcntl(c->err, F_DUPFD, 3);
    if (in < 0 || out < 0 || err < 0) _exit(127);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) _exit(127);
    sb_child_close_from(3, c->max_fd);
}

/* The shell: the watchdog's signal handling undone, the caller's mask (or none), exec. */
_Noreturn static void sb_child_exec(const sb_child_t *c, const struct sigaction old[3],
                                    pid_t watchdog, const sigset_t *mask) {
    sigaction(SIGTERM, &old[0], NULL);
    sigaction(SIGCHLD, &old[1], NULL);
    sigaction(SIGUSR1, &old[2], NULL);
    signal(SIGPIPE, SIG_DFL);
    if (c->die_with_parent) { /* a watchdog killed by someone else takes the shell along */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != watchdog) _exit(127);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, c->reset_signals ? &none : mask, NULL);
    execve("/bin/sh", c->argv, c->envp);
    _exit(127);
}

/* Ends the watchdog the way the shell ended (status from waitpid). */
_Noreturn static void sb_watch_relay(int status) {
    if (!WIFSIGNALED(status)) _exit(WEXITSTATUS(status));
    int sig = WTERMSIG(status);
    struct rlimit no_core = {0, 0}; /* a core was the shell's to dump, not ours */
    setrlimit(RLIMIT_CORE, &no_core);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigaction(sig, &dfl, NULL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, sig);
    sigprocmask(SIG_UNBLOCK, &only, NULL);
    kill(getpid(), sig);
    _exit(128 + sig);
}

/* Waits for the shell with SIGTERM and SIGCHLD blocked except inside sigsuspend(). */
_Noreturn static void sb_watch(pid_t shell) {
    sigset_t wake;
    sigfillset(&wake);
    sigdelset(&wake, SIGTERM);
    sigdelset(&wake, SIGCHLD);
    sigdelset(&wake, SIGUSR1);
    for (;;) {
        int status;
        pid_t r = waitpid(shell, &status, WNOHANG);
        if (r == shell) sb_watch_relay(status);
        if (r < 0 && errno != EINTR) _exit(127);
        if (sb_watch_term) {
            kill(0, SIGKILL); /* the whole group, the watchdog last */
            _exit(128 + SIGKILL);
        }
        if (sb_watch_usr1) {
            sb_watch_usr1 = 0;
            sb_watch_term_group();
        }
        sigsuspend(&wake);
    }
}

/* The forked child: new process group, parent-death signal, fds, then the shell is forked
 * and watched. Never returns. */
_Noreturn static void sb_child_main(const sb_child_t *c) {
    sigset_t block, mask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGCHLD);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &mask);
    struct sigaction on_term = {.sa_handler = sb_watch_on_term};
    struct sigaction on_chld = {.sa_handler = sb_watch_on_chld};
    struct sigaction on_usr1 = {.sa_handler = sb_watch_on_usr1}, old[3];
    sigaction(SIGTERM, &on_term, &old[0]);
    sigaction(SIGCHLD, &on_chld, &old[1]);
    sigaction(SIGUSR1, &on_usr1, &old[2]);
    setpgid(0, 0);
    prctl(PR_SET_NAME, "sb-watchdog"); /* in ps -o comm, top: not another agent */
    if (c->die_with_parent) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != c->agent) _exit(127); /* the agent died before prctl */
    }
    sb_child_fds(c);
    pid_t self = getpid(), shell = fork();
    if (shell == 0) sb_child_exec(c, old, self, &mask);
    if (shell < 0) {
        static const char msg[] = "switchboard: cannot fork the handler\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
    }
    close(0);
    close(1);
    close(2);
    sb_watch(shell);
}

/* ---- the agent side ---- */

static void sb_close_pair(int p[2]) {
    close(p[0]);
    close(p[1]);
}

/* See proc.h. */
pid_t sb_proc_spawn(const sb_proc_opts_t *o, int fds[3]) {
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
    long max_fd = sysconf(_SC_OPEN_MAX);
    sb_child_t c = {.argv = argv, .envp = envp, .in = in[0], .out = out[1], .err = err[1],
                    .agent = getpid(), .die_with_parent = o->die_with_parent,
                    .reset_signals = o->reset_signals,
                    .max_fd = max_fd > 0 && max_fd < (1 << 20) ? (int)max_fd : 1 << 20};
    pid_t pid = envp && cmd_copy ? fork() : -1;
    if (pid == 0) sb_child_main(&c);
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

/* 1 when the run should end as CANCELED: *cancel set, or the tick (when due) asked for it.
 * *next_tick is when the tick is due next. */
static int sb_canceled(const sb_proc_opts_t *o, int64_t *next_tick) {
    if (o->cancel && atomic_load(o->cancel)) return 1;
    if (!o->tick || sb_mono_ms() < *next_tick) return 0;
    *next_tick = sb_mono_ms() + o->tick_ms;
    return o->tick(o->tick_user) != 0;
}

/* poll() timeout: SB_PROC_POLL_MS, or tick_ms when that is shorter. */
static int sb_poll_ms(const sb_proc_opts_t *o) {
    if (!o->tick || o->tick_ms >= SB_PROC_POLL_MS) return SB_PROC_POLL_MS;
    return o->tick_ms > 0 ? o->tick_ms : 1;
}

/* Feeds input and collects output until both outputs close, the deadline, cancel or a
 * stdout over its cap. */
static sb_proc_end_t sb_proc_pump(pid_t pid, int fds[3], const sb_proc_opts_t *o,
                                  sb_pbuf_t *out, sb_pbuf_t *err, int64_t deadline,
                                  int64_t *next_tick) {
    size_t sent = 0;
    char chunk[65536];
    int64_t kill_at = 0; /* after a SIGTERM on cancel: when SIGKILL follows */
    int canceled = 0;    /* the cancel flag or the tick asked to stop (it stays asked) */
    for (;;) {
        if (fds[0] >= 0 && sent == o->input_len) {
            close(fds[0]);
            fds[0] = -1;
        }
        if (fds[1] < 0 && fds[2] < 0) return canceled ? SB_PROC_CANCELED : SB_PROC_EXITED;
        canceled = canceled || sb_canceled(o, next_tick);
        if (canceled && o->term_grace_ms > 0 && !kill_at) {
            kill(pid, SIGUSR1); /* the watchdog: SIGTERM to the group, which may clean up */
            kill_at = sb_mono_ms() + o->term_grace_ms;
        }
        if (canceled && (!kill_at || sb_mono_ms() >= kill_at)) return SB_PROC_CANCELED;
        if (sb_mono_ms() >= deadline) return SB_PROC_TIMEOUT;
        if (out->over) return SB_PROC_TOO_BIG;
        struct pollfd p[3] = {{fds[0], POLLOUT, 0}, {fds[1], POLLIN, 0}, {fds[2], POLLIN, 0}};
        if (poll(p, 3, sb_poll_ms(o)) < 0 && errno != EINTR) return SB_PROC_EXITED;
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

/* Reaps the child into *status. One that outlives its closed pipes (end still EXITED) is
 * killed at the same deadline or on cancel, and the run then ends as TIMEOUT or CANCELED.
 * Returns how the run ended. */
static sb_proc_end_t sb_proc_reap(pid_t pid, sb_proc_end_t end, int64_t deadline,
                                  const sb_proc_opts_t *o, int64_t *next_tick, int *status) {
    for (;;) {
        pid_t r = waitpid(pid, status, end == SB_PROC_EXITED ? WNOHANG : 0);
        if (r == pid || (r < 0 && errno != EINTR)) return end;
        if (r != 0) continue; /* EINTR */
        if (sb_canceled(o, next_tick)) end = SB_PROC_CANCELED;
        else if (sb_mono_ms() >= deadline) end = SB_PROC_TIMEOUT;
        if (end != SB_PROC_EXITED) kill(-pid, SIGKILL);
        else sb_sleep_ms(SB_PROC_REAP_MS, NULL);
    }
}

sb_proc_end_t sb_proc_run(const sb_proc_opts_t *o, sb_proc_result_t *res) {
    memset(res, 0, sizeof *res);
    int64_t deadline = sb_mono_ms() + o->timeout_ms, next_tick = sb_mono_ms() + o->tick_ms;
    int fds[3];
    pid_t pid = sb_proc_spawn(o, fds);
    if (pid < 0) {
        res->spawn_errno = errno;
        return res->end = SB_PROC_NOSTART;
    }
    sb_pbuf_t out = {.max = o->max_output ? o->max_output : SB_PROC_MAX_OUTPUT};
    sb_pbuf_t err = {.max = SB_PROC_ERR_TAIL, .keep_tail = 1};
    sb_proc_end_t end = sb_proc_pump(pid, fds, o, &out, &err, deadline, &next_tick);
    if (end != SB_PROC_EXITED) kill(-pid, SIGKILL); /* the group: watchdog, shell, the rest */
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0) close(fds[i]);
    res->end = sb_proc_reap(pid, end, deadline, o, &next_tick, &res->status);
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
    /* cut in the middle of a UTF-8 character: start at the next one (up to 3 bytes on) */
    for (int i = 0; i < 3 && start > 0 && start < n && (res->err[start] & 0xC0) == 0x80; i++)
        start++;
    snprintf(dst, len, "%.*s", (int)(n - start), res->err ? res->err + start : "");
}
