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

/* Key names: metrics:agent:{type}:{what}[:{arg}], and the daily counter
 * metrics:agent:{type}:counters:{YYYY-MM-DD}:{name}. Return buf, or NULL if it does not fit. */
char *sb_metrics_key(char *buf, size_t len, const char *type, const char *what, const char *arg);
char *sb_metrics_counter_key(char *buf, size_t len, const char *type, const char *name,
                             int64_t now_ms);

/* INCR metrics:agent:{type}:counters:{date}:{name} (+ EXPIRE). Returns 0 or SB_ENOMEM. */
int sb_metrics_count(sb_batch_t *b, const char *type, const char *name, int64_t now_ms);
/* Adds a finished job's execution time. */
int sb_metrics_exec_time(sb_batch_t *b, const char *type, const char *job_id, int64_t ms);
/* Stores metrics:agent:{type}:failed:{jobId} = {jobId,error,details,payload,attempts,failedAt}. */
int sb_metrics_failure(sb_batch_t *b, const char *type, const char *job_id, const char *error,
                       const char *details, const cJSON *payload, int attempts, int64_t now_ms);

typedef struct {
    long long total_jobs;
    long long failed_jobs;
    long long done_jobs;
    double avg_exec_ms;
    double p95_exec_ms;
    long long rate_hits;
    long long rate_blocked;
} sb_metrics_summary_t;

#define SB_METRICS_MAX_DAYS 30

/* Reads the summary over the last `days` UTC days (1..30). Returns 0, SB_EINVAL, SB_EREDIS. */
int sb_metrics_summary(sb_redis_t *r, const char *type, int days, int64_t now_ms,
                       sb_metrics_summary_t *out);
/* The same in two halves, for clients that send batches themselves (the gateway's async
 * client): appends days + 1 commands to b (SB_EINVAL for days outside 1..30), then parses
 * their replies (replies[0..days], e.g. the elements of an EXEC reply). Parse returns 0 or
 * SB_EPROTO; *out is zeroed first. */
int sb_metrics_summary_batch(sb_batch_t *b, const char *type, int days, int64_t now_ms);
int sb_metrics_summary_parse(redisReply *const *replies, int days, sb_metrics_summary_t *out);
/* {"totalJobs","failedJobs","avgExecutionTime","p95ExecutionTime","rateLimit":{...}};
 * caller deletes. */
cJSON *sb_metrics_summary_json(const sb_metrics_summary_t *s);

#endif
