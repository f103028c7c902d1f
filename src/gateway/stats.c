/* Gateway request counters and their Prometheus rendering (see stats.h). */
#include <stdio.h>
#include "gateway/stats.h"

static const double sb_gw_buckets[SB_GW_NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                     0.05,   0.1,   0.25,   0.5,   1,    5};

static sb_gw_latency_t *sb_gw_latency(sb_gw_stats_t *s, const char *route) {
    for (size_t i = 0; i < s->nlat; i++)
        if (s->lat[i].route == route) return &s->lat[i];
    if (s->nlat == SB_GW_MAX_ROUTES) return NULL;
    s->lat[s->nlat].route = route;
    return &s->lat[s->nlat++];
}

static sb_gw_series_t *sb_gw_series(sb_gw_stats_t *s, const char *route, const char *method,
                                    int code) {
    for (size_t i = 0; i < s->nreq; i++) {
        sb_gw_series_t *r = &s->req[i];
        if (r->route == route && r->method == method && r->code == code) return r;
    }
    if (s->nreq == SB_GW_MAX_SERIES) return NULL;
    s->req[s->nreq] = (sb_gw_series_t){route, method, code, 0};
    return &s->req[s->nreq++];
}

void sb_gw_stats_request(sb_gw_stats_t *s, const char *route, const char *method, int code,
                         double secs) {
    sb_gw_series_t *r = sb_gw_series(s, route, method, code);
    sb_gw_latency_t *l = sb_gw_latency(s, route);
    if (!r || !l) {
        s->dropped_series++;
        return;
    }
    r->count++;
    l->count++;
    l->sum += secs;
    for (int i = 0; i < SB_GW_NBUCKETS; i++)
        if (secs <= sb_gw_buckets[i]) l->bucket[i]++;
}

static void sb_gw_counter(sb_prom_t *p, const char *name, const char *help,
                          unsigned long long v) {
    sb_prom_family(p, name, "counter", help);
    sb_prom_sample(p, name, NULL, 0, (double)v);
}

void sb_gw_stats_render(const sb_gw_stats_t *s, sb_prom_t *p) {
    sb_prom_family(p, "gateway_http_requests_total", "counter",
                   "HTTP requests answered, by route pattern, method and status code.");
    for (size_t i = 0; i < s->nreq; i++) {
        char code[8];
        snprintf(code, sizeof code, "%d", s->req[i].code);
        sb_prom_label_t l[3] = {{"route", s->req[i].route}, {"method", s->req[i].method},
                                {"code", code}};
        sb_prom_sample(p, "gateway_http_requests_total", l, 3, (double)s->req[i].count);
    }
    sb_prom_family(p, "gateway_http_request_duration_seconds", "histogram",
                   "Time from the request line to the response being queued, by route.");
    for (size_t i = 0; i < s->nlat; i++) {
        sb_prom_label_t l[1] = {{"route", s->lat[i].route}};
        sb_prom_histogram(p, "gateway_http_request_duration_seconds", l, 1, sb_gw_buckets,
                          s->lat[i].bucket, SB_GW_NBUCKETS, s->lat[i].sum, s->lat[i].count);
    }
    sb_gw_counter(p, "gateway_http_requests_uncounted_total",
                  "Requests not broken down because the series table was full.",
                  s->dropped_series);
    sb_gw_counter(p, "gateway_jobs_created_total", "Jobs queued through POST /agent/{type}.",
                  s->jobs_created);
    sb_gw_counter(p, "gateway_rate_limited_total", "Requests refused with 429.",
                  s->rate_limited);
    sb_gw_counter(p, "gateway_redis_unavailable_total",
                  "Requests answered 503 because Redis was unavailable.", s->redis_unavailable);
    sb_gw_counter(p, "gateway_responses_orphaned_total",
                  "Answers dropped because the client closed the connection first.",
                  s->responses_orphaned);
    sb_prom_single(p, "gateway_http_requests_in_flight", "gauge",
                   "HTTP requests received and not finished (e.g. waiting for Redis).",
                   (double)s->in_flight);
}
