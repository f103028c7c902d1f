/* Job submission in one round trip: rate limit, atomic enqueue and announcement in one script.
 *
 * One Lua script (sent with EVALSHA; EVAL only after a NOSCRIPT answer) does what used to be
 * two round trips (the rate-limit script, then a MULTI/EXEC):
 *   1. when a limit is given: the sliding window of ratelimit.h — drop entries older than the
 *      window, count, INCR rate_hits; refused → INCR rate_blocked and return the retry time,
 *      writing nothing else; allowed → record the request (ZADD + PEXPIRE the window);
 *   2. when a job is given: SET the record EX 1 day, LPUSH its id, ZADD + EXPIRE the user
 *      index, INCR the day's `jobs` counter, XADD the job.created audit event (events.h, same
 *      fields and MAXLEN as sb_events_xadd_batch) and PUBLISH the {type}:created notification
 *      on agent:{type}:events, which every gateway relays to the owner's Socket.IO room
 *      user:{publicKey} — whoever queued the job (gateway POST, `switchboard enqueue`, bench);
 *      ZADD the id to agent:{type}:index and start its history list (jobctl.h).
 * A script runs atomically, so a job is fully queued and announced or not at all, and the
 * window entry and the job land together. Daily counters get their 7-day EXPIRE only when
 * INCR returns 1 (the key was just created), so every counter key still expires.
 *
 * Group commit: one call may carry up to SB_SUBMIT_GROUP_MAX jobs (the gateway sends the POSTs
 * of one loop turn together). Each job is still all or nothing, and the rate decisions are
 * those the jobs would get one by one, in the group's order, at the call's instant (one TIME);
 * see scripts/lua/submit.lua for what is written once per call instead of once per job.
 *
 * Reply: {allowed 0|1, remaining (-1 without a limit), retry_ms} for each job in order — parse
 * job i with sb_submit_result() (one job: sb_ratelimit_parse() reads the same three). The same
 * bytes serve the blocking client (sb_submit_run, used by sb_job_enqueue) and the gateway's
 * async client (sb_submit_prepare + sb_submit_add). */
#ifndef SB_SUBMIT_H
#define SB_SUBMIT_H

#include <stdint.h>
#include "switchboard/ratelimit.h"
#include "switchboard/redis.h"

/* What to submit. Strings are borrowed for the duration of the call. */
typedef struct {
    const char *type;        /* job type (keys agent:{type}:…) */
    const char *job_id;      /* NULL: rate check only (nothing else is written). Its shard
                                (job.h: sb_job_id_new_in with sb_queue_shard_of_user of
                                public_key) is the queue every key but the audit stream is in;
                                a rate check alone counts in the user's shard */
    const char *public_key;  /* owner (user index, audit event); required with job_id */
    const char *record_json; /* the record; required with job_id */
    int64_t now_ms;          /* user-index score, and the day of the counters */
    const char *rate_user;   /* NULL: no rate limit (and no rate keys touched) */
    int limit;               /* requests per window (> 0 with rate_user) */
    int window_s;            /* window, seconds */
    sb_rand_t *rand;         /* the ids' random bytes (random.h); NULL: each from getrandom */
    int no_audit;            /* 1 (AUDIT_EVENTS=0): no job.created audit entry */
} sb_submit_t;

/* The submission script (SHA1 computed once by sb_script_init; the caller keeps it). */
void sb_submit_script_init(sb_script_t *s);

/* Appends the script call for q to b, as EVALSHA or EVAL (mode), and on Redis Cluster, when q
 * has no rate limit (so the job is always queued), its job.created XADD after it (two
 * commands, two replies; see sb_submit_audit_add). Returns 0; SB_EINVAL (a bad key part or
 * user id over 128 characters); SB_ENOMEM; SB_ERR (no random source). b is unchanged on
 * failure but for SB_ENOMEM after the script. */
int sb_submit_batch(sb_batch_t *b, const sb_script_t *s, sb_script_mode_t mode,
                    const sb_submit_t *q);

/* The most jobs one call carries. */
#define SB_SUBMIT_GROUP_MAX 64

/* One job's call, formatted (keys, arguments, audit event, created message), owning copies of
 * q's strings. Returns 0 with *out (free with sb_submit_call_free), or as sb_submit_batch. */
typedef struct sb_submit_call sb_submit_call_t;
int sb_submit_prepare(const sb_submit_t *q, sb_submit_call_t **out);
void sb_submit_call_free(sb_submit_call_t *c);
/* Appends one script call carrying calls[0..n-1] (1 <= n <= SB_SUBMIT_GROUP_MAX), as EVALSHA
 * or EVAL. Returns 0, SB_EINVAL (n out of range) or SB_ENOMEM. */
int sb_submit_add(sb_batch_t *b, const sb_script_t *s, sb_script_mode_t mode,
                  sb_submit_call_t *const *calls, size_t n);
/* The hash slot every key of c is in on Redis Cluster (calls of one slot can share a script
 * call; others not: CROSSSLOT); 0 on single Redis, where any calls can. */
int sb_submit_call_slot(const sb_submit_call_t *c);
/* On Redis Cluster (sb_key_style() == SB_KEYS_CLUSTER) the job.created audit stream is in
 * another slot than the job, so the script leaves it out (the job is queued and announced
 * atomically; its audit entry follows as a separate command, not atomic with it): once c's
 * job was queued (allowed), append its `XADD agent:stream:job.created ...` with this and send
 * it (any node; the router routes it). Returns 1 when appended, 0 when there is nothing to
 * send (single Redis, AUDIT_EVENTS=0, a rate check only), SB_ENOMEM / SB_EINVAL. */
int sb_submit_audit_add(sb_batch_t *b, const sb_submit_call_t *c);
/* Job i's outcome in the reply of a call of n jobs. Returns 0, SB_EREDIS (no reply: the
 * connection went, outcome unknown) or SB_EPROTO (an error or unexpected reply). */
int sb_submit_result(const redisReply *rep, size_t i, size_t n, sb_rate_result_t *out);

/* Blocking: runs the script (EVALSHA, EVAL on NOSCRIPT) and parses the reply into out; on
 * Redis Cluster then writes the audit entry of a queued job (a failure there is logged).
 * Returns 0; SB_EINVAL as above; SB_EREDIS (connection lost: outcome unknown if the call was
 * sent); SB_EPROTO (Redis answered an error: the script stopped at that command). */
int sb_submit_run(sb_redis_t *r, const sb_script_t *s, const sb_submit_t *q,
                  sb_rate_result_t *out);

#endif
