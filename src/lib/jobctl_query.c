/* Job-control queries (include/switchboard/jobctl.h): listing with a state / user filter,
 * counts per state, and one job's detail. Each is one read script that picks the smallest
 * structure holding what is asked (the queue, the dead list, the done / cancelled / user /
 * all-jobs indices, or the processing lists of the agents with a lease), reads the records of
 * one page, and removes ids whose record has expired from the structure it met them in (so no
 * id is left as an empty shell). The C side turns the flat replies into JSON. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jobctl_lua.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/fmt.h"
#include "switchboard/job.h"
#include "switchboard/jobctl.h"
#include "switchboard/json.h"

#define SB_LIST_BUDGET 10 /* a filtered page looks at up to this × limit entries */

/* The ids held by agents with a lease (their processing lists), as the table `held`. */
#define SB_LUA_HELD \
    "local function held_ids(prefix)\n" \
    "  local out = {}\n" \
    "  for _, agent in ipairs(redis.call('ZRANGE', prefix .. 'leases', 0, -1)) do\n" \
    "    for _, id in ipairs(redis.call('LRANGE', prefix .. 'processing:' .. agent, 0, -1)) do\n" \
    "      out[#out + 1] = id\n" \
    "    end\n" \
    "  end\n" \
    "  return out\n" \
    "end\n"

/* KEYS: none but the prefix-derived ones (the source depends on the filter).
 * ARGV: prefix, state ('' any), user ('' any), cursor, limit, budget, now ms, job ttl s.
 * Returns {next ('' at the end), id, state, record, id, state, record, ...}. */
static const char SB_LIST_LUA[] =
    SB_LUA_STATE_OF SB_LUA_FORGET SB_LUA_HELD
    "local prefix, want, user, cursor, limit, budget, now_ms, ttl = unpack(ARGV)\n"
    "cursor, limit, budget = tonumber(cursor), tonumber(limit), tonumber(budget)\n"
    "local kind, src = 'zset', prefix .. 'index'\n"
    "if user ~= '' then src = prefix .. 'user:' .. user\n"
    "elseif want == 'queued' then kind, src = 'list', prefix .. 'jobs'\n"
    "elseif want == 'dead' or want == 'error' then kind, src = 'list', prefix .. 'dead'\n"
    "elseif want == 'done' then src = prefix .. 'done'\n"
    "elseif want == 'cancelled' then src = prefix .. 'cancelled'\n"
    "elseif want == 'processing' or want == 'retrying' then kind = 'held' end\n"
    "if want == 'error' then want = 'dead' end\n"
    "local ids\n"
    "if kind == 'zset' then ids = redis.call('ZREVRANGE', src, cursor, cursor + budget - 1)\n"
    "elseif kind == 'list' then ids = redis.call('LRANGE', src, cursor, cursor + budget - 1)\n"
    "else\n"
    "  local all, page = held_ids(prefix), {}\n"
    "  for i = cursor + 1, math.min(#all, cursor + budget) do page[#page + 1] = all[i] end\n"
    "  ids = page\n"
    "end\n"
    "local out, seen, gone = {''}, 0, 0\n"
    "for _, id in ipairs(ids) do\n"
    "  if (#out - 1) / 3 >= limit then break end\n"
    "  seen = seen + 1\n"
    "  local text = redis.call('GET', prefix .. 'job:' .. id)\n"
    "  if not text then\n"
    "    if kind ~= 'held' then\n" /* an expired id: drop it where it was met */
    "      if kind == 'zset' then redis.call('ZREM', src, id) else redis.call('LREM', src, 0, id) end\n"
    "      if kind == 'list' or src ~= prefix .. 'index' then forget(prefix, id, false) end\n"
    "      gone = gone + 1\n"
    "    end\n"
    "  else\n"
    "    local st = state_of(text)\n"
    "    if kind == 'held' and st == 'queued' then st = 'retrying' end\n"
    "    if want == '' or st == want then\n"
    "      out[#out + 1] = id; out[#out + 1] = st; out[#out + 1] = text\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if seen < #ids or #ids == budget then out[1] = tostring(cursor + seen - gone) end\n"
    "return out\n";

/* ARGV: prefix, now ms, job ttl s. Returns {name, count, ...} then 'paused', 0|1, 'info',
 * the pause record or ''. Expired entries of the done / cancelled indices are dropped first. */
