/* The agent runtime's lifecycle: options, create / start / stop / wait / free, and
 * sb_agent_run (signals, hooks). See include/switchboard/agent.h for the design and
 * agent_int.h for the files that do the work. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include "agent_int.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/log.h"

#define SB_CANCEL_WAIT_MS 5000 /* after cancel, how long handlers get to return */

const double sb_agent_buckets[SB_AGENT_NBUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                    0.5,   1,    5,     10,   30,  60};

/* ---- shared helpers (agent_int.h) ------------------------------------------------------- */

int64_t sb__agent_now(const sb_agent_t *a) {
    return a->o.clock ? a->o.clock(a->o.clock_ctx) : sb_mono_ms();
}

void sb__stat_add(sb_agent_t *a, unsigned long long *field, unsigned long long n) {
    pthread_mutex_lock(&a->stats_lock);
    *field += n;
    pthread_mutex_unlock(&a->stats_lock);
}

void sb__stat_duration(sb_agent_t *a, int failed, double secs) {
    pthread_mutex_lock(&a->stats_lock);
    a->stats.duration[failed].count++;
    a->stats.duration[failed].sum += secs;
    for (int i = 0; i < SB_AGENT_NBUCKETS; i++)
        if (secs <= sb_agent_buckets[i]) a->stats.duration[failed].bucket[i]++;
    pthread_mutex_unlock(&a->stats_lock);
}

int sb__agent_held(sb_agent_t *a, const char *id) {
    int held = 0;
    for (int i = 0; i < a->nworkers && !held; i++) {
        pthread_mutex_lock(&a->workers[i].lock);
        held = strcmp(a->workers[i].job_id, id) == 0;
        pthread_mutex_unlock(&a->workers[i].lock);
    }
    return held;
}

