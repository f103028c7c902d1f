/* The gateway's side of job control (issue 18): blocking Redis connections for the admin
 * handlers, which run the blocking library calls of jobctl.h on libuv's thread pool, and the
 * state of each job type (paused, counts, oldest age) as /metrics shows it.
 *
 * The pool and the cache are explained in admin.c. Thread rules: sb_admin_take / _put may be
 * called from any thread (a mutex guards the idle list); everything else on the loop thread. */
#ifndef SB_GATEWAY_ADMIN_H
#define SB_GATEWAY_ADMIN_H

#include <stddef.h>
#include <uv.h>
#include "cli/settings.h"
#include "switchboard/prom.h"
#include "switchboard/redis.h"

#define SB_ADMIN_POOL_IDLE 4          /* idle connections kept (libuv's default pool size) */
#define SB_ADMIN_TIMEOUT_MS 5000      /* socket timeout of a pooled connection */
#define SB_ADMIN_PAUSED_REFRESH_MS 5000 /* how often the queue state is read for /metrics */
#define SB_ADMIN_STATS_FRESH_MS 1000    /* a scrape finding it older starts a read */

typedef struct sb_admin sb_admin_t;

/* Creates the pool for cfg->redis and starts the paused-state refresh on loop. NULL on
 * allocation failure (the admin routes then answer 503). */
sb_admin_t *sb_admin_create(uv_loop_t *loop, const sb_config_t *cfg);
/* Stops the refresh timer (shutdown); work in flight still completes. NULL is fine. */
void sb_admin_stop(sb_admin_t *a);
/* Frees the pool once the loop has ended. NULL is fine. */
void sb_admin_free(sb_admin_t *a);

/* A connected connection (an idle one, or a new one), or NULL with the reason in err.
 * Any thread; give it back with sb_admin_put. */
sb_redis_t *sb_admin_take(sb_admin_t *a, char *err, size_t errlen);
void sb_admin_put(sb_admin_t *a, sb_redis_t *r);

/* Records what a pause / resume / query on this gateway found (loop thread). */
void sb_admin_set_paused(sb_admin_t *a, const char *type, int paused);
/* Per type whose state is known: switchboard_queue_paused{type} 0|1, switchboard_queue_depth,
 * _processing, _retrying, _dead, switchboard_queue_oldest_age_seconds and
 * switchboard_agents_online; switchboard_presence_agents_online{department_id,department}. */
void sb_admin_render(const sb_admin_t *a, sb_prom_t *p);
/* A scrape happened: starts a read of the state when the cache is older than
 * SB_ADMIN_STATS_FRESH_MS (never waits for it). NULL is fine. */
void sb_admin_scraped(sb_admin_t *a);

#endif
