/* What the operator console reads that is not one jobctl.h call (issue 19): every queue's
 * counts with its oldest pending job, the workers online with their jobs in hand, and the event
 * bus's streams, consumer groups and dead letters. Blocking calls on an sb_redis_t, run on
 * libuv's thread pool by api_admin.c (and admin_feed.c for the live queue counters); each
 * returns 0 with *out (caller cJSON_Delete()s) or SB_EREDIS / SB_EPROTO / SB_ENOMEM. */
#ifndef SB_GATEWAY_ADMIN_VIEWS_H
#define SB_GATEWAY_ADMIN_VIEWS_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "switchboard/presence.h"
#include "switchboard/redis.h"

#define SB_ADMIN_WORKER_JOBS 50   /* job ids listed per worker (its processing list's head) */
#define SB_ADMIN_STREAMS_MAX 200  /* streams the event bus view lists */
#define SB_ADMIN_DEAD_RECENT 5    /* newest dead letters shown per stream */

/* {"queues":[counts + "oldestPendingAt" (ISO or null) + "oldestPendingAgeMs" (or null)...]}
 * for each type of the comma-separated list; now_ms dates the ages. */
int sb_admin_counts_all(sb_redis_t *r, const char *types, int64_t now_ms, cJSON **out);

/* {"count","agents":[presence record + "jobs":[ids...] for workers whose record names its
 * job_type]} sorted as the presence list is (department, then id). */
int sb_admin_workers(sb_redis_t *r, const sb_presence_ctx_t *ctx, cJSON **out);

/* {"streams":[{"name","type","length","lastId","groups":[{"name","consumers","pending",
 * "lastDeliveredId","lag"}...],"dead":{"stream","length","recent":[{"id","fields":{}}...]}}...]}
 * for every stream agent:stream:* (dead-letter streams appear under their stream). */
int sb_admin_events(sb_redis_t *r, cJSON **out);

#endif
