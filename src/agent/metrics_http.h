/* `switchboard agent --metrics-port N`: a tiny HTTP listener thread serving the agent's
 * counters (sb_agent_stats) as Prometheus text on GET /metrics, and 200 on GET /healthz.
 *
 * One thread, one connection at a time (a scraper's load), each with a 2 s I/O deadline and a
 * request cap of 8 KiB, so a stuck or hostile client cannot hold it. */
#ifndef SB_AGENT_METRICS_HTTP_H
#define SB_AGENT_METRICS_HTTP_H

#include <stddef.h>
#include "switchboard/agent.h"
#include "switchboard/prom.h"

typedef struct sb_agent_metrics sb_agent_metrics_t;

/* Listens on bind:port and starts the thread. Returns NULL with a reason in err. */
sb_agent_metrics_t *sb_agent_metrics_start(sb_agent_t *a, const char *bind, int port, char *err,
                                           size_t errlen);
/* Stops the thread, closes the socket and frees m. NULL is fine. */
void sb_agent_metrics_stop(sb_agent_metrics_t *m);

/* Appends the agent's metric families for stats to p. */
void sb_agent_metrics_render(const sb_agent_stats_t *stats, sb_prom_t *p);

#endif
