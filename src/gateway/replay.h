/* Replay on (re)connect: the latest state of a user's recently changed jobs, so an update
 * published while the client was disconnected is not lost (SPEC §6).
 *
 * After a socket's CONNECT succeeds, one EVAL on the command connection reads, for every
 * configured job type, the user's newest job ids (agent:{type}:user:{publicKey}, at most
 * SB_REPLAY_MAX ids created within SB_REPLAY_CREATED_MS) and their records. Each record whose
 * status is processing, done or error and whose updatedAt is within SB_REPLAY_WINDOW_MS is
 * emitted to that socket alone, oldest updatedAt first, as the live event would be
 * (`{type}:{status}` with {jobId,status,result?,error?,details?,attempts?,timestamp}) plus
 * "replay":true. Clients should treat events as idempotent state updates keyed by jobId: a
 * state may arrive twice (live and replayed) around a reconnect.
 *
 * Budget: the states one replay sends add up to at most SB_REPLAY_BUDGET bytes of packets,
 * well under the session's queue limit (eio.h max_queue_bytes), so a replay never gets its own
 * client dropped as a slow consumer (which made the client reconnect, get the same replay and
 * be dropped again). When they do not all fit, the newest that fit are sent (still oldest
 * first) and the count of the others is logged at info; each job can still be read over HTTP.
 *
 * Cost: a record over SB_REPLAY_INLINE_MAX bytes is read only up to SB_REPLAY_HEAD_MAX bytes,
 * cut before its result, and replayed without it, with "resultUrl" naming the HTTP route that
 * has it. One call touches at most SB_REPLAY_TOUCH_MAX records and SB_REPLAY_READ_MAX bytes
 * (the rest is left out, logged). A user's socket replays may read SB_REPLAY_USER_BYTES a
 * minute (ratemap.h; catch-ups are not counted): past that, a new socket gets no replay.
 *
 * Order with live events: the replay is read on the command connection while live events come
 * on the subscriber's, so a live event published after the read can be forwarded before the
 * read's reply arrives, and the replayed (older) state would then land after it. So while a
 * socket's replay is pending, the subscriber reports every live status of its user
 * (sb_replays_live) and the replay leaves those jobs out: the socket got that live event, and
 * any newer state of the job is published after it on the same channel, so it comes live too.
 * A replayed state is therefore never delivered after a newer live event of its job, and live
 * events are neither held nor reordered.
 *
 * Redis unavailable: a replay that cannot be sent (command connection down) or whose reply is
 * lost (the connection dropped, e.g. by the stall watchdog of aredis.h) waits, and is sent
 * again each time the command connection comes back (an on-up hook); it still reads the states
 * changed since SB_REPLAY_WINDOW_MS before the socket connected. A waiting replay is dropped
 * when its socket leaves. An error reply is logged at warn and ends that replay.
 *
 * Identity: a replay is for one Socket.IO socket, named by its engine handle and its Socket.IO
 * sid; a socket that sends `41` then `40` on the same engine session is a new socket (new sid,
 * maybe another user), and its predecessor's replay is dropped, never emitted to it.
 *
 * Catch-up (sb_replays_user, driven by catchup.h after the status subscription had a gap):
 * the same read for one user, emitting every state changed since a given time to all the
 * sockets in room user:{publicKey} at once (one Redis call serves all of that user's sockets),
 * with the same budget and the same guard against live events (the user's live statuses while
 * it is in flight). Its sockets are found through the room when the reply comes; a lost reply
 * or a transient error (LOADING while Redis reloads its data after a restart, BUSY...) goes
 * to the on-retry hook (catchup.h sends it again with backoff); another error is logged at
 * warn and that user is skipped. */
#ifndef SB_GATEWAY_REPLAY_H
#define SB_GATEWAY_REPLAY_H

#include <stdint.h>
#include <uv.h>
#include "gateway/aredis.h"
#include "gateway/socketio/sio.h"

