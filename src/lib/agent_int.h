/* Private to the agent runtime (include/switchboard/agent.h has the design): the agent's state
 * and what its files call in each other. One file per concern:
 *   agent.c          lifecycle: options, create / start / stop / wait / free, sb_agent_run
 *   agent_scripts.c  the Lua scripts, with named KEYS / ARGV positions and their builders
 *   agent_conn.c     a connection of the agent: commands retried through reconnects and
 *                    refusals, and the guarded finish of a job (both threads finish jobs)
 *   agent_commit.c   group commit: the workers' updates and finishes, several a script call
 *   agent_job.c      the job state machine: attempts, retries, done / error / requeue
 *   agent_worker.c   the worker thread: taking jobs (with prefetch) and running them
 *   agent_maint.c    the maintenance thread: presence, recovery of dead agents' jobs
 * Names here are sb__ (internal); nothing outside src/lib/agent*.c includes this file. */
#ifndef SB_AGENT_INT_H
#define SB_AGENT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "switchboard/agent.h"
#include "switchboard/events.h"
#include "switchboard/fmt.h"
#include "switchboard/job.h"
#include "switchboard/jobctl.h"
#include "switchboard/presence.h"
#include "switchboard/redis.h"

#define SB__TAKE_TIMEOUT_S 1        /* BLMOVE timeout: how soon an idle worker notices stop */
#define SB__SHARD_POLL_MS 250     /* QUEUE_SHARDS > concurrency: BLMOVE timeout, so that the
                                      * shards no worker blocks on are looked at this often */
#define SB__SHARD_BURST 8         /* QUEUE_SHARDS > 1: jobs a worker takes from one shard in a
                                      * row (with its finishes) before it looks at the others */
#define SB__TRANSIENT_FIRST_MS 100  /* wait after LOADING, BUSY...: doubling up to */
#define SB__TRANSIENT_MAX_MS 2000

/* ---- queue shards ----------------------------------------------------------------------- */

/* One queue shard of the agent's type (job.h: QUEUE_SHARDS): its queue name and keys. With
 * one shard it is the type itself. */
typedef struct {
    int index;                     /* 0..nshards-1 */
    char queue[SB_QUEUE_LEN];      /* "rebalance" or "rebalance.3" */
    char k_jobs[SB_KEY_LEN], k_proc[SB_KEY_LEN], k_dead[SB_KEY_LEN];
    char k_job_prefix[SB_KEY_LEN]; /* agent:{queue}:job: */
    char k_leases[SB_KEY_LEN];     /* agent:{queue}:leases: agent id -> lease deadline */
    char k_paused[SB_KEY_LEN], k_done[SB_KEY_LEN], k_prefix[SB_KEY_LEN];
    char k_cancel[SB_KEY_LEN];     /* agent:{queue}:cancel:{id}: held ids to stop (jobctl.h) */
    sb_jobctl_sweep_t sweep;       /* maintenance thread only: where its index sweep goes on */
} sb__shard_t;

/* ---- scripts (agent_scripts.c) ---------------------------------------------------------- */

typedef struct {
    sb_script_t finish;  /* terminal transition (+ the next take): SB__FIN_* */
    sb_script_t take;    /* take without blocking: SB__TAKE_* */
    sb_script_t recover; /* move a dead agent's list back: SB__REC_* */
    sb_script_t cas;     /* compare-and-set of a record: SB__CAS_* */
    sb_script_t renew;   /* renew our job lease: SB__RENEW_* */
    sb_script_t lapsed;  /* agents whose lease has lapsed: SB__LAPSED_* */
    sb_script_t group;   /* workers' updates and finishes in one call (agent_commit.c) */
} sb__scripts_t;

void sb__scripts_init(sb__scripts_t *s);

