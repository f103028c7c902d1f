/* Asynchronous Redis connection with reconnect and a stall watchdog (see aredis.h).
 *
 * States: DOWN (a retry timer is armed) → CONNECTING (an sb_aconn_t exists, TCP connect and
 * TLS handshake in progress; AUTH/SELECT already queued behind them) → UP. With Sentinels the
 * address is resolved on a libuv worker first. The connection (aconn.h) releases itself once
 * it reports closed; we then only forget the pointer. We close one ourselves (sb_aconn_close)
 * from timer callbacks, from sb_aredis_close, when AUTH or SELECT is refused, or when a
 * demoted master answers READONLY (closing from inside its callbacks is safe). Each accepted
 * send allocates one sb_acall_t that the connection hands back to sb_aredis_reply exactly
 * once (with NULL when the connection dies first).
 *
 * With Redis Cluster seeds (addr->cluster) the object has no connection of its own: every call
 * is forwarded to the cluster router (acluster.h: one plain sb_aredis_t per node), and the
 * on-up hooks run each time the router is usable again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/aconn.h"
#include "gateway/acluster.h"
#include "gateway/aredis.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/log.h"
#include "switchboard/sentinel.h"

#define SB_AREDIS_BACKOFF_MIN_MS 100
#define SB_AREDIS_BACKOFF_MAX_MS 5000
#define SB_AREDIS_CONNECT_MS 2000  /* a connect taking longer is abandoned and retried */
#define SB_AREDIS_WATCHDOG_MS 500

typedef enum { SB_AR_DOWN, SB_AR_CONNECTING, SB_AR_UP } sb_ar_state_t;

struct sb_aredis {
    uv_loop_t *loop;
    sb_aconn_t *ac;         /* NULL while DOWN */
    sb_ar_state_t state;
    sb_redis_addr_t addr;   /* owned copy */
    char name[32];
    uv_timer_t retry;       /* fires the next connect attempt */
    uv_timer_t watchdog;    /* checks connect time-outs and stalled replies */
    int open_handles;       /* timers not yet closed; the struct is freed at 0 */
    int closing;
    int lost;               /* a loss was logged, no recovery logged yet */
    int backoff_ms;         /* wait before the next attempt */
    int pending;            /* sends whose callback has not run */
    int64_t progress_ms;    /* monotonic time of the last reply, or of the first send */
    int64_t since_ms;       /* when the current attempt started / the connection came up */
    unsigned long long reconnects;
    sb_aredis_hook_t *hooks;     /* run, in this order, each time the connection comes up */
    sb_aredis_hook_t *hook_next; /* while they run: the next one (removal moves it on) */
    /* Sentinel (sentinel.h): the address is resolved on a libuv worker before each connect */
    uv_work_t resolve;      /* in flight while resolving (counted in open_handles) */
    int resolving;
    int resolve_rc;
    char resolve_err[256];
    sb_redis_addr_t target; /* what the worker found (owned while resolve_rc == 0) */
    char server[300];       /* the master last connected to, "" before */
    sb_aredis_t *watch;     /* a Sentinel connection subscribed to +switch-master, or NULL */
    sb_aredis_hook_t watch_hook; /* on watch: subscribes again each time it comes up */
    sb_acluster_t *cl;      /* Redis Cluster: the router taking every call, or NULL */
};

typedef struct {
    sb_aredis_t *ar;
    sb_aredis_cb cb;
    void *priv;
} sb_acall_t;

static void sb_aredis_connect(sb_aredis_t *ar);

int sb_aredis_up(const sb_aredis_t *ar) {
    if (ar && ar->cl) return sb_acluster_up(ar->cl);
    return ar && ar->state == SB_AR_UP;
}
unsigned long long sb_aredis_reconnects(const sb_aredis_t *ar) {
    return ar->cl ? sb_acluster_reconnects(ar->cl) : ar->reconnects;
}

/* ---- reconnecting ------------------------------------------------------------------------ */

static void sb_aredis_retry_cb(uv_timer_t *t) { sb_aredis_connect(t->data); }