#define SB_REPLAY_MAX 50                    /* newest ids per type looked at */
#define SB_REPLAY_CREATED_MS (3600 * 1000)  /* only jobs created in the last hour */
#define SB_REPLAY_WINDOW_MS (5 * 60 * 1000) /* only states changed in the last 5 minutes */
#define SB_REPLAY_BUDGET (256 * 1024)       /* packet bytes one replay sends at most */
#define SB_REPLAY_INLINE_MAX 8192           /* larger records replay without their result */
#define SB_REPLAY_HEAD_MAX 1024             /* bytes of a larger record read for its state */
#define SB_REPLAY_READ_MAX (128 * 1024)     /* record bytes one replay reads at most */
#define SB_REPLAY_TOUCH_MAX 100             /* records one replay reads at most */
#define SB_REPLAY_USER_BYTES (4 * 1024 * 1024) /* replay read bytes per user per minute */

/* The replays of the sockets of one gateway. */
typedef struct sb_replays sb_replays_t;

/* Creates the service over redis (commands; installs an on-up hook on it) and sio (neither
 * owned; both must outlive it) for the comma-separated job_types (copied), with a retry timer
 * on loop. NULL on ENOMEM. */
sb_replays_t *sb_replays_create(uv_loop_t *loop, sb_aredis_t *redis, sb_sio_t *sio,
                                const char *job_types);
/* Removes the on-up hook (a no-op when redis was closed already), closes the retry timer
 * (its memory goes during uv_run), drops the waiting replays
 * and frees rp; a reply still in flight then emits nothing and frees its replay (rp goes
 * with the last one). NULL ok. */
void sb_replays_free(sb_replays_t *rp);

/* Starts the replay for connected socket id (on_connect), now_ms being the unix time: sent at
 * once when the command connection is up, else it waits for it. A reply lost, or refused for
 * now (LOADING while Redis reloads after a restart, BUSY...: sb_reply_is_transient), sends it
 * again: when the connection is back, or after the backoff (backoff.h), until Redis answers
 * or the socket leaves. Returns 0 (sent or waiting),
 * SB_ENOTFOUND (id is not a connected socket), SB_ENOMEM or SB_EINVAL (no valid job type):
 * nothing left behind. */
int sb_replays_socket(sb_replays_t *rp, sb_eio_id_t id, int64_t now_ms);
/* Socket id left "/" (on_disconnect): its replay, waiting or in flight, is dropped. */
void sb_replays_forget(sb_replays_t *rp, sb_eio_id_t id);
/* A live status of job_id was emitted to room user:{public_key}: the pending replays of that
 * user's sockets, and its catch-up in flight, will not send that job. O(1) when no replay is
 * pending. */
void sb_replays_live(sb_replays_t *rp, const char *public_key, const char *job_id);
/* Sockets whose replay is waiting or in flight. */
unsigned sb_replays_pending(const sb_replays_t *rp);
/* Socket replays not run because their user had spent its replay budget. */
unsigned long long sb_replays_limited(const sb_replays_t *rp);

/* Starts the catch-up of user public_key (catchup.h): states changed at or after since_ms, to
 * every socket of room user:{public_key}, with the same budget and the same guard against
 * live events. Returns 0, or a negative SB_E* code when nothing was sent (SB_EREDIS: the
 * command connection is down; SB_ENOMEM; SB_EINVAL: bad key or no valid job type). */
int sb_replays_user(sb_replays_t *rp, const char *public_key, int64_t since_ms,
                    int64_t now_ms);

/* Runs fn(ud, public_key, why) for each catch-up whose reply was lost or a transient error
 * (sb_reply_is_transient): nothing was sent to that user; fn may call sb_replays_user again
 * later. NULL fn removes the hook. The strings are valid only during the call. */
typedef void (*sb_replays_retry_fn)(void *ud, const char *public_key, const char *why);
void sb_replays_on_retry(sb_replays_t *rp, sb_replays_retry_fn fn, void *ud);

#endif
