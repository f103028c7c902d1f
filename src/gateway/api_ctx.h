/* The state a REST handler keeps across its Redis round trips, typed per handler.
 *
 * Each handler that needs such state declares its own small struct here; sb_req_t carries
 * their union (req->ctx), zeroed with the request, and a handler and its callbacks touch only
 * their own member. A handler that answers at once, or whose callback finds everything in the
 * request (route parameters, claims, the parsed body), declares nothing. */
#ifndef SB_GATEWAY_API_CTX_H
#define SB_GATEWAY_API_CTX_H

#include <stdint.h>
#include <uv.h>
#include "switchboard/job.h"
#include "switchboard/jobctl.h"

/* POST /agent/{type} (api_jobs.c): the job being submitted. */
typedef struct {
    char job_id[SB_JOB_ID_LEN];
} sb_api_submit_ctx_t;

/* GET /agent/{type}/metrics (api_jobs.c): the days asked for and the time that names
 * them in the batch and in the parse of its reply. */
typedef struct {
    int days;
    int64_t now_ms;
} sb_api_metrics_ctx_t;

/* /admin/... and POST /{type}/{jobId}/cancel (api_admin.c): one jobctl.h call run on libuv's
 * thread pool. The loop thread fills the inputs, the worker the outputs; neither touches the
 * other half while the work is queued. */
typedef struct {
    uv_work_t work;
    struct sb_admin *admin;
    int op;
    char type[SB_TYPE_MAX + 1], id[SB_JOB_ID_LEN], by[300], owner[SB_PUBKEY_MAX + 1];
    char state[SB_JOBCTL_STATE_LEN], user[SB_PUBKEY_MAX + 1];
    long cursor;
    int limit;
    int rc;                 /* outputs: the call's return, */
    sb_jobctl_result_t res; /* an action's outcome, */
    cJSON *out;             /* a query's answer (freed after answering), */
    int n;                  /* retried / changed, */
    char err[128];          /* why no connection */
} sb_api_admin_ctx_t;

typedef union {
    sb_api_submit_ctx_t submit;
    sb_api_metrics_ctx_t metrics;
    sb_api_admin_ctx_t admin;
} sb_api_ctx_t;

#endif