/* Forgets the context and arms the retry timer with the current backoff, then grows it. */
static void sb_aredis_schedule(sb_aredis_t *ar, const char *why) {
    char where[300];
    ar->ac = NULL;
    ar->state = SB_AR_DOWN;
    if (ar->closing) return;
    if (!ar->lost)
        sb_warn("gateway", "redis (%s) unavailable at %s: %s; reconnecting with backoff",
                ar->name, sb_redis_addr_str(&ar->addr, where, sizeof where), why);
    ar->lost = 1;
    uv_timer_start(&ar->retry, sb_aredis_retry_cb, (uint64_t)ar->backoff_ms, 0);
    ar->backoff_ms = ar->backoff_ms * 2 > SB_AREDIS_BACKOFF_MAX_MS ? SB_AREDIS_BACKOFF_MAX_MS
                                                                    : ar->backoff_ms * 2;
}

/* Runs every hook in order; a hook removed by an earlier one is skipped (remove moves
 * hook_next on), and closing the connection from a hook ends the run. */
static void sb_aredis_run_up_hooks(sb_aredis_t *ar) {
    for (sb_aredis_hook_t *h = ar->hooks; h; h = ar->hook_next) {
        ar->hook_next = h->next;
        h->fn(h->ud);
    }
    ar->hook_next = NULL;
}

static void sb_aredis_on_connect(void *data) {
    sb_aredis_t *ar = data;
    ar->state = SB_AR_UP;
    ar->since_ms = sb_mono_ms();
    ar->progress_ms = ar->since_ms;
    if (ar->lost) {
        char where[300];
        ar->reconnects++;
        sb_info("gateway", "redis (%s) reconnected to %s", ar->name,
                sb_redis_addr_str(&ar->addr, where, sizeof where));
    }
    ar->lost = 0;
    sb_aredis_run_up_hooks(ar);
}

/* The connection went (or never came up): retry with backoff. */
static void sb_aredis_on_closed(void *data, const char *why) {
    sb_aredis_t *ar = data;
    /* a connection that broke soon after it was made is flapping: keep growing the backoff */
    if (ar->state == SB_AR_UP && sb_mono_ms() - ar->since_ms > 1000)
        ar->backoff_ms = SB_AREDIS_BACKOFF_MIN_MS;
    sb_aredis_schedule(ar, why);
}

/* A refused AUTH / SELECT is a configuration error: drop the connection and retry later. */
static void sb_aredis_setup_reply(sb_aredis_t *ar, const char *cmd, const redisReply *reply) {
    if (!reply || reply->type != REDIS_REPLY_ERROR || !ar->ac) return;
    sb_error("gateway", "redis (%s) refused %s: %s", ar->name, cmd, reply->str);
    sb_aconn_close(ar->ac);
    sb_aredis_schedule(ar, "set-up command refused");
}

static void sb_aredis_auth_cb(redisReply *reply, void *priv) {
    sb_aredis_setup_reply(priv, "AUTH", reply);
}

static void sb_aredis_select_cb(redisReply *reply, void *priv) {
    sb_aredis_setup_reply(priv, "SELECT", reply);
}

/* Queues AUTH and SELECT behind the handshake, with the credentials of `to`. */
static void sb_aredis_setup(sb_aredis_t *ar, const sb_redis_addr_t *to) {
    sb_batch_t *b = sb_batch_create();
    if (!b) return; /* out of memory: the commands fail, and so the connection does */
    if (to->password && to->user)
        sb_batch_add(b, "AUTH %s %s", to->user, to->password);
    else if (to->password)
        sb_batch_add(b, "AUTH %s", to->password);
    if (sb_batch_count(b)) sb_aconn_send(ar->ac, b, sb_aredis_auth_cb, ar);
    sb_batch_reset(b);
    if (to->db && sb_batch_add(b, "SELECT %d", to->db) == SB_OK)
        sb_aconn_send(ar->ac, b, sb_aredis_select_cb, ar);
    sb_batch_free(b);
}

/* Starts connecting to `to` (ar->addr, or the master the Sentinels named; its TLS options are
 * ar->addr's). */
static void sb_aredis_connect_to(sb_aredis_t *ar, const sb_redis_addr_t *to) {
    static const sb_aconn_events_t events = {sb_aredis_on_connect, sb_aredis_on_closed};
    char why[256];
    sb_aconn_t *ac = sb_aconn_open(ar->loop, to, &events, ar, why, sizeof why);
    if (!ac) {
        sb_aredis_schedule(ar, why);
        return;
    }
    ar->ac = ac;
    ar->state = SB_AR_CONNECTING;
    ar->since_ms = sb_mono_ms();
    sb_aredis_setup(ar, to);
}

static void sb_aredis_unref(sb_aredis_t *ar);

