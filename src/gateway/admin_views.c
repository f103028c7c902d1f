/* The operator console's composite reads (see admin_views.h).
 *
 * Each is a handful of plain commands on the caller's blocking connection, run on libuv's
 * thread pool, never on the loop thread. Queues: sb_jobctl_counts per type, then the oldest
 * pending id (the right end of agent:{type}:jobs, where agents take from) and its record's
 * updatedAt (else createdAt): how long the head of the queue has waited. Workers: the presence
 * list, and for each record that names a job_type (switchboard agents do, presence.h "extra")
 * the head of its processing list. Event bus: SCAN for agent:stream:* streams (bounded), then
 * XLEN, XINFO STREAM's last id and XINFO GROUPS for each, and the dead-letter stream's length
 * and newest entries. Nothing here writes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/admin_views.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/job.h"
#include "switchboard/jobctl.h"
#include "switchboard/json.h"

#define SB_AV_STREAM_PREFIX "agent:stream:"
#define SB_AV_DEAD_PREFIX "agent:stream:dead:"

/* A reply that is NULL (connection lost) or an error: the matching SB_E* code, else 0. */
static int sb_av_bad(const redisReply *rep) {
    if (!rep) return SB_EREDIS;
    return rep->type == REDIS_REPLY_ERROR ? SB_EPROTO : 0;
}

/* ---- queues -------------------------------------------------------------------------------- */

/* The oldest pending job of one queue shard: *rec its record (NULL when none waits), *at its
 * updatedAt (or createdAt) inside it. Returns 0 or an SB_E* code. */
static int sb_av_oldest_in(sb_redis_t *r, const char *queue, cJSON **rec, const char **at) {
    char key[SB_KEY_LEN], rkey[SB_KEY_LEN];
    *rec = NULL;
    *at = NULL;
    sb_key(key, sizeof key, SB_KEY_JOBS, queue, NULL);
    redisReply *id = sb_redis_cmd(r, "LINDEX %s -1", key);
    int rc = sb_av_bad(id);
    if (!rc && id->type == REDIS_REPLY_STRING && sb_job_id_valid(id->str) &&
        sb_key(rkey, sizeof rkey, SB_KEY_JOB, queue, id->str)) {
        redisReply *text = sb_redis_cmd(r, "GET %s", rkey);
        rc = sb_av_bad(text);
        if (!rc && text->type == REDIS_REPLY_STRING) *rec = sb_json_parse(text->str, text->len);
        if (text) freeReplyObject(text);
        *at = sb_json_str(*rec, "updatedAt");
        if (!*at) *at = sb_json_str(*rec, "createdAt");
    }
    if (id) freeReplyObject(id);
    return rc;
}

/* Adds oldestPendingAt / oldestPendingAgeMs (null when nothing waits) to counts: the oldest
 * over the type's queue shards. */
static int sb_av_oldest(sb_redis_t *r, const char *type, int64_t now_ms, cJSON *counts) {
    const char *at = NULL;
    cJSON *rec = NULL;
    int64_t ms = 0;
    int rc = 0;
    for (int s = 0; !rc && s < sb_queue_shards(); s++) {
        char queue[SB_QUEUE_LEN];
        const char *at_s;
        cJSON *rec_s;
        int64_t ms_s;
        rc = sb_av_oldest_in(r, sb_queue_name(queue, type, s), &rec_s, &at_s);
        if (!rc && at_s && sb_iso8601_parse(at_s, &ms_s) == 0 && (!at || ms_s < ms)) {
            cJSON_Delete(rec);
            rec = rec_s, at = at_s, ms = ms_s;
        } else {
            cJSON_Delete(rec_s);
        }
    }
    if (at) {
        cJSON_AddStringToObject(counts, "oldestPendingAt", at);
        cJSON_AddNumberToObject(counts, "oldestPendingAgeMs",
                                (double)(now_ms > ms ? now_ms - ms : 0));
    } else {
        cJSON_AddNullToObject(counts, "oldestPendingAt");
        cJSON_AddNullToObject(counts, "oldestPendingAgeMs");
    }
    cJSON_Delete(rec);
    return rc;
}

int sb_admin_counts_all(sb_redis_t *r, const char *types, int64_t now_ms, cJSON **out) {
    cJSON *doc = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(doc, "queues");
    if (!arr) {
        cJSON_Delete(doc);
        return SB_ENOMEM;
    }
    for (const char *p = types ? types : ""; *p;) {
        while (*p == ' ' || *p == ',') p++;
        size_t n = strcspn(p, ", ");
        char type[SB_TYPE_MAX + 1];
        cJSON *one = NULL;
        if (n && n <= SB_TYPE_MAX) {
            memcpy(type, p, n);
            type[n] = '\0';
            int rc = sb_jobctl_counts(r, type, &one);
            if (rc == 0) {
                cJSON_AddItemToArray(arr, one);
                rc = sb_av_oldest(r, type, now_ms, one);
            }
            if (rc != 0) {
                cJSON_Delete(doc);
                return rc;
            }
        }
        p += n;
    }
    *out = doc;
    return 0;
}

