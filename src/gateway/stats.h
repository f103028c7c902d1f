/* Gateway counters for /metrics: HTTP requests by route, method and code, request latency
 * histogram by route, and event counters (jobs created, rate-limited requests).
 *
 * Route labels are the route table's pattern strings (static storage), so a series is found
 * by pointer comparison. The tables are fixed-size: a series beyond the cap is folded into
 * the overflow counter instead of allocating. Loop thread only; no locking. */
#ifndef SB_GATEWAY_STATS_H
#define SB_GATEWAY_STATS_H

#include <stddef.h>
#include "switchboard/prom.h"

#define SB_GW_MAX_SERIES 160
#define SB_GW_MAX_ROUTES 48
#define SB_GW_NBUCKETS 12

typedef struct {
    const char *route;   /* static label, e.g. "/api/v1/agent/{type}" */
    const char *method;  /* static, e.g. "POST" */
    int code;
    unsigned long long count;
} sb_gw_series_t;

typedef struct {
    const char *route;
    unsigned long long bucket[SB_GW_NBUCKETS]; /* cumulative, bounds sb_gw_buckets */
    unsigned long long count;
    double sum;
} sb_gw_latency_t;

typedef struct {
    sb_gw_series_t req[SB_GW_MAX_SERIES];
    size_t nreq;
    sb_gw_latency_t lat[SB_GW_MAX_ROUTES];
    size_t nlat;
    unsigned long long dropped_series; /* requests not counted: the series table was full */
    unsigned long long jobs_created;
    unsigned long long rate_limited;
    unsigned long long redis_unavailable; /* requests answered 503 for Redis */
    unsigned long long responses_orphaned; /* answers dropped: the client had gone */
    unsigned long long in_flight;  /* requests begun and not yet freed (gauge) */
} sb_gw_stats_t;

/* Counts one finished request that took secs. route and method must be static strings. */
void sb_gw_stats_request(sb_gw_stats_t *s, const char *route, const char *method, int code,
                         double secs);
/* Appends the request families and event counters to p. */
void sb_gw_stats_render(const sb_gw_stats_t *s, sb_prom_t *p);

#endif
