/* Redis Cluster: key slots, redirects, the slot map, and a blocking cluster-aware client.
 *
 * A Redis Cluster splits the key space into 16384 hash slots; each master serves some ranges
 * of them. A key's slot is CRC16 (XMODEM: polynomial 0x1021, initial value 0) of the key
 * modulo 16384, or of its hash tag: the bytes between the first '{' and the first '}' after
 * it, when that is not empty. Keys that share a hash tag share a slot, which is what lets a
 * Lua script or a MULTI touch several of them.
 *
 * A node that does not serve a key's slot answers "MOVED <slot> <host>:<port>" (the slot
 * lives there now: update the map, send there) or, while the slot migrates, "ASK <slot>
 * <host>:<port>" (send ASKING and then the command to that node, once; the map is unchanged).
 *
 * sb_cluster_t is the blocking client over those rules, built on sb_redis_t (one connection
 * per master, opened on first use, with the address template's user, password and TLS). It
 * loads the slot map with CLUSTER SLOTS from a seed node (or any node it knows), routes each
 * command of a batch by the slot of its first key (EVAL/EVALSHA: the first of KEYS; XREAD:
 * the first stream), follows MOVED and ASK up to SB_CLUSTER_MAX_REDIRECTS times per command,
 * and reloads the map before the next batch after a MOVED or a lost connection. Commands
 * without a key (PING, SUBSCRIBE, PUBLISH, SCRIPT) go to the batch's first keyed command's
 * node, else to a "home" node, which also carries pub/sub: Redis 7 delivers a PUBLISH to the
 * subscribers of every node. A batch holding MULTI is a transaction: sent whole to one node
 * (its keys must share a slot, else Redis answers CROSSSLOT) and sent whole again after a
 * redirect (a MOVED on a queued command aborts the EXEC, so nothing ran).
 *
 * sb_redis_t (redis.h) uses this when its address has a cluster seed list (addr->cluster), so
 * callers of sb_redis_cmd / sb_redis_eval / sb_redis_pipeline need not know. Not
 * thread-safe: one owner, like sb_redis_t. */
#ifndef SB_CLUSTER_H
#define SB_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>
#include "switchboard/config.h"
#include "switchboard/redis.h"

#define SB_CLUSTER_SLOTS 16384
#define SB_CLUSTER_MAX_REDIRECTS 5 /* MOVED/ASK followed per command before giving up */

/* ---- pure helpers ------------------------------------------------------------------------ */

/* CRC16-XMODEM of buf (the cluster spec's: CRC16("123456789") = 0x31C3). */
uint16_t sb_cluster_crc16(const char *buf, size_t len);
/* The hash slot (0-16383) of key, honouring a {hash tag}. */
int sb_cluster_keyslot(const char *key, size_t len);

/* Index in argv of the command's first key, or -1 when the command has none (PING, SCRIPT,
 * PUBLISH, SUBSCRIBE, MULTI, EVAL with 0 keys...). SCAN ... MATCH pattern counts the pattern as
 * its key when it has a hash tag before any glob character (agent:{t}:processing:*): every
 * key it can match lives in that slot, so the SCAN goes to the node serving it. argv[0] is the command name (any case);
 * lens holds the argument lengths. */
int sb_cluster_key_index(int argc, const char *const *argv, const size_t *lens);
/* The slot of a command written as RESP (an array of bulk strings, as sb_batch_cmd returns):
 * its first key's slot, -1 when it has no key, SB_EINVAL when the bytes are not one command. */
int sb_cluster_cmd_slot(const char *resp, size_t len);

typedef enum { SB_REDIRECT_NONE = 0, SB_REDIRECT_MOVED, SB_REDIRECT_ASK } sb_redirect_kind_t;
typedef struct {
    sb_redirect_kind_t kind;
    int slot;
    char host[256];
    int port;
} sb_redirect_t;
/* Reads a reply as a redirect: an error "MOVED <slot> <host>:<port>" or "ASK ..." (an IPv6
 * host is the text before the last ':'). Returns the kind (also in out->kind);
 * SB_REDIRECT_NONE for any other reply, NULL, or a malformed redirect (out then zeroed). */
