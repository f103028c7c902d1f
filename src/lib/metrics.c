/* Job metrics in Redis (SPEC §4): daily counters, failure records, execution times, summary.
 *
 * Writers append to a caller's batch so metrics ride in the same round trip as the work.
 * Execution times are bounded by a tiny script that evicts a random member once the set is
 * over SB_METRICS_EXEC_MAX (random eviction keeps the sample unbiased, unlike dropping the
 * lowest or highest scores). The summary reads counters with one MGET and computes count, sum
 * and p95 of the execution times inside Redis. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sb_lua.h" /* the scripts of scripts/lua/, embedded by the build */
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/json.h"
#include "switchboard/job.h"
#include "switchboard/metrics.h"

static const char SB_EXEC_ADD_LUA[] =
    "redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "if redis.call('ZCARD', KEYS[1]) > tonumber(ARGV[3]) then\n"
    "  redis.call('ZREM', KEYS[1], redis.call('ZRANDMEMBER', KEYS[1]))\n"
    "end\n"
    "return 1\n";

#define SB_EXEC_STATS_FIXED 5 /* count, sum, p95, p50, max before the histogram */

static const long sb_hist_bounds[SB_METRICS_HIST_BUCKETS - 1] = {
    10, 50, 100, 250, 500, 1000, 5000, 10000, 30000, 60000};

long sb_metrics_hist_bound(int i) {
    return i >= 0 && i < SB_METRICS_HIST_BUCKETS - 1 ? sb_hist_bounds[i] : 0;
}

char *sb_metrics_key(char *buf, size_t len, const char *type, const char *what,
                            const char *arg) {
    char prefix[SB_KEY_LEN]; /* metrics:agent:{type}: beside the type's keys (job.h) */
    sb_key_prefix(prefix, sizeof prefix, type);
    int n = arg ? snprintf(buf, len, "metrics:%s%s:%s", prefix, what, arg)
                : snprintf(buf, len, "metrics:%s%s", prefix, what);
    return n > 0 && (size_t)n < len ? buf : NULL;
}

static char *sb_counter_key(char *buf, size_t len, const char *type, const char *date,
                            const char *name) {
    char prefix[SB_KEY_LEN];
    sb_key_prefix(prefix, sizeof prefix, type);
    int n = snprintf(buf, len, "metrics:%scounters:%s:%s", prefix, date, name);
    return n > 0 && (size_t)n < len ? buf : NULL;
}

char *sb_metrics_counter_key(char *buf, size_t len, const char *type, const char *name,
                             int64_t now_ms) {
    char date[11];
    return sb_counter_key(buf, len, type, sb_utc_date(now_ms, date), name);
}

int sb_metrics_exec_time(sb_batch_t *b, const char *type, const char *job_id, int64_t ms) {
    char key[256];
    if (!sb_metrics_key(key, sizeof key, type, "execution_times", NULL)) return SB_EINVAL;
    return sb_batch_add(b, "EVAL %s 1 %s %lld %s %d %d", SB_EXEC_ADD_LUA, key, (long long)ms,
                        job_id, SB_METRICS_EXEC_MAX, SB_METRICS_TTL);
}

int sb_metrics_failure(sb_batch_t *b, const char *type, const char *job_id, const char *error,
                       const char *details, const cJSON *payload, int attempts, int64_t now_ms) {
    char key[256], ts[SB_ISO_LEN];
    if (!sb_metrics_key(key, sizeof key, type, "failed", job_id)) return SB_EINVAL;
    cJSON *o = cJSON_CreateObject();
    cJSON *pl = payload ? cJSON_Duplicate(payload, 1) : cJSON_CreateNull();
    int ok = o && pl && cJSON_AddStringToObject(o, "jobId", job_id) &&
             cJSON_AddStringToObject(o, "error", error ? error : "") &&
             (!details || cJSON_AddStringToObject(o, "details", details)) &&
             cJSON_AddNumberToObject(o, "attempts", attempts) &&
             cJSON_AddStringToObject(o, "failedAt", sb_iso8601(now_ms, ts));
    if (ok) {
        cJSON_AddItemToObject(o, "payload", pl);
        pl = NULL;
    }
    char *json = ok ? sb_json_print(o) : NULL;
    cJSON_Delete(o);
    cJSON_Delete(pl);
    if (!json) return SB_ENOMEM;
    int rc = sb_batch_add(b, "SET %s %s EX %d", key, json, SB_METRICS_TTL);
    free(json);
    return rc;
}

/* ---- summary ------------------------------------------------------------------------------ */

static const char *const sb_summary_counters[] = {"jobs", "failed", "done", "rate_hits",
                                                  "rate_blocked"};
#define SB_NCOUNTERS 5

static long long sb_reply_ll(const redisReply *r) {
    if (!r) return 0;
    if (r->type == REDIS_REPLY_INTEGER) return r->integer;
    if (r->type == REDIS_REPLY_STRING) return strtoll(r->str, NULL, 10);
    return 0;
}

