/* The gateway's asynchronous Redis Cluster client (see acluster.h for the design).
 *
 * Lifetimes: every node is an sb_aredis_t owned here and closed by sb_acluster_close, which
 * runs the pending callbacks with NULL at once; a call in flight (sb_acall_t below) holds a
 * copy of its batch so it can be sent again after a redirect, and is freed when its callback
 * has run. The struct itself is freed from the tick timer's close callback. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gateway/acluster.h"
#include "switchboard/clock.h"
#include "switchboard/cluster.h"
#include "switchboard/error.h"
#include "switchboard/fmt.h"
#include "switchboard/log.h"

#define SB_ACLUSTER_TICK_MS 1000
#define SB_ACLUSTER_TRYAGAIN_MAX 10 /* a call answered TRYAGAIN is sent again at 10 ticks */
#define SB_ACLUSTER_HOME_DOWN_MS 2000 /* home down this long: another live node becomes home */

typedef struct {
    sb_cluster_endpoint_t at;
    sb_aredis_t *ar;
} sb_anode_t;

struct sb_acluster {
    uv_loop_t *loop;
    sb_redis_addr_t tmpl;          /* owned copy: credentials, TLS, seeds */
    char name[32];
    void (*up_fn)(void *ud);       /* the owner's: run each time the cluster is usable */
    void *up_ud;
    sb_anode_t *nodes;             /* every node heard of */
    size_t nnodes;
    uint16_t owner[SB_CLUSTER_SLOTS];
    int map_ok;                    /* owner[] loaded */
    int stale;                     /* a MOVED or a lost node: reload at the next tick */
    int loading;                   /* a CLUSTER SLOTS in flight */
    int notify;                    /* home came up: run up_fn once the map is in */
    int home;                      /* node of keyless commands and pub/sub */
    sb_aredis_hook_t home_hook;    /* on home: load the map when it comes up */
    int64_t home_down_since;       /* monotonic ms home was first seen down, 0 while up */
    uv_timer_t tick;
    int closing;
    unsigned long long reconnects, moved, asked;
    struct sb_acall *retry;        /* calls answered TRYAGAIN: sent again at the next tick */
};

typedef struct sb_acall {
    sb_acluster_t *cl;
    sb_batch_t *b;   /* the batch as sent first (a copy) */
    sb_aredis_cb cb;
    void *priv;
    int redirects;
    int tryagains;         /* TRYAGAIN answers so far (a slot migrating) */
    struct sb_acall *next; /* in cl->retry */
} sb_acall_t;

static void sb_acluster_load(sb_acluster_t *cl);
static void sb_acluster_retry(sb_acluster_t *cl);

int sb_acluster_up(const sb_acluster_t *cl) {
    return cl->map_ok && sb_aredis_up(cl->nodes[cl->home].ar);
}

unsigned long long sb_acluster_reconnects(const sb_acluster_t *cl) { return cl->reconnects; }

unsigned long long sb_acluster_redirects(const sb_acluster_t *cl, int ask) {
    return ask ? cl->asked : cl->moved;
}

/* ---- nodes ---------------------------------------------------------------------------------- */

/* The index of host:port, its client created (connecting) when new; -1 when out of memory. */
static int sb_acluster_node(sb_acluster_t *cl, const char *host, int port) {
    for (size_t i = 0; i < cl->nnodes; i++)
        if (cl->nodes[i].at.port == port && !strcmp(cl->nodes[i].at.host, host)) return (int)i;
    if (cl->nnodes >= SB_CLUSTER_NO_NODE) return -1;
    sb_anode_t *n = realloc(cl->nodes, (cl->nnodes + 1) * sizeof *n);
    if (!n) return -1;
    cl->nodes = n;
    n += cl->nnodes;
    snprintf(n->at.host, sizeof n->at.host, "%s", host);
    n->at.port = port;
    sb_redis_addr_t a = sb_cluster_node_addr(&cl->tmpl, n->at.host, port);
    char name[32];
    snprintf(name, sizeof name, "%.16s@%d", cl->name, port);
    if (!(n->ar = sb_aredis_create(cl->loop, &a, name))) return -1;
    return (int)cl->nnodes++;
}

