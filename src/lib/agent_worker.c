/* The worker thread: takes a job, runs it (agent_job.c), and again until the agent stops.
 * Under load the take is a script (LMOVE + GET, one round trip) or rode along with the last
 * finish (sb__ahead_t); when the queue is empty the worker blocks in BLMOVE for up to
 * SB__TAKE_TIMEOUT_S. It takes nothing before the agent's first heartbeat has landed.
 *
 * Queue shards (QUEUE_SHARDS > 1, job.h): a look runs the take script on each shard, starting
 * one shard further each time (round robin), until one gives a job; a finish takes the next
 * job of its own shard along (one slot per script on a cluster) at most SB__SHARD_BURST times
 * in a row, then the worker looks over all shards again, so a busy shard cannot starve the
 * others. When every shard is empty the worker blocks with BLMOVE on its home shard (worker i:
 * shard i mod N, so with concurrency >= N every shard has a waiting worker and a job is taken
 * at once); with fewer workers than shards it blocks SB__SHARD_POLL_MS on the shards in turn,
 * and a job on a shard without a waiting worker waits up to about that long. */
#include <stdio.h>
#include <string.h>
#include "agent_int.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/log.h"

static void sb_worker_set_job(sb__worker_t *w, const char *id, int shard) {
    pthread_mutex_lock(&w->lock);
    snprintf(w->job_id, sizeof w->job_id, "%s", id ? id : "");
    w->job_shard = shard;
    w->conn.shard = &w->conn.agent->shards[shard];
    atomic_store(&w->cancel, atomic_load(&w->conn.agent->cancel)); /* a new job: not cancelled */
    pthread_mutex_unlock(&w->lock);
}

/* Fills *t from a take-script reply ({id, record|nil}) or a BLMOVE reply (id). Consumes rep.
 * Returns 1 with *t filled, 0 when nothing was taken, 2 when the type is paused, -1 on a Redis
 * error. */
static int sb_taken_parse(redisReply *rep, sb__taken_t *t) {
    int rc = 0;
    if (rep->type == REDIS_REPLY_STATUS) { /* take script: the type is paused */
        rc = 2;
    } else if (rep->type == REDIS_REPLY_STRING) { /* BLMOVE */
        t->id = strndup(rep->str, rep->len);
        rc = t->id ? 1 : -1;
    } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
               rep->element[0]->type == REDIS_REPLY_STRING) { /* take script */
        rc = sb__taken_fill(t, rep->element[0], rep->element[1]);
    } else if (rep->type == REDIS_REPLY_ERROR) {
        sb_error("agent", "taking a job failed: %s", rep->str);
        rc = -1;
    }
    freeReplyObject(rep);
    if (rc < 0) sb__taken_free(t);
    return rc;
}

/* Runs the take script on shard sh (LMOVE + GET, one round trip, nothing when paused).
 * Returns its reply (nil: the shard's queue is empty), or NULL on an I/O error. */
static redisReply *sb_take_script(sb__worker_t *w, const sb__shard_t *sh) {
    sb_agent_t *a = w->conn.agent;
    const char *argv[SB__TAKE_ARGC] = {[SB__TAKE_K_JOBS] = sh->k_jobs,
                                       [SB__TAKE_K_PROC] = sh->k_proc,
                                       [SB__TAKE_K_PAUSED] = sh->k_paused,
                                       [SB__TAKE_A_PREFIX] = sh->k_job_prefix};
    return sb_redis_eval(w->conn.redis, &a->scripts.take, SB__TAKE_NKEYS, SB__TAKE_ARGC, argv,
                         NULL);
}

/* With several shards: the take script on each, from the worker's rotating start, until one
 * gives a job. Returns the reply that ends the look (a job, paused, an error), nil when every
 * shard was empty (*shard: where the first empty one was), or NULL on an I/O error. */
static redisReply *sb_take_any(sb__worker_t *w, int *shard) {
    sb_agent_t *a = w->conn.agent;
    redisReply *rep = NULL;
    int start = w->next_shard;
    w->next_shard = (start + 1) % a->nshards; /* the next look starts one further: fairness */
    for (int k = 0; k < a->nshards; k++) {
        if (rep) freeReplyObject(rep);
        *shard = (start + k) % a->nshards;
        rep = sb_take_script(w, &a->shards[*shard]);
        if (!rep || rep->type != REDIS_REPLY_NIL) return rep;
    }
    return rep;
}

