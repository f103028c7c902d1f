/* The agent runtime: workers, maintenance (presence + recovery), graceful shutdown.
 * See include/switchboard/agent.h for the design; this file is organised as
 *   scripts · worker Redis steps · the job state machine · worker thread ·
 *   maintenance thread · lifecycle. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include "switchboard/agent.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/events.h"
#include "switchboard/fmt.h"
#include "switchboard/json.h"
#include "switchboard/log.h"
#include "switchboard/metrics.h"
#include "switchboard/presence.h"
#include "switchboard/queue.h"
#include "switchboard/redis.h"

#define SB_TAKE_TIMEOUT_S 1        /* BLMOVE timeout: how soon an idle worker notices stop */
#define SB_CANCEL_WAIT_MS 5000     /* after cancel, how long handlers get to return */
#define SB_WORKER_DEPT "workers"
#define SB_FINISH_NKEYS 8          /* KEYS of SB_FINISH_LUA */
#define SB_TRANSIENT_FIRST_MS 100  /* wait after LOADING, BUSY...: doubling up to */
#define SB_TRANSIENT_MAX_MS 2000
#define SB_STALL_MS 1000           /* a heartbeat slower than this: redis was stalled */

const double sb_agent_buckets[SB_AGENT_NBUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                    0.5,   1,    5,     10,   30,  60};

/* ---- scripts ----------------------------------------------------------------------------- */

/* The terminal transition of a job, guarded by its presence in our processing list, and
 * optionally the take of the next job (as SB_TAKE_LUA does), so that a worker under load
 * spends one script call and one round trip per job.
 * KEYS: 1 processing list, 2 record, 3 target list (dead | jobs), 4 counter, 5 exec times,
 *       6 failure record, 7 audit stream (agent:stream:job.completed | job.failed),
 *       8 jobs list (the take's source).
 * ARGV: 1 id, 2 record JSON ('' = keep), 3 channel, 4 status message ('' = none),
 *       5 mode (done | error | requeue), 6 exec ms, 7 failure JSON, 8 exec-set bound,
 *       9 metrics TTL, 10 record TTL,
 *       11-14 audit event_id, event_type, timestamp, data ('' = no event), 15 its MAXLEN,
 *       16 record key prefix of the take ('' = take nothing).
 * Returns 1 if applied, 0 if the id was no longer ours (already finished or recovered); with a
 * take, {that, id, record or nil or an error} when a job was taken (as SB_TAKE_LUA), else
 * {that}. */
static const char SB_FINISH_LUA[] =
    "local function finish()\n"
    "if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end\n"
    "if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[10]) end\n"
    "if ARGV[5] == 'requeue' then\n"
    "  redis.call('RPUSH', KEYS[3], ARGV[1])\n"
    "else\n"
    "  if redis.call('INCR', KEYS[4]) == 1 then redis.call('EXPIRE', KEYS[4], ARGV[9]) end\n"
    "  if ARGV[5] == 'done' then\n"
    "    redis.call('ZADD', KEYS[5], ARGV[6], ARGV[1])\n"
    "    redis.call('EXPIRE', KEYS[5], ARGV[9])\n"
    /* over the bound by 10 %: evict the excess at random in one go (amortised) */
    "    local card, cap = redis.call('ZCARD', KEYS[5]), tonumber(ARGV[8])\n"
    "    if card > cap + cap / 10 then\n"
    "      redis.call('ZREM', KEYS[5], unpack(redis.call('ZRANDMEMBER', KEYS[5], card - cap)))\n"
    "    end\n"
    "  else\n"
    "    redis.call('LPUSH', KEYS[3], ARGV[1])\n"
    "    redis.call('SET', KEYS[6], ARGV[7], 'EX', ARGV[9])\n"
    "  end\n"
    "end\n"
    "if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end\n"
    /* event bus audit trail (SPEC §7): job.completed / job.failed */
    "if ARGV[5] ~= 'requeue' and ARGV[14] ~= '' then\n"
    "  redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[15], '*', 'event_id', ARGV[11],\n"
    "             'event_type', ARGV[12], 'timestamp', ARGV[13], 'data', ARGV[14])\n"
    "end\n"
    "return 1\n"
    "end\n"
    "local applied = finish()\n"
    "if ARGV[16] == '' then return applied end\n"
    "local id = redis.call('LMOVE', KEYS[8], KEYS[1], 'RIGHT', 'LEFT')\n"
    "if not id then return {applied} end\n"
    "return {applied, id, redis.pcall('GET', ARGV[16] .. id)}\n";

/* Takes the next job without blocking: moves its id into our processing list and reads its
 * record, in one round trip. KEYS: 1 jobs list, 2 processing list. ARGV: 1 record key prefix.
 * Returns nil when the queue is empty, else {id, record or nil (expired) or an error (the key
 * holds something else: pcall, so that the id taken is still returned and dead-lettered)}. */
static const char SB_TAKE_LUA[] =
    "local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')\n"
    "if not id then return false end\n"
    "return {id, redis.pcall('GET', ARGV[1] .. id)}\n";

/* Moves a dead agent's processing list back to the consuming end of the queue, oldest taken
 * ending rightmost (next out). KEYS: 1 processing list, 2 its presence key, 3 jobs list.
 * Returns the moved ids, or -1 when the agent is alive. */
static const char SB_RECOVER_LUA[] =
    "if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end\n"
    "local moved = {}\n"
    "while true do\n"
    "  local id = redis.call('LMOVE', KEYS[1], KEYS[3], 'LEFT', 'RIGHT')\n"
    "  if not id then break end\n"
    "  moved[#moved + 1] = id\n"
    "end\n"
    "return moved\n";

/* Compare-and-set of a record: writes ARGV[2] only if the key still holds ARGV[1], so a
 * recovery never overwrites a newer state written by the worker that took the job meanwhile.
 * KEYS: 1 record. Returns 1 if written. */