/* KEYS and ARGV of the finish script, by name. The script unpacks them in this order. */
enum {
    SB__FIN_K_PROC,      /* our processing list (the LREM guard) */
    SB__FIN_K_RECORD,    /* the job record */
    SB__FIN_K_TARGET,    /* requeue: the jobs list; else the dead list */
    SB__FIN_K_COUNTER,   /* daily done / failed counter */
    SB__FIN_K_EXEC,      /* execution times (zset) */
    SB__FIN_K_FAILURE,   /* failure record */
    SB__FIN_K_AUDIT,     /* audit stream: agent:stream:job.completed | job.failed */
    SB__FIN_K_JOBS,      /* the jobs list: source of the take that goes with the finish */
    SB__FIN_K_PAUSED,    /* exists while the type is paused: the take is skipped */
    SB__FIN_K_DONE,      /* index of done jobs (zset by finish ms) */
    SB__FIN_K_HISTORY,   /* the job's history stream */
    SB__FIN_NKEYS
};
enum {
    SB__FIN_A_ID,          /* job id */
    SB__FIN_A_RECORD,      /* record JSON ('' = keep the record) */
    SB__FIN_A_CHANNEL,     /* status channel */
    SB__FIN_A_MESSAGE,     /* status message ('' = none) */
    SB__FIN_A_MODE,        /* sb__finish_mode_name() */
    SB__FIN_A_EXEC_MS,     /* execution time */
    SB__FIN_A_FAILURE,     /* failure JSON */
    SB__FIN_A_EXEC_BOUND,  /* size bound of the execution-time sample */
    SB__FIN_A_METRICS_TTL, /* TTL of counters, samples, failure records */
    SB__FIN_A_RECORD_TTL,  /* TTL of the job record */
    SB__FIN_A_EV_ID,       /* audit event: id, type, timestamp, data ('' = no event) */
    SB__FIN_A_EV_TYPE,
    SB__FIN_A_EV_TS,
    SB__FIN_A_EV_DATA,
    SB__FIN_A_EV_MAXLEN,   /* MAXLEN ~ of the audit stream */
    SB__FIN_A_TAKE_PREFIX, /* record key prefix of the next take ('' = take nothing) */
    SB__FIN_A_PREFIX,      /* agent:{type}: (keys of ids trimmed from the dead list) */
    SB__FIN_A_NOW_MS,      /* score in the done index */
    SB__FIN_A_DEAD_TTL,    /* TTL of a failed job's record and failure record */
    SB__FIN_A_DEAD_MAX,    /* bound of the dead list */
    SB__FIN_A_BY,          /* history: our agent id */
    SB__FIN_A_TS,          /* history: ISO time */
    SB__FIN_A_DETAIL,      /* history: a sentence */
    SB__FIN_NARGS
};
#define SB__FIN_ARGC (SB__FIN_NKEYS + SB__FIN_NARGS)

typedef enum {
    SB__FINISH_DONE = 0, /* record done, count, sample its time */
    SB__FINISH_ERROR,    /* dead-letter, count, store the failure */
    SB__FINISH_REQUEUE,  /* back to the consuming end of the queue, untouched otherwise */
} sb__finish_mode_t;

/* What a finish writes. */
typedef struct {
    sb__finish_mode_t mode;
    const char *record;  /* JSON or NULL (keep) */
    const char *message; /* status message or NULL */
    const char *failure; /* failure JSON or NULL */
    long long exec_ms;
    const char *user;    /* for the audit event: the job's owner, or NULL */
    int attempts;        /* for the audit event: attempts made, 0 = unknown */
    const char *error;   /* for the audit event of a failure */
} sb__finish_t;

/* The argument list of one finish call: argv points into the buffers. */
typedef struct {
    const char *argv[SB__FIN_ARGC];
    char k_rec[SB_KEY_LEN], k_cnt[256], k_exec[256], k_fail[256], k_audit[SB_KEY_LEN];
    char ms[SB_FMT_INT_LEN + 1], bound[SB_FMT_INT_LEN + 1], mttl[SB_FMT_INT_LEN + 1],
        jttl[SB_FMT_INT_LEN + 1], audit_max[SB_FMT_INT_LEN + 1], now[SB_FMT_INT_LEN + 1],
        dttl[SB_FMT_INT_LEN + 1], dmax[SB_FMT_INT_LEN + 1];
    char k_hist[SB_KEY_LEN], ts[SB_ISO_LEN], detail[256];
    sb_envelope_t ev; /* the audit event (job.completed | job.failed) */
    int audit_apart;  /* 1: the caller XADDs ev after an applied finish (cluster; events.h) */
    char *ev_data;    /* its data: malloc'd, or NULL (no event) */
} sb__finish_args_t;

