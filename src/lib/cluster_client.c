/* The blocking Redis Cluster client (cluster.h): a slot map, one sb_redis_t per node opened
 * on first use, and the batch router that follows MOVED and ASK.
 *
 * Nodes are never forgotten while the client lives (a topology has few of them, and a node
 * that left keeps its closed connection): the slot map is an index into that table, so
 * reloading it does not touch the connections of nodes that stay.
 *
 * A batch runs in three steps: each command's slot (cluster.c reads the RESP back into its
 * arguments), one pipelined write per node (the batch as is when all of it goes to one node,
 * the common case since our keys share hash tags), then every reply that is a redirect is
 * followed alone, MOVED updating the slot's owner at once and asking for a full reload before
 * the next batch, ASK sending "ASKING" and the command in one write to the importing node. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "switchboard/cluster.h"
#include "switchboard/error.h"
#include "switchboard/fmt.h"
#include "switchboard/log.h"

typedef struct {
    sb_cluster_endpoint_t at;
    sb_redis_t *r; /* NULL until first used */
} sb_cnode_t;

struct sb_cluster {
    sb_redis_addr_t tmpl;      /* owned copy: credentials and TLS of every node; seeds */
    char component[32];
    int timeout_ms, connect_timeout_ms;
    sb_cnode_t *nodes;         /* every node heard of */
    size_t nnodes;
    uint16_t owner[SB_CLUSTER_SLOTS]; /* node index serving each slot */
    size_t masters;            /* nodes in the last map loaded */
    int map_ok;                /* owner[] loaded and not known to be stale */
    int home;                  /* node of keyless commands and pub/sub, -1 none */
    unsigned long long moved, asked;
};

sb_cluster_t *sb_cluster_create(const sb_redis_addr_t *addr, const char *component) {
    if (!addr->cluster || !*addr->cluster) return NULL;
    sb_cluster_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (sb_redis_addr_copy(&c->tmpl, addr) != SB_OK) {
        free(c);
        return NULL;
    }
    snprintf(c->component, sizeof c->component, "%s", component ? component : "redis");
    c->home = -1;
    return c;
}

void sb_cluster_disconnect(sb_cluster_t *c) {
    for (size_t i = 0; i < c->nnodes; i++)
        if (c->nodes[i].r) sb_redis_disconnect(c->nodes[i].r);
    c->map_ok = 0;
    c->home = -1;
}

void sb_cluster_free(sb_cluster_t *c) {
    if (!c) return;
    for (size_t i = 0; i < c->nnodes; i++) sb_redis_free(c->nodes[i].r);
    free(c->nodes);
    sb_redis_addr_free(&c->tmpl);
    free(c);
}

void sb_cluster_set_timeouts(sb_cluster_t *c, int timeout_ms, int connect_timeout_ms) {
    c->timeout_ms = timeout_ms;
    c->connect_timeout_ms = connect_timeout_ms;
    for (size_t i = 0; i < c->nnodes; i++)
        if (c->nodes[i].r) {
            sb_redis_set_timeout(c->nodes[i].r, timeout_ms);
            sb_redis_set_connect_timeout(c->nodes[i].r, connect_timeout_ms);
        }
}

size_t sb_cluster_masters(const sb_cluster_t *c) { return c->masters; }

unsigned long long sb_cluster_redirects(const sb_cluster_t *c, sb_redirect_kind_t kind) {
    return kind == SB_REDIRECT_MOVED ? c->moved : kind == SB_REDIRECT_ASK ? c->asked : 0;
}

/* ---- nodes ---------------------------------------------------------------------------------- */

/* The index of host:port in the node table, added when new; -1 on allocation failure. */
static int sb_cluster_node(sb_cluster_t *c, const char *host, int port) {
    for (size_t i = 0; i < c->nnodes; i++)
        if (c->nodes[i].at.port == port && !strcmp(c->nodes[i].at.host, host)) return (int)i;
    if (c->nnodes >= SB_CLUSTER_NO_NODE) return -1;
    sb_cnode_t *n = realloc(c->nodes, (c->nnodes + 1) * sizeof *n);
    if (!n) return -1;
    c->nodes = n;
    memset(&n[c->nnodes], 0, sizeof *n);
    snprintf(n[c->nnodes].at.host, sizeof n->at.host, "%s", host);
    n[c->nnodes].at.port = port;
    return (int)c->nnodes++;
}

