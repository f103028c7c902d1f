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
 * Queue state. /metrics shows per type the paused flag, the queued / processing / retrying /
 * dead counts and the age of the oldest queued job without a Redis call on the loop: they are
 * cached here and read again on the thread pool (sb_admin_counts_all: the numbers the operator
 * console shows) every SB_ADMIN_PAUSED_REFRESH_MS, and on a scrape that
 * finds them older than SB_ADMIN_STATS_FRESH_MS (the scrape answers with the cache; the next
 * one sees the new values). So a scrape never waits for Redis, and a pause by the CLI or
 * another gateway shows within seconds. The paused flag is also written at once by this
 * gateway's own pause / resume / queries. A type not read yet (Redis down since start) has no
 * samples. The same read counts the agents online per type (live leases in
 * agent:{type}:leases) and the presence agents per department (sb_presence_stats); a
 * department seen once keeps a sample (0 when its last agent left) so an alert can see it
 * empty. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/admin.h"
#include "gateway/admin_views.h"
#include "switchboard/error.h"
#include "switchboard/jobctl.h"
#include "switchboard/clock.h"
#include "switchboard/job.h"
#include "switchboard/json.h"
#include "switchboard/presence.h"

#define SB_ADMIN_TYPES_MAX 64

/* One type's counts as /metrics shows them. */
typedef struct {
    int ok;                              /* read (else nothing below is known) */
    int paused;                          /* 0, 1 */
    double queued, processing, retrying, dead;
    double oldest_ms;                    /* -1: unknown */
    double agents;                       /* agents holding a live lease */
} sb_admin_counts_t;

#define SB_ADMIN_DEPTS_MAX 64

typedef struct {
    char id[SB_PRESENCE_DEPT_MAX + 1];
    char name[128];
    double online;
} sb_admin_dept_t;

typedef struct {
    char name[SB_TYPE_MAX + 1];
    int paused;  /* -1 unknown, 0, 1 (loop thread) */
    sb_admin_counts_t counts; /* the last read (loop thread) */
    sb_admin_counts_t fresh;  /* the refresh's answer (worker thread, read in its after-work) */
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
    uint64_t refreshed_at; /* uv_now of the last refresh's start */
    sb_presence_ctx_t presence;
    sb_admin_dept_t depts[SB_ADMIN_DEPTS_MAX]; /* departments seen (loop thread) */
    int n_depts;
    sb_admin_dept_t fresh_depts[SB_ADMIN_DEPTS_MAX]; /* the refresh's answer */
    int n_fresh_depts;                               /* -1: not read */
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

/* The per-type gauges: name, help, and where the value is in sb_admin_counts_t. */
static const struct {
    const char *name, *help;
    size_t off;
} sb_admin_gauges[] = {
    {"switchboard_queue_depth", "Jobs waiting on the queue (agent:{type}:jobs).",
     offsetof(sb_admin_counts_t, queued)},
    {"switchboard_queue_processing", "Jobs an agent is running now.",
     offsetof(sb_admin_counts_t, processing)},
    {"switchboard_queue_retrying", "Jobs held by an agent between failed attempts.",
     offsetof(sb_admin_counts_t, retrying)},
    {"switchboard_queue_dead", "Jobs in the dead list (failed for good).",
     offsetof(sb_admin_counts_t, dead)},
    {"switchboard_agents_online", "Agents of the type online (holding a live job lease).",
     offsetof(sb_admin_counts_t, agents)},
};

static void sb_admin_render_depts(const sb_admin_t *a, sb_prom_t *p) {
    sb_prom_family(p, "switchboard_presence_agents_online", "gauge",
                   "Presence agents online (any status) per department; 0 once the last left.");
    for (int i = 0; i < a->n_depts; i++) {
        sb_prom_label_t l[2] = {{"department_id", a->depts[i].id},
                                {"department", a->depts[i].name}};
        sb_prom_sample(p, "switchboard_presence_agents_online", l, 2, a->depts[i].online);
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
    for (size_t g = 0; g < sizeof sb_admin_gauges / sizeof sb_admin_gauges[0]; g++) {
        sb_prom_family(p, sb_admin_gauges[g].name, "gauge", sb_admin_gauges[g].help);
        for (int i = 0; i < a->n_types; i++) {
            const sb_admin_counts_t *c = &a->types[i].counts;
            sb_prom_label_t l = {"type", a->types[i].name};
            if (c->ok)
                sb_prom_sample(p, sb_admin_gauges[g].name, &l, 1,
                               *(const double *)((const char *)c + sb_admin_gauges[g].off));
        }
    }
    sb_prom_family(p, "switchboard_queue_oldest_age_seconds", "gauge",
                   "Age of the job next out of the queue (0 when none waits).");
    for (int i = 0; i < a->n_types; i++) {
        const sb_admin_counts_t *c = &a->types[i].counts;
        sb_prom_label_t l = {"type", a->types[i].name};
        if (c->ok && c->oldest_ms >= 0)
            sb_prom_sample(p, "switchboard_queue_oldest_age_seconds", &l, 1, c->oldest_ms / 1000);
    }
    sb_admin_render_depts(a, p);
}

/* ---- the refresh: sb_jobctl_counts per type on a pooled connection, on the thread pool ---- */

static double sb_admin_num(const cJSON *o, const char *name) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* Reads one type's counts from o, an element of sb_admin_counts_all's "queues" (the console's
 * numbers), into *c; and its agents online from Redis. */
static void sb_admin_read(sb_redis_t *r, const char *type, const cJSON *o, sb_admin_counts_t *c) {
    memset(c, 0, sizeof *c);
    if (!o) return;
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, "counts");
    c->ok = 1;
    c->paused = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "paused"));
    c->queued = sb_admin_num(n, "queued");
    c->processing = sb_admin_num(n, "processing");
    c->retrying = sb_admin_num(n, "retrying");
    c->dead = sb_admin_num(n, "dead");
    c->oldest_ms = sb_admin_num(o, "oldestPendingAgeMs"); /* null: none waits, or unknown */
    if (c->oldest_ms < 0 && c->queued == 0) c->oldest_ms = 0;
    char key[SB_KEY_LEN];
    sb_key(key, sizeof key, SB_KEY_LEASES, type, NULL);
    redisReply *rep = sb_redis_cmd(r, "ZCOUNT %s %lld +inf", key, (long long)sb_now_ms());
    c->agents = rep && rep->type == REDIS_REPLY_INTEGER ? (double)rep->integer : 0;
    if (rep) freeReplyObject(rep);
}

