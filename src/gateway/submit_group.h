/* Group commit of job submissions: the POSTs that arrive in one libuv loop turn go to Redis as
 * ONE call of the submission script (submit.h), whose reply carries each job's outcome.
 *
 * How it works. sb_submit_group_add() appends a prepared call (sb_submit_prepare) to the open
 * group and starts a uv_check handle; libuv runs check handles right after the I/O poll phase,
 * in which lws delivers the requests, so the group holds what that phase parsed and is sent
 * before the loop polls again (aconn.h writes it from its uv_prepare with the turn's other
 * commands). A group is sent at once when it is full (SB_SUBMIT_GROUP_MAX) or when the caller
 * says it is not inside the poll phase (nothing would flush it before the loop blocks).
 * Just before the script call is built each owner is asked whether it still wants the answer
 * (its client may have left): those that do not are left out, as a single POST's call was.
 * The script decides the group's jobs exactly as one by one in the group's order (submit.lua),
 * so grouping changes neither a job's all-or-nothing nor a rate-limit decision.
 *
 * Each accepted add gets exactly one done call, from the loop (or inside add when Redis is
 * down: rc SB_EREDIS): rc 0 with the job's rate result, SB_ECANCELED (left out: the owner was
 * gone), SB_EREDIS (no reply: the connection went, outcome unknown) or SB_EPROTO (Redis
 * answered an error, in reply, or something unexpected). */
#ifndef SB_GATEWAY_SUBMIT_GROUP_H
#define SB_GATEWAY_SUBMIT_GROUP_H

#include <uv.h>
#include "gateway/aredis.h"
#include "switchboard/submit.h"

typedef struct sb_submit_group sb_submit_group_t;

typedef int (*sb_submit_alive_fn)(void *owner);
typedef void (*sb_submit_done_fn)(void *owner, int rc, const sb_rate_result_t *rate,
                                  const redisReply *reply);

/* *redis is read at each send (NULL: Redis is gone). script is kept. NULL: no memory. */
sb_submit_group_t *sb_submit_group_create(uv_loop_t *loop, sb_aredis_t *const *redis,
                                          const sb_script_t *script);
/* Takes call (freed by the group, also on failure). Returns 0, or SB_ENOMEM (g NULL or no
 * memory: call freed, no done call). now = 1: send the group at once. */
int sb_submit_group_add(sb_submit_group_t *g, sb_submit_call_t *call, void *owner,
                        sb_submit_alive_fn alive, sb_submit_done_fn done, int now);
/* Sends what is open (with *redis NULL its owners get SB_EREDIS) and closes the handle. */
void sb_submit_group_stop(sb_submit_group_t *g);
/* After the loop has run the handle's close. */
void sb_submit_group_free(sb_submit_group_t *g);

#endif
