/* The agent's /metrics families (served by `switchboard agent --metrics-port N` through
 * switchboard/prom_http.h, which adds the process families and build info):
 * agent_jobs_processed_total{status}, agent_job_duration_seconds{status} (done and failed
 * runs), retry / recovery / requeue / bad record / refusal counters and agent_jobs_inflight. */
#ifndef SB_AGENT_METRICS_HTTP_H
#define SB_AGENT_METRICS_HTTP_H

#include "switchboard/agent.h"
#include "switchboard/prom.h"

/* Appends the agent's metric families for stats to p. */
void sb_agent_metrics_render(const sb_agent_stats_t *stats, sb_prom_t *p);
/* sb_prom_render_cb for an sb_agent_t *: reads its stats and renders them. */
void sb_agent_metrics_render_cb(sb_prom_t *p, void *agent);

#endif
