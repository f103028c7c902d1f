/* What every CLI verb shares: the blocking Redis client a verb starts with, and the mapping of
 * outcomes onto the exit statuses of cli.h. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"
#include "switchboard/redis_check.h"
#include "switchboard/switchboard.h"

sb_redis_t *sb_cli_connect(const sb_config_t *cfg) {
    char err[256], where[300];
    sb_redis_t *r = sb_redis_create(&cfg->redis, "cli");
    if (!r) return NULL;
    sb_redis_set_timeout(r, 10000);
    if (sb_redis_connect(r, err, sizeof err) != SB_OK) {
        fprintf(stderr, "switchboard: cannot reach redis at %s: %s\n",
                sb_redis_addr_str(&cfg->redis, where, sizeof where), err);
        sb_redis_free(r);
        return NULL;
    }
    return r;
}

void sb_cli_warn_eviction(const sb_config_t *cfg, const char *component) {
    char err[256];
    sb_check_t c;
    sb_redis_t *r = sb_redis_create(&cfg->redis, component);
    if (r && sb_redis_connect(r, err, sizeof err) == SB_OK &&
        sb_redis_check_eviction(r, &c) == SB_OK && c.status != SB_CHECK_OK)
        sb_warn(component, "WARNING: redis maxmemory-policy is %s; fix: %s", c.detail, c.fix);
    sb_redis_free(r);
}

int sb_cli_exit(int rc) {
    switch (rc) {
    case SB_OK: return SB_EXIT_OK;
    case SB_EINVAL: return SB_EXIT_USAGE;
    case SB_EREDIS: return SB_EXIT_REDIS;
    case SB_ETIMEOUT: return SB_EXIT_TIMEOUT;
    default: return SB_EXIT_FAIL;
    }
}

int sb_cli_watch_end(int stopped, int max_events, long long seen) {
    if (stopped || max_events <= 0 || seen >= max_events) return SB_EXIT_OK;
    return SB_EXIT_TIMEOUT;
}

int sb_cli_loopback(const char *addr) {
    struct in_addr a;
    if (!addr || !*addr) return 0;
    if (!strcmp(addr, "localhost") || !strcmp(addr, "::1")) return 1;
    return inet_pton(AF_INET, addr, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}