static double sb_reply_double(const redisReply *r) {
    return r && r->type == REDIS_REPLY_STRING ? strtod(r->str, NULL) : 0;
}

/* The summary commands of one queue shard: days MGETs of counters, the execution stats. */
static int sb_summary_batch_shard(sb_batch_t *b, const char *type, int days, int64_t now_ms) {
    int rc = SB_OK;
    for (int d = 0; d < days && rc == SB_OK; d++) {
        char date[11];
        sb_utc_date(now_ms - (int64_t)d * 86400000, date);
        const char *argv[1 + SB_NCOUNTERS];
        char keys[SB_NCOUNTERS][256];
        argv[0] = "MGET";
        for (int c = 0; c < SB_NCOUNTERS; c++) {
            if (!sb_counter_key(keys[c], sizeof keys[c], type, date, sb_summary_counters[c]))
                return SB_EINVAL;
            argv[1 + c] = keys[c];
        }
        rc = sb_batch_addargv(b, 1 + SB_NCOUNTERS, argv, NULL);
    }
    char ekey[256], bounds[SB_METRICS_HIST_BUCKETS - 1][24];
    const char *argv[4 + SB_METRICS_HIST_BUCKETS] = {"EVAL", sb_lua_exec_stats, "1", ekey};
    if (rc == SB_OK && !sb_metrics_key(ekey, sizeof ekey, type, "execution_times", NULL))
        rc = SB_EINVAL;
    for (int i = 0; i < SB_METRICS_HIST_BUCKETS - 1; i++) {
        snprintf(bounds[i], sizeof bounds[i], "%ld", sb_hist_bounds[i]);
        argv[4 + i] = bounds[i];
    }
    if (rc == SB_OK) rc = sb_batch_addargv(b, 3 + SB_METRICS_HIST_BUCKETS, argv, NULL);
    return rc;
}

int sb_metrics_summary_count(int days) { return (days + 1) * sb_queue_shards(); }

int sb_metrics_summary_batch(sb_batch_t *b, const char *type, int days, int64_t now_ms) {
    char queue[SB_QUEUE_LEN];
    int rc = days < 1 || days > SB_METRICS_MAX_DAYS ? SB_EINVAL : SB_OK;
    for (int s = 0; rc == SB_OK && s < sb_queue_shards(); s++)
        rc = sb_queue_name(queue, type, s) ? sb_summary_batch_shard(b, queue, days, now_ms)
                                           : SB_EINVAL;
    return rc;
}

/* Day d of the summary (0 = today) into out->daily, oldest first. */
static void sb_summary_day(sb_metrics_summary_t *out, int d, const redisReply *m,
                           int64_t now_ms) {
    sb_metrics_day_t *day = &out->daily[out->days - 1 - d];
    sb_utc_date(now_ms - (int64_t)d * 86400000, day->date);
    if (!m || m->type != REDIS_REPLY_ARRAY || m->elements != SB_NCOUNTERS) return;
    long long v[SB_NCOUNTERS];
    for (int c = 0; c < SB_NCOUNTERS; c++) v[c] = sb_reply_ll(m->element[c]);
    day->jobs += v[0], day->failed += v[1], day->done += v[2]; /* summed over the shards */
    out->total_jobs += v[0], out->failed_jobs += v[1], out->done_jobs += v[2];
    out->rate_hits += v[3], out->rate_blocked += v[4];
}

/* Parses one shard's days + 1 replies, adding them into out (out->days set). */
static int sb_summary_parse_shard(redisReply *const *replies, int days, int64_t now_ms,
                                  sb_metrics_summary_t *out) {
    for (int d = 0; d < days; d++) sb_summary_day(out, d, replies[d], now_ms);
    const redisReply *st = replies[days];
    if (!st || st->type != REDIS_REPLY_ARRAY ||
        st->elements != SB_EXEC_STATS_FIXED + SB_METRICS_HIST_BUCKETS)
        return SB_EPROTO;
    long long n = sb_reply_ll(st->element[0]), was = out->exec_count;
    double max = sb_reply_double(st->element[4]);
    out->exec_count += n;
    out->avg_exec_ms += sb_reply_double(st->element[1]); /* the sum, for now */
    if (out->exec_count > 0) { /* the percentiles weighted by sample size */
        out->p95_exec_ms = (out->p95_exec_ms * (double)was +
                            sb_reply_double(st->element[2]) * (double)n) / (double)out->exec_count;
        out->p50_exec_ms = (out->p50_exec_ms * (double)was +
                            sb_reply_double(st->element[3]) * (double)n) / (double)out->exec_count;
    }
    if (max > out->max_exec_ms) out->max_exec_ms = max;
    for (int i = 0; i < SB_METRICS_HIST_BUCKETS; i++)
        out->hist[i] += sb_reply_ll(st->element[SB_EXEC_STATS_FIXED + i]);
    return SB_OK;
}