/* The presence stats' departments into a->fresh_depts (n_fresh_depts -1 when unread). */
static void sb_admin_read_depts(sb_admin_t *a, sb_redis_t *r) {
    cJSON *st = NULL;
    a->n_fresh_depts = -1;
    if (!r || sb_presence_stats(r, &a->presence, &st) != SB_OK) return;
    const cJSON *d;
    a->n_fresh_depts = 0;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(st, "departments")) {
        if (a->n_fresh_depts == SB_ADMIN_DEPTS_MAX) break;
        sb_admin_dept_t *x = &a->fresh_depts[a->n_fresh_depts++];
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "department_id"));
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, "department"));
        snprintf(x->id, sizeof x->id, "%s", id ? id : "");
        snprintf(x->name, sizeof x->name, "%s", name ? name : "");
        x->online = sb_admin_num(d, "total");
    }
    cJSON_Delete(st);
}

/* Merges the fresh departments in: every known one 0 unless read again; new ones added. */
static void sb_admin_merge_depts(sb_admin_t *a) {
    if (a->n_fresh_depts < 0) return;
    for (int i = 0; i < a->n_depts; i++) a->depts[i].online = 0;
    for (int f = 0; f < a->n_fresh_depts; f++) {
        const sb_admin_dept_t *x = &a->fresh_depts[f];
        int i = 0;
        while (i < a->n_depts && strcmp(a->depts[i].id, x->id)) i++;
        if (i == a->n_depts && a->n_depts == SB_ADMIN_DEPTS_MAX) continue;
        if (i == a->n_depts) a->n_depts++;
        a->depts[i] = *x;
    }
}

static void sb_admin_refresh_work(uv_work_t *w) {
    sb_admin_t *a = w->data;
    char err[128];
    sb_redis_t *r = sb_admin_take(a, err, sizeof err);
    cJSON *doc = NULL;
    if (r && sb_admin_counts_all(r, a->cfg->job_types, sb_now_ms(), &doc) != SB_OK) doc = NULL;
    const cJSON *queues = cJSON_GetObjectItemCaseSensitive(doc, "queues"), *q;
    for (int i = 0; i < a->n_types; i++) {
        const cJSON *mine = NULL;
        cJSON_ArrayForEach(q, queues)
            if (!strcmp(a->types[i].name, sb_json_str(q, "type") ? sb_json_str(q, "type") : ""))
                mine = q;
        sb_admin_read(r, a->types[i].name, mine, &a->types[i].fresh);
    }
    cJSON_Delete(doc);
    sb_admin_read_depts(a, r);
    if (r) sb_admin_put(a, r);
}

static void sb_admin_refresh_done(uv_work_t *w, int status) {
    sb_admin_t *a = w->data;
    a->refreshing = 0;
    if (status == 0) sb_admin_merge_depts(a);
    for (int i = 0; status == 0 && i < a->n_types; i++) {
        sb_admin_type_t *t = &a->types[i];
        if (!t->fresh.ok) continue;
        t->counts = t->fresh;
        if (t->set == t->set_at_refresh) t->paused = t->fresh.paused;
        else t->counts.paused = t->paused; /* a pause / resume here came after the read */
    }
}

static void sb_admin_refresh(sb_admin_t *a) {
    if (a->refreshing || a->stopped) return;
    a->refresh.data = a;
    for (int i = 0; i < a->n_types; i++) a->types[i].set_at_refresh = a->types[i].set;
    if (uv_queue_work(a->loop, &a->refresh, sb_admin_refresh_work, sb_admin_refresh_done) == 0) {
        a->refreshing = 1;
        a->refreshed_at = uv_now(a->loop);
    }
}

static void sb_admin_tick(uv_timer_t *t) { sb_admin_refresh(t->data); }

void sb_admin_scraped(sb_admin_t *a) {
    if (a && uv_now(a->loop) - a->refreshed_at >= SB_ADMIN_STATS_FRESH_MS) sb_admin_refresh(a);
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
    sb_presence_init(&a->presence, cfg->agent_status_ttl, cfg->max_chats);
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
