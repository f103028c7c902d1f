/* The gateway's REST handlers (SPEC §3) and the helpers they share.
 *
 * Handlers are listed in the route table of routes.c; each answers its request either at
 * once or from the callback of one Redis batch sent with sb_api_redis() or, for a Lua
 * script, sb_api_eval(). Job routes live in api_jobs.c, operational routes (/healthz,
 * /readyz, /metrics) in api_ops.c, presence routes (/agent-status/...) in api_presence.c. */
#ifndef SB_GATEWAY_API_H
#define SB_GATEWAY_API_H

#include "gateway/aredis.h"
#include "gateway/http.h"
#include "switchboard/redis.h"

/* Sends b (freed here) on the gateway's command connection with cb(reply, req), holding a
 * reference to req until cb runs (cb must sb_req_release(req)). Returns 0 when sent; on
 * failure answers 503 and returns SB_EREDIS (cb will not run). */
int sb_api_redis(sb_req_t *req, sb_batch_t *b, sb_aredis_cb cb);

/* A script call for req on the command connection (sb_aredis_eval, whose NOSCRIPT fallback
 * this is the handlers' only way to): build(b, req, mode) is sent in EVALSHA mode and, when
 * Redis answers NOSCRIPT, once more in EVAL mode, unless the client has gone by then
 * (nobody to answer: nothing runs and cb gets NULL). Both go out on the same connection, so
 * a command cb sends next (e.g. WAIT) follows the script. Holds a reference to req until
 * cb(reply, req) runs, exactly once (cb must sb_req_release(req)). Returns 0 when sent;
 * SB_EREDIS after answering 503 (Redis not connected); else build's error or SB_ENOMEM,
 * NOT answered: the caller answers. cb does not run on failure. */
int sb_api_eval(sb_req_t *req, sb_api_build_fn build, sb_aredis_cb cb);

/* Parses the request body into req->doc. Returns 0, or -1 after answering: 415 when the body
 * is not declared application/json; 400 invalid_json when it is absent, not UTF-8 or not
 * JSON; 400 bad_request naming a member name an object holds twice (sb_json_duplicate_key:
 * cJSON would validate the first, an agent in JavaScript or Python would read the last) or a
 * member whose string holds \u0000 (cJSON would cut it short). The caller still checks the
 * document's shape. */
int sb_api_body_json(sb_req_t *req);

/* Reads integer query parameter name: def when absent, else it must be digits within
 * [min, max]. Returns the value, or -1 after answering 400 naming the parameter. */
int sb_api_int_param(sb_req_t *req, const char *name, int def, int min, int max);

/* The job type of the request: the {type} parameter, or "rebalance" for /rebalance/{jobId}.
 * Returns it, or NULL after answering 400 (malformed) or 404 (not one of JOB_TYPES). */
const char *sb_api_type(sb_req_t *req);

/* jobs (api_jobs.c) */
void sb_api_job_create(sb_req_t *req);
void sb_api_job_get(sb_req_t *req);
void sb_api_job_list(sb_req_t *req);
void sb_api_job_metrics(sb_req_t *req);

/* job control (api_admin.c): /admin/... and the owner's cancel */
void sb_api_admin_jobs(sb_req_t *req);
void sb_api_admin_job(sb_req_t *req);
void sb_api_admin_retry(sb_req_t *req);
void sb_api_admin_cancel(sb_req_t *req);
void sb_api_admin_delete(sb_req_t *req);
void sb_api_admin_queues(sb_req_t *req);
void sb_api_admin_queue(sb_req_t *req);
void sb_api_admin_retry_dead(sb_req_t *req);
void sb_api_admin_pause(sb_req_t *req);
void sb_api_admin_resume(sb_req_t *req);
void sb_api_admin_paused(sb_req_t *req);
void sb_api_admin_workers(sb_req_t *req);
void sb_api_admin_events(sb_req_t *req);
/* GET /agent/{type}/metrics over several queue shards (job.h): on the thread pool, one shard's
 * summary per slot (api_jobs.c sends one batch when there is one shard) */
void sb_api_admin_metrics(sb_req_t *req, int days);
void sb_api_job_cancel(sb_req_t *req);

/* dashboard (api_dashboard.c): static files; development tokens (404 unless dev mode) */
void sb_api_static(sb_req_t *req);
void sb_api_dev_info(sb_req_t *req);
void sb_api_dev_token(sb_req_t *req);
/* presence (api_presence.c) */
void sb_api_presence_heartbeat(sb_req_t *req);
void sb_api_presence_offline(sb_req_t *req);
void sb_api_presence_online(sb_req_t *req);
void sb_api_presence_department(sb_req_t *req);
void sb_api_presence_agent(sb_req_t *req);
void sb_api_presence_stats(sb_req_t *req);
void sb_api_presence_assign(sb_req_t *req);
void sb_api_presence_release(sb_req_t *req);

/* operations (api_ops.c) */
void sb_api_healthz(sb_req_t *req);
void sb_api_readyz(sb_req_t *req);
void sb_api_prometheus(sb_req_t *req);

#endif
