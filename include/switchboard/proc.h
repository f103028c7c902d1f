/* Running a handler program: `/bin/sh -c CMD` with some bytes on its stdin, its stdout and
 * stderr collected, one deadline, a cancel flag and an optional tick (a lease renewed while
 * it runs).
 *
 * The shell runs in a new process group under a small watchdog process (the group leader),
 * so a timeout, a cancel or the death of the caller kills everything it started: the caller
 * kills the group itself, and with die_with_parent the watchdog kills it when the caller is
 * killed (even by SIGKILL). Processes that leave the group (setsid) are out of reach. The
 * wait status is the shell's own (exit code, or the signal that killed it). The child gets
 * stdin, stdout and stderr and no other descriptor of the caller.
 *
 * One poll() loop feeds stdin and drains stdout/stderr (a program that writes before it reads
 * cannot deadlock us). Stdout is capped at max_output bytes; of stderr only the last
 * SB_PROC_ERR_TAIL bytes are kept, and its volume is never an error. Used by the agent's
 * --exec handler (job JSON in, result JSON out) and by `events consume --exec`. */
#ifndef SB_PROC_H
#define SB_PROC_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

#define SB_PROC_MAX_OUTPUT (1 << 20) /* default cap on stdout */
#define SB_PROC_ERR_TAIL (64 << 10)  /* bytes kept from the end of stderr */

typedef struct {
    const char *cmd;             /* run with /bin/sh -c */
    const char *const *env;      /* extra NAME=VALUE entries, NULL-terminated (may be NULL);
                                  * they replace inherited variables of the same name */
    const char *input;           /* written to stdin, then stdin is closed */
    size_t input_len;
    int timeout_ms;              /* killed this long after the start, whatever it is doing */
    const atomic_int *cancel;    /* killed as soon as *cancel is non-zero; may be NULL */
    int term_grace_ms;           /* > 0: on cancel the group first gets SIGTERM, and SIGKILL
                                  * only if it is still running this long after */
    size_t max_output;           /* cap on stdout; 0: SB_PROC_MAX_OUTPUT */
    int die_with_parent;         /* SIGKILL the whole group if the caller dies first
                                  * (kill -9 included) */
    int reset_signals;           /* unblock every signal in the child (a caller that blocks
                                  * SIGTERM/SIGINT to sigwait them would pass that on) */
    int (*tick)(void *user);     /* may be NULL: called on the caller's thread about every
                                  * tick_ms while the program runs (a lease to renew); a
                                  * non-zero return kills it and the run ends as CANCELED */
    void *tick_user;
    int tick_ms;                 /* > 0; poll() then wakes at least this often */
} sb_proc_opts_t;

/* How the run ended. */
typedef enum {
    SB_PROC_EXITED = 0,  /* the program ran to its end: see status */
    SB_PROC_TIMEOUT,     /* deadline reached (outputs open or not): killed */
    SB_PROC_CANCELED,    /* *cancel became non-zero or tick asked to stop: killed */
    SB_PROC_TOO_BIG,     /* stdout exceeded max_output: killed */
    SB_PROC_NOSTART,     /* could not be started: see spawn_errno */
} sb_proc_end_t;

typedef struct {
    sb_proc_end_t end;
    int status;          /* wait status (WIFEXITED...) once reaped */
    int spawn_errno;     /* for SB_PROC_NOSTART */
    char *out;           /* stdout, NUL-terminated, malloc'd (NULL when empty) */
    size_t out_len;
    char *err;           /* the last SB_PROC_ERR_TAIL bytes of stderr, likewise */
    size_t err_len;
} sb_proc_result_t;

/* Runs o->cmd to its end: until both outputs are closed and the shell has exited. At the
 * deadline (timeout_ms after the start), on cancel or when stdout overflows, whichever comes
 * first and whether or not the outputs are still open, the group is killed and the run ends
 * as TIMEOUT, CANCELED or TOO_BIG. Always fills res (release it with sb_proc_result_close)
 * and returns res->end. */
sb_proc_end_t sb_proc_run(const sb_proc_opts_t *o, sb_proc_result_t *res);
void sb_proc_result_close(sb_proc_result_t *res); /* frees out/err; NULL is fine */

/* The start of sb_proc_run, for callers that talk to a long-lived handler themselves (the
 * --worker pool, workerpool.h): starts the watchdog and through it `/bin/sh -c o->cmd` with
 * o->env, o->die_with_parent and o->reset_signals (the other options are not used). Fills
 * fds[0] = the shell's stdin (write end, non-blocking), fds[1] = its stdout, fds[2] = its
 * stderr (read ends, blocking), all O_CLOEXEC and the caller's to close. Returns the
 * watchdog's pid, which is also the process group id (kill(-pid, …) reaches everything it
 * started; waitpid(pid) gives the shell's own wait status); -1 with errno set. */
pid_t sb_proc_spawn(const sb_proc_opts_t *o, int fds[3]);

/* "NAME=value" (value NULL: empty) for sb_proc_opts_t.env; malloc'd, NULL on ENOMEM. */
char *sb_proc_env_entry(const char *name, const char *value);

/* The end of stderr, trailing newlines and spaces trimmed, into dst (len > 0). When the cut
 * falls inside a UTF-8 character, the tail starts at the next one. */
void sb_proc_err_tail(const sb_proc_result_t *res, char *dst, size_t len);

#endif
