/* Job metrics in Redis (SPEC §4): daily counters, failure records, execution times.
 *
 * Every function appends commands to a batch so callers fold metrics into the same round
 * trip as the work they describe. All keys expire after 7 days. Execution times live in one
 * sorted set (score = ms) kept to SB_METRICS_EXEC_MAX members by evicting a random member,
 * which keeps an unbiased sample of recent jobs. */
#ifndef SB_METRICS_H
#define SB_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "switchboard/redis.h"

#define SB_METRICS_TTL (7 * 86400)
#define SB_METRICS_EXEC_MAX 10000
#define SB_METRICS_MAX_DAYS 30

/* Key names: metrics:agent:{type}:{what}[:{arg}], and the daily counter
 * metrics:agent:{type}:counters:{YYYY-MM-DD}:{name}. Return buf, or NULL if it does not fit. */
char *sb_metrics_key(char *buf, size_t len, const char *type, const char *what, const char *arg);
char *sb_metrics_counter_key(char *buf, size_t len, const char *type, const char *name,
                             int64_t now_ms);

/* Daily counters are incremented inside scripts (submit.c, the agent's finish script), which
 * give each counter key SB_METRICS_TTL (submit.c: when INCR creates it). */
/* Adds a finished job's execution time. */
int sb_metrics_exec_time(sb_batch_t *b, const char *type, const char *job_id, int64_t ms);
/* Stores metrics:agent:{type}:failed:{jobId} = {jobId,error,details,payload,attempts,failedAt}. */
int sb_metrics_failure(sb_batch_t *b, const char *type, const char *job_id, const char *error,
                       const char *details, const cJSON *payload, int attempts, int64_t now_ms);

/* Execution-time histogram: bucket i counts times in (bound(i-1), bound(i)] ms; the last
 * bucket is unbounded. Bounds include the seeds' 1, 5, 10, 30, 60 s. */
#define SB_METRICS_HIST_BUCKETS 11
/* Upper bound of bucket i in ms, or 0 for the last (unbounded) bucket and out-of-range i. */
long sb_metrics_hist_bound(int i);

/* One UTC day's counters. */
typedef struct {
    char date[11];          /* YYYY-MM-DD */
    long long jobs, done, failed;
} sb_metrics_day_t;

typedef struct {
    long long total_jobs;
    long long failed_jobs;
    long long done_jobs;
    double avg_exec_ms;
    double p95_exec_ms;
    double p50_exec_ms;
    double max_exec_ms;
    long long exec_count;   /* execution times in the (bounded) sample */
    long long rate_hits;
    long long rate_blocked;
    int days;               /* entries in daily[] */
    sb_metrics_day_t daily[SB_METRICS_MAX_DAYS]; /* oldest first, today last */
    long long hist[SB_METRICS_HIST_BUCKETS];       /* execution-time histogram (see above) */
} sb_metrics_summary_t;

/* Reads the summary over the last `days` UTC days (1..30). Returns 0, SB_EINVAL, SB_EREDIS. */
int sb_metrics_summary(sb_redis_t *r, const char *type, int days, int64_t now_ms,
                       sb_metrics_summary_t *out);
/* The same in two halves, for clients that send batches themselves (the gateway's async
 * client): appends sb_metrics_summary_count(days) commands to b (SB_EINVAL for days outside
 * 1..30), then parses their replies (e.g. the elements of an EXEC reply); now_ms must be the
 * value given to the batch (it names the days). Parse returns 0 or SB_EPROTO; *out is zeroed
 * first. With queue shards (job.h) the summary adds up every shard's: counters, histogram and
 * count exactly, the average from the sums; p50 / p95 are the shards' weighted by their sample
 * sizes (an estimate) and max the largest. */
int sb_metrics_summary_count(int days); /* (days + 1) × sb_queue_shards() */
int sb_metrics_summary_batch(sb_batch_t *b, const char *type, int days, int64_t now_ms);
int sb_metrics_summary_parse(redisReply *const *replies, int days, int64_t now_ms,
                             sb_metrics_summary_t *out);
/* {"totalJobs","failedJobs","doneJobs","avgExecutionTime","p95ExecutionTime",
 *  "rateLimit":{"hits","blocked"},
 *  "daily":[{"date","jobs","done","failed"}...] (oldest first),
 *  "executionTimes":{"count","avg","p50","p95","max",
 *                    "histogram":[{"le":ms|null,"count"}...]}}; caller deletes. */
cJSON *sb_metrics_summary_json(const sb_metrics_summary_t *s);

#endif
