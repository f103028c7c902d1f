/* Consuming events as a consumer group: the reliable half of the event bus (events.h).
 *
 * A poll is: make sure the connection and the groups exist (XGROUP CREATE … MKSTREAM, again
 * after every reconnect, so a Redis that restarted empty is handled); when the claim timer is
 * due, XAUTOCLAIM entries idle for min_idle_ms from every stream (a dead consumer's entries
 * and our own failed ones — one mechanism for both retries and takeover), reading their
 * delivery counts with XPENDING; then one XREADGROUP … BLOCK over all subscribed streams.
 *
 * Each entry then goes through one decision: delivered too often or malformed → dead-letter
 * (XADD to agent:stream:dead:{type} and XACK in one MULTI); already processed (idempotency
 * key present) → XACK; else the handler runs, and only on success is the entry acknowledged
 * (with the processed key set first in the same pipeline). Acks are idempotent, so they are
 * retried through reconnects; a failed handler leaves the entry pending for the claim pass.
 *
 * Claiming goes by idle time, so an entry must not go min_idle_ms in our hands without its
 * idle time being reset, or another consumer takes it while we still work on it (and its
 * delivery count grows though it never failed). The batch in hand (`hand`) is renewed as a
 * whole by one script (scripts/lua/events_keep.lua: XCLAIM … JUSTID of the entries still in our pending list;
 * the others are marked lost and skipped): before an entry's turn when the batch was last
 * renewed more than half of min_idle_ms ago, and from a long handler through sb_consumer_keep
 * every quarter of min_idle_ms. So min_idle_ms bounds how long a consumer may stall, not how
 * long a handler may run: only the entries of a consumer that died or stopped for min_idle_ms
 * are delivered again.
 *
 * Metrics (seed 003's names): each handler run is counted per event type by outcome
 * (events_processed_total{event_type,status="success"|"error"}) and timed
 * (event_processing_seconds{event_type}, the Python client's default buckets). They sit under
 * a mutex of their own, since sb_consumer_prom is called from a scraper's thread. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "sb_lua.h" /* the scripts of scripts/lua/, embedded by the build */
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/events.h"
#include "switchboard/json.h"
#include "switchboard/log.h"

#define SB_CONSUMER_MAX_SUBS 32
#define SB_CLAIM_ROUNDS 8          /* XAUTOCLAIM calls per stream per pass */
#define SB_CLAIM_INTERVAL_MAX 5000 /* ms between claim passes, at most */
#define SB_KEYLEN (SB_EVENT_TYPE_MAX + 32)
#define SB_EVENT_NBUCKETS 14

static const double sb_event_buckets[SB_EVENT_NBUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10};

/* One event type's handler runs (guarded by sb_consumer.metrics_mu). */
typedef struct {
    unsigned long long success, error, count;
    unsigned long long bucket[SB_EVENT_NBUCKETS]; /* cumulative */
    double sum;
} sb_sub_metrics_t;

typedef struct {
    char type[SB_EVENT_TYPE_MAX + 1];
    char key[SB_KEYLEN];              /* agent:stream:{type} */
    char dead_key[SB_KEYLEN];         /* agent:stream:dead:{type} */
    char claim_cursor[SB_STREAM_ID_LEN]; /* XAUTOCLAIM cursor, "0-0" between passes */
    sb_event_cb cb;
    void *user;
} sb_sub_t;

/* One entry in hand: read by XREADGROUP or claimed by XAUTOCLAIM, not yet dealt with. */
typedef struct {
    const sb_sub_t *sub;
    const redisReply *entry;           /* [id, [field, value…]], borrowed from the reply */
    long long deliveries;
    int lost;                          /* another consumer took it (seen by a renewal) */
} sb_inhand_t;