/* Home comes up: load the map (the owner's hooks run once it is in). */
static void sb_acluster_home_up(void *ud) {
    sb_acluster_t *cl = ud;
    if (cl->home_down_since) cl->reconnects++;
    cl->home_down_since = 0;
    cl->notify = 1;
    sb_acluster_load(cl);
}

static void sb_acluster_set_home(sb_acluster_t *cl, int i) {
    sb_aredis_on_up_remove(&cl->home_hook);
    cl->home = i;
    sb_aredis_on_up(cl->nodes[i].ar, &cl->home_hook, sb_acluster_home_up, cl);
}

/* ---- the slot map --------------------------------------------------------------------------- */

static int sb_acluster_install(sb_acluster_t *cl, const sb_slotmap_t *map) {
    int idx[map->nnodes ? map->nnodes : 1];
    for (size_t i = 0; i < map->nnodes; i++)
        if ((idx[i] = sb_acluster_node(cl, map->nodes[i].host, map->nodes[i].port)) < 0)
            return SB_ENOMEM;
    for (int s = 0; s < SB_CLUSTER_SLOTS; s++) cl->owner[s] = (uint16_t)idx[map->owner[s]];
    return SB_OK;
}

static void sb_acluster_slots_cb(redisReply *reply, void *priv) {
    sb_acluster_t *cl = priv;
    char err[256];
    sb_slotmap_t map;
    cl->loading = 0;
    if (cl->closing || !reply) return; /* home went: its next up loads again */
    int rc = sb_slotmap_parse(&map, reply, cl->nodes[cl->home].at.host, err, sizeof err);
    if (rc == SB_OK) {
        rc = sb_acluster_install(cl, &map);
        sb_slotmap_free(&map);
    }
    if (rc != SB_OK) {
        sb_warn("gateway", "redis cluster (%s): %s; retrying", cl->name,
                rc == SB_ENOMEM ? "out of memory" : err);
        cl->stale = 1;
        return;
    }
    cl->map_ok = 1;
    cl->stale = 0;
    if (cl->notify) {
        cl->notify = 0;
        cl->up_fn(cl->up_ud);
    }
}

/* CLUSTER SLOTS on home, unless one is in flight or home is down. */
static void sb_acluster_load(sb_acluster_t *cl) {
    if (cl->loading || cl->closing || !sb_aredis_up(cl->nodes[cl->home].ar)) return;
    sb_batch_t *b = sb_batch_create();
    if (b && sb_batch_add(b, "CLUSTER SLOTS") == SB_OK &&
        sb_aredis_send(cl->nodes[cl->home].ar, b, sb_acluster_slots_cb, cl) == SB_OK)
        cl->loading = 1;
    sb_batch_free(b);
}

/* Every second: a stale map is reloaded; a home down for long is replaced by a live node. */
static void sb_acluster_tick_cb(uv_timer_t *t) {
    sb_acluster_retry(t->data);
    sb_acluster_t *cl = t->data;
    int64_t now = sb_mono_ms();
    if (sb_aredis_up(cl->nodes[cl->home].ar)) {
        if (cl->stale || !cl->map_ok) sb_acluster_load(cl);
        return;
    }
    if (!cl->home_down_since) cl->home_down_since = now;
    if (now - cl->home_down_since < SB_ACLUSTER_HOME_DOWN_MS) return;
    for (size_t i = 0; i < cl->nnodes; i++)
        if ((int)i != cl->home && sb_aredis_up(cl->nodes[i].ar)) {
            sb_warn("gateway", "redis cluster (%s): %s:%d unreachable; using %s:%d", cl->name,
                    cl->nodes[cl->home].at.host, cl->nodes[cl->home].at.port,
                    cl->nodes[i].at.host, cl->nodes[i].at.port);
            sb_acluster_set_home(cl, (int)i);
            sb_acluster_home_up(cl);
            return;
        }
}

