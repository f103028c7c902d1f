/* The gateway's one SUBSCRIBE connection: status updates and gateway events from Redis to
 * Socket.IO rooms (SPEC §6).
 *
 * For every configured job type it subscribes to agent:{type}:status and agent:{type}:events
 * on its own async connection (aredis in push mode, on the gateway's loop), and subscribes
 * again each time that connection comes back (aredis reconnects with capped backoff).
 *   - A status message ({jobId,status,userId,...}, validated by sb_status_parse) becomes the
 *     event `{type}:{status}` with {jobId,status,result?,error?,details?,attempts?,timestamp} for room
 *     user:{userId}.
 *   - A gateway event ({"event","room","data"}, e.g. `{type}:created` published by the
 *     gateway that took a POST) is emitted as is to its room, so every gateway's clients see
 *     it, whichever gateway took the request. Its event name must start with `{type}:`.
 * A message that is not valid UTF-8 (it would reach clients in WebSocket text frames, which
 * they drop and reconnect over), does not parse or lacks a field is counted as dropped and
 * logged; never fatal. Counters feed /metrics.
 * Gaps: pub/sub is fire-and-forget, so what is published while the connection is down (or
 * before it subscribed) is never forwarded. The subscriber remembers when it lost the
 * connection (or was created) and, at the first SUBSCRIBE confirmation after it is back, calls
 * the on-gap hook with a time shortly before the loss; the owner replays from Redis what
 * changed since (catchup.h).
 * Other modules add channels of their own to the same connection with sb_subscriber_watch()
 * (presence: agent:presence and the expired-key events); their messages go to their handler,
 * not through the status path, and are not counted here. */
#ifndef SB_GATEWAY_SUBSCRIBER_H
#define SB_GATEWAY_SUBSCRIBER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <cjson/cJSON.h>
#include <hiredis/hiredis.h>
#include "gateway/socketio/sio.h"
#include "switchboard/config.h"
#include "switchboard/job.h"

typedef struct sb_subscriber sb_subscriber_t;

typedef struct {
    unsigned long long received;   /* messages read from the channels */
    unsigned long long forwarded;  /* valid messages emitted to their room */
    unsigned long long dropped;    /* invalid messages (not UTF-8, bad JSON, missing field...) */
    unsigned long long deliveries; /* socket sends those emits queued on this gateway */
} sb_subscriber_stats_t;

/* Starts subscribing (connects in the background) for the comma-separated job_types and
 * forwards into sio (not owned; must outlive the subscriber). Returns NULL on allocation
 * failure. */
sb_subscriber_t *sb_subscriber_create(uv_loop_t *loop, const sb_redis_addr_t *addr,
                                      const char *job_types, sb_sio_t *sio);
/* Handler of a watched channel: msg is the whole push reply ["message", channel, payload],
 * valid only during the call. */
typedef void (*sb_subscriber_fn)(void *ud, const redisReply *msg);
/* A watch, embedded in its owner (like sb_aredis_hook_t), so watching needs no allocation and
 * cannot fail. Zero it (or leave it unwatched) before use; the fields are subscriber.c's. */
typedef struct sb_subscriber_watch {
    const char *channel;              /* the caller's string, valid while watched */
    sb_subscriber_fn fn;
    void *ud;
    struct sb_subscriber_watch *next; /* next watch of the same subscriber */
    sb_subscriber_t *sub;             /* the subscriber it is on; NULL when not watching */
} sb_subscriber_watch_t;
/* Subscribes to channel too (now if connected, and after every reconnect) and hands its
 * messages to fn(ud, msg) through w, which must not be watching already. w, channel and ud
 * must stay valid until sb_subscriber_unwatch(w) or sb_subscriber_close(s). */
void sb_subscriber_watch(sb_subscriber_t *s, sb_subscriber_watch_t *w, const char *channel,
                         sb_subscriber_fn fn, void *ud);
/* Ends the watch: no message reaches fn after it returns, and the channel is unsubscribed
 * (when connected and no other watch wants it). Idempotent: a zeroed watch, one unwatched
 * already, or one whose subscriber was closed (sb_subscriber_close ends every watch) is left
 * as is. */
void sb_subscriber_unwatch(sb_subscriber_watch_t *w);
/* Runs fn(ud, since_ms) each time the subscription is back after a gap (also after the first
 * subscription): statuses published since since_ms (unix ms) may have been missed. */
typedef void (*sb_subscriber_gap_fn)(void *ud, int64_t since_ms);
void sb_subscriber_on_gap(sb_subscriber_t *s, sb_subscriber_gap_fn fn, void *ud);
/* Runs fn(ud, user_id, job_id) right after each status message was emitted to room
 * user:{user_id} (the replays' guard against a replayed state landing after a newer live one,
 * replay.h). The strings are valid only during the call. */
typedef void (*sb_subscriber_status_fn)(void *ud, const char *user_id, const char *job_id);
void sb_subscriber_on_status(sb_subscriber_t *s, sb_subscriber_status_fn fn, void *ud);
/* Runs fn(ud, type, st) after each valid status message that lacks "recorded":true, i.e. whose
 * publisher did not write the state into the job record (a seed-style agent; interop.h). st
 * and its strings are valid only during the call. */
typedef void (*sb_subscriber_foreign_fn)(void *ud, const char *type, const sb_status_t *st);
void sb_subscriber_on_foreign(sb_subscriber_t *s, sb_subscriber_foreign_fn fn, void *ud);

/* Runs fn(ud, type, job_id, status, user_id) after each job change forwarded: every valid
 * status message and each {type}:created event (status "queued"). The operator console's
 * live feed (admin_feed.h). The strings are valid only during the call. */
typedef void (*sb_subscriber_job_fn)(void *ud, const char *type, const char *job_id,
                                     const char *status, const char *user_id);
void sb_subscriber_on_job(sb_subscriber_t *s, sb_subscriber_job_fn fn, void *ud);

/* Closes the connection (its handles finish closing during uv_run), ends every watch and
 * frees s. NULL ok. */
void sb_subscriber_close(sb_subscriber_t *s);

const sb_subscriber_stats_t *sb_subscriber_stats(const sb_subscriber_t *s);
int sb_subscriber_up(const sb_subscriber_t *s);                 /* 1 while connected */
unsigned long long sb_subscriber_reconnects(const sb_subscriber_t *s);

/* Handles one message as if it arrived on channel (exposed for tests). Returns 0 when it was
 * forwarded, SB_EINVAL when dropped. */
int sb_subscriber_handle(sb_subscriber_t *s, const char *channel, const char *msg, size_t len);

#endif