struct sb_consumer {
    sb_redis_t *redis;
    sb_consumer_opts_t o;              /* group/consumer/start_id point at the arrays below */
    char group[128], name[128], start_id[SB_STREAM_ID_LEN];
    sb_sub_t subs[SB_CONSUMER_MAX_SUBS];
    int nsubs;
    int ready;                         /* the groups exist on the current connection */
    int64_t next_claim;                /* monotonic ms of the next claim pass */
    const atomic_int *stop;            /* of the poll in progress (acks give up on it) */
    sb_script_t keep;                  /* sb_lua_events_keep */
    sb_consumer_stats_t stats;
    /* the batch in hand: hand[at] is being dealt with, hand[at+1..n) wait their turn */
    sb_inhand_t *hand;
    size_t nhand, hand_cap, at;
    int64_t hand_at;                   /* monotonic ms the idle time of hand[at..n) was reset */
    int in_handler;                    /* a handler runs (sb_consumer_keep is allowed) */
    pthread_mutex_t metrics_mu;        /* guards metrics (read by sb_consumer_prom) */
    sb_sub_metrics_t metrics[SB_CONSUMER_MAX_SUBS]; /* per subs[i] */
};

/* ---- setup ------------------------------------------------------------------------------- */

void sb_consumer_opts_init(sb_consumer_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->count = 10;
    o->block_ms = 1000;
    o->min_idle_ms = 30000;
    o->max_deliveries = 5;
    o->dead_maxlen = SB_EVENTS_DEAD_MAXLEN;
}

static int sb_consumer_check(const sb_consumer_opts_t *o, char *err, size_t errlen) {
    const char *bad = o->count < 1 ? "count must be >= 1"
                    : o->block_ms < 1 ? "block_ms must be >= 1"
                    : o->min_idle_ms < 1 ? "min_idle_ms must be >= 1"
                    : o->max_deliveries < 1 ? "max_deliveries must be >= 1"
                    : o->idempotency_ttl_s < 0 ? "idempotency_ttl_s must be >= 0" : NULL;
    if (bad) snprintf(err, errlen, "%s", bad);
    return bad ? SB_EINVAL : SB_OK;
}

sb_consumer_t *sb_consumer_create(const sb_redis_addr_t *addr, const sb_consumer_opts_t *o,
                                  char *err, size_t errlen) {
    if (sb_consumer_check(o, err, errlen) != SB_OK) return NULL;
    sb_consumer_t *c = calloc(1, sizeof *c);
    if (!c || !(c->redis = sb_redis_create(addr, "events"))) {
        snprintf(err, errlen, "out of memory");
        free(c);
        return NULL;
    }
    c->o = *o;
    pthread_mutex_init(&c->metrics_mu, NULL);
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    snprintf(c->group, sizeof c->group, "%s", o->group ? o->group : SB_EVENTS_GROUP);
    if (o->consumer) snprintf(c->name, sizeof c->name, "%s", o->consumer);
    else snprintf(c->name, sizeof c->name, "%s-%ld", host, (long)getpid());
    snprintf(c->start_id, sizeof c->start_id, "%s", o->start_id ? o->start_id : "0");
    c->o.group = c->group;
    c->o.consumer = c->name;
    c->o.start_id = c->start_id;
    sb_script_init(&c->keep, sb_lua_events_keep);
    /* a blocked read must never hit the socket timeout */
    sb_redis_set_timeout(c->redis, o->block_ms + 10000);
    return c;
}

void sb_consumer_free(sb_consumer_t *c) {
    if (!c) return;
    sb_redis_free(c->redis);
    free(c->hand);
    pthread_mutex_destroy(&c->metrics_mu);
    free(c);
}

int sb_consumer_subscribe(sb_consumer_t *c, const char *type, sb_event_cb cb, void *user) {
    if (c->nsubs == SB_CONSUMER_MAX_SUBS || !cb) return SB_EINVAL;
    for (int i = 0; i < c->nsubs; i++)
        if (!strcmp(c->subs[i].type, type ? type : "")) return SB_EINVAL;
    sb_sub_t *s = &c->subs[c->nsubs];
    if (!sb_events_key(s->key, sizeof s->key, type) ||
        !sb_events_dead_key(s->dead_key, sizeof s->dead_key, type))
        return SB_EINVAL;
    snprintf(s->type, sizeof s->type, "%s", type);
    snprintf(s->claim_cursor, sizeof s->claim_cursor, "0-0");
    s->cb = cb;
    s->user = user;
    c->nsubs++;
    return SB_OK;
}