/* libuv worker thread: asks the Sentinels (blocking, short timeouts). Touches only the
 * immutable addr and the resolve_* fields, which the loop thread leaves alone meanwhile. */
static void sb_aredis_resolve_work(uv_work_t *w) {
    sb_aredis_t *ar = w->data;
    ar->resolve_rc = sb_sentinel_resolve(&ar->addr, &ar->target, ar->resolve_err,
                                         sizeof ar->resolve_err);
}

/* Loop thread: connects to what the Sentinels named, logging when the master moved. */
static void sb_aredis_resolved(uv_work_t *w, int status) {
    sb_aredis_t *ar = w->data;
    ar->resolving = 0;
    int ok = status == 0 && ar->resolve_rc == SB_OK;
    if (ok && !ar->closing) {
        char now[sizeof ar->server];
        sb_redis_addr_str(&ar->target, now, sizeof now);
        if (ar->server[0] && strcmp(ar->server, now) != 0)
            sb_info("gateway", "redis (%s): master moved from %s to %s: following the failover",
                    ar->name, ar->server, now);
        snprintf(ar->server, sizeof ar->server, "%s", now);
        sb_aredis_connect_to(ar, &ar->target);
    } else if (!ar->closing) {
        sb_aredis_schedule(ar, status ? "cannot ask the Sentinels" : ar->resolve_err);
    }
    if (ok) sb_redis_addr_free(&ar->target);
    sb_aredis_unref(ar);
}

static void sb_aredis_connect(sb_aredis_t *ar) {
    if (ar->closing || ar->ac || ar->resolving || ar->cl) return;
    if (!sb_sentinel_enabled(&ar->addr)) {
        sb_aredis_connect_to(ar, &ar->addr);
        return;
    }
    ar->resolve.data = ar;
    if (uv_queue_work(ar->loop, &ar->resolve, sb_aredis_resolve_work, sb_aredis_resolved) != 0) {
        sb_aredis_schedule(ar, "cannot ask the Sentinels");
        return;
    }
    ar->resolving = 1;
    ar->open_handles++;
}

/* Drops the connection now (or, while down, retries at once): the next attempt resolves the
 * master again. Safe from inside the connection's own callbacks. */
static void sb_aredis_drop(sb_aredis_t *ar, const char *why) {
    if (ar->closing || ar->resolving) return;
    ar->backoff_ms = SB_AREDIS_BACKOFF_MIN_MS;
    if (!ar->ac) {
        uv_timer_start(&ar->retry, sb_aredis_retry_cb, 0, 0);
        return;
    }
    sb_warn("gateway", "redis (%s): %s; dropping the connection", ar->name, why);
    sb_aconn_close(ar->ac); /* pending callbacks get NULL; no closed event */
    sb_aredis_schedule(ar, why);
}

/* Drops a connection that takes too long to connect or to answer: every pending callback
 * gets NULL, and the next attempt follows. */
static void sb_aredis_watchdog_cb(uv_timer_t *t) {
    sb_aredis_t *ar = t->data;
    int64_t now = sb_mono_ms();
    const char *why = NULL;
    if (ar->state == SB_AR_CONNECTING && now - ar->since_ms > SB_AREDIS_CONNECT_MS)
        why = "connect timed out";
    else if (ar->state == SB_AR_UP && ar->pending > 0 &&
             now - ar->progress_ms > SB_AREDIS_STALL_MS)
        why = "server stopped answering";
    if (why) sb_aredis_drop(ar, why);
}

/* ---- following a failover (Sentinel) -------------------------------------------------------- */

/* A message on +switch-master: the named master moved; drop a connection to the old one. */
static void sb_aredis_switch_cb(redisReply *reply, void *priv) {
    sb_aredis_t *ar = priv;
    char host[SB_SENTINEL_HOST_MAX], now[sizeof ar->server];
    int port;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING || strcmp(reply->element[0]->str, "message") ||
        reply->element[2]->type != REDIS_REPLY_STRING ||
        !sb_sentinel_switch_parse(reply->element[2]->str, ar->addr.sentinel_master, host,
                                  sizeof host, &port))
        return;
    snprintf(now, sizeof now, "%s:%d", host, port);
    sb_info("gateway", "redis (%s): the Sentinels switched master '%s' to %s", ar->name,
            ar->addr.sentinel_master, now);
    if (strcmp(now, ar->server) != 0 || ar->state != SB_AR_UP)
        sb_aredis_drop(ar, "following the failover");
}

