/* The operator console's live feed to the admin sockets that asked for it (room
 * `admins:console`, see admin_feed.h).
 *
 * Job changes. The subscriber calls sb_af_on_job for every job change it forwards; the
 * change is appended to a cJSON array (at most SB_ADMIN_FEED_CHANGES per window, the rest only
 * counted) and counted per type. A repeating timer sends the window as admin:jobs and empties
 * it, so a storm of 10k jobs/s costs two small events a second per gateway, not 10k.
 *
 * Queue counters. A second timer (SB_ADMIN_FEED_TICK_MS) reads every queue's counts on
 * libuv's thread pool with a pooled admin connection (admin.h, admin_views.h) and sends
 * admin:queues with the finished jobs per second of each type since the last one. It skips a
 * tick while a read is in flight, and while the last emit reached no admin socket except
 * every SB_ADMIN_FEED_IDLE_MS (so a newly connected admin gets counters within that time, and
 * an idle gateway costs Redis nearly nothing). An admin action asks for a read at the next
 * tick. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "gateway/admin.h"
#include "gateway/admin_feed.h"
#include "gateway/admin_views.h"
#include "gateway/gateway.h"
#include "gateway/socketio/socketio.h"
#include "gateway/subscriber.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/job.h"
#include "switchboard/log.h"

#define SB_AF_TYPES_MAX 64

typedef struct {
    char name[SB_TYPE_MAX + 1];
    unsigned long long finished; /* done / error / cancelled since the last admin:queues */
} sb_af_type_t;

struct sb_admin_feed {
    sb_gateway_t *gw;
    uv_timer_t flush, tick;
    cJSON *changes;          /* the window's changes (an array), or NULL when empty */
    int n;                   /* entries in changes */
    unsigned long long more; /* changes left out of the window */
    sb_af_type_t types[SB_AF_TYPES_MAX];
    int n_types;
    int admins;              /* sockets the last emit reached */
    int kicked;              /* read the counters at the next tick */
    int64_t last_read_ms, last_sent_ms;
    uv_work_t work;
    int reading;             /* a read is on the thread pool */
    int rc;                  /* its outcome */
    cJSON *counts;           /* its answer */
    int stopped;
};

static void sb_af_emit(sb_admin_feed_t *f, const char *event, const cJSON *doc) {
    char *text = cJSON_PrintUnformatted(doc);
    if (!text) return;
    int n = sb_socketio_emit_console(f->gw->sio, event, text, strlen(text));
    if (n >= 0) f->admins = n;
    cJSON_free(text);
}

/* ---- job changes ---------------------------------------------------------------------------- */

static sb_af_type_t *sb_af_type(sb_admin_feed_t *f, const char *type) {
    for (int i = 0; i < f->n_types; i++)
        if (!strcmp(f->types[i].name, type)) return &f->types[i];
    if (f->n_types == SB_AF_TYPES_MAX) return NULL;
    sb_af_type_t *t = &f->types[f->n_types++];
    snprintf(t->name, sizeof t->name, "%s", type);
    return t;
}

static void sb_af_on_job(void *ud, const char *type, const char *job_id, const char *status,
                         const char *user_id) {
    sb_admin_feed_t *f = ud;
    sb_af_type_t *t = sb_af_type(f, type);
    if (t && (!strcmp(status, "done") || !strcmp(status, "error") ||
              !strcmp(status, "cancelled")))
        t->finished++;
    if (f->n >= SB_ADMIN_FEED_CHANGES) {
        f->more++;
        return;
    }
    if (!f->changes && !(f->changes = cJSON_CreateArray())) return;
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "type", type);
    cJSON_AddStringToObject(c, "jobId", job_id);
    cJSON_AddStringToObject(c, "status", status);
    cJSON_AddStringToObject(c, "userId", user_id);
    if (c && cJSON_GetObjectItem(c, "userId")) {
        cJSON_AddItemToArray(f->changes, c);
        f->n++;
    } else {
        cJSON_Delete(c);
        f->more++;
    }
}

