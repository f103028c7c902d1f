/* Job control for operators (SPEC §2–§3, issue 18): list and search jobs across users, one
 * job's detail and history, retry, retry all dead, cancel (queued or running), delete, and
 * pause / resume of a job type. Every call uses a blocking sb_redis_t the caller owns (it is
 * not reconnected here: SB_EREDIS means call sb_redis_ensure and try again).
 *
 * How it works. Each action is one Lua script that checks the record it was computed from is
 * still the one stored (compare-and-set: the C side reads the record, builds the new one with
 * cJSON, and the script applies it with every list, index, history and audit write, or answers
 * "changed" and the action is read and decided again, a bounded number of times). So every
 * action is atomic and safe to repeat, and every race against an agent ends in one state:
 *  - cancel vs the agent's finish: the finish is guarded by LREM on the agent's processing
 *    list; a cancel removes the id from that list first, so the later of the two does nothing
 *    (a finish that came first changed the record, and the cancel answers 409 "done");
 *  - retry vs recovery: only a failed / dead / cancelled job is retried; such a job is in no
 *    processing list, so recovery cannot move it;
 *  - delete vs a take: the record and every list entry go in one script; an agent that took
 *    the id just before finds no record (it drops the id) or its guarded writes refused.
 *
 * Indices (kept by the same scripts as the state changes, so a crash cannot split them):
 *   agent:{type}:index      zset, every job id by creation ms (written by the enqueue script)
 *   agent:{type}:done       zset, done ids by finish ms (the agent's finish script)
 *   agent:{type}:cancelled  zset, cancelled ids by cancel ms
 *   agent:{type}:jobs / dead / processing:{agent} and agent:{type}:user:{publicKey} as before.
 * A listing reads the smallest of these that holds the state asked for; an id whose record is
 * gone (expired) is removed from the structure it was found in as it is met, and the dead list
 * is trimmed by age and by DEAD_MAX in the agent's finish script. The rest of the indices is
 * swept in bounded steps (sb_jobctl_sweep, run by every agent each recovery interval).
 *
 * History: every state change appends {status, by, at, detail} to the list
 * agent:{type}:hist:{id} (four elements an entry, about SB_HISTORY_MAXLEN entries, as
 * long-lived as the record; the stream agent:{type}:history:{id} of older versions is still
 * read first and deleted with the job):
 * the enqueue (by the owner), each attempt and finish (by the agent), and the actions here
 * (by whoever acted). Actions are also written to the event bus streams job.retried,
 * job.cancelled, job.deleted, queue.paused, queue.resumed with {jobId?, type, userId?, by}.
 *
 * Cancel of a running job: the script removes the id from its agent's processing list and
 * adds it to agent:{type}:cancel:{agentId}; that agent reads the set at each lease renewal
 * (agent.h) and raises the cancel flag of the worker running the job (an --exec process
 * group gets SIGTERM, then SIGKILL after a grace period). The id stays in the set until the
 * handler has returned: a retry is refused (409 "cancelling") until then.
 *
 * Pause: agent:{type}:paused exists (its value says who and when); agents take no new job of
 * the type (the take scripts check it; a blocking take already waiting may take one more). */
#ifndef SB_JOBCTL_H
#define SB_JOBCTL_H

#include <cjson/cJSON.h>
#include "switchboard/redis.h"

#define SB_JOBCTL_STATE_LEN 16 /* longest state name + NUL */
#define SB_JOBCTL_LIST_MAX 500 /* largest page of a listing */
#define SB_JOBCTL_RETRY_MAX 1000 /* most dead jobs one retry-all call moves */

typedef enum {
    SB_JOBCTL_OK = 0,    /* applied */
    SB_JOBCTL_NOTFOUND,  /* no such job (or, with an owner, not theirs) */
    SB_JOBCTL_CONFLICT,  /* the job is in a state that refuses the action: state says which */
} sb_jobctl_outcome_t;

typedef struct {
    sb_jobctl_outcome_t outcome;
    char state[SB_JOBCTL_STATE_LEN]; /* CONFLICT: the job's state; OK: the state it left */
    char agent[128];                 /* cancel / delete of a running job: the agent told */
} sb_jobctl_result_t;

/* The states a listing filters on (derived from the record: a failed record is "dead", a
 * queued one with an error and attempts made is "retrying"). "error" is the same as "dead". */
extern const char *const sb_jobctl_states[];
/* 1 if s names a state of sb_jobctl_states, else 0. */
int sb_jobctl_state_valid(const char *s);

/* Queue shards (job.h): an action or detail on a job id goes to the shard the id names (NOTFOUND
 * for a shard beyond sb_queue_shards()); pause / resume, retry of every dead job and counts
 * cover every shard; a listing goes shard by shard (a user's: the user's shard).
 *
 * ---- actions: each returns 0 with res filled, SB_EINVAL (bad type / id / by: nothing done),
 * SB_EREDIS (connection lost: the action may or may not have landed; repeating it is safe),
 * SB_EPROTO (Redis refused), SB_ENOMEM, SB_ETIMEOUT (the record kept changing under us). */