/* ---- workers ------------------------------------------------------------------------------- */

/* "jobs": the ids in the worker's processing lists, one per queue shard (its jobs in hand). */
static int sb_av_worker_jobs(sb_redis_t *r, cJSON *agent) {
    const char *type = sb_json_str(agent, "job_type"), *id = sb_json_str(agent, "agent_id");
    char key[SB_KEY_LEN], queue[SB_QUEUE_LEN];
    if (!type || !id || !sb_job_type_valid(type)) return 0;
    cJSON *jobs = cJSON_AddArrayToObject(agent, "jobs");
    int rc = 0;
    for (int s = 0; jobs && !rc && s < sb_queue_shards(); s++) {
        int left = SB_ADMIN_WORKER_JOBS - cJSON_GetArraySize(jobs);
        if (left <= 0 || !sb_key(key, sizeof key, SB_KEY_PROCESSING,
                                 sb_queue_name(queue, type, s), id))
            break;
        redisReply *rep = sb_redis_cmd(r, "LRANGE %s 0 %d", key, left - 1);
        rc = sb_av_bad(rep);
        for (size_t i = 0; !rc && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++)
            if (rep->element[i]->type == REDIS_REPLY_STRING)
                cJSON_AddItemToArray(jobs, cJSON_CreateString(rep->element[i]->str));
        if (rep) freeReplyObject(rep);
    }
    return rc;
}

int sb_admin_workers(sb_redis_t *r, const sb_presence_ctx_t *ctx, cJSON **out) {
    cJSON *agents = NULL;
    int rc = sb_presence_list(r, ctx, NULL, &agents);
    if (rc != SB_OK) return rc;
    cJSON *a;
    cJSON_ArrayForEach(a, agents) {
        if ((rc = sb_av_worker_jobs(r, a)) != 0) {
            cJSON_Delete(agents);
            return rc;
        }
    }
    cJSON *doc = cJSON_CreateObject();
    if (!doc) {
        cJSON_Delete(agents);
        return SB_ENOMEM;
    }
    cJSON_AddNumberToObject(doc, "count", cJSON_GetArraySize(agents));
    cJSON_AddItemToObject(doc, "agents", agents);
    *out = doc;
    return 0;
}

/* ---- event bus ----------------------------------------------------------------------------- */

/* The value of name in a flat [name, value, ...] reply, or NULL. */
static const redisReply *sb_av_field(const redisReply *flat, const char *name) {
    for (size_t i = 0; flat && flat->type == REDIS_REPLY_ARRAY && i + 1 < flat->elements; i += 2)
        if (flat->element[i]->type == REDIS_REPLY_STRING && !strcmp(flat->element[i]->str, name))
            return flat->element[i + 1];
    return NULL;
}

/* A reply value as JSON: integers as numbers, strings as strings, anything else null. */
static cJSON *sb_av_value(const redisReply *v) {
    if (v && v->type == REDIS_REPLY_INTEGER) return cJSON_CreateNumber((double)v->integer);
    if (v && v->type == REDIS_REPLY_STRING) return cJSON_CreateString(v->str);
    return cJSON_CreateNull();
}

static int sb_av_groups(sb_redis_t *r, const char *stream, cJSON *obj) {
    cJSON *arr = cJSON_AddArrayToObject(obj, "groups");
    redisReply *rep = sb_redis_cmd(r, "XINFO GROUPS %s", stream);
    int rc = rep ? 0 : SB_EREDIS; /* an error reply: no groups (or not a stream any more) */
    for (size_t i = 0; !rc && arr && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        const redisReply *g = rep->element[i];
        cJSON *one = cJSON_CreateObject();
        cJSON_AddItemToObject(one, "name", sb_av_value(sb_av_field(g, "name")));
        cJSON_AddItemToObject(one, "consumers", sb_av_value(sb_av_field(g, "consumers")));
        cJSON_AddItemToObject(one, "pending", sb_av_value(sb_av_field(g, "pending")));
        cJSON_AddItemToObject(one, "lastDeliveredId",
                              sb_av_value(sb_av_field(g, "last-delivered-id")));
        cJSON_AddItemToObject(one, "lag", sb_av_value(sb_av_field(g, "lag")));
        cJSON_AddItemToArray(arr, one);
    }
    if (rep) freeReplyObject(rep);
    return rc;
}

