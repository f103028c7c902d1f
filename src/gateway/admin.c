/* Blocking Redis connections for the admin handlers, and the paused state behind /metrics.
 *
 * Pool. The library calls of jobctl.h block, and the gateway is one libuv loop that must never
 * block, so api_admin.c runs each call with uv_queue_work on libuv's thread pool. A call takes
 * a connection here and gives it back: idle connections sit in a small list guarded by a
 * mutex (at most SB_ADMIN_POOL_IDLE are kept; libuv runs that many calls at once by default,
 * so more are made only when UV_THREADPOOL_SIZE is raised, and closed on return). A taken
 * connection is connected once if it is not (sb_redis_connect: no retry loop, a thread is not
 * held while Redis is down; the caller answers 503) and has a socket timeout, so a Redis that
 * hangs frees the thread after SB_ADMIN_TIMEOUT_MS. The connections come from sb_redis_create
 * with the gateway's Redis address, so TLS and Sentinel work as for every other client.
 *
 * Paused state. /metrics shows switchboard_queue_paused{type} without a Redis call per scrape:
 * the state is cached here, written at once by this gateway's own pause / resume / queries,
 * and read again from Redis every SB_ADMIN_PAUSED_REFRESH_MS on the thread pool (one EXISTS
 * per type), so a pause by the CLI or another gateway shows within that time. A type whose
 * state has not been read yet (Redis down since start) has no sample. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/admin.h"
#include "switchboard/error.h"
#include "switchboard/jobctl.h"
#include "switchboard/job.h"

#define SB_ADMIN_TYPES_MAX 64

typedef struct {
    char name[SB_TYPE_MAX + 1];
    int paused;  /* -1 unknown, 0, 1 (loop thread) */
    int fresh;   /* the refresh's answer (worker thread, read in its after-work) */
    unsigned set, set_at_refresh; /* sets by this gateway; their count when the refresh began */
} sb_admin_type_t;

struct sb_admin {
    const sb_config_t *cfg;
    uv_mutex_t mu;
    sb_redis_t *idle[SB_ADMIN_POOL_IDLE];
    int n_idle;
    sb_admin_type_t types[SB_ADMIN_TYPES_MAX];
    int n_types;
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_work_t refresh;
    int refreshing; /* a refresh is on the thread pool */
    int stopped;
};

static void sb_admin_parse_types(sb_admin_t *a, const char *list) {
    for (const char *p = list ? list : ""; *p && a->n_types < SB_ADMIN_TYPES_MAX;) {
        while (*p == ' ' || *p == ',') p++;
        size_t n = strcspn(p, ", ");
        if (n && n <= SB_TYPE_MAX) {
            sb_admin_type_t *t = &a->types[a->n_types++];
            memcpy(t->name, p, n);
            t->name[n] = '\0';
            t->paused = -1;
        }
        p += n;
    }
}

sb_redis_t *sb_admin_take(sb_admin_t *a, char *err, size_t errlen) {
    sb_redis_t *r = NULL;
    uv_mutex_lock(&a->mu);
    if (a->n_idle > 0) r = a->idle[--a->n_idle];
    uv_mutex_unlock(&a->mu);
    if (!r) {
        r = sb_redis_create(&a->cfg->redis, "admin");
        if (!r) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        sb_redis_set_timeout(r, SB_ADMIN_TIMEOUT_MS);
    }
    if (!sb_redis_connected(r) && sb_redis_connect(r, err, errlen) != 0) {
        sb_admin_put(a, r); /* kept: it connects on a later take */
        return NULL;
    }
    return r;
}

void sb_admin_put(sb_admin_t *a, sb_redis_t *r) {
    uv_mutex_lock(&a->mu);
    if (a->n_idle < SB_ADMIN_POOL_IDLE) {
        a->idle[a->n_idle++] = r;
        r = NULL;
    }
    uv_mutex_unlock(&a->mu);
    sb_redis_free(r);
}

void sb_admin_set_paused(sb_admin_t *a, const char *type, int paused) {
    for (int i = 0; a && i < a->n_types; i++)
        if (!strcmp(a->types[i].name, type)) {
            a->types[i].paused = paused;
            a->types[i].set++; /* a refresh that read before this must not undo it */
        }
}

void sb_admin_render(const sb_admin_t *a, sb_prom_t *p) {
    if (!a) return;
    sb_prom_family(p, "switchboard_queue_paused", "gauge",
                   "1 while the job type is paused (agents take no new job of it).");
    for (int i = 0; i < a->n_types; i++) {
        if (a->types[i].paused < 0) continue;
        sb_prom_label_t l = {"type", a->types[i].name};
        sb_prom_sample(p, "switchboard_queue_paused", &l, 1, a->types[i].paused);
    }
}

/* ---- the refresh: one EXISTS per type on a pooled connection, on the thread pool ---------- */

static void sb_admin_refresh_work(uv_work_t *w) {
    sb_admin_t *a = w->data;
    char err[128];
    sb_redis_t *r = sb_admin_take(a, err, sizeof err);
    for (int i = 0; i < a->n_types; i++)
        a->types[i].fresh = r ? sb_jobctl_paused(r, a->types[i].name) : SB_EREDIS;
    if (r) sb_admin_put(a, r);
}

static void sb_admin_refresh_done(uv_work_t *w, int status) {
    sb_admin_t *a = w->data;
    a->refreshing = 0;
    for (int i = 0; status == 0 && i < a->n_types; i++)
        if ((a->types[i].fresh == 0 || a->types[i].fresh == 1) &&
            a->types[i].set == a->types[i].set_at_refresh)
            a->types[i].paused = a->types[i].fresh;
}

static void sb_admin_tick(uv_timer_t *t) {
    sb_admin_t *a = t->data;
    if (a->refreshing || a->stopped) return;
    a->refresh.data = a;
    for (int i = 0; i < a->n_types; i++) a->types[i].set_at_refresh = a->types[i].set;
    if (uv_queue_work(a->loop, &a->refresh, sb_admin_refresh_work, sb_admin_refresh_done) == 0)
        a->refreshing = 1;
}

sb_admin_t *sb_admin_create(uv_loop_t *loop, const sb_config_t *cfg) {
    sb_admin_t *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    if (uv_mutex_init(&a->mu) != 0) {
        free(a);
        return NULL;
    }
    a->cfg = cfg;
    a->loop = loop;
    sb_admin_parse_types(a, cfg->job_types);
    uv_timer_init(loop, &a->timer);
    a->timer.data = a;
    uv_timer_start(&a->timer, sb_admin_tick, 0, SB_ADMIN_PAUSED_REFRESH_MS);
    return a;
}

void sb_admin_stop(sb_admin_t *a) {
    if (!a || a->stopped) return;
    a->stopped = 1;
    uv_close((uv_handle_t *)&a->timer, NULL);
}

void sb_admin_free(sb_admin_t *a) {
    if (!a) return;
    for (int i = 0; i < a->n_idle; i++) sb_redis_free(a->idle[i]);
    uv_mutex_destroy(&a->mu);
    free(a);
}
