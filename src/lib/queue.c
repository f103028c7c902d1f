/* Job enqueue (atomic, SPEC §2, through the submission script of submit.c) and the general
 * queue library with its polling worker. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/json.h"
#include "switchboard/log.h"
#include "switchboard/queue.h"
#include "switchboard/submit.h"

/* ---- the job queue ----------------------------------------------------------------------- */

int sb_job_enqueue(sb_redis_t *r, const char *type, const sb_user_t *user, const cJSON *payload,
                   char id_out[SB_JOB_ID_LEN], char *err, size_t errlen) {
    if (!sb_job_type_valid(type)) {
        snprintf(err, errlen, "bad job type '%s'", type ? type : "");
        return SB_EINVAL;
    }
    if (!sb_public_key_valid(user->public_key)) {
        snprintf(err, errlen, "bad user publicKey");
        return SB_EINVAL;
    }
    if (sb_job_id_new_for(id_out, NULL, user->public_key) != SB_OK) {
        snprintf(err, errlen, "no random source for the job id");
        return SB_ERR;
    }
    int64_t now = sb_now_ms();
    char *json = sb_job_record_text(type, id_out, user, payload, now);
    if (!json) {
        snprintf(err, errlen, "%s", sb_strerror(SB_ENOMEM));
        return SB_ENOMEM;
    }
    sb_script_t script;
    sb_submit_script_init(&script);
    sb_submit_t q = {.type = type, .job_id = id_out, .public_key = user->public_key,
                     .record_json = json, .now_ms = now};
    sb_rate_result_t res;
    int rc = sb_submit_run(r, &script, &q, &res);
    free(json);
    if (rc == SB_EREDIS)
        snprintf(err, errlen, "redis unavailable: the job may not have been queued");
    else if (rc == SB_EPROTO)
        snprintf(err, errlen, "redis refused the enqueue script: the job was not queued");
    else if (rc != SB_OK)
        snprintf(err, errlen, "%s", sb_strerror(rc));
    return rc;
}

int sb_job_get(sb_redis_t *r, const char *type, const char *job_id, char **json_out) {
    char key[SB_KEY_LEN], queue[SB_QUEUE_LEN];
    *json_out = NULL;
    /* an id names its shard (job.h); anything else is looked up as given */
    const char *q = sb_job_id_valid(job_id) ? sb_queue_of_job(queue, type, job_id) : type;
    if (!q) return SB_ENOTFOUND; /* an id of no shard of this deployment */
    if (!sb_key(key, sizeof key, SB_KEY_JOB, q, job_id)) return SB_EINVAL;
    redisReply *rep = sb_redis_cmd(r, "GET %s", key);
    if (!rep) return SB_EREDIS;
    int rc = SB_OK;
    if (rep->type == REDIS_REPLY_NIL) rc = SB_ENOTFOUND;
    else if (rep->type != REDIS_REPLY_STRING) rc = SB_EPROTO;
    else if (!(*json_out = strndup(rep->str, rep->len))) rc = SB_ENOMEM;
    freeReplyObject(rep);
    return rc;
}

/* ---- the general queue ------------------------------------------------------------------- */

int sb_queue_enqueue(sb_redis_t *r, const char *list, const cJSON *payload,
                     char id_out[SB_JOB_ID_LEN]) {
    char ts[SB_ISO_LEN];
    if (sb_job_id_new(id_out, NULL) != SB_OK) return SB_ERR;
    cJSON *item = cJSON_CreateObject();
    cJSON *pl = payload ? cJSON_Duplicate(payload, 1) : cJSON_CreateNull();
    if (!item || !pl || !cJSON_AddStringToObject(item, "id", id_out) ||
        !cJSON_AddStringToObject(item, "enqueuedAt", sb_iso8601(sb_now_ms(), ts))) {
        cJSON_Delete(item);
        cJSON_Delete(pl);
        return SB_ENOMEM;
    }
    cJSON_AddItemToObject(item, "payload", pl);
    char *json = sb_json_print(item);
    cJSON_Delete(item);
    if (!json) return SB_ENOMEM;
    redisReply *rep = sb_redis_cmd(r, "LPUSH %s %s", list, json);
    free(json);
    int rc = !rep ? SB_EREDIS : rep->type == REDIS_REPLY_INTEGER ? SB_OK : SB_EPROTO;
    if (rep) freeReplyObject(rep);
    return rc;
}

