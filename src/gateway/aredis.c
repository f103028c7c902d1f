/* Asynchronous Redis connection with reconnect and a stall watchdog (see aredis.h).
 *
 * States: DOWN (a retry timer is armed) → CONNECTING (hiredis context exists, TCP connect in
 * progress; AUTH/SELECT already queued behind it) → UP. hiredis owns the context's memory:
 * after its connect callback fails or its disconnect callback runs, the context is gone and
 * we only forget the pointer. We free a context ourselves (redisAsyncFree) only from libuv
 * timer callbacks, never from inside a hiredis callback. Each accepted send allocates one
 * sb_acall_t that hiredis hands back to sb_aredis_reply exactly once (with NULL when the
 * connection dies first). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/async.h>
#include "gateway/aredis.h"
#include "gateway/aredis_uv.h"
#include "switchboard/clock.h"
#include "switchboard/error.h"
#include "switchboard/log.h"

#define SB_AREDIS_BACKOFF_MIN_MS 100
#define SB_AREDIS_BACKOFF_MAX_MS 5000
#define SB_AREDIS_CONNECT_MS 2000  /* a connect taking longer is abandoned and retried */
#define SB_AREDIS_WATCHDOG_MS 500

typedef enum { SB_AR_DOWN, SB_AR_CONNECTING, SB_AR_UP } sb_ar_state_t;

struct sb_aredis {
    uv_loop_t *loop;
    redisAsyncContext *ac;  /* NULL while DOWN */
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
    sb_aredis_cb push_cb;   /* subscription messages (push mode) */
    void *push_priv;
};

typedef struct {
    sb_aredis_t *ar;
    sb_aredis_cb cb;
    void *priv;
} sb_acall_t;

static void sb_aredis_connect(sb_aredis_t *ar);

int sb_aredis_up(const sb_aredis_t *ar) { return ar && ar->state == SB_AR_UP; }
unsigned long long sb_aredis_reconnects(const sb_aredis_t *ar) { return ar->reconnects; }

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

static void sb_aredis_on_connect(const redisAsyncContext *ac, int status) {
    sb_aredis_t *ar = ac->data;
    if (status != REDIS_OK) {
        sb_aredis_schedule(ar, ac->errstr[0] ? ac->errstr : "connect failed");
        return;
    }
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

static void sb_aredis_on_disconnect(const redisAsyncContext *ac, int status) {
    sb_aredis_t *ar = ac->data;
    (void)status;
    /* a connection that broke soon after it was made is flapping: keep growing the backoff */
    if (sb_mono_ms() - ar->since_ms > 1000) ar->backoff_ms = SB_AREDIS_BACKOFF_MIN_MS;
    sb_aredis_schedule(ar, ac->errstr[0] ? ac->errstr : "connection closed");
}

/* privdata of the set-up commands' callback: which command it was */
#define SB_SETUP_AUTH ((void *)(intptr_t)1)
#define SB_SETUP_SELECT ((void *)(intptr_t)2)

/* Reply to AUTH / SELECT: a refusal is a configuration error; drop and retry later. */
static void sb_aredis_setup_cb(redisAsyncContext *ac, void *r, void *priv) {
    redisReply *reply = r;
    if (!reply || reply->type != REDIS_REPLY_ERROR) return;
    sb_error("gateway", "redis (%s) refused %s: %s", ((sb_aredis_t *)ac->data)->name,
             priv == SB_SETUP_AUTH ? "AUTH" : "SELECT", reply->str);
    redisAsyncDisconnect(ac);
}

static void sb_aredis_connect(sb_aredis_t *ar) {
    if (ar->closing || ar->ac) return;
    redisAsyncContext *ac = ar->addr.unix_path ? redisAsyncConnectUnix(ar->addr.unix_path)
                                               : redisAsyncConnect(ar->addr.host, ar->addr.port);
    if (!ac || ac->err || sb_aredis_uv_attach(ac, ar->loop) != REDIS_OK) {
        char why[128];
        snprintf(why, sizeof why, "%s", ac && ac->err ? ac->errstr : "cannot create a context");
        if (ac) redisAsyncFree(ac);
        sb_aredis_schedule(ar, why);
        return;
    }
    ac->data = ar;
    redisAsyncSetConnectCallback(ac, sb_aredis_on_connect);
    redisAsyncSetDisconnectCallback(ac, sb_aredis_on_disconnect);
    if (ar->addr.password && ar->addr.user)
        redisAsyncCommand(ac, sb_aredis_setup_cb, SB_SETUP_AUTH, "AUTH %s %s", ar->addr.user,
                          ar->addr.password);
    else if (ar->addr.password)
        redisAsyncCommand(ac, sb_aredis_setup_cb, SB_SETUP_AUTH, "AUTH %s", ar->addr.password);
    if (ar->addr.db)
        redisAsyncCommand(ac, sb_aredis_setup_cb, SB_SETUP_SELECT, "SELECT %d", ar->addr.db);
    ar->ac = ac;
    ar->state = SB_AR_CONNECTING;
    ar->since_ms = sb_mono_ms();
}

/* Drops a context that takes too long to connect or to answer. hiredis then calls every
 * pending callback with NULL (and the disconnect callback if it was connected). */
static void sb_aredis_watchdog_cb(uv_timer_t *t) {
    sb_aredis_t *ar = t->data;
    int64_t now = sb_mono_ms();
    const char *why = NULL;
    if (ar->state == SB_AR_CONNECTING && now - ar->since_ms > SB_AREDIS_CONNECT_MS)
        why = "connect timed out";
    else if (ar->state == SB_AR_UP && ar->pending > 0 &&
             now - ar->progress_ms > SB_AREDIS_STALL_MS)
        why = "server stopped answering";
    if (!why) return;
    sb_warn("gateway", "redis (%s): %s; dropping the connection", ar->name, why);
    int was_up = ar->state == SB_AR_UP;
    redisAsyncContext *ac = ar->ac;
    ar->since_ms = now;
    redisAsyncFree(ac); /* runs on_disconnect (and so schedules) only if it was connected */
    if (!was_up) sb_aredis_schedule(ar, why);
}

/* ---- life cycle --------------------------------------------------------------------------- */

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
    uv_timer_start(&ar->watchdog, sb_aredis_watchdog_cb, SB_AREDIS_WATCHDOG_MS,
                   SB_AREDIS_WATCHDOG_MS);
    sb_aredis_connect(ar);
    return ar;
}