static const char SB_RECORD_CAS_LUA[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')\n"
    "return 1\n";

/* ---- types ------------------------------------------------------------------------------- */

/* A job taken from the queue: its id, and its record when the take already read it. */
typedef struct {
    char *id;       /* malloc'd */
    char *record;   /* malloc'd; NULL when expired or not read */
    int have_record;
    char *error;    /* malloc'd: the error Redis gave reading the record (wrong type), or NULL */
} sb_taken_t;

/* What the take that went with a worker's last finish found. */
typedef enum {
    SB_PREFETCH_NONE = 0, /* no take went with it: the next take runs the take script */
    SB_PREFETCH_EMPTY,    /* the queue was empty: the next take waits with BLMOVE */
    SB_PREFETCH_JOB,      /* a job was taken: it is the worker's next */
} sb_prefetch_t;

typedef struct {
    sb_agent_t *agent;
    pthread_t thread;
    int started;
    sb_redis_t *redis;
    unsigned seed;                 /* jitter */
    pthread_mutex_t lock;          /* guards job_id (read by the shutdown path) */
    char job_id[SB_JOB_ID_LEN];    /* job in flight, "" when idle */
    int can_prefetch;              /* a worker thread (not the maintenance thread's stand-in) */
    const atomic_int *quit;        /* ends its Redis waits: the agent's cancel, or maint_stop */
    sb_prefetch_t prefetch;        /* what the take of the last finish found */
    sb_taken_t next;               /* with SB_PREFETCH_JOB: the job it took (owned) */
} sb_worker_t;

struct sb_agent {
    char id[SB_AGENT_ID_MAX + 1];
    char type[SB_TYPE_MAX + 1];
    char k_jobs[SB_KEY_LEN], k_proc[SB_KEY_LEN], k_dead[SB_KEY_LEN], k_status[SB_KEY_LEN];
    int max_attempts, backoff_ms, backoff_max_ms;
    int status_ttl, heartbeat_s, recovery_s;
    sb_handler_cb cb;
    void *user;
    sb_script_t finish, recover, cas, take;
    char k_job_prefix[SB_KEY_LEN]; /* agent:{type}:job: */
    sb_presence_ctx_t presence; /* presence scripts; TTL AGENT_STATUS_TTL */

    atomic_int stop;       /* workers: take no more jobs */
    atomic_int cancel;     /* handlers and retry waits: give up now */
    atomic_int present;    /* first heartbeat landed: workers may take jobs */
    atomic_int maint_stop; /* maintenance thread: exit */
    atomic_int inflight;

    sb_worker_t *workers;
    int nworkers;
    int active;            /* workers still running; guarded by lock */
    int abandoned;         /* some worker never returned: leak rather than free under it */
    pthread_mutex_t lock;
    pthread_cond_t cond;   /* signalled when a worker exits */

    pthread_t maint;
    int maint_started;
    char **suspects;       /* maintenance thread only: ids orphaned in our list at the last scan */
    size_t nsuspects;
    sb_redis_t *maint_redis;

    pthread_mutex_t stats_lock;
    sb_agent_stats_t stats;
};

/* ---- small helpers ----------------------------------------------------------------------- */

static void sb_stat_add(sb_agent_t *a, unsigned long long *field, unsigned long long n) {
    pthread_mutex_lock(&a->stats_lock);
    *field += n;
    pthread_mutex_unlock(&a->stats_lock);
}

static void sb_stat_duration(sb_agent_t *a, double secs) {
    pthread_mutex_lock(&a->stats_lock);
    a->stats.duration_count++;
    a->stats.duration_sum += secs;
    for (int i = 0; i < SB_AGENT_NBUCKETS; i++)
        if (secs <= sb_agent_buckets[i]) a->stats.duration_bucket[i]++;
    pthread_mutex_unlock(&a->stats_lock);
}

static void sb_worker_set_job(sb_worker_t *w, const char *id) {
    pthread_mutex_lock(&w->lock);
    snprintf(w->job_id, sizeof w->job_id, "%s", id ? id : "");
    pthread_mutex_unlock(&w->lock);
}

/* Retry wait before attempt+1: backoff × attempt, capped, plus up to 25 % jitter. */
static int sb_retry_delay_ms(sb_worker_t *w, int attempt) {
    const sb_agent_t *a = w->agent;
    long long d = (long long)a->backoff_ms * attempt;
    if (d > a->backoff_max_ms) d = a->backoff_max_ms;
    long long jitter = d / 4 > 0 ? rand_r(&w->seed) % (d / 4 + 1) : 0;
    return (int)(d + jitter);
}

/* ---- worker Redis steps ------------------------------------------------------------------ */

/* Sends b until it gets through (reconnecting as needed). Returns 0, or SB_ECANCELED when the
 * grace period ended first. replies has sb_batch_count(b) slots, or is NULL: then the replies
 * are not waited for but read with the worker's next command (sb_redis_send_deferred). */
static int sb_worker_send(sb_worker_t *w, const sb_batch_t *b, redisReply **replies) {
    for (;;) {
        if (sb_redis_ensure(w->redis, w->quit) != SB_OK) return SB_ECANCELED;
        if ((replies ? sb_redis_pipeline(w->redis, b, replies)
                     : sb_redis_send_deferred(w->redis, b)) == SB_OK)
            return SB_OK;
    }
}

/* Waits before sending a refused command again (sb_reply_is_transient); logs the first refusal
 * of a call. Returns 0, or SB_ECANCELED when w's quit flag was raised meanwhile. */
static int sb_worker_backoff(sb_worker_t *w, const char *what, const char *id,
                             const redisReply *rep, int *delay) {
    if (*delay == SB_TRANSIENT_FIRST_MS)
        sb_warn("agent", "job %.64s: redis refused the %s for now (%s); retrying", id, what,
                rep->str);
    sb_stat_add(w->agent, &w->agent->stats.refused, 1);
    int rc = sb_sleep_ms(*delay, w->quit);
    *delay = *delay * 2 > SB_TRANSIENT_MAX_MS ? SB_TRANSIENT_MAX_MS : *delay * 2;
    return rc;
}

/* A GET reply as a record: 0 with *json (malloc'd), SB_ENOTFOUND (nil), SB_ENOMEM, or
 * SB_EPROTO when the key cannot be read as a record (why says what Redis answered). */
static int sb_record_reply(const redisReply *rep, char **json, char *why, size_t whylen) {
    if (rep->type == REDIS_REPLY_NIL) return SB_ENOTFOUND;
    if (rep->type == REDIS_REPLY_STRING)
        return (*json = strndup(rep->str, rep->len)) ? SB_OK : SB_ENOMEM;
    snprintf(why, whylen, "record unreadable: %s",
             rep->type == REDIS_REPLY_ERROR ? rep->str : "not a string");
    return SB_EPROTO;
}

/* One attempt at a command for sb_worker_retry: the reply, or NULL on an I/O error. */
typedef redisReply *(*sb_attempt_fn)(sb_worker_t *w, void *ctx);

/* Runs attempt until Redis answers it other than with a refusal (sb_reply_is_transient),
 * through reconnects and refusals (what and id name it in the log). Returns that reply, or
 * NULL when w's quit flag was raised first. */
static redisReply *sb_worker_retry(sb_worker_t *w, const char *what, const char *id,
                                   sb_attempt_fn attempt, void *ctx) {
    int delay = SB_TRANSIENT_FIRST_MS;
    while (sb_redis_ensure(w->redis, w->quit) == SB_OK) {
        redisReply *rep = attempt(w, ctx);
        if (!rep || !sb_reply_is_transient(rep)) {
            if (rep) return rep;
            continue;
        }
        int wait = sb_worker_backoff(w, what, id, rep, &delay);
        freeReplyObject(rep);
        if (wait != SB_OK) break;
    }
    return NULL;
}

static redisReply *sb_get_attempt(sb_worker_t *w, void *key) {
    return sb_redis_cmd(w->redis, "GET %s", (const char *)key);
}

/* GET the record, through reconnects and refusals (LOADING...). Returns as sb_record_reply, or
 * SB_ECANCELED. */
static int sb_worker_get(sb_worker_t *w, const char *id, char **json, char *why, size_t whylen) {
    char key[SB_KEY_LEN];
    *json = NULL;
    if (!sb_key(key, sizeof key, SB_KEY_JOB, w->agent->type, id)) return SB_ENOTFOUND;
    redisReply *rep = sb_worker_retry(w, "read", id, sb_get_attempt, key);
    if (!rep) return SB_ECANCELED;
    int rc = sb_record_reply(rep, json, why, whylen);
    freeReplyObject(rep);
    return rc;
}

typedef struct {
    const char *mode;          /* done | error | requeue | drop */
    const char *record;        /* JSON or NULL */
    const char *message;       /* status message or NULL */
    const char *failure;       /* failure JSON or NULL */
    long long exec_ms;
    const char *user;          /* for the audit event: the job's owner, or NULL */
    int attempts;              /* for the audit event: attempts made, 0 = unknown */
    const char *error;         /* for the audit event of a failure */
} sb_finish_t;

/* Event bus audit trail: the envelope of the job.completed / job.failed event of a finish
 * ({jobId, type, userId?, agentId, attempts?, durationMs | error}). Returns its data text
 * (malloc'd; e points at it) or NULL, in which case no event is written. */
static char *sb_finish_audit(const sb_worker_t *w, const char *id, const sb_finish_t *f,
                             sb_envelope_t *e) {
    const sb_agent_t *a = w->agent;
    int done = !strcmp(f->mode, "done");
    cJSON *x = cJSON_CreateObject();
    char *data = NULL;
    if (x) {
        cJSON_AddStringToObject(x, "agentId", a->id);
        if (f->attempts > 0) cJSON_AddNumberToObject(x, "attempts", f->attempts);
        if (done) cJSON_AddNumberToObject(x, "durationMs", (double)f->exec_ms);
        if (f->error) cJSON_AddStringToObject(x, "error", f->error);
    }
    if (x) sb_events_job_envelope(e, &data, done ? SB_EVENT_JOB_COMPLETED : SB_EVENT_JOB_FAILED,
                                  a->type, id, f->user, x, NULL);
    cJSON_Delete(x);
    return data;
}

/* ---- taking jobs ------------------------------------------------------------------------- */

static void sb_taken_free(sb_taken_t *t) {
    free(t->id);
    free(t->record);
    free(t->error);
    memset(t, 0, sizeof *t);
}

/* Fills *t from the {id, record|nil} pair a take script returns (the take script's whole reply,
 * or elements 2-3 of a finish-and-take reply). Returns 1, or -1 (out of memory; *t empty). */
static int sb_taken_fill(sb_taken_t *t, const redisReply *id, const redisReply *record) {
    t->id = strndup(id->str, id->len);
    t->have_record = 1;
    char **copy = record->type == REDIS_REPLY_STRING  ? &t->record
                  : record->type == REDIS_REPLY_ERROR ? &t->error
                                                      : NULL;
    if (copy) *copy = strndup(record->str, record->len);
    if (t->id && (!copy || *copy)) return 1;
    sb_taken_free(t);
    return -1;
}

/* Fills *t from a take-script reply ({id, record|nil}) or a BLMOVE reply (id). Consumes rep.
 * Returns 1 with *t filled, 0 when nothing was taken, -1 on a Redis error. */
static int sb_taken_parse(redisReply *rep, sb_taken_t *t) {
    int rc = 0;
    if (rep->type == REDIS_REPLY_STRING) { /* BLMOVE */
        t->id = strndup(rep->str, rep->len);
        rc = t->id ? 1 : -1;
    } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
               rep->element[0]->type == REDIS_REPLY_STRING) { /* take script */
        rc = sb_taken_fill(t, rep->element[0], rep->element[1]);
    } else if (rep->type == REDIS_REPLY_ERROR) {
        sb_error("agent", "taking a job failed: %s", rep->str);
        rc = -1;
    }
    freeReplyObject(rep);
    if (rc < 0) sb_taken_free(t);
    return rc;
}

