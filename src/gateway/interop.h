/* Records of jobs run by agents that only PUBLISH (SPEC §2 interop: seed 000's BRPOP agent).
 *
 * Switchboard's agent writes each state into the job record and then publishes it; its
 * status messages say so with "recorded":true (sb_status_build). An agent written as in seed
 * 000 only publishes, so its job's record would stay `queued` forever and HTTP polling,
 * replay and the admin views would never see it finish. So for a status message WITHOUT that
 * marker the subscriber hands the state here, and the record is moved forward to it:
 *   1. GET the record; stop unless the message's state is ahead of it (queued < processing <
 *      done | error; never backward, never done → error or back) and not older than it
 *      (message timestamp >= the record's updatedAt, when both are there);
 *   2. write the new record (status, updatedAt = the message's timestamp, result / error /
 *      details when present; other fields and their order kept) with a compare-and-set script
 *      that SETs it (KEEPTTL) only if the record is still the text read in step 1;
 *   3. when the record changed meanwhile (another gateway did the same, or the next status of
 *      the job), start again from 1, at most SB_INTEROP_TRIES times.
 * Several gateways receive the same message: the first compare-and-set wins, the others find
 * the state already there and stop, so it is idempotent. Our own agent's messages carry the
 * marker and cost nothing here (not even a Redis call): the check is one JSON member lookup on
 * the message the subscriber parsed anyway. Everything runs on the loop; a step whose reply is
 * lost (Redis away) just stops. */
#ifndef SB_GATEWAY_INTEROP_H
#define SB_GATEWAY_INTEROP_H

#include "gateway/aredis.h"
#include "switchboard/job.h"

#define SB_INTEROP_TRIES 3

typedef struct sb_interop sb_interop_t;

/* Over the command connection redis (not owned; must outlive it). NULL on ENOMEM. */
sb_interop_t *sb_interop_create(sb_aredis_t *redis);
/* Frees it; advances in flight finish without touching it. NULL ok. */
void sb_interop_free(sb_interop_t *io);

/* Moves the record of job st->job_id of type forward to st (a valid status message without
 * the "recorded" marker; copied). Returns 0 (started), SB_EREDIS (command connection down),
 * SB_EINVAL (bad type or job id) or SB_ENOMEM: nothing started. */
int sb_interop_advance(sb_interop_t *io, const char *type, const sb_status_t *st);

/* Records moved forward since creation. */
unsigned long long sb_interop_advanced(const sb_interop_t *io);

#endif
