/* A pool of long-lived handler processes speaking JSON lines: the engine of
 * `switchboard agent --worker CMD`.
 *
 * The protocol (README "Handler protocol"). The pool writes one job per line on a process's
 * stdin:
 *     {"jobId":"…","type":"…","payload":…,"user":{…},"attempt":1}
 * and the process answers with exactly one line on its stdout:
 *     {"jobId":"…","result":…}                      success (result may be any JSON value)
 *     {"jobId":"…","error":"…","retry":true|false}   failure; retry:false fails the job for good
 * A process gets one job at a time. What it writes on stderr goes to the log, a line at a
 * time, tagged with the job it was running.
 *
 * Everything else is a protocol break: a line that is not UTF-8, not a JSON object, carries
 * another jobId, has neither result nor error, or is longer than max_line; output nobody asked
 * for (between jobs); stdout closed. A break, an exit, a timeout or a cancel fails that attempt
 * with a sentence saying what happened (SB_WORKER_RETRY: the job is retried as usual), and the
 * process is killed (its whole process group) and started again.
 *
 * Processes are started with the --exec runner's spawner (proc.h): /bin/sh -c CMD under a
 * watchdog that leads a new process group and kills it when the caller dies, with only fds
 * 0-2 inherited. All are started by sb_workerpool_create; a dead one is restarted when it
 * is met. Shutdown (sb_workerpool_free) closes every stdin, lets the processes exit within
 * the grace period, then kills what is left.
 *
 * Thread safety: sb_workerpool_run may be called from several threads at once; each call
 * takes an idle process (waiting for one if all are busy) and gives it back. */
#ifndef SB_WORKERPOOL_H
#define SB_WORKERPOOL_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>
#include <cjson/cJSON.h>

#define SB_WORKER_MAX_LINE (1 << 20)  /* default cap on a reply line (bytes, newline excluded) */
#define SB_WORKER_LOG_LINE 1536       /* stderr lines are logged in pieces of at most this */
#define SB_WORKER_MAX_PROCS 1024

typedef struct {
    const char *cmd;          /* run with /bin/sh -c (required) */
    const char *const *env;   /* extra NAME=VALUE entries, NULL-terminated (may be NULL) */
    int procs;                /* processes (the agent's concurrency), 1..SB_WORKER_MAX_PROCS */
    size_t max_line;          /* cap on a reply line; 0: SB_WORKER_MAX_LINE */
    int grace_ms;             /* shutdown: time to exit after stdin closes, then SIGKILL */
    const char *log_name;     /* log component; NULL: "worker" */
} sb_workerpool_opts_t;

/* Defaults: procs 1, max_line SB_WORKER_MAX_LINE, grace 30000 ms. cmd must still be set. */
void sb_workerpool_opts_init(sb_workerpool_opts_t *o);

/* One job as it is sent. Borrowed for the call. */
typedef struct {
    const char *job_id;
    const char *type;
    const cJSON *payload;     /* NULL: null */
    const cJSON *user;        /* NULL: null */
    int attempt;              /* from 1 */
} sb_worker_job_t;

typedef enum {
    SB_WORKER_OK = 0,         /* result holds the result */
    SB_WORKER_RETRY,          /* failed this attempt (handler said retry, or a break) */
    SB_WORKER_FAIL,           /* the handler said retry:false */
    SB_WORKER_CANCELED,       /* *cancel became non-zero: process killed and restarted */
} sb_worker_end_t;

typedef struct {
    sb_worker_end_t end;
    cJSON *result;            /* OK: the result (a JSON null item when it was null); caller
                               * owns it. NULL otherwise */
    char error[512];          /* RETRY / FAIL / CANCELED: one sentence */
    int restarted;            /* 1 if the process was killed (or had died) and restarted */
} sb_worker_result_t;

typedef struct sb_workerpool sb_workerpool_t;

/* Copies o and starts o->procs processes. Returns NULL with a reason in err (bad options, no
 * memory, fork failed). A command that exits at once is not an error here: its jobs fail
 * with the exit status. */
sb_workerpool_t *sb_workerpool_create(const sb_workerpool_opts_t *o, char *err, size_t errlen);

/* Runs one job on an idle process: at most timeout_ms from the moment it is sent (<= 0: no
 * limit), killed as soon as *cancel is non-zero (cancel may be NULL). Always fills res and
 * returns res->end. A RETRY that was not the handler's own answer says why in res->error
 * ("handler process exited with status 3", "…printed invalid JSON…", "…timed out…"). */
sb_worker_end_t sb_workerpool_run(sb_workerpool_t *p, const sb_worker_job_t *job,
                                  int timeout_ms, const atomic_int *cancel,
                                  sb_worker_result_t *res);

/* Processes started so far (including the first ones): restarts = starts - procs. */
unsigned long long sb_workerpool_starts(const sb_workerpool_t *p);

/* The pid (process group) of process i, 0 when none runs. For tests and logs. */
pid_t sb_workerpool_pid(sb_workerpool_t *p, int i);

/* Closes every stdin, waits up to grace_ms for the processes to exit (logging their stderr),
 * kills the rest and frees p. Call when no sb_workerpool_run is in progress. NULL is fine. */
void sb_workerpool_free(sb_workerpool_t *p);

#endif