/* The outcome of a finish script call: 1 applied, 0 not ours, -1 an unexpected reply (logged).
 * With a take ({applied} or {applied, id, record|nil}) the job taken becomes w's next. */
static int sb_finish_reply(sb_worker_t *w, const char *id, const redisReply *rep) {
    const redisReply *applied = rep;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1) {
        applied = rep->element[0];
        w->prefetch = SB_PREFETCH_EMPTY;
        if (rep->elements == 3 && rep->element[1]->type == REDIS_REPLY_STRING &&
            sb_taken_fill(&w->next, rep->element[1], rep->element[2]) == 1)
            w->prefetch = SB_PREFETCH_JOB;
        /* a take whose id could not be copied stays in our processing list: reclaimed */
    }
    if (applied->type == REDIS_REPLY_INTEGER) return (int)applied->integer;
    sb_error("agent", "job %s: finish script failed: %s", id,
             rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    return -1;
}

typedef struct {
    int argc;
    const char **argv;
} sb_argv_t;

/* Calls the finish script (argv as sb_worker_finish builds it, its last argument the take's
 * record key prefix, '' here). A worker that goes on taking jobs has the same call take its next
 * one (sb_finish_reply keeps it): one script call and one round trip per job under load.
 * Returns the reply, or NULL on an I/O error (the take may then have run with its reply lost:
 * sb_agent_reclaim_own puts such an id back). */
static redisReply *sb_finish_attempt(sb_worker_t *w, void *args) {
    sb_agent_t *a = w->agent;
    sb_argv_t *v = args;
    int take = w->can_prefetch && w->prefetch == SB_PREFETCH_NONE && !atomic_load(&a->stop);
    v->argv[v->argc - 1] = take ? a->k_job_prefix : "";
    return sb_redis_eval(w->redis, &a->finish, SB_FINISH_NKEYS, v->argc, v->argv, NULL);
}

/* Runs the guarded terminal transition, through reconnects and refusals that leave it unrun
 * (LOADING after a restart, BUSY...: the LREM guard makes sending it again safe). Returns 1
 * applied, 0 not ours any more (or a Redis error mid-script, logged), SB_ECANCELED. */
static int sb_worker_finish(sb_worker_t *w, const char *id, const sb_finish_t *f) {
    sb_agent_t *a = w->agent;
    char k_rec[SB_KEY_LEN], k_cnt[256], k_exec[256], k_fail[256], ms[SB_FMT_INT_LEN + 1],
        bound[SB_FMT_INT_LEN + 1], mttl[SB_FMT_INT_LEN + 1], jttl[SB_FMT_INT_LEN + 1],
        audit_max[SB_FMT_INT_LEN + 1];
    int64_t now = sb_now_ms();
    int requeue = !strcmp(f->mode, "requeue");
    sb_key(k_rec, sizeof k_rec, SB_KEY_JOB, a->type, id);
    sb_metrics_counter_key(k_cnt, sizeof k_cnt, a->type, !strcmp(f->mode, "done") ? "done" : "failed",
                           now);
    sb_metrics_key(k_exec, sizeof k_exec, a->type, "execution_times", NULL);
    sb_metrics_key(k_fail, sizeof k_fail, a->type, "failed", id);
    sb_fmt_llz(ms, f->exec_ms);
    sb_fmt_llz(bound, SB_METRICS_EXEC_MAX);
    sb_fmt_llz(mttl, SB_METRICS_TTL);
    sb_fmt_llz(jttl, SB_JOB_TTL);
    sb_fmt_llz(audit_max, SB_EVENTS_AUDIT_MAXLEN);
    /* event bus audit trail: the job.completed / job.failed entry the script XADDs */
    sb_envelope_t ev = {0};
    char k_audit[SB_KEY_LEN], *ev_data = requeue ? NULL : sb_finish_audit(w, id, f, &ev);
    sb_events_key(k_audit, sizeof k_audit, strcmp(f->mode, "done") ? SB_EVENT_JOB_FAILED
                                                                    : SB_EVENT_JOB_COMPLETED);
    const char *argv[] = {a->k_proc, k_rec, requeue ? a->k_jobs : a->k_dead, k_cnt, k_exec, k_fail,
                          k_audit, a->k_jobs,
                          id, f->record ? f->record : "", a->k_status,
                          f->message ? f->message : "", f->mode, ms,
                          f->failure ? f->failure : "", bound, mttl, jttl,
                          ev.event_id, ev.event_type ? ev.event_type : "", ev.timestamp,
                          ev_data ? ev_data : "", audit_max, ""};
    sb_argv_t args = {(int)(sizeof argv / sizeof argv[0]), argv};
    redisReply *rep = sb_worker_retry(w, "finish", id, sb_finish_attempt, &args);
    int rc = SB_ECANCELED;
    if (rep) {
        rc = sb_finish_reply(w, id, rep) == 1; /* an unexpected reply (logged) counts as 0 */
        freeReplyObject(rep);
    }
    free(ev_data);
    return rc;
}

