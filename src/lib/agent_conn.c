/* A connection of the agent (sb__conn_t): commands sent again through reconnects and Redis's
 * refusals (LOADING, BUSY...), and the guarded finish of a job. Workers finish their jobs
 * through the agent's group commit (agent_commit.c; the finish takes their next job in the
 * same call); the maintenance thread and the shutdown path finish jobs one a call through the
 * maintenance connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agent_int.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/log.h"

int sb__conn_send(sb__conn_t *c, const sb_batch_t *b, redisReply **replies) {
    for (;;) {
        if (sb_redis_ensure(c->redis, c->quit) != SB_OK) return SB_ECANCELED;
        if ((replies ? sb_redis_pipeline(c->redis, b, replies)
                     : sb_redis_send_deferred(c->redis, b)) == SB_OK)
            return SB_OK;
    }
}

/* Waits before sending a refused command again (sb_reply_is_transient); logs the first refusal
 * of a call. Returns 0, or SB_ECANCELED when c's quit flag was raised meanwhile. */
static int sb_conn_backoff(sb__conn_t *c, const char *what, const char *id,
                           const redisReply *rep, int *delay) {
    if (*delay == SB__TRANSIENT_FIRST_MS)
        sb_warn("agent", "job %.64s: redis refused the %s for now (%s); retrying", id, what,
                rep->str);
    sb__stat_add(c->agent, &c->agent->stats.refused, 1);
    int rc = sb_sleep_ms(*delay, c->quit);
    *delay = *delay * 2 > SB__TRANSIENT_MAX_MS ? SB__TRANSIENT_MAX_MS : *delay * 2;
    return rc;
}

redisReply *sb__conn_retry(sb__conn_t *c, const char *what, const char *id,
                           sb__attempt_fn attempt, void *ctx) {
    int delay = SB__TRANSIENT_FIRST_MS;
    while (sb_redis_ensure(c->redis, c->quit) == SB_OK) {
        redisReply *rep = attempt(c, ctx);
        if (!rep || !sb_reply_is_transient(rep)) {
            if (rep) return rep;
            continue;
        }
        int wait = sb_conn_backoff(c, what, id, rep, &delay);
        freeReplyObject(rep);
        if (wait != SB_OK) break;
    }
    return NULL;
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

static redisReply *sb_get_attempt(sb__conn_t *c, void *key) {
    return sb_redis_cmd(c->redis, "GET %s", (const char *)key);
}

int sb__conn_get_record(sb__conn_t *c, const char *id, char **json, char *why, size_t whylen) {
    char key[SB_KEY_LEN];
    *json = NULL;
    if (!sb_key(key, sizeof key, SB_KEY_JOB, c->shard->queue, id)) return SB_ENOTFOUND;
    redisReply *rep = sb__conn_retry(c, "read", id, sb_get_attempt, key);
    if (!rep) return SB_ECANCELED;
    int rc = sb_record_reply(rep, json, why, whylen);
    freeReplyObject(rep);
    return rc;
}

void sb__taken_free(sb__taken_t *t) {
    free(t->id);
    free(t->record);
    free(t->error);
    memset(t, 0, sizeof *t);
}

int sb__taken_fill(sb__taken_t *t, const redisReply *id, const redisReply *record) {
    t->id = strndup(id->str, id->len);
    t->have_record = 1;
    char **copy = record->type == REDIS_REPLY_STRING  ? &t->record
                  : record->type == REDIS_REPLY_ERROR ? &t->error
                                                      : NULL;
    if (copy) *copy = strndup(record->str, record->len);
    if (t->id && (!copy || *copy)) return 1;
    sb__taken_free(t);
    return -1;
}

/* The outcome of a finish script call: 1 applied, 0 not ours, -1 an unexpected reply (logged).
 * With a take ({applied} or {applied, id, record|nil}) the job taken becomes c's next. */
static int sb_finish_reply(sb__conn_t *c, const char *id, const redisReply *rep) {
    const redisReply *applied = rep;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 && c->ahead) {
        applied = rep->element[0];
        /* {applied, 'paused'}: the type is paused, the next take asks the take script */
        c->ahead->state = rep->elements == 2 ? SB__PREFETCH_NONE : SB__PREFETCH_EMPTY;
        if (rep->elements == 3 && rep->element[1]->type == REDIS_REPLY_STRING &&
            sb__taken_fill(&c->ahead->next, rep->element[1], rep->element[2]) == 1) {
            c->ahead->state = SB__PREFETCH_JOB;
            c->ahead->next.shard = c->shard->index; /* the take ran on the finished job's shard */
        }
        /* a take whose id could not be copied stays in our processing list: reclaimed */
    }
    if (applied->type == REDIS_REPLY_INTEGER) return (int)applied->integer;
    sb_error("agent", "job %s: finish script failed: %s", id,
             rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    return -1;
}

/* A worker that goes on taking jobs has its finish take its next one (sb_finish_reply keeps
 * it): one script call and one round trip per job under load, or a share of a group call. */
static void sb_finish_take(sb__conn_t *c, sb__finish_args_t *args) {
    sb_agent_t *a = c->agent;
    /* with shards, after SB__SHARD_BURST jobs in a row from one the worker looks at the others */
    int take = c->ahead && c->ahead->state == SB__PREFETCH_NONE && !atomic_load(&a->stop) &&
               (a->nshards == 1 || c->ahead->burst < SB__SHARD_BURST);
    args->argv[SB__FIN_NKEYS + SB__FIN_A_TAKE_PREFIX] = take ? c->shard->k_job_prefix : "";
}

/* Calls the finish script. Returns the reply, or NULL on an I/O error (a take may then have
 * run with its reply lost: the maintenance thread puts such an id back). */
static redisReply *sb_finish_attempt(sb__conn_t *c, void *ctx) {
    sb__finish_args_t *args = ctx;
    sb_finish_take(c, args);
    return sb_redis_eval(c->redis, &c->agent->scripts.finish, SB__FIN_NKEYS, SB__FIN_ARGC,
                         args->argv, NULL);
}

int sb__conn_finish(sb__conn_t *c, const char *id, const sb__finish_t *f) {
    sb__finish_args_t args;
    sb__finish_args_init(&args, c->agent, c->shard, id, f);
    int rc = SB_ECANCELED;
    redisReply *rep = NULL;
    if (c->commit) { /* a worker's: with others' in one group call */
        sb_finish_take(c, &args);
        rep = sb__commit_call(c->commit, c->shard, SB__CALL_FINISH, args.argv, 1, &rc);
        if (!rep && rc != SB_ECANCELED) rc = 0; /* the group failed (logged): not applied */
    } else {
        rep = sb__conn_retry(c, "finish", id, sb_finish_attempt, &args);
    }
    if (rep) {
        rc = sb_finish_reply(c, id, rep) == 1; /* an unexpected reply (logged) counts as 0 */
        freeReplyObject(rep);
        if (rc == 1 && args.audit_apart) /* cluster: the audit entry goes apart */
            sb_events_audit_apart(c->redis, args.ev.event_type, &args.ev);
    }
    sb__finish_args_close(&args);
    return rc;
}
