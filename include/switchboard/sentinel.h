/* Finding the Redis master through Redis Sentinel, and noticing when it moves.
 *
 * An sb_redis_addr_t with `sentinels` set names no server itself: before every connection
 * (first connect and every reconnect, blocking client and gateway alike) the connection layer
 * calls sb_sentinel_resolve(), which asks the Sentinels in list order for the master's address
 * (SENTINEL get-master-addr-by-name NAME) and confirms it with ROLE on that address (during a
 * failover a Sentinel may still name the old master). The first confirmed answer wins. Every
 * step has a short timeout (SB_SENTINEL_TIMEOUT_MS), so an unreachable Sentinel costs little;
 * the call blocks all the same, so the gateway runs it on a libuv worker thread.
 *
 * TLS: the Sentinels are asked through the project's connection layer (conn.h, the blocking
 * sb_redis_t), so when the address says TLS (rediss://, tls.enabled) the Sentinels are
 * reached over TLS exactly like the master: the same CA file, client certificate and key,
 * and insecure flag. The name checked is tls.sni when set (then every Sentinel and the master
 * must carry it in their certificates), else each server's own host or IP. A deployment
 * with TLS to the master but plain Sentinels is not supported.
 *
 * A failover sends connections back through the Sentinels in three ways:
 *   - the connection is lost (the master died): the reconnect resolves again;
 *   - a READONLY reply (the server was demoted to a replica; sb_sentinel_readonly): the
 *     connection is dropped, after the caller got the reply;
 *   - the Sentinels' `+switch-master` message (sb_sentinel_switch_parse), to which the gateway
 *     subscribes on a Sentinel, and which the agents' maintenance thread polls for.
 * With sentinels set and no sentinel_master, sb_sentinel_resolve() gives the first Sentinel
 * that answers PING: that is how a watcher connects to a Sentinel. */
#ifndef SB_SENTINEL_H
#define SB_SENTINEL_H

#include <stddef.h>
#include <hiredis/hiredis.h>
#include "switchboard/config.h"

#define SB_SENTINEL_TIMEOUT_MS 500 /* per connect and per command */
#define SB_SENTINEL_HOST_MAX 256

/* 1 when addr finds its server through Sentinels. */
int sb_sentinel_enabled(const sb_redis_addr_t *addr);

/* Checks a REDIS_SENTINELS list: one or more host:port ([v6]:port) separated by commas.
 * Returns 0, or SB_EINVAL with a reason in err. */
int sb_sentinel_list_check(const char *list, char *err, size_t errlen);

/* Where to connect now for addr (sb_sentinel_enabled): fills target (whose previous strings
 * are not freed) with a plain TCP address — the confirmed master with addr's user, password
 * and db, or, without sentinel_master, the first Sentinel answering PING with
 * sentinel_password. Returns 0 (free target with sb_redis_addr_free), SB_EREDIS with a
 * reason in err (target holds nothing), or SB_ENOMEM. */
int sb_sentinel_resolve(const sb_redis_addr_t *addr, sb_redis_addr_t *target, char *err,
                        size_t errlen);

/* What the Sentinels say of the master (sb_sentinel_survey), for `switchboard doctor`. */
typedef struct {
    int total;           /* Sentinels in the list */
    int reachable;       /* of them, those that answered about the master */
    int agree;           /* of those, naming the same address as the first that answered */
    char master[SB_SENTINEL_HOST_MAX + 8]; /* "host:port" named by the first that answered */
    char role[16];       /* that server's ROLE ("master", "slave", "" when unreachable) */
    long num_slaves;     /* SENTINEL master NAME of the first: replicas it knows */
    long num_other_sentinels; /* other Sentinels it knows */
    long quorum;         /* Sentinels needed to agree that the master is down */
    char flags[64];      /* its flags ("master", "master,s_down", ...) */
    char err[300];       /* why the last Sentinel, or the ROLE check, failed ("" when none) */
} sb_sentinel_survey_t;

/* Asks every Sentinel of addr (sentinels and sentinel_master set) about the master: its
 * address (SENTINEL get-master-addr-by-name), what the first that answered knows of it
 * (SENTINEL master NAME) and its ROLE. Blocking, SB_SENTINEL_TIMEOUT_MS per step. Fills *out
 * and returns 0 when at least one Sentinel answered, SB_EREDIS when none did (out->err says
 * why), SB_EINVAL when addr has no Sentinels or no master name. */
int sb_sentinel_survey(const sb_redis_addr_t *addr, sb_sentinel_survey_t *out);

/* Parses the payload of a `+switch-master` message, "NAME OLDIP OLDPORT NEWIP NEWPORT".
 * Returns 1 and the new address when it is about master, else 0. */
int sb_sentinel_switch_parse(const char *payload, const char *master, char *host,
                             size_t hostlen, int *port);

/* 1 if reply is the READONLY error of a replica: the server is no longer the master. */
int sb_sentinel_readonly(const redisReply *reply);

#endif