static void sb_aredis_watch_up(void *ud) {
    sb_aredis_t *ar = ud;
    sb_batch_t *b = sb_batch_create();
    if (!b || sb_batch_add(b, "SUBSCRIBE +switch-master") != SB_OK ||
        sb_aredis_subscribe(ar->watch, b, sb_aredis_switch_cb, ar) != SB_OK)
        sb_warn("gateway", "redis (%s): cannot subscribe to +switch-master", ar->name);
    sb_batch_free(b);
}

/* With a Sentinel master, a second connection (to a Sentinel) watches for +switch-master. */
static void sb_aredis_watch_start(sb_aredis_t *ar) {
    if (!sb_sentinel_enabled(&ar->addr) || !ar->addr.sentinel_master) return;
    sb_redis_addr_t sentinel = ar->addr;
    sentinel.sentinel_master = NULL; /* connect to a Sentinel itself */
    char name[32];
    snprintf(name, sizeof name, "%.20s-sentinel", ar->name);
    ar->watch = sb_aredis_create(ar->loop, &sentinel, name);
    if (!ar->watch) {
        sb_warn("gateway", "redis (%s): cannot watch the Sentinels for failovers", ar->name);
        return;
    }
    sb_aredis_on_up(ar->watch, &ar->watch_hook, sb_aredis_watch_up, ar);
}

/* ---- life cycle --------------------------------------------------------------------------- */

/* The cluster router is usable (again): the owner's hooks run, as on a reconnect. */
static void sb_aredis_cluster_up(void *ud) { sb_aredis_run_up_hooks(ud); }

sb_aredis_t *sb_aredis_create(uv_loop_t *loop, const sb_redis_addr_t *addr, const char *name) {
    sb_aredis_t *ar = calloc(1, sizeof *ar);
    if (!ar) return NULL;
    if (sb_redis_addr_copy(&ar->addr, addr) != SB_OK) {
        free(ar);
        return NULL;
    }
    ar->loop = loop;
    snprintf(ar->name, sizeof ar->name, "%s", name);
    ar->backoff_ms = SB_AREDIS_BACKOFF_MIN_MS;
    uv_timer_init(loop, &ar->retry);
    uv_timer_init(loop, &ar->watchdog);
    ar->retry.data = ar->watchdog.data = ar;
    ar->open_handles = 2;
    if (addr->cluster) {
        ar->cl = sb_acluster_create(loop, addr, name, sb_aredis_cluster_up, ar);
        if (!ar->cl) {
            sb_aredis_close(ar);
            return NULL;
        }
        return ar;
    }
    uv_timer_start(&ar->watchdog, sb_aredis_watchdog_cb, SB_AREDIS_WATCHDOG_MS,
                   SB_AREDIS_WATCHDOG_MS);
    sb_aredis_watch_start(ar);
    sb_aredis_connect(ar);
    return ar;
}

/* One of the timers or the Sentinel resolution finished closing; the last one frees ar. */
static void sb_aredis_unref(sb_aredis_t *ar) {
    if (--ar->open_handles > 0) return;
    sb_redis_addr_free(&ar->addr);
    free(ar);
}

static void sb_aredis_closed_cb(uv_handle_t *h) { sb_aredis_unref(h->data); }

void sb_aredis_close(sb_aredis_t *ar) {
    if (!ar || ar->closing) return;
    ar->closing = 1;
    sb_acluster_close(ar->cl);
    ar->cl = NULL;
    sb_aredis_close(ar->watch);
    ar->watch = NULL;
    while (ar->hooks) sb_aredis_on_up_remove(ar->hooks);
    sb_aconn_close(ar->ac);
    ar->ac = NULL;
    ar->state = SB_AR_DOWN;
    uv_close((uv_handle_t *)&ar->retry, sb_aredis_closed_cb);
    uv_close((uv_handle_t *)&ar->watchdog, sb_aredis_closed_cb);
}

/* ---- commands ----------------------------------------------------------------------------- */

static void sb_aredis_reply(redisReply *reply, void *privdata) {
    sb_acall_t *call = privdata;
    sb_aredis_t *ar = call->ar;
    ar->pending--;
    ar->progress_ms = sb_mono_ms();
    call->cb(reply, call->priv);
    free(call);
    /* a demoted master answers READONLY: close it and find the master again */
    if (sb_sentinel_enabled(&ar->addr) && sb_sentinel_readonly(reply) && !ar->closing &&
        ar->ac) {
        sb_warn("gateway", "redis (%s): %s is a replica now (READONLY); finding the master "
                "through the Sentinels", ar->name, ar->server);
        sb_aconn_close(ar->ac);
        sb_aredis_on_closed(ar, "the server is a replica now (READONLY)");
    }
}