/* The node's connection, connected (one attempt), or NULL with the reason in err. */
static sb_redis_t *sb_cluster_conn(sb_cluster_t *c, int i, char *err, size_t errlen) {
    sb_cnode_t *n = &c->nodes[i];
    if (!n->r) {
        sb_redis_addr_t a = sb_cluster_node_addr(&c->tmpl, n->at.host, n->at.port);
        if (!(n->r = sb_redis_create(&a, c->component))) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        sb_redis_set_timeout(n->r, c->timeout_ms);
        sb_redis_set_connect_timeout(n->r, c->connect_timeout_ms);
    }
    if (sb_redis_connected(n->r)) return n->r;
    char why[256];
    if (sb_redis_connect(n->r, why, sizeof why) == SB_OK) return n->r;
    if (snprintf(err, errlen, "%s:%d: %s", n->at.host, n->at.port, why) < 0) err[0] = '\0';
    return NULL; /* (a message cut at errlen is fine) */
}

/* ---- the slot map --------------------------------------------------------------------------- */

/* Takes map (parsed from node asked's reply) as the slot map. 0 or SB_ENOMEM. */
static int sb_cluster_install(sb_cluster_t *c, const sb_slotmap_t *map, int asked) {
    int idx[map->nnodes ? map->nnodes : 1];
    for (size_t i = 0; i < map->nnodes; i++)
        if ((idx[i] = sb_cluster_node(c, map->nodes[i].host, map->nodes[i].port)) < 0)
            return SB_ENOMEM;
    for (int s = 0; s < SB_CLUSTER_SLOTS; s++) c->owner[s] = (uint16_t)idx[map->owner[s]];
    c->masters = map->nnodes;
    c->map_ok = 1;
    if (c->home < 0) c->home = asked;
    return SB_OK;
}

/* CLUSTER SLOTS from node i, installed. 0, or an error with err. */
static int sb_cluster_load_from(sb_cluster_t *c, int i, char *err, size_t errlen) {
    sb_redis_t *r = sb_cluster_conn(c, i, err, errlen);
    if (!r) return SB_EREDIS;
    redisReply *rep = sb_redis_cmd(r, "CLUSTER SLOTS");
    sb_slotmap_t map;
    int rc = rep ? sb_slotmap_parse(&map, rep, c->nodes[i].at.host, err, errlen) : SB_EREDIS;
    if (!rep) snprintf(err, errlen, "%s:%d: connection lost", c->nodes[i].at.host,
                       c->nodes[i].at.port);
    if (rep) freeReplyObject(rep);
    if (rc != SB_OK) return rc;
    rc = sb_cluster_install(c, &map, i);
    sb_slotmap_free(&map);
    return rc;
}

/* Adds the seed nodes to the table (a node known already is not added twice). */
static int sb_cluster_add_seeds(sb_cluster_t *c, char *err, size_t errlen) {
    char host[SB_FMT_HOST_MAX];
    int port, rc;
    for (int i = 0; (rc = sb_fmt_hostport_nth(c->tmpl.cluster, i, host, sizeof host, &port, err,
                                              errlen)) == 1; i++)
        if (sb_cluster_node(c, host, port) < 0) return SB_ENOMEM;
    return rc < 0 ? SB_EINVAL : SB_OK;
}

int sb_cluster_connect(sb_cluster_t *c, char *err, size_t errlen) {
    char why[300] = "no node known";
    int rc = sb_cluster_add_seeds(c, err, errlen);
    if (rc != SB_OK) return rc;
    int was_home = c->home;
    c->home = -1;
    /* the home node first (it answered last time), then every node in table order */
    for (size_t k = 0; k <= c->nnodes; k++) {
        int i = k == 0 ? was_home : (int)k - 1;
        if (i < 0 || (k > 0 && i == was_home)) continue;
        if (sb_cluster_load_from(c, i, why, sizeof why) == SB_OK) return SB_OK;
    }
    snprintf(err, errlen, "no cluster node gave a slot map (last: %s)", why);
    return SB_EREDIS;
}