static const char SB_COUNTS_LUA[] =
    SB_LUA_STATE_OF SB_LUA_HELD
    "local prefix, now_ms, ttl = unpack(ARGV)\n"
    "local old = tonumber(now_ms) - tonumber(ttl) * 1000\n"
    "redis.call('ZREMRANGEBYSCORE', prefix .. 'done', '-inf', old)\n"
    "redis.call('ZREMRANGEBYSCORE', prefix .. 'cancelled', '-inf', old)\n"
    "local processing, retrying = 0, 0\n"
    "for _, id in ipairs(held_ids(prefix)) do\n"
    "  local text = redis.call('GET', prefix .. 'job:' .. id)\n"
    "  if text and state_of(text) == 'processing' then processing = processing + 1\n"
    "  elseif text then retrying = retrying + 1 end\n"
    "end\n"
    "return {'queued', redis.call('LLEN', prefix .. 'jobs'), 'processing', processing,\n"
    "  'retrying', retrying, 'done', redis.call('ZCARD', prefix .. 'done'),\n"
    "  'dead', redis.call('LLEN', prefix .. 'dead'),\n"
    "  'cancelled', redis.call('ZCARD', prefix .. 'cancelled'),\n"
    "  'total', redis.call('ZCARD', prefix .. 'index'),\n"
    "  'paused', redis.call('EXISTS', prefix .. 'paused'),\n"
    "  'info', redis.call('GET', prefix .. 'paused') or ''}\n";

/* ARGV: prefix, id. Returns {record or false, state, history entries ([id, [field, value...]]:
 * a stream's ids, then the list's positions 1, 2...), failure or false,
 * holder or false, cancelling 0|1}. */
static const char SB_DETAIL_LUA[] =
    SB_LUA_STATE_OF SB_LUA_HOLDER SB_LUA_CANCELLING
    "local prefix, id = unpack(ARGV)\n"
    "local text = redis.call('GET', prefix .. 'job:' .. id)\n"
    "local agent = holder(prefix, id)\n"
    "local st = text and state_of(text) or 'gone'\n"
    "if agent and st == 'queued' then st = 'retrying' end\n"
    /* history: a stream before 2026-12 (jobs queued by older producers), then the list */
    "local hist = redis.call('XRANGE', prefix .. 'history:' .. id, '-', '+')\n"
    "local l = redis.call('LRANGE', prefix .. 'hist:' .. id, 0, -1)\n"
    "for i = 1, #l - 3, 4 do\n"
    "  hist[#hist + 1] = {tostring((i + 3) / 4), {'status', l[i], 'by', l[i + 1], 'at', l[i + 2],\n"
    "                                            'detail', l[i + 3]}}\n"
    "end\n"
    "return {text, st, hist,\n"
    "  redis.call('GET', 'metrics:' .. prefix .. 'failed:' .. id), agent,\n"
    "  cancelling(prefix, id)}\n";

typedef struct {
    sb_script_t list, counts, detail;
} sb_query_scripts_t;

static sb_query_scripts_t sb_qs; /* immutable after the first init (same bytes every time) */
static pthread_once_t sb_qs_once = PTHREAD_ONCE_INIT;
static void sb_qs_init(void) {
    sb_script_init(&sb_qs.list, SB_LIST_LUA);
    sb_script_init(&sb_qs.counts, SB_COUNTS_LUA);
    sb_script_init(&sb_qs.detail, SB_DETAIL_LUA);
}

/* Runs a query script. Returns 0 with *rep an array (caller frees), or an SB_E* code. */
static int sb_query_eval(sb_redis_t *r, const sb_script_t *s, int argc, const char **argv,
                         redisReply **rep) {
    /* KEYS[1] is the prefix (argv[0], which the scripts read as ARGV[1]): not a key, but it
     * carries the type's hash tag, so on Redis Cluster the script runs where the type's keys
     * are (job.h) */
    const char *av[argc + 1];
    av[0] = argv[0];
    memcpy(av + 1, argv, (size_t)argc * sizeof *argv);
    *rep = sb_redis_eval(r, s, 1, argc + 1, av, NULL);
    if (!*rep) return SB_EREDIS;
    if ((*rep)->type == REDIS_REPLY_ARRAY) return SB_OK;
    freeReplyObject(*rep);
    *rep = NULL;
    return SB_EPROTO;
}

/* A record text as JSON (a string when it is not JSON: records may hold anything). */
static cJSON *sb_query_record(const redisReply *text) {
    if (text->type != REDIS_REPLY_STRING) return cJSON_CreateNull();
    cJSON *j = sb_json_parse(text->str, text->len);
    return j ? j : cJSON_CreateString(text->str);
}