/* ---- the job state machine --------------------------------------------------------------- */

typedef struct {
    sb_worker_t *w;
    const char *id;
    sb_job_t job;
    int64_t started_ms;  /* monotonic start of the current attempt */
} sb_run_t;

/* Writes the record with its new status and publishes a status message, in one write. With
 * wait = 0 the replies are read with the worker's next command (the finish), so the handler
 * starts without waiting a round trip; a Redis error in them is logged, and the terminal
 * transition overwrites the record anyway. */
static int sb_run_update(sb_run_t *r, const char *status, const char *msg_status,
                         const char *details, int wait) {
    sb_agent_t *a = r->w->agent;
    char key[SB_KEY_LEN], ttl[SB_FMT_INT_LEN + 1];
    sb_job_set_status(&r->job, status, sb_now_ms());
    if (details) sb_json_set_str(r->job.root, "details", details);
    char *rec = sb_json_print(r->job.root);
    sb_status_t st = {.job_id = r->id, .status = msg_status, .user_id = r->job.public_key,
                      .details = details, .attempts = r->job.attempts};
    char *msg = sb_status_build(&st);
    sb_batch_t *b = sb_batch_create();
    int rc = rec && msg && b ? SB_OK : SB_ENOMEM;
    sb_fmt_llz(ttl, SB_JOB_TTL);
    const char *set[] = {"SET", sb_key(key, sizeof key, SB_KEY_JOB, a->type, r->id), rec, "EX", ttl};
    const char *pub[] = {"PUBLISH", a->k_status, msg};
    if (!rc) rc = set[1] ? sb_batch_addargv(b, 5, set, NULL) : SB_EINVAL;
    if (!rc) rc = sb_batch_addargv(b, 3, pub, NULL);
    redisReply *replies[2];
    if (!rc && (rc = sb_worker_send(r->w, b, wait ? replies : NULL)) == SB_OK && wait)
        sb_replies_free(replies, 2);
    free(rec);
    free(msg);
    sb_batch_free(b);
    return rc;
}

/* Puts the job back at the consuming end of the queue (shutdown before it could finish). */
static void sb_run_requeue(sb_run_t *r) {
    sb_job_set_status(&r->job, "queued", sb_now_ms());
    char *rec = sb_json_print(r->job.root);
    sb_finish_t f = {.mode = "requeue", .record = rec};
    int rc = sb_worker_finish(r->w, r->id, &f);
    if (rc == 1) {
        sb_info("agent", "job %s put back on the queue (shutdown) user=%s", r->id,
                r->job.public_key);
        sb_stat_add(r->w->agent, &r->w->agent->stats.requeued, 1);
    } else if (rc == SB_ECANCELED) {
        sb_warn("agent", "job %s left in the processing list (redis unreachable): it will be "
                "recovered once this agent's presence expires", r->id);
    }
    free(rec);
}

static void sb_run_done(sb_run_t *r, cJSON *result) {
    sb_agent_t *a = r->w->agent;
    int64_t ms = sb_mono_ms() - r->started_ms;
    sb_job_set_status(&r->job, "done", sb_now_ms());
    sb_json_set(r->job.root, "result", result ? result : cJSON_CreateNull());
    cJSON_DeleteItemFromObjectCaseSensitive(r->job.root, "error");
    char *rec = sb_json_print(r->job.root);
    sb_status_t st = {.job_id = r->id, .status = "done", .user_id = r->job.public_key,
                      .result = cJSON_GetObjectItemCaseSensitive(r->job.root, "result"),
                      .attempts = r->job.attempts};
    char *msg = sb_status_build(&st);
    sb_finish_t f = {.mode = "done", .record = rec, .message = msg, .exec_ms = ms,
                     .user = r->job.public_key, .attempts = r->job.attempts};
    int rc = rec && msg ? sb_worker_finish(r->w, r->id, &f) : SB_ENOMEM;
    if (rc == 1) {
        sb_info("agent", "job %s done in %lld ms (attempt %d) user=%s", r->id, (long long)ms,
                r->job.attempts, r->job.public_key);
        sb_stat_add(a, &a->stats.done, 1);
        sb_stat_duration(a, ms / 1000.0);
    } else if (rc == 0) {
        sb_warn("agent", "job %s finished but was no longer ours (recovered elsewhere)", r->id);
    }
    free(rec);
    free(msg);
}

static void sb_run_error(sb_run_t *r, const char *error, const char *details) {
    sb_agent_t *a = r->w->agent;
    int64_t now = sb_now_ms();
    sb_job_set_status(&r->job, "error", now);
    sb_json_set_str(r->job.root, "error", error);
    if (details) sb_json_set_str(r->job.root, "details", details);
    char *rec = sb_json_print(r->job.root);
    sb_status_t st = {.job_id = r->id, .status = "error", .user_id = r->job.public_key,
                      .error = error, .details = details, .attempts = r->job.attempts};
    char *msg = sb_status_build(&st);
    char *failure = NULL;
    cJSON *fo = cJSON_CreateObject();
    char ts[SB_ISO_LEN];
    if (fo) {
        cJSON_AddStringToObject(fo, "jobId", r->id);
        cJSON_AddStringToObject(fo, "error", error);
        if (details) cJSON_AddStringToObject(fo, "details", details);
        cJSON_AddItemToObject(fo, "payload", cJSON_Duplicate(r->job.payload, 1));
        cJSON_AddNumberToObject(fo, "attempts", r->job.attempts);
        cJSON_AddStringToObject(fo, "failedAt", sb_iso8601(now, ts));
        failure = sb_json_print(fo);
        cJSON_Delete(fo);
    }
    sb_finish_t f = {.mode = "error", .record = rec, .message = msg, .failure = failure,
                     .user = r->job.public_key, .attempts = r->job.attempts, .error = error};
    int rc = rec && msg && failure ? sb_worker_finish(r->w, r->id, &f) : SB_ENOMEM;
    if (rc == 1) {
        sb_warn("agent", "job %s failed after %d attempt(s): %s user=%s", r->id,
                r->job.attempts, error, r->job.public_key);
        sb_stat_add(a, &a->stats.failed, 1);
    }
    free(rec);
    free(msg);
    free(failure);
}

