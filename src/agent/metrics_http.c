/* The agent's metric families (see metrics_http.h). */
#include <stddef.h>
#include "agent/metrics_http.h"

void sb_agent_metrics_render(const sb_agent_stats_t *s, sb_prom_t *p) {
    sb_prom_label_t done[1] = {{"status", "done"}}, failed[1] = {{"status", "failed"}};
    sb_prom_family(p, "agent_jobs_processed_total", "counter",
                   "Jobs this agent finished, by outcome.");
    sb_prom_sample(p, "agent_jobs_processed_total", done, 1, (double)s->done);
    sb_prom_sample(p, "agent_jobs_processed_total", failed, 1, (double)s->failed);
    sb_prom_family(p, "agent_job_duration_seconds", "histogram",
                   "Handler run time of the last attempt of finished jobs, by outcome.");
    for (int i = 0; i < 2; i++)
        sb_prom_histogram(p, "agent_job_duration_seconds", i ? failed : done, 1, sb_agent_buckets,
                          s->duration[i].bucket, SB_AGENT_NBUCKETS, s->duration[i].sum,
                          s->duration[i].count);
    static const struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
        {"agent_job_retries_total", "Attempts that failed and were retried.",
         offsetof(sb_agent_stats_t, retries)},
        {"agent_jobs_recovered_total", "Jobs of dead agents returned to the queue.",
         offsetof(sb_agent_stats_t, recovered)},
        {"agent_jobs_requeued_total", "Jobs put back unfinished at shutdown.",
         offsetof(sb_agent_stats_t, requeued)},
        {"agent_bad_records_total", "Job ids whose record was missing or unreadable.",
         offsetof(sb_agent_stats_t, bad_records)},
        {"agent_redis_refusals_total",
         "Commands Redis refused for now (LOADING, BUSY...) and that were sent again.",
         offsetof(sb_agent_stats_t, refused)},
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        sb_prom_family(p, counters[i].name, "counter", counters[i].help);
        sb_prom_sample(p, counters[i].name, NULL, 0,
                       (double)*(const unsigned long long *)((const char *)s + counters[i].off));
    }
    sb_prom_family(p, "agent_jobs_inflight", "gauge", "Jobs running now.");
    sb_prom_sample(p, "agent_jobs_inflight", NULL, 0, s->inflight);
}

void sb_agent_metrics_render_cb(sb_prom_t *p, void *agent) {
    sb_agent_stats_t st;
    sb_agent_stats(agent, &st);
    sb_agent_metrics_render(&st, p);
}