/* One page of the listing on one shard (queue), from cursor, of up to limit jobs appended to
 * jobs. *next gets the shard's next cursor, or -1 at its end. */
static int sb_list_shard(sb_redis_t *r, const sb_jobctl_query_t *q, const char *queue,
                         long cursor, int limit, cJSON *jobs, long *next) {
    char prefix[SB_KEY_LEN], cur[SB_FMT_INT_LEN + 1], lim[SB_FMT_INT_LEN + 1],
        budget[SB_FMT_INT_LEN + 1], now[SB_FMT_INT_LEN + 1], ttl[SB_FMT_INT_LEN + 1];
    sb_key_prefix(prefix, sizeof prefix, queue);
    sb_fmt_llz(cur, cursor);
    sb_fmt_llz(lim, limit);
    sb_fmt_llz(budget, (long long)limit * (q->state ? SB_LIST_BUDGET : 1));
    sb_fmt_llz(now, sb_now_ms());
    sb_fmt_llz(ttl, SB_JOB_TTL);
    const char *argv[] = {prefix, q->state ? q->state : "", q->user ? q->user : "", cur,
                          lim, budget, now, ttl};
    pthread_once(&sb_qs_once, sb_qs_init);
    redisReply *rep;
    int rc = sb_query_eval(r, &sb_qs.list, 8, argv, &rep);
    if (rc != SB_OK) return rc;
    for (size_t i = 1; i + 2 < rep->elements; i += 3) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "jobId", rep->element[i]->str);
        cJSON_AddStringToObject(j, "state", rep->element[i + 1]->str);
        cJSON_AddItemToObject(j, "job", sb_query_record(rep->element[i + 2]));
        cJSON_AddItemToArray(jobs, j);
    }
    const redisReply *n = rep->elements ? rep->element[0] : NULL;
    *next = n && n->type == REDIS_REPLY_STRING && n->len ? strtol(n->str, NULL, 10) : -1;
    freeReplyObject(rep);
    return SB_OK;
}

/* With queue shards the listing goes shard by shard (newest first within each): the cursor is
 * shard << 32 | the shard's own cursor (with one shard, just the shard's cursor). A user's
 * jobs are all in the user's shard. */
#define SB_LIST_SHARD_BITS 32

int sb_jobctl_list(sb_redis_t *r, const sb_jobctl_query_t *q, cJSON **out) {
    *out = NULL;
    int nshards = q->user ? 1 : sb_queue_shards();
    long shard = q->cursor >> SB_LIST_SHARD_BITS, cursor = q->cursor & 0xffffffffL;
    if (!sb_job_type_valid(q->type) || (q->state && !sb_jobctl_state_valid(q->state)) ||
        (q->user && !sb_public_key_valid(q->user)) || q->cursor < 0 || q->limit < 1 ||
        q->limit > SB_JOBCTL_LIST_MAX || shard >= nshards)
        return SB_EINVAL;
    cJSON *o = cJSON_CreateObject(), *jobs = cJSON_AddArrayToObject(o, "jobs");
    int rc = jobs ? SB_OK : SB_ENOMEM;
    long next = -1;
    while (rc == SB_OK && shard < nshards) {
        char queue[SB_QUEUE_LEN];
        int left = q->limit - cJSON_GetArraySize(jobs);
        if (q->user) sb_queue_of_user(queue, q->type, q->user);
        else sb_queue_name(queue, q->type, (int)shard);
        rc = sb_list_shard(r, q, queue, cursor, left, jobs, &next);
        if (rc != SB_OK || next >= 0) break; /* a full page, or the filter's budget spent */
        shard++, cursor = 0;
        if (cJSON_GetArraySize(jobs) >= q->limit) break;
    }
    if (rc == SB_OK && next >= 0)
        cJSON_AddNumberToObject(o, "next", (double)((shard << SB_LIST_SHARD_BITS) | next));
    else if (rc == SB_OK && shard < nshards)
        cJSON_AddNumberToObject(o, "next", (double)(shard << SB_LIST_SHARD_BITS));
    else cJSON_AddNullToObject(o, "next");
    if (rc != SB_OK) cJSON_Delete(o);
    else *out = o;
    return rc;
}