sb_redirect_kind_t sb_cluster_redirect_parse(const redisReply *reply, sb_redirect_t *out);

/* The slot map: which master serves each slot. Node i is nodes[i]; slot s is served by
 * nodes[owner[s]], or by none when owner[s] is SB_CLUSTER_NO_NODE. */
#define SB_CLUSTER_NO_NODE 0xFFFF
typedef struct {
    char host[256];
    int port;
} sb_cluster_endpoint_t;
typedef struct {
    sb_cluster_endpoint_t *nodes; /* malloc'd; the masters named by the reply, no duplicates */
    size_t nnodes;
    uint16_t owner[SB_CLUSTER_SLOTS];
} sb_slotmap_t;
/* Fills map (previous contents ignored: start from a zeroed one, or sb_slotmap_free it) from a
 * CLUSTER SLOTS reply: [[start, end, [host, port, id, ...], replica...], ...]. A master whose
 * host is empty (the node does not know its own address) gets asked_host, the host of the node
 * that answered. Returns 0; SB_EINVAL with a reason in err when the reply is not that shape or
 * leaves a slot uncovered (map then freed); SB_ENOMEM. */
int sb_slotmap_parse(sb_slotmap_t *map, const redisReply *reply, const char *asked_host,
                     char *err, size_t errlen);
void sb_slotmap_free(sb_slotmap_t *map); /* frees nodes; the struct is the caller's */

/* The address of one node: tmpl (its user, password, TLS) pointed at host:port, without the
 * seeds. A shallow copy: valid while tmpl and host live; sb_redis_create / sb_aredis_create
 * copy what they keep. */
sb_redis_addr_t sb_cluster_node_addr(const sb_redis_addr_t *tmpl, char *host, int port);

/* ---- the blocking client -------------------------------------------------------------------- */
typedef struct sb_cluster sb_cluster_t;

/* A client for the cluster whose seed nodes are addr->cluster ("host:port,host:port,..."):
 * addr is copied and serves as the template of every node's connection (user, password, TLS
 * options). Nothing connects yet. NULL on allocation failure or without seeds. */
sb_cluster_t *sb_cluster_create(const sb_redis_addr_t *addr, const char *component);
void sb_cluster_free(sb_cluster_t *c); /* closes every connection; NULL is fine */

/* Loads the slot map from the nodes known (the last map's masters, then the seeds), the first
 * that answers. Returns 0, or SB_EREDIS with the reasons in err (the map is then unchanged). */
int sb_cluster_connect(sb_cluster_t *c, char *err, size_t errlen);
/* Drops every node connection; the next batch loads the map again. */
void sb_cluster_disconnect(sb_cluster_t *c);
/* Command timeout (ms, 0 none) and connect timeout of every node connection, now and later. */
void sb_cluster_set_timeouts(sb_cluster_t *c, int timeout_ms, int connect_timeout_ms);

/* Runs every command of b, each on the node serving its key (see the top of this file), and
 * puts one reply per command in replies (n = sb_batch_count(b) slots; the caller frees them,
 * sb_replies_free). A redirect is followed; the reply left is the final one (a MOVED only
 * after SB_CLUSTER_MAX_REDIRECTS). Returns 0; SB_EREDIS when a node could not be reached or
 * its connection broke (every slot NULL, the map reloads before the next batch; commands sent
 * before the break may have run); SB_ENOMEM. */
int sb_cluster_pipeline(sb_cluster_t *c, const sb_batch_t *b, redisReply **replies);
/* The connection of the home node (keyless commands and pub/sub go there), connected, or NULL
 * (reason logged) when it cannot be reached. Owned by c. */
sb_redis_t *sb_cluster_home(sb_cluster_t *c);
/* Masters in the current map (0 before the first load). */
size_t sb_cluster_masters(const sb_cluster_t *c);
/* MOVED / ASK redirects followed since creation (for tests and metrics). */
unsigned long long sb_cluster_redirects(const sb_cluster_t *c, sb_redirect_kind_t kind);

#endif
