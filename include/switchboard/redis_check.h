/* What a Redis must offer Switchboard, checked on a live connection: the checks behind
 * `switchboard doctor`, and the eviction check the gateway and the agent run at start-up.
 *
 * Each check reads what Redis reports (INFO once, CONFIG GET where allowed, a script, a few
 * PINGs) and gives a verdict: OK; WARN (it works, with a cost the operator should know:
 * no persistence, keyspace events off, slow round trips, plain TCP off this host, Sentinels
 * missing or disagreeing, no replica to fail over to); FAIL
 * (Switchboard cannot rely on it: a version without BLMOVE, no scripting, an eviction policy
 * that can drop job records). Every verdict but OK says how to fix it. */
#ifndef SB_REDIS_CHECK_H
#define SB_REDIS_CHECK_H

#include <stddef.h>
#include "switchboard/config.h"
#include "switchboard/redis.h"

typedef enum { SB_CHECK_OK = 0, SB_CHECK_WARN = 1, SB_CHECK_FAIL = 2 } sb_check_status_t;

typedef struct {
    const char *name;          /* "version", "scripting", ... (static) */
    sb_check_status_t status;
    char detail[256];          /* what was found */
    char fix[256];             /* what to do about it ("" when OK) */
} sb_check_t;

#define SB_CHECK_MAX 10 /* checks sb_redis_check_all runs at most */

/* Runs every check on r (connected; addr is where it points, for the TLS and Sentinel checks;
 * the Sentinel check runs only when addr has Sentinels, the cluster check — masters, slots,
 * replicas, each master's version and eviction policy — only with addr->cluster) into
 * out[0..SB_CHECK_MAX). Returns how many ran, or SB_EREDIS when the connection broke (out
 * then holds those that finished). */
int sb_redis_check_all(sb_redis_t *r, const sb_redis_addr_t *addr, sb_check_t *out);
/* Only the eviction check (maxmemory-policy must be noeviction). Returns 0 with *out filled,
 * or SB_EREDIS. */
int sb_redis_check_eviction(sb_redis_t *r, sb_check_t *out);

#endif