/* A record that cannot be run: dead-letter the id without touching the record. */
static void sb_run_bad_record(sb_worker_t *w, const char *id, const char *why) {
    sb_agent_t *a = w->agent;
    char ts[SB_ISO_LEN], *failure = NULL;
    cJSON *fo = cJSON_CreateObject();
    if (fo) {
        cJSON_AddStringToObject(fo, "jobId", id);
        cJSON_AddStringToObject(fo, "error", why);
        cJSON_AddStringToObject(fo, "failedAt", sb_iso8601(sb_now_ms(), ts));
        failure = sb_json_print(fo);
        cJSON_Delete(fo);
    }
    sb_finish_t f = {.mode = "error", .failure = failure ? failure : "{}", .error = why};
    if (sb_worker_finish(w, id, &f) == 1)
        sb_error("agent", "job %s: %s; moved to %s", id, why, a->k_dead);
    sb_stat_add(a, &a->stats.bad_records, 1);
    free(failure);
}

/* Runs attempts until done, final error, or cancel. */
static void sb_run_attempts(sb_run_t *r) {
    sb_agent_t *a = r->w->agent;
    char details[1200];
    if (r->job.attempts >= a->max_attempts) {
        snprintf(details, sizeof details, "%d attempts already made (agents running it stopped "
                 "before finishing)", r->job.attempts);
        sb_run_error(r, "gave up: the job never finished", details);
        return;
    }
    for (;;) {
        int attempt = r->job.attempts + 1;
        sb_job_set_attempts(&r->job, attempt);
        snprintf(details, sizeof details, "attempt %d of %d by %s", attempt, a->max_attempts, a->id);
        if (sb_run_update(r, "processing", "processing", details, 0) != SB_OK) {
            sb_run_requeue(r);
            return;
        }
        /* the start of an attempt is logged at debug: done / error / retry lines say how it went */
        sb_debug("agent", "job %s processing (attempt %d/%d) user=%s", r->id, attempt,
                a->max_attempts, r->job.public_key);
        sb_handler_out_t out = {0};
        r->started_ms = sb_mono_ms();
        sb_handler_rc_t hrc = a->cb(&r->job, attempt, &a->cancel, &out, a->user);
        if (hrc == SB_HANDLER_OK) {
            sb_run_done(r, out.result);
            return;
        }
        cJSON_Delete(out.result);
        if (hrc == SB_HANDLER_CANCELED) {
            sb_run_requeue(r);
            return;
        }
        const char *err = out.error[0] ? out.error : "handler failed";
        if (hrc == SB_HANDLER_FAIL || attempt >= a->max_attempts) {
            sb_run_error(r, err, out.details[0] ? out.details : NULL);
            return;
        }
        int delay = sb_retry_delay_ms(r->w, attempt);
        snprintf(details, sizeof details, "attempt %d of %d failed: %s; retrying in %d ms",
                 attempt, a->max_attempts, err, delay);
        sb_warn("agent", "job %s: %s user=%s", r->id, details, r->job.public_key);
        sb_stat_add(a, &a->stats.retries, 1);
        sb_json_set_str(r->job.root, "error", err);
        if (sb_run_update(r, "queued", "processing", details, 1) != SB_OK ||
            sb_sleep_ms(delay, &a->cancel) != SB_OK) {
            sb_run_requeue(r);
            return;
        }
    }
}

/* Takes the next job. Under load the take script moves the id and reads the record in one
 * round trip (or the last finish already took it: w->next); when the queue is empty BLMOVE
 * waits (up to SB_TAKE_TIMEOUT_S) and the record is read afterwards. Returns 1 with *t filled,
 * 0 when nothing came, -1 on a Redis error. */
static int sb_worker_take(sb_worker_t *w, sb_taken_t *t) {
    sb_agent_t *a = w->agent;
    const char *argv[] = {a->k_jobs, a->k_proc, a->k_job_prefix};
    sb_prefetch_t pre = w->prefetch;
    w->prefetch = SB_PREFETCH_NONE;
    if (pre == SB_PREFETCH_JOB) {
        *t = w->next;
        memset(&w->next, 0, sizeof w->next);
        return 1;
    }
    redisReply *rep = pre == SB_PREFETCH_EMPTY ? NULL
                                               : sb_redis_eval(w->redis, &a->take, 2, 3, argv, NULL);
    if (pre == SB_PREFETCH_EMPTY || (rep && rep->type == REDIS_REPLY_NIL)) {
        if (rep) freeReplyObject(rep);
        rep = sb_redis_cmd(w->redis, "BLMOVE %s %s RIGHT LEFT %d", a->k_jobs, a->k_proc,
                           SB_TAKE_TIMEOUT_S);
    }
    return rep ? sb_taken_parse(rep, t) : -1;
}

/* A worker that stops with a job taken by its last finish puts it back, untouched. */
static void sb_worker_return_prefetch(sb_worker_t *w) {
    sb_taken_t t = w->next;
    int have = w->prefetch == SB_PREFETCH_JOB;
    memset(&w->next, 0, sizeof w->next);
    w->prefetch = SB_PREFETCH_NONE;
    if (have) {
        sb_finish_t f = {.mode = "requeue"};
        if (sb_worker_finish(w, t.id, &f) == 1)
            sb_info("agent", "job %.64s taken but not started: put back on the queue", t.id);
    }
    sb_taken_free(&t);
}

static void sb_worker_process(sb_worker_t *w, sb_taken_t *t) {
    sb_agent_t *a = w->agent;
    const char *id = t->id;
    char why[256];
    int too_long = strlen(id) >= SB_JOB_ID_LEN; /* no job of ours has such an id */
    int rc;
    if (too_long) rc = SB_ENOTFOUND;
    else if (t->error) {
        snprintf(why, sizeof why, "record unreadable: %s", t->error); /* as sb_record_reply */
        rc = SB_EPROTO;
    } else if (t->have_record) rc = t->record ? SB_OK : SB_ENOTFOUND;
    else rc = sb_worker_get(w, id, &t->record, why, sizeof why);
    if (rc == SB_ENOTFOUND) {
        /* nothing to run and nobody to tell: just forget the id */
        redisReply *rep = sb_redis_cmd(w->redis, "LREM %s 1 %s", a->k_proc, id);
        if (rep) freeReplyObject(rep);
        sb_warn("agent", "job %.64s: %s; id dropped", id,
                too_long ? "id longer than any job id" : "record expired or missing");
        sb_stat_add(a, &a->stats.bad_records, 1);
        return;
    }
    if (rc == SB_EPROTO) {
        sb_run_bad_record(w, id, why); /* the key holds something else: dead-letter the id */
        return;
    }
    if (rc != SB_OK) return; /* canceled while Redis was down: recovery will requeue it */
    sb_run_t r = {.w = w, .id = id};
    if (sb_job_parse(t->record, strlen(t->record), &r.job, why, sizeof why) != SB_OK) {
        sb_run_bad_record(w, id, why);
    } else {
        sb_run_attempts(&r);
        sb_job_close(&r.job);
    }
}

/* ---- worker thread ----------------------------------------------------------------------- */

