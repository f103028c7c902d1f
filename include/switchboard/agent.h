/* The agent runtime (SPEC §2): takes jobs of one type, runs a handler, publishes status,
 * retries with backoff, dead-letters final failures, and recovers the jobs of crashed agents.
 *
 * Threads: `concurrency` workers, each with its own Redis connection, loop on
 *   BLMOVE agent:{type}:jobs agent:{type}:processing:{agentId} RIGHT LEFT 1
 * and one maintenance thread renews the agent's job lease, heartbeats its presence
 * (agent:online:{agentId}, department "workers") and returns the processing lists of dead
 * agents to the consuming end of the queue. Workers take nothing until the first lease renewal
 * and heartbeat landed, so a live agent's jobs are never mistaken for a dead one's.
 *
 * Job ownership lease: the sorted set agent:{type}:leases maps each agent id to the end of its
 * lease, in Redis server time (TIME inside the scripts, so agents' clocks do not matter). The
 * maintenance thread renews it every lease_renew_ms (default 5 s) to now + lease_ms (default
 * 15 s), whatever the workers are doing, so a job of any length stays with a live agent. Every
 * renewal interval each agent lists the lapsed entries (ZRANGEBYSCORE) and, for each, moves
 * that agent's processing list back to the queue and removes the entry, in one script that
 * checks the lease again. A `kill -9`ed agent's jobs are thus back on the queue within
 * lease_ms + lease_renew_ms (20 s by default). Presence keeps seed 004's TTLs and is not used
 * for agents that hold a lease.
 * Agents of earlier versions never write a lease: a processing list whose agent has no entry
 * is judged by its presence key as before, by a SCAN of agent:{type}:processing:* every
 * recovery_s. An agent that stalls past its lease (SIGSTOP, a frozen VM) may find its jobs
 * run elsewhere; its own late finish is then refused by the LREM guard below, and it logs
 * that its lease lapsed.
 * Safeguards: no recovery of other agents while Redis is lost; after Redis was lost or
 * stalled (a call over 1 s), or while Redis has been up for less than the wait, lapsed leases
 * are acted on only after one lease_ms, and expired presence only after one presence TTL:
 * live agents get time to write their keys again.
 *
 * Round trips: under load a worker takes with a script (LMOVE + GET) instead of BLMOVE, sends
 * the `processing` update without waiting for it, and sends the finish script and the next
 * take in one call, keeping the take's reply for its next turn: one round trip per job. A
 * worker that stops with such a prefetched job puts it back on the queue untouched.
 * Group commit: the workers' updates and finishes go through one queue and one connection of
 * the agent; a worker that finds no call under way sends every queued write of its shard as
 * one script call (so under load one call carries several workers' writes), in queue order,
 * each with its own guard and reply. Nothing waits for a group to fill.
 *
 * Every terminal transition (done, error, requeue) is one script guarded by LREM on the
 * processing list: it takes effect at most once, even if the reply was lost and the call is
 * retried after a reconnect, or if the job was meanwhile recovered by another agent. The
 * `processing` update of each attempt is guarded the same way (LPOS), so a job an operator
 * cancelled or deleted (jobctl.h: that removes it from our list) is never written back.
 *
 * Job control: at each lease renewal the agent reads agent:{type}:cancel:{agentId} (ids an
 * operator cancelled or deleted while we held them) and raises the cancel flag of the worker
 * running each one; the handler stops (an --exec process group gets SIGTERM, then SIGKILL
 * after SB_EXEC_TERM_GRACE_MS), nothing is written back, and the id leaves the set once the
 * handler has returned. So a cancel reaches a running handler within lease_renew_ms. While
 * agent:{type}:paused exists the take scripts take nothing (a BLMOVE already waiting may take
 * one more job) and workers look again every second. */
#ifndef SB_AGENT_H
#define SB_AGENT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "switchboard/config.h"
#include "switchboard/job.h"

typedef enum {
    SB_HANDLER_OK = 0,   /* out->result holds the result (may be NULL: JSON null) */
    SB_HANDLER_RETRY,    /* failed; try again while attempts remain */
    SB_HANDLER_FAIL,     /* failed for good (bad input): no retry */
    SB_HANDLER_CANCELED, /* gave up because *cancel became non-zero (shutdown) */
} sb_handler_rc_t;

typedef struct {
    cJSON *result;       /* set on OK; the runtime takes ownership */
    char error[512];     /* on RETRY / FAIL: one sentence for the user */
    char details[1024];  /* optional: more for the record */
} sb_handler_out_t;

/* A handler runs one attempt of one job on a worker thread. job is valid for the call;
 * attempt counts from 1; cancel becomes non-zero when the shutdown grace period is over or an
 * operator cancelled or deleted the job (jobctl.h; long handlers should poll it and return
 * SB_HANDLER_CANCELED). user is the pointer given to sb_agent_create. */
typedef sb_handler_rc_t (*sb_handler_cb)(const sb_job_t *job, int attempt,
                                         const atomic_int *cancel, sb_handler_out_t *out,
                                         void *user);