const char *sb_consumer_name(const sb_consumer_t *c) { return c->name; }

void sb_consumer_stats(const sb_consumer_t *c, sb_consumer_stats_t *out) { *out = c->stats; }

/* Counts one handler run of subs[i] that took secs. */
static void sb_consumer_observe(sb_consumer_t *c, int i, int success, double secs) {
    sb_sub_metrics_t *m = &c->metrics[i];
    pthread_mutex_lock(&c->metrics_mu);
    if (success) m->success++;
    else m->error++;
    m->count++;
    m->sum += secs;
    for (int b = 0; b < SB_EVENT_NBUCKETS; b++)
        if (secs <= sb_event_buckets[b]) m->bucket[b]++;
    pthread_mutex_unlock(&c->metrics_mu);
}

void sb_consumer_prom(sb_consumer_t *c, sb_prom_t *p) {
    sb_sub_metrics_t m[SB_CONSUMER_MAX_SUBS];
    pthread_mutex_lock(&c->metrics_mu);
    memcpy(m, c->metrics, sizeof m);
    pthread_mutex_unlock(&c->metrics_mu);
    sb_prom_family(p, "events_processed_total", "counter",
                   "Events whose handler ran, by event type and outcome.");
    for (int i = 0; i < c->nsubs; i++) {
        sb_prom_label_t ok[2] = {{"event_type", c->subs[i].type}, {"status", "success"}};
        sb_prom_label_t bad[2] = {{"event_type", c->subs[i].type}, {"status", "error"}};
        sb_prom_sample(p, "events_processed_total", ok, 2, (double)m[i].success);
        sb_prom_sample(p, "events_processed_total", bad, 2, (double)m[i].error);
    }
    sb_prom_family(p, "event_processing_seconds", "histogram", "Event handler run time.");
    for (int i = 0; i < c->nsubs; i++) {
        sb_prom_label_t l[1] = {{"event_type", c->subs[i].type}};
        sb_prom_histogram(p, "event_processing_seconds", l, 1, sb_event_buckets, m[i].bucket,
                          SB_EVENT_NBUCKETS, m[i].sum, m[i].count);
    }
}

/* XGROUP CREATE for every stream; an existing group is fine. */
static int sb_consumer_groups(sb_consumer_t *c) {
    for (int i = 0; i < c->nsubs; i++) {
        redisReply *rep = sb_redis_cmd(c->redis, "XGROUP CREATE %s %s %s MKSTREAM",
                                       c->subs[i].key, c->group, c->start_id);
        if (!rep) return SB_EREDIS;
        int bad = rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "BUSYGROUP", 9) != 0;
        if (bad) sb_error("events", "cannot create group %s on %s: %s", c->group,
                          c->subs[i].key, rep->str);
        freeReplyObject(rep);
        if (bad) return SB_EPROTO;
    }
    c->ready = 1;
    return SB_OK;
}

/* ---- acknowledging and dead-lettering ---------------------------------------------------- */

/* Sends b until it gets through, reconnecting as needed (only for idempotent commands).
 * Returns 0 with the replies in replies (caller frees), or SB_ECANCELED. */
static int sb_consumer_send(sb_consumer_t *c, const sb_batch_t *b, redisReply **replies) {
    for (;;) {
        if (sb_redis_ensure(c->redis, c->stop) != SB_OK) return SB_ECANCELED;
        if (sb_redis_pipeline(c->redis, b, replies) == SB_OK) return SB_OK;
        c->ready = 0;
    }
}

static int sb_consumer_run_batch(sb_consumer_t *c, sb_batch_t *b) {
    enum { MAXR = 8 };
    redisReply *rep[MAXR];
    size_t n = sb_batch_count(b);
    int rc = n <= MAXR ? sb_consumer_send(c, b, rep) : SB_EINVAL;
    if (rc == SB_OK) {
        for (size_t i = 0; i < n; i++)
            if (sb_reply_is_error(rep[i]))
                sb_warn("events", "redis refused a step: %s", rep[i]->str);
        sb_replies_free(rep, n);
    }
    sb_batch_free(b);
    return rc;
}

