/* The gateway's asynchronous Redis Cluster client: what an sb_aredis_t (aredis.h) becomes when
 * its address names a cluster (addr->cluster: seed nodes). Private to aredis.c, which
 * forwards its calls here; other modules keep using aredis.h.
 *
 * Design. One plain sb_aredis_t per node (each reconnecting and watched by itself), created
 * for the seeds and then for every master of the slot map, plus a slot map (cluster.h) loaded
 * with CLUSTER SLOTS from the "home" node each time home comes up. A batch goes to the node
 * serving the slot of its first key (the gateway's batches touch one slot: their keys share a
 * hash tag), or to home when it has no key; pub/sub lives on home (a PUBLISH reaches the
 * subscribers of every node). A reply that is MOVED or ASK (the batch's last reply: the one a
 * callback sees) sends the batch again to the node named, after ASKING for ASK, up to
 * SB_CLUSTER_MAX_REDIRECTS times, and a MOVED reloads the map. A one-second tick reloads a map
 * known to be stale and moves home to another live node when home has been down for two
 * seconds (a failover), so the owner's on-up hooks run again there and resubscribe. */
#ifndef SB_GATEWAY_ACLUSTER_H
#define SB_GATEWAY_ACLUSTER_H

#include <uv.h>
#include "gateway/aredis.h"

typedef struct sb_acluster sb_acluster_t;

/* Starts connecting to the seeds of addr->cluster (addr copied: every node gets its user,
 * password and TLS). up(ud) runs each time the cluster becomes usable: the slot map loaded
 * after home (re)connected. NULL on allocation failure. */
sb_acluster_t *sb_acluster_create(uv_loop_t *loop, const sb_redis_addr_t *addr, const char *name,
                                  void (*up)(void *ud), void *ud);
/* Closes every node (pending callbacks get NULL, now); freed during a later uv_run. */
void sb_acluster_close(sb_acluster_t *cl);
/* 1 once the map is loaded and home is connected. */
int sb_acluster_up(const sb_acluster_t *cl);
/* Times home came up again after a loss, and home moves. */
unsigned long long sb_acluster_reconnects(const sb_acluster_t *cl);
/* MOVED / ASK followed since creation. */
unsigned long long sb_acluster_redirects(const sb_acluster_t *cl, int ask);
/* sb_aredis_send's contract, routed as above. SB_EREDIS when the map is not loaded or the
 * node serving the batch's slot is not connected (the map is then reloaded). */
int sb_acluster_send(sb_acluster_t *cl, const sb_batch_t *b, sb_aredis_cb cb, void *priv);
/* The master serving key's slot in the current map, as host (into host, len bytes) and port.
 * 0, or SB_EREDIS before the map is loaded. */
int sb_acluster_key_node(const sb_acluster_t *cl, const char *key, char *host, size_t len,
                         int *port);
/* sb_aredis_subscribe's contract, on home. */
int sb_acluster_subscribe(sb_acluster_t *cl, const sb_batch_t *b, sb_aredis_cb cb, void *priv);

#endif
