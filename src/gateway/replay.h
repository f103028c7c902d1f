/* Replay on (re)connect: the latest state of a user's recently changed jobs, so an update
 * published while the client was disconnected is not lost (SPEC §6).
 *
 * After a socket's CONNECT succeeds, one EVAL on the command connection reads, for every
 * configured job type, the user's newest job ids (agent:{type}:user:{publicKey}, at most
 * SB_REPLAY_MAX ids created within SB_REPLAY_CREATED_MS) and their records. Each record whose
 * status is processing, done or error and whose updatedAt is within SB_REPLAY_WINDOW_MS is
 * emitted to that socket alone, oldest first, as the live event would be
 * (`{type}:{status}` with {jobId,status,result?,error?,details?,timestamp}) plus
 * "replay":true. Clients should treat events as idempotent state updates keyed by jobId: a
 * state may arrive twice (live and replayed) around a reconnect.
 *
 * Catch-up (sb_replay_user, driven by catchup.h after the status subscription had a gap): the
 * same read for one user, emitting every state changed since a given time to all the sockets
 * in room user:{publicKey} at once, so one Redis call serves all of that user's sockets.
 *
 * The socket is named by its Engine.IO handle (a catch-up by its room, looked up when the reply
 * comes), so a socket gone before Redis answers is simply skipped. Redis being down only means no replay (logged at debug). */
#ifndef SB_GATEWAY_REPLAY_H
#define SB_GATEWAY_REPLAY_H

#include <stdint.h>
#include "gateway/aredis.h"
#include "gateway/sio.h"

#define SB_REPLAY_MAX 50                    /* newest ids per type looked at */
#define SB_REPLAY_CREATED_MS (3600 * 1000)  /* only jobs created in the last hour */
#define SB_REPLAY_WINDOW_MS (5 * 60 * 1000) /* only states changed in the last 5 minutes */

/* Starts the replay for socket id of user public_key over the comma-separated job_types.
 * redis and sio must outlive the reply (aredis answers NULL when it closes). Returns 0, or a
 * negative SB_E* code when nothing was sent (Redis down, no memory, bad input). */
int sb_replay_start(sb_aredis_t *redis, sb_sio_t *sio, sb_eio_id_t id, const char *public_key,
                    const char *job_types, int64_t now_ms);
/* Starts the catch-up of user public_key: states changed at or after since_ms, to every socket
 * of room user:{public_key}. Same contract and return codes as sb_replay_start. */
int sb_replay_user(sb_aredis_t *redis, sb_sio_t *sio, const char *public_key,
                   const char *job_types, int64_t since_ms, int64_t now_ms);

#endif