static void *sb_worker_main(void *arg) {
    sb_worker_t *w = arg;
    sb_agent_t *a = w->agent;
    while (!atomic_load(&a->stop) && !atomic_load(&a->present)) sb_sleep_ms(50, &a->stop);
    while (!atomic_load(&a->stop)) {
        if (sb_redis_ensure(w->redis, &a->stop) != SB_OK) break;
        sb_taken_t t = {0};
        int rc = sb_worker_take(w, &t);
        if (rc == 1) {
            sb_worker_set_job(w, t.id);
            atomic_fetch_add(&a->inflight, 1);
            sb_worker_process(w, &t);
            atomic_fetch_sub(&a->inflight, 1);
            sb_worker_set_job(w, NULL);
            sb_taken_free(&t);
        } else if (rc < 0 && sb_redis_connected(w->redis)) {
            sb_sleep_ms(1000, &a->stop); /* a Redis error reply: do not spin */
        }
    }
    sb_worker_return_prefetch(w);
    pthread_mutex_lock(&a->lock);
    a->active--;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

/* ---- maintenance thread ------------------------------------------------------------------ */

static int sb_agent_heartbeat(sb_agent_t *a) {
    int inflight = atomic_load(&a->inflight);
    char name[SB_TYPE_MAX + 32];
    snprintf(name, sizeof name, "switchboard agent (%s)", a->type);
    sb_presence_t p = {.agent_id = a->id, .name = name, .email = "",
                       .department_id = SB_WORKER_DEPT, .department = SB_WORKER_DEPT,
                       .status = inflight >= a->nworkers ? "busy" : "online",
                       .set_chats = 1, .current_chats = inflight, .max_chats = a->nworkers};
    return sb_presence_heartbeat(a->maint_redis, &a->presence, &p, sb_now_ms(), NULL);
}

/* Marks the records of recovered ids as queued again, if they still say "processing". The
 * write is a compare-and-set against the text read: the job is already back on the queue and
 * a worker may be writing a newer state. */
static void sb_agent_requeue_records(sb_agent_t *a, const redisReply *ids, const char *dead) {
    for (size_t i = 0; i < ids->elements; i++) {
        const char *id = ids->element[i]->str;
        char *json = NULL, why[128], details[256], key[SB_KEY_LEN];
        if (!id || !sb_key(key, sizeof key, SB_KEY_JOB, a->type, id) ||
            sb_job_get(a->maint_redis, a->type, id, &json) != SB_OK)
            continue;
        sb_job_t job;
        if (sb_job_parse(json, strlen(json), &job, why, sizeof why) == SB_OK) {
            if (job.status && !strcmp(job.status, "processing")) {
                snprintf(details, sizeof details, "recovered from agent %s", dead);
                sb_job_set_status(&job, "queued", sb_now_ms());
                sb_json_set_str(job.root, "details", details);
                char *rec = sb_json_print(job.root);
                const char *argv[] = {key, json, rec};
                redisReply *rep = rec ? sb_redis_eval(a->maint_redis, &a->cas, 1, 3, argv, NULL)
                                      : NULL;
                if (rep) freeReplyObject(rep);
                free(rec);
            }
            sb_job_close(&job);
        }
        free(json);
    }
}

static void sb_agent_recover_one(sb_agent_t *a, const char *proc_key, const char *dead) {
    char pkey[256];
    if (!sb_agent_id_valid(dead) || !sb_presence_key(pkey, sizeof pkey, dead)) return;
    const char *argv[] = {proc_key, pkey, a->k_jobs};
    redisReply *rep = sb_redis_eval(a->maint_redis, &a->recover, 3, 3, argv, NULL);
    if (!rep) return;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0) {
        sb_warn("agent", "recovered %zu job(s) of agent %s (presence expired): back on %s",
                rep->elements, dead, a->k_jobs);
        sb_stat_add(a, &a->stats.recovered, rep->elements);
        sb_agent_requeue_records(a, rep, dead);
    } else if (rep->type == REDIS_REPLY_ERROR) {
        sb_error("agent", "recovery script failed: %s", rep->str);
    }
    freeReplyObject(rep);
}

/* SCANs agent:{type}:processing:* and recovers every list whose agent is gone. */
static void sb_agent_recover(sb_agent_t *a) {
    char pattern[SB_KEY_LEN + 1], prefix[SB_KEY_LEN];
    sb_key(prefix, sizeof prefix, SB_KEY_PROCESSING, a->type, "");
    snprintf(pattern, sizeof pattern, "%s*", prefix);
    size_t plen = strlen(prefix);
    char cursor[32] = "0";
    do {
        redisReply *rep = sb_redis_cmd(a->maint_redis, "SCAN %s MATCH %s COUNT 500", cursor,
                                       pattern);
        if (!rep) return;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            freeReplyObject(rep);
            return;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        const redisReply *keys = rep->element[1];
        for (size_t i = 0; i < keys->elements && !atomic_load(&a->maint_stop); i++) {
            const char *key = keys->element[i]->str;
            if (strlen(key) > plen && strcmp(key + plen, a->id) != 0)
                sb_agent_recover_one(a, key, key + plen);
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0 && !atomic_load(&a->maint_stop));
}

/* 1 if a worker holds id right now. */
static int sb_agent_held(sb_agent_t *a, const char *id) {
    int held = 0;
    for (int i = 0; i < a->nworkers && !held; i++) {
        pthread_mutex_lock(&a->workers[i].lock);
        held = strcmp(a->workers[i].job_id, id) == 0;
        pthread_mutex_unlock(&a->workers[i].lock);
    }
    return held;
}

static int sb_agent_suspected(const sb_agent_t *a, const char *id) {
    for (size_t i = 0; i < a->nsuspects; i++)
        if (strcmp(a->suspects[i], id) == 0) return 1;
    return 0;
}

static void sb_agent_suspects_free(sb_agent_t *a) {
    for (size_t i = 0; i < a->nsuspects; i++) free(a->suspects[i]);
    free(a->suspects);
    a->suspects = NULL;
    a->nsuspects = 0;
}

/* A take whose reply was lost (Redis died after running it) leaves an id in our own
 * processing list that no worker holds, and the recovery of dead agents never looks at a live
 * agent's list. So each scan compares our list with what the workers hold: an id orphaned on
 * two consecutive scans (not one whose take reply is just arriving) goes back on the queue
 * through the guarded finish script. */
static void sb_agent_reclaim_own(sb_agent_t *a) {
    redisReply *rep = sb_redis_cmd(a->maint_redis, "LRANGE %s 0 -1", a->k_proc);
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        if (rep) freeReplyObject(rep);
        return;
    }
    char **next = calloc(rep->elements + 1, sizeof *next);
    size_t nnext = 0;
    sb_worker_t tmp = {.agent = a, .redis = a->maint_redis, .quit = &a->maint_stop};
    for (size_t i = 0; next && i < rep->elements; i++) {
        const char *id = rep->element[i]->str;
        if (!id || sb_agent_held(a, id)) continue;
        if (!sb_agent_suspected(a, id)) {
            if ((next[nnext] = strdup(id))) nnext++;
            continue;
        }
        sb_finish_t f = {.mode = "requeue"};
        if (sb_worker_finish(&tmp, id, &f) == 1) {
            sb_warn("agent", "job %.64s was left in our processing list (a reply lost with "
                    "redis); put back on the queue", id);
            sb_stat_add(a, &a->stats.recovered, 1);
        }
    }
    freeReplyObject(rep);
    sb_agent_suspects_free(a);
    a->suspects = next;
    a->nsuspects = nnext;
}