static void sb_processed_key(const sb_consumer_t *c, const char *event_id, char *buf,
                             size_t len) {
    snprintf(buf, len, "agent:events:processed:%s:%s", c->group, event_id);
}

/* Marks ev processed (idempotency on) and XACKs it. Returns 0 or SB_ECANCELED. */
static int sb_consumer_ack(sb_consumer_t *c, const sb_sub_t *s, const sb_event_t *ev) {
    char key[512];
    sb_batch_t *b = sb_batch_create();
    int rc = b ? SB_OK : SB_ENOMEM;
    if (!rc && c->o.idempotency_ttl_s > 0 && ev->event_id) {
        sb_processed_key(c, ev->event_id, key, sizeof key);
        rc = sb_batch_add(b, "SET %s 1 EX %d NX", key, c->o.idempotency_ttl_s);
    }
    if (!rc) rc = sb_batch_add(b, "XACK %s %s %s", s->key, c->group, ev->id);
    if (rc) {
        sb_batch_free(b);
        return rc;
    }
    return sb_consumer_run_batch(c, b);
}

/* XADD dead {fields…, reason, deliveries, source_stream, source_id, group} + XACK, in MULTI. */
static int sb_dead_batch(sb_consumer_t *c, const sb_sub_t *s, const sb_event_t *ev,
                         const char *reason, sb_batch_t *b) {
    size_t nf = ev->fields ? ev->fields->elements : 0;
    const char **argv = calloc(nf + 20, sizeof *argv);
    size_t *lens = calloc(nf + 20, sizeof *lens);
    char ml[24], dl[24];
    int argc = 0, rc = argv && lens ? SB_OK : SB_ENOMEM;
    snprintf(ml, sizeof ml, "%ld", c->o.dead_maxlen);
    snprintf(dl, sizeof dl, "%lld", ev->deliveries);
#define SB_ARG(p, l) (argv[argc] = (p), lens[argc++] = (l))
#define SB_SARG(p) SB_ARG(p, strlen(p))
    if (!rc) {
        SB_SARG("XADD");
        SB_SARG(s->dead_key);
        if (c->o.dead_maxlen > 0) {
            SB_SARG("MAXLEN");
            SB_SARG("~");
            SB_SARG(ml);
        }
        SB_SARG("*");
        for (size_t i = 0; i + 1 < nf; i += 2) {
            const redisReply *k = ev->fields->element[i], *v = ev->fields->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
            SB_ARG(k->str, k->len);
            SB_ARG(v->str, v->len);
        }
        SB_SARG("reason");
        SB_SARG(reason);
        SB_SARG("deliveries");
        SB_SARG(dl);
        SB_SARG("source_stream");
        SB_SARG(s->key);
        SB_SARG("source_id");
        SB_SARG(ev->id);
        SB_SARG("group");
        SB_SARG(c->group);
    }
#undef SB_SARG
#undef SB_ARG
    if (!rc) rc = sb_batch_add(b, "MULTI");
    if (!rc) rc = sb_batch_addargv(b, argc, argv, lens);
    if (!rc) rc = sb_batch_add(b, "XACK %s %s %s", s->key, c->group, ev->id);
    if (!rc) rc = sb_batch_add(b, "EXEC");
    free(argv);
    free(lens);
    return rc;
}

/* Dead-letters ev (and tells a waiting requester it failed). Returns 0 or SB_ECANCELED. */
static int sb_consumer_dead(sb_consumer_t *c, const sb_sub_t *s, const sb_event_t *ev,
                            const char *reason) {
    sb_batch_t *b = sb_batch_create();
    int rc = b ? sb_dead_batch(c, s, ev, reason, b) : SB_ENOMEM;
    if (rc) {
        sb_batch_free(b);
        return rc;
    }
    rc = sb_consumer_run_batch(c, b);
    if (rc != SB_OK) return rc;
    c->stats.dead++;
    sb_warn("events", "event %s (%s, entry %s) dead-lettered to %s: %s",
            ev->event_id ? ev->event_id : "?", s->type, ev->id, s->dead_key, reason);
    if (sb_event_response_stream(ev)) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "error");
        cJSON_AddStringToObject(o, "error", reason);
        char *text = sb_json_print(o);
        if (text) sb_events_respond(c->redis, ev, text);
        free(text);
        cJSON_Delete(o);
    }
    return SB_OK;
}