/* Waits for a job with BLMOVE on one shard: the worker's own (workers are spread over the
 * shards) for SB__TAKE_TIMEOUT_S when every shard has a worker of ours; with fewer workers than
 * shards, on the shards in turn for SB__SHARD_POLL_MS each, so that a job on a shard nobody
 * waits on is taken within about that long (after the take scripts of sb_take_any). */
static redisReply *sb_take_wait(sb__worker_t *w, int *shard) {
    sb_agent_t *a = w->conn.agent;
    int covered = a->nworkers >= a->nshards;
    const sb__shard_t *sh = &a->shards[covered ? w->home_shard : w->next_shard];
    *shard = sh->index;
    if (covered)
        return sb_redis_cmd(w->conn.redis, "BLMOVE %s %s RIGHT LEFT %d", sh->k_jobs, sh->k_proc,
                            SB__TAKE_TIMEOUT_S);
    return sb_redis_cmd(w->conn.redis, "BLMOVE %s %s RIGHT LEFT %d.%03d", sh->k_jobs,
                        sh->k_proc, SB__SHARD_POLL_MS / 1000, SB__SHARD_POLL_MS % 1000);
}

/* Takes the next job. Under load the take script moves the id and reads the record in one
 * round trip (or the last finish already took it: ahead.next); when the queue is empty BLMOVE
 * waits (up to SB__TAKE_TIMEOUT_S) and the record is read afterwards. With several shards the
 * take scripts look at each (sb_take_any) and BLMOVE waits on one (sb_take_wait). Returns 1
 * with *t filled (t->shard: where from), 0 when nothing came, 2 when the type is paused, -1 on
 * a Redis error. */
static int sb_worker_take(sb__worker_t *w, sb__taken_t *t) {
    sb_agent_t *a = w->conn.agent;
    sb__prefetch_t pre = w->ahead.state;
    w->ahead.state = SB__PREFETCH_NONE;
    if (pre == SB__PREFETCH_JOB) {
        *t = w->ahead.next;
        memset(&w->ahead.next, 0, sizeof w->ahead.next);
        w->ahead.burst++;
        return 1;
    }
    w->ahead.burst = 0;
    int shard = 0;
    redisReply *rep = NULL;
    if (a->nshards > 1) rep = sb_take_any(w, &shard);
    else if (pre != SB__PREFETCH_EMPTY) rep = sb_take_script(w, &a->shards[0]);
    if ((a->nshards == 1 && pre == SB__PREFETCH_EMPTY) || (rep && rep->type == REDIS_REPLY_NIL)) {
        if (rep) freeReplyObject(rep);
        rep = sb_take_wait(w, &shard);
    }
    t->shard = shard;
    return rep ? sb_taken_parse(rep, t) : -1;
}

/* A worker that stops with a job taken by its last finish puts it back, untouched. */
static void sb_worker_return_ahead(sb__worker_t *w) {
    sb__taken_t t = w->ahead.next;
    int have = w->ahead.state == SB__PREFETCH_JOB;
    memset(&w->ahead.next, 0, sizeof w->ahead.next);
    w->ahead.state = SB__PREFETCH_NONE;
    if (have) {
        sb__finish_t f = {.mode = SB__FINISH_REQUEUE};
        w->conn.shard = &w->conn.agent->shards[t.shard];
        if (sb__conn_finish(&w->conn, t.id, &f) == 1)
            sb_info("agent", "job %.64s taken but not started: put back on the queue", t.id);
    }
    sb__taken_free(&t);
}

void *sb__worker_main(void *arg) {
    sb__worker_t *w = arg;
    sb_agent_t *a = w->conn.agent;
    while (!atomic_load(&a->stop) && !atomic_load(&a->present)) sb_sleep_ms(50, &a->stop);
    while (!atomic_load(&a->stop)) {
        if (sb_redis_ensure(w->conn.redis, &a->stop) != SB_OK) break;
        sb__taken_t t = {0};
        int rc = sb_worker_take(w, &t);
        if (rc == 1) {
            sb_worker_set_job(w, t.id, t.shard);
            atomic_fetch_add(&a->inflight, 1);
            sb__job_process(w, &t);
            atomic_fetch_sub(&a->inflight, 1);
            sb_worker_set_job(w, NULL, t.shard);
            sb__taken_free(&t);
        } else if (rc == 2) {
            sb_sleep_ms(1000, &a->stop); /* paused: look again in a second */
        } else if (rc < 0 && sb_redis_connected(w->conn.redis)) {
            sb_sleep_ms(1000, &a->stop); /* a Redis error reply: do not spin */
        }
    }
    sb_worker_return_ahead(w);
    pthread_mutex_lock(&a->lock);
    a->active--;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    return NULL;
}