int sb_metrics_summary_parse(redisReply *const *replies, int days, int64_t now_ms,
                             sb_metrics_summary_t *out) {
    memset(out, 0, sizeof *out);
    if (days < 1 || days > SB_METRICS_MAX_DAYS) return SB_EPROTO;
    out->days = days;
    int rc = SB_OK;
    for (int s = 0; rc == SB_OK && s < sb_queue_shards(); s++)
        rc = sb_summary_parse_shard(replies + (size_t)s * (size_t)(days + 1), days, now_ms, out);
    out->avg_exec_ms = out->exec_count > 0 ? out->avg_exec_ms / (double)out->exec_count : 0;
    return rc;
}

int sb_metrics_summary(sb_redis_t *r, const char *type, int days, int64_t now_ms,
                       sb_metrics_summary_t *out) {
    memset(out, 0, sizeof *out);
    if (days < 1 || days > SB_METRICS_MAX_DAYS) return SB_EINVAL;
    sb_batch_t *b = sb_batch_create();
    if (!b) return SB_ENOMEM;
    int rc = sb_metrics_summary_batch(b, type, days, now_ms);
    redisReply **replies = calloc((size_t)sb_metrics_summary_count(days), sizeof *replies);
    if (!replies) rc = SB_ENOMEM;
    if (rc == SB_OK) rc = sb_redis_pipeline(r, b, replies);
    if (rc == SB_OK) {
        rc = sb_metrics_summary_parse(replies, days, now_ms, out);
        sb_replies_free(replies, sb_batch_count(b));
    }
    free(replies);
    sb_batch_free(b);
    return rc;
}

static cJSON *sb_summary_daily_json(const sb_metrics_summary_t *s) {
    cJSON *a = cJSON_CreateArray();
    for (int d = 0; a && d < s->days; d++) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(a, o)) {
            cJSON_Delete(o);
            cJSON_Delete(a);
            return NULL;
        }
        cJSON_AddStringToObject(o, "date", s->daily[d].date);
        cJSON_AddNumberToObject(o, "jobs", (double)s->daily[d].jobs);
        cJSON_AddNumberToObject(o, "done", (double)s->daily[d].done);
        cJSON_AddNumberToObject(o, "failed", (double)s->daily[d].failed);
    }
    return a;
}

static cJSON *sb_summary_exec_json(const sb_metrics_summary_t *s) {
    cJSON *o = cJSON_CreateObject(), *h = cJSON_CreateArray();
    if (!o || !h || !cJSON_AddItemToObject(o, "histogram", h)) {
        cJSON_Delete(o);
        cJSON_Delete(h);
        return NULL;
    }
    cJSON_AddNumberToObject(o, "count", (double)s->exec_count);
    cJSON_AddNumberToObject(o, "avg", round(s->avg_exec_ms * 100) / 100);
    cJSON_AddNumberToObject(o, "p50", s->p50_exec_ms);
    cJSON_AddNumberToObject(o, "p95", s->p95_exec_ms);
    cJSON_AddNumberToObject(o, "max", s->max_exec_ms);
    for (int i = 0; i < SB_METRICS_HIST_BUCKETS; i++) {
        cJSON *b = cJSON_CreateObject();
        if (!b || !cJSON_AddItemToArray(h, b)) {
            cJSON_Delete(b);
            cJSON_Delete(o);
            return NULL;
        }
        long le = sb_metrics_hist_bound(i);
        if (le) cJSON_AddNumberToObject(b, "le", (double)le);
        else cJSON_AddNullToObject(b, "le");
        cJSON_AddNumberToObject(b, "count", (double)s->hist[i]);
    }
    return o;
}

cJSON *sb_metrics_summary_json(const sb_metrics_summary_t *s) {
    cJSON *o = cJSON_CreateObject(), *rl = cJSON_CreateObject();
    cJSON *daily = sb_summary_daily_json(s), *exec = sb_summary_exec_json(s);
    if (!o || !rl || !daily || !exec) goto fail;
    cJSON_AddNumberToObject(rl, "hits", (double)s->rate_hits);
    cJSON_AddNumberToObject(rl, "blocked", (double)s->rate_blocked);
    cJSON_AddNumberToObject(o, "totalJobs", (double)s->total_jobs);
    cJSON_AddNumberToObject(o, "failedJobs", (double)s->failed_jobs);
    cJSON_AddNumberToObject(o, "doneJobs", (double)s->done_jobs);
    cJSON_AddNumberToObject(o, "avgExecutionTime", round(s->avg_exec_ms * 100) / 100);
    cJSON_AddNumberToObject(o, "p95ExecutionTime", s->p95_exec_ms);
    cJSON_AddItemToObject(o, "rateLimit", rl);
    cJSON_AddItemToObject(o, "daily", daily);
    cJSON_AddItemToObject(o, "executionTimes", exec);
    return o;
fail:
    cJSON_Delete(o);
    cJSON_Delete(rl);
    cJSON_Delete(daily);
    cJSON_Delete(exec);
    return NULL;
}