const sb__shard_t *sb__agent_shard_of(const sb_agent_t *a, const char *id) {
    int s = sb_job_id_shard(id, a->nshards);
    return &a->shards[s < 0 ? 0 : s];
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

void sb_agent_opts_init(sb_agent_opts_t *o) {
    *o = (sb_agent_opts_t){.type = "rebalance", .concurrency = 1, .max_attempts = 3,
                           .retry_backoff_ms = 1000, .retry_backoff_max_ms = 30000,
                           .status_ttl_s = 300, .heartbeat_s = 180, .recovery_s = 30,
                           .lease_ms = 15000, .shutdown_grace_s = 30,
                           .dead_retention_s = SB_DEAD_RETENTION, .dead_max = SB_DEAD_MAX};
}

/* NULL when o is usable, else the sentence for the user (written into err). */
static const char *sb_agent_opts_check(const sb_agent_opts_t *o, char *err, size_t errlen) {
    if (!o->type || !sb_job_type_valid(o->type))
        snprintf(err, errlen, "bad job type '%s'", o->type ? o->type : "(none)");
    else if (o->agent_id && !sb_agent_id_valid(o->agent_id))
        snprintf(err, errlen, "bad setting AGENT_ID: use 1-128 of [A-Za-z0-9._-], starting "
                 "and ending with a letter or digit");
    else if (o->concurrency < 1 || o->max_attempts < 1 || o->status_ttl_s < 1 ||
             o->heartbeat_s < 1 || o->recovery_s < 1 || o->retry_backoff_ms < 0 ||
             o->retry_backoff_max_ms < 0 || o->shutdown_grace_s < 0 ||
             o->dead_retention_s < 1 || o->dead_max < 1)
        snprintf(err, errlen, "agent options out of range (counts and periods must be >= 1)");
    else if (o->lease_ms < 100 || o->lease_renew_ms < 0 || o->lease_renew_ms >= o->lease_ms)
        snprintf(err, errlen, "the job lease (%d ms) must be at least 100 ms and longer than "
                 "its renewal interval (%d ms)", o->lease_ms, o->lease_renew_ms);
    else if (o->heartbeat_s >= o->status_ttl_s)
        snprintf(err, errlen, "HEARTBEAT_INTERVAL (%d) must be less than AGENT_STATUS_TTL (%d)",
                 o->heartbeat_s, o->status_ttl_s);
    else
        return NULL;
    return err;
}

/* The keys of every queue shard of the type (job.h), with sb_queue_shards() of them. */
static int sb_agent_create_shards(sb_agent_t *a) {
    a->nshards = sb_queue_shards();
    a->shards = calloc((size_t)a->nshards, sizeof *a->shards);
    if (!a->shards) return SB_ENOMEM;
    for (int i = 0; i < a->nshards; i++) {
        sb__shard_t *sh = &a->shards[i];
        const char *q = sb_queue_name(sh->queue, a->type, i);
        sh->index = i;
        sb_key(sh->k_jobs, sizeof sh->k_jobs, SB_KEY_JOBS, q, NULL);
        sb_key(sh->k_proc, sizeof sh->k_proc, SB_KEY_PROCESSING, q, a->id);
        sb_key(sh->k_dead, sizeof sh->k_dead, SB_KEY_DEAD, q, NULL);
        sb_key(sh->k_job_prefix, sizeof sh->k_job_prefix, SB_KEY_JOB, q, "");
        sb_key(sh->k_leases, sizeof sh->k_leases, SB_KEY_LEASES, q, NULL);
        sb_key(sh->k_paused, sizeof sh->k_paused, SB_KEY_PAUSED, q, NULL);
        sb_key(sh->k_done, sizeof sh->k_done, SB_KEY_DONE, q, NULL);
        sb_key(sh->k_cancel, sizeof sh->k_cancel, SB_KEY_CANCEL, q, a->id);
        sb_key_prefix(sh->k_prefix, sizeof sh->k_prefix, q);
    }
    return SB_OK;
}

/* Creates the connections and per-worker state. Returns 0 or SB_ENOMEM. */
static int sb_agent_create_workers(sb_agent_t *a, const sb_redis_addr_t *redis) {
    a->workers = calloc((size_t)a->nworkers, sizeof *a->workers);
    a->maint_redis = sb_redis_create(redis, "agent");
    if (!a->workers || !a->maint_redis) return SB_ENOMEM;
    sb_redis_set_timeout(a->maint_redis, 10000);
    sb_redis_follow(a->maint_redis, &a->master_epoch);
    if (!(a->commit = sb__commit_create(a, redis))) return SB_ENOMEM;
    for (int i = 0; i < a->nworkers; i++) {
        sb__worker_t *w = &a->workers[i];
        w->conn = (sb__conn_t){.agent = a, .quit = &a->cancel, .ahead = &w->ahead,
                               .shard = &a->shards[0], .commit = a->commit};
        /* spread: with concurrency >= shards every shard has a worker waiting on it */
        w->home_shard = w->next_shard = i % a->nshards;
        pthread_mutex_init(&w->lock, NULL);
        if (getrandom(&w->seed, sizeof w->seed, 0) != (ssize_t)sizeof w->seed) w->seed = (unsigned)i;
        if (!(w->conn.redis = sb_redis_create(redis, "agent"))) return SB_ENOMEM;
        /* longer than the BLMOVE block so an idle wait is not mistaken for a dead server */
        sb_redis_set_timeout(w->conn.redis, (SB__TAKE_TIMEOUT_S + 10) * 1000);
        sb_redis_follow(w->conn.redis, &a->master_epoch);
    }
    return SB_OK;
}

/* {"host","job_type","pid","started_at"}: what the presence record adds for a worker. */
static void sb_agent_info(sb_agent_t *a) {
    char host[128] = "", now[SB_ISO_LEN];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "host", host);
    cJSON_AddStringToObject(o, "job_type", a->type);
    cJSON_AddNumberToObject(o, "pid", (double)getpid());
    cJSON_AddStringToObject(o, "started_at", sb_iso8601(sb_now_ms(), now));
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    snprintf(a->info, sizeof a->info, "%s", text && strlen(text) < sizeof a->info ? text : "");
    cJSON_free(text);
    cJSON_Delete(o);
}

