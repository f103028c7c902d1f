/* Catch-up after a gap in the status subscription (SPEC §9: every status reaches its user).
 *
 * When the subscriber is back after its connection was lost (subscriber.h, on-gap hook), the
 * sockets that stayed connected may have missed status messages. sb_catchup_start() takes a
 * snapshot of the users with a connected socket (the rooms user:*, one entry per user however
 * many sockets it has) and, spread over loop turns (SB_CATCHUP_PER_TURN users every
 * SB_CATCHUP_TURN_MS), replays to each user's room the latest state of its jobs changed since
 * the gap began (sb_replays_user: one Redis call per user). 50k users take ~2 s and never
 * stall the loop. While the command connection is down the pass waits and goes on where it
 * stopped. A user whose read is lost or answered with a transient error (LOADING: Redis is
 * still reading its data after a restart) is sent again in a later pass, after a backoff of
 * 100 ms doubling to 5 s, until Redis answers. A new gap during a pass restarts it from a
 * fresh snapshot with the earlier time.
 *
 * Sockets are reached through their room when the reply arrives, so a socket that closed
 * meanwhile is simply not in it. Events carry "replay":true, like the replay on connect, and
 * obey the same byte budget and order guard (replay.h). */
#ifndef SB_GATEWAY_CATCHUP_H
#define SB_GATEWAY_CATCHUP_H

#include <stdint.h>
#include <uv.h>
#include "gateway/replay.h"
#include "gateway/socketio/sio.h"

#define SB_CATCHUP_PER_TURN 128 /* users whose replay is sent per turn */
#define SB_CATCHUP_TURN_MS 5

typedef struct sb_catchup sb_catchup_t;

/* Creates an idle catch-up that sends its reads through replays (and so over its command
 * connection and job types) to sio's rooms, neither owned; both must outlive it (the replies
 * are the replays service's). NULL on ENOMEM. */
sb_catchup_t *sb_catchup_create(uv_loop_t *loop, sb_replays_t *replays, sb_sio_t *sio);
/* Starts (or restarts) a pass over every connected user for states changed since since_ms. */
void sb_catchup_start(sb_catchup_t *c, int64_t since_ms);
/* 1 while a pass is running. */
int sb_catchup_running(const sb_catchup_t *c);
/* Users caught up (a replay sent for them) since creation. */
unsigned long long sb_catchup_users(const sb_catchup_t *c);
/* Stops and frees c (its timer finishes closing during uv_run). NULL ok. */
void sb_catchup_close(sb_catchup_t *c);

#endif