/* Adds one shard's counts script reply into o (counts summed; paused from shard 0). */
static void sb_counts_add(cJSON *o, cJSON *counts, const redisReply *rep, int first) {
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const char *name = rep->element[i]->str;
        const redisReply *v = rep->element[i + 1];
        if (!strcmp(name, "paused")) {
            if (first) cJSON_AddBoolToObject(o, "paused", v->integer > 0);
        } else if (!strcmp(name, "info")) {
            if (first)
                cJSON_AddItemToObject(o, "paused_info",
                                      v->len ? sb_query_record(v) : cJSON_CreateNull());
        } else {
            cJSON *into = !strcmp(name, "total") ? o : counts;
            cJSON *was = cJSON_GetObjectItemCaseSensitive(into, name);
            if (was) cJSON_SetNumberValue(was, was->valuedouble + (double)v->integer);
            else cJSON_AddNumberToObject(into, name, (double)v->integer);
        }
    }
}

int sb_jobctl_counts(sb_redis_t *r, const char *type, cJSON **out) {
    *out = NULL;
    if (!sb_job_type_valid(type)) return SB_EINVAL;
    char prefix[SB_KEY_LEN], now[SB_FMT_INT_LEN + 1], ttl[SB_FMT_INT_LEN + 1], q[SB_QUEUE_LEN];
    sb_fmt_llz(now, sb_now_ms());
    sb_fmt_llz(ttl, SB_JOB_TTL);
    pthread_once(&sb_qs_once, sb_qs_init);
    cJSON *o = cJSON_CreateObject(), *counts = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    int rc = o && counts ? SB_OK : SB_ENOMEM;
    for (int s = 0; rc == SB_OK && s < sb_queue_shards(); s++) { /* summed over the shards */
        const char *argv[] = {sb_key_prefix(prefix, sizeof prefix, sb_queue_name(q, type, s)),
                              now, ttl};
        redisReply *rep;
        rc = sb_query_eval(r, &sb_qs.counts, 3, argv, &rep);
        if (rc == SB_OK) sb_counts_add(o, counts, rep, s == 0);
        if (rc == SB_OK) freeReplyObject(rep);
    }
    if (rc != SB_OK) {
        cJSON_Delete(o);
        cJSON_Delete(counts);
        return rc;
    }
    cJSON_AddItemToObject(o, "counts", counts);
    *out = o;
    return SB_OK;
}

/* One history entry [id, [field, value, ...]] as {"id", field: value...}. */
static cJSON *sb_query_history_entry(const redisReply *e) {
    cJSON *h = cJSON_CreateObject();
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) return h;
    cJSON_AddStringToObject(h, "id", e->element[0]->str);
    const redisReply *f = e->element[1];
    for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2)
        cJSON_AddStringToObject(h, f->element[i]->str, f->element[i + 1]->str);
    return h;
}

int sb_jobctl_detail(sb_redis_t *r, const char *type, const char *id, cJSON **out) {
    *out = NULL;
    if (!sb_job_type_valid(type) || !sb_job_id_valid(id)) return SB_EINVAL;
    char prefix[SB_KEY_LEN], queue[SB_QUEUE_LEN];
    if (!sb_queue_of_job(queue, type, id)) return SB_ENOTFOUND; /* no shard of ours */
    sb_key_prefix(prefix, sizeof prefix, queue);
    const char *argv[] = {prefix, id};
    pthread_once(&sb_qs_once, sb_qs_init);
    redisReply *rep;
    int rc = sb_query_eval(r, &sb_qs.detail, 2, argv, &rep);
    if (rc != SB_OK) return rc;
    if (rep->elements != 6) rc = SB_EPROTO;
    else if (rep->element[0]->type != REDIS_REPLY_STRING && rep->element[2]->elements == 0)
        rc = SB_ENOTFOUND;
    if (rc != SB_OK) {
        freeReplyObject(rep);
        return rc;
    }
    cJSON *o = cJSON_CreateObject(), *hist = cJSON_CreateArray();
    cJSON_AddStringToObject(o, "jobId", id);
    cJSON_AddStringToObject(o, "state", rep->element[1]->str);
    cJSON_AddItemToObject(o, "job", sb_query_record(rep->element[0]));
    for (size_t i = 0; i < rep->element[2]->elements; i++)
        cJSON_AddItemToArray(hist, sb_query_history_entry(rep->element[2]->element[i]));
    cJSON_AddItemToObject(o, "history", hist);
    cJSON_AddItemToObject(o, "failure", sb_query_record(rep->element[3]));
    if (rep->element[4]->type == REDIS_REPLY_STRING)
        cJSON_AddStringToObject(o, "agent", rep->element[4]->str);
    else cJSON_AddNullToObject(o, "agent");
    cJSON_AddBoolToObject(o, "cancelling", rep->element[5]->integer > 0);
    freeReplyObject(rep);
    *out = o;
    return o ? SB_OK : SB_ENOMEM;
}