sb_redis_t *sb_cluster_home(sb_cluster_t *c) {
    char err[300];
    if ((!c->map_ok || c->home < 0) && sb_cluster_connect(c, err, sizeof err) != SB_OK) {
        sb_warn(c->component, "redis cluster: %s", err);
        return NULL;
    }
    sb_redis_t *r = sb_cluster_conn(c, c->home, err, sizeof err);
    if (!r) {
        sb_warn(c->component, "redis cluster: %s", err);
        c->map_ok = 0;
        c->home = -1;
    }
    return r;
}

/* ---- running batches ------------------------------------------------------------------------ */

/* 1 when the RESP command is MULTI. */
static int sb_cluster_is_multi(const char *cmd, size_t len) {
    static const char multi[] = "*1\r\n$5\r\nMULTI\r\n";
    return len == sizeof multi - 1 && !strncasecmp(cmd, multi, len);
}

/* Runs commands idx[0..k) of b on node (after ASKING when asking) in one write; their replies
 * go to replies[idx[j]]. 0, SB_EREDIS (node unreachable or lost: the map is marked stale),
 * SB_ENOMEM. */
static int sb_cluster_run(sb_cluster_t *c, int node, const sb_batch_t *b, const size_t *idx,
                          size_t k, int asking, redisReply **replies) {
    char err[300];
    sb_redis_t *r = sb_cluster_conn(c, node, err, sizeof err);
    if (!r) {
        sb_warn(c->component, "redis cluster: %s", err);
        c->map_ok = 0;
        return SB_EREDIS;
    }
    sb_batch_t *sub = sb_batch_create();
    redisReply **got = calloc(k + 1, sizeof *got);
    int rc = sub && got ? SB_OK : SB_ENOMEM;
    if (rc == SB_OK && asking) rc = sb_batch_add(sub, "ASKING");
    for (size_t j = 0, len; rc == SB_OK && j < k; j++) {
        const char *cmd = sb_batch_cmd(b, idx[j], &len);
        rc = sb_batch_add_raw(sub, cmd, len);
    }
    if (rc == SB_OK && sb_redis_pipeline(r, sub, got) != SB_OK) {
        c->map_ok = 0;
        rc = SB_EREDIS;
    }
    if (rc == SB_OK) {
        if (asking) freeReplyObject(got[0]);
        for (size_t j = 0; j < k; j++) replies[idx[j]] = got[j + (asking ? 1 : 0)];
    }
    free(got);
    sb_batch_free(sub);
    return rc;
}

/* Acts on redirect d: MOVED updates the slot's owner (and asks for a reload); returns the node
 * to send to, or -1 on allocation failure. */
static int sb_cluster_redirect(sb_cluster_t *c, const sb_redirect_t *d) {
    int node = sb_cluster_node(c, d->host, d->port);
    if (node < 0) return -1;
    if (d->kind == SB_REDIRECT_MOVED) {
        c->owner[d->slot] = (uint16_t)node;
        c->map_ok = 0; /* other slots probably moved too: reload before the next batch */
        c->moved++;
    } else {
        c->asked++;
    }
    return node;
}

/* Follows the redirects of command i's reply, alone, up to SB_CLUSTER_MAX_REDIRECTS times. */
static int sb_cluster_follow(sb_cluster_t *c, const sb_batch_t *b, size_t i,
                             redisReply **replies) {
    sb_redirect_t d;
    for (int n = 0; n < SB_CLUSTER_MAX_REDIRECTS &&
                    sb_cluster_redirect_parse(replies[i], &d) != SB_REDIRECT_NONE; n++) {
        int node = sb_cluster_redirect(c, &d);
        if (node < 0) return SB_ENOMEM;
        freeReplyObject(replies[i]);
        replies[i] = NULL;
        int rc = sb_cluster_run(c, node, b, &i, 1, d.kind == SB_REDIRECT_ASK, replies);
        if (rc != SB_OK) return rc;
    }
    return SB_OK;
}