/* ---- life cycle --------------------------------------------------------------------------- */

static int sb_acluster_add_seeds(sb_acluster_t *cl) {
    char host[SB_FMT_HOST_MAX], err[256];
    int port, rc;
    for (int i = 0; (rc = sb_fmt_hostport_nth(cl->tmpl.cluster, i, host, sizeof host, &port, err,
                                              sizeof err)) == 1; i++)
        if (sb_acluster_node(cl, host, port) < 0) return SB_ENOMEM;
    if (rc < 0) sb_error("gateway", "redis cluster (%s): bad seed list: %s", cl->name, err);
    return rc < 0 || cl->nnodes == 0 ? SB_EINVAL : SB_OK;
}

sb_acluster_t *sb_acluster_create(uv_loop_t *loop, const sb_redis_addr_t *addr, const char *name,
                                  void (*up)(void *ud), void *ud) {
    sb_acluster_t *cl = calloc(1, sizeof *cl);
    if (!cl) return NULL;
    if (sb_redis_addr_copy(&cl->tmpl, addr) != SB_OK) {
        free(cl);
        return NULL;
    }
    cl->loop = loop;
    snprintf(cl->name, sizeof cl->name, "%s", name);
    cl->up_fn = up;
    cl->up_ud = ud;
    uv_timer_init(loop, &cl->tick);
    cl->tick.data = cl;
    if (sb_acluster_add_seeds(cl) != SB_OK) {
        sb_acluster_close(cl);
        return NULL;
    }
    sb_acluster_set_home(cl, 0);
    uv_timer_start(&cl->tick, sb_acluster_tick_cb, SB_ACLUSTER_TICK_MS, SB_ACLUSTER_TICK_MS);
    return cl;
}

static void sb_acluster_closed_cb(uv_handle_t *h) {
    sb_acluster_t *cl = h->data;
    free(cl->nodes);
    sb_redis_addr_free(&cl->tmpl);
    free(cl);
}

void sb_acluster_close(sb_acluster_t *cl) {
    if (!cl || cl->closing) return;
    cl->closing = 1;
    sb_acluster_retry(cl); /* closing: each gets NULL */
    sb_aredis_on_up_remove(&cl->home_hook);
    for (size_t i = 0; i < cl->nnodes; i++) sb_aredis_close(cl->nodes[i].ar);
    uv_close((uv_handle_t *)&cl->tick, sb_acluster_closed_cb);
}

/* ---- commands ----------------------------------------------------------------------------- */

/* The node of b: the owner of its first key's slot, or home. -1 when b is unreadable. */
static int sb_acluster_route(const sb_acluster_t *cl, const sb_batch_t *b) {
    for (size_t i = 0, len; i < sb_batch_count(b); i++) {
        const char *cmd = sb_batch_cmd(b, i, &len);
        int slot = sb_cluster_cmd_slot(cmd, len);
        if (slot >= 0) return cl->owner[slot];
        if (slot < -1) return -1;
    }
    return cl->home;
}

static void sb_acluster_reply(redisReply *reply, void *priv);

/* Sends call's batch to node (after ASKING when asking). 0 or SB_EREDIS / SB_ENOMEM. */
static int sb_acluster_dispatch(sb_acall_t *call, int node, int asking) {
    sb_acluster_t *cl = call->cl;
    if (!sb_aredis_up(cl->nodes[node].ar)) {
        cl->stale = 1; /* a node down: maybe failed over; reload */
        return SB_EREDIS;
    }
    if (!asking) return sb_aredis_send(cl->nodes[node].ar, call->b, sb_acluster_reply, call);
    sb_batch_t *b = sb_batch_create();
    int rc = b ? sb_batch_add(b, "ASKING") : SB_ENOMEM;
    if (rc == SB_OK) rc = sb_batch_append(b, call->b);
    if (rc == SB_OK) rc = sb_aredis_send(cl->nodes[node].ar, b, sb_acluster_reply, call);
    sb_batch_free(b);
    return rc;
}