/* 1 once Redis has been up for a presence TTL: before that, presence keys of live agents may
 * have expired while it was down (or been lost with it) and not been written again yet. A
 * server that does not tell its uptime (INFO renamed away) counts as settled. */
static int sb_agent_redis_settled(sb_agent_t *a) {
    redisReply *rep = sb_redis_cmd(a->maint_redis, "INFO server");
    if (!rep) return 0;
    const char *up = rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "uptime_in_seconds:") : NULL;
    int settled = !up || atol(up + strlen("uptime_in_seconds:")) >= a->status_ttl;
    freeReplyObject(rep);
    return settled;
}

/* The maintenance thread's schedule and what it knows of Redis's recent past. */
typedef struct {
    int64_t next_hb, next_scan;
    int64_t grace_until; /* no recovery of other agents' lists before this */
    int lost;            /* redis was out of reach (or stalled) since the last heartbeat landed */
} sb_maint_t;

/* A heartbeat. Returns 0 when it landed. The first one after redis was lost starts the grace:
 * the others' heartbeats may not have landed either, so they get a TTL before their jobs are
 * taken for those of dead agents. */
static int sb_maint_heartbeat(sb_agent_t *a, sb_maint_t *m, int64_t now) {
    int rc = sb_agent_heartbeat(a);
    m->lost |= sb_mono_ms() - now > SB_STALL_MS && atomic_load(&a->present); /* paused */
    if (rc != SB_OK) {
        m->lost = 1;
        return rc;
    }
    if (!atomic_exchange(&a->present, 1))
        sb_info("agent", "agent %s online (type %s, concurrency %d)", a->id, a->type, a->nworkers);
    if (m->lost) {
        m->grace_until = now + (int64_t)a->status_ttl * 1000;
        sb_info("agent", "redis back: jobs of agents whose presence expired are recovered after "
                "%d s, once live agents had time to heartbeat", a->status_ttl);
        m->lost = 0;
    }
    m->next_hb = now + (int64_t)a->heartbeat_s * 1000;
    return SB_OK;
}

/* A scan: other agents' lists (unless redis was lost lately, see sb_maint_heartbeat), then
 * our own. */
static void sb_maint_scan(sb_agent_t *a, sb_maint_t *m, int64_t now) {
    int64_t t0 = sb_mono_ms();
    int settled = !m->lost && now >= m->grace_until && sb_agent_redis_settled(a);
    if (sb_mono_ms() - t0 > SB_STALL_MS) { /* stalled right now: heartbeat, then a TTL */
        m->lost = 1;
        settled = 0;
    }
    if (settled) sb_agent_recover(a);
    sb_agent_reclaim_own(a);
    /* from the scan's end: two scans are never closer than the interval */
    m->next_scan = sb_mono_ms() + (int64_t)a->recovery_s * 1000;
}

static void *sb_maint_main(void *arg) {
    sb_agent_t *a = arg;
    sb_maint_t m = {0};
    while (!atomic_load(&a->maint_stop)) {
        m.lost |= !sb_redis_connected(a->maint_redis) && atomic_load(&a->present);
        if (sb_redis_ensure(a->maint_redis, &a->maint_stop) != SB_OK) break;
        int64_t now = sb_mono_ms();
        if (m.lost) m.next_hb = now; /* our own key may be gone too: write it again at once */
        if (now >= m.next_hb && sb_maint_heartbeat(a, &m, now) != SB_OK) {
            /* connection dropped: ensure() and try again; anything else: not in a hot loop */
            if (sb_redis_connected(a->maint_redis)) {
                sb_error("agent", "presence heartbeat refused by redis");
                sb_sleep_ms(1000, &a->maint_stop);
            }
            continue;
        }
        if (now >= m.next_scan && atomic_load(&a->present)) sb_maint_scan(a, &m, now);
        int64_t wake = m.next_hb < m.next_scan ? m.next_hb : m.next_scan;
        int64_t wait = wake - sb_mono_ms();
        if (wait > 0) sb_sleep_ms((int)(wait > 1000 ? 1000 : wait), &a->maint_stop);
    }
    return NULL;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

void sb_agent_default_id(char *buf, size_t len) {
    char host[64] = "host";
    unsigned char rnd[4] = {0};
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            *p = '-';
    if (!host[0]) snprintf(host, sizeof host, "host");
    else if (host[0] == '-') host[0] = 'h'; /* ids start with a letter or digit */
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) memset(rnd, 0, sizeof rnd);
    snprintf(buf, len, "%s-%ld-%02x%02x%02x%02x", host, (long)getpid(), rnd[0], rnd[1], rnd[2],
             rnd[3]);
}

sb_agent_t *sb_agent_create(const sb_config_t *cfg, sb_handler_cb cb, void *user, char *err,
                            size_t errlen) {
    if (cfg->heartbeat_interval >= cfg->agent_status_ttl) {
        snprintf(err, errlen, "HEARTBEAT_INTERVAL (%d) must be less than AGENT_STATUS_TTL (%d)",
                 cfg->heartbeat_interval, cfg->agent_status_ttl);
        return NULL;
    }
    if (cfg->agent_id && !sb_agent_id_valid(cfg->agent_id)) {
        snprintf(err, errlen, "bad setting AGENT_ID: use 1-128 of [A-Za-z0-9._-], starting "
                 "and ending with a letter or digit");
        return NULL;
    }
    sb_agent_t *a = calloc(1, sizeof *a);
    if (!a) goto nomem;
    if (cfg->agent_id) snprintf(a->id, sizeof a->id, "%s", cfg->agent_id);
    else sb_agent_default_id(a->id, sizeof a->id);
    snprintf(a->type, sizeof a->type, "%s", cfg->job_type);
    sb_key(a->k_jobs, sizeof a->k_jobs, SB_KEY_JOBS, a->type, NULL);
    sb_key(a->k_proc, sizeof a->k_proc, SB_KEY_PROCESSING, a->type, a->id);
    sb_key(a->k_dead, sizeof a->k_dead, SB_KEY_DEAD, a->type, NULL);
    sb_key(a->k_status, sizeof a->k_status, SB_KEY_STATUS, a->type, NULL);
    sb_key(a->k_job_prefix, sizeof a->k_job_prefix, SB_KEY_JOB, a->type, "");
    a->max_attempts = cfg->max_attempts;
    a->backoff_ms = cfg->retry_backoff_ms;
    a->backoff_max_ms = cfg->retry_backoff_max_ms;
    a->status_ttl = cfg->agent_status_ttl;
    a->heartbeat_s = cfg->heartbeat_interval;
    a->recovery_s = cfg->recovery_interval;
    a->cb = cb;
    a->user = user;
    sb_script_init(&a->finish, SB_FINISH_LUA);
    sb_script_init(&a->recover, SB_RECOVER_LUA);
    sb_script_init(&a->cas, SB_RECORD_CAS_LUA);
    sb_script_init(&a->take, SB_TAKE_LUA);
    sb_presence_init(&a->presence, cfg->agent_status_ttl, cfg->concurrency);
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->cond, NULL);
    pthread_mutex_init(&a->stats_lock, NULL);
    a->nworkers = cfg->concurrency;
    a->workers = calloc((size_t)a->nworkers, sizeof *a->workers);
    a->maint_redis = sb_redis_create(&cfg->redis, "agent");
    if (!a->workers || !a->maint_redis) goto nomem;
    sb_redis_set_timeout(a->maint_redis, 10000);
    for (int i = 0; i < a->nworkers; i++) {
        sb_worker_t *w = &a->workers[i];
        w->agent = a;
        w->can_prefetch = 1;
        w->quit = &a->cancel;
        pthread_mutex_init(&w->lock, NULL);
        if (getrandom(&w->seed, sizeof w->seed, 0) != (ssize_t)sizeof w->seed) w->seed = (unsigned)i;
        if (!(w->redis = sb_redis_create(&cfg->redis, "agent"))) goto nomem;
        /* longer than the BLMOVE block so an idle wait is not mistaken for a dead server */
        sb_redis_set_timeout(w->redis, (SB_TAKE_TIMEOUT_S + 10) * 1000);
    }
    return a;
