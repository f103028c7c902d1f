/* Handlers of the `switchboard agent` program: the built-in `rebalance` and `--exec CMD`. */
#ifndef SB_AGENT_HANDLERS_H
#define SB_AGENT_HANDLERS_H

#include "switchboard/agent.h"

/* rebalance: payload.amount must be a finite number > 0 (else SB_HANDLER_FAIL, no retry);
 * result {success, originalAmount, fee (2 %), remainingAmount, processedAt}. user unused. */
sb_handler_rc_t sb_handler_rebalance(const sb_job_t *job, int attempt, const atomic_int *cancel,
                                     sb_handler_out_t *out, void *user);

/* Options of the exec handler; pass a pointer as the handler's user pointer. */
typedef struct {
    const char *cmd;   /* run with /bin/sh -c */
    int timeout_s;     /* kill the program after this long */
} sb_exec_opts_t;

/* The exit status with which an --exec program fails its job for good (sysexits.h's
 * EX_DATAERR: the input was bad; shells do not use it for anything else). */
#define SB_EXEC_PERMANENT 65

/* exec: runs opts->cmd with the job record JSON on stdin and SB_JOB_ID, SB_JOB_TYPE,
 * SB_ATTEMPT in its environment. Exit 0: stdout is the result (JSON; empty = null).
 * Exit SB_EXEC_PERMANENT, or a non-zero exit with {"error":…,"retry":false} on stdout:
 * SB_HANDLER_FAIL. Any other non-zero exit, a signal, a timeout or invalid JSON:
 * SB_HANDLER_RETRY. The error is stdout's {"error"} when given, else the end of stderr, else
 * the reason. Cancel (shutdown, or an operator's cancel of the job) sends the program's
 * process group SIGTERM, then SIGKILL after SB_EXEC_TERM_GRACE_MS: SB_HANDLER_CANCELED. */
#define SB_EXEC_TERM_GRACE_MS 3000
sb_handler_rc_t sb_handler_exec(const sb_job_t *job, int attempt, const atomic_int *cancel,
                                sb_handler_out_t *out, void *user);

#endif