static void sb_aredis_closed_cb(uv_handle_t *h) {
    sb_aredis_t *ar = h->data;
    if (--ar->open_handles > 0) return;
    sb_redis_addr_free(&ar->addr);
    free(ar);
}

void sb_aredis_close(sb_aredis_t *ar) {
    if (!ar || ar->closing) return;
    ar->closing = 1;
    while (ar->hooks) sb_aredis_on_up_remove(ar->hooks);
    if (ar->ac) redisAsyncFree(ar->ac);
    ar->ac = NULL;
    ar->state = SB_AR_DOWN;
    uv_close((uv_handle_t *)&ar->retry, sb_aredis_closed_cb);
    uv_close((uv_handle_t *)&ar->watchdog, sb_aredis_closed_cb);
}

/* ---- commands ----------------------------------------------------------------------------- */

static void sb_aredis_reply(redisAsyncContext *ac, void *reply, void *privdata) {
    sb_acall_t *call = privdata;
    (void)ac;
    call->ar->pending--;
    call->ar->progress_ms = sb_mono_ms();
    call->cb(reply, call->priv);
    free(call);
}

int sb_aredis_send(sb_aredis_t *ar, const sb_batch_t *b, sb_aredis_cb cb, void *priv) {
    size_t n = sb_batch_count(b);
    if (ar->state != SB_AR_UP || n == 0) return SB_EREDIS;
    sb_acall_t *call = malloc(sizeof *call);
    if (!call) return SB_ENOMEM;
    *call = (sb_acall_t){ar, cb, priv};
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *cmd = sb_batch_cmd(b, i, &len);
        int last = i + 1 == n;
        if (redisAsyncFormattedCommand(ar->ac, last ? sb_aredis_reply : NULL, last ? call : NULL,
                                       cmd, len) != REDIS_OK) {
            /* only possible before the first command: the context is going away */
            free(call);
            return SB_EREDIS;
        }
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

/* hiredis keeps this callback per channel and calls it for every push reply of it. */
static void sb_aredis_push(redisAsyncContext *ac, void *reply, void *privdata) {
    sb_aredis_t *ar = privdata;
    (void)ac;
    if (ar->push_cb) ar->push_cb(reply, ar->push_priv);
}

int sb_aredis_subscribe(sb_aredis_t *ar, const sb_batch_t *b, sb_aredis_cb cb, void *priv) {
    if (ar->state != SB_AR_UP) return SB_EREDIS;
    ar->push_cb = cb;
    ar->push_priv = priv;
    for (size_t i = 0; i < sb_batch_count(b); i++) {
        size_t len;
        const char *cmd = sb_batch_cmd(b, i, &len);
        if (redisAsyncFormattedCommand(ar->ac, sb_aredis_push, ar, cmd, len) != REDIS_OK)
            return SB_EREDIS;
    }
    return SB_OK;
}