/* Counters for /metrics. Durations use these upper bounds in seconds (last is +Inf). */
#define SB_AGENT_NBUCKETS 12
extern const double sb_agent_buckets[SB_AGENT_NBUCKETS];
typedef struct {
    unsigned long long done, failed, retries, recovered, bad_records, requeued;
    unsigned long long refused; /* Redis answers LOADING, BUSY...: the command is sent again */
    unsigned long long withdrawn; /* runs stopped because an operator cancelled / deleted the job */
    unsigned long long checks;  /* looks for jobs of dead agents (lease checks and scans) */
    struct {
        unsigned long long count;
        double sum;
        unsigned long long bucket[SB_AGENT_NBUCKETS]; /* cumulative counts */
    } duration[2]; /* run time of the last attempt: [0] jobs done, [1] jobs failed for good */
    int inflight;
} sb_agent_stats_t;

typedef struct sb_agent sb_agent_t;

/* A monotonic clock in milliseconds, for the agent's schedules: heartbeats, recovery scans and
 * the grace after an outage follow it (durations of Redis calls, job timings and retry waits
 * use the real clock). Tests pass one they move by hand. */
typedef int64_t (*sb_agent_clock_cb)(void *ctx);

/* What an agent does, apart from where Redis is. Fill it with sb_agent_opts_init, then change
 * what you need; sb_agent_create copies what it keeps. */
typedef struct {
    const char *type;         /* job type: keys agent:{type}:... (required) */
    const char *agent_id;     /* NULL: sb_agent_default_id() */
    int concurrency;          /* jobs run at once (worker threads) */
    int max_attempts;         /* attempts before a job fails for good */
    int retry_backoff_ms;     /* wait before attempt n+1: this × n, capped, plus <= 25 % jitter */
    int retry_backoff_max_ms; /* the cap */
    int status_ttl_s;         /* presence TTL (AGENT_STATUS_TTL) */
    int heartbeat_s;          /* seconds between presence heartbeats; below status_ttl_s */
    int recovery_s;           /* seconds between scans of all processing lists */
    int lease_ms;             /* job ownership lease (JOB_LEASE_TTL): our jobs are ours while
                               * it runs; renewed every lease_renew_ms, whatever the jobs do */
    int lease_renew_ms;       /* 0: lease_ms / 3; must be below lease_ms */
    int shutdown_grace_s;     /* sb_agent_run: seconds running jobs get on SIGTERM */
    int dead_retention_s;     /* a failed job's record, history and failure live this long
                               * (DEAD_RETENTION); the dead list drops ids whose record is gone */
    int dead_max;             /* the dead list keeps at most this many ids (DEAD_MAX): the
                               * oldest beyond it are deleted with their records */
    int no_audit;             /* 1 (AUDIT_EVENTS=0): no job.completed / job.failed entries */
    sb_agent_clock_cb clock;  /* NULL: sb_mono_ms */
    void *clock_ctx;          /* given to clock */
} sb_agent_opts_t;

/* Defaults (those of the settings table): type "rebalance", id NULL, concurrency 1, 3 attempts,
 * backoff 1000 ms capped at 30000 ms, presence TTL 300 s with a heartbeat every 180 s,
 * scans every 30 s, a 15000 ms lease renewed every 5000 ms, grace 30 s, dead jobs kept 7 days
 * and at most 10000, the real clock. */
void sb_agent_opts_init(sb_agent_opts_t *o);

/* Creates an agent for o->type that connects to redis (both are copied; neither needs to
 * outlive the call). Returns NULL with a reason in err for bad options or no memory. */
sb_agent_t *sb_agent_create(const sb_redis_addr_t *redis, const sb_agent_opts_t *o,
                            sb_handler_cb cb, void *user, char *err, size_t errlen);
/* Starts the threads. Returns 0 or SB_ERR. */
int sb_agent_start(sb_agent_t *a);
/* Asks the workers to stop taking jobs (returns at once). */
void sb_agent_stop(sb_agent_t *a);
/* After sb_agent_stop: waits up to grace_s for running jobs, then cancels handlers and puts
 * back what could not finish, marks the agent offline and joins every thread. */
void sb_agent_wait(sb_agent_t *a, int grace_s);
void sb_agent_free(sb_agent_t *a); /* NULL is fine; the agent must be stopped/waited */

const char *sb_agent_id(const sb_agent_t *a);
void sb_agent_stats(sb_agent_t *a, sb_agent_stats_t *out);

/* Default agent id: {hostname}-{pid}-{8 hex}. */
void sb_agent_default_id(char *buf, size_t len);

/* Runs an agent until SIGTERM or SIGINT, then shuts down gracefully. Blocks those signals in
 * the calling thread (call it before starting other threads). Returns 0 on a clean stop. */
int sb_agent_run(const sb_redis_addr_t *redis, const sb_agent_opts_t *o, sb_handler_cb cb,
                 void *user);

/* Optional companions of a running agent (e.g. a /metrics listener). started(a, ctx) runs once
 * the agent's threads run (threads it starts inherit the blocked signals); a non-zero return
 * stops the agent. stopped(ctx) runs after the graceful wait, while `a` still exists. Either
 * may be NULL. */
typedef struct {
    int (*started)(sb_agent_t *a, void *ctx);
    void (*stopped)(void *ctx);
    void *ctx;
} sb_agent_hooks_t;
/* sb_agent_run with hooks (NULL: none). */
int sb_agent_run_hooks(const sb_redis_addr_t *redis, const sb_agent_opts_t *o, sb_handler_cb cb,
                       void *user, const sb_agent_hooks_t *hooks);

#endif
