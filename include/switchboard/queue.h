/* Queues: the atomic job enqueue of SPEC §2 and the general queue library of seed 002.
 *
 * Job queue: a job is its record (agent:{type}:job:{id}) plus its id on agent:{type}:jobs.
 * Enqueue writes both, indexes the id under the user, counts it and appends the job.created
 * audit event in one script (submit.h): either all of it happened or none of it. Producers LPUSH; consumers take from the right (FIFO).
 *
 * General queue: any list name; items are `{"id","payload","enqueuedAt"}` JSON. Dequeue blocks
 * with BRPOP; the polling worker uses RPOP for places without blocking commands and backs
 * off on empty polls (interval × factor up to a maximum). Delivery is at most once, as in the
 * seed's queue.js: an item taken by a process that dies before its handler returns is gone.
 * Work that must not be lost goes through the job queue (reliable fetch, recovery). */
#ifndef SB_QUEUE_H
#define SB_QUEUE_H

#include <stdatomic.h>
#include <cjson/cJSON.h>
#include "switchboard/job.h"
#include "switchboard/redis.h"

/* Creates and enqueues a job atomically; writes its id into id_out. Returns 0; SB_EINVAL for
 * a bad type or user (reason in err); SB_EREDIS when Redis is unreachable — then nothing was
 * queued (or, if the connection broke after the script was sent, the outcome is unknown: err
 * says); SB_EPROTO when Redis refused the script (e.g. a key of the wrong type). */
int sb_job_enqueue(sb_redis_t *r, const char *type, const sb_user_t *user, const cJSON *payload,
                   char id_out[SB_JOB_ID_LEN], char *err, size_t errlen);

/* Reads a record, in the shard its id names (job.h). Returns 0 and a malloc'd JSON string in
 * *json_out (caller frees); SB_ENOTFOUND if absent/expired (or of a shard beyond
 * sb_queue_shards()); SB_EREDIS. */
int sb_job_get(sb_redis_t *r, const char *type, const char *job_id, char **json_out);

/* ---- general queue library ------------------------------------------------------------- */

/* LPUSHes {"id","payload","enqueuedAt"} onto list. Returns 0 with the id in id_out, or
 * SB_EREDIS / SB_ENOMEM. */
int sb_queue_enqueue(sb_redis_t *r, const char *list, const cJSON *payload,
                     char id_out[SB_JOB_ID_LEN]);
/* Takes the oldest item, waiting up to timeout_s (0 = forever). Returns 0 and the item in
 * *item_out (caller cJSON_Delete()s); SB_ETIMEOUT when nothing came; SB_EPROTO for an item
 * that is not JSON (it is consumed and logged); SB_EREDIS. */
int sb_queue_dequeue(sb_redis_t *r, const char *list, int timeout_s, cJSON **item_out);

typedef enum { SB_QUEUE_HANDLED = 0, SB_QUEUE_REQUEUE = 1 } sb_queue_verdict_t;
/* Handler of the polling worker: item is owned by the worker. REQUEUE puts it back at the
 * producing end (it is tried again after the items already waiting). */
typedef sb_queue_verdict_t (*sb_queue_handler_cb)(const cJSON *item, void *ctx);

typedef struct {
    int interval_ms;      /* first wait after an empty poll (default 500) */
    int max_interval_ms;  /* cap (default 5000) */
    double backoff;       /* factor per empty poll (default 1.5) */
} sb_poll_opts_t;

/* The wait after n consecutive empty polls: interval × backoff^(n-1), capped. n = 0 → 0. */
int sb_poll_delay_ms(const sb_poll_opts_t *o, int empty_polls);

/* Runs the polling worker in the calling thread until *stop is non-zero. Lost connections are
 * re-established with backoff. Returns 0 when stopped. opts may be NULL (defaults). */
int sb_queue_poll_run(sb_redis_t *r, const char *list, const sb_poll_opts_t *opts,
                      sb_queue_handler_cb cb, void *ctx, const atomic_int *stop);

/* The same worker on its own thread and connection. Returns NULL on failure. */
typedef struct sb_poller sb_poller_t;
sb_poller_t *sb_poller_start(const sb_redis_addr_t *addr, const char *list,
                             const sb_poll_opts_t *opts, sb_queue_handler_cb cb, void *ctx);
/* Stops the worker (after the current item), joins the thread and frees it. NULL is fine. */
void sb_poller_stop(sb_poller_t *p);

#endif