/* Parses a popped item; a non-JSON item is logged and reported as SB_EPROTO. */
static int sb_queue_item(const char *list, const char *buf, size_t len, cJSON **item_out) {
    *item_out = sb_json_parse(buf, len);
    if (*item_out) return SB_OK;
    sb_warn("queue", "dropped an item of %s that is not JSON (%zu bytes)", list, len);
    return SB_EPROTO;
}

int sb_queue_dequeue(sb_redis_t *r, const char *list, int timeout_s, cJSON **item_out) {
    *item_out = NULL;
    redisReply *rep = sb_redis_cmd(r, "BRPOP %s %d", list, timeout_s);
    if (!rep) return SB_EREDIS;
    int rc;
    if (rep->type == REDIS_REPLY_NIL) rc = SB_ETIMEOUT;
    else if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) rc = SB_EPROTO;
    else rc = sb_queue_item(list, rep->element[1]->str, rep->element[1]->len, item_out);
    freeReplyObject(rep);
    return rc;
}

int sb_poll_delay_ms(const sb_poll_opts_t *o, int empty_polls) {
    if (empty_polls <= 0) return 0;
    double d = o->interval_ms;
    for (int i = 1; i < empty_polls && d < o->max_interval_ms; i++) d *= o->backoff;
    return d > o->max_interval_ms ? o->max_interval_ms : (int)d;
}

static void sb_poll_defaults(sb_poll_opts_t *o, const sb_poll_opts_t *in) {
    o->interval_ms = in && in->interval_ms > 0 ? in->interval_ms : 500;
    o->max_interval_ms = in && in->max_interval_ms > 0 ? in->max_interval_ms : 5000;
    o->backoff = in && in->backoff >= 1.0 ? in->backoff : 1.5;
}

/* One poll: RPOP, run the handler, requeue if asked. Returns 1 if an item was taken. */
static int sb_poll_once(sb_redis_t *r, const char *list, sb_queue_handler_cb cb, void *ctx) {
    redisReply *rep = sb_redis_cmd(r, "RPOP %s", list);
    if (!rep || rep->type != REDIS_REPLY_STRING) {
        if (rep) freeReplyObject(rep);
        return 0;
    }
    cJSON *item;
    if (sb_queue_item(list, rep->str, rep->len, &item) == SB_OK) {
        if (cb(item, ctx) == SB_QUEUE_REQUEUE) {
            redisReply *back = sb_redis_cmd(r, "LPUSH %s %b", list, rep->str, rep->len);
            if (!back) sb_error("queue", "lost an item of %s: redis went away on requeue", list);
            else freeReplyObject(back);
        }
        cJSON_Delete(item);
    }
    freeReplyObject(rep);
    return 1;
}

int sb_queue_poll_run(sb_redis_t *r, const char *list, const sb_poll_opts_t *opts,
                      sb_queue_handler_cb cb, void *ctx, const atomic_int *stop) {
    sb_poll_opts_t o;
    sb_poll_defaults(&o, opts);
    int empty = 0;
    while (!atomic_load(stop)) {
        if (sb_redis_ensure(r, stop) != SB_OK) break;
        if (sb_poll_once(r, list, cb, ctx)) empty = 0;
        else sb_sleep_ms(sb_poll_delay_ms(&o, ++empty), stop);
    }
    return SB_OK;
}

struct sb_poller {
    pthread_t thread;
    sb_redis_t *redis;
    char *list;
    sb_poll_opts_t opts;
    sb_queue_handler_cb cb;
    void *ctx;
    atomic_int stop;
};

static void *sb_poller_main(void *arg) {
    sb_poller_t *p = arg;
    sb_queue_poll_run(p->redis, p->list, &p->opts, p->cb, p->ctx, &p->stop);
    return NULL;
}

sb_poller_t *sb_poller_start(const sb_redis_addr_t *addr, const char *list,
                             const sb_poll_opts_t *opts, sb_queue_handler_cb cb, void *ctx) {
    sb_poller_t *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->redis = sb_redis_create(addr, "queue");
    p->list = strdup(list);
    sb_poll_defaults(&p->opts, opts);
    p->cb = cb;
    p->ctx = ctx;
    atomic_init(&p->stop, 0);
    if (!p->redis || !p->list || pthread_create(&p->thread, NULL, sb_poller_main, p) != 0) {
        sb_redis_free(p->redis);
        free(p->list);
        free(p);
        return NULL;
    }
    return p;
}

void sb_poller_stop(sb_poller_t *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    sb_redis_free(p->redis);
    free(p->list);
    free(p);
}