/* The first reply of n that is a redirect, parsed into d; -1 when none. */
static long sb_cluster_first_redirect(redisReply **replies, size_t n, sb_redirect_t *d) {
    for (size_t i = 0; i < n; i++)
        if (sb_cluster_redirect_parse(replies[i], d) != SB_REDIRECT_NONE) return (long)i;
    return -1;
}

/* A transaction (the batch holds MULTI): the whole batch on one node, again on the node a
 * redirect names (a MOVED or ASK on a queued command makes EXEC fail: nothing ran). */
static int sb_cluster_txn(sb_cluster_t *c, const sb_batch_t *b, int node, size_t *idx,
                          redisReply **replies) {
    size_t n = sb_batch_count(b);
    int asking = 0;
    for (int tries = 0;; tries++) {
        int rc = sb_cluster_run(c, node, b, idx, n, asking, replies);
        sb_redirect_t d;
        if (rc != SB_OK || tries == SB_CLUSTER_MAX_REDIRECTS ||
            sb_cluster_first_redirect(replies, n, &d) < 0)
            return rc;
        if ((node = sb_cluster_redirect(c, &d)) < 0) return SB_ENOMEM;
        asking = d.kind == SB_REDIRECT_ASK;
        sb_replies_free(replies, n);
    }
}

/* Sends each node its commands (in batch order), one write per node. */
static int sb_cluster_scatter(sb_cluster_t *c, const sb_batch_t *b, const int *node,
                              size_t *idx, redisReply **replies) {
    size_t n = sb_batch_count(b);
    int rc = SB_OK;
    for (size_t i = 0; rc == SB_OK && i < n; i++) {
        if (replies[i]) continue; /* its node's group went already */
        size_t k = 0;
        for (size_t j = i; j < n; j++)
            if (node[j] == node[i] && !replies[j]) idx[k++] = j;
        rc = sb_cluster_run(c, node[i], b, idx, k, 0, replies);
    }
    for (size_t i = 0; rc == SB_OK && i < n; i++) rc = sb_cluster_follow(c, b, i, replies);
    return rc;
}

/* Each command's node: its key's owner; keyless commands the batch's first keyed command's,
 * else home. Sets *txn when the batch holds MULTI. SB_EINVAL when a command is unreadable. */
static int sb_cluster_route(sb_cluster_t *c, const sb_batch_t *b, int *node, int *txn) {
    size_t n = sb_batch_count(b), len;
    int anchor = -1;
    *txn = 0;
    for (size_t i = 0; i < n; i++) {
        const char *cmd = sb_batch_cmd(b, i, &len);
        int slot = sb_cluster_cmd_slot(cmd, len);
        if (slot < -1) return slot;
        node[i] = slot >= 0 ? c->owner[slot] : -1;
        if (anchor < 0 && node[i] >= 0) anchor = node[i];
        if (sb_cluster_is_multi(cmd, len)) *txn = 1;
    }
    if (anchor < 0) anchor = c->home;
    for (size_t i = 0; i < n; i++)
        if (node[i] < 0 || *txn) node[i] = anchor;
    return SB_OK;
}

int sb_cluster_pipeline(sb_cluster_t *c, const sb_batch_t *b, redisReply **replies) {
    size_t n = sb_batch_count(b);
    char err[300];
    for (size_t i = 0; i < n; i++) replies[i] = NULL;
    if (n == 0) return SB_OK;
    if ((!c->map_ok || c->home < 0) && sb_cluster_connect(c, err, sizeof err) != SB_OK) {
        sb_warn(c->component, "redis cluster: %s", err);
        return SB_EREDIS;
    }
    int *node = malloc(n * sizeof *node);
    size_t *idx = malloc(n * sizeof *idx);
    int txn = 0, rc = node && idx ? SB_OK : SB_ENOMEM;
    if (rc == SB_OK) rc = sb_cluster_route(c, b, node, &txn);
    if (rc == SB_OK && txn) {
        for (size_t i = 0; i < n; i++) idx[i] = i;
        rc = sb_cluster_txn(c, b, node[0], idx, replies);
    } else if (rc == SB_OK) {
        rc = sb_cluster_scatter(c, b, node, idx, replies);
    }
    if (rc != SB_OK) sb_replies_free(replies, n);
    free(node);
    free(idx);
    return rc;
}