/* {"stream","length","recent":[{"id","fields"}...]} of the dead-letter stream of type. */
static int sb_av_dead(sb_redis_t *r, const char *type, cJSON *obj) {
    char key[SB_KEY_LEN];
    snprintf(key, sizeof key, SB_AV_DEAD_PREFIX "%s", type);
    cJSON *dead = cJSON_AddObjectToObject(obj, "dead");
    cJSON_AddStringToObject(dead, "stream", key);
    redisReply *len = sb_redis_cmd(r, "XLEN %s", key);
    redisReply *rep = len ? sb_redis_cmd(r, "XREVRANGE %s + - COUNT %d", key,
                                         SB_ADMIN_DEAD_RECENT) : NULL;
    int rc = rep ? 0 : SB_EREDIS;
    cJSON_AddItemToObject(dead, "length", sb_av_value(len));
    cJSON *recent = cJSON_AddArrayToObject(dead, "recent");
    for (size_t i = 0; !rc && recent && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
        cJSON *one = cJSON_CreateObject(), *fields = cJSON_AddObjectToObject(one, "fields");
        cJSON_AddItemToObject(one, "id", sb_av_value(e->element[0]));
        const redisReply *f = e->element[1];
        for (size_t k = 0; f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2)
            if (f->element[k]->type == REDIS_REPLY_STRING)
                cJSON_AddItemToObject(fields, f->element[k]->str, sb_av_value(f->element[k + 1]));
        cJSON_AddItemToArray(recent, one);
    }
    if (len) freeReplyObject(len);
    if (rep) freeReplyObject(rep);
    return rc;
}

/* One stream's entry of the listing. */
static int sb_av_stream(sb_redis_t *r, const char *name, cJSON *arr) {
    const char *type = name + strlen(SB_AV_STREAM_PREFIX);
    cJSON *one = cJSON_CreateObject();
    cJSON_AddItemToArray(arr, one);
    cJSON_AddStringToObject(one, "name", name);
    cJSON_AddStringToObject(one, "type", type);
    redisReply *info = sb_redis_cmd(r, "XINFO STREAM %s", name);
    int rc = info ? 0 : SB_EREDIS;
    cJSON_AddItemToObject(one, "length", sb_av_value(sb_av_field(info, "length")));
    cJSON_AddItemToObject(one, "lastId", sb_av_value(sb_av_field(info, "last-generated-id")));
    if (info) freeReplyObject(info);
    if (!rc) rc = sb_av_groups(r, name, one);
    if (!rc) rc = sb_av_dead(r, type, one);
    return rc;
}

static int sb_av_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of the agent:stream:* streams (not dead-letter ones), sorted; *n of them. */
static int sb_av_scan(sb_redis_t *r, char ***names, size_t *n) {
    char cursor[32] = "0";
    *names = calloc(SB_ADMIN_STREAMS_MAX, sizeof **names);
    *n = 0;
    if (!*names) return SB_ENOMEM;
    do {
        redisReply *rep = sb_redis_cmd(r, "SCAN %s MATCH " SB_AV_STREAM_PREFIX "* COUNT 500 "
                                          "TYPE stream", cursor);
        int rc = sb_av_bad(rep);
        if (!rc && (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2)) rc = SB_EPROTO;
        if (rc) {
            if (rep) freeReplyObject(rep);
            return rc;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str ? rep->element[0]->str : "0");
        const redisReply *keys = rep->element[1];
        for (size_t i = 0; i < keys->elements && *n < SB_ADMIN_STREAMS_MAX; i++) {
            const char *k = keys->element[i]->str;
            if (k && strncmp(k, SB_AV_DEAD_PREFIX, strlen(SB_AV_DEAD_PREFIX)) != 0)
                (*names)[(*n)++] = strdup(k);
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0 && *n < SB_ADMIN_STREAMS_MAX);
    qsort(*names, *n, sizeof **names, sb_av_cmp);
    return 0;
}

int sb_admin_events(sb_redis_t *r, cJSON **out) {
    char **names = NULL;
    size_t n = 0;
    int rc = sb_av_scan(r, &names, &n);
    cJSON *doc = rc ? NULL : cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "streams");
    if (!rc && !arr) rc = SB_ENOMEM;
    for (size_t i = 0; !rc && i < n; i++)
        if (names[i]) rc = sb_av_stream(r, names[i], arr);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (rc) {
        cJSON_Delete(doc);
        return rc;
    }
    *out = doc;
    return 0;
}