static void sb_af_flush(uv_timer_t *h) {
    sb_admin_feed_t *f = h->data;
    if (!f->changes && !f->more) return;
    cJSON *doc = cJSON_CreateObject();
    if (doc && f->changes) cJSON_AddItemToObject(doc, "changes", f->changes);
    else cJSON_Delete(f->changes);
    cJSON_AddNumberToObject(doc, "more", (double)f->more);
    if (doc) sb_af_emit(f, "admin:jobs", doc);
    cJSON_Delete(doc);
    f->changes = NULL;
    f->n = 0;
    f->more = 0;
}

/* ---- queue counters ------------------------------------------------------------------------- */

static void sb_af_read(uv_work_t *w) {
    sb_admin_feed_t *f = w->data;
    char err[128];
    sb_redis_t *r = sb_admin_take(f->gw->admin, err, sizeof err);
    f->counts = NULL;
    f->rc = r ? sb_admin_counts_all(r, f->gw->cfg->job_types, sb_now_ms(), &f->counts)
              : SB_EREDIS;
    if (r) sb_admin_put(f->gw->admin, r);
}

/* Adds "rates" (finished jobs/s per type since the last send) and "at" to doc. */
static void sb_af_rates(sb_admin_feed_t *f, cJSON *doc, int64_t now) {
    double secs = f->last_sent_ms ? (double)(now - f->last_sent_ms) / 1000.0 : 0;
    cJSON *rates = cJSON_AddObjectToObject(doc, "rates");
    for (int i = 0; rates && i < f->n_types; i++) {
        cJSON_AddNumberToObject(rates, f->types[i].name,
                                secs > 0 ? (double)f->types[i].finished / secs : 0);
        f->types[i].finished = 0;
    }
    cJSON_AddNumberToObject(doc, "at", (double)now);
    f->last_sent_ms = now;
}

static void sb_af_read_done(uv_work_t *w, int status) {
    sb_admin_feed_t *f = w->data;
    f->reading = 0;
    if (status == 0 && f->rc == 0 && f->counts && !f->stopped) {
        sb_af_rates(f, f->counts, sb_now_ms());
        sb_af_emit(f, "admin:queues", f->counts);
    }
    cJSON_Delete(f->counts);
    f->counts = NULL;
}

static void sb_af_tick(uv_timer_t *h) {
    sb_admin_feed_t *f = h->data;
    int64_t now = sb_now_ms();
    if (f->reading || f->stopped || !f->gw->admin) return;
    if (!f->admins && !f->kicked && now - f->last_read_ms < SB_ADMIN_FEED_IDLE_MS) return;
    f->kicked = 0;
    f->last_read_ms = now;
    f->work.data = f;
    if (uv_queue_work(f->gw->loop, &f->work, sb_af_read, sb_af_read_done) == 0) f->reading = 1;
}

void sb_admin_feed_action(sb_admin_feed_t *f, const char *json, size_t len) {
    if (!f || f->stopped) return;
    int n = sb_socketio_emit_console(f->gw->sio, "admin:action", json, len);
    if (n >= 0) f->admins = n;
    f->kicked = 1;
}

/* ---- life cycle ----------------------------------------------------------------------------- */

sb_admin_feed_t *sb_admin_feed_create(sb_gateway_t *gw) {
    struct sb_subscriber *sub = gw->sio ? sb_socketio_subscriber(gw->sio) : NULL;
    sb_admin_feed_t *f = sub ? calloc(1, sizeof *f) : NULL;
    if (!f) return NULL;
    f->gw = gw;
    uv_timer_init(gw->loop, &f->flush);
    uv_timer_init(gw->loop, &f->tick);
    f->flush.data = f->tick.data = f;
    uv_timer_start(&f->flush, sb_af_flush, SB_ADMIN_FEED_FLUSH_MS, SB_ADMIN_FEED_FLUSH_MS);
    uv_timer_start(&f->tick, sb_af_tick, SB_ADMIN_FEED_TICK_MS, SB_ADMIN_FEED_TICK_MS);
    sb_subscriber_on_job(sub, sb_af_on_job, f);
    return f;
}

void sb_admin_feed_stop(sb_admin_feed_t *f) {
    if (!f || f->stopped) return;
    f->stopped = 1;
    uv_close((uv_handle_t *)&f->flush, NULL);
    uv_close((uv_handle_t *)&f->tick, NULL);
}

void sb_admin_feed_free(sb_admin_feed_t *f) {
    if (!f) return;
    cJSON_Delete(f->changes);
    free(f);
}