nomem:
    snprintf(err, errlen, "out of memory");
    sb_agent_free(a);
    return NULL;
}

int sb_agent_start(sb_agent_t *a) {
    if (pthread_create(&a->maint, NULL, sb_maint_main, a) != 0) return SB_ERR;
    a->maint_started = 1;
    for (int i = 0; i < a->nworkers; i++) {
        sb_worker_t *w = &a->workers[i];
        pthread_mutex_lock(&a->lock);
        a->active++;
        pthread_mutex_unlock(&a->lock);
        if (pthread_create(&w->thread, NULL, sb_worker_main, w) != 0) {
            pthread_mutex_lock(&a->lock);
            a->active--;
            pthread_mutex_unlock(&a->lock);
            sb_agent_stop(a);
            return SB_ERR;
        }
        w->started = 1;
    }
    return SB_OK;
}

void sb_agent_stop(sb_agent_t *a) { atomic_store(&a->stop, 1); }

/* Waits until no worker is active or deadline (monotonic ms) passes. Returns active count. */
static int sb_agent_wait_workers(sb_agent_t *a, int64_t deadline) {
    pthread_mutex_lock(&a->lock);
    while (a->active > 0) {
        int64_t left = deadline - sb_mono_ms();
        if (left <= 0) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = ts.tv_nsec + (left % 1000) * 1000000;
        ts.tv_sec += left / 1000 + ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&a->cond, &a->lock, &ts);
    }
    int n = a->active;
    pthread_mutex_unlock(&a->lock);
    return n;
}

/* Last resort for workers stuck in a handler that ignores cancel: put their jobs back from
 * this thread (the guarded script makes a late finish by the worker a no-op). */
static void sb_agent_requeue_abandoned(sb_agent_t *a) {
    sb_worker_t tmp = {.agent = a, .redis = a->maint_redis, .quit = &a->cancel};
    for (int i = 0; i < a->nworkers; i++) {
        char id[SB_JOB_ID_LEN];
        pthread_mutex_lock(&a->workers[i].lock);
        snprintf(id, sizeof id, "%s", a->workers[i].job_id);
        pthread_mutex_unlock(&a->workers[i].lock);
        if (!id[0]) continue;
        sb_finish_t f = {.mode = "requeue"};
        if (sb_worker_finish(&tmp, id, &f) == 1)
            sb_warn("agent", "job %s put back on the queue (handler did not stop)", id);
    }
}

static void sb_agent_offline(sb_agent_t *a) {
    char err[128];
    if (!sb_redis_connected(a->maint_redis)) sb_redis_connect(a->maint_redis, err, sizeof err);
    if (sb_presence_offline(a->maint_redis, &a->presence, a->id, sb_now_ms(), NULL) == SB_OK)
        sb_info("agent", "agent %s offline", a->id);
}

void sb_agent_wait(sb_agent_t *a, int grace_s) {
    sb_agent_stop(a);
    int left = sb_agent_wait_workers(a, sb_mono_ms() + (int64_t)grace_s * 1000);
    if (left > 0) {
        sb_warn("agent", "grace period over: cancelling %d running job(s)", left);
        atomic_store(&a->cancel, 1);
        left = sb_agent_wait_workers(a, sb_mono_ms() + SB_CANCEL_WAIT_MS);
    }
    atomic_store(&a->maint_stop, 1);
    if (a->maint_started) pthread_join(a->maint, NULL);
    a->maint_started = 0;
    if (left > 0) {
        char err[128];
        sb_redis_set_timeout(a->maint_redis, 2000);
        if (!sb_redis_connected(a->maint_redis)) sb_redis_connect(a->maint_redis, err, sizeof err);
        sb_agent_requeue_abandoned(a); /* one try: cancel is set, so no reconnect loop */
        a->abandoned = 1;
    }
    for (int i = 0; i < a->nworkers && !a->abandoned; i++)
        if (a->workers[i].started) pthread_join(a->workers[i].thread, NULL);
    sb_agent_offline(a);
}

void sb_agent_free(sb_agent_t *a) {
    if (!a) return;
    if (a->abandoned) return; /* threads may still touch it: the process is about to exit */
    sb_agent_suspects_free(a);
    for (int i = 0; a->workers && i < a->nworkers; i++) {
        sb_redis_free(a->workers[i].redis);
        pthread_mutex_destroy(&a->workers[i].lock);
    }
    free(a->workers);
    sb_redis_free(a->maint_redis);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->cond);
    pthread_mutex_destroy(&a->stats_lock);
    free(a);
}

const char *sb_agent_id(const sb_agent_t *a) { return a->id; }

void sb_agent_stats(sb_agent_t *a, sb_agent_stats_t *out) {
    pthread_mutex_lock(&a->stats_lock);
    *out = a->stats;
    pthread_mutex_unlock(&a->stats_lock);
    out->inflight = atomic_load(&a->inflight);
}

int sb_agent_run(const sb_config_t *cfg, sb_handler_cb cb, void *user) {
    return sb_agent_run_hooks(cfg, cb, user, NULL);
}

int sb_agent_run_hooks(const sb_config_t *cfg, sb_handler_cb cb, void *user,
                       const sb_agent_hooks_t *hooks) {
    char err[256];
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    sb_agent_t *a = sb_agent_create(cfg, cb, user, err, sizeof err);
    if (!a) {
        sb_error("agent", "%s", err);
        return 1;
    }
    if (sb_agent_start(a) != SB_OK) {
        sb_error("agent", "could not start threads");
        sb_agent_wait(a, 0);
        sb_agent_free(a);
        return 1;
    }
    int rc = 0, sig = 0;
    if (hooks && hooks->started && hooks->started(a, hooks->ctx) != 0) {
        rc = 1;
        sb_agent_stop(a);
    } else {
        sigwait(&set, &sig);
        sb_info("agent", "received %s: finishing running jobs (grace %d s)",
                sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg->shutdown_grace);
    }
    sb_agent_wait(a, rc ? 0 : cfg->shutdown_grace);
    if (hooks && hooks->stopped) hooks->stopped(hooks->ctx);
    sb_agent_free(a);
    return rc;
}