sb_agent_t *sb_agent_create(const sb_redis_addr_t *redis, const sb_agent_opts_t *o,
                            sb_handler_cb cb, void *user, char *err, size_t errlen) {
    if (sb_agent_opts_check(o, err, errlen)) return NULL;
    sb_agent_t *a = calloc(1, sizeof *a);
    if (!a) goto nomem;
    if (o->agent_id) snprintf(a->id, sizeof a->id, "%s", o->agent_id);
    else sb_agent_default_id(a->id, sizeof a->id);
    snprintf(a->type, sizeof a->type, "%s", o->type);
    a->o = *o;
    a->o.type = a->type;
    a->o.agent_id = a->id;
    sb_key(a->k_status, sizeof a->k_status, SB_KEY_STATUS, a->type, NULL);
    if (sb_agent_create_shards(a) != SB_OK) goto nomem;
    a->lease_renew_ms = o->lease_renew_ms ? o->lease_renew_ms : o->lease_ms / 3;
    if (a->lease_renew_ms < 1) a->lease_renew_ms = 1;
    a->cb = cb;
    a->user = user;
    sb__scripts_init(&a->scripts);
    sb_presence_init(&a->presence, o->status_ttl_s, o->concurrency);
    sb_agent_info(a);
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->cond, NULL);
    pthread_mutex_init(&a->stats_lock, NULL);
    a->nworkers = o->concurrency;
    if (sb_agent_create_workers(a, redis) != SB_OK) goto nomem;
    return a;
nomem:
    snprintf(err, errlen, "out of memory");
    sb_agent_free(a);
    return NULL;
}

int sb_agent_start(sb_agent_t *a) {
    if (pthread_create(&a->maint, NULL, sb__maint_main, a) != 0) return SB_ERR;
    a->maint_started = 1;
    for (int i = 0; i < a->nworkers; i++) {
        sb__worker_t *w = &a->workers[i];
        pthread_mutex_lock(&a->lock);
        a->active++;
        pthread_mutex_unlock(&a->lock);
        if (pthread_create(&w->thread, NULL, sb__worker_main, w) != 0) {
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
    sb__conn_t conn = {.agent = a, .redis = a->maint_redis, .quit = &a->cancel};
    for (int i = 0; i < a->nworkers; i++) {
        char id[SB_JOB_ID_LEN];
        pthread_mutex_lock(&a->workers[i].lock);
        snprintf(id, sizeof id, "%s", a->workers[i].job_id);
        conn.shard = &a->shards[a->workers[i].job_shard];
        pthread_mutex_unlock(&a->workers[i].lock);
        if (!id[0]) continue;
        sb__finish_t f = {.mode = SB__FINISH_REQUEUE};
        if (sb__conn_finish(&conn, id, &f) == 1)
            sb_warn("agent", "job %s put back on the queue (handler did not stop)", id);
    }
}

static void sb_agent_offline(sb_agent_t *a) {
    char err[128];
    if (!sb_redis_connected(a->maint_redis)) sb_redis_connect(a->maint_redis, err, sizeof err);
    if (sb_presence_offline(a->maint_redis, &a->presence, a->id, sb_now_ms(), NULL) == SB_OK)
        sb_info("agent", "agent %s offline", a->id);
    /* jobs a stuck handler still holds are recovered once the lease lapses */
    if (!a->abandoned) sb__lease_drop(a);
}

void sb_agent_wait(sb_agent_t *a, int grace_s) {
    sb_agent_stop(a);
    int left = sb_agent_wait_workers(a, sb_mono_ms() + (int64_t)grace_s * 1000);
    if (left > 0) {
        sb_warn("agent", "grace period over: cancelling %d running job(s)", left);
        atomic_store(&a->cancel, 1);
        for (int i = 0; i < a->nworkers; i++) atomic_store(&a->workers[i].cancel, 1);
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
    sb__maint_close(a);
    for (int i = 0; a->workers && i < a->nworkers; i++) {
        sb_redis_free(a->workers[i].conn.redis);
        pthread_mutex_destroy(&a->workers[i].lock);
    }
    free(a->workers);
    sb__commit_free(a->commit);
    free(a->shards);
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

int sb_agent_run(const sb_redis_addr_t *redis, const sb_agent_opts_t *o, sb_handler_cb cb,
                 void *user) {
    return sb_agent_run_hooks(redis, o, cb, user, NULL);
}

int sb_agent_run_hooks(const sb_redis_addr_t *redis, const sb_agent_opts_t *o, sb_handler_cb cb,
                       void *user, const sb_agent_hooks_t *hooks) {
    char err[256];
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    sb_agent_t *a = sb_agent_create(redis, o, cb, user, err, sizeof err);
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
                sig == SIGTERM ? "SIGTERM" : "SIGINT", o->shutdown_grace_s);
    }
    sb_agent_wait(a, rc ? 0 : o->shutdown_grace_s);
    if (hooks && hooks->stopped) hooks->stopped(hooks->ctx);
    sb_agent_free(a);
    return rc;
}
