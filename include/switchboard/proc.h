/* Running a handler program: `/bin/sh -c CMD` with some bytes on its stdin, its stdout and
 * stderr collected, a deadline and a cancel flag.
 *
 * The child runs in its own process group so a timeout or a cancel kills everything it
 * started. One poll() loop feeds stdin and drains stdout/stderr (a program that writes before
 * it reads cannot deadlock us), each output capped at max_output bytes. Used by the agent's
 * --exec handler (job JSON in, result JSON out) and by `events consume --exec`. */
#ifndef SB_PROC_H
#define SB_PROC_H

#include <stdatomic.h>
#include <stddef.h>

#define SB_PROC_MAX_OUTPUT (1 << 20) /* default cap on stdout and on stderr */

typedef struct {
    const char *cmd;             /* run with /bin/sh -c */
    const char *const *env;      /* extra NAME=VALUE entries, NULL-terminated (may be NULL);
                                  * they replace inherited variables of the same name */
    const char *input;           /* written to stdin, then stdin is closed */
    size_t input_len;
    int timeout_ms;              /* killed after this long (per phase, see sb_proc_run) */
    const atomic_int *cancel;    /* killed as soon as *cancel is non-zero; may be NULL */
    size_t max_output;           /* 0: SB_PROC_MAX_OUTPUT */
    int die_with_parent;         /* SIGKILL the child when the forking thread dies */
    int reset_signals;           /* unblock every signal in the child (a caller that blocks
                                  * SIGTERM/SIGINT to sigwait them would pass that on) */
} sb_proc_opts_t;

/* How the run ended. */
typedef enum {
    SB_PROC_EXITED = 0,  /* the program ran to its end: see status */
    SB_PROC_TIMEOUT,     /* deadline reached: killed */
    SB_PROC_CANCELED,    /* *cancel became non-zero: killed */
    SB_PROC_TOO_BIG,     /* an output exceeded max_output: killed */
    SB_PROC_NOSTART,     /* could not be started: see spawn_errno */
} sb_proc_end_t;

typedef struct {
    sb_proc_end_t end;
    int status;          /* wait status (WIFEXITED...) once reaped */
    int spawn_errno;     /* for SB_PROC_NOSTART */
    char *out;           /* stdout, NUL-terminated, malloc'd (NULL when empty) */
    size_t out_len;
    char *err;           /* stderr, likewise */
    size_t err_len;
} sb_proc_result_t;

/* Runs o->cmd to its end. The I/O phase ends when both outputs close, at the deadline
 * (timeout_ms after start), on cancel or on overflow; the child is then reaped, and killed if
 * it is still running timeout_ms later or on cancel. Always fills res (release it with
 * sb_proc_result_close) and returns res->end. */
sb_proc_end_t sb_proc_run(const sb_proc_opts_t *o, sb_proc_result_t *res);
void sb_proc_result_close(sb_proc_result_t *res); /* frees out/err; NULL is fine */

/* "NAME=value" (value NULL: empty) for sb_proc_opts_t.env; malloc'd, NULL on ENOMEM. */
char *sb_proc_env_entry(const char *name, const char *value);

/* The end of stderr, trailing newlines and spaces trimmed, into dst (len > 0). */
void sb_proc_err_tail(const sb_proc_result_t *res, char *dst, size_t len);

#endif
