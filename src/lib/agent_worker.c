/* The worker thread: takes a job, runs it (agent_job.c), and again until the agent stops.
 * Under load the take is a script (LMOVE + GET, one round trip) or rode along with the last
 * finish (sb__ahead_t); when the queue is empty the worker blocks in BLMOVE for up to
 * SB__TAKE_TIMEOUT_S. It takes nothing before the agent's first heartbeat has landed. */
#include <stdio.h>
#include <string.h>
#include "agent_int.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/log.h"

static void sb_worker_set_job(sb__worker_t *w, const char *id) {
    pthread_mutex_lock(&w->lock);
    snprintf(w->job_id, sizeof w->job_id, "%s", id ? id : "");
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

/* Takes the next job. Under load the take script moves the id and reads the record in one
 * round trip (or the last finish already took it: ahead.next); when the queue is empty BLMOVE
 * waits (up to SB__TAKE_TIMEOUT_S) and the record is read afterwards. Returns 1 with *t
 * filled, 0 when nothing came, 2 when the type is paused, -1 on a Redis error. */
static int sb_worker_take(sb__worker_t *w, sb__taken_t *t) {
    sb_agent_t *a = w->conn.agent;
    const char *argv[SB__TAKE_ARGC] = {[SB__TAKE_K_JOBS] = a->k_jobs,
                                       [SB__TAKE_K_PROC] = a->k_proc,
                                       [SB__TAKE_K_PAUSED] = a->k_paused,
                                       [SB__TAKE_A_PREFIX] = a->k_job_prefix};
    sb__prefetch_t pre = w->ahead.state;
    w->ahead.state = SB__PREFETCH_NONE;
    if (pre == SB__PREFETCH_JOB) {
        *t = w->ahead.next;
        memset(&w->ahead.next, 0, sizeof w->ahead.next);
        return 1;
    }
    redisReply *rep = pre == SB__PREFETCH_EMPTY
                          ? NULL
                          : sb_redis_eval(w->conn.redis, &a->scripts.take, SB__TAKE_NKEYS,
                                          SB__TAKE_ARGC, argv, NULL);
    if (pre == SB__PREFETCH_EMPTY || (rep && rep->type == REDIS_REPLY_NIL)) {
        if (rep) freeReplyObject(rep);
        rep = sb_redis_cmd(w->conn.redis, "BLMOVE %s %s RIGHT LEFT %d", a->k_jobs, a->k_proc,
                           SB__TAKE_TIMEOUT_S);
    }
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
            sb_worker_set_job(w, t.id);
            atomic_fetch_add(&a->inflight, 1);
            sb__job_process(w, &t);
            atomic_fetch_sub(&a->inflight, 1);
            sb_worker_set_job(w, NULL);
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