/* Fills args for finishing id (of shard sh) as f says (take prefix ''). Call
 * sb__finish_args_close after. */
void sb__finish_args_init(sb__finish_args_t *args, const sb_agent_t *a, const sb__shard_t *sh,
                          const char *id, const sb__finish_t *f);
void sb__finish_args_close(sb__finish_args_t *args);

/* KEYS then ARGV of the take script (SB__TAKE_NKEYS keys). */
enum {
    SB__TAKE_K_JOBS, SB__TAKE_K_PROC, SB__TAKE_K_PAUSED, SB__TAKE_NKEYS,
    SB__TAKE_A_PREFIX = SB__TAKE_NKEYS, /* record key prefix (agent:{type}:job:) */
    SB__TAKE_ARGC
};
/* KEYS then ARGV of the recovery script. */
enum {
    SB__REC_K_PROC, SB__REC_K_PRESENCE, SB__REC_K_JOBS, SB__REC_K_LEASES, SB__REC_NKEYS,
    SB__REC_A_AGENT = SB__REC_NKEYS, /* the agent whose list it is */
    SB__REC_A_LEASE_OK,    /* '1': a lapsed lease may be acted on (not in a grace period) */
    SB__REC_A_PRESENCE_OK, /* '1': an agent without a lease may be judged by its presence */
    SB__REC_ARGC
};
/* KEYS then ARGV of the lease renewal. */
enum {
    SB__RENEW_K_LEASES, SB__RENEW_K_CANCEL, SB__RENEW_NKEYS,
    SB__RENEW_A_AGENT = SB__RENEW_NKEYS, /* our id */
    SB__RENEW_A_LEASE_MS,                /* the lease runs this long from now (Redis time) */
    SB__RENEW_A_TTL,                     /* seconds the leases set lives without renewals */
    SB__RENEW_ARGC
};
/* KEYS then ARGV of the listing of lapsed leases. */
enum {
    SB__LAPSED_K_LEASES, SB__LAPSED_NKEYS,
    SB__LAPSED_A_LIMIT = SB__LAPSED_NKEYS, /* at most this many agents per call */
    SB__LAPSED_ARGC
};
/* KEYS then ARGV of the guarded update of an attempt (record + status message + history). */
enum {
    SB__UPD_K_PROC, SB__UPD_K_RECORD, SB__UPD_K_HISTORY, SB__UPD_NKEYS,
    SB__UPD_A_ID = SB__UPD_NKEYS, SB__UPD_A_RECORD, SB__UPD_A_TTL, SB__UPD_A_CHANNEL,
    SB__UPD_A_MESSAGE, SB__UPD_A_STATUS, SB__UPD_A_BY, SB__UPD_A_TS, SB__UPD_A_DETAIL,
    SB__UPD_ARGC
};
/* KEYS then ARGV of the record compare-and-set. */
enum {
    SB__CAS_K_RECORD, SB__CAS_NKEYS,
    SB__CAS_A_OLD = SB__CAS_NKEYS, /* the text read */
    SB__CAS_A_NEW,                 /* the text to write if the record still holds it */
    SB__CAS_ARGC
};

/* ---- connections (agent_conn.c) --------------------------------------------------------- */

/* A job taken from the queue: its id, and its record when the take already read it. */
typedef struct {
    int shard;      /* the shard it was taken from (sb_agent.shards) */
    char *id;       /* malloc'd */
    char *record;   /* malloc'd; NULL when expired or not read */
    int have_record;
    char *error;    /* malloc'd: the error Redis gave reading the record (wrong type), or NULL */
} sb__taken_t;

/* What the take that went with a worker's last finish found. */
typedef enum {
    SB__PREFETCH_NONE = 0, /* no take went with it: the next take runs the take script */
    SB__PREFETCH_EMPTY,    /* the queue was empty: the next take waits with BLMOVE */
    SB__PREFETCH_JOB,      /* a job was taken: it is the worker's next */
} sb__prefetch_t;

