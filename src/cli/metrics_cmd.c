/* `switchboard metrics`: the metrics summary of SPEC §4 (what GET /agent/{type}/metrics
 * answers), read straight from Redis: totals, failure rate, execution times, rate limiting,
 * and jobs per day. --json prints the same document as the HTTP route. */
#include <stdio.h>
#include <stdlib.h>
#include "cli/cli.h"
#include "switchboard/switchboard.h"

static void sb_metrics_print(const cJSON *m, const sb_config_t *cfg) {
    double v;
    const cJSON *rl = sb_json_obj(m, "rateLimit");
    printf("type %s, last %d day(s)\n", cfg->job_type, cfg->days);
#define SB_NUM(obj, name) (sb_json_num((obj), (name), &v) == SB_OK ? v : 0)
    printf("  jobs submitted   %.0f\n", SB_NUM(m, "totalJobs"));
    printf("  done             %.0f\n", SB_NUM(m, "doneJobs"));
    printf("  failed           %.0f\n", SB_NUM(m, "failedJobs"));
    printf("  avg execution    %.1f ms\n", SB_NUM(m, "avgExecutionTime"));
    printf("  p95 execution    %.1f ms\n", SB_NUM(m, "p95ExecutionTime"));
    printf("  rate limit       %.0f checks, %.0f blocked\n", SB_NUM(rl, "hits"),
           SB_NUM(rl, "blocked"));
    const cJSON *day;
    printf("  %-12s %8s %8s %8s\n", "day", "jobs", "done", "failed");
    cJSON_ArrayForEach(day, sb_json_obj(m, "daily"))
        printf("  %-12s %8.0f %8.0f %8.0f\n", sb_json_str(day, "date") ? sb_json_str(day, "date") : "?",
               SB_NUM(day, "jobs"), SB_NUM(day, "done"), SB_NUM(day, "failed"));
#undef SB_NUM
}

int sb_cmd_metrics(sb_config_t *cfg) {
    sb_redis_t *r = sb_cli_connect(cfg);
    if (!r) return SB_EXIT_REDIS;
    sb_metrics_summary_t sum;
    int rc = sb_metrics_summary(r, cfg->job_type, cfg->days, sb_now_ms(), &sum);
    sb_redis_free(r);
    if (rc != SB_OK) {
        fprintf(stderr, "switchboard metrics: %s\n", sb_strerror(rc));
        return sb_cli_exit(rc);
    }
    cJSON *doc = sb_metrics_summary_json(&sum);
    if (!doc) return SB_EXIT_FAIL;
    if (cfg->json_out) {
        char *txt = sb_json_print(doc);
        if (txt) printf("%s\n", txt);
        free(txt);
    } else {
        sb_metrics_print(doc, cfg);
    }
    cJSON_Delete(doc);
    return SB_EXIT_OK;
}
