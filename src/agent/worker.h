/* The --worker handler of `switchboard agent`: each attempt runs on one of the long-lived
 * handler processes of a workerpool.h pool (one per concurrency slot). */
#ifndef SB_AGENT_WORKER_H
#define SB_AGENT_WORKER_H

#include "switchboard/agent.h"
#include "switchboard/workerpool.h"

/* Options of the worker handler; pass a pointer as the handler's user pointer. */
typedef struct {
    sb_workerpool_t *pool; /* the caller's; outlives the agent */
    int timeout_s;         /* JOB_TIMEOUT: a process over it is killed and restarted */
} sb_worker_handler_opts_t;

/* Sends {jobId,type,payload,user,attempt} to an idle process and maps its answer:
 * result → SB_HANDLER_OK; error with retry:false → SB_HANDLER_FAIL; error with retry true
 * (or absent), an exit, a protocol break or a timeout → SB_HANDLER_RETRY with the reason;
 * cancel → SB_HANDLER_CANCELED (the process is killed and restarted). */
sb_handler_rc_t sb_handler_worker(const sb_job_t *job, int attempt, const atomic_int *cancel,
                                  sb_handler_out_t *out, void *user);

#endif