/* A failed, dead or cancelled job back to the queue (attempts 0, the last error kept as
 * lastError, history kept). CONFLICT for any other state ("queued", "processing", ...), and
 * "cancelling" while the handler of a cancelled run has not stopped yet. */
int sb_jobctl_retry(sb_redis_t *r, const char *type, const char *id, const char *by,
                    sb_jobctl_result_t *res);
/* Retries up to limit (1..SB_JOBCTL_RETRY_MAX) dead jobs of type, oldest first; *retried
 * says how many. Ids whose record is gone are dropped from the dead list. Same errors. */
int sb_jobctl_retry_dead(sb_redis_t *r, const char *type, const char *by, int limit,
                         int *retried);
/* Cancels a queued or running job: it ends as `cancelled` (record, history, status message
 * {type}:cancelled to its owner). owner != NULL: the caller is that user (publicKey): another
 * user's job is NOTFOUND, and only a queued job may be cancelled (CONFLICT "processing").
 * CONFLICT with the state for a finished job (done, dead, cancelled). */
int sb_jobctl_cancel(sb_redis_t *r, const char *type, const char *id, const char *by,
                     const char *owner, sb_jobctl_result_t *res);
/* Deletes a job: record, history, failure record, every list and index entry (a running job's
 * agent is told to stop it). NOTFOUND when nothing of it existed. */
int sb_jobctl_delete(sb_redis_t *r, const char *type, const char *id, const char *by,
                     sb_jobctl_result_t *res);
/* Pauses (paused = 1) or resumes a type. *changed (may be NULL) says whether it was not
 * already so. Returns 0 or an error as above. */
int sb_jobctl_pause(sb_redis_t *r, const char *type, const char *by, int paused, int *changed);
/* 1 paused, 0 not, or SB_EINVAL / SB_EREDIS / SB_EPROTO. */
int sb_jobctl_paused(sb_redis_t *r, const char *type);

/* ---- index hygiene ------------------------------------------------------------------------ */

#define SB_JOBCTL_SWEEP_MAX 1000 /* largest budget of one sweep step */

/* Where a sweep goes on from; zeroed (= {0}) it starts at the beginning. Owned by the caller,
 * one per type swept; not shared between threads. */
typedef struct {
    long index_rank; /* rank in agent:{type}:index where the next window starts */
    char scan[24];   /* SCAN cursor over the user indices ("" or "0": from the start) */
} sb_jobctl_sweep_t;

/* One bounded step of the index sweep of one queue shard (a type, or a queue name of job.h:
 * the agent sweeps each of its shards): looks at up to budget (1..SB_JOBCTL_SWEEP_MAX) ids of
 * agent:{type}:index from where the last step of s stopped (wrapping at the end), at up to
 * budget of the oldest ids of each user index one SCAN step returns, and trims the done /
 * cancelled zsets by age (SB_JOB_TTL). Ids whose record is gone leave every index (index,
 * done, cancelled, the user index they were met in) with their history; a job that has its
 * record is never touched. *removed (may be NULL) says how many entries went. Returns 0, or
 * SB_EINVAL (bad type, budget or state: nothing done), SB_EREDIS / SB_EPROTO (s keeps the
 * progress made; calling again is safe). The agent runs one step every recovery interval. */
int sb_jobctl_sweep(sb_redis_t *r, const char *queue, sb_jobctl_sweep_t *s, int budget,
                    long *removed);

/* ---- queries: each returns 0 with *out (caller cJSON_Delete()s), or an error as above. */

typedef struct {
    const char *type;   /* required */
    const char *state;  /* NULL: any */
    const char *user;   /* NULL: any; else the owner's publicKey */
    long cursor;        /* 0 for the first page, then the previous page's "next" */
    int limit;          /* 1..SB_JOBCTL_LIST_MAX */
} sb_jobctl_query_t;

/* Newest first: {"jobs":[{"jobId","state","job":record}...],"next":cursor|null}. With a user
 * and a state the user's index is read with the state as a filter: a page may then hold fewer
 * than limit jobs (at most 10 × limit entries are looked at per call) while next is not null. */
int sb_jobctl_list(sb_redis_t *r, const sb_jobctl_query_t *q, cJSON **out);
/* {"type","paused","paused_info","counts":{"queued","processing","retrying","done","dead",
 * "cancelled"},"total"}. */
int sb_jobctl_counts(sb_redis_t *r, const char *type, cJSON **out);
/* {"jobId","state","job":record,"history":[{"id","status","by","at","detail"}...],
 * "failure":object|null,"agent":holder|null,"cancelling":bool}. SB_ENOTFOUND when neither a
 * record nor a history exists. */
int sb_jobctl_detail(sb_redis_t *r, const char *type, const char *id, cJSON **out);

#endif