int sb_aredis_send(sb_aredis_t *ar, const sb_batch_t *b, sb_aredis_cb cb, void *priv) {
    if (ar->cl) return sb_acluster_send(ar->cl, b, cb, priv);
    if (ar->state != SB_AR_UP || sb_batch_count(b) == 0) return SB_EREDIS;
    sb_acall_t *call = malloc(sizeof *call);
    if (!call) return SB_ENOMEM;
    *call = (sb_acall_t){ar, cb, priv};
    int rc = sb_aconn_send(ar->ac, b, sb_aredis_reply, call);
    if (rc != SB_OK) {
        free(call);
        return rc == SB_ENOMEM ? SB_ENOMEM : SB_EREDIS;
    }
    if (ar->pending++ == 0) ar->progress_ms = sb_mono_ms();
    return SB_OK;
}

/* ---- scripts ------------------------------------------------------------------------------ */

typedef struct {
    sb_aredis_t *ar;
    sb_aredis_build_fn build;
    sb_aredis_cb cb;
    void *priv;
    sb_script_mode_t mode;
} sb_aeval_t;

/* Builds and sends e's call in its mode. Returns 0 or a SB_E* code (nothing sent). */
static int sb_aredis_eval_send(sb_aeval_t *e);

static void sb_aredis_eval_reply(redisReply *reply, void *priv) {
    sb_aeval_t *e = priv;
    if (sb_reply_is_noscript(reply) && e->mode == SB_SCRIPT_EVALSHA) {
        e->mode = SB_SCRIPT_EVAL;
        if (sb_aredis_eval_send(e) == SB_OK) return;
        reply = NULL; /* nothing ran and nothing will */
    }
    e->cb(reply, e->priv);
    free(e);
}

static int sb_aredis_eval_send(sb_aeval_t *e) {
    sb_batch_t *b = sb_batch_create();
    int rc = b ? e->build(b, e->mode, e->priv) : SB_ENOMEM;
    if (rc == SB_OK) rc = sb_aredis_send(e->ar, b, sb_aredis_eval_reply, e);
    sb_batch_free(b);
    return rc;
}

int sb_aredis_eval(sb_aredis_t *ar, sb_aredis_build_fn build, sb_aredis_cb cb, void *priv) {
    if (!sb_aredis_up(ar)) return SB_EREDIS;
    sb_aeval_t *e = malloc(sizeof *e);
    if (!e) return SB_ENOMEM;
    *e = (sb_aeval_t){ar, build, cb, priv, SB_SCRIPT_EVALSHA};
    int rc = sb_aredis_eval_send(e);
    if (rc != SB_OK) free(e);
    return rc;
}

/* ---- push mode ------------------------------------------------------------------------------ */

void sb_aredis_on_up(sb_aredis_t *ar, sb_aredis_hook_t *h, void (*fn)(void *ud), void *ud) {
    *h = (sb_aredis_hook_t){.fn = fn, .ud = ud, .ar = ar};
    sb_aredis_hook_t **link = &ar->hooks;
    while (*link) link = &(*link)->next;
    *link = h;
}

void sb_aredis_on_up_remove(sb_aredis_hook_t *h) {
    sb_aredis_t *ar = h->ar;
    if (!ar) return;
    sb_aredis_hook_t **link = &ar->hooks;
    while (*link != h) link = &(*link)->next;
    *link = h->next;
    if (ar->hook_next == h) ar->hook_next = h->next;
    h->next = NULL;
    h->ar = NULL;
}

int sb_aredis_key_node(const sb_aredis_t *ar, const char *key, char *host, size_t len,
                       int *port) {
    return ar && ar->cl ? sb_acluster_key_node(ar->cl, key, host, len, port) : SB_EINVAL;
}

int sb_aredis_subscribe(sb_aredis_t *ar, const sb_batch_t *b, sb_aredis_cb cb, void *priv) {
    if (ar->cl) return sb_acluster_subscribe(ar->cl, b, cb, priv);
    if (ar->state != SB_AR_UP) return SB_EREDIS;
    return sb_aconn_subscribe(ar->ac, b, cb, priv) == SB_OK ? SB_OK : SB_EREDIS;
}