/* A worker's take-ahead state: what the take sent with its last finish found. */
typedef struct {
    sb__prefetch_t state;
    sb__taken_t next; /* with SB__PREFETCH_JOB: the job it took (owned) */
    int burst;        /* jobs in a row taken by finishes (SB__SHARD_BURST) */
} sb__ahead_t;

typedef struct sb__commit sb__commit_t;

/* A connection of the agent and the flag that ends its waits: what running commands and
 * finishing jobs needs. Each worker has one; the maintenance thread (and the shutdown path)
 * uses the agent's maintenance connection through another. */
typedef struct {
    sb_agent_t *agent;
    sb_redis_t *redis;
    const atomic_int *quit; /* ends its Redis waits: the agent's cancel, or maint_stop */
    const sb__shard_t *shard; /* the shard of the job it works on */
    sb__ahead_t *ahead;     /* a worker's: finishes take its next job. NULL: they take none */
    sb__commit_t *commit;   /* a worker's: its updates and finishes go through the agent's
                             * group commit (agent_commit.c). NULL: on redis, one a call */
} sb__conn_t;

/* One attempt at a command for sb__conn_retry: the reply, or NULL on an I/O error. */
typedef redisReply *(*sb__attempt_fn)(sb__conn_t *c, void *ctx);

/* Runs attempt until Redis answers it other than with a refusal (sb_reply_is_transient),
 * through reconnects and refusals (what and id name it in the log). Returns that reply, or
 * NULL when c's quit flag was raised first. */
redisReply *sb__conn_retry(sb__conn_t *c, const char *what, const char *id,
                           sb__attempt_fn attempt, void *ctx);
/* Sends b until it gets through (reconnecting as needed). Returns 0, or SB_ECANCELED when the
 * quit flag was raised first. replies has sb_batch_count(b) slots, or is NULL: then the replies
 * are not waited for but read with the next command (sb_redis_send_deferred). */
int sb__conn_send(sb__conn_t *c, const sb_batch_t *b, redisReply **replies);
/* GET of a job record, through reconnects and refusals: 0 with *json (malloc'd), SB_ENOTFOUND
 * (nil), SB_ENOMEM, SB_EPROTO (why says what Redis answered), SB_ECANCELED. */
int sb__conn_get_record(sb__conn_t *c, const char *id, char **json, char *why, size_t whylen);
/* The guarded terminal transition (LREM from our processing list first), through reconnects
 * and refusals that leave it unrun. A worker's finish also takes its next job (c->ahead).
 * Returns 1 applied, 0 not ours any more (or a Redis error mid-script, logged), SB_ECANCELED. */
int sb__conn_finish(sb__conn_t *c, const char *id, const sb__finish_t *f);

void sb__taken_free(sb__taken_t *t);
/* Fills *t from the {id, record|nil|error} pair of a take. Returns 1, or -1 (no memory). */
int sb__taken_fill(sb__taken_t *t, const redisReply *id, const redisReply *record);

/* ---- group commit (agent_commit.c) -------------------------------------------------------- */

/* The workers' job writes (the update and finish scripts) go to Redis through one connection
 * of the agent, several in one call of the group script: a worker that finds no call under
 * way sends what is queued (its own call and any others of the same shard, in order) and
 * waits for the reply; calls queued meanwhile go with the next one. One worker's calls keep
 * their order (one queue, one connection, run in order inside a call); nothing waits for a
 * group to fill. */
typedef enum { SB__CALL_UPDATE, SB__CALL_FINISH } sb__call_kind_t;

/* Creates the group commit of a (its own connection to redis). NULL: no memory. */
sb__commit_t *sb__commit_create(sb_agent_t *a, const sb_redis_addr_t *redis);
void sb__commit_free(sb__commit_t *m); /* NULL is fine */
/* Runs one update (SB__UPD_ARGC argv) or finish (SB__FIN_ARGC argv) of shard sh in a group
 * call; argv is copied. With wait, returns that call's reply (caller frees it) or NULL with
 * *rc = SB_ECANCELED (the agent's cancel came first), SB_ENOMEM or SB_EPROTO (the whole group
 * call was refused: logged). Without wait, returns NULL at once (*rc = 0 or SB_ENOMEM): the
 * call is sent with the next group and its reply dropped, as sb_redis_send_deferred's. */