/* ---- the decision for one entry ---------------------------------------------------------- */

/* 1 when idempotency is on and ev's event id was processed already; SB_EREDIS. */
static int sb_consumer_seen(sb_consumer_t *c, const sb_event_t *ev) {
    char key[512];
    if (c->o.idempotency_ttl_s <= 0 || !ev->event_id) return 0;
    sb_processed_key(c, ev->event_id, key, sizeof key);
    redisReply *rep = sb_redis_cmd(c->redis, "EXISTS %s", key);
    if (!rep) return SB_EREDIS;
    int seen = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    freeReplyObject(rep);
    return seen;
}

/* Runs the handler (sb_consumer_keep allowed meanwhile) and acts on its verdict. */
static int sb_consumer_dispatch(sb_consumer_t *c, const sb_sub_t *s, const sb_event_t *ev) {
    char why[512] = "";
    c->in_handler = 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sb_event_verdict_t v = s->cb(ev, c->redis, s->user, why, sizeof why);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    c->in_handler = 0;
    sb_consumer_observe(c, (int)(s - c->subs), v == SB_EVENT_ACK,
                        (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    if (v == SB_EVENT_ACK) {
        c->stats.handled++;
        return sb_consumer_ack(c, s, ev);
    }
    if (v == SB_EVENT_DEAD) return sb_consumer_dead(c, s, ev, why[0] ? why : "handler gave up");
    c->stats.retried++;
    sb_warn("events", "event %s (%s, entry %s) failed on delivery %lld of %d: %s; it will be "
            "delivered again after %d ms", ev->event_id, s->type, ev->id, ev->deliveries,
            c->o.max_deliveries, why[0] ? why : "handler failed", c->o.min_idle_ms);
    return SB_OK;
}

/* ---- the batch in hand ------------------------------------------------------------------ */

static const char *sb_entry_id(const redisReply *e) {
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) return NULL;
    return e->element[0]->type == REDIS_REPLY_STRING ? e->element[0]->str : NULL;
}

/* Appends an entry to the batch in hand. Returns 0 or SB_ENOMEM. */
static int sb_hand_add(sb_consumer_t *c, const sb_sub_t *s, const redisReply *entry,
                       long long deliveries) {
    if (c->nhand == c->hand_cap) {
        size_t cap = c->hand_cap ? 2 * c->hand_cap : 16;
        sb_inhand_t *h = realloc(c->hand, cap * sizeof *h);
        if (!h) return SB_ENOMEM;
        c->hand = h;
        c->hand_cap = cap;
    }
    c->hand[c->nhand++] = (sb_inhand_t){.sub = s, .entry = entry, .deliveries = deliveries};
    return SB_OK;
}

/* The keep script over hand[from..to), all of one stream: marks the entries other consumers
 * took as lost. Returns 0, SB_EREDIS or SB_ENOMEM. */
static int sb_hand_renew_run(sb_consumer_t *c, size_t from, size_t to) {
    const char **argv = malloc((to - from + 3) * sizeof *argv);
    size_t *idx = malloc((to - from) * sizeof *idx);
    int argc = 0, n = 0, rc = argv && idx ? SB_OK : SB_ENOMEM;
    if (!rc) {
        argv[argc++] = c->hand[from].sub->key;
        argv[argc++] = c->group;
        argv[argc++] = c->name;
    }
    for (size_t i = from; !rc && i < to; i++) {
        const char *id = sb_entry_id(c->hand[i].entry);
        if (!id || c->hand[i].lost) continue; /* not an entry, or lost for good */
        idx[n++] = i;
        argv[argc++] = id;
    }
    redisReply *rep = !rc && n ? sb_redis_eval(c->redis, &c->keep, 1, argc, argv, NULL) : NULL;
    if (!rc && n && !rep) rc = SB_EREDIS;
    for (int k = 0; rep && rep->type == REDIS_REPLY_ARRAY && k < n && k < (int)rep->elements; k++)
        c->hand[idx[k]].lost = rep->element[k]->integer != 1;
    if (rep) freeReplyObject(rep);
    free(argv);
    free(idx);
    return rc;
}

/* Resets the idle time of every entry in hand from hand[at] on that is still ours (one script
 * call per run of one stream), marking the others lost. Returns 0, SB_EREDIS, SB_ENOMEM. */
static int sb_hand_renew(sb_consumer_t *c) {
    int64_t now = sb_mono_ms();
    for (size_t i = c->at, j; i < c->nhand; i = j) {
        for (j = i + 1; j < c->nhand && c->hand[j].sub == c->hand[i].sub; j++) {}
        int rc = sb_hand_renew_run(c, i, j);
        if (rc != SB_OK) return rc;
    }
    c->hand_at = now;
    return SB_OK;
}

/* 1 if hand[at] is still ours to handle: always when the batch's idle time was reset
 * recently, else after a renewal; 0 if another consumer took it; SB_EREDIS. */
static int sb_consumer_still_ours(sb_consumer_t *c) {
    const sb_inhand_t *h = &c->hand[c->at];
    if (!h->lost && sb_mono_ms() - c->hand_at > c->o.min_idle_ms / 2) {
        int rc = sb_hand_renew(c);
        if (rc != SB_OK) return rc;
    }
    if (h->lost) sb_info("events", "entry %s of %s was taken over by another consumer while it "
                         "waited in our batch: skipped", sb_entry_id(h->entry), h->sub->key);
    return !h->lost;
}

int sb_consumer_keep_every_ms(const sb_consumer_t *c) {
    return c->o.min_idle_ms >= 4 ? c->o.min_idle_ms / 4 : 1;
}

int sb_consumer_keep(sb_consumer_t *c) {
    if (!c->in_handler) return SB_EINVAL;
    sb_inhand_t *h = &c->hand[c->at];
    if (h->lost) return 0;
    if (sb_mono_ms() - c->hand_at < sb_consumer_keep_every_ms(c)) return 1;
    int rc = sb_hand_renew(c);
    if (rc != SB_OK) return rc;
    if (h->lost) sb_warn("events", "entry %s of %s was taken over by another consumer while its "
                         "handler ran: its claim was not renewed within min_idle_ms (%d)",
                         sb_entry_id(h->entry), h->sub->key, c->o.min_idle_ms);
    return !h->lost;
}

/* Deals with hand[at]. Returns 0, SB_EREDIS, SB_ECANCELED. */
static int sb_consumer_handle(sb_consumer_t *c) {
    const sb_sub_t *s = c->hand[c->at].sub;
    long long deliveries = c->hand[c->at].deliveries;
    sb_event_t ev;
    cJSON *data = NULL;
    char why[256], reason[300];
    int prc = sb_event_from_reply(&ev, s->key, c->hand[c->at].entry, &data, why, sizeof why);
    int rc = SB_OK;
    ev.deliveries = deliveries;
    if (prc == SB_EPROTO) return SB_OK; /* nothing to act on */
    int ours = sb_consumer_still_ours(c);
    if (ours <= 0) {
        cJSON_Delete(data);
        return ours;
    }
    if (deliveries > c->o.max_deliveries) {
        snprintf(reason, sizeof reason, "delivered %lld times (max %d)", deliveries,
                 c->o.max_deliveries);
        rc = sb_consumer_dead(c, s, &ev, reason);
    } else if (prc != SB_OK) {
        c->stats.malformed++;
        rc = sb_consumer_dead(c, s, &ev, why);
    } else {
        int seen = sb_consumer_seen(c, &ev);
        if (seen == 1) {
            c->stats.duplicates++;
            sb_info("events", "event %s (%s, entry %s) already processed: acknowledged without "
                    "running the handler again", ev.event_id, s->type, ev.id);
            rc = sb_consumer_ack(c, s, &ev);
        } else {
            rc = seen < 0 ? seen : sb_consumer_dispatch(c, s, &ev);
        }
    }
    cJSON_Delete(data);
    return rc;
}

/* Deals with every entry in hand, in order (their idle time was reset at got_at), then empties
 * the hand. Returns the number dealt with, or a negative error. */
static int sb_hand_run(sb_consumer_t *c, int64_t got_at) {
    int rc = SB_OK, n = 0;
    c->hand_at = got_at;
    for (c->at = 0; rc == SB_OK && c->at < c->nhand; c->at++, n++) rc = sb_consumer_handle(c);
    c->nhand = c->at = 0;
    return rc == SB_OK ? n : rc;
}

/* ---- claiming ---------------------------------------------------------------------------- */

/* Delivery counts of the claimed entries (one XPENDING per entry, pipelined) into counts. */
static int sb_claim_counts(sb_consumer_t *c, const sb_sub_t *s, const redisReply *entries,
                           long long *counts) {
    sb_batch_t *b = sb_batch_create();
    redisReply **rep = calloc(entries->elements, sizeof *rep);
    int rc = b && rep ? SB_OK : SB_ENOMEM;
    for (size_t i = 0; !rc && i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        const char *id = e->type == REDIS_REPLY_ARRAY && e->elements == 2 ? e->element[0]->str : "0-0";
        rc = sb_batch_add(b, "XPENDING %s %s %s %s 1", s->key, c->group, id, id);
    }
    if (!rc) rc = sb_redis_pipeline(c->redis, b, rep);
    for (size_t i = 0; !rc && i < entries->elements; i++) {
        const redisReply *p = rep[i];
        counts[i] = 2; /* claimed at least once after a first delivery */
        if (p->type == REDIS_REPLY_ARRAY && p->elements == 1 && p->element[0]->elements == 4 &&
            p->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
            counts[i] = p->element[0]->element[3]->integer;
    }
    if (b && rep) sb_replies_free(rep, sb_batch_count(b));
    free(rep);
    sb_batch_free(b);
    return rc;
}

/* One XAUTOCLAIM round on s: claims and handles entries. Returns the number handled, 0 at the
 * end of the pending list (cursor back to 0-0), or a negative error. *more says whether the
 * cursor has not wrapped yet. */
static int sb_claim_round(sb_consumer_t *c, sb_sub_t *s, int *more) {
    int64_t got_at = sb_mono_ms(); /* before the claim: never later than Redis's reset */
    redisReply *rep = sb_redis_cmd(c->redis, "XAUTOCLAIM %s %s %s %d %s COUNT %d", s->key,
                                   c->group, c->name, c->o.min_idle_ms, s->claim_cursor,
                                   c->o.count);
    *more = 0;
    if (!rep) return SB_EREDIS;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
        rep->element[1]->type != REDIS_REPLY_ARRAY) {
        if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOGROUP", 7) == 0) c->ready = 0;
        freeReplyObject(rep);
        return SB_EPROTO;
    }
    snprintf(s->claim_cursor, sizeof s->claim_cursor, "%s", rep->element[0]->str);
    *more = strcmp(s->claim_cursor, "0-0") != 0;
    const redisReply *entries = rep->element[1];
    long long *counts = calloc(entries->elements + 1, sizeof *counts);
    int rc = counts ? sb_claim_counts(c, s, entries, counts) : SB_ENOMEM;
    for (size_t i = 0; rc == SB_OK && i < entries->elements; i++) {
        c->stats.claimed++;
        rc = sb_hand_add(c, s, entries->element[i], counts[i]);
    }
    rc = rc == SB_OK ? sb_hand_run(c, got_at) : rc;
    c->nhand = 0;
    free(counts);
    freeReplyObject(rep);
    return rc;
}

/* A claim pass over every stream, if due. Returns entries handled or a negative error. */
static int sb_consumer_claim(sb_consumer_t *c) {
    int64_t now = sb_mono_ms();
    if (now < c->next_claim) return 0;
    int total = 0, unfinished = 0;
    for (int i = 0; i < c->nsubs; i++) {
        int more = 1;
        for (int round = 0; more && round < SB_CLAIM_ROUNDS; round++) {
            int n = sb_claim_round(c, &c->subs[i], &more);
            if (n < 0) return n;
            total += n;
        }
        unfinished |= more;
    }
    int interval = c->o.min_idle_ms / 2;
    if (interval > SB_CLAIM_INTERVAL_MAX) interval = SB_CLAIM_INTERVAL_MAX;
    if (interval < 10) interval = 10;
    c->next_claim = unfinished ? now : now + interval;
    return total;
}

/* ---- reading new entries ----------------------------------------------------------------- */

static const sb_sub_t *sb_sub_by_key(const sb_consumer_t *c, const char *key) {
    for (int i = 0; i < c->nsubs; i++)
        if (!strcmp(c->subs[i].key, key)) return &c->subs[i];
    return NULL;
}

/* XREADGROUP … BLOCK over every stream, blocking no longer than the next claim pass. */
static redisReply *sb_consumer_xreadgroup(sb_consumer_t *c) {
    const char *argv[10 + 2 * SB_CONSUMER_MAX_SUBS];
    char cnt[16], blk[16];
    int argc = 0;
    int64_t until_claim = c->next_claim - sb_mono_ms();
    int block = until_claim < c->o.block_ms ? (int)until_claim : c->o.block_ms;
    snprintf(cnt, sizeof cnt, "%d", c->o.count);
    snprintf(blk, sizeof blk, "%d", block < 1 ? 1 : block); /* BLOCK 0 would be forever */
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = c->group;
    argv[argc++] = c->name;
    argv[argc++] = "COUNT";
    argv[argc++] = cnt;
    argv[argc++] = "BLOCK";
    argv[argc++] = blk;
    argv[argc++] = "STREAMS";
    for (int i = 0; i < c->nsubs; i++) argv[argc++] = c->subs[i].key;
    for (int i = 0; i < c->nsubs; i++) argv[argc++] = ">";
    return sb_redis_cmdargv(c->redis, argc, argv, NULL);
}

static int sb_consumer_read(sb_consumer_t *c) {
    /* taken before the read: a reply that reaches us late (a stalled consumer) looks as old
     * as it may really be, and is renewed before its turn */
    int64_t got_at = sb_mono_ms();
    redisReply *rep = sb_consumer_xreadgroup(c);
    if (!rep) return SB_EREDIS;
    int rc = SB_OK;
    if (rep->type == REDIS_REPLY_ERROR) {
        if (strncmp(rep->str, "NOGROUP", 7) == 0) c->ready = 0; /* Redis lost it: recreate */
        else sb_warn("events", "XREADGROUP refused: %s", rep->str);
        rc = c->ready ? SB_EPROTO : SB_OK;
    }
    for (size_t i = 0; rc == SB_OK && rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        const redisReply *sr = rep->element[i];
        const sb_sub_t *s = sr->type == REDIS_REPLY_ARRAY && sr->elements == 2
                                ? sb_sub_by_key(c, sr->element[0]->str) : NULL;
        for (size_t j = 0; s && rc == SB_OK && j < sr->element[1]->elements; j++)
            rc = sb_hand_add(c, s, sr->element[1]->element[j], 1);
    }
    rc = rc == SB_OK ? sb_hand_run(c, got_at) : rc;
    c->nhand = 0;
    freeReplyObject(rep);
    return rc;
}

/* ---- the loop ---------------------------------------------------------------------------- */

int sb_consumer_poll(sb_consumer_t *c, const atomic_int *stop) {
    if (c->nsubs == 0) return SB_EINVAL;
    c->stop = stop;
    if (sb_redis_ensure(c->redis, stop) != SB_OK) return SB_ECANCELED;
    int rc = c->ready ? SB_OK : sb_consumer_groups(c);
    int claimed = rc == SB_OK ? sb_consumer_claim(c) : rc;
    int read = claimed >= 0 && c->ready ? sb_consumer_read(c) : 0;
    rc = claimed < 0 ? claimed : read < 0 ? read : claimed + read;
    if (rc == SB_EREDIS) c->ready = 0;
    return rc;
}

int sb_consumer_run(sb_consumer_t *c, const atomic_int *stop) {
    while (!atomic_load(stop)) {
        int rc = sb_consumer_poll(c, stop);
        if (rc == SB_EINVAL) return rc;
        if (rc == SB_EPROTO) sb_sleep_ms(c->o.block_ms, stop); /* do not spin on a refusal */
    }
    return SB_OK;
}