static void sb_acall_done(sb_acall_t *call, redisReply *reply) {
    call->cb(reply, call->priv);
    sb_batch_free(call->b);
    free(call);
}

/* Sends every call of cl->retry again (or, closing, answers it NULL). */
static void sb_acluster_retry(sb_acluster_t *cl) {
    sb_acall_t *call = cl->retry;
    cl->retry = NULL;
    while (call) {
        sb_acall_t *next = call->next;
        int node = cl->closing ? -1 : sb_acluster_route(cl, call->b);
        if (node < 0 || sb_acluster_dispatch(call, node, 0) != SB_OK) sb_acall_done(call, NULL);
        call = next;
    }
}

/* 1 when reply is TRYAGAIN: a multi-key command met a slot in mid-migration (some of its keys
 * moved, some not); nothing ran, and it succeeds once the migration is through. */
static int sb_reply_tryagain(const redisReply *reply) {
    return reply && reply->type == REDIS_REPLY_ERROR && !strncmp(reply->str, "TRYAGAIN", 8);
}

/* A redirect sends the batch again (nothing ran where it was refused), so does a TRYAGAIN at
 * the next tick, up to SB_ACLUSTER_TRYAGAIN_MAX times; anything else is the caller's. */
static void sb_acluster_reply(redisReply *reply, void *priv) {
    sb_acall_t *call = priv;
    sb_acluster_t *cl = call->cl;
    sb_redirect_t d;
    if (!cl->closing && sb_reply_tryagain(reply) && call->tryagains < SB_ACLUSTER_TRYAGAIN_MAX) {
        call->tryagains++;
        call->next = cl->retry;
        cl->retry = call;
        return;
    }
    if (cl->closing || call->redirects >= SB_CLUSTER_MAX_REDIRECTS ||
        sb_cluster_redirect_parse(reply, &d) == SB_REDIRECT_NONE) {
        sb_acall_done(call, reply);
        return;
    }
    call->redirects++;
    int node = sb_acluster_node(cl, d.host, d.port);
    if (node >= 0 && d.kind == SB_REDIRECT_MOVED) {
        cl->owner[d.slot] = (uint16_t)node;
        cl->stale = 1;
        cl->moved++;
    } else if (node >= 0) {
        cl->asked++;
    }
    if (node < 0 || sb_acluster_dispatch(call, node, d.kind == SB_REDIRECT_ASK) != SB_OK)
        sb_acall_done(call, NULL); /* a node just heard of is still connecting: like a loss */
}

int sb_acluster_key_node(const sb_acluster_t *cl, const char *key, char *host, size_t len,
                         int *port) {
    int slot = sb_cluster_keyslot(key, strlen(key));
    if (!cl->map_ok || cl->owner[slot] >= cl->nnodes) return SB_EREDIS;
    const sb_cluster_endpoint_t *at = &cl->nodes[cl->owner[slot]].at;
    snprintf(host, len, "%s", at->host);
    *port = at->port;
    return SB_OK;
}

int sb_acluster_send(sb_acluster_t *cl, const sb_batch_t *b, sb_aredis_cb cb, void *priv) {
    if (!sb_acluster_up(cl) || sb_batch_count(b) == 0) return SB_EREDIS;
    int node = sb_acluster_route(cl, b);
    if (node < 0) return SB_EINVAL;
    sb_acall_t *call = calloc(1, sizeof *call);
    sb_batch_t *copy = sb_batch_create();
    int rc = call && copy ? sb_batch_append(copy, b) : SB_ENOMEM;
    if (rc == SB_OK) {
        *call = (sb_acall_t){cl, copy, cb, priv, 0};
        rc = sb_acluster_dispatch(call, node, 0);
    }
    if (rc != SB_OK) {
        sb_batch_free(copy);
        free(call);
    }
    return rc;
}

int sb_acluster_subscribe(sb_acluster_t *cl, const sb_batch_t *b, sb_aredis_cb cb, void *priv) {
    if (!sb_acluster_up(cl)) return SB_EREDIS;
    return sb_aredis_subscribe(cl->nodes[cl->home].ar, b, cb, priv);
}