redisReply *sb__commit_call(sb__commit_t *m, const sb__shard_t *sh, sb__call_kind_t kind,
                            const char *const *argv, int wait, int *rc);

/* ---- the agent ----------------------------------------------------------------------------- */

typedef struct {
    sb__conn_t conn;               /* its own connection; conn.ahead = &ahead */
    sb__ahead_t ahead;
    pthread_t thread;
    int started;
    unsigned seed;                 /* jitter */
    int next_shard;                /* where its next look over the shards starts */
    int home_shard;                /* the shard its BLMOVE waits on (the first of them) */
    pthread_mutex_t lock;          /* guards job_id, job_shard (read by the maintenance /
                                    * shutdown path) */
    char job_id[SB_JOB_ID_LEN];    /* job in flight, "" when idle */
    int job_shard;                 /* its shard */
    atomic_int cancel;             /* the handler's cancel flag: the agent's cancel, or an
                                    * operator's cancel of job_id (set under lock) */
} sb__worker_t;

struct sb_agent {
    char id[SB_AGENT_ID_MAX + 1];
    char type[SB_TYPE_MAX + 1];
    char k_status[SB_KEY_LEN];     /* agent:{type}:status (every shard's) */
    sb__shard_t *shards;           /* the type's queue shards (sb_queue_shards() at create) */
    int nshards;
    sb_agent_opts_t o;             /* copy; o.type and o.agent_id point at type and id */
    sb_handler_cb cb;
    void *user;
    sb__scripts_t scripts;
    sb_presence_ctx_t presence;    /* presence scripts; TTL AGENT_STATUS_TTL */
    char info[384];                /* the presence record's extra members (host, job_type, pid,
                                    * started_at: the operator console's Workers view) */

    atomic_int stop;       /* workers: take no more jobs */
    atomic_int cancel;     /* handlers and retry waits: give up now */
    atomic_int present;    /* first heartbeat landed: workers may take jobs */
    atomic_int maint_stop; /* maintenance thread: exit */
    atomic_int inflight;
    atomic_uint master_epoch; /* bumped by the maintenance thread when the Sentinels name another
                                 master: every connection follows it (sb_redis_follow) */

    sb__worker_t *workers;
    int nworkers;
    int active;            /* workers still running; guarded by lock */
    int abandoned;         /* some worker never returned: leak rather than free under it */
    pthread_mutex_t lock;
    pthread_cond_t cond;   /* signalled when a worker exits */

    pthread_t maint;
    int maint_started;
    int lease_renew_ms;    /* o.lease_renew_ms, or o.lease_ms / 3 */
    char **suspects;       /* maintenance thread only: ids orphaned in our list at the last scan */
    size_t nsuspects;
    sb_redis_t *maint_redis;
    sb__commit_t *commit;  /* the workers' group commit */

    pthread_mutex_t stats_lock;
    sb_agent_stats_t stats;
};

/* The agent's schedule clock (o.clock, or sb_mono_ms). */
int64_t sb__agent_now(const sb_agent_t *a);
void sb__stat_add(sb_agent_t *a, unsigned long long *field, unsigned long long n);
/* Counts a finished job's last attempt in the duration histogram of done (failed 0) or
 * failed (1) jobs. */
void sb__stat_duration(sb_agent_t *a, int failed, double secs);
/* 1 if a worker holds id right now. */
int sb__agent_held(sb_agent_t *a, const char *id);
/* The shard of a job id (its suffix, job.h); shard 0 for an id that names none of ours. */
const sb__shard_t *sb__agent_shard_of(const sb_agent_t *a, const char *id);

/* The worker thread (agent_worker.c); arg is its sb__worker_t. */
void *sb__worker_main(void *arg);
/* Runs a taken job: reads its record if the take did not, then its attempts (agent_job.c). */
void sb__job_process(sb__worker_t *w, sb__taken_t *t);

/* The maintenance thread (agent_maint.c); arg is the agent. */
void *sb__maint_main(void *arg);
/* Removes our lease entry (clean shutdown: nothing of ours is left to recover). */
void sb__lease_drop(sb_agent_t *a);
void sb__maint_close(sb_agent_t *a); /* frees what the thread kept between scans */

#endif
