/* The --worker handler: a job attempt in, the pool's verdict out (see worker.h). Everything
 * about the processes (protocol, restarts, timeouts, stderr) is the pool's (workerpool.h). */
#include <stdio.h>
#include "agent/worker.h"

sb_handler_rc_t sb_handler_worker(const sb_job_t *job, int attempt, const atomic_int *cancel,
                                  sb_handler_out_t *out, void *user) {
    const sb_worker_handler_opts_t *o = user;
    sb_worker_job_t wj = {.job_id = job->job_id, .type = job->type, .payload = job->payload,
                          .user = cJSON_GetObjectItemCaseSensitive(job->root, "user"),
                          .attempt = attempt};
    sb_worker_result_t r;
    switch (sb_workerpool_run(o->pool, &wj, o->timeout_s * 1000, cancel, &r)) {
    case SB_WORKER_OK:
        out->result = r.result;
        return SB_HANDLER_OK;
    case SB_WORKER_CANCELED:
        return SB_HANDLER_CANCELED;
    case SB_WORKER_FAIL:
        snprintf(out->error, sizeof out->error, "%s", r.error);
        return SB_HANDLER_FAIL;
    default:
        snprintf(out->error, sizeof out->error, "%s", r.error);
        return SB_HANDLER_RETRY;
    }
}
